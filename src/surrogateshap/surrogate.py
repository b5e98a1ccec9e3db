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
        self.trees = _regressor(params, seed, threads)
        self.coef = None
        self.intercept = 0.0

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
        self.trees.fit(x, residual)
        return self

    def _fit_kernel_base(self, x: np.ndarray, y: np.ndarray) -> bool:
        """KernelSHAP's constrained least squares as the additive part: intercept v(empty), coefficients
        summing to v(grand) - v(empty). False (ridge instead) where the rows cannot determine it: an
        endpoint missing (e.g. from a cross-validation fold) or fewer coalitions than players."""
        from .estimators import EstimatorError, kernel

        size = x.sum(1)
        if not ((size == 0).any() and (size == x.shape[1]).any()):
            return False
        try:
            coef = kernel(x, y)
        except EstimatorError:
            return False
        self.coef, self.intercept = coef.astype(np.float64), float(y[size == 0].mean())
        return True

    def _additive(self, x: np.ndarray) -> np.ndarray:
        return self.intercept + x @ self.coef if self.coef is not None else np.zeros(len(x))

    def predict(self, x: np.ndarray) -> np.ndarray:
        return self.trees.predict(x).astype(np.float64) + self._additive(x)

    def shapley(self, n: int) -> tuple[np.ndarray, float, float]:
        values, f_empty, f_grand = tree_shapley(self.trees, n)
        if self.coef is not None:
            values = values + self.coef
            f_empty += self.intercept
            f_grand += self.intercept + float(self.coef.sum())
        return values, f_empty, f_grand


def grid_candidates(cfg: dict) -> list[dict]:
    """Every combination of the grid's lists, over the fixed parameters."""
    fixed = dict(cfg["params"])
    grid = cfg.get("grid") or {}
    names = sorted(grid)
    return [
        dict(fixed, **dict(zip(names, values)))
        for values in itertools.product(*(grid[n] for n in names))
    ]


def _endpoint_rows(x: np.ndarray) -> np.ndarray:
    """Rows of the empty and the grand coalition."""
    size = x.sum(1)
    return np.flatnonzero((size == 0) | (size == x.shape[1]))


def cross_validate(
    x: np.ndarray, y: np.ndarray, candidates: list[dict], folds: int, seed: int, threads: int
):
    """Choose parameters by K-fold squared error over the coalitions between the endpoints; return
    them and their out-of-fold R^2. The measured endpoints stay in every training fold: they anchor
    the values (and the kernel base) whatever the fold, so they are not what the choice rests on."""
    from sklearn.model_selection import KFold

    ends = _endpoint_rows(x)
    inner = np.setdiff1d(np.arange(len(y)), ends)
    folds = min(folds, len(inner))
    if folds < 2:
        return candidates[0], float("nan")
    splitter = KFold(n_splits=folds, shuffle=True, random_state=seed)
    splits = [
        (np.concatenate([ends, inner[train]]), inner[test]) for train, test in splitter.split(inner)
    ]
    target = y[inner]
    best, best_err, best_pred = None, np.inf, None
    for params in candidates:
        pred = np.empty(len(y))
        for train, test in splits:
            pred[test] = (
                SurrogateModel(params, seed, threads).fit(x[train], y[train]).predict(x[test])
            )
        err = float(np.mean((pred[inner] - target) ** 2))
        if err < best_err:
            best, best_err, best_pred = params, err, pred[inner]
    total = float(np.sum((target - target.mean()) ** 2))
    r2 = 1.0 - float(np.sum((best_pred - target) ** 2)) / total if total > 0 else float("nan")
    return best, r2


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


def measured_endpoints(x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """Mean measured utility of the empty and the grand coalition (NaN if absent)."""
    size = x.sum(1)
    empty, grand = y[size == 0], y[size == x.shape[1]]
    return (
        float(empty.mean()) if len(empty) else float("nan"),
        float(grand.mean()) if len(grand) else float("nan"),
    )


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
    params, oof_r2 = cross_validate(x, y, grid_candidates(cfg), cfg["cv_folds"], seed, threads)
    model = SurrogateModel(params, seed, threads).fit(x, y)
    values, f_empty, f_grand = model.shapley(n)
    v_empty, v_grand = measured_endpoints(x, y)
    raw_gap = float(values.sum() - (v_grand - v_empty))
    anchor = cfg["anchor_endpoints"]
    if anchor:
        values = anchor_endpoints(values, f_empty, f_grand, v_empty, v_grand)

    rng = np.random.default_rng(seed)
    boot = np.empty((cfg["bootstrap"], n))
    ends = _endpoint_rows(x)  # kept in every replicate, as the kernel estimator's bootstrap does
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
        boot[b] = (
            anchor_endpoints(b_values, b_empty, b_grand, v_empty, v_grand) if anchor else b_values
        )
        if progress is not None and (b + 1) % max(1, cfg["bootstrap"] // 5) == 0:
            progress(f"bootstrap {b + 1}/{cfg['bootstrap']}")
    table = ranked_table(names, values, *bootstrap_intervals(boot, cfg["ci_level"], cfg["top_k"]))
    diagnostics = {
        "estimator": "surrogate",
        "params": params,
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
        "anchored_endpoints": bool(anchor),
        "ci_level": cfg["ci_level"],
        "bootstrap": cfg["bootstrap"],
        "top_k": cfg["top_k"],
        "seconds": time.time() - started,
    }
    if pairs != 0:
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
    matrix = tree_interactions(model.trees, n, columns)  # the additive part has no interactions
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
