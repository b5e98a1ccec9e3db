"""Synthetic games whose exact Shapley values are known, for tests and benchmarks.

- `polynomial_game`: v(S) = c0 + sum over terms T of c_T * [T subset of S], with terms
  of order 1 to 3. A term's worth is split equally among its members (Shapley), or
  c_T / 2^(|T|-1) to each member (Banzhaf); pairs get interaction c_T / (|T| - 1).
- `voting_game`: weighted voting, v(S) = 1 if the weights in S reach the quota; exact
  values by dynamic programming over (coalition size, weight), any n.
- `gaussian_fd_game`: contributors are Gaussian components; v(S) is the Fréchet
  distance of their mixture (weights by item counts) to a reference Gaussian, the
  pooled game's own formula; exact values by enumeration (n <= 14).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from math import comb

import numpy as np


@dataclass
class Game:
    name: str
    n: int
    evaluate: Callable[[np.ndarray], np.ndarray]  # (coalitions, n) 0/1 -> (coalitions,)
    shapley: np.ndarray
    banzhaf: np.ndarray | None = None
    interactions: dict = field(default_factory=dict)  # (i, j) -> Shapley interaction index


def polynomial_game(
    n: int, seed: int, pairs: int | None = None, triples: int | None = None, scale: float = 1.0
) -> Game:
    rng = np.random.default_rng(seed)
    pairs = n if pairs is None else pairs
    triples = max(1, n // 3) if triples is None else triples
    linear = rng.normal(size=n)
    terms: list[tuple[tuple[int, ...], float]] = []
    for order, count in ((2, pairs), (3, triples)):
        for _ in range(count):
            terms.append(
                (
                    tuple(sorted(rng.choice(n, size=order, replace=False).tolist())),
                    float(rng.normal() * scale),
                )
            )
    shapley, banzhaf = linear.copy(), linear.copy()
    interactions: dict = {}
    for members, c in terms:
        for i in members:
            shapley[i] += c / len(members)
            banzhaf[i] += c / 2 ** (len(members) - 1)
        for a in members:
            for b in members:
                if a < b:
                    interactions[(a, b)] = interactions.get((a, b), 0.0) + c / (len(members) - 1)

    def evaluate(x: np.ndarray) -> np.ndarray:
        y = 0.3 + x @ linear
        for members, c in terms:
            y = y + c * np.prod(x[:, list(members)], axis=1)
        return y

    return Game(f"polynomial(n={n})", n, evaluate, shapley, banzhaf, interactions)


def voting_game(n: int, seed: int, quota_fraction: float = 0.5) -> Game:
    rng = np.random.default_rng(seed)
    weights = rng.integers(1, 20, size=n)
    quota = int(np.ceil(quota_fraction * weights.sum())) + 1
    total = int(weights.sum())
    factor = np.array([1.0 / (n * comb(n - 1, k)) for k in range(n)])
    shapley = np.empty(n)
    for i in range(n):
        # ways[k, w]: coalitions of the other players with k members and weight w
        ways = np.zeros((n, total + 1))
        ways[0, 0] = 1.0
        for j in range(n):
            if j != i:
                wj = int(weights[j])
                ways[1:, wj:] += ways[:-1, : total + 1 - wj].copy()
        swing = slice(max(0, quota - int(weights[i])), quota)  # w < quota <= w + w_i
        shapley[i] = float((factor * ways[:, swing].sum(1)).sum())

    def evaluate(x: np.ndarray) -> np.ndarray:
        return (x @ weights >= quota).astype(np.float64)

    return Game(f"voting(n={n})", n, evaluate, shapley)


def gaussian_fd_game(n: int, seed: int, d: int = 8) -> Game:
    from ..proxy.metric_base import Reference
    from ..proxy.metrics import frechet_from_moments

    if n > 14:
        raise ValueError(f"gaussian_fd_game enumerates 2^n coalitions; n = {n} is over 14")
    rng = np.random.default_rng(seed)
    means = rng.normal(size=(n + 1, d))  # the last component plays the empty coalition
    covs = []
    for _ in range(n + 1):
        a = rng.normal(size=(d, d)) / np.sqrt(d)
        covs.append(a @ a.T + 0.1 * np.eye(d))
    second = np.stack([c + np.outer(m, m) for c, m in zip(covs, means)])
    counts = rng.integers(20, 100, size=n).astype(float)
    ref_cov = np.eye(d)
    values, vectors = np.linalg.eigh(ref_cov)
    reference = Reference(np.zeros(d), ref_cov, (vectors * np.sqrt(values)) @ vectors.T)

    def evaluate(x: np.ndarray) -> np.ndarray:
        w = x * counts
        sums = w.sum(1, keepdims=True)
        weights = np.hstack(
            [np.where(sums > 0, w / np.where(sums > 0, sums, 1), 0), (sums == 0).astype(float)]
        )
        return frechet_from_moments(
            weights @ means, np.einsum("cg,gij->cij", weights, second), reference
        )

    from .estimators import exact

    everything = np.array([[m >> i & 1 for i in range(n)] for m in range(2**n)], dtype=float)
    return Game(f"gaussian_fd(n={n})", n, evaluate, exact(everything, evaluate(everything)))
