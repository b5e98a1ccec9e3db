"""The rules of evaluate.smk (the `evaluate` target): the retraining game on held-out
coalitions, every method's values on the same proxy game, LDS, proxy fidelity, counterfactual
removal and the planted ground truth."""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

import numpy as np
import pandas as pd

from .. import coalitions as coal
from .. import data as data_mod
from .. import estimators, evaluation, extractors, game, models, planted, surrogate
from .. import features as feat
from ..config import merge
from ..io import read_table_metadata, write_json, write_table
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
        if method in ("kernel", "banzhaf", "permutation", "loo"):
            if method == "kernel":
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
                    "kernel": estimators.kernel,
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
    size = generated.shape[-1]
    training = data_mod.load_images(dataset.root, dataset.items["file_name"], size)
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
) -> None:
    """The retraining game on this shard's coalitions: train a model on the coalition's items only,
    generate from it conditioned on those items, score the images. The empty coalition's model has
    learned nothing: its output is the sampler's starting noise."""
    retrain_cfg, gen_cfg, feat_cfg, seed = (
        cfg["evaluation.retrain"],
        cfg["generation"],
        cfg["features"],
        cfg["seed"],
    )
    metric_names, image_size = cfg["metrics"], cfg["data.image_size"]
    models.set_threads(threads)
    shard, shards = shard_of(scatteritem)
    dataset = load_prepared(data_dir)
    names = dataset.contributors["contributor"].tolist()
    table = pd.read_parquet(coalitions_path)
    if (
        "removed" in table.columns
    ):  # the counterfactual table lists a coalition once per (method, metric, k, side)
        table = table.drop_duplicates("coalition")[["coalition", "members"]]
    table = table.sort_values("coalition").iloc[shard::shards].reset_index(drop=True)
    train_cfg = merge(cfg["model.train"], retrain_cfg["train"])
    classifier = models.load_classifier(classifier_path)
    reference = load_reference(reference_path)
    device = models.resolve_device(gen_cfg["device"])
    dtype = models.resolve_dtype(gen_cfg["dtype"], device)
    log.info(
        "shard %s: %d coalitions; CUDA_VISIBLE_DEVICES=%s; device %s",
        scatteritem,
        len(table),
        os.environ.get("CUDA_VISIBLE_DEVICES"),
        device,
    )
    class_of = {
        c: i for i, c in enumerate(names)
    }  # every contributor keeps its class, trained on or not
    cond = game.build_conditioning(dataset.items, names, names, "contributor")
    results = []
    for done, (coalition, members) in enumerate(
        zip(table["coalition"], coalition_tuples(table, names)), 1
    ):
        started = time.time()
        mask = evaluation.coalition_items(dataset.items["contributor"], names, members)
        items = dataset.items[mask]
        model_seed = int(game._rng(seed, "retrain", coalition).integers(0, 2**31))
        if members:
            images = data_mod.load_images(dataset.root, items["file_name"], image_size)
            classes = items["contributor"].map(class_of).to_numpy()
            model = models.train_diffusion(
                images, classes, names, "contributor", train_cfg, model_seed, device=device
            )
        train_seconds = time.time() - started
        classes, noise = game.coalition_plan(cond, members, retrain_cfg["samples"], seed)
        if members:
            generated = models.sample(
                model,
                classes,
                noise,
                gen_cfg["guidance_scale"],
                gen_cfg["steps"],
                device,
                dtype,
                gen_cfg["batch_size"],
            )
        else:
            generated = models.untrained_output(noise, image_size)
        samples = feat.extract(
            generated,
            np.zeros(len(generated)),
            classifier,
            marker_size,
            feat_cfg["marker_threshold"],
        )
        row = {
            "coalition": int(coalition),
            "members": [names[i] for i in members],
            "trained_contributors": sorted(items["contributor"].unique().tolist()),
            "n_items": int(len(items)),
            "train_seconds": train_seconds,
            "seconds": time.time() - started,
            "images": len(generated),
            **game.sample_utilities(samples, metric_names, reference),
        }
        results.append(row)
        log.info(
            "shard %s: coalition %d (%d/%d, %d members, %d items) retrained and scored in %.1fs",
            scatteritem,
            coalition,
            done,
            len(table),
            len(members),
            len(items),
            row["seconds"],
        )
    columns = [
        "coalition",
        "members",
        "trained_contributors",
        "n_items",
        "train_seconds",
        "seconds",
        "images",
        *metric_names,
    ]
    write_table(
        out_path,
        pd.DataFrame(results, columns=columns),
        metadata={"train": train_cfg, "device": str(device)},
    )


