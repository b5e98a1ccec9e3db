"""The rules of generate.smk: the pools of generated images, and their features."""

from __future__ import annotations

import time

import numpy as np

from ...models import class_conditional as models
from ...models.generators import load_generator
from ...proxy import extractors, game
from ...proxy import features as feat
from .common import load_prepared, log, shard_of


def generate_pool_shard(
    *,
    data_dir: str,
    model: str | dict,
    gen_cfg: dict,
    empty_coalition: str,
    seed: int,
    scatteritem: str,
    threads: int,
    out_path: str,
) -> None:
    """Generate the pools of this shard's groups (contributors, and the unconditional pool).
    `model`: the class-conditional model's folder, or a text-to-image spec (generators.py)."""
    models.set_threads(threads)
    shard, shards = shard_of(scatteritem)
    dataset = load_prepared(data_dir)
    generator = load_generator(model, gen_cfg)
    cond = generator.conditioning(dataset.items, dataset.contributors["contributor"].tolist())
    groups = game.shard_groups(cond.n + 1, shard, shards)
    per = gen_cfg["samples_per_contributor"]
    cols = {k: [] for k in ("group", "sample", "class", "seed", "image")}
    started = time.time()
    for done, group in enumerate(groups, 1):
        classes, seeds = game.pool_plan(
            cond, group, per, seed, gen_cfg.get("seed_policy", "per_image")
        )
        cols["image"].append(generator.generate(classes, seeds, empty_coalition))
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
    feat.write_images(
        out_path,
        joined["group"].astype(np.int64),
        joined["sample"].astype(np.int64),
        joined["class"].astype(np.int64),
        joined["seed"].astype(np.int64),
        joined["image"].reshape((-1, *generator.image_shape))
        if len(groups)
        else np.zeros((0, 1, 1)),
        metadata={"groups": groups, "scatteritem": scatteritem, **generator.metadata()},
        prompts=generator.prompts(joined["class"]),
    )


def extract_features(
    *,
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
