"""How the surrogate is chosen: the grid of candidates, the kernel base's shrinkage resolved once,
and K-fold cross-validation over the coalitions between the endpoints, by the utilities' held-out
error or, between model families, by a held-out score of the values.
"""

from __future__ import annotations

import itertools

import numpy as np

from .msr import msr_terms, stratified_variance
from .regression import (
    EstimatorError,
    complement_units,
    endpoint_rows,
    kernel_shrinkage,
    pair_folds,
)
from .surrogate_model import SurrogateModel, reported_values


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
            variance[c] += 4 * stratified_variance(t, unit[rows][drawn], stratum[rows][drawn])
    return scores, np.sqrt(variance)
