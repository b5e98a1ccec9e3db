"""Proving the attributions: the retraining game, LDS, proxy fidelity, counterfactual
removal, baselines and planted ground truth.

The retraining game is the truth the proxy game approximates: the utility of a
coalition S is the metric of a model trained on S's data alone. It is far too costly
to play for Shapley values, but a few held-out coalitions are enough to test what an
attribution predicts:

- LDS (linear datamodeling score): for held-out coalitions drawn from the datamodel
  distribution (each contributor kept with probability alpha), the Spearman
  correlation between the utility an attribution predicts, v(empty) + sum of the
  members' values, and the retrained utility (mean over the retraining replicates),
  over all held-out coalitions, with a bootstrap interval over coalitions and, for every
  method, the paired difference to SurrogateSHAP on the same bootstrap draws. Each draw
  seed's own LDS is kept as replication. With pairwise interactions (the surrogate's),
  the second-order prediction is reported as its own method, never mixed in.
- noise ceiling: how well the retraining game agrees with itself across replicates.
- chance and size: the LDS of many random value vectors (their mean and 95th percentile are the
  chance level: values with a non-zero sum already predict a utility that moves with coalition
  size), and beside every LDS its partial rank correlation given the coalition size, the part
  of the prediction that is about which contributors are in, not how many.
- proxy fidelity: the same coalitions' proxy utilities against retrained ones.
- counterfactual removal: retrain without each method's top-k (and bottom-k)
  contributors and measure the metric change.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd

from ..proxy.game import _rng


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


def split_half(replicates: np.ndarray) -> float:
    """Spearman correlation across coalitions of the mean of the even-numbered replicates with
    that of the odd-numbered ones. `replicates`: (coalitions, r) with r >= 2; else NaN."""
    replicates = np.asarray(replicates, dtype=np.float64)
    if replicates.ndim != 2 or replicates.shape[1] < 2:
        return float("nan")
    return spearman(replicates[:, 0::2].mean(1), replicates[:, 1::2].mean(1))


def noise_ceiling(replicates: np.ndarray) -> float:
    """Reliability of the replicate-mean utility across coalitions: the split-half correlation
    Spearman-Brown corrected to the full number of replicates, 2 rho / (1 + rho); 0 when the
    halves do not agree at all (rho <= 0: no reliable ranking), NaN when it cannot be measured."""
    rho = split_half(replicates)
    if not np.isfinite(rho):
        return float("nan")
    return float(2 * rho / (1 + rho)) if rho > 0 else 0.0


def bootstrap_indices(n: int, resamples: int, seed: int) -> np.ndarray:
    """(resamples, n) row indices drawn with replacement: the bootstrap over coalitions."""
    return _rng(seed, "lds-bootstrap").integers(0, n, size=(resamples, n))


def _interval(draws: np.ndarray, level: float) -> tuple[float, float]:
    """Percentile interval of the finite bootstrap draws (a resample with a constant side has
    no Spearman correlation and is left out)."""
    draws = draws[np.isfinite(draws)]
    if not len(draws):
        return float("nan"), float("nan")
    tail = (1 - level) / 2
    low, high = np.quantile(draws, [tail, 1 - tail])
    return float(low), float(high)


def lds_intervals(
    predictions: dict[str, np.ndarray],
    actual: np.ndarray,
    indices: np.ndarray,
    level: float,
    reference: str | None = None,
) -> pd.DataFrame:
    """LDS of every method over all held-out coalitions with a percentile bootstrap interval over
    coalitions, and, against `reference` (SurrogateSHAP), the paired difference reference - method
    on the same bootstrap draws (so the coalitions' shared difficulty cancels) with its interval."""
    actual = np.asarray(actual, dtype=np.float64)
    boot = {
        method: np.array([spearman(p[rows], actual[rows]) for rows in indices])
        for method, p in predictions.items()
    }
    rows = []
    for method, predicted in predictions.items():
        low, high = _interval(boot[method], level)
        row = {
            "method": method,
            "lds": spearman(predicted, actual),
            "lds_low": low,
            "lds_high": high,
            "coalitions": len(actual),
        }
        if reference is not None and reference in predictions:
            gap = spearman(predictions[reference], actual) - row["lds"]
            gap_low, gap_high = _interval(boot[reference] - boot[method], level)
            row.update(
                {"vs_reference": gap, "vs_reference_low": gap_low, "vs_reference_high": gap_high}
            )
        rows.append(row)
    return pd.DataFrame(rows)


CHANCE_DRAWS = 1000  # random value vectors behind the chance level


def _ranks(values: np.ndarray) -> np.ndarray:
    """Average ranks along the last axis (ties share their mean rank, as Spearman's)."""
    from scipy.stats import rankdata

    return rankdata(values, axis=-1)


def _residual_correlation(a: np.ndarray, b: np.ndarray, control: np.ndarray) -> np.ndarray:
    """Pearson correlation of rows of `a` with `b` after a least-squares line in `control` is
    taken out of both (a: (k, m) or (m,); b, control: (m,)); NaN where a residual is constant."""
    design = np.column_stack([np.ones_like(control), control])
    projector = design @ np.linalg.pinv(design)
    a_res = np.atleast_2d(a) - np.atleast_2d(a) @ projector.T
    b_res = b - projector @ b
    a_res -= a_res.mean(1, keepdims=True)
    b_res -= b_res.mean()
    scale = np.linalg.norm(a_res, axis=1) * np.linalg.norm(b_res)
    with np.errstate(invalid="ignore", divide="ignore"):
        out = (a_res @ b_res) / scale
    # a residual within rounding of zero is a constant one: no correlation to report
    out[scale <= 1e-9 * max(1.0, float(np.abs(b).max()) ** 2) * len(b)] = np.nan
    return out


def spearman_given_size(predicted, actual, sizes) -> float:
    """Partial Spearman correlation of the predicted and the actual utilities given the
    coalition size: both rank vectors with their linear trend in the size ranks taken out.
    Without size differences it is the Spearman correlation."""
    predicted, actual = np.asarray(predicted, np.float64), np.asarray(actual, np.float64)
    if len(actual) < 4 or np.ptp(predicted) == 0 or np.ptp(actual) == 0:
        return float("nan")
    return float(
        _residual_correlation(_ranks(predicted), _ranks(actual), _ranks(np.asarray(sizes)))[0]
    )


def chance_levels(x: np.ndarray, actual, seed: int, draws: int = CHANCE_DRAWS) -> dict:
    """The LDS and the size-controlled score of `draws` random value vectors (independent
    standard normal values, additive predictions): their mean and 95th percentile. A method is
    above chance where its score exceeds the 95th percentile."""
    x = np.asarray(x, dtype=np.float64)
    actual = np.asarray(actual, dtype=np.float64)
    values = _rng(seed, "chance").standard_normal((draws, x.shape[1]))
    ranked = _ranks(values @ x.T)
    sizes = _ranks(x.sum(1))
    plain = _residual_correlation(ranked, _ranks(actual), np.zeros(len(actual)))
    given = _residual_correlation(ranked, _ranks(actual), sizes)
    out = {}
    for name, scores in (("chance", plain), ("chance_given_size", given)):
        scores = scores[np.isfinite(scores)]
        out[f"{name}_mean"] = float(scores.mean()) if len(scores) else float("nan")
        out[f"{name}_p95"] = float(np.quantile(scores, 0.95)) if len(scores) else float("nan")
    return out


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
    `surrogateshap.data.planted`)."""
    from ..data.planted import expectations

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
            # its last place among those tied with it (ties share the best rank): a constant
            # utility, every contributor tied at rank 1, finds nobody at either end
            tied = int((table["rank"] == r).sum())
            where = r + tied - 1 if e["side"] == "top" else n + 1 - r
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


# --------------------------------------------------------------------------- the tables
def replicate_means(rows: pd.DataFrame, metric_names: list[str]) -> pd.DataFrame:
    """One row per coalition: its utilities averaged over the replicates, its retraining cost summed."""
    first = rows.drop_duplicates("coalition").set_index("coalition")
    grouped = rows.groupby("coalition")
    out = first[["members", "n_items"]].copy()
    out[metric_names] = grouped[metric_names].mean()
    out["replicates"] = grouped.size()
    out[["train_seconds", "seconds", "images"]] = grouped[
        ["train_seconds", "seconds", "images"]
    ].sum()
    return out.reset_index().sort_values("coalition").reset_index(drop=True)


def check_no_leakage(rows: pd.DataFrame) -> None:
    """The retraining game's promise: each model's batches drew its coalition's items, no other."""
    for row in rows.itertuples():
        if not set(row.trained_contributors) <= set(row.members) or (
            len(row.members) and not len(row.trained_contributors)
        ):
            raise RuntimeError(
                f"retrained coalition {row.coalition} (replicate {row.replicate}) was trained on "
                f"{list(row.trained_contributors)}, not on its members {list(row.members)}"
            )


