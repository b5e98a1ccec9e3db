"""One function per workflow rule. Rule scripts only unpack Snakemake's objects
and call these, so every step can be run and tested without Snakemake."""

from __future__ import annotations

import json
import logging
import os
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from . import coalitions as coal
from . import data as data_mod
from . import estimators, extractors, game, models, t2i
from . import features as feat
from .io import read_table_metadata, write_json, write_table
from .metrics import Reference

log = logging.getLogger("surrogateshap")


def setup_logging(log_path: str | None) -> None:
    handlers = [logging.StreamHandler()]
    if log_path:
        Path(log_path).parent.mkdir(parents=True, exist_ok=True)
        handlers.append(logging.FileHandler(log_path, mode="w"))
    logging.basicConfig(
        level=logging.INFO,
        format="%(asctime)s %(levelname)s %(message)s",
        handlers=handlers,
        force=True,
    )
    sys.excepthook = _log_uncaught


def _log_uncaught(kind, error, trace) -> None:
    """Put a failing step's error in its log file too (Snakemake points users there)."""
    if isinstance(error, (data_mod.DataError, ValueError, FileNotFoundError)):
        log.error("%s", error)  # a bad input: its message names the file, field or value
    else:
        log.error("step failed", exc_info=(kind, error, trace))
    sys.__excepthook__(kind, error, trace)


def shard_of(scatteritem: str) -> tuple[int, int]:
    """Snakemake's '3-of-8' -> (2, 8), zero-based."""
    index, total = scatteritem.split("-of-")
    return int(index) - 1, int(total)


# --------------------------------------------------------------------------- data
def prepare_data(data_cfg: dict, seed: int, out_dir: str) -> None:
    """Export the digits (or point at the user's folder), validate, write items/contributors."""
    out = Path(out_dir)
    if data_cfg["source"] == "digits":
        digits = data_cfg["digits"]
        table = data_mod.export_digits(
            out, digits["splits_per_class"], digits["planted"], seed, digits["marker_size"]
        )
        write_table(out / "metadata.parquet", table)
        root, metadata = out, out / "metadata.parquet"
    else:
        root, metadata = (
            Path(data_cfg["root"]),
            Path(data_cfg["metadata"] or Path(data_cfg["root"]) / "metadata.csv"),
        )
    dataset = data_mod.load_dataset(
        root,
        metadata,
        data_cfg["contributor_column"],
        data_cfg["label_column"],
        data_cfg["min_items"],
        caption_column=data_cfg.get("caption_column"),
        caption_template=data_cfg.get("caption_template"),
    )
    log.info("dataset %s: %d items from %d contributors", root, len(dataset.items), dataset.n)
    data_mod.write_dataset_tables(out, dataset)
    write_json(
        out / "dataset.json",
        {
            "root": str(Path(root).resolve()),
            "n_items": len(dataset.items),
            "n_contributors": dataset.n,
        },
    )


def load_prepared(data_dir: str) -> data_mod.Dataset:
    data_dir = Path(data_dir)
    info = json.loads((data_dir / "dataset.json").read_text())
    return data_mod.Dataset(
        Path(info["root"]),
        pd.read_parquet(data_dir / "items.parquet"),
        pd.read_parquet(data_dir / "contributors.parquet"),
    )


# --------------------------------------------------------------------------- models
def train_classifier(cfg: dict, seed: int, threads: int, out_path: str, metrics_path: str) -> None:
    models.set_threads(threads)
    images, labels = data_mod.digits_images()
    model, accuracy = models.train_classifier(
        images.astype(np.float32), labels, cfg, seed, progress=log.info
    )
    log.info("classifier held-out accuracy %.3f", accuracy)
    models.save_classifier(model, out_path)
    write_json(metrics_path, {"heldout_accuracy": accuracy})


