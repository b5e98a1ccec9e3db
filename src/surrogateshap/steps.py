"""One function per workflow rule. Rule scripts only unpack Snakemake's objects
and call these, so every step can be run and tested without Snakemake."""

from __future__ import annotations

import json
import logging
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from . import coalitions as coal
from . import data as data_mod
from . import features as feat
from . import estimators, game, models
from .io import read_table_metadata, write_json, write_table
from .metrics import Reference

log = logging.getLogger("surrogateshap")


def setup_logging(log_path: str | None) -> None:
    handlers = [logging.StreamHandler()]
    if log_path:
        Path(log_path).parent.mkdir(parents=True, exist_ok=True)
        handlers.append(logging.FileHandler(log_path, mode="w"))
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s", handlers=handlers, force=True)
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
        table = data_mod.export_digits(out, digits["splits_per_class"], digits["planted"], seed, digits["marker_size"])
        write_table(out / "metadata.parquet", table)
        root, metadata = out, out / "metadata.parquet"
    else:
        root, metadata = Path(data_cfg["root"]), Path(data_cfg["metadata"] or Path(data_cfg["root"]) / "metadata.csv")
    dataset = data_mod.load_dataset(root, metadata, data_cfg["contributor_column"], data_cfg["label_column"],
                                    data_cfg["min_items"])
    log.info("dataset %s: %d items from %d contributors", root, len(dataset.items), dataset.n)
    data_mod.write_dataset_tables(out, dataset)
    write_json(out / "dataset.json", {"root": str(Path(root).resolve()), "n_items": len(dataset.items), "n_contributors": dataset.n})


def load_prepared(data_dir: str) -> data_mod.Dataset:
    data_dir = Path(data_dir)
    info = json.loads((data_dir / "dataset.json").read_text())
    return data_mod.Dataset(Path(info["root"]), pd.read_parquet(data_dir / "items.parquet"),
                            pd.read_parquet(data_dir / "contributors.parquet"))


# --------------------------------------------------------------------------- models
def train_classifier(cfg: dict, seed: int, threads: int, out_path: str, metrics_path: str) -> None:
    models.set_threads(threads)
    images, labels = data_mod.digits_images()
    model, accuracy = models.train_classifier(images.astype(np.float32), labels, cfg, seed, progress=log.info)
    log.info("classifier held-out accuracy %.3f", accuracy)
    models.save_classifier(model, out_path)
    write_json(metrics_path, {"heldout_accuracy": accuracy})


def train_model(data_dir: str, cfg: dict, data_cfg: dict, seed: int, threads: int, out_dir: str) -> None:
    models.set_threads(threads)
    dataset = load_prepared(data_dir)
    items = dataset.items
    images = data_mod.load_images(dataset.root, items["file_name"], data_cfg["image_size"])
    if cfg["conditioning"] == "contributor":
        class_names = dataset.contributors["contributor"].tolist()
        classes = items["contributor"].map({n: i for i, n in enumerate(class_names)}).to_numpy()
    else:
        class_names = [str(v) for v in sorted(items["label"].unique())]
        classes = items["label"].astype(str).map({n: i for i, n in enumerate(class_names)}).to_numpy()
    log.info("training on %d images, %d classes + null", len(images), len(class_names))
    model = models.train_diffusion(images, classes, class_names, cfg["conditioning"], cfg["train"], seed, progress=log.info)
    models.save_diffusion(model, out_dir)


# --------------------------------------------------------------------------- generation
def _conditioning(dataset, model) -> game.Conditioning:
    return game.build_conditioning(dataset.items, dataset.contributors["contributor"].tolist(), model.class_names,
                                   model.conditioning)


def _generate(model, classes, seeds, gen_cfg: dict, empty_coalition: str) -> np.ndarray:
    """Images for (class, seed) pairs; the null class means the empty coalition."""
    if empty_coalition == "noise" and len(classes) and np.all(classes == model.null_class):
        return models.untrained_output(seeds, model.image_size)
    device = models.resolve_device(gen_cfg["device"])
    dtype = models.resolve_dtype(gen_cfg["dtype"], device)
    return models.sample(model, classes, seeds, gen_cfg["guidance_scale"], gen_cfg["steps"], device, dtype,
                         gen_cfg["batch_size"])


