"""Convergence of an estimator with the number of coalitions, and a stopping rule.

Values, ranks and interval widths are recomputed on growing prefixes of the table
(its first b rows), so a user can see whether more coalitions would still move them.
Stopping rule: the Spearman correlation between the values at successive budgets
stays at or above `threshold` for `patience` steps in a row.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.stats import spearmanr

from . import estimators


def default_budgets(n_rows: int, n_players: int, steps: int = 6) -> list[int]:
    """Geometric budgets from about 2n (at least 16) to the whole table."""
    start = min(n_rows, max(16, 2 * n_players))
    budgets = np.unique(np.round(np.geomspace(start, n_rows, steps)).astype(int))
    return budgets.tolist()


def convergence(
    estimator: str,
    x: np.ndarray,
    y: np.ndarray,
    names: list[str],
    cfg: dict,
    seed: int,
    budgets: list[int] | None = None,
    threshold: float = 0.95,
    patience: int = 2,
):
    """Returns (per-contributor table, per-budget summary, decision dict)."""
    budgets = budgets or default_budgets(len(y), x.shape[1])
    long_rows, summary_rows = [], []
    previous = None
    streak = 0
    for budget in budgets:
        if budget > len(y):
            raise estimators.EstimatorError(
                f"budget {budget} exceeds the table's {len(y)} coalitions"
            )
        table, _ = estimators.attribute(estimator, x[:budget], y[:budget], names, cfg, seed)
        table = table.set_index("contributor").loc[names]
        values = table["shapley"].to_numpy()
        width = (table["ci_high"] - table["ci_low"]).to_numpy()
        rho = float(spearmanr(values, previous).statistic) if previous is not None else float("nan")
        streak = streak + 1 if rho >= threshold else 0
        summary_rows.append(
            {
                "budget": budget,
                "spearman_with_previous": rho,
                "mean_ci_width": float(np.nanmean(width))
                if np.isfinite(width).any()
                else float("nan"),
                "converged": streak >= patience,
            }
        )
        for name, value, rank, w in zip(names, values, table["rank"], width):
            long_rows.append(
                {
                    "budget": budget,
                    "contributor": name,
                    "shapley": value,
                    "rank": int(rank),
                    "ci_width": w,
                }
            )
        previous = values
    summary = pd.DataFrame(summary_rows)
    decision = {
        "converged": bool(summary["converged"].iloc[-1]),
        "threshold": threshold,
        "patience": patience,
        "budgets": budgets,
        "advice": (
            "the ranking is stable: more coalitions are unlikely to change it"
            if summary["converged"].iloc[-1]
            else "the ranking still moves between budgets: draw more coalitions"
        ),
    }
    return pd.DataFrame(long_rows), summary, decision


def stopping_check(
    x: np.ndarray,
    utilities: dict[str, np.ndarray],
    names: list[str],
    surrogate_cfg: dict,
    seed: int,
    threshold: float = 0.95,
    patience: int = 2,
) -> dict:
    """The stopping rule on every metric of a utility table, for the workflow's coalition rounds.

    Per metric, the surrogate's hyperparameters are chosen once by cross-validation on the
    whole table, then fixed for the prefixes (no bootstrap): the check asks whether more
    coalitions still move the values, not the grid's choice. Converged when every metric is.
    """
    from .surrogate import choose_params, fit_targets

    per_metric = {}
    for metric, y in utilities.items():
        if estimators.is_constant(y):
            per_metric[metric] = {
                "converged": True,
                "spearman_last": float("nan"),
                "note": "constant utility",
            }
            continue
        # as the attribute stage chooses (odd targets, shrinkage, selection), then fixed
        params, _ = choose_params(x, fit_targets(x, y, surrogate_cfg), surrogate_cfg, seed)
        fixed = dict(surrogate_cfg, params=params, grid={}, cv_folds=0, bootstrap=0)
        _, summary, decision = convergence(
            "surrogate", x, y, names, fixed, seed, threshold=threshold, patience=patience
        )
        per_metric[metric] = {
            "converged": decision["converged"],
            "spearman_last": float(summary["spearman_with_previous"].iloc[-1]),
            "budgets": decision["budgets"],
            "params": params,  # the grid point fixed for the prefixes
        }
    return {
        "converged": all(m["converged"] for m in per_metric.values()),
        "threshold": threshold,
        "patience": patience,
        "metrics": per_metric,
    }
