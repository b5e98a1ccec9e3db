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

log = logging.getLogger(__name__)


class EstimatorError(ValueError):
    """The table cannot support the estimator; the message says what is missing."""


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


def _endpoints(x: np.ndarray, y: np.ndarray, estimator: str) -> tuple[float, float]:
    from .surrogate import measured_endpoints

    v_empty, v_grand = measured_endpoints(x, y)
    missing = [name for name, value in (("empty", v_empty), ("grand", v_grand)) if np.isnan(value)]
    if missing:
        raise EstimatorError(
            f"{estimator} needs the {' and the '.join(missing)} coalition in the table"
        )
    return v_empty, v_grand


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


def size_weights(x: np.ndarray) -> np.ndarray:
    """Per-row weights that turn the table's size distribution into the Shapley kernel's."""
    n = x.shape[1]
    size = x.sum(1).astype(int)
    inner = (size > 0) & (size < n)
    sizes = np.arange(1, n)
    kernel = (n - 1) / (sizes * (n - sizes))
    kernel /= kernel.sum()
    counts = np.bincount(size[inner], minlength=n + 1)
    weights = np.zeros(len(size))
    present = counts[size[inner]]
    weights[inner] = kernel[size[inner] - 1] / (present / inner.sum())
    return weights


# Directions of the weighted normal equations whose eigenvalue is below this fraction of the largest
# (a design condition number over 100) are left at the minimum-norm solution instead of being fitted
# to noise: at 2n paired coalitions for n = 50 and 100 the untruncated solve had relative error
# 1.55 and 1.08 on polynomial games, the truncated one 0.42 and 0.46; where the coalitions pin the
# values down, the two agree. The price: on purely additive games at 2n it discards exact information
# (docs/estimators.md; benchmarks/estimators.py).
KERNEL_RCOND = 1e-4


def kernel(
    x: np.ndarray, y: np.ndarray, shrink: float = 0.0, centre_sizes: bool = False
) -> np.ndarray:
    """Constrained least squares: min E_p[(v(S) - v(0) - 1_S . phi)^2] s.t. sum(phi) = v(N) - v(0);
    with `shrink` > 0, plus shrink * mean(diag) * |phi - equal split|^2 (see `kernel_shrinkage`).
    `centre_sizes`: see `kernel_system`."""
    a, b, total = kernel_system(x, y, centre_sizes)
    return kernel_solve(a, b, total, shrink, centred=centre_sizes)


def kernel_system(
    x: np.ndarray, y: np.ndarray, centre_sizes: bool = False
) -> tuple[np.ndarray, np.ndarray, float]:
    """The weighted normal equations (A, b) of `kernel` and v(N) - v(0).

    `centre_sizes`: indicators and utilities are centred within each coalition size first (a free
    intercept per size). A game that depends on |S| alone is symmetric, so its Shapley values are
    the equal split: the centred regression leaves it out exactly and still estimates the values'
    deviations from the equal split consistently under the Shapley kernel (its size weights make
    the within-size contrasts sum to n * phi_i - v(N) + v(0)). What it removes is what plain
    KernelSHAP's constrained solve spreads along A^-1 1 with sampling noise: a jump from v(0) to
    every other coalition (the proxy game's v(0) is another model, the unconditional one) gave
    relative errors of 0.8 at 20n on a game whose values it solves exactly from 4n on
    (benchmarks/kernel_centring.py). A is then singular along 1; solve with `centred=True`."""
    n = x.shape[1]
    v_empty, v_grand = _endpoints(x, y, "kernel")
    w = size_weights(x)
    if (w > 0).sum() < n:
        raise EstimatorError(
            f"kernel needs at least {n} coalitions besides the empty and grand ones; "
            f"the table has {(w > 0).sum()}"
        )
    z = x.astype(np.float64)
    g = np.asarray(y, dtype=np.float64) - v_empty
    if centre_sizes:
        # (centring the indicators centres b too: one size's rows share one weight)
        z = z.copy()
        size = x.sum(1).astype(int)
        for s in np.unique(size[w > 0]):
            rows = size == s
            z[rows] -= z[rows].mean(0)
    a = (z * w[:, None]).T @ z / w.sum()
    b = (z * w[:, None]).T @ g / w.sum()
    return a, b, v_grand - v_empty


def kernel_solve(
    a: np.ndarray,
    b: np.ndarray,
    total: float,
    shrink: float = 0.0,
    eig: tuple[np.ndarray, np.ndarray] | None = None,
    centred: bool = False,
) -> np.ndarray:
    """The constrained solution from the normal equations; `eig`: `np.linalg.eigh(a)`, when the
    caller solves the same system for several `shrink`s (one decomposition serves them all);
    `centred`: the system of `kernel_system(..., centre_sizes=True)`."""
    n = len(b)
    evals, evecs = np.linalg.eigh(a) if eig is None else eig
    rhs = np.column_stack([b, np.ones(n)])
    if shrink:  # pull towards the equal split total / n, the values of a game with no information
        scale = shrink * float(evals.sum()) / n  # the trace of A
        evals = evals + scale
        if not centred:  # (centred, the equal split is the origin of the deviations solved for)
            rhs[:, 0] += scale * total / n
    # A is symmetric positive semi-definite, so its singular values are |eigenvalues|: this is the
    # rcond-truncated pseudo-inverse that np.linalg.lstsq(a, rhs, rcond=KERNEL_RCOND) applies,
    # from one decomposition instead of an SVD per right-hand side.
    kept = np.abs(evals) > KERNEL_RCOND * np.abs(evals).max()
    inverse = np.where(kept, 1 / np.where(kept, evals, 1.0), 0.0)
    a_inv_b, a_inv_1 = (evecs @ (inverse[:, None] * (evecs.T @ rhs))).T
    if centred:  # A 1 = 0 and b is orthogonal to 1: the deviations from the equal split
        return a_inv_b - a_inv_b.mean() + total / n
    return a_inv_b - a_inv_1 * (a_inv_b.sum() - total) / a_inv_1.sum()


