"""The rules of game.smk: the proxy game's utility table (one row per coalition, one column
per metric), pooled or per coalition, and the check of the pooled game against fresh samples."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pandas as pd

from ...estimation import coalitions as coal
from ...models import class_conditional as models
from ...models.generators import load_generator
from ...proxy import extractors, game
from ...proxy import features as feat
from ..io import read_table_metadata, write_json, write_table
from .common import coalition_tuples, load_prepared, load_reference, log, shard_of


def pooled_utilities(
    *,
    data_dir: str,
    coalitions_path: str,
    feature_shards: list[str],
    reference_path: str,
    metric_names: list[str],
    out_path: str,
    custom: dict | None = None,
    coalitions_cfg: dict | None = None,
    surrogate_cfg: dict | None = None,
    threads: int = 1,
) -> None:
    """Score every coalition of the table from the pools. With `coalitions.rounds.max` > 1, check the
    stopping rule after each round and, while the values still move, draw `coalitions.count` more
    coalitions (scoring them costs no generation) until it holds or the rounds run out; the rule's
    `threads` are XGBoost's in those checks."""
    from ...estimation import convergence

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
    tuples = coalition_tuples(table, names)
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
            dict(surrogate_cfg, threads=threads),
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
    from ...proxy.metrics import get_metric

    return {name: get_metric(name, custom).info() for name in metric_names}


def per_coalition_utilities(
    *,
    data_dir: str,
    model: str | dict,
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
    """The paper's way: generate fresh samples for each coalition of this shard and score them.
    `model`: the class-conditional model's folder, or a text-to-image spec (generators.py);
    `rows`: only these rows of the coalition table (the proxy check's, see check_rows)."""
    models.set_threads(threads)
    shard, shards = shard_of(scatteritem)
    dataset = load_prepared(data_dir)
    names = dataset.contributors["contributor"].tolist()
    generator = load_generator(model, gen_cfg)
    cond = generator.conditioning(dataset.items, names)
    extractor = extractors.load_extractor(feat_cfg, classifier_path)
    reference = load_reference(reference_path)
    table = pd.read_parquet(coalitions_path)
    if rows is not None:
        table = table.iloc[rows]
    table = table.iloc[shard::shards].reset_index(drop=True)
    tuples = coalition_tuples(table, names)
    results = []
    started = time.time()
    for done, members in enumerate(tuples, 1):
        classes, seeds = game.coalition_plan(
            cond, members, samples_per_coalition, seed, gen_cfg.get("seed_policy", "per_image")
        )
        images = generator.generate(classes, seeds, empty_coalition)
        samples = feat.extract(
            images,
            np.zeros(len(images)),
            extractor,
            marker_size,
            feat_cfg["marker_threshold"],
            generator.prompts(classes),
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


def gather_utilities(*, shards: list[str], out_path: str) -> None:
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
    *,
    pooled_path: str,
    shards: list[str],
    metric_names: list[str],
    out_path: str,
    summary_path: str,
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
