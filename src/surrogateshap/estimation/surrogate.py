"""The surrogate estimator: XGBoost on coalition indicators, Shapley values by TreeSHAP.

TreeSHAP runs in interventional mode with the empty coalition as the only
background row and the grand coalition as the explained point, so the values are
the exact Shapley values of the game S -> f(1_S) that the fitted trees define.
"""

from __future__ import annotations

import itertools
import logging
import time

import numpy as np
import pandas as pd

from .regression import (
    EstimatorError,
    complement_units,
    endpoint_rows,
    kernel,
    kernel_shrinkage,
    measured_endpoints,
    pair_folds,
    size_intercepts,
)

log = logging.getLogger(__name__)


def _regressor(params: dict, seed: int, threads: int):
    import xgboost

    return xgboost.XGBRegressor(
        objective="reg:squarederror",
        tree_method="hist",
        random_state=seed,
        n_jobs=threads,
        **params,
    )


class SurrogateModel:
    """XGBoost trees, optionally on top of an additive base learner.

    With `base: linear` in the parameters, a ridge regression on the indicators takes
    the additive part and the trees fit its residuals; the Shapley value of the
    additive part from the empty coalition to the grand one is just its coefficient,
    so the values are coef + TreeSHAP(trees). With `base: kernel` the additive part is
    KernelSHAP's solution on the same coalitions (ridge where the rows cannot determine
    it: an endpoint missing or fewer coalitions than players), so the trees only add the
    non-additive structure they find to it. Small budgets favour the additive part, large
    ones the trees. The ridge penalty is chosen by
    efficient leave-one-out (`ridge_alpha: auto`, the default) or fixed: a fixed penalty
    of 1 shrank an additive game's values by half at 2n coalitions.
    """

    RIDGE_ALPHAS = np.logspace(-4, 2, 13)
    BASES = ("none", "linear", "kernel")

    def __init__(self, params: dict, seed: int, threads: int):
        params = dict(params)
        self.base = params.pop("base", "none")
        if self.base not in self.BASES:
            raise ValueError(
                f"surrogate base {self.base!r}: expected one of {', '.join(self.BASES)}"
            )
        self.ridge = params.pop("ridge_alpha", "auto")
        self.shrink = params.pop("kernel_shrink", "auto")
        # a free intercept per coalition size in the kernel base (`regression.kernel_system`)
        self.centre_sizes = bool(params.pop("kernel_centre_sizes", False))
        # n_estimators 0: the additive part alone (a candidate the cross-validation may pick)
        self.trees = _regressor(params, seed, threads) if params.get("n_estimators") != 0 else None
        self.coef = None
        self.intercept = 0.0
        self.size_intercept = None  # per size 0..n, with kernel_centre_sizes

    def fit(self, x: np.ndarray, y: np.ndarray) -> SurrogateModel:
        residual = y
        if self.base == "kernel" and self._fit_kernel_base(x, y):
            residual = y - self._additive(x)
        elif self.base in ("linear", "kernel"):
            from sklearn.linear_model import Ridge, RidgeCV

            linear = (
                RidgeCV(alphas=self.RIDGE_ALPHAS)
                if self.ridge == "auto"
                else Ridge(alpha=float(self.ridge))
            ).fit(x, y)
            self.coef, self.intercept = linear.coef_.astype(np.float64), float(linear.intercept_)
            residual = y - self._additive(x)
        if self.trees is not None:
            self.trees.fit(x, residual)
        return self

    def _fit_kernel_base(self, x: np.ndarray, y: np.ndarray) -> bool:
        """KernelSHAP's constrained least squares as the additive part: intercept v(empty), coefficients
        summing to v(grand) - v(empty). False (ridge instead) where the rows cannot determine it: an
        endpoint missing (e.g. from a cross-validation fold) or fewer coalitions than players."""
        size = x.sum(1)
        if not ((size == 0).any() and (size == x.shape[1]).any()):
            return False
        centre = self.centre_sizes
        try:
            shrink = (
                kernel_shrinkage(x, y, centre_sizes=centre)
                if self.shrink == "auto"
                else float(self.shrink)
            )
            coef = kernel(x, y, shrink, centre_sizes=centre)
        except EstimatorError:
            return False
        self.coef, self.intercept = coef.astype(np.float64), float(y[size == 0].mean())
        # the intercepts are v(empty) at both ends, so the values stay coef (+ the trees')
        self.size_intercept = size_intercepts(x, y, self.coef) if centre else None
        return True

    def _additive(self, x: np.ndarray) -> np.ndarray:
        if self.coef is None:
            return np.zeros(len(x))
        if self.size_intercept is not None:
            return self.size_intercept[x.sum(1).astype(int)] + x @ self.coef
        return self.intercept + x @ self.coef

    def predict(self, x: np.ndarray) -> np.ndarray:
        if self.trees is None:
            return self._additive(x)
        return self.trees.predict(x).astype(np.float64) + self._additive(x)

    def shapley(self, n: int) -> tuple[np.ndarray, float, float]:
        values, f_empty, f_grand = (
            tree_shapley(self.trees, n) if self.trees is not None else (np.zeros(n), 0.0, 0.0)
        )
        if self.coef is not None:
            values = values + self.coef
            f_empty += self.intercept
            f_grand += self.intercept + float(self.coef.sum())
        return values, f_empty, f_grand


