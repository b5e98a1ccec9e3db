"""Coalition samplers and the coalition table.

A coalition is a set of contributors, stored as the sorted list of their names in
the column `members`. The empty and the grand coalition are always included.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pandas as pd

SAMPLERS = ("leverage", "shapley_kernel", "uniform_size", "bernoulli")
# What the workflow and `surrogateshap coalitions` draw unless told otherwise: the design the default
# surrogate was chosen on (Leverage SHAP's; docs/estimators-benchmark.md).
DEFAULT_SAMPLER = "leverage"


def sample_coalitions(
    n: int, count: int, sampler: str, seed: int, p: float = 0.5, paired: bool = False, taken=()
) -> list[tuple[int, ...]]:
    """`count` distinct coalitions of n players, the empty and grand coalitions first.

    leverage (the default): Leverage SHAP's design (Musco & Witter 2025): complement pairs
    (always paired), the same number of pairs for every size s < n/2 (the Shapley regression's
    leverage scores are uniform over sizes), half as many for the self-complementary middle
    size, sizes whose coalitions all fit enumerated whole (sizes 1 and n-1 first: the
    "border trick"), drawn without replacement within each size (`leverage_design`);
    shapley_kernel: size k in 1..n-1 with probability proportional to (n-1)/(k(n-k)),
    then a uniform subset of that size (KernelSHAP's distribution);
    uniform_size: k uniform in 1..n-1; bernoulli: each player kept with probability p.
    paired: every drawn coalition is followed by its complement (antithetic sampling,
    Covert & Lee 2021): the pair's errors in each player's marginal contribution cancel
    to first order, which roughly halves the error of the surrogate and of KernelSHAP at
    budgets of 5n-20n coalitions (benchmarks/estimators.py).
    taken: coalitions drawn before (an earlier round); then `count` coalitions not among
    them are drawn and returned (the endpoints are not new, so they are not returned).
    """
    if sampler not in SAMPLERS:
        raise ValueError(f"unknown coalition sampler {sampler!r}; expected one of {SAMPLERS}")
    if sampler == "leverage":
        return leverage_design(n, count, seed, taken)
    total = 2**n if n < 63 else math.inf
    endpoints = [(), tuple(range(n))]
    old = {tuple(int(i) for i in c): None for c in endpoints + [tuple(c) for c in taken]}
    wanted = int(min(len(old) + count if taken else count, total))
    chosen = dict(old)
    if wanted >= total:  # enumerate everything: exact game
        for mask in range(1, 2**n - 1):
            chosen.setdefault(tuple(i for i in range(n) if mask >> i & 1), None)
    else:
        rng = np.random.default_rng(seed)
        sizes = np.arange(1, n)
        kernel = (n - 1) / (sizes * (n - sizes))
        kernel /= kernel.sum()
        attempts = 0
        while len(chosen) < wanted:
            attempts += 1
            if attempts > 1000 * wanted:
                raise RuntimeError(
                    f"could not draw {count} distinct coalitions of {n} players with {sampler!r}"
                )
            if sampler == "bernoulli":
                members = np.flatnonzero(rng.random(n) < p)
            else:
                k = (
                    rng.choice(sizes, p=kernel)
                    if sampler == "shapley_kernel"
                    else rng.integers(1, n)
                )
                members = np.sort(rng.choice(n, size=k, replace=False))
            chosen.setdefault(tuple(int(i) for i in members), None)
            if paired and len(chosen) < wanted:
                inside = set(members.tolist())
                chosen.setdefault(tuple(i for i in range(n) if i not in inside), None)
    drawn = list(chosen)[:wanted]
    return [c for c in drawn if c not in old] if taken else drawn


def leverage_pair_counts(n: int, pairs: int, available=None) -> dict[int, int]:
    """Complement pairs to draw of each size s = 1..n//2 (a pair: a coalition of size s and its
    complement), `pairs` in all: water-filling, the same number m for every size below n/2 and
    m/2 for the middle size of an even n (its layer is half as many pairs per coalition), each
    size capped at the pairs it has (`available[s]`, default all of them); fractions go to the
    sizes with the largest remainders, ties to the smaller size (Leverage SHAP's deterministic
    counts: a stratified sample, lower variance than drawing the counts at random)."""
    half = list(range(1, n // 2 + 1))
    share = {s: 0.5 if 2 * s == n else 1.0 for s in half}
    cap = {
        s: (available or {}).get(s, math.comb(n - 1, s - 1) if 2 * s == n else math.comb(n, s))
        for s in half
    }
    pairs = min(pairs, sum(cap.values()))
    if pairs <= 0 or not half:
        return {s: 0 for s in half}
    low, high = 0.0, float(pairs) * 2 + 1
    for _ in range(200):  # bisect m: sum_s min(cap_s, m * share_s) = pairs
        mid = (low + high) / 2
        if sum(min(cap[s], mid * share[s]) for s in half) >= pairs:
            high = mid
        else:
            low = mid
    exact = {s: min(cap[s], high * share[s]) for s in half}
    counts = {s: min(cap[s], int(exact[s])) for s in half}
    order = sorted(half, key=lambda s: (-(exact[s] - int(exact[s])), s))
    while sum(counts.values()) < pairs:
        for s in order:
            if sum(counts.values()) < pairs and counts[s] < cap[s]:
                counts[s] += 1
    while sum(counts.values()) > pairs:  # rounding overshoot (bisection tolerance)
        s = max((s for s in half if counts[s]), key=lambda s: exact[s] - counts[s])
        counts[s] -= 1
    return counts


def leverage_design(n: int, count: int, seed, taken=()) -> list[tuple[int, ...]]:
    """Leverage SHAP's paired, size-stratified design (see `sample_coalitions`): the empty and the
    grand coalition, then (count - 2) // 2 complement pairs; an odd count leaves one slot unused.
    With `taken` (an earlier round): `count` new coalitions (count // 2 pairs), none among them,
    each size's share again stratified over the pairs not yet taken. Deterministic in `seed`."""
    grand = tuple(range(n))
    old = {tuple(int(i) for i in c) for c in taken}
    full = set(range(n))
    if n < 2:
        drawn = [(), grand][: max(0, count)] if not taken else []
        return [c for c in dict.fromkeys(drawn) if c not in old]
    rng = np.random.default_rng(seed)

    def key(members) -> tuple[int, ...]:  # one coalition per pair: the one of size <= n/2
        members = tuple(sorted(members))  # (holding the last player for the middle size)
        if 2 * len(members) > n or (2 * len(members) == n and n - 1 not in members):
            members = tuple(sorted(full - set(members)))
        return members

    seen = {key(c) for c in old if 0 < len(c) < n}
    per_size = {s: 0 for s in range(1, n // 2 + 1)}
    for c in seen:
        per_size[len(c)] += 1
    total_pairs = {s: math.comb(n - 1, s - 1) if 2 * s == n else math.comb(n, s) for s in per_size}
    available = {s: total_pairs[s] - per_size[s] for s in per_size}
    counts = leverage_pair_counts(n, count // 2 if taken else (count - 2) // 2, available)
    rows: list[tuple[int, ...]] = [] if taken else [(), grand]
    for s, k in counts.items():
        for members in _distinct_subsets(n, s, k, rng, seen, middle=2 * s == n):
            rows.append(members)
            rows.append(tuple(sorted(full - set(members))))
    return rows


def _distinct_subsets(n: int, s: int, k: int, rng, seen: set, middle: bool):
    """k subsets of size s (holding player n-1 where `middle`), uniform without replacement,
    none in `seen` (which they join). Small layers are enumerated and shuffled; large ones drawn
    by rejection, which rarely rejects there (k is far below the layer's size)."""
    if k <= 0:
        return []
    pool = math.comb(n - 1, s - 1) if middle else math.comb(n, s)
    if pool <= 4 * (k + len(seen)) + 64 and pool <= 2_000_000:
        combos = (
            [c + (n - 1,) for c in itertools.combinations(range(n - 1), s - 1)]
            if middle
            else list(itertools.combinations(range(n), s))
        )
        fresh = [c for c in combos if c not in seen]
        picked = [fresh[i] for i in np.sort(rng.choice(len(fresh), size=k, replace=False))]
        picked = [picked[i] for i in rng.permutation(k)]
    else:
        picked = []
        while len(picked) < k:
            if middle:
                members = tuple(sorted(rng.choice(n - 1, size=s - 1, replace=False).tolist()))
                members += (n - 1,)
            else:
                members = tuple(sorted(rng.choice(n, size=s, replace=False).tolist()))
            if members not in seen:
                seen.add(members)
                picked.append(members)
    seen.update(picked)
    return [tuple(int(i) for i in c) for c in picked]


def indicators(coalitions, n: int, dtype=np.float32) -> np.ndarray:
    """(coalitions, n) 0/1 matrix of coalitions given as tuples of player indices."""
    x = np.zeros((len(coalitions), n), dtype=dtype)
    for row, members in enumerate(coalitions):
        x[row, list(members)] = 1
    return x


def coalition_table(coalitions: list[tuple[int, ...]], names: list[str]) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "coalition": np.arange(len(coalitions), dtype=np.int64),
            "members": [[names[i] for i in c] for c in coalitions],
            "size": [len(c) for c in coalitions],
        }
    )


def indicator_matrix(
    members: pd.Series, names: list[str], source: str = "coalition table"
) -> np.ndarray:
    """(coalitions, players) 0/1 matrix. Every problem is listed in one ValueError, by row:
    a cell that is not a list of names, a repeated member, a member not in `names`."""
    position = {name: i for i, name in enumerate(names)}
    x = np.zeros((len(members), len(names)), dtype=np.float32)
    not_lists: list[int] = []
    repeats: dict[int, list] = {}
    unknown: dict = {}
    for row, coalition in enumerate(members):
        if not isinstance(coalition, (list, tuple, np.ndarray)) or any(
            not isinstance(m, str) for m in coalition
        ):
            not_lists.append(row)
            continue
        coalition = list(coalition)
        if len(set(coalition)) != len(coalition):
            repeats[row] = sorted({m for m in coalition if coalition.count(m) > 1})
        for member in coalition:
            if member not in position:
                unknown.setdefault(member, row)
            else:
                x[row, position[member]] = 1.0
    problems = []
    if not_lists:
        problems.append(
            f"members is not a list of contributor names in row(s) {_rows(not_lists)}: "
            + ", ".join(_brief(members.iloc[r]) for r in not_lists[:5])
        )
    if repeats:
        problems.append(
            "coalitions that repeat a member: "
            + "; ".join(f"row {row} repeats {names_}" for row, names_ in list(repeats.items())[:20])
        )
    if unknown:
        problems.append(
            "unknown contributor(s), not in the contributor table: "
            + ", ".join(
                f"{name!r} (first in row {row})" for name, row in list(unknown.items())[:20]
            )
            + (f" and {len(unknown) - 20} more" if len(unknown) > 20 else "")
        )
    if problems:
        raise ValueError(f"{source}: " + "; ".join(problems))
    return x


def _rows(rows: list[int], limit: int = 20) -> str:
    return str(rows[:limit])[1:-1] + (f" and {len(rows) - limit} more" if len(rows) > limit else "")


def _brief(value, limit: int = 80) -> str:
    text = repr(value.item() if isinstance(value, np.generic) else value)
    return text if len(text) <= limit else text[:limit] + "..."


def read_utility_table(path, metric: str, names: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """Indicators and utilities of a Parquet utility table (`members` + one column per metric), in
    table order, repeats kept. ValueError naming the file, column and rows for: an unreadable file,
    a missing column, no rows, bad `members` (see `indicator_matrix`), and utilities that are
    missing, not numbers, NaN or infinite (refused, never dropped: a NaN utility means a broken
    metric or coalition, and dropping it would bias the values)."""
    try:
        table = pd.read_parquet(path)
    except FileNotFoundError:
        raise ValueError(f"utility table not found: {path}") from None
    except Exception as error:  # not Parquet, truncated, ...: name the file
        raise ValueError(f"{path}: cannot read the utility table as Parquet: {error}") from None
    missing = [c for c in ("members", metric) if c not in table.columns]
    if missing:
        raise ValueError(f"{path}: no column(s) {missing} (columns: {list(table.columns)})")
    if not len(table):
        raise ValueError(f"{path}: the utility table has no rows")
    x = indicator_matrix(table["members"], names, source=str(path))
    column = table[metric]
    scalars = column.map(lambda v: v if isinstance(v, (int, float, np.number, str)) else None)
    y = pd.to_numeric(scalars, errors="coerce").astype(np.float64).to_numpy()
    bad = np.flatnonzero(~np.isfinite(y))
    if len(bad):
        shown = ", ".join(
            f"row {r} {_brief(list(table['members'].iloc[r]), 60)} = {_brief(column.iloc[r], 30)}"
            for r in bad[:5]
        )
        raise ValueError(
            f"{path}: column {metric!r} has {len(bad)} utility value(s) that are missing, not numbers, "
            f"NaN or infinite (rows {_rows(bad.tolist())}): {shown}"
        )
    return x, y