def train_model(
    data_dir: str, cfg: dict, data_cfg: dict, seed: int, threads: int, out_dir: str
) -> None:
    models.set_threads(threads)
    dataset = load_prepared(data_dir)
    items = dataset.items
    images = data_mod.load_images(dataset.root, items["file_name"], data_cfg["image_size"])
    if cfg["conditioning"] == "contributor":
        class_names = dataset.contributors["contributor"].tolist()
        classes = items["contributor"].map({n: i for i, n in enumerate(class_names)}).to_numpy()
    else:
        class_names = [str(v) for v in sorted(items["label"].unique())]
        classes = (
            items["label"].astype(str).map({n: i for i, n in enumerate(class_names)}).to_numpy()
        )
    log.info("training on %d images, %d classes + null", len(images), len(class_names))
    model = models.train_diffusion(
        images, classes, class_names, cfg["conditioning"], cfg["train"], seed, progress=log.info
    )
    models.save_diffusion(model, out_dir)


# --------------------------------------------------------------------------- generation
def _load_generator(model, gen_cfg: dict):
    """The class-conditional UNet folder (a path), or a text-to-image pipeline (a spec dict from config)."""
    # Which GPU the scheduler gave this job (SLURM sets CUDA_VISIBLE_DEVICES for --gpus), for the job's log.
    log.info(
        "generation device %s (generation.device: %s); CUDA_VISIBLE_DEVICES=%s",
        models.resolve_device(gen_cfg["device"]),
        gen_cfg["device"],
        os.environ.get("CUDA_VISIBLE_DEVICES", "<unset>"),
    )
    if t2i.is_text_to_image(model):
        device = models.resolve_device(gen_cfg["device"])
        return t2i.load(model, gen_cfg, device, models.resolve_dtype(gen_cfg["dtype"], device))
    return models.load_diffusion(model["path"] if isinstance(model, dict) else model)


def _conditioning(dataset, model) -> game.Conditioning:
    if isinstance(model, t2i.TextToImageModel):
        return t2i.caption_conditioning(
            dataset.items, dataset.contributors["contributor"].tolist(), model
        )
    return game.build_conditioning(
        dataset.items,
        dataset.contributors["contributor"].tolist(),
        model.class_names,
        model.conditioning,
    )


def _generate(model, classes, seeds, gen_cfg: dict, empty_coalition: str) -> np.ndarray:
    """Images for (class, seed) pairs; the null class means the empty coalition."""
    is_t2i = isinstance(model, t2i.TextToImageModel)
    if empty_coalition == "noise" and len(classes) and np.all(classes == model.null_class):
        return (t2i.noise_images if is_t2i else models.untrained_output)(seeds, model.image_size)
    if is_t2i:
        return t2i.sample(model, classes, seeds, gen_cfg)
    device = models.resolve_device(gen_cfg["device"])
    dtype = models.resolve_dtype(gen_cfg["dtype"], device)
    return models.sample(
        model,
        classes,
        seeds,
        gen_cfg["guidance_scale"],
        gen_cfg["steps"],
        device,
        dtype,
        gen_cfg["batch_size"],
    )


def generate_pool_shard(
    data_dir: str,
    model_dir: str,
    gen_cfg: dict,
    empty_coalition: str,
    seed: int,
    scatteritem: str,
    threads: int,
    out_path: str,
) -> None:
    """Generate the pools of this shard's groups (contributors, and the unconditional pool)."""
    models.set_threads(threads)
    shard, shards = shard_of(scatteritem)
    dataset = load_prepared(data_dir)
    model = _load_generator(model_dir, gen_cfg)
    cond = _conditioning(dataset, model)
    groups = game.shard_groups(cond.n + 1, shard, shards)
    per = gen_cfg["samples_per_contributor"]
    cols = {k: [] for k in ("group", "sample", "class", "seed", "image")}
    started = time.time()
    for done, group in enumerate(groups, 1):
        classes, seeds = game.pool_plan(
            cond, group, per, seed, gen_cfg.get("seed_policy", "per_image")
        )
        cols["image"].append(_generate(model, classes, seeds, gen_cfg, empty_coalition))
        cols["group"].append(np.full(per, group))
        cols["sample"].append(np.arange(per))
        cols["class"].append(classes)
        cols["seed"].append(seeds)
        rate = done * per / (time.time() - started)
        log.info(
            "shard %s: group %d done (%d/%d groups, %.1f images/s)",
            scatteritem,
            group,
            done,
            len(groups),
            rate,
        )
    joined = {k: np.concatenate(v) if v else np.zeros(0) for k, v in cols.items()}
    is_t2i = isinstance(model, t2i.TextToImageModel)
    shape = (-1, model.image_size, model.image_size) + ((3,) if is_t2i else ())
    feat.write_images(
        out_path,
        joined["group"].astype(np.int64),
        joined["sample"].astype(np.int64),
        joined["class"].astype(np.int64),
        joined["seed"].astype(np.int64),
        joined["image"].reshape(shape) if len(groups) else np.zeros((0, 1, 1)),
        metadata={
            "groups": groups,
            "scatteritem": scatteritem,
            "truncated_captions": model.truncated if is_t2i else 0,
        },
        prompts=[model.prompt(int(c)) for c in joined["class"]] if is_t2i else None,
    )


