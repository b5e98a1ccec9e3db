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

from .data import marker_box
from .io import column_matrix, matrix_column, write_table
from .metrics import Samples


def encode_png(image: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(np.round(np.clip(image, 0, 1) * 255).astype(np.uint8), mode="L").save(buffer, format="PNG")
    return buffer.getvalue()


def decode_png(data: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(data)) as image:
        return np.asarray(image.convert("L"), dtype=np.float32) / 255.0


def detect_marker(images: np.ndarray, marker_size: int, threshold: float) -> np.ndarray:
    """1.0 where every pixel of the planted corner box exceeds `threshold`.

    Every pixel, not the mean: noise often brightens part of the box, rarely all of it.
    """
    rows, cols = marker_box(marker_size)
    return (images[:, rows, cols].min(axis=(1, 2)) > threshold).astype(np.float64)


def write_images(path, group: np.ndarray, sample: np.ndarray, classes: np.ndarray, seeds: np.ndarray,
                 images: np.ndarray, metadata: dict | None = None) -> None:
    table = pa.table({
        "group": pa.array(group, pa.int64()),
        "sample": pa.array(sample, pa.int64()),
        "class": pa.array(classes, pa.int64()),
        "seed": pa.array(seeds.astype(np.int64), pa.int64()),
        "png": pa.array([encode_png(im) for im in images], pa.binary()),
    })
    write_table(path, table, metadata)


def read_images(paths) -> tuple[pd.DataFrame, np.ndarray]:
    frames = [pq.read_table(p).to_pandas() for p in paths]
    frame = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=["group", "sample", "png"])
    images = np.stack([decode_png(b) for b in frame["png"]]) if len(frame) else np.zeros((0, 1, 1), np.float32)
    return frame.drop(columns=["png"]), images


def extract(images: np.ndarray, group: np.ndarray, classifier, marker_size: int, marker_threshold: float) -> Samples:
    features, probs = classifier.embed(images)
    return Samples(np.asarray(group, dtype=np.int64), features, probs, detect_marker(images, marker_size, marker_threshold))


def write_samples(path, samples: Samples, sample_index: np.ndarray) -> None:
    table = pa.table({
        "group": pa.array(samples.group, pa.int64()),
        "sample": pa.array(sample_index, pa.int64()),
        "features": matrix_column(samples.features),
        "probs": matrix_column(samples.probs),
        "marker": pa.array(samples.marker, pa.float64()),
    })
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
    )
