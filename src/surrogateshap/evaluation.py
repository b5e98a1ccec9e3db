"""Proving the attributions: the retraining game, LDS, proxy fidelity, counterfactual
removal, baselines and planted ground truth.

The retraining game is the truth the proxy game approximates: the utility of a
coalition S is the metric of a model trained on S's data alone. It is far too costly
to play for Shapley values, but a few held-out coalitions are enough to test what an
attribution predicts:

- LDS (linear datamodeling score): for held-out coalitions drawn from the datamodel
  distribution (each contributor kept with probability alpha), the Spearman
  correlation between the utility an attribution predicts, v(empty) + sum of the
  members' values, and the retrained utility; one correlation per draw seed, then
  their mean and spread. With pairwise interactions (the surrogate's), the
  second-order prediction is reported as its own method, never mixed in.
- proxy fidelity: the same coalitions' proxy utilities against retrained ones.
- counterfactual removal: retrain without each method's top-k (and bottom-k)
  contributors and measure the metric change.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from .game import _rng


# --------------------------------------------------------------------------- coalitions
def heldout_coalitions(n: int, per_seed: int, alpha: float, seeds: list[int]) -> pd.DataFrame:
    """Held-out coalitions of the datamodel distribution, `per_seed` distinct ones per seed,
    plus the empty and the grand coalition (draw = -1: the retraining game's endpoints,
    not part of any LDS draw)."""
    rows = [(-1, ()), (-1, tuple(range(n)))]
    for seed in seeds:
        rng = _rng(seed, "heldout")
        drawn: dict[tuple[int, ...], None] = {}
        limit = min(per_seed, 2**n - 2) if n < 63 else per_seed
        while len(drawn) < limit:
            members = tuple(int(i) for i in np.flatnonzero(rng.random(n) < alpha))
            if 0 < len(members) < n:
                drawn.setdefault(members, None)
        rows.extend((seed, members) for members in drawn)
    return pd.DataFrame({"draw": [r[0] for r in rows], "members_index": [list(r[1]) for r in rows]})


def coalition_items(
    item_contributors: pd.Series, contributor_names: list[str], members
) -> np.ndarray:
    """Boolean mask of the items a coalition's model may be trained on: its members' items, no others."""
    allowed = {contributor_names[i] for i in members}
    return item_contributors.isin(allowed).to_numpy()


def removal_coalitions(
    rankings: dict[tuple[str, str], list[int]], n: int, ks: list[int]
) -> pd.DataFrame:
    """Grand coalition minus each ranking's top-k / bottom-k; one row per (method, metric, k, side),
    with the coalition's members as sorted indices (identical coalitions are retrained once)."""
    rows = []
    for (method, metric), order in rankings.items():
        for k in ks:
            for side, removed in (("top", order[:k]), ("bottom", order[::-1][:k])):
                members = sorted(set(range(n)) - set(removed))
                rows.append(
                    {
                        "method": method,
                        "metric": metric,
                        "k": int(k),
                        "side": side,
                        "removed_index": sorted(int(i) for i in removed),
                        "members_index": members,
                    }
                )
    return pd.DataFrame(rows)


# --------------------------------------------------------------------------- predictions and scores
def main_effects(values: np.ndarray, interactions: np.ndarray) -> np.ndarray:
    """a_i of v(S) = v(empty) + sum_S a_i + sum_{i<j in S} I_ij given Shapley values and the
    Shapley interaction index: for a game of order <= 2, phi_i = a_i + (1/2) sum_j I_ij."""
    return values - 0.5 * (interactions.sum(1) - np.diag(interactions))


def predict(
    x: np.ndarray, v_empty: float, values: np.ndarray, interactions: np.ndarray | None = None
) -> np.ndarray:
    """Utility predicted for coalitions x (rows 0/1): additive, or second order with interactions
    (exact for games with no terms above order 2)."""
    x = np.asarray(x, dtype=np.float64)
    if interactions is None:
        return v_empty + x @ values
    pairs = interactions - np.diag(np.diag(interactions))
    return (
        v_empty
        + x @ main_effects(values, interactions)
        + 0.5 * np.einsum("ri,ij,rj->r", x, pairs, x)
    )