def generate_pool_shard(data_dir: str, model_dir: str, gen_cfg: dict, empty_coalition: str, seed: int, scatteritem: str,
                        threads: int, out_path: str) -> None:
    """Generate the pools of this shard's groups (contributors, and the unconditional pool)."""
    models.set_threads(threads)
    shard, shards = shard_of(scatteritem)
    dataset = load_prepared(data_dir)
    model = models.load_diffusion(model_dir)
    cond = _conditioning(dataset, model)
    groups = game.shard_groups(cond.n + 1, shard, shards)
    per = gen_cfg["samples_per_contributor"]
    cols = {k: [] for k in ("group", "sample", "class", "seed", "image")}
    started = time.time()
    for done, group in enumerate(groups, 1):
        classes, seeds = game.pool_plan(cond, group, per, seed)
        cols["image"].append(_generate(model, classes, seeds, gen_cfg, empty_coalition))
        cols["group"].append(np.full(per, group))
        cols["sample"].append(np.arange(per))
        cols["class"].append(classes)
        cols["seed"].append(seeds)
        rate = done * per / (time.time() - started)
        log.info("shard %s: group %d done (%d/%d groups, %.1f images/s)", scatteritem, group, done, len(groups), rate)
    joined = {k: np.concatenate(v) if v else np.zeros(0) for k, v in cols.items()}
    feat.write_images(out_path, joined["group"].astype(np.int64), joined["sample"].astype(np.int64),
                      joined["class"].astype(np.int64), joined["seed"].astype(np.int64),
                      joined["image"].reshape(-1, model.image_size, model.image_size) if len(groups) else np.zeros((0, 1, 1)),
                      metadata={"groups": groups, "scatteritem": scatteritem})


def extract_features(pool_shard: str, classifier_path: str, marker_size: int, feat_cfg: dict, threads: int, out_path: str) -> None:
    models.set_threads(threads)
    frame, images = feat.read_images([pool_shard])
    classifier = models.load_classifier(classifier_path)
    samples = feat.extract(images, frame["group"].to_numpy(), classifier, marker_size, feat_cfg["marker_threshold"])
    log.info("features of %d images from %s", len(images), pool_shard)
    feat.write_samples(out_path, samples, frame["sample"].to_numpy())


def reference_features(classifier_path: str, out_path: str) -> None:
    """Classifier features of the clean digits: the reference set of the Fréchet distance."""
    images, _ = data_mod.digits_images()
    features, _ = models.load_classifier(classifier_path).embed(images.astype(np.float32))
    write_table(out_path, pd.DataFrame({"feature": list(features.astype(np.float32))}))


def load_reference(path: str) -> Reference:
    return Reference.from_features(np.stack(pd.read_parquet(path)["feature"].to_numpy()).astype(np.float64))


# --------------------------------------------------------------------------- coalitions and utilities
def draw_coalitions(data_dir: str, cfg: dict, out_path: str) -> None:
    names = pd.read_parquet(Path(data_dir) / "contributors.parquet")["contributor"].tolist()
    if cfg.get("table"):
        members = read_coalition_members(cfg["table"])
        x = coal.indicator_matrix(members, names, source=cfg["table"])
        chosen = [tuple(np.flatnonzero(row).tolist()) for row in x]
    else:
        chosen = coal.sample_coalitions(len(names), cfg["count"], cfg["sampler"], cfg["seed"], cfg["p"])
    log.info("%d coalitions of %d contributors", len(chosen), len(names))
    write_table(out_path, coal.coalition_table(chosen, names))


def read_coalition_members(path: str) -> pd.Series:
    frame = pd.read_parquet(path) if str(path).endswith(".parquet") else pd.read_csv(path)
    if "members" not in frame.columns:
        raise ValueError(f"{path}: coalition table has no 'members' column (columns: {list(frame.columns)})")
    members = frame["members"]
    if members.map(lambda v: isinstance(v, str)).any():  # CSV: members separated by '|'
        members = members.map(lambda v: [m for m in str(v).split("|") if m] if isinstance(v, str) else list(v))
    return members.map(list)


def _coalition_tuples(table: pd.DataFrame, names: list[str]) -> list[tuple[int, ...]]:
    x = coal.indicator_matrix(table["members"], names)
    return [tuple(np.flatnonzero(row).tolist()) for row in x]


def pooled_utilities(data_dir: str, coalitions_path: str, feature_shards: list[str], reference_path: str,
                     metric_names: list[str], out_path: str) -> None:
    contributors = pd.read_parquet(Path(data_dir) / "contributors.parquet")
    names = contributors["contributor"].tolist()
    table = pd.read_parquet(coalitions_path)
    samples = feat.read_samples(feature_shards)
    utilities = game.pooled_utilities(samples, _coalition_tuples(table, names), contributors["n_items"].to_numpy(float),
                                      metric_names, load_reference(reference_path))
    write_table(out_path, pd.concat([table.reset_index(drop=True), utilities], axis=1), metadata={"mode": "pooled"})