def grid_candidates(cfg: dict) -> list[dict]:
    """Every combination of the grid's lists, over the fixed parameters, less those that are no
    model: `n_estimators: 0` (the additive base alone) with `base: none` (a grid that lists both,
    e.g. a user's `base: [none, linear]` merged over the default's `n_estimators: [0, 300]`)."""
    fixed = dict(cfg["params"])
    grid = cfg.get("grid") or {}
    names = sorted(grid)
    combos = [
        dict(fixed, **dict(zip(names, values)))
        for values in itertools.product(*(grid[n] for n in names))
    ]
    kept = [
        c for c in combos if not (c.get("n_estimators") == 0 and c.get("base", "none") == "none")
    ]
    if not kept:
        raise ValueError(
            "surrogate.grid: every combination has n_estimators 0 with base none (no model); "
            "add trees (n_estimators > 0) or an additive base (linear or kernel)"
        )
    return kept


def resolve_shrinkage(
    candidates: list[dict], x: np.ndarray, y: np.ndarray, seed: int
) -> list[dict]:
    """The kernel base's pull towards the equal split (`regression.kernel_shrinkage`), chosen once
    on the whole table (once per setting of `kernel_centre_sizes`) instead of again inside every
    fold and bootstrap replicate."""

    def auto(c: dict) -> bool:
        return c.get("base") == "kernel" and c.get("kernel_shrink", "auto") == "auto"

    def centred(c: dict) -> bool:
        return bool(c.get("kernel_centre_sizes", False))

    shrinks: dict[bool, float | None] = {}
    for centre in {centred(c) for c in candidates if auto(c)}:
        try:
            shrinks[centre] = kernel_shrinkage(x, y, seed=seed, centre_sizes=centre)
        except EstimatorError:  # no endpoints: the base falls back to ridge anyway
            shrinks[centre] = None
    resolved = []
    for c in candidates:
        shrink = shrinks.get(centred(c)) if auto(c) else None
        resolved.append(c if shrink is None else dict(c, kernel_shrink=shrink))
    return resolved