def lds_table(
    values: pd.DataFrame,
    interactions: dict[str, np.ndarray],
    heldout: pd.DataFrame,
    replicate_rows: pd.DataFrame,
    names: list[str],
    metric_names: list[str],
    lds_cfg: dict,
    seed: int,
    empty_gap: dict[str, float] | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Per metric: the noise ceiling of the retraining game; per method and metric: LDS over all
    scored held-out coalitions (replicate means) with its bootstrap interval, the paired
    difference to SurrogateSHAP, LDS / ceiling, and the LDS of each draw seed (replication).

    `empty_gap[metric]`: retrained v(empty) minus the proxy game's. A diagnostic row then shows the
    surrogate's values as they would be with the retraining game's v(empty): an exact Shapley value
    holds v(empty) only in the term (v({i}) - v(empty)) / n, so it moves every value by -gap / n,
    and an additive prediction by -gap |S| / n."""
    from ..estimation import coalitions as coal

    scored = heldout[heldout["draw"] >= 0].reset_index(drop=True)
    x = coal.indicator_matrix(scored["members"], names)
    draws = scored["draw"].to_numpy()
    indices = bootstrap_indices(len(scored), lds_cfg["bootstrap"], seed)
    by_replicate = replicate_rows[replicate_rows["coalition"].isin(scored["coalition"])]
    ceilings, tables = [], []
    for metric in metric_names:
        wide = by_replicate.pivot(index="coalition", columns="replicate", values=metric)
        by_coalition = wide.loc[scored["coalition"]].to_numpy()
        ceiling = noise_ceiling(by_coalition)
        chance = chance_levels(x, scored[metric].to_numpy(), seed)
        ceilings.append(
            {
                "metric": metric,
                "split_half": split_half(by_coalition),
                "noise_ceiling": ceiling,
                "replicates": int(wide.shape[1]),
                "coalitions": int(len(scored)),
                **chance,
            }
        )
        predictions, per_draw = {}, {}
        for method, frame in values[values["metric"] == metric].groupby("method", sort=False):
            phi = frame.set_index("contributor").loc[names, "value"].to_numpy()
            variants = [(method, None)]
            if method == "surrogate":
                variants.append(("surrogate + interactions", interactions[metric]))
            for label, pairs in variants:
                predictions[label] = predict(x, 0.0, phi, pairs)
            if method == "surrogate" and empty_gap and np.isfinite(empty_gap.get(metric, np.nan)):
                label = "surrogate, v(∅) as retrained (diagnostic)"
                predictions[label] = predict(x, 0.0, phi - empty_gap[metric] / len(names))
                variants.append((label, None))
            for label, _ in variants:
                per_draw[label] = lds(predictions[label], scored[metric].to_numpy(), draws)
        table = lds_intervals(
            predictions,
            scored[metric].to_numpy(),
            indices,
            lds_cfg["level"],
            "surrogate" if "surrogate" in predictions else None,
        )
        table.insert(1, "metric", metric)
        table["noise_ceiling"] = ceiling
        table["lds_given_size"] = [
            spearman_given_size(predictions[m], scored[metric], x.sum(1)) for m in table["method"]
        ]
        table["above_chance"] = table["lds"] > chance["chance_p95"]
        table["given_size_above_chance"] = table["lds_given_size"] > chance["chance_given_size_p95"]
        table["lds_over_ceiling"] = table["lds"] / ceiling if ceiling > 0 else float("nan")
        table["draw_mean"] = [per_draw[m]["lds_mean"] for m in table["method"]]
        table["draw_std"] = [per_draw[m]["lds_std"] for m in table["method"]]
        table["per_draw"] = [json.dumps(per_draw[m]["per_draw"]) for m in table["method"]]
        tables.append(table)
    return pd.concat(tables, ignore_index=True), pd.DataFrame(ceilings)


def empty_gap(heldout: pd.DataFrame, metric_names: list[str]) -> dict[str, float]:
    """Per metric, the retraining game's v(empty) minus the proxy game's (from the held-out table,
    which holds both for the empty coalition)."""
    empty = heldout[heldout["members"].map(len) == 0]
    if not len(empty):
        return {}
    row = empty.iloc[0]
    return {m: float(row[m] - row[f"{m}_proxy"]) for m in metric_names}


def game_fidelity(
    heldout: pd.DataFrame, full: pd.DataFrame, metric_names: list[str], game_name: str
) -> pd.DataFrame:
    """How faithfully the cheaper game ranks coalitions like full retraining (Spearman of replicate
    means over the coalitions both played, per metric) and what it costs relative to it."""
    if not len(full):
        return pd.DataFrame(
            columns=["game", "metric", "spearman_to_full", "coalitions", "cost_ratio"]
        )
    truth = replicate_means(full, metric_names).set_index("coalition")
    cheap = heldout.set_index("coalition").loc[truth.index]
    per_retrain = {
        "full": float(full["seconds"].mean()),
        game_name: float((cheap["seconds"] / cheap["replicates"]).mean()),
    }
    return pd.DataFrame(
        [
            {
                "game": game_name,
                "metric": metric,
                "spearman_to_full": spearman(cheap[metric], truth[metric]),
                "coalitions": int(len(truth)),
                "seconds_per_retrain": per_retrain[game_name],
                "full_seconds_per_retrain": per_retrain["full"],
                "cost_ratio": per_retrain[game_name] / per_retrain["full"],
            }
            for metric in metric_names
        ]
    )
