"""A second dataset that is not digits: procedurally drawn shapes, written as an image folder.

Each image is one white-ish shape on a dark ground (drawn at 4x and averaged down, so edges are
anti-aliased), at a random centre, size and brightness. Each contributor ("studio-01", ...)
draws mostly one shape (its `specialty`, cycling through SHAPES) and sometimes others, so
contributors differ in what they bring, as artists do. Metadata: file_name, contributor,
label (the shape's index), shape, caption ("a small bright circle").
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from ..workflow.io import atomic_path, write_text

SHAPES = ("circle", "square", "triangle", "cross", "ring", "diamond")
SUPERSAMPLE = 4


def draw(
    shape: str, size: int, cx: float, cy: float, radius: float, brightness: float
) -> np.ndarray:
    """One shape as a float image (size, size) in [0, 1]; centre and radius in pixels."""
    n = size * SUPERSAMPLE
    y, x = (np.mgrid[0:n, 0:n] + 0.5) / SUPERSAMPLE
    dx, dy = x - cx, y - cy
    if shape == "circle":
        mask = dx**2 + dy**2 <= radius**2
    elif shape == "ring":
        d = np.sqrt(dx**2 + dy**2)
        mask = (d <= radius) & (d >= 0.55 * radius)
    elif shape == "square":
        mask = (np.abs(dx) <= 0.8 * radius) & (np.abs(dy) <= 0.8 * radius)
    elif shape == "diamond":
        mask = np.abs(dx) + np.abs(dy) <= radius
    elif shape == "cross":
        arm = 0.3 * radius
        mask = ((np.abs(dx) <= arm) & (np.abs(dy) <= radius)) | (
            (np.abs(dy) <= arm) & (np.abs(dx) <= radius)
        )
    elif shape == "triangle":  # apex up
        top, bottom = cy - radius, cy + 0.7 * radius
        half = (y - top) / (bottom - top) * radius
        mask = (y >= top) & (y <= bottom) & (np.abs(dx) <= half)
    else:
        raise ValueError(f"unknown shape {shape!r}; expected one of {SHAPES}")
    image = mask.astype(np.float64) * brightness
    return image.reshape(size, SUPERSAMPLE, size, SUPERSAMPLE).mean(axis=(1, 3))


def make_shapes(
    out_dir,
    contributors: int = 8,
    per_contributor: int = 40,
    size: int = 16,
    seed: int = 0,
    specialty: float = 0.7,
) -> pd.DataFrame:
    """Write out_dir/images/*.png and out_dir/metadata.csv; return the metadata table."""
    if contributors < 2 or per_contributor < 1 or size < 8:
        raise ValueError(
            "make-shapes needs at least 2 contributors, 1 item each, images of side >= 8"
        )
    out_dir = Path(out_dir)
    (out_dir / "images").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    rows = []
    for c in range(contributors):
        name = f"studio-{c + 1:02d}"
        for i in range(per_contributor):
            label = c % len(SHAPES) if rng.random() < specialty else int(rng.integers(len(SHAPES)))
            radius = rng.uniform(0.22, 0.4) * size
            cx, cy = (size / 2 + rng.uniform(-0.12, 0.12, size=2) * size).tolist()
            brightness = rng.uniform(0.6, 1.0)
            image = draw(SHAPES[label], size, cx, cy, radius, brightness)
            file_name = f"images/{name}-{i:04d}.png"
            with atomic_path(out_dir / file_name) as tmp:
                Image.fromarray(np.round(image * 255).astype(np.uint8), mode="L").save(
                    tmp, format="PNG"
                )
            words = (
                "small" if radius < 0.31 * size else "large",
                "bright" if brightness > 0.8 else "dim",
            )
            rows.append(
                {
                    "file_name": file_name,
                    "contributor": name,
                    "label": label,
                    "shape": SHAPES[label],
                    "caption": f"a {words[0]} {words[1]} {SHAPES[label]}",
                }
            )
    table = pd.DataFrame(rows)
    write_text(out_dir / "metadata.csv", table.to_csv(index=False))
    return table