def _plain_folds(x: np.ndarray, folds: int, seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """Shuffled K-fold over the coalitions between the endpoints (which stay in every training
    fold): the folds for utilities fitted as they are, where a held-out complement is no leak."""
    from sklearn.model_selection import KFold

    ends = endpoint_rows(x)
    inner = np.setdiff1d(np.arange(len(x)), ends)
    folds = min(folds, len(inner))
    if folds < 2:
        return []
    splitter = KFold(n_splits=folds, shuffle=True, random_state=seed)
    return [
        (np.concatenate([ends, inner[train]]), inner[test]) for train, test in splitter.split(inner)
    ]


SELECTIONS = ("heldout_error", "heldout_values")
# `select: heldout_values` leaves the utilities' choice for another model family only where the
# values' held-out score is ahead by more than this many standard errors of the difference
VALUE_MARGIN = 1.0


def cross_validate(
    x: np.ndarray,
    y: np.ndarray,
    candidates: list[dict],
    folds: int,
    seed: int,
    threads: int,
    keep_models: bool = False,
    pairs: bool = False,
    select: str = "heldout_error",
    correct: str = "none",
    anchor: bool = True,
):
    """Choose parameters by K-fold cross-validation over the coalitions between the endpoints (folds
    from `pair_folds` with `pairs`, else plain shuffled folds); return them and their out-of-fold
    R^2, and with `keep_models` also the chosen candidate's fold models and out-of-fold predictions
    (NaN at the endpoints). The measured endpoints stay in every training fold: they anchor the
    values (and the kernel base) whatever the fold, so they are not what the choice rests on.

    `select`: `heldout_error` picks the least held-out squared error of the utilities.
    `heldout_values` takes the least such error within each `model_family` (e.g. the kernel base
    alone; the kernel base with trees of any depth) and keeps the family of the least error
    overall unless another family's values have a held-out error lower by more than VALUE_MARGIN
    standard errors (`heldout_value_scores`, the values computed as `attribute` reports them:
    `correct`, `anchor`); of those, the least. The two criteria part where it matters most, on
    whether trees are used at all: trees can predict a step function's held-out utilities better
    and give worse values. Within a family the utilities' error is the less noisy guide, and the
    margin keeps the values' noisy estimate from overruling it by chance (on a Fréchet-distance
    proxy game it picked the kernel base alone, 2.5 times worse than trees, in 1 of 8 draws)."""
    if select not in SELECTIONS:
        raise ValueError(f"surrogate.select {select!r}: expected one of {', '.join(SELECTIONS)}")
    if select == "heldout_values" and correct == "cross_fit":
        raise ValueError(
            "surrogate.select heldout_values needs residual_correction none or in_sample "
            "(cross_fit would need folds within the folds)"
        )
    splits = pair_folds(x, folds, seed) if pairs else _plain_folds(x, folds, seed)
    if not splits:
        return (candidates[0], float("nan"), None) if keep_models else (candidates[0], float("nan"))
    inner = np.concatenate([test for _, test in splits])
    target = y[inner]
    errors, fits = [], []
    for params in candidates:
        pred = np.full(len(y), np.nan)
        models = []
        for train, test in splits:
            model = SurrogateModel(params, seed, threads).fit(x[train], y[train])
            pred[test] = model.predict(x[test])
            models.append(model)
        errors.append(float(np.mean((pred[inner] - target) ** 2)))
        fits.append((models, pred))
    chosen = int(np.argmin(errors))
    if select == "heldout_values":
        # each family's best by the utilities' error, then the families by the values' error
        winners: dict[tuple, int] = {}
        for i, c in enumerate(candidates):
            f = model_family(c)
            if f not in winners or errors[i] < errors[winners[f]]:
                winners[f] = i
        finalists = sorted(winners.values())
        if len(finalists) > 1:
            control = value_control(candidates)
            same = [i for i, c in enumerate(candidates) if c == control]
            controls = (
                fits[same[0]][0]
                if same
                else [SurrogateModel(control, seed, threads).fit(x[t], y[t]) for t, _ in splits]
            )
            reference = finalists.index(chosen)
            scores, se = heldout_value_scores(
                x, y, splits, [fits[i][0] for i in finalists], controls, correct, anchor, reference
            )
            # another family only where its values are ahead beyond the scores' noise
            ahead = scores - scores[reference] < -VALUE_MARGIN * se
            if ahead.any():
                chosen = finalists[int(np.flatnonzero(ahead)[np.argmin(scores[ahead])])]
    best, (best_models, best_pred) = candidates[chosen], fits[chosen]
    total = float(np.sum((target - target.mean()) ** 2))
    r2 = (
        1.0 - float(np.sum((best_pred[inner] - target) ** 2)) / total if total > 0 else float("nan")
    )
    if keep_models:
        return best, r2, (best_models, best_pred)
    return best, r2


def reported_values(
    model: SurrogateModel,
    x: np.ndarray,
    y: np.ndarray,
    correct: str,
    anchor: bool,
    shapley: tuple[np.ndarray, float, float] | None = None,
) -> tuple[np.ndarray, np.ndarray | None]:
    """The values `attribute` reports for a model fitted to (x, y), and the per-row residuals
    they were corrected with (None where uncorrected): with trees and `in_sample`, plus the
    player-and-size stratified estimate of the residual game's values (`ratio_msr`); otherwise,
    with `anchor`, the measured endpoints in place of the model's (`anchor_endpoints`).
    `shapley`: `model.shapley(n)`, where already known."""
    values, f_empty, f_grand = shapley or model.shapley(x.shape[1])
    if correct == "in_sample" and model.trees is not None:
        residual = y - model.predict(x)
        return values + ratio_msr(x, residual), residual
    if anchor:
        values = anchor_endpoints(values, f_empty, f_grand, *measured_endpoints(x, y))
    return values, None


def model_family(params: dict) -> tuple:
    """What kind of model a candidate is: its additive base and whether it has trees (and the
    kernel base's centring); the rest of the grid (depth, learning rate, ...) tunes within a family."""
    return (
        params.get("base", "none"),
        params.get("n_estimators") == 0,
        bool(params.get("kernel_centre_sizes", False)),
    )


def value_control(candidates: list[dict]) -> dict:
    """The control of `heldout_value_scores`: the kernel base alone (KernelSHAP's solution, shrunk
    as the candidates' kernel base is), whatever the grid. Any control keeps the scores unbiased;
    this linear fit, stable from fold to fold, made a better one in trials than the candidate with
    the least held-out error (docs/estimators-benchmark.md). A candidate that is the kernel base
    alone has the same parameters, so its fold models serve."""
    shrink = next(
        (
            c["kernel_shrink"]
            for c in candidates
            if c.get("base") == "kernel" and "kernel_shrink" in c
        ),
        "auto",
    )
    for c in candidates:
        if c.get("base") == "kernel" and c.get("n_estimators") == 0:
            if not c.get("kernel_centre_sizes", False) and c.get("kernel_shrink", "auto") == shrink:
                return c
    return {"base": "kernel", "n_estimators": 0, "kernel_shrink": shrink}


def heldout_value_scores(
    x: np.ndarray,
    y: np.ndarray,
    splits: list[tuple[np.ndarray, np.ndarray]],
    fold_models: list[list[SurrogateModel]],
    control_models: list[SurrogateModel],
    correct: str,
    anchor: bool,
    reference: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """Each candidate's held-out error of the values, up to a constant common to all, and the
    standard error of its difference to candidate `reference`'s. The score is the sum over folds k
    of ||phi_k - psi_k||^2, where phi_k are the values the candidate reports from fold k's training
    rows and psi_k = phi(g_k) + MSR(v - g_k) over fold k's held-out rows (with the rows in every
    training fold: the endpoints and the sizes the table holds whole), g_k being the control's fold
    model (`value_control`). Given the training rows psi_k is an unbiased estimate of the game's
    values (regression-adjusted Monte Carlo, Witter et al. 2025), independent of phi_k, so the
    expected score is the fold estimator's squared error plus E||psi_k - phi||^2, the same for
    every candidate. Unlike the utilities' held-out error it sees what the values are for: trees
    can predict a step function's held-out utilities better and still give worse values.

    A difference of two scores is -2 sum_k <phi_k(c) - phi_k(ref), psi_k> plus terms fixed by the
    training rows, so its noise is that of a sum over the held-out rows; its standard error comes
    from the spread of their terms within each size stratum (a coalition and its complement, held
    out together, as one unit)."""
    n = x.shape[1]
    always = np.flatnonzero(
        np.logical_and.reduce([np.isin(np.arange(len(x)), t) for t, _ in splits])
    )
    unit = complement_units(x, np.arange(len(x)))
    stratum = np.minimum(x.sum(1), n - x.sum(1)).astype(int)
    scores = np.zeros(len(fold_models))
    variance = np.zeros(len(fold_models))
    for k, ((train, test), g) in enumerate(zip(splits, control_models)):
        rows = np.union1d(test, always)
        terms = msr_terms(x[rows], y[rows] - g.predict(x[rows]))
        psi = g.shapley(n)[0] + terms.sum(0)
        phis = [reported_values(m[k], x[train], y[train], correct, anchor)[0] for m in fold_models]
        drawn = ~np.isin(rows, always)  # the held-out rows: the only random part of psi_k
        for c, phi in enumerate(phis):
            scores[c] += float(np.sum((phi - psi) ** 2))
            t = terms[drawn] @ (phi - phis[reference])
            variance[c] += 4 * _stratified_variance(t, unit[rows][drawn], stratum[rows][drawn])
    return scores, np.sqrt(variance)


def _stratified_variance(t: np.ndarray, unit: np.ndarray, stratum: np.ndarray) -> float:
    """Variance of sum(t) where the rows come in units (summed first) drawn at random within
    each stratum: the units' sample variance times their number, per stratum."""
    total = 0.0
    for s in np.unique(stratum):
        ids, sums = np.unique(unit[stratum == s], return_inverse=True)
        per_unit = np.bincount(sums, weights=t[stratum == s], minlength=len(ids))
        if len(per_unit) > 1:
            total += len(per_unit) * float(np.var(per_unit, ddof=1))
    return total


def _size_strata(x: np.ndarray, r: np.ndarray, within) -> np.ndarray:
    """(r(N) - r(empty)) / n plus, for each size s strictly between, within(z, r_s, s): the
    contribution of the table's coalitions of that size (indicators z, values r_s)."""
    n = x.shape[1]
    size = x.sum(1).astype(int)
    values = np.zeros(n)
    for s in np.unique(size):
        rows = size == s
        if s == 0:
            values -= r[rows].mean() / n
        elif s == n:
            values += r[rows].mean() / n
        else:
            values += within(x[rows].astype(np.float64), np.asarray(r[rows], np.float64), s)
    return values


def msr_terms(x: np.ndarray, r: np.ndarray) -> np.ndarray:
    """Each row's term of `stratified_msr(x, r)` (rows x players; they sum to it): r(S) times
    (1[i in S] / s - 1[i not in S] / (n - s)) over the number of the table's coalitions of size s,
    and at the endpoints -r(empty) / n and r(N) / n over their number of rows."""
    n = x.shape[1]
    size = x.sum(1).astype(int)
    count = np.bincount(size, minlength=n + 1)[size]
    z = x.astype(np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):  # the endpoints take -1/n and 1/n
        weights = np.where(z > 0, 1 / size[:, None], -1 / (n - size[:, None]))
    return np.asarray(r, np.float64)[:, None] * weights / count[:, None]


def stratified_msr(x: np.ndarray, r: np.ndarray) -> np.ndarray:
    """Shapley values of a game from its values on the sampled coalitions, by maximum sample reuse
    within each size: phi_i = (r(N) - r(empty)) / n + sum over sizes s of the mean over the
    table's coalitions S of size s of r(S) (1[i in S] / s - 1[i not in S] / (n - s)), unbiased
    where each size's coalitions are a uniform sample of that size (every sampler here draws so).
    A size without coalitions adds nothing. With complement pairs at equal counts per size (the
    leverage design) a constant r adds exactly 0. The values sum to r(N) - r(empty)."""
    return msr_terms(x, r).sum(0)


def ratio_msr(x: np.ndarray, r: np.ndarray) -> np.ndarray:
    """Shapley values of a game from its values on the sampled coalitions, stratified by player and
    size as SVARM (Kolpaczki et al. 2024) does: phi_i = (1/n) sum over sizes s of [the mean of r over
    the table's coalitions of size s that hold i] - [the mean over those of size s that do not]
    (r(N) and r(empty) for the strata only they form). Unlike `stratified_msr`'s Horvitz-Thompson
    weights, each stratum is divided by the number of its coalitions the table actually holds (a
    ratio, Hajek, estimate): a residual whose level varies from size to size adds nothing, where
    the Horvitz-Thompson weights turn the chance count of i's coalitions into noise. A stratum the
    table holds no coalition of adds nothing. Consistent rather than unbiased; the values are then
    shifted equally (an exact, uniform shift, as `anchor_endpoints`) to sum to r(N) - r(empty), as
    `stratified_msr`'s do. As `attribute`'s residual correction it cut the benchmark's errors on
    the voting game at 50n (0.315 to 0.297) and the Fréchet game at 5n-20n (by a fifth to a
    quarter) and moved the other rows by 0.002 or less, but for tanh at 5n (0.224 to 0.240)
    (docs/estimators-benchmark.md)."""
    n = x.shape[1]

    def within(z, rs, s):
        held, missed = z.sum(0), len(rs) - z.sum(0)
        level = rs.mean()  # a stratum with no coalition: the size's mean, so it adds 0
        inside = np.where(held > 0, rs @ z / np.maximum(held, 1), level)
        outside = np.where(missed > 0, rs @ (1 - z) / np.maximum(missed, 1), level)
        return (inside - outside) / n

    values = _size_strata(x, r, within)
    v_empty, v_grand = measured_endpoints(x, r)  # an endpoint the table lacks adds 0, as above
    total = np.nan_to_num(v_grand) - np.nan_to_num(v_empty)
    return values + (total - values.sum()) / n


def corrected_values(
    x: np.ndarray, y: np.ndarray, models: list, oof_pred: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Cross-fitted regression adjustment (after Witter et al. 2025's regression-adjusted Monte
    Carlo): phi = mean over folds of phi(f_k) + the stratified estimate of phi(v - f)
    (`ratio_msr`), each coalition's residual taken from the fold model that did not see it (at the
    endpoints and the sizes the table holds whole, which every fold saw, the folds' mean), so the
    correction is an honest estimate of what the trees miss, not the residual they were fitted to. Returns the values and the per-row residuals;
    the values sum to v(grand) - v(empty) exactly."""
    n = x.shape[1]
    seen = np.flatnonzero(np.isnan(oof_pred))  # the endpoints and whole sizes: in every fold
    residual = y - oof_pred
    residual[seen] = np.mean([y[seen] - m.predict(x[seen]) for m in models], axis=0)
    model_values = np.mean([m.shapley(n)[0] for m in models], axis=0)
    return model_values + ratio_msr(x, residual), residual


def tree_shapley(model, n: int) -> tuple[np.ndarray, float, float]:
    """Interventional TreeSHAP of the grand coalition against the empty one.

    Returns (values, f(empty), f(grand)); the values sum to f(grand) - f(empty).
    """
    import shap

    explainer = shap.TreeExplainer(
        model, data=np.zeros((1, n)), feature_perturbation="interventional"
    )
    values = np.asarray(explainer.shap_values(np.ones((1, n))), dtype=np.float64).reshape(-1)
    f_empty, f_grand = model.predict(np.vstack([np.zeros(n), np.ones(n)])).astype(np.float64)
    return values, float(f_empty), float(f_grand)


def anchor_endpoints(
    values: np.ndarray, f_empty: float, f_grand: float, v_empty: float, v_grand: float
) -> np.ndarray:
    """Replace the trees' f(empty) and f(grand) by the measured utilities.

    In the Shapley formula v(empty) and v(grand) each enter every player's value with
    weight 1/n (as the first and as the last member), so this is an exact, uniform
    shift: the values of the game that equals the surrogate everywhere but at the two
    measured endpoints. Ranks do not change; efficiency then holds exactly. An endpoint
    that was not measured is left as the trees have it.
    """
    shift = 0.0
    if np.isfinite(v_empty):
        shift += f_empty - v_empty
    if np.isfinite(v_grand):
        shift += v_grand - f_grand
    return values + shift / len(values)


def odd_targets(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """The utilities with the even part of the game taken out, where a coalition's complement is
    in the table: y(S) - (y(S) + y(N minus S)) / 2 + (v(empty) + v(grand)) / 2.

    The even game e(S) = (v(S) + v(N minus S)) / 2 has Shapley values 0 (a game and its dual
    S -> v(N minus S) have opposite values), so this leaves every Shapley value, v(empty) and
    v(grand) as they are, while the surrogate no longer spends its trees on a part that carries no
    value: the odd part of a game with pairwise terms is additive (the reason paired KernelSHAP
    is exact there), and a triple term leaves one product of three. Rows without their
    complement keep their utility. Pairwise interactions do live in the even part: they come from
    a surrogate fitted to `y` itself."""
    n = x.shape[1]
    masks = (x.astype(np.int64) << np.arange(n, dtype=np.int64)).sum(1) if n < 63 else None
    if masks is None:
        keys = [row.tobytes() for row in x.astype(bool)]
        flipped = [row.tobytes() for row in ~x.astype(bool)]
    else:
        keys, flipped = masks.tolist(), ((1 << n) - 1 - masks).tolist()
    row_of = {k: i for i, k in enumerate(keys)}
    v_empty, v_grand = measured_endpoints(x, y)
    if not (np.isfinite(v_empty) and np.isfinite(v_grand)):
        return y
    level = (v_empty + v_grand) / 2
    out = np.array(y, dtype=np.float64)
    for i, k in enumerate(flipped):
        j = row_of.get(k)
        if j is not None and 0 < x[i].sum() < n:
            out[i] = (y[i] - y[j]) / 2 + level
    return out


def bootstrap_intervals(
    boot: np.ndarray, level: float, top_k: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Percentile intervals and P(rank <= top_k) from bootstrap replicates (replicates x players)."""
    if not len(boot):
        empty = np.full(boot.shape[1], np.nan)
        return empty, empty, empty
    alpha = (1 - level) / 2
    low, high = np.quantile(boot, [alpha, 1 - alpha], axis=0)
    ranks = (-boot).argsort(1).argsort(1) + 1
    return low, high, (ranks <= top_k).mean(0)


def ranks(values: np.ndarray) -> np.ndarray:
    """Rank 1 = largest value (ties by position)."""
    order = np.argsort(-values, kind="stable")
    rank = np.empty(len(values), dtype=np.int64)
    rank[order] = np.arange(1, len(values) + 1)
    return rank


def ranked_table(names: list[str], values: np.ndarray, low, high, p_top) -> pd.DataFrame:
    """The attribution table, sorted by rank (1 = raises the utility most)."""
    return (
        pd.DataFrame(
            {
                "contributor": names,
                "shapley": values,
                "ci_low": low,
                "ci_high": high,
                "rank": ranks(values),
                "p_top_k": p_top,
            }
        )
        .sort_values("rank", kind="stable")
        .reset_index(drop=True)
    )


def fit_targets(x: np.ndarray, y: np.ndarray, cfg: dict) -> np.ndarray:
    """What the surrogate is fitted to: the utilities, or their odd part with `odd_targets`."""
    return odd_targets(x, y) if cfg.get("odd_targets", False) else y


def choose_params(x: np.ndarray, y: np.ndarray, cfg: dict, seed: int, keep_models: bool = False):
    """The grid point `attribute` fits for these settings, and what `cross_validate` returns with
    it: the kernel base's shrinkage resolved on the whole table, then the settings' folds
    (complement pairs held out together with odd targets), selection, correction and anchoring.
    `y`: the fit targets (`fit_targets`)."""
    correct = cfg.get("residual_correction", "none")
    if correct not in ("none", "in_sample", "cross_fit"):
        raise ValueError(
            f"surrogate.residual_correction {correct!r}: expected none, in_sample or cross_fit"
        )
    return cross_validate(
        x,
        y,
        resolve_shrinkage(grid_candidates(cfg), x, y, seed),
        cfg["cv_folds"],
        seed,
        cfg["threads"],
        keep_models=keep_models,
        pairs=bool(cfg.get("odd_targets", False)),
        select=cfg.get("select", "heldout_error"),
        correct=correct,
        anchor=cfg["anchor_endpoints"],
    )


def attribute(
    x: np.ndarray,
    y: np.ndarray,
    names: list[str],
    cfg: dict,
    seed: int,
    progress=None,
    pairs: int | None = 0,
) -> tuple[pd.DataFrame, dict]:
    """Shapley values with bootstrap intervals and diagnostics for one metric.

    `pairs`: how many of the strongest pairwise interactions of the fitted surrogate to
    put in diagnostics["top_interactions"] (0: none, None: every pair computed).
    """
    n = x.shape[1]
    threads = cfg["threads"]
    started = time.time()
    measured = y
    y = fit_targets(x, y, cfg)
    correct = cfg.get("residual_correction", "none")
    anchor = cfg["anchor_endpoints"]
    select = cfg.get("select", "heldout_error")
    params, oof_r2, fold_fit = choose_params(x, y, cfg, seed, keep_models=True)
    model = SurrogateModel(params, seed, threads).fit(x, y)
    raw, f_empty, f_grand = model.shapley(n)
    v_empty, v_grand = measured_endpoints(x, y)
    raw_gap = float(raw.sum() - (v_grand - v_empty))
    if correct == "cross_fit" and fold_fit is not None:
        values, residual = corrected_values(x, y, *fold_fit)
    else:  # in_sample with trees: corrected; else anchored (if asked)
        values, residual = reported_values(model, x, y, correct, anchor, (raw, f_empty, f_grand))

    rng = np.random.default_rng(seed)
    boot = np.empty((cfg["bootstrap"], n))
    ends = endpoint_rows(x)  # kept in every replicate, as the kernel estimator's bootstrap does
    inner = np.setdiff1d(np.arange(len(y)), ends)
    for b in range(cfg["bootstrap"]):
        rows = (
            np.concatenate([ends, inner[rng.integers(0, len(inner), len(inner))]])
            if len(inner)
            else ends
        )
        b_values, b_empty, b_grand = (
            SurrogateModel(params, seed + b + 1, threads).fit(x[rows], y[rows]).shapley(n)
        )
        if residual is not None:  # the replicate's trees plus the correction on its rows
            boot[b] = b_values + ratio_msr(x[rows], residual[rows])
        else:
            boot[b] = (
                anchor_endpoints(b_values, b_empty, b_grand, v_empty, v_grand)
                if anchor
                else b_values
            )
        if progress is not None and (b + 1) % max(1, cfg["bootstrap"] // 5) == 0:
            progress(f"bootstrap {b + 1}/{cfg['bootstrap']}")
    table = ranked_table(names, values, *bootstrap_intervals(boot, cfg["ci_level"], cfg["top_k"]))
    diagnostics = {
        "estimator": "surrogate",
        "params": params,
        "select": select,
        "oof_r2": oof_r2,
        "n_coalitions": int(len(y)),
        "n_contributors": int(n),
        "surrogate_empty": f_empty,
        "surrogate_grand": f_grand,
        "measured_empty": v_empty,
        "measured_grand": v_grand,
        "sum_values": float(values.sum()),
        # How far the trees' values sum from the measured v(grand) - v(empty), before anchoring.
        "efficiency_gap": raw_gap,
        "anchored_endpoints": bool(anchor) and residual is None,
        "residual_correction": residual is not None,
        "ci_level": cfg["ci_level"],
        "bootstrap": cfg["bootstrap"],
        "top_k": cfg["top_k"],
        "seconds": time.time() - started,
    }
    if pairs != 0:
        if y is not measured or model.base == "kernel":
            # Pairwise interactions live in the even part, so they come from trees fitted to the
            # utilities themselves; and without a kernel base, whose exact main effects leave
            # a pure interaction no marginal signal for the trees' first split (x_a x_b less its
            # Shapley share is uncorrelated with x_a and with x_b).
            trees = dict(params, base="none")
            if trees.get("n_estimators") == 0:  # the kernel base alone won: trees of the fixed size
                trees["n_estimators"] = cfg["params"].get("n_estimators") or 300
            model = SurrogateModel(trees, seed, threads).fit(x, measured)
        strongest = interaction_table(model, names, values)
        diagnostics["top_interactions"] = (
            strongest if pairs is None else strongest.head(pairs)
        ).to_dict("records")
    return table, diagnostics


def tree_interactions(model, n: int, columns: list[int] | None = None) -> np.ndarray:
    """Pairwise Shapley interaction indices I[i, j] of the game S -> f(1_S), exactly.

    shap's interventional `shap_interaction_values` returns zeros silently, so this
    uses I_ij = phi_i(g with j always in) - phi_i(g with j always out), Shapley values
    of (n-1)-player games. Explaining x with j set to the baseline gives the second;
    the first is minus the values of explaining the baseline with j set to x against
    a background of x (the dual game has the same Shapley values). Two interventional
    explainers on len(columns) rows each. Returns (n, len(columns)); I[j, j] = 0.
    """
    import shap

    columns = list(range(n)) if columns is None else list(columns)
    rows = np.arange(len(columns))
    x_without = np.ones((len(columns), n))
    x_without[rows, columns] = 0
    base_with = np.zeros((len(columns), n))
    base_with[rows, columns] = 1
    from_empty = shap.TreeExplainer(
        model, data=np.zeros((1, n)), feature_perturbation="interventional"
    )
    from_grand = shap.TreeExplainer(
        model, data=np.ones((1, n)), feature_perturbation="interventional"
    )
    always_out = np.asarray(from_empty.shap_values(x_without), dtype=np.float64)
    always_in = -np.asarray(from_grand.shap_values(base_with), dtype=np.float64)
    return (always_in - always_out).T


def interaction_table(
    model: SurrogateModel, names: list[str], values: np.ndarray, max_columns: int = 64
) -> pd.DataFrame:
    """Pairwise interaction values of a fitted surrogate, strongest first: all pairs, or the
    pairs that involve the `max_columns` contributors with the largest |value| (values in `names` order)."""
    n = len(names)
    columns = (
        list(range(n)) if n <= max_columns else np.argsort(-np.abs(values))[:max_columns].tolist()
    )
    matrix = (  # the additive part has no interactions
        tree_interactions(model.trees, n, columns)
        if model.trees is not None
        else np.zeros((n, len(columns)))
    )
    seen, rows = set(), []
    for col, j in enumerate(columns):
        for i in range(n):
            pair = (min(i, j), max(i, j))
            if i != j and pair not in seen:
                seen.add(pair)
                rows.append((names[pair[0]], names[pair[1]], float(matrix[i, col])))
    table = pd.DataFrame(rows, columns=["contributor_i", "contributor_j", "interaction"])
    return table.iloc[
        np.argsort(-table["interaction"].abs().to_numpy(), kind="stable")
    ].reset_index(drop=True)