def spearman(a, b) -> float:
    """Spearman correlation; NaN when either side is constant (no ranking to compare)."""
    from scipy.stats import spearmanr

    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if len(a) < 2 or np.ptp(a) == 0 or np.ptp(b) == 0:
        return float("nan")
    return float(spearmanr(a, b).statistic)


def lds(predicted: np.ndarray, actual: np.ndarray, draws: np.ndarray) -> dict:
    """LDS per draw seed, and their mean and standard deviation."""
    per_draw = {
        int(d): spearman(predicted[draws == d], actual[draws == d]) for d in np.unique(draws)
    }
    scores = np.array([v for v in per_draw.values() if np.isfinite(v)])
    return {
        "lds_mean": float(scores.mean()) if len(scores) else float("nan"),
        "lds_std": float(scores.std(ddof=1)) if len(scores) > 1 else float("nan"),
        "per_draw": per_draw,
    }


# --------------------------------------------------------------------------- baselines
def similarity_values(
    generated: np.ndarray,
    training: np.ndarray,
    training_owner: np.ndarray,
    n: int,
    how: str,
    chunk: int = 1024,
) -> np.ndarray:
    """Feature-similarity attribution (Wang et al. 2023): cosine similarity between the generated
    images and each contributor's training images, the mean over all pairs (`mean`) or, for each
    generated image, its most similar training image of the contributor (`max`), averaged.
    Centred across contributors: raw similarities are all about equal and positive, so their sum
    over a coalition would mostly count its members."""

    def unit(v):
        v = v.reshape(len(v), -1).astype(np.float64)
        return v / np.maximum(np.linalg.norm(v, axis=1, keepdims=True), 1e-12)

    g, t = unit(generated), unit(training)
    if how == "mean":
        values = np.array([g.mean(0) @ t[training_owner == c].mean(0) for c in range(n)])
    else:
        values = np.zeros((n,))
        for start in range(0, len(g), chunk):
            sims = g[start : start + chunk] @ t.T
            for c in range(n):
                values[c] += sims[:, training_owner == c].max(1).sum()
        values /= len(g)
    return values - values.mean()


def expected_placements(planted: list[dict], names: list[str], metrics: list[str]) -> list[dict]:
    """Ground truth by construction: each planted contributor, the metric it moves, where it
    belongs and within how many places (each entry's `expect`, else its effect's default: see
    `surrogateshap.planted`)."""
    from .planted import expectations

    return [e for e in expectations(planted, metrics) if e["contributor"] in names]


def placement_table(values: pd.DataFrame, expected: list[dict]) -> pd.DataFrame:
    """For each method, metric and planted contributor: its rank, and whether it lands within the
    planted group's size at the expected end (e.g. the two planted FD raisers in the top two)."""
    rows = []
    groups: dict[tuple[str, str], int] = {}
    for e in expected:
        groups[(e["metric"], e["side"])] = groups.get((e["metric"], e["side"]), 0) + 1
    for (method, metric), table in values.groupby(["method", "metric"], sort=False):
        n = len(table)
        rank = dict(zip(table["contributor"], table["rank"]))
        for e in (e for e in expected if e["metric"] == metric):
            r = int(rank[e["contributor"]])
            k = e.get("within") or groups[(metric, e["side"])]
            where = r if e["side"] == "top" else n + 1 - r
            rows.append(
                {
                    "method": method,
                    "metric": metric,
                    "contributor": e["contributor"],
                    "effect": e["effect"],
                    "expected": f"{e['side']} {k}",
                    "rank": r,
                    "found": bool(where <= k),
                }
            )
    return pd.DataFrame(
        rows, columns=["method", "metric", "contributor", "effect", "expected", "rank", "found"]
    )
