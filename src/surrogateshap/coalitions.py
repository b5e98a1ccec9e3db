"""Coalition samplers and the coalition table.

A coalition is a set of contributors, stored as the sorted list of their names in
the column `members`. The empty and the grand coalition are always included.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

SAMPLERS = ("shapley_kernel", "uniform_size", "bernoulli")


def sample_coalitions(n: int, count: int, sampler: str, seed: int, p: float = 0.5) -> list[tuple[int, ...]]:
    """`count` distinct coalitions of n players, the empty and grand coalitions first.

    shapley_kernel: size k in 1..n-1 with probability proportional to (n-1)/(k(n-k)),
    then a uniform subset of that size (KernelSHAP's distribution);
    uniform_size: k uniform in 1..n-1; bernoulli: each player kept with probability p.
    """
    if sampler not in SAMPLERS:
        raise ValueError(f"unknown coalition sampler {sampler!r}; expected one of {SAMPLERS}")
    total = 2 ** n if n < 63 else math.inf
    count = int(min(count, total))
    rng = np.random.default_rng(seed)
    chosen: dict[tuple[int, ...], None] = {(): None, tuple(range(n)): None}
    if count >= total:  # enumerate everything: exact game
        for mask in range(1, 2 ** n - 1):
            chosen[tuple(i for i in range(n) if mask >> i & 1)] = None
        return list(chosen)[:count]
    sizes = np.arange(1, n)
    kernel = (n - 1) / (sizes * (n - sizes))
    kernel /= kernel.sum()
    attempts = 0
    while len(chosen) < count:
        attempts += 1
        if attempts > 1000 * count:
            raise RuntimeError(f"could not draw {count} distinct coalitions of {n} players with {sampler!r}")
        if sampler == "bernoulli":
            members = np.flatnonzero(rng.random(n) < p)
        else:
            k = rng.choice(sizes, p=kernel) if sampler == "shapley_kernel" else rng.integers(1, n)
            members = np.sort(rng.choice(n, size=k, replace=False))
        chosen.setdefault(tuple(int(i) for i in members), None)
    return list(chosen)


def coalition_table(coalitions: list[tuple[int, ...]], names: list[str]) -> pd.DataFrame:
    return pd.DataFrame({
        "coalition": np.arange(len(coalitions), dtype=np.int64),
        "members": [[names[i] for i in c] for c in coalitions],
        "size": [len(c) for c in coalitions],
    })


def indicator_matrix(members: pd.Series, names: list[str], source: str = "coalition table") -> np.ndarray:
    """(coalitions, players) 0/1 matrix; unknown or repeated contributors are errors, named."""
    position = {name: i for i, name in enumerate(names)}
    x = np.zeros((len(members), len(names)), dtype=np.float32)
    unknown: dict[str, int] = {}
    for row, coalition in enumerate(members):
        coalition = list(coalition)
        if len(set(coalition)) != len(coalition):
            repeated = sorted({m for m in coalition if coalition.count(m) > 1})
            raise ValueError(f"{source}: row {row} repeats member(s) {repeated}")
        for member in coalition:
            if member not in position:
                unknown.setdefault(member, row)
            else:
                x[row, position[member]] = 1.0
    if unknown:
        listed = ", ".join(f"{name!r} (first in row {row})" for name, row in list(unknown.items())[:20])
        raise ValueError(f"{source}: unknown contributor(s), not in the contributor table: {listed}")
    return x