def extract_features(
    pool_shard: str,
    classifier_path: str,
    marker_size: int,
    feat_cfg: dict,
    threads: int,
    out_path: str,
) -> None:
    models.set_threads(threads)
    frame, images = feat.read_images([pool_shard])
    extractor = extractors.load_extractor(feat_cfg, classifier_path)
    prompts = frame["prompt"].tolist() if "prompt" in frame.columns else None
    samples = feat.extract(
        images,
        frame["group"].to_numpy(),
        extractor,
        marker_size,
        feat_cfg["marker_threshold"],
        prompts,
        feat_cfg,
    )
    log.info("features of %d images from %s", len(images), pool_shard)
    feat.write_samples(out_path, samples, frame["sample"].to_numpy())


def reference_features(
    classifier_path: str, out_path: str, feat_cfg: dict | None = None, data_dir: str | None = None
) -> None:
    """The reference set of the Fréchet distance: the clean digits in the digits classifier's
    features, or (another extractor) the dataset's own images in that extractor's features."""
    if feat_cfg and feat_cfg.get("extractor", "digits") != "digits":
        dataset = load_prepared(data_dir)
        extractor = extractors.load_extractor(feat_cfg, classifier_path)
        images = data_mod.load_images(
            dataset.root, dataset.items["file_name"], extractor.size, mode="RGB"
        )
        features, _ = extractor.embed(images)
        log.info("reference: %d dataset images in %s features", len(images), feat_cfg["extractor"])
        write_table(out_path, pd.DataFrame({"feature": list(features.astype(np.float32))}))
        return
    images, _ = data_mod.digits_images()
    features, _ = models.load_classifier(classifier_path).embed(images.astype(np.float32))
    write_table(out_path, pd.DataFrame({"feature": list(features.astype(np.float32))}))


def load_reference(path: str) -> Reference:
    return Reference.from_features(
        np.stack(pd.read_parquet(path)["feature"].to_numpy()).astype(np.float64)
    )


# --------------------------------------------------------------------------- coalitions and utilities
def draw_coalitions(data_dir: str, cfg: dict, out_path: str) -> None:
    names = pd.read_parquet(Path(data_dir) / "contributors.parquet")["contributor"].tolist()
    if cfg.get("table"):
        members = read_coalition_members(cfg["table"])
        x = coal.indicator_matrix(members, names, source=cfg["table"])
        chosen = [tuple(np.flatnonzero(row).tolist()) for row in x]
    else:
        chosen = coal.sample_coalitions(
            len(names),
            cfg["count"],
            cfg["sampler"],
            cfg["seed"],
            cfg["p"],
            cfg.get("paired", False),
        )
    log.info("%d coalitions of %d contributors", len(chosen), len(names))
    write_table(out_path, coal.coalition_table(chosen, names))


def read_coalition_members(path: str) -> pd.Series:
    frame = pd.read_parquet(path) if str(path).endswith(".parquet") else pd.read_csv(path)
    if "members" not in frame.columns:
        raise ValueError(
            f"{path}: coalition table has no 'members' column (columns: {list(frame.columns)})"
        )
    members = frame["members"]
    if members.map(lambda v: isinstance(v, str)).any():  # CSV: members separated by '|'
        members = members.map(
            lambda v: [m for m in str(v).split("|") if m] if isinstance(v, str) else list(v)
        )
    return members.map(list)


