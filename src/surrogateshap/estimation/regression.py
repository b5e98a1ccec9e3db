"""The regression estimators that both the kernel path (`estimators`) and the surrogate's
kernel base use: KernelSHAP's constrained weighted least squares (`kernel`, with an optional
intercept per coalition size and a pull towards the equal split chosen on held-out coalitions),
the folds it is chosen on (`pair_folds`, complement pairs held out together, also the surrogate's
cross-validation folds), and the measured endpoints v(empty) and v(grand) they anchor to.
"""

from __future__ import annotations

import math

import numpy as np


class EstimatorError(ValueError):
    """The table cannot support the estimator; the message says what is missing."""


def measured_endpoints(x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """Mean measured utility of the empty and the grand coalition (NaN if absent)."""
    size = x.sum(1)
    empty, grand = y[size == 0], y[size == x.shape[1]]
    return (
        float(empty.mean()) if len(empty) else float("nan"),
        float(grand.mean()) if len(grand) else float("nan"),
    )


def _endpoints(x: np.ndarray, y: np.ndarray, estimator: str) -> tuple[float, float]:
    v_empty, v_grand = measured_endpoints(x, y)
    missing = [name for name, value in (("empty", v_empty), ("grand", v_grand)) if np.isnan(value)]
    if missing:
        raise EstimatorError(
            f"{estimator} needs the {' and the '.join(missing)} coalition in the table"
        )
    return v_empty, v_grand


def endpoint_rows(x: np.ndarray) -> np.ndarray:
    """Rows of the empty and the grand coalition."""
    size = x.sum(1)
    return np.flatnonzero((size == 0) | (size == x.shape[1]))


def complement_units(x: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """A unit id per row of `x`: among `rows`, a coalition and its complement (where both are
    there) share the lower of their row numbers; every other row is a unit of its own."""
    row_of = {row.tobytes(): i for i, row in enumerate(x.astype(bool))}
    unit = np.arange(len(x))
    for i in rows:
        j = row_of.get((~x[i].astype(bool)).tobytes())
        if j is not None:
            unit[i] = min(i, j)
    return unit


def pair_folds(
    x: np.ndarray, folds: int, seed: int, strict: bool = False
) -> list[tuple[np.ndarray, np.ndarray]]:
    """K (train, test) splits of the coalitions between the endpoints: a coalition and its
    complement, where both are in the table, are held out together (with odd targets one predicts
    the other exactly: a leak), and each size stratum (min(s, n - s)) is dealt round robin over
    the folds, from a random fold, so every fold sees every size it can. The endpoints, and every
    size the table holds whole, are in every training fold; but where the other sizes leave fewer
    than two units per fold (an enumerated game), the whole sizes are split too unless `strict`.
    Fewer than 2 units: no splits."""
    n = x.shape[1]
    ends = endpoint_rows(x)
    inner = np.setdiff1d(np.arange(len(x)), ends)
    unit = complement_units(x, inner)
    size = x.sum(1).astype(int)
    # A size whose coalitions are all in the table is never held out: nothing of it is unseen, and
    # holding out a border coalition {i} hides most of what the table says about player i.
    counts = np.bincount(np.unique(x.astype(bool), axis=0).sum(1), minlength=n + 1)
    whole = np.array([counts[s] >= math.comb(n, s) for s in range(n + 1)])
    if strict or len(np.unique(unit[inner[~whole[size[inner]]]])) >= 2 * folds:
        ends = np.concatenate([ends, inner[whole[size[inner]]]])
        inner = inner[~whole[size[inner]]]
    units = np.unique(unit[inner])
    folds = min(folds, len(units))
    if folds < 2:
        return []
    stratum = np.minimum(size, n - size)
    rng = np.random.default_rng(seed)
    fold_of_unit = {}
    for s in np.unique(stratum[units]):
        members = rng.permutation(units[stratum[units] == s])
        start = int(rng.integers(folds))
        for position, u in enumerate(members):
            fold_of_unit[int(u)] = (start + position) % folds
    fold = np.array([fold_of_unit[int(u)] for u in unit[inner]])
    return [
        (np.sort(np.concatenate([ends, inner[fold != k]])), inner[fold == k])
        for k in range(folds)
        if (fold == k).any()
    ]


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
    coalitions (complement pairs held out together, `pair_folds`). At budgets near n
    coalitions the regression is barely determined and fits noise (relative errors above 1 on
    Fréchet and voting games at 2n, where the equal split is within 0.5-0.9); with more coalitions
    the held-out error picks 0, plain KernelSHAP. 0 where the folds cannot support a fit.
    `centre_sizes`: of the size-centred kernel, its held-out predictions with the training
    folds' intercept per size (`size_intercepts`)."""
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
