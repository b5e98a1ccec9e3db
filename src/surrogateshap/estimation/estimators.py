"""Shapley (and Banzhaf) estimators on a utility table, besides the surrogate.

Every estimator takes `x` (coalitions x players, 0/1) and `y` (utilities) in table
order and returns the point values. What each needs from the table:

- exact: all 2^n coalitions (n <= 20); repeats averaged.
- loo: the grand coalition and every n-1 coalition; v(N) - v(N minus i).
- kernel: the empty and grand coalitions plus sampled ones; constrained weighted least
  squares (Covert & Lee 2021). Rows are reweighted by size so that any size-symmetric
  sampler stands in for the Shapley kernel distribution.
- permutation: permutation chains (rows from the empty to the grand coalition, one
  member added per row), as `permutation_coalitions` draws them, antithetic pairs
  included; the mean marginal contribution over chains.
- banzhaf: maximum-sample-reuse: mean utility with i minus mean utility without i
  (Wang & Jia 2023), best with Bernoulli(0.5) coalitions. Banzhaf, not Shapley:
  not efficient.
- hybrid: the surrogate with a residual correction, on permutation chains:
  phi(v) = phi(f) + phi(v - f), TreeSHAP for the trees f (exact) and the chains'
  mean marginal contributions for the residual game v - f (Monte Carlo, unbiased).
  Exactly efficient; its variance is that of the residual, small where f fits.
"""

from __future__ import annotations

import logging
from math import comb

import numpy as np

from . import surrogate
from .regression import EstimatorError, kernel, measured_endpoints
from .selection import cross_validate, grid_candidates
from .surrogate_model import SurrogateModel

log = logging.getLogger(__name__)