def _coalition_tuples(table: pd.DataFrame, names: list[str]) -> list[tuple[int, ...]]:
    x = coal.indicator_matrix(table["members"], names)
    return [tuple(np.flatnonzero(row).tolist()) for row in x]


def pooled_utilities(
    data_dir: str,
    coalitions_path: str,
    feature_shards: list[str],
    reference_path: str,
    metric_names: list[str],
    out_path: str,
    custom: dict | None = None,
    coalitions_cfg: dict | None = None,
    surrogate_cfg: dict | None = None,
) -> None:
    """Score every coalition of the table from the pools. With `coalitions.rounds.max` > 1, check the
    stopping rule after each round and, while the values still move, draw `coalitions.count` more
    coalitions (scoring them costs no generation) until it holds or the rounds run out."""
    from . import convergence

    contributors = pd.read_parquet(Path(data_dir) / "contributors.parquet")
    names = contributors["contributor"].tolist()
    table = pd.read_parquet(coalitions_path)
    samples = feat.read_samples(feature_shards)
    pooled = game.PooledGame(
        samples,
        contributors["n_items"].to_numpy(float),
        metric_names,
        load_reference(reference_path),
        custom,
    )
    tuples = _coalition_tuples(table, names)
    utilities = pooled.utilities(tuples)
    rounds_cfg = (coalitions_cfg or {}).get("rounds") or {"max": 1}
    history = []
    round_ = 1
    while rounds_cfg["max"] > 1:  # check every round, the last included; draw while rounds remain
        checked = rounds_cfg.get("metrics") or metric_names
        decision = convergence.stopping_check(
            coal.indicators(tuples, len(names)),
            {m: utilities[m].to_numpy(np.float64) for m in checked},
            names,
            surrogate_cfg,
            surrogate_cfg["seed"],
            rounds_cfg["threshold"],
            rounds_cfg["patience"],
        )
        history.append({"round": round_, "coalitions": len(tuples), **decision})
        log.info(
            "round %d: %d coalitions, stopping rule %s (%s)",
            round_,
            len(tuples),
            "holds" if decision["converged"] else "does not hold",
            ", ".join(f"{m}: rho {d['spearman_last']:.3f}" for m, d in decision["metrics"].items()),
        )
        if decision["converged"] or round_ == rounds_cfg["max"]:
            break
        new = coal.sample_coalitions(
            len(names),
            coalitions_cfg["count"],
            coalitions_cfg["sampler"],
            [coalitions_cfg["seed"], round_],
            coalitions_cfg["p"],
            coalitions_cfg.get("paired", False),
            taken=tuples,
        )
        if not new:
            log.info("every coalition has been drawn: no further round")
            break
        added = coal.coalition_table(new, names)
        added["coalition"] += len(tuples)
        table = pd.concat([table, added], ignore_index=True)
        utilities = pd.concat([utilities, pooled.utilities(new)], ignore_index=True)
        tuples = tuples + new
        round_ += 1
    metadata = {"mode": "pooled", "metrics": _metric_infos(metric_names, custom)}
    if history:
        metadata["rounds"] = history
    write_table(
        out_path, pd.concat([table.reset_index(drop=True), utilities], axis=1), metadata=metadata
    )


def _metric_infos(metric_names: list[str], custom: dict | None) -> dict:
    """Each metric's title, direction, needs and decomposition, kept with the utilities it produced."""
    from .metrics import get_metric

    return {name: get_metric(name, custom).info() for name in metric_names}


