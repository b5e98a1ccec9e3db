"""The rules of evaluate.smk (the `evaluate` target): the retraining game on held-out
coalitions, every method's values on the same proxy game, LDS, proxy fidelity, counterfactual
removal and the planted ground truth."""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np
import pandas as pd

from ...data import datasets as data_mod
from ...estimation import coalitions as coal
from ...estimation import estimators, surrogate
from ...evaluation import scores as evaluation
from ...evaluation.tables import write_tables
from ...models import class_conditional as models
from ...proxy import extractors, game
from ...proxy import features as feat
from ..io import read_table_metadata, write_table
from .common import (
    coalition_tuples,
    contributor_names,
    load_prepared,
    load_reference,
    log,
    shard_of,
)


def draw_heldout(*, data_dir: str, cfg: dict, out_path: str) -> None:
    """Held-out coalitions of the retraining game (plus its empty and grand coalitions)."""
    names = contributor_names(data_dir)
    held = cfg["evaluation.heldout"]
    table = evaluation.heldout_coalitions(
        len(names), held["coalitions"], held["alpha"], held["draws"]
    )
    table.insert(0, "coalition", np.arange(len(table), dtype=np.int64))
    table["members"] = [[names[i] for i in m] for m in table.pop("members_index")]
    log.info(
        "%d held-out coalitions (%d draws) of %d contributors",
        len(table) - 2,
        len(held["draws"]),
        len(names),
    )
    write_table(out_path, table)


