"""The surrogate estimator: XGBoost on coalition indicators, Shapley values by TreeSHAP.

`attribute` fits the model `selection` chooses (`surrogate_model`), reports its values (anchored
to the measured endpoints, or corrected by the residual game's values of `msr`) and bootstraps
intervals over the coalitions. The model and its TreeSHAP values: `surrogate_model`.
"""

from __future__ import annotations

import logging
import time
from statistics import NormalDist

import numpy as np
import pandas as pd

from .msr import ratio_msr, ratio_msr_se
from .regression import endpoint_rows, measured_endpoints
from .selection import cross_validate, grid_candidates, resolve_shrinkage
from .surrogate_model import (
    SurrogateModel,
    interaction_table,
    reported_values,
)

log = logging.getLogger(__name__)


def oof_residuals(x: np.ndarray, y: np.ndarray, models: list, oof_pred: np.ndarray) -> np.ndarray:
    """Each coalition's residual from the fold model that did not see it; at the endpoints and the
    sizes the table holds whole, which every fold saw, the folds' mean."""
    seen = np.flatnonzero(np.isnan(oof_pred))
    residual = y - oof_pred
    residual[seen] = np.mean([y[seen] - m.predict(x[seen]) for m in models], axis=0)
    return residual


def corrected_values(
    x: np.ndarray, y: np.ndarray, models: list, oof_pred: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Cross-fitted regression adjustment (after Witter et al. 2025's regression-adjusted Monte
    Carlo): phi = mean over folds of phi(f_k) + the stratified estimate of phi(v - f)
    (`ratio_msr`) of the out-of-fold residuals (`oof_residuals`), so the correction is an honest
    estimate of what the trees miss, not the residual they were fitted to. Returns the values and
    the per-row residuals; the values sum to v(grand) - v(empty) exactly."""
    n = x.shape[1]
    residual = oof_residuals(x, y, models, oof_pred)
    model_values = np.mean([m.shapley(n)[0] for m in models], axis=0)
    return model_values + ratio_msr(x, residual), residual


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


def normal_intervals(
    values: np.ndarray, spread: np.ndarray, level: float
) -> tuple[np.ndarray, np.ndarray]:
    """values -/+ z spread, z the standard normal's quantile at 1 - (1 - level) / 2: symmetric
    about the point, so every interval holds its own estimate."""
    z = NormalDist().inv_cdf(1 - (1 - level) / 2)
    return values - z * spread, values + z * spread


def interval_spread(
    boot: np.ndarray,
    values: np.ndarray,
    x: np.ndarray,
    cross_fit: tuple[np.ndarray, np.ndarray],
    odd: bool,
) -> np.ndarray:
    """The standard error the intervals are drawn with, four parts added as variances: the
    bootstrap replicates' spread (which coalitions were drawn and their utilities' noise, through
    the fitted surrogate); the stratified standard error of the residual correction on
    out-of-fold residuals (`ratio_msr_se`: what the trees miss, which in-sample residuals
    understate); the values' distance to the cross-fitted regression-adjusted estimate, a
    per-contributor measure of the bias that a fixed shrinkage or an in-sample correction leaves;
    and the noise of the two measured endpoints, which every replicate keeps and which shifts
    every value by (e(grand) - e(empty)) / n, each endpoint's noise variance taken as the
    out-of-fold residuals' mean square (noise and misfit: an upper bound; twice that with `odd`
    targets, each the mean of two utilities). `cross_fit`: `corrected_values`' values and
    residuals. Without the last two parts, small games with noisy utilities covered 0.6 to 0.8
    of the exact values (benchmarks/interval_coverage.py)."""
    n = x.shape[1]
    cross_fitted, oof_residual = cross_fit
    size = x.sum(1)
    inner = (size > 0) & (size < n)
    noise = float(np.mean(oof_residual[inner] ** 2)) * (2 if odd else 1)
    endpoints = 2 * noise / n**2
    return np.sqrt(
        boot.var(0, ddof=1)
        + ratio_msr_se(x, oof_residual) ** 2
        + (values - cross_fitted) ** 2
        + endpoints
    )


def interval_support(coalitions: int, n: int, folds: bool, bootstrap: int) -> str | None:
    """Why the design gives no interval, or None where it does: the standard errors need more
    coalitions between the endpoints than contributors, out-of-fold residuals (cross-validation
    folds) and bootstrap replicates; with fewer, a narrow interval would look like certainty."""
    if bootstrap < 2:
        return f"no interval: surrogate.bootstrap is {bootstrap} (at least 2 replicates needed)"
    if coalitions <= n or not folds:
        return (
            f"no interval: {coalitions} coalitions between the endpoints for {n} contributors "
            "(more coalitions than contributors are needed to estimate the values' error)"
        )
    return None


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
    cross_fit = corrected_values(x, y, *fold_fit) if fold_fit is not None else None
    if correct == "cross_fit" and cross_fit is not None:
        values, residual = cross_fit
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
        b_model = SurrogateModel(params, seed + b + 1, threads).fit(x[rows], y[rows])
        b_shapley = b_model.shapley(n)
        if correct == "cross_fit" and residual is not None:  # its folds' residuals, resampled
            boot[b] = b_shapley[0] + ratio_msr(x[rows], residual[rows])
        else:  # the reported values' own computation on the replicate's coalitions
            boot[b] = reported_values(b_model, x[rows], y[rows], correct, anchor, b_shapley)[0]
        if progress is not None and (b + 1) % max(1, cfg["bootstrap"] // 5) == 0:
            progress(f"bootstrap {b + 1}/{cfg['bootstrap']}")
    _, _, p_top = bootstrap_intervals(boot, cfg["ci_level"], cfg["top_k"])  # the ranks only
    interval_note = interval_support(len(inner), n, fold_fit is not None, cfg["bootstrap"])
    if interval_note is None:
        spread = interval_spread(boot, values, x, cross_fit, y is not measured)
        low, high = normal_intervals(values, spread, cfg["ci_level"])
    else:
        low = high = np.full(n, np.nan)
    table = ranked_table(names, values, low, high, p_top)
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
        "interval": interval_note
        or "normal: bootstrap spread and the correction's stratified error",
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