def per_coalition_utilities(
    data_dir: str,
    model_dir: str,
    classifier_path: str,
    reference_path: str,
    coalitions_path: str,
    gen_cfg: dict,
    empty_coalition: str,
    samples_per_coalition: int,
    marker_size: int,
    feat_cfg: dict,
    metric_names: list[str],
    seed: int,
    scatteritem: str,
    threads: int,
    out_path: str,
    rows: list[int] | None = None,
) -> None:
    """The paper's way: generate fresh samples for each coalition of this shard and score them."""
    models.set_threads(threads)
    shard, shards = shard_of(scatteritem)
    dataset = load_prepared(data_dir)
    names = dataset.contributors["contributor"].tolist()
    model = _load_generator(model_dir, gen_cfg)
    cond = _conditioning(dataset, model)
    extractor = extractors.load_extractor(feat_cfg, classifier_path)
    reference = load_reference(reference_path)
    table = pd.read_parquet(coalitions_path)
    if rows is not None:
        table = table.iloc[rows]
    table = table.iloc[shard::shards].reset_index(drop=True)
    tuples = _coalition_tuples(table, names)
    results = []
    started = time.time()
    for done, members in enumerate(tuples, 1):
        classes, seeds = game.coalition_plan(
            cond, members, samples_per_coalition, seed, gen_cfg.get("seed_policy", "per_image")
        )
        images = _generate(model, classes, seeds, gen_cfg, empty_coalition)
        prompts = (
            [model.prompt(int(c)) for c in classes]
            if isinstance(model, t2i.TextToImageModel)
            else None
        )
        samples = feat.extract(
            images,
            np.zeros(len(images)),
            extractor,
            marker_size,
            feat_cfg["marker_threshold"],
            prompts,
            feat_cfg,
        )
        results.append(
            game.sample_utilities(samples, metric_names, reference, feat_cfg.get("custom_metrics"))
        )
        log.info(
            "shard %s: coalition %d/%d (%.1f images/s)",
            scatteritem,
            done,
            len(tuples),
            done * samples_per_coalition / (time.time() - started),
        )
    utilities = pd.DataFrame(results, columns=metric_names)
    write_table(
        out_path,
        pd.concat([table, utilities], axis=1),
        metadata={
            "mode": "per_coalition",
            "metrics": _metric_infos(metric_names, feat_cfg.get("custom_metrics")),
        },
    )


def gather_utilities(shards: list[str], out_path: str) -> None:
    frame = pd.concat([pd.read_parquet(p) for p in shards], ignore_index=True).sort_values(
        "coalition"
    )
    write_table(
        out_path,
        frame.reset_index(drop=True),
        metadata={
            "mode": "per_coalition",
            "metrics": read_table_metadata(shards[0]).get("metrics", {}),
        },
    )


def check_rows(n_coalitions: int, count: int, seed: int) -> list[int]:
    """The coalitions re-scored by the proxy check: the empty and grand ones plus a seeded sample."""
    rng = np.random.default_rng(seed)
    rest = rng.permutation(np.arange(2, n_coalitions))[: max(0, count - 2)]
    return sorted([0, 1][:count] + rest.tolist())


def compare_modes(
    pooled_path: str, shards: list[str], metric_names: list[str], out_path: str, summary_path: str
) -> None:
    """Spearman correlation between pooled and per-coalition utilities of the same coalitions."""
    from scipy.stats import spearmanr

    pooled = pd.read_parquet(pooled_path).set_index("coalition")
    fresh = pd.concat([pd.read_parquet(p) for p in shards]).set_index("coalition").sort_index()
    joined = fresh[metric_names].join(
        pooled[metric_names], lsuffix="_per_coalition", rsuffix="_pooled"
    )
    joined.insert(0, "members", fresh["members"])
    summary = {}
    for name in metric_names:
        a, b = joined[f"{name}_per_coalition"], joined[f"{name}_pooled"]
        rho = spearmanr(a, b).statistic if a.nunique() > 1 and b.nunique() > 1 else float("nan")
        summary[name] = {
            "spearman": float(rho),
            "mean_abs_diff": float(np.mean(np.abs(a - b))),
            "n": int(len(a)),
        }
        log.info("proxy check %s: Spearman %.3f over %d coalitions", name, rho, len(a))
    write_table(out_path, joined.reset_index())
    write_json(summary_path, summary)