def size_intercepts(x: np.ndarray, y: np.ndarray, phi: np.ndarray) -> np.ndarray:
    """The free intercept per coalition size of the size-centred kernel (`kernel_system`), for
    sizes 0..n: the mean of y - 1_S . phi over the table's coalitions of that size, v(0) at both
    ends (so the model's Shapley values are phi, which sums to v(N) - v(0)), linear between the
    sizes the table has none of."""
    n = x.shape[1]
    v_empty, _ = _endpoints(x, y, "kernel")
    size = x.sum(1).astype(int)
    inner = (size > 0) & (size < n)
    left = np.asarray(y, dtype=np.float64)[inner] - x[inner].astype(np.float64) @ phi
    counts = np.bincount(size[inner], minlength=n + 1)
    sums = np.bincount(size[inner], weights=left, minlength=n + 1)
    seen = np.flatnonzero(counts)
    known = np.concatenate([[0], seen, [n]])
    values = np.concatenate([[v_empty], sums[seen] / counts[seen], [v_empty]])
    return np.interp(np.arange(n + 1), known, values)


# Candidate strengths of the pull towards the equal split, relative to the mean diagonal of A.
KERNEL_SHRINKS = (0.0, 0.003, 0.01, 0.03, 0.1, 0.3, 1.0, 3.0)


def kernel_shrinkage(
    x: np.ndarray, y: np.ndarray, folds: int = 5, seed: int = 0, centre_sizes: bool = False
) -> float:
    """The `shrink` of `kernel` with the least kernel-weighted squared error on held-out
    coalitions (complement pairs held out together, `surrogate.pair_folds`). At budgets near n
    coalitions the regression is barely determined and fits noise (relative errors above 1 on
    Fréchet and voting games at 2n, where the equal split is within 0.5-0.9); with more coalitions
    the held-out error picks 0, plain KernelSHAP. 0 where the folds cannot support a fit.
    `centre_sizes`: of the size-centred kernel, its held-out predictions with the training
    folds' intercept per size (`size_intercepts`)."""
    from .surrogate import pair_folds

    w = size_weights(x)
    v_empty, _ = _endpoints(x, y, "kernel")
    errors = np.zeros(len(KERNEL_SHRINKS))
    splits = pair_folds(x, folds, seed, strict=True)
    if not splits:  # e.g. every coalition in the table: the kernel is exact, nothing to shrink
        return 0.0
    for train, test in splits:
        try:
            a, b, total = kernel_system(x[train], y[train], centre_sizes)
        except EstimatorError:
            return 0.0
        z = x[test].astype(np.float64)
        eig = np.linalg.eigh(a)
        for k, shrink in enumerate(KERNEL_SHRINKS):
            phi = kernel_solve(a, b, total, shrink, eig, centred=centre_sizes)
            base = (
                size_intercepts(x[train], y[train], phi)[x[test].sum(1).astype(int)]
                if centre_sizes
                else v_empty
            )
            errors[k] += float(np.sum(w[test] * (y[test] - base - z @ phi) ** 2))
    # One step below the held-out optimum: the held-out error favours more shrinkage than the
    # values want (on Fréchet, voting and polynomial games at 2n-20n the best shrink for the values
    # was about a third of the one with the least held-out error; benchmarks/estimators.py).
    return float(KERNEL_SHRINKS[max(0, int(np.argmin(errors)) - 1)])


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
    from . import surrogate

    chains = permutation_chains(x)
    if not chains:
        raise EstimatorError("hybrid needs permutation chains in the table (see permutation)")
    unique, means = average_repeats(x, y)
    params, oof_r2 = surrogate.cross_validate(
        unique, means, surrogate.grid_candidates(cfg), cfg["cv_folds"], seed, cfg["threads"]
    )
    model = surrogate.SurrogateModel(params, seed, cfg["threads"]).fit(unique, means)
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

    from . import surrogate

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
    v_empty, v_grand = surrogate.measured_endpoints(x, y)
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
    from . import surrogate

    n = x.shape[1]
    log.warning(
        "the utility is %.6g for all %d coalitions: every Shapley value is 0 and ranks are all tied",
        float(y[0]),
        len(y),
    )
    zeros = np.zeros(n)
    table = surrogate.ranked_table(names, zeros, zeros, zeros, np.ones(n))
    table["rank"] = 1
    v_empty, v_grand = surrogate.measured_endpoints(x, y)
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
