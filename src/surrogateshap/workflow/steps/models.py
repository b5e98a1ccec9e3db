"""The rules of models.smk: the digits classifier or the extractor trained on the dataset (with
the Fréchet reference features) and the model the workflow trains (class-conditional, or the
tiny_text_to_image pipeline)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd

from ...data import datasets as data_mod
from ...models import class_conditional as models
from ...models import tiny
from ...proxy import extractors
from ..config import TRAINED_TEXT_TO_IMAGE
from ..io import write_json, write_table
from .common import load_prepared, log


def train_classifier(
    *, cfg: dict, seed: int, threads: int, out_path: str, metrics_path: str
) -> None:
    models.set_threads(threads)
    images, labels = data_mod.digits_images()
    model, accuracy = models.train_classifier(
        images.astype(np.float32), labels, cfg, seed, progress=log.info
    )
    log.info("classifier held-out accuracy %.3f", accuracy)
    models.save_classifier(model, out_path)
    write_json(metrics_path, {"heldout_accuracy": accuracy})


def train_extractor(
    *,
    data_dir: str,
    cfg: dict,
    image_size: int,
    seed: int,
    threads: int,
    out_path: str,
    metrics_path: str,
    device: str | None = None,
) -> None:
    """features.extractor: trained: the classifier trained on the dataset's own images (see
    `models.dataset_targets` for what it learns to predict), on `device` (model.train.device)."""
    models.set_threads(threads)
    dataset = load_prepared(data_dir)
    # in the colour the model sees, so the features can tell colours apart when it does
    images = data_mod.load_images(
        dataset.root, dataset.items["file_name"], image_size, dataset.mode
    )
    targets, target, names = models.dataset_targets(dataset.items, dataset.contributors)
    device = models.resolve_device(device or "auto", "model.train.device")
    log.info(
        "extractor: %d %s images, %d classes (%s), on %s",
        len(images),
        dataset.color,
        len(names),
        target,
        device,
    )
    model, accuracy = models.train_classifier(
        images, targets, cfg, seed, progress=log.info, device=device
    )
    log.info("extractor held-out accuracy %.3f", accuracy)
    models.save_classifier(model, out_path)
    write_json(metrics_path, {"heldout_accuracy": accuracy, "target": target, "classes": names})


def train_model(
    *, data_dir: str, cfg: dict, data_cfg: dict, seed: int, threads: int, out_dir: str
) -> None:
    models.set_threads(threads)
    dataset = load_prepared(data_dir)
    items = dataset.items
    if cfg["type"] == TRAINED_TEXT_TO_IMAGE:
        images = data_mod.load_images(
            dataset.root, items["file_name"], data_cfg["image_size"], mode="RGB"
        )
        device = models.resolve_device(cfg["train"].get("device") or "auto", "model.train.device")
        log.info(
            "training a text-to-image pipeline on %d images and %d distinct captions, on %s",
            len(images),
            items["caption"].nunique(),
            device,
        )
        pipe = tiny.train_text_to_image(
            images,
            items["caption"].tolist(),
            cfg["train"],
            cfg.get("text_to_image"),
            seed,
            device=device,
            progress=log.info,
        )
        tiny.save_pipeline(pipe, out_dir)
        return
    images = data_mod.load_images(
        dataset.root, items["file_name"], data_cfg["image_size"], dataset.mode
    )
    if cfg["conditioning"] == "contributor":
        class_names = dataset.contributors["contributor"].tolist()
        classes = items["contributor"].map({n: i for i, n in enumerate(class_names)}).to_numpy()
    else:
        class_names = [str(v) for v in sorted(items["label"].unique())]
        classes = (
            items["label"].astype(str).map({n: i for i, n in enumerate(class_names)}).to_numpy()
        )
    device = models.resolve_device(cfg["train"].get("device") or "auto", "model.train.device")
    log.info(
        "training on %d %s images, %d classes + null, on %s (CUDA_VISIBLE_DEVICES=%s)",
        len(images),
        dataset.color,
        len(class_names),
        device,
        os.environ.get("CUDA_VISIBLE_DEVICES", "<unset>"),
    )
    # beside the model folder, not in it: Snakemake removes a failed job's outputs, and the
    # stage folder is keyed on everything the training reads, so a checkpoint there is this run's
    checkpoint = Path(out_dir).parent / "training-checkpoint.pt"
    model = models.train_diffusion(
        images,
        classes,
        class_names,
        cfg["conditioning"],
        cfg["train"],
        seed,
        progress=log.info,
        device=device,
        checkpoint=checkpoint,
    )
    models.save_diffusion(model, out_dir)
    checkpoint.unlink(missing_ok=True)


def reference_features(
    *,
    classifier_path: str | None,
    out_path: str,
    feat_cfg: dict | None = None,
    data_dir: str | None = None,
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