# --------------------------------------------------------------------------- attribution
def attribute(
    data_dir: str,
    utilities_path: str,
    metric: str,
    cfg: dict,
    out_path: str,
    interactions_path: str | None = None,
) -> None:
    from .metrics import get_metric

    names = pd.read_parquet(Path(data_dir) / "contributors.parquet")["contributor"].tolist()
    x, y = coal.read_utility_table(
        utilities_path, metric, names
    )  # refuses NaN / infinite utilities, naming rows
    x, y = estimators.merge_repeats(x, y, utilities_path)
    values, diagnostics = estimators.attribute(
        "surrogate",
        x,
        y,
        names,
        cfg,
        cfg["seed"],
        progress=log.info,
        pairs=None if interactions_path else cfg["top_pairs"],
    )
    if (
        interactions_path
    ):  # every pair computed (those of the 64 strongest contributors when n > 64)
        interactions = pd.DataFrame(
            diagnostics.pop("top_interactions"),
            columns=["contributor_i", "contributor_j", "interaction"],
        )
        write_table(interactions_path, interactions, metadata={"metric": metric})
        if cfg["top_pairs"]:
            diagnostics["top_interactions"] = interactions.head(cfg["top_pairs"]).to_dict("records")
    diagnostics["metric"] = (
        read_table_metadata(utilities_path).get("metrics", {}).get(metric)
        or get_metric(metric).info()
    )
    log.info(
        "%s: out-of-fold R^2 %.3f, efficiency gap %.4g; top: %s",
        metric,
        diagnostics["oof_r2"],
        diagnostics["efficiency_gap"],
        ", ".join(map(repr, values["contributor"].head(3))),
    )
    write_table(out_path, values, metadata=diagnostics)


def publish(src: str, dst: str) -> None:
    """Copy a cached stage output to the run's folder, keeping its Parquet metadata."""
    table = pq.read_table(src)
    write_table(dst, table)


def read_diagnostics(path: str) -> dict:
    return read_table_metadata(path)


# --------------------------------------------------------------------------- evaluation (the `evaluate` target)
def draw_heldout(data_dir: str, cfg: dict, out_path: str) -> None:
    """Held-out coalitions of the retraining game (plus its empty and grand coalitions)."""
    from . import evaluation

    names = pd.read_parquet(Path(data_dir) / "contributors.parquet")["contributor"].tolist()
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
    from . import surrogate

    names = pd.read_parquet(Path(data_dir) / "contributors.parquet")["contributor"].tolist()
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
    from . import evaluation

    dataset = load_prepared(data_dir)
    frame, generated = feat.read_images(pool_shards)
    generated = generated[
        frame["group"].to_numpy() < len(names)
    ]  # the contributors' pools, not the unconditional one
    size = generated.shape[-1]
    training = data_mod.load_images(dataset.root, dataset.items["file_name"], size)
    owner = dataset.items["contributor"].map({c: i for i, c in enumerate(names)}).to_numpy()
    if space == "feature":
        classifier = models.load_classifier(classifier_path)
        generated, training = (
            classifier.embed(generated)[0],
            classifier.embed(training.astype(np.float32))[0],
        )
    return evaluation.similarity_values(generated, training, owner, len(names), how)


def evaluation_baselines(
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
    from . import evaluation

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
    proxy = pooled_game.utilities(_coalition_tuples(heldout, names))
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
    from . import evaluation
    from .config import merge

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
        zip(table["coalition"], _coalition_tuples(table, names)), 1
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


def evaluate(
    data_dir: str,
    values_path: str,
    interaction_paths: list[str],
    heldout_proxy_path: str,
    heldout_shards: list[str],
    removals_path: str,
    removal_shards: list[str],
    metric_names: list[str],
    cfg: dict,
    out_dir: str,
) -> None:
    """LDS of every method, proxy fidelity, counterfactual removal and planted placements.
    `planted` in cfg: the digits export's planted contributors (ground truth by construction)."""
    from . import evaluation, surrogate

    eval_cfg, surrogate_cfg, planted = (
        cfg["evaluation"],
        cfg["surrogate"],
        cfg["data.digits.planted"] or [],
    )

    out = Path(out_dir)
    names = pd.read_parquet(Path(data_dir) / "contributors.parquet")["contributor"].tolist()
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
    fit_cfg = dict(surrogate_cfg, bootstrap=0)
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

    expected = evaluation.expected_placements(planted, names, metric_names)
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
