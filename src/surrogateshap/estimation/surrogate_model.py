"""The surrogate model: XGBoost trees on coalition indicators, optionally over an additive base
(ridge, or the kernel regression of `regression`), its Shapley values and pairwise interactions
by interventional TreeSHAP, and the values `surrogate.attribute` reports from it.

TreeSHAP runs in interventional mode with the empty coalition as the only
background row and the grand coalition as the explained point, so the values are
the exact Shapley values of the game S -> f(1_S) that the fitted trees define.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from .msr import ratio_msr
from .regression import (
    EstimatorError,
    kernel,
    kernel_shrinkage,
    measured_endpoints,
    size_intercepts,
)


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
