"""The rules of models.smk: the digits classifier or the extractor trained on the dataset (with
the Fréchet reference features) and the model the workflow trains (class-conditional, or the
tiny_text_to_image pipeline); and, for `surrogateshap train-lora`, a LoRA on one contributor's
images on top of a finished run's pipeline."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pandas as pd

from ...data import datasets as data_mod
from ...models import class_conditional as models
from ...models import t2i_training, tiny
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
        checkpoint = Path(out_dir).parent / "training-checkpoint.pt"  # as below
        pipe = t2i_training.train_text_to_image(
            images,
            items["caption"].tolist(),
            cfg["train"],
            cfg.get("text_to_image"),
            seed,
            device=device,
            progress=log.info,
            checkpoint=checkpoint,
        )
        t2i_training.save_pipeline(pipe, out_dir)
        checkpoint.unlink(missing_ok=True)
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


def train_lora(
    out_dir,
    run_dir=None,
    contributor: str | None = None,
    images_dir=None,
    pipeline=None,
    device: str = "auto",
    progress=None,
    **train,
) -> dict:
    """Train a LoRA on top of a Stable Diffusion pipeline, on one contributor's images of a
    finished run or on a folder of captioned images, and write it for `model.lora`.

    `run_dir` is `results/<run>`: its fingerprints.json names the run's prepared dataset (the
    images the pipeline learnt, planted effects included) and, for `model.type:
    tiny_text_to_image`, the pipeline the workflow trained, both under the cache beside it.
    `images_dir` holds images and a metadata.csv with `file_name` and `caption` columns.
    `pipeline` is another Stable Diffusion folder to start from. `train`: `t2i_training.train_lora`'s
    settings. Writes the LoRA (`save_lora_weights` format) to `out_dir`; returns what it did.
    """
    from diffusers import StableDiffusionPipeline

    if (contributor is None) == (images_dir is None):
        raise ValueError("give either --contributor (with --run) or --images")
    if contributor is not None and run_dir is None:
        raise ValueError("--contributor needs --run (the run whose images it takes)")
    cache = keys = None
    if run_dir is not None:
        run_dir = Path(run_dir)
        recorded = run_dir / "fingerprints.json"
        if not recorded.is_file():
            raise FileNotFoundError(f"--run {run_dir}: no fingerprints.json (not a run's folder)")
        keys = json.loads(recorded.read_text(encoding="utf-8"))["stage_keys"]
        cache = run_dir.parent / "cache"
    if pipeline is None:
        if run_dir is None:
            raise ValueError("give --pipeline (a Stable Diffusion folder) or --run")
        pipeline = cache / "model" / keys["model"] / "model"
        if not (pipeline / "model_index.json").is_file():
            raise FileNotFoundError(
                f"--run {run_dir}: no pipeline trained by the workflow at {pipeline} (a run of "
                "model.type tiny_text_to_image has one; for a run on your own folder, give "
                "--pipeline)"
            )
    try:
        pipe = StableDiffusionPipeline.from_pretrained(str(pipeline), local_files_only=True)
    except Exception as error:
        raise ValueError(
            f"--pipeline {pipeline}: cannot load a Stable Diffusion pipeline: {error}"
        ) from None
    side = int(pipe.unet.config.sample_size * pipe.vae_scale_factor)
    if contributor is not None:
        root, items = _contributor_items(run_dir, cache / "data" / keys["data"], contributor)
        source = f"{contributor} in {run_dir}"
    else:
        root, items = Path(images_dir), data_mod.read_metadata(Path(images_dir) / "metadata.csv")
        missing = {"file_name", "caption"} - set(items.columns)
        if missing:
            raise ValueError(
                f"{root / 'metadata.csv'}: needs columns file_name and caption; "
                f"missing {sorted(missing)}"
            )
        source = str(root)
    images = data_mod.load_images(root, items["file_name"], side, mode="RGB")
    where = models.resolve_device(device, "--device")
    if progress:
        progress(f"a LoRA on {len(images)} images of {source} ({side}x{side}), on {where}")
    pipe = t2i_training.train_lora(
        pipe, images, items["caption"].tolist(), device=where, progress=progress, **train
    )
    tiny.save_lora(pipe, out_dir)
    return {"images": len(images), "source": source, "pipeline": str(pipeline)}


def _contributor_items(run_dir: Path, data_dir: Path, contributor: str):
    """The prepared images (their folder) and items of one contributor of a finished run."""
    if not (data_dir / "items.parquet").is_file():
        raise FileNotFoundError(f"--run {run_dir}: its prepared dataset {data_dir} is gone")
    dataset = load_prepared(str(data_dir))
    items = dataset.items[dataset.items["contributor"] == contributor]
    if items.empty:
        names = dataset.contributors["contributor"].tolist()
        shown = ", ".join(names[:10]) + (", ..." if len(names) > 10 else "")
        raise ValueError(f"--contributor {contributor!r} is not one of the run's: {shown}")
    if "caption" not in items.columns:
        raise ValueError(f"--run {run_dir}: its dataset has no captions (a text-to-image run has)")
    return dataset.root, items