def _interaction_matrix(path: str, names: list[str]) -> np.ndarray:
    position = {name: i for i, name in enumerate(names)}
    pairs = pd.read_parquet(path)
    matrix = np.zeros((len(names), len(names)))
    i = pairs["contributor_i"].map(position).to_numpy()
    j = pairs["contributor_j"].map(position).to_numpy()
    matrix[i, j] = matrix[j, i] = pairs["interaction"].to_numpy()
    return matrix


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
) -> None:
    """LDS of every method, proxy fidelity, counterfactual removal and planted placements.
    Planted contributors (ground truth by construction): the data section's (`planted.entries`);
    `threads`: XGBoost's, in the retraining game's surrogate fit."""
    eval_cfg, surrogate_cfg = cfg["evaluation"], cfg["surrogate"]
    planted_entries = planted.entries(
        {
            "source": cfg.get("data.source"),
            "digits": {"planted": cfg.get("data.digits.planted")},
            "planted": cfg.get("data.planted"),
        }
    )

    out = Path(out_dir)
    names = contributor_names(data_dir)
    values = pd.read_parquet(values_path)
    retrained = pd.concat(
        [pd.read_parquet(p) for p in heldout_shards], ignore_index=True
    ).sort_values("coalition")
    proxy = pd.read_parquet(heldout_proxy_path).set_index("coalition")
    heldout = retrained.join(
        proxy[["draw"] + metric_names], on="coalition", rsuffix="_proxy"
    ).reset_index(drop=True)
    draws = heldout["draw"].to_numpy()
    scored = draws >= 0
    x = coal.indicator_matrix(heldout["members"], names)

    lds_rows = []
    interactions = {
        m: _interaction_matrix(p, names) for m, p in zip(metric_names, interaction_paths)
    }
    for (method, metric), frame in values.groupby(["method", "metric"], sort=False):
        phi = frame.set_index("contributor").loc[names, "value"].to_numpy()
        actual = heldout[metric].to_numpy()[scored]
        variants = [(method, None)]
        if method == "surrogate":
            variants.append(("surrogate + interactions", interactions[metric]))
        for label, pairs in variants:
            predicted = evaluation.predict(x[scored], 0.0, phi, pairs)
            score = evaluation.lds(predicted, actual, draws[scored])
            lds_rows.append(
                {
                    "method": label,
                    "metric": metric,
                    "lds_mean": score["lds_mean"],
                    "lds_std": score["lds_std"],
                    "draws": len(score["per_draw"]),
                    "coalitions": int(scored.sum()),
                    "per_draw": json.dumps(score["per_draw"]),
                }
            )
    lds_table = pd.DataFrame(lds_rows)

    # Proxy fidelity: utilities over the same coalitions, and Shapley values of each game.
    removed = (
        pd.concat([pd.read_parquet(p) for p in removal_shards], ignore_index=True)
        if removal_shards
        else None
    )
    all_retrained = pd.concat(
        [retrained.assign(source="heldout")]
        + (
            [removed.assign(source="counterfactual")]
            if removed is not None and len(removed)
            else []
        ),
        ignore_index=True,
    )
    for row in (
        all_retrained.itertuples()
    ):  # the game's promise: each model saw its coalition's data, no other
        if sorted(row.trained_contributors) != sorted(row.members):
            raise RuntimeError(
                f"retrained coalition {row.coalition} was trained on {list(row.trained_contributors)}, "
                f"not on its members {list(row.members)}"
            )
    x_all = coal.indicator_matrix(all_retrained["members"], names)
    fit_cfg = dict(surrogate_cfg, bootstrap=0, threads=threads)
    fidelity_rows = []
    for metric in metric_names:
        game_values, diag = surrogate.attribute(
            x_all, all_retrained[metric].to_numpy(np.float64), names, fit_cfg, surrogate_cfg["seed"]
        )
        proxy_values = values[(values["method"] == "surrogate") & (values["metric"] == metric)]
        shapley_rho = float("nan")
        if len(proxy_values):
            a = game_values.set_index("contributor").loc[names, "shapley"]
            b = proxy_values.set_index("contributor").loc[names, "value"]
            shapley_rho = evaluation.spearman(a, b)
        fidelity_rows.append(
            {
                "metric": metric,
                "utility_spearman": evaluation.spearman(
                    heldout[f"{metric}_proxy"][scored], heldout[metric][scored]
                ),
                "shapley_spearman": shapley_rho,
                "heldout_coalitions": int(scored.sum()),
                "retrained_coalitions": int(len(all_retrained)),
                "retraining_game_oof_r2": diag["oof_r2"],
            }
        )
    fidelity = pd.DataFrame(fidelity_rows)

    # Counterfactual removal: the change from the retrained grand coalition.
    removals = pd.read_parquet(removals_path)
    grand = heldout[heldout["members"].map(len) == len(names)].iloc[0]
    if len(removals):
        by_coalition = removed.set_index("coalition")
        for metric in metric_names:
            removals[f"{metric}_retrained"] = removals["coalition"].map(by_coalition[metric])
        removals["change"] = [
            by_coalition.loc[c, m] - grand[m]
            for c, m in zip(removals["coalition"], removals["metric"])
        ]
    counterfactual = removals.drop(columns=["members"])

    expected = evaluation.expected_placements(planted_entries, names, metric_names)
    placement = evaluation.placement_table(values, expected)

    final, out = (
        out,
        out.with_name(f".{out.name}.partial"),
    )  # build beside, then rename: never half a folder
    shutil.rmtree(out, ignore_errors=True)
    write_table(out / "lds.parquet", lds_table)
    write_table(out / "fidelity.parquet", fidelity)
    write_table(out / "counterfactual.parquet", counterfactual)
    write_table(out / "placement.parquet", placement)
    write_table(out / "retrained.parquet", all_retrained)
    write_table(out / "heldout.parquet", heldout)
    cost = read_table_metadata(values_path)["cost"]
    summary = {
        "retraining": {
            "coalitions": int(len(all_retrained)),
            "seconds": float(all_retrained["seconds"].sum()),
            "train_seconds": float(all_retrained["train_seconds"].sum()),
            "images": int(all_retrained["images"].sum()),
            "train": read_table_metadata(heldout_shards[0]).get("train"),
        },
        "methods": cost,
        "heldout": eval_cfg["heldout"],
        "counterfactual": eval_cfg["counterfactual"],
    }
    for row in lds_table.itertuples():
        log.info("LDS %-26s %-22s %.3f ± %.3f", row.method, row.metric, row.lds_mean, row.lds_std)
    write_json(out / "summary.json", summary)
    shutil.rmtree(final, ignore_errors=True)
    out.rename(final)