def per_coalition_utilities(data_dir: str, model_dir: str, classifier_path: str, reference_path: str,
                            coalitions_path: str, gen_cfg: dict, empty_coalition: str, samples_per_coalition: int, marker_size: int,
                            feat_cfg: dict, metric_names: list[str], seed: int, scatteritem: str, threads: int,
                            out_path: str, rows: list[int] | None = None) -> None:
    """The paper's way: generate fresh samples for each coalition of this shard and score them."""
    models.set_threads(threads)
    shard, shards = shard_of(scatteritem)
    dataset = load_prepared(data_dir)
    names = dataset.contributors["contributor"].tolist()
    model = models.load_diffusion(model_dir)
    cond = _conditioning(dataset, model)
    classifier = models.load_classifier(classifier_path)
    reference = load_reference(reference_path)
    table = pd.read_parquet(coalitions_path)
    if rows is not None:
        table = table.iloc[rows]
    table = table.iloc[shard::shards].reset_index(drop=True)
    tuples = _coalition_tuples(table, names)
    results = []
    started = time.time()
    for done, members in enumerate(tuples, 1):
        classes, seeds = game.coalition_plan(cond, members, samples_per_coalition, seed)
        images = _generate(model, classes, seeds, gen_cfg, empty_coalition)
        samples = feat.extract(images, np.zeros(len(images)), classifier, marker_size, feat_cfg["marker_threshold"])
        results.append(game.sample_utilities(samples, metric_names, reference))
        log.info("shard %s: coalition %d/%d (%.1f images/s)", scatteritem, done, len(tuples),
                 done * samples_per_coalition / (time.time() - started))
    utilities = pd.DataFrame(results, columns=metric_names)
    write_table(out_path, pd.concat([table, utilities], axis=1), metadata={"mode": "per_coalition"})


def gather_utilities(shards: list[str], out_path: str) -> None:
    frame = pd.concat([pd.read_parquet(p) for p in shards], ignore_index=True).sort_values("coalition")
    write_table(out_path, frame.reset_index(drop=True), metadata={"mode": "per_coalition"})


def check_rows(n_coalitions: int, count: int, seed: int) -> list[int]:
    """The coalitions re-scored by the proxy check: the empty and grand ones plus a seeded sample."""
    rng = np.random.default_rng(seed)
    rest = rng.permutation(np.arange(2, n_coalitions))[: max(0, count - 2)]
    return sorted([0, 1][:count] + rest.tolist())


def compare_modes(pooled_path: str, shards: list[str], metric_names: list[str], out_path: str, summary_path: str) -> None:
    """Spearman correlation between pooled and per-coalition utilities of the same coalitions."""
    from scipy.stats import spearmanr

    pooled = pd.read_parquet(pooled_path).set_index("coalition")
    fresh = pd.concat([pd.read_parquet(p) for p in shards]).set_index("coalition").sort_index()
    joined = fresh[metric_names].join(pooled[metric_names], lsuffix="_per_coalition", rsuffix="_pooled")
    joined.insert(0, "members", fresh["members"])
    summary = {}
    for name in metric_names:
        a, b = joined[f"{name}_per_coalition"], joined[f"{name}_pooled"]
        rho = spearmanr(a, b).statistic if a.nunique() > 1 and b.nunique() > 1 else float("nan")
        summary[name] = {"spearman": float(rho), "mean_abs_diff": float(np.mean(np.abs(a - b))), "n": int(len(a))}
        log.info("proxy check %s: Spearman %.3f over %d coalitions", name, rho, len(a))
    write_table(out_path, joined.reset_index())
    write_json(summary_path, summary)


# --------------------------------------------------------------------------- attribution
def attribute(data_dir: str, utilities_path: str, metric: str, cfg: dict, out_path: str) -> None:
    from .metrics import get_metric

    names = pd.read_parquet(Path(data_dir) / "contributors.parquet")["contributor"].tolist()
    table = pd.read_parquet(utilities_path)
    if metric not in table.columns:
        raise ValueError(f"{utilities_path}: no column for metric {metric!r} (columns: {list(table.columns)})")
    x = coal.indicator_matrix(table["members"], names, source=utilities_path)
    y = table[metric].to_numpy(np.float64)
    values, diagnostics = estimators.attribute("surrogate", x, y, names, cfg, cfg["seed"], progress=log.info,
                                               pairs=cfg["top_pairs"])
    diagnostics["metric"] = get_metric(metric).info()
    log.info("%s: out-of-fold R^2 %.3f, efficiency gap %.4g; top: %s", metric, diagnostics["oof_r2"],
             diagnostics["efficiency_gap"], ", ".join(values["contributor"].head(3)))
    write_table(out_path, values, metadata=diagnostics)


def publish(src: str, dst: str) -> None:
    """Copy a cached stage output to the run's folder, keeping its Parquet metadata."""
    table = pq.read_table(src)
    write_table(dst, table)


def read_diagnostics(path: str) -> dict:
    return read_table_metadata(path)