def average_repeats(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """One row per distinct coalition, its utility the mean of its repeats."""
    unique, inverse = np.unique(x.astype(np.uint8), axis=0, return_inverse=True)
    inverse = inverse.reshape(-1)
    return unique.astype(np.float32), np.bincount(inverse, weights=y) / np.bincount(inverse)


def merge_repeats(
    x: np.ndarray, y: np.ndarray, source: str = "utility table"
) -> tuple[np.ndarray, np.ndarray]:
    """Average repeated coalitions (their utilities may differ: sampling noise), with a warning that
    says how many and how far apart their values lie. A table without repeats is returned as it is."""
    unique, inverse = np.unique(x.astype(np.uint8), axis=0, return_inverse=True)
    if len(unique) == len(x):
        return x, y
    inverse = inverse.reshape(-1)
    spread = np.zeros(len(unique))
    np.maximum.at(spread, inverse, y)
    low = np.full(len(unique), np.inf)
    np.minimum.at(low, inverse, y)
    spread -= low
    log.warning(
        "%s: %d row(s) repeat an earlier coalition; the utilities of each coalition are averaged "
        "(largest difference between repeats of one coalition: %.4g)",
        source,
        len(x) - len(unique),
        float(spread.max()),
    )
    return average_repeats(x, y)


def is_constant(y: np.ndarray) -> bool:
    """Every utility equal (up to rounding): a constant game, whose Shapley values are all 0."""
    return len(y) > 0 and float(np.ptp(y)) <= 1e-12 * max(1.0, float(np.abs(y).max()))


def _masks(x: np.ndarray) -> np.ndarray:
    return (x.astype(np.int64) << np.arange(x.shape[1], dtype=np.int64)).sum(1)


def _averaged(x: np.ndarray, y: np.ndarray) -> dict[int, float]:
    """Bitmask of each distinct coalition -> its mean utility."""
    unique, means = average_repeats(x, y)
    return dict(zip(_masks(unique).tolist(), means.tolist()))


def exact(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    n = x.shape[1]
    if n > 20:
        raise EstimatorError(f"exact enumerates 2^n coalitions; n = {n} is over the limit of 20")
    table = _averaged(x, y)
    if len(table) < 2**n:
        raise EstimatorError(
            f"exact needs all {2**n} coalitions; the table has {len(table)} distinct ones"
        )
    v = np.array([table[m] for m in range(2**n)])
    sizes = np.array([bin(m).count("1") for m in range(2**n)])
    # weight of S (not containing i) in player i's value: |S|! (n-|S|-1)! / n!
    weight = np.array([1.0 / (n * comb(n - 1, s)) if s < n else 0.0 for s in range(n + 1)])
    masks = np.arange(2**n)
    values = np.empty(n)
    for i in range(n):
        without = masks[(masks >> i & 1) == 0]
        values[i] = np.sum(weight[sizes[without]] * (v[without | (1 << i)] - v[without]))
    return values


def loo(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    n = x.shape[1]
    table = _averaged(x, y)
    grand = (1 << n) - 1
    missing = [i for i in range(n) if grand ^ (1 << i) not in table]
    if grand not in table or missing:
        raise EstimatorError(
            "loo needs the grand coalition and every leave-one-out coalition; missing: "
            + ("the grand coalition, " if grand not in table else "")
            + f"{len(missing)} leave-one-out coalition(s)"
        )
    return np.array([table[grand] - table[grand ^ (1 << i)] for i in range(n)])


def permutation_coalitions(
    n: int, permutations: int, seed: int, antithetic: bool = True
) -> list[tuple[int, ...]]:
    """Chains of prefixes of random permutations (n + 1 rows each); with `antithetic`,
    every permutation is followed by its reverse."""
    rng = np.random.default_rng(seed)
    rows: list[tuple[int, ...]] = []
    drawn = 0
    while drawn < permutations:
        order = rng.permutation(n)
        for perm in (order, order[::-1]) if antithetic else (order,):
            if drawn == permutations:
                break
            rows.extend(tuple(sorted(int(i) for i in perm[:k])) for k in range(n + 1))
            drawn += 1
    return rows


def permutation_chains(x: np.ndarray) -> list[np.ndarray]:
    """Split table rows into chains: each starts at the empty coalition and adds one member per row."""
    n = x.shape[1]
    size = x.sum(1).astype(int)
    chains, start = [], None
    for row in range(len(x)):
        if size[row] == 0:
            start = row
        elif start is not None:
            step = x[row] - x[row - 1]
            if size[row] != size[row - 1] + 1 or step.min() < 0:
                start = None
                continue
            if size[row] == n:
                chains.append(np.arange(start, row + 1))
                start = None
    return chains


def permutation(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean marginal contributions over chains; also the per-chain values (for intervals)."""
    chains = permutation_chains(x)
    if not chains:
        raise EstimatorError(
            "permutation needs permutation chains in the table (empty to grand, one member "
            "added per row); build them with surrogateshap.estimation.estimators.permutation_coalitions "
            "(n + 1 rows per chain, in table order)"
        )
    per_chain = np.empty((len(chains), x.shape[1]))
    for c, rows in enumerate(chains):
        added = np.argmax(np.diff(x[rows], axis=0), axis=1)
        per_chain[c, added] = np.diff(y[rows])
    return per_chain.mean(0), per_chain


def banzhaf(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    inside = x.astype(bool)
    counts_in, counts_out = inside.sum(0), (~inside).sum(0)
    lacking = np.flatnonzero((counts_in == 0) | (counts_out == 0))
    if len(lacking):
        raise EstimatorError(
            f"banzhaf needs every player both in and out of some coalition; players "
            f"{lacking[:10].tolist()} are not"
        )
    return (y @ inside) / counts_in - (y @ ~inside) / counts_out


# What `surrogateshap attribute` and the workflow use unless told otherwise.
DEFAULT_ESTIMATOR = "surrogate"
ESTIMATORS = (
    "surrogate",
    "hybrid",
    "kernel",
    "kernel_centred",
    "permutation",
    "banzhaf",
    "loo",
    "exact",
)


def kernel_centred(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """KernelSHAP with a free intercept per coalition size (`kernel(centre_sizes=True)`): a jump
    from v(empty) to every other coalition, as in a proxy game whose v(empty) is another model,
    is not spread over the players along the sampled design's noise."""
    return kernel(x, y, centre_sizes=True)


# the estimators that are a function of the table alone (no model, no chains)
POINT_ESTIMATORS = {"kernel": kernel, "kernel_centred": kernel_centred}


def hybrid(
    x: np.ndarray, y: np.ndarray, cfg: dict, seed: int
) -> tuple[np.ndarray, np.ndarray, dict]:
    """Surrogate values plus the permutation estimate of the residual game; per-chain values too."""
    chains = permutation_chains(x)
    if not chains:
        raise EstimatorError("hybrid needs permutation chains in the table (see permutation)")
    unique, means = average_repeats(x, y)
    params, oof_r2 = cross_validate(
        unique, means, grid_candidates(cfg), cfg["cv_folds"], seed, cfg["threads"]
    )
    model = SurrogateModel(params, seed, cfg["threads"]).fit(unique, means)
    tree_values, _, _ = model.shapley(x.shape[1])
    residual = y - model.predict(x.astype(np.float32))
    correction, per_chain = permutation(x, residual)
    return tree_values + correction, tree_values + per_chain, {"params": params, "oof_r2": oof_r2}


def attribute(
    estimator: str,
    x: np.ndarray,
    y: np.ndarray,
    names: list[str],
    cfg: dict,
    seed: int,
    progress=None,
    pairs: int | None = 0,
):
    """Attribution table and diagnostics for any estimator; `x`, `y` in table order.

    Intervals: the surrogate, kernel and banzhaf bootstrap over coalitions (rows);
    permutation bootstraps over chains; exact and loo are deterministic functions of
    the table and report no interval. `pairs` (surrogate only): see `surrogate.attribute`.
    """
    import time

    if estimator not in ESTIMATORS:
        raise EstimatorError(f"unknown estimator {estimator!r}; expected one of {ESTIMATORS}")
    if not len(y):
        raise EstimatorError("the utility table has no coalitions")
    if not np.all(np.isfinite(y)):
        bad = np.flatnonzero(~np.isfinite(y))[:10].tolist()
        raise EstimatorError(f"utilities contain NaN or infinite values (rows {bad})")
    if pairs != 0 and estimator != "surrogate":
        raise EstimatorError(
            f"interaction values come from the surrogate; estimator {estimator!r} has none"
        )
    if is_constant(y):
        if estimator != "surrogate":  # the table must still be one the estimator can read
            {
                **POINT_ESTIMATORS,
                "banzhaf": banzhaf,
                "loo": loo,
                "exact": exact,
                "permutation": permutation,
                "hybrid": permutation,
            }[estimator](x, y)
        return _constant_game(estimator, x, y, names, cfg)
    if estimator == "surrogate":
        return surrogate.attribute(x, y, names, cfg, seed, progress=progress, pairs=pairs)
    started = time.time()
    rng = np.random.default_rng(seed)
    replicates = cfg["bootstrap"]
    boot = np.empty((0, x.shape[1]))
    extra: dict = {}
    if estimator in ("permutation", "hybrid"):
        if estimator == "permutation":
            values, per_chain = permutation(x, y)
        else:
            values, per_chain, extra = hybrid(x, y, cfg, seed)
        picks = rng.integers(0, len(per_chain), size=(replicates, len(per_chain)))
        boot = per_chain[picks].mean(1) if replicates else boot
    else:
        point = {**POINT_ESTIMATORS, "banzhaf": banzhaf, "loo": loo, "exact": exact}[estimator]
        values = point(x, y)
        if estimator in (*POINT_ESTIMATORS, "banzhaf") and replicates:
            size = x.sum(1)
            fixed = np.flatnonzero(
                (size == 0) | (size == x.shape[1])
            )  # keep the endpoints in every replicate
            rest = np.setdiff1d(np.arange(len(y)), fixed)
            boot = np.array(
                [
                    point(x[rows], y[rows])
                    for rows in (
                        np.concatenate([fixed, rng.choice(rest, len(rest))])
                        for _ in range(replicates)
                    )
                ]
            )
    table = surrogate.ranked_table(
        names, values, *surrogate.bootstrap_intervals(boot, cfg["ci_level"], cfg["top_k"])
    )
    v_empty, v_grand = measured_endpoints(x, y)
    diagnostics = {
        "estimator": estimator,
        "n_coalitions": int(len(y)),
        "n_contributors": int(x.shape[1]),
        "measured_empty": v_empty,
        "measured_grand": v_grand,
        "sum_values": float(values.sum()),
        "efficiency_gap": float(values.sum() - (v_grand - v_empty)),
        "efficient": estimator in (*POINT_ESTIMATORS, "permutation", "hybrid", "exact"),
        "ci_level": cfg["ci_level"],
        "bootstrap": int(len(boot)),
        "top_k": cfg["top_k"],
        "seconds": time.time() - started,
        **extra,
    }
    return table, diagnostics


def _constant_game(estimator: str, x: np.ndarray, y: np.ndarray, names: list[str], cfg: dict):
    """Every coalition has the same utility: every value is exactly 0 (all players are null players),
    with no interval width, every contributor tied at rank 1; no model is fitted. A metric that
    nothing in the data moves (e.g. a marker rate on data without markers) ends here."""
    n = x.shape[1]
    log.warning(
        "the utility is %.6g for all %d coalitions: every Shapley value is 0 and ranks are all tied",
        float(y[0]),
        len(y),
    )
    zeros = np.zeros(n)
    table = surrogate.ranked_table(names, zeros, zeros, zeros, np.ones(n))
    table["rank"] = 1
    v_empty, v_grand = measured_endpoints(x, y)
    diagnostics = {
        "estimator": estimator,
        "constant_utility": float(y[0]),
        "n_coalitions": int(len(y)),
        "n_contributors": int(n),
        "measured_empty": v_empty,
        "measured_grand": v_grand,
        "sum_values": 0.0,
        "efficiency_gap": 0.0,
        "efficient": True,
        "anchored_endpoints": False,
        "params": None,
        "oof_r2": float("nan"),
        "ci_level": cfg["ci_level"],
        "bootstrap": 0,
        "top_k": cfg["top_k"],
        "seconds": 0.0,
        "top_interactions": [],
    }
    return table, diagnostics
