"""Per-sample features of generated images, and the image/feature shard files.

A pool shard (Parquet) holds generated images as PNG bytes with their group,
sample index, class and noise seed; a feature shard holds the classifier's
features and probabilities and the marker flag for the same rows.
"""

from __future__ import annotations

import io

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from PIL import Image

from ..data.planted import box_slices
from ..workflow.io import column_matrix, matrix_column, write_table
from .extractors import score_samples, to_gray
from .metric_base import Samples
from .score_metrics import PROMPT_GROUP


def encode_png(image: np.ndarray) -> bytes:
    """A float image in [0, 1], (H, W) grayscale or (H, W, 3) RGB, as PNG bytes."""
    buffer = io.BytesIO()
    pixels = np.round(np.clip(image, 0, 1) * 255).astype(np.uint8)
    Image.fromarray(pixels, mode="RGB" if pixels.ndim == 3 else "L").save(buffer, format="PNG")
    return buffer.getvalue()


def decode_png(data: bytes) -> np.ndarray:
    """(H, W) for grayscale PNGs, (H, W, 3) for colour ones, float32 in [0, 1]."""
    with Image.open(io.BytesIO(data)) as image:
        mode = "L" if image.mode in ("L", "1", "I", "I;16") else "RGB"
        return np.asarray(image.convert(mode), dtype=np.float32) / 255.0


def detect_marker(images: np.ndarray, marker, threshold: float) -> np.ndarray:
    """1.0 where every pixel of the marker box exceeds `threshold`.

    `marker`: the box, {position, size} (see `planted.box`), or an int: a square of that side
    in the top-left corner. Every pixel, not the mean: noise often brightens part of the box,
    rarely all of it.
    """
    spec = marker if isinstance(marker, dict) else {"position": "top-left", "size": int(marker)}
    gray = to_gray(images)
    rows, cols = box_slices(spec["position"], int(spec["size"]), *gray.shape[1:3])
    return (gray[:, rows, cols].min(axis=(1, 2)) > threshold).astype(np.float64)


def write_images(
    path,
    group: np.ndarray,
    sample: np.ndarray,
    classes: np.ndarray,
    seeds: np.ndarray,
    images: np.ndarray,
    metadata: dict | None = None,
    prompts: list[str] | None = None,
) -> None:
    columns = {
        "group": pa.array(group, pa.int64()),
        "sample": pa.array(sample, pa.int64()),
        "class": pa.array(classes, pa.int64()),
        "seed": pa.array(seeds.astype(np.int64), pa.int64()),
        "png": pa.array([encode_png(im) for im in images], pa.binary()),
    }
    if prompts is not None:  # text-to-image: the prompt each image was generated from
        columns["prompt"] = pa.array(prompts, pa.string())
    write_table(path, pa.table(columns), metadata)


def read_images(paths) -> tuple[pd.DataFrame, np.ndarray]:
    frames = [pq.read_table(p).to_pandas() for p in paths]
    frame = (
        pd.concat(frames, ignore_index=True)
        if frames
        else pd.DataFrame(columns=["group", "sample", "png"])
    )
    images = (
        np.stack([decode_png(b) for b in frame["png"]])
        if len(frame)
        else np.zeros((0, 1, 1), np.float32)
    )
    return frame.drop(columns=["png"]), images


def extract(
    images: np.ndarray,
    group: np.ndarray,
    classifier,
    marker_size,
    marker_threshold: float,
    prompts: list[str] | None = None,
    feat_cfg: dict | None = None,
) -> Samples:
    """Features and probabilities from `classifier` (the digits classifier, or an extractor of
    `surrogateshap.proxy.extractors`), the marker flag, and the per-sample scores `feat_cfg` configures."""
    features, probs = classifier.embed(images)
    scores, vectors = {}, {}
    if feat_cfg is not None:
        prompts = prompts if prompts is not None else [""] * len(images)
        scores = score_samples(images, prompts, feat_cfg, configured_scores(feat_cfg))
        if feat_cfg.get("lpips"):
            vectors["lpips"] = lpips_embedder(feat_cfg["lpips"])(images)
    return Samples(
        np.asarray(group, dtype=np.int64),
        features,
        probs,
        detect_marker(images, marker_size, marker_threshold),
        scores,
        vectors,
    )


def lpips_embedder(spec: dict):
    """The LPIPS embedding network of `features.lpips`, on CUDA when torch sees it."""
    from ..models.class_conditional import resolve_device
    from .lpips import cached_embedder

    linear = str(spec["linear"]) if spec.get("linear") else None
    return cached_embedder(
        str(spec["backbone"]), linear, int(spec.get("size") or 64), str(resolve_device("auto"))
    )


def configured_scores(feat_cfg: dict) -> set[str]:
    """The per-sample scores the `features` settings make available (a function of that section only,
    so the features stage's cache key covers them). `sharpness` always: it costs one pass over the
    pixels."""
    names = set(feat_cfg.get("custom_metrics") or {}) | {"sharpness"}
    if feat_cfg.get("clip"):
        names.add("clip_score")
        if feat_cfg.get("aesthetic"):
            names.add("aesthetic")
    if feat_cfg.get("reward"):
        names.add("reward")
    if feat_cfg.get("spurious_detector"):
        names.add("spurious")
    if feat_cfg.get("prompt_groups"):
        names.add(PROMPT_GROUP)
    return names


SCORE_PREFIX = "score:"  # feature-shard columns holding per-sample scores
VECTOR_PREFIX = "vector:"  # feature-shard columns holding per-sample embeddings (lpips)


def write_samples(path, samples: Samples, sample_index: np.ndarray) -> None:
    table = pa.table(
        {
            "group": pa.array(samples.group, pa.int64()),
            "sample": pa.array(sample_index, pa.int64()),
            "features": matrix_column(samples.features),
            "probs": matrix_column(samples.probs),
            "marker": pa.array(samples.marker, pa.float64()),
            **{
                SCORE_PREFIX + name: pa.array(values, pa.float64())
                for name, values in samples.scores.items()
            },
            **{
                VECTOR_PREFIX + name: matrix_column(values)
                for name, values in samples.vectors.items()
            },
        }
    )
    write_table(path, table)


def read_samples(paths) -> Samples:
    table = pa.concat_tables([pq.read_table(p) for p in paths])
    # Sort by (group, sample) so the result does not depend on how shards split the groups.
    order = np.lexsort((table["sample"].to_numpy(), table["group"].to_numpy()))
    table = table.take(pa.array(order))
    return Samples(
        table["group"].to_numpy().astype(np.int64),
        column_matrix(table["features"]),
        column_matrix(table["probs"]),
        table["marker"].to_numpy().astype(np.float64),
        {
            name[len(SCORE_PREFIX) :]: table[name].to_numpy().astype(np.float64)
            for name in table.column_names
            if name.startswith(SCORE_PREFIX)
        },
        {
            name[len(VECTOR_PREFIX) :]: column_matrix(table[name], np.float32)
            for name in table.column_names
            if name.startswith(VECTOR_PREFIX)
        },
    )