def _values_by_method(
    data_dir,
    utilities_path,
    attribution_paths,
    pool_shards,
    pooled_game: game.PooledGame,
    classifier_path,
    metric_names,
    cfg,
):
    """Every baseline's values on the same proxy game (the same pools), with its cost."""
    names = contributor_names(data_dir)
    n = len(names)
    table = pd.read_parquet(utilities_path)
    x = coal.indicator_matrix(table["members"], names, source=utilities_path)
    budget = len(table)
    seed = cfg["evaluation.seed"]
    rows, cost = [], {}

    def add(method, metric, values, seconds, evaluations):
        values = np.asarray(values, dtype=np.float64)
        rows.append(
            pd.DataFrame(
                {
                    "method": method,
                    "metric": metric,
                    "contributor": names,
                    "value": values,
                    "rank": surrogate.ranks(values),
                }
            )
        )
        entry = cost.setdefault(method, {"seconds": 0.0, "utility_evaluations": int(evaluations)})
        entry["seconds"] += float(seconds)

    methods = cfg["evaluation.methods"]
    for path in attribution_paths:
        if "surrogate" in methods:
            frame = pd.read_parquet(path).set_index("contributor").loc[names]
            diag = read_table_metadata(path)
            add(
                "surrogate",
                diag["metric"]["name"],
                frame["shapley"].to_numpy(),
                diag["seconds"],
                budget,
            )
    for method in methods:
        started = time.time()
        if method in (*estimators.POINT_ESTIMATORS, "banzhaf", "permutation", "loo"):
            if method in estimators.POINT_ESTIMATORS:  # on the run's own coalitions
                coalitions, x_m = None, x
            else:
                if method == "permutation":
                    coalitions = estimators.permutation_coalitions(
                        n, max(1, budget // (n + 1)), seed
                    )
                elif method == "loo":
                    full = tuple(range(n))
                    coalitions = [full] + [tuple(j for j in full if j != i) for i in range(n)]
                else:  # Banzhaf's maximum-sample-reuse estimator wants Bernoulli(0.5) coalitions
                    coalitions = coal.sample_coalitions(n, budget, "bernoulli", seed, 0.5)
                x_m = coal.indicators(coalitions, n)
            utilities = (
                table[metric_names] if coalitions is None else pooled_game.utilities(coalitions)
            )
            for metric in metric_names:
                y = utilities[metric].to_numpy(np.float64)
                point = {
                    **estimators.POINT_ESTIMATORS,
                    "banzhaf": estimators.banzhaf,
                    "loo": estimators.loo,
                    "permutation": lambda a, b: estimators.permutation(a, b)[0],
                }[method]
                add(method, metric, point(x_m, y), 0.0, len(y))
            cost[method]["seconds"] = time.time() - started
        elif method.startswith("similarity_"):
            _, space, how = method.split("_")
            values = _similarity(data_dir, pool_shards, classifier_path, names, space, how)
            for metric in metric_names:
                add(method, metric, values, 0.0, 0)
            cost[method]["seconds"] = time.time() - started
        elif method == "random":
            rng = np.random.default_rng(seed)
            for metric in metric_names:
                add(method, metric, rng.standard_normal(n), 0.0, 0)
    return pd.concat(rows, ignore_index=True), cost


def _similarity(data_dir, pool_shards, classifier_path, names, space, how):
    """Every contributor's similarity of the generated pools to its own training images."""
    dataset = load_prepared(data_dir)
    frame, generated = feat.read_images(pool_shards)
    generated = generated[
        frame["group"].to_numpy() < len(names)
    ]  # the contributors' pools, not the unconditional one
    size, mode = generated.shape[1], "RGB" if generated.ndim == 4 else "L"
    training = data_mod.load_images(dataset.root, dataset.items["file_name"], size, mode)
    owner = dataset.items["contributor"].map({c: i for i, c in enumerate(names)}).to_numpy()
    if space == "feature":  # the metrics' feature space: a classifier, or a vision backbone
        extractor = extractors.load_feature_space(classifier_path)
        generated, training = extractor.embed(generated)[0], extractor.embed(training)[0]
    return evaluation.similarity_values(generated, training, owner, len(names), how)


def evaluation_baselines(
    *,
    data_dir: str,
    utilities_path: str,
    attribution_paths: list[str],
    pool_shards: list[str],
    feature_shards: list[str],
    reference_path: str,
    classifier_path: str,
    heldout_path: str,
    metric_names: list[str],
    cfg: dict,
    values_path: str,
    heldout_proxy_path: str,
    removals_path: str,
) -> None:
    """Values of every method on the proxy game, proxy utilities of the held-out coalitions,
    and the counterfactual removal coalitions that the methods' rankings call for."""
    contributors = pd.read_parquet(Path(data_dir) / "contributors.parquet")
    names = contributors["contributor"].tolist()
    # the pools' statistics once, for the methods that score coalitions of their own and the held-out ones
    pooled_game = game.PooledGame(
        feat.read_samples(feature_shards),
        contributors["n_items"].to_numpy(float),
        metric_names,
        load_reference(reference_path),
    )
    values, cost = _values_by_method(
        data_dir,
        utilities_path,
        attribution_paths,
        pool_shards,
        pooled_game,
        classifier_path,
        metric_names,
        cfg,
    )
    for method, entry in cost.items():
        log.info(
            "baseline %s: %.2fs, %d utility evaluations",
            method,
            entry["seconds"],
            entry["utility_evaluations"],
        )
    write_table(values_path, values, metadata={"cost": cost})

    heldout = pd.read_parquet(heldout_path)
    proxy = pooled_game.utilities(coalition_tuples(heldout, names))
    write_table(heldout_proxy_path, pd.concat([heldout.reset_index(drop=True), proxy], axis=1))

    cf = cfg["evaluation.counterfactual"]
    position = {name: i for i, name in enumerate(names)}
    rankings = {}
    for (method, metric), frame in values.groupby(["method", "metric"], sort=False):
        if method in cf["methods"] and metric in cf["metrics"]:
            rankings[(method, metric)] = [
                position[c] for c in frame.sort_values("rank")["contributor"]
            ]
    removals = evaluation.removal_coalitions(rankings, len(names), cf["k"])
    distinct = {tuple(m): None for m in removals["members_index"]} if len(removals) else {}
    coalition_of = {members: i for i, members in enumerate(distinct)}
    removals["coalition"] = [coalition_of[tuple(m)] for m in removals["members_index"]]
    removals["removed"] = [[names[i] for i in m] for m in removals.pop("removed_index")]
    removals["members"] = [[names[i] for i in m] for m in removals.pop("members_index")]
    log.info(
        "%d counterfactual removals, %d distinct coalitions to retrain",
        len(removals),
        len(distinct),
    )
    write_table(removals_path, removals)


def retrain_shard(
    *,
    data_dir: str,
    coalitions_path: str,
    cfg: dict,
    classifier_path: str,
    reference_path: str,
    marker_size: int,
    scatteritem: str,
    threads: int,
    out_path: str,
    model_dir: str | None = None,
    purpose: str = "heldout",
) -> None:
    """The retraining game on this shard's coalitions (see surrogateshap.evaluation.retraining). `purpose`:
    `heldout` (the configured game, every replicate), `counterfactual` (the configured game, one
    replicate) or `fidelity` (full retraining of the first evaluation.retrain.fidelity.coalitions
    held-out coalitions, to measure how faithful the configured cheaper game is)."""
    from ...evaluation import retraining

    if "evaluation.retrain" not in cfg:  # the fidelity stage reads only full retraining's settings
        prefix = "evaluation.retrain."
        retrain = {k[len(prefix) :]: v for k, v in cfg.items() if k.startswith(prefix)}
        cfg = dict(cfg, **{"evaluation.retrain": retrain})
    retrain_cfg = cfg["evaluation.retrain"]
    models.set_threads(threads)
    shard, shards = shard_of(scatteritem)
    dataset = load_prepared(data_dir)
    table = pd.read_parquet(coalitions_path)
    if (
        "removed" in table.columns
    ):  # the counterfactual table lists a coalition once per (method, metric, k, side)
        table = table.drop_duplicates("coalition")[["coalition", "members"]]
    if purpose == "fidelity":
        game_name, replicates = "full", retrain_cfg["fidelity"]["replicates"]
        table = fidelity_coalitions(table, retrain_cfg)
    else:
        game_name = retrain_cfg["game"]
        replicates = 1 if purpose == "counterfactual" else retrain_cfg["replicates"]
    table = table.sort_values("coalition").iloc[shard::shards].reset_index(drop=True)
    log.info(
        "shard %s (%s): %d coalitions x %d replicates, %s game; CUDA_VISIBLE_DEVICES=%s",
        scatteritem,
        purpose,
        len(table),
        replicates,
        game_name,
        os.environ.get("CUDA_VISIBLE_DEVICES"),
    )
    rows, train_cfg = retraining.retrain_coalitions(
        dataset,
        table,
        cfg,
        game_name,
        replicates,
        # grey or RGB, resized to the extractor's input: what the proxy game's features see
        extractors.load_feature_space(classifier_path),
        load_reference(reference_path),
        marker_size,
        model_dir,
        f"shard {scatteritem}",
    )
    device = models.resolve_device(cfg["generation"]["device"])
    write_table(
        out_path, rows, metadata={"train": train_cfg, "device": str(device), "game": game_name}
    )


def fidelity_coalitions(heldout: pd.DataFrame, retrain_cfg: dict) -> pd.DataFrame:
    """The held-out coalitions that full retraining also plays when the game is a cheaper one:
    the first `fidelity.coalitions` of the scored ones (none when the game is already full)."""
    if retrain_cfg["game"] == "full":
        return heldout.iloc[:0]
    scored = heldout[heldout["draw"] >= 0].sort_values("coalition")
    return scored.head(retrain_cfg["fidelity"]["coalitions"])[["coalition", "members"]]


def evaluation_tables(
    *,
    data_dir: str,
    values_path: str,
    interaction_paths: list[str],
    heldout_proxy_path: str,
    heldout_shards: list[str],
    removals_path: str,
    removal_shards: list[str],
    metric_names: list[str],
    cfg: dict,
    threads: int,
    out_dir: str,
    fidelity_shards: list[str] | None = None,
) -> None:
    """LDS of every method with intervals, noise ceilings, proxy and cheap-game fidelity,
    counterfactual removal and planted placements (see surrogateshap.evaluation.tables.write_tables);
    `threads`: XGBoost's, in the retraining game's surrogate fit."""
    write_tables(
        data_dir,
        values_path,
        interaction_paths,
        heldout_proxy_path,
        heldout_shards,
        removals_path,
        removal_shards,
        fidelity_shards or [],
        metric_names,
        cfg,
        out_dir,
        threads,
    )
