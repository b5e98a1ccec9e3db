"""A colour dataset: procedurally drawn scenes, each contributor with a style of its own.

Each image is one shape (drawn at 4x and averaged down, so edges are anti-aliased) on a textured
ground. A contributor ("atelier-001", ...) has a style, as an artist or a brand does: a palette
(ground and figure colours, varied a little per image), a texture of the ground (flat, stripes,
checks, gradient, speckle), a composition (where the figure sits and how large it is) and a
favourite shape that it draws most of the time. Metadata: file_name, contributor, label (the
shape's index, what the trained extractor learns), shape, palette, texture, caption ("a red
circle on a striped blue ground").

Planted effects (noise, blur, a marker, near-duplicates, a colour cast: `style: tint`) are the
workflow's own, applied to copies when the data is prepared (config/datasets/scenes.yaml).
"""

from __future__ import annotations

import colorsys
from pathlib import Path

import numpy as np
import pandas as pd

from .shapes import SHAPES, draw

TEXTURES = ("flat", "stripes", "checks", "gradient", "speckle")
COLOUR_NAMES = (  # hue (degrees) -> the word a caption uses
    (15, "red"),
    (45, "orange"),
    (70, "yellow"),
    (160, "green"),
    (200, "teal"),
    (250, "blue"),
    (290, "purple"),
    (335, "pink"),
    (360, "red"),
)
COMPOSITIONS = ("centre", "left", "right", "top", "bottom", "small", "large")


def colour_name(hue: float) -> str:
    """The caption's word for a hue in [0, 1)."""
    degrees = hue * 360
    return next(name for limit, name in COLOUR_NAMES if degrees <= limit)


def contributor_style(index: int, rng: np.random.Generator) -> dict:
    """One contributor's style: hues spread around the wheel (neighbours differ), a texture and a
    composition by turns, a favourite shape."""
    ground_hue = (index * 0.618034) % 1.0  # the golden angle: any prefix is spread evenly
    return {
        "ground_hue": ground_hue,
        "figure_hue": (ground_hue + rng.uniform(0.3, 0.7)) % 1.0,
        "ground_value": rng.uniform(0.25, 0.55),
        "texture": TEXTURES[index % len(TEXTURES)],
        "composition": COMPOSITIONS[(index // len(TEXTURES)) % len(COMPOSITIONS)],
        "specialty": index % len(SHAPES),
        "period": int(rng.integers(2, 5)),
    }


def _rgb(hue: float, saturation: float, value: float) -> np.ndarray:
    return np.array(colorsys.hsv_to_rgb(hue % 1.0, saturation, value))


def _ground(style: dict, size: int, rng: np.random.Generator) -> np.ndarray:
    """The textured ground, (size, size, 3) in [0, 1]."""
    base = _rgb(style["ground_hue"] + rng.normal(0, 0.02), 0.7, style["ground_value"])
    light = _rgb(style["ground_hue"], 0.45, min(1.0, style["ground_value"] + 0.3))
    y, x = np.mgrid[0:size, 0:size]
    period = style["period"]
    texture = style["texture"]
    if texture == "stripes":
        weight = ((y // period) % 2).astype(np.float64)
    elif texture == "checks":
        weight = (((y // period) + (x // period)) % 2).astype(np.float64)
    elif texture == "gradient":
        weight = x / max(1, size - 1)
    elif texture == "speckle":
        weight = (rng.random((size, size)) < 0.25).astype(np.float64)
    else:
        weight = np.zeros((size, size))
    return base * (1 - weight[..., None]) + light * weight[..., None]


def _placement(style: dict, size: int, rng: np.random.Generator) -> tuple[float, float, float]:
    """(cx, cy, radius) in pixels, by the contributor's composition."""
    radius = rng.uniform(0.22, 0.34) * size
    shift = {"left": (-0.15, 0), "right": (0.15, 0), "top": (0, -0.15), "bottom": (0, 0.15)}
    dx, dy = shift.get(style["composition"], (0.0, 0.0))
    if style["composition"] == "small":
        radius *= 0.7
    elif style["composition"] == "large":
        radius *= 1.25
    cx = size * (0.5 + dx + rng.uniform(-0.06, 0.06))
    cy = size * (0.5 + dy + rng.uniform(-0.06, 0.06))
    return cx, cy, radius


def draw_scene(style: dict, shape: str, size: int, rng: np.random.Generator) -> np.ndarray:
    """One image of a style, (size, size, 3) float in [0, 1]."""
    ground = _ground(style, size, rng)
    cx, cy, radius = _placement(style, size, rng)
    mask = draw(shape, size, cx, cy, radius, 1.0)[..., None]  # anti-aliased coverage
    figure = _rgb(style["figure_hue"] + rng.normal(0, 0.02), 0.85, rng.uniform(0.75, 1.0))
    return np.clip(ground * (1 - mask) + figure * mask, 0.0, 1.0)


def make_scenes(
    out_dir,
    contributors: int = 16,
    per_contributor: int = 24,
    size: int = 32,
    seed: int = 0,
    specialty: float = 0.7,
) -> pd.DataFrame:
    """Write out_dir/images/*.png and out_dir/metadata.csv; return the metadata table."""
    from PIL import Image

    from ..workflow.io import atomic_path, write_text

    if contributors < 2 or per_contributor < 1 or size < 8 or size > 256:
        raise ValueError(
            "make-scenes needs at least 2 contributors, 1 item each, images of side 8 to 256"
        )
    out_dir = Path(out_dir)
    (out_dir / "images").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    width = max(3, len(str(contributors)))
    rows = []
    for c in range(contributors):
        name = f"atelier-{c + 1:0{width}d}"
        style = contributor_style(c, rng)
        for i in range(per_contributor):
            label = (
                style["specialty"] if rng.random() < specialty else int(rng.integers(len(SHAPES)))
            )
            image = draw_scene(style, SHAPES[label], size, rng)
            file_name = f"images/{name}-{i:04d}.png"
            with atomic_path(out_dir / file_name) as tmp:
                Image.fromarray(np.round(image * 255).astype(np.uint8), mode="RGB").save(
                    tmp, format="PNG"
                )
            ground, figure = colour_name(style["ground_hue"]), colour_name(style["figure_hue"])
            texture = {"flat": "plain", "stripes": "striped", "checks": "checked"}.get(
                style["texture"], style["texture"]
            )
            rows.append(
                {
                    "file_name": file_name,
                    "contributor": name,
                    "label": label,
                    "shape": SHAPES[label],
                    "palette": f"{figure} on {ground}",
                    "texture": style["texture"],
                    "caption": f"a {figure} {SHAPES[label]} on a {texture} {ground} ground",
                }
            )
    table = pd.DataFrame(rows)
    write_text(out_dir / "metadata.csv", table.to_csv(index=False))
    return table
