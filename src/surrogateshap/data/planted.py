"""Planted ground truth: known effects applied to chosen contributors when a dataset is prepared.

`data.planted` (any dataset) and `data.digits.planted` (the digits export, kept for old configs)
list entries such as

    {contributor: alice, effect: marker, position: bottom-right, size: 3,
     expect: {metric: marker_rate, rank: top, within: 1}}

Effects (images as floats in [0, 1], grayscale or RGB, at their stored size):
- noise: Gaussian noise of standard deviation `strength` (default 0.5);
- blur: Gaussian blur of sigma `strength` (default 1.5);
- marker: a `size`-pixel square of brightness `value` (default 1) at `position` (a corner,
  center, or [row, col] of its top-left pixel);
- near_duplicates: every item becomes a copy of one of `copies` (default 2) of the contributor's
  own images (plus noise of sd `strength`, default 0: exact copies);
- style: one consistent transform, `style: invert` (1 - x), `stripes` (horizontal stripes of
  amplitude `strength`, default 0.3, every `period` rows) or `tint` (RGB: times `color`).

Each entry says which metric its effect should move and where the contributor should then rank
in that metric's attribution (`rank: top` = among the largest values, i.e. raises the metric
most; `bottom` = lowers it most), within the first `within` places (default: the number of
entries expecting the same metric and end). Without `expect.metric`, an entry expects the first
of its effect's measures (`MEASURES`) that the run's metrics include, else the last of them:
noise and blur the sharpness (top and bottom) when it is measured, else the Fréchet distance.
The report and the evaluation read these expectations; nothing else depends on them.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd

# Pillow and pyarrow (through .io) are imported where images are read or written: validating a
# config reads this module, and the workflow validates its config when it is parsed.

EFFECTS = ("noise", "blur", "marker", "near_duplicates", "style")
STYLES = ("invert", "stripes", "tint")
POSITIONS = ("top-left", "top-right", "bottom-left", "bottom-right", "center")
# What each effect moves, by construction, and the end of the ranking it belongs to: the metrics
# that measure it, the most direct first (an entry expects the first its run measures, else the last).
MEASURES = {
    "noise": (("sharpness", "top"), ("frechet_distance", "top")),
    "blur": (("sharpness", "bottom"), ("frechet_distance", "top")),
    "marker": (("marker_rate", "top"),),
    "near_duplicates": (("diversity", "bottom"),),
    "style": (("frechet_distance", "top"),),
}
DEFAULT_EXPECT = {effect: measures[-1] for effect, measures in MEASURES.items()}
DEFAULT_STRENGTH = {"noise": 0.5, "blur": 1.5, "near_duplicates": 0.0, "style": 0.3}
DEFAULT_MARKER_SIZE = 2


class PlantedError(ValueError):
    """A planted entry that cannot be applied; the message names the entry."""


# --------------------------------------------------------------------------- the entries
def entries(data_cfg: dict) -> list[dict]:
    """Every planted entry of a data section, with its defaults filled in: the digits export's
    (`data.digits.planted`, digits source only; its markers take `data.digits.marker_size`),
    then `data.planted`. Each gets a `name` for messages, e.g. "data.planted[2]"."""
    out = []
    digits = data_cfg.get("digits") or {}
    if data_cfg.get("source") == "digits":
        for i, entry in enumerate(digits.get("planted") or []):
            size = entry.get("size") or digits.get("marker_size") or DEFAULT_MARKER_SIZE
            out.append(_filled(dict(entry, size=size), f"data.digits.planted[{i}]"))
    for i, entry in enumerate(data_cfg.get("planted") or []):
        out.append(_filled(dict(entry), f"data.planted[{i}]"))
    _fill_within(out)
    return out


def _expected(effect, metric: str | None, metrics: list[str] | None) -> tuple:
    """(metric, side) an entry of `effect` expects: `metric` when given (its side from the
    effect's measures, else the effect's default side), else the first of the effect's measures
    in `metrics`, else the last."""
    measures = MEASURES.get(effect, ())
    default = measures[-1] if measures else (None, "top")
    if metric is not None:
        return next((m for m in measures if m[0] == metric), (metric, default[1]))
    return next((m for m in measures if metrics is not None and m[0] in metrics), default)


def _filled(entry: dict, name: str) -> dict:
    effect = entry.get("effect")
    expect = dict(entry.get("expect") or {})
    metric, side = _expected(effect, expect.get("metric"), None)
    entry["expect"] = {
        "metric": metric,
        "rank": expect.get("rank", side),
        "within": expect.get("within"),
        # what the entry says itself; the rest follows the run's metrics (`expectations`)
        "given": [key for key in ("metric", "rank", "within") if expect.get(key) is not None],
    }
    if entry.get("strength") is None:
        entry["strength"] = DEFAULT_STRENGTH.get(effect, 0.0)
    entry.setdefault("position", "top-left")
    entry["size"] = entry.get("size") or DEFAULT_MARKER_SIZE
    entry.setdefault("value", 1.0)
    entry.setdefault("copies", 2)
    entry.setdefault("style", "invert")
    entry.setdefault("period", 2)
    entry.setdefault("color", [1.0, 0.3, 0.3])
    entry["name"] = name
    return entry


def _fill_within(out: list[dict]) -> None:
    """Default `within`: how many entries expect the same metric at the same end."""
    groups: dict[tuple, int] = {}
    for entry in out:
        key = (entry["expect"]["metric"], entry["expect"]["rank"])
        groups[key] = groups.get(key, 0) + 1
    for entry in out:
        if entry["expect"]["within"] is None:
            key = (entry["expect"]["metric"], entry["expect"]["rank"])
            entry["expect"]["within"] = groups[key]


def _following(entry: dict, metrics: list[str]) -> dict:
    given = entry["expect"].get("given", ("metric", "rank", "within"))
    if "metric" in given:
        return entry
    metric, side = _expected(entry.get("effect"), None, metrics)
    expect = dict(entry["expect"], metric=metric)
    if "rank" not in given:
        expect["rank"] = side
    if "within" not in given:
        expect["within"] = None  # counted again over what the entries now expect
    return dict(entry, expect=expect)


def label(entry: dict) -> str:
    return f"{entry['name']} (contributor {entry.get('contributor')!r}, effect {entry.get('effect')!r})"


def expectations(planted: list[dict], metrics: list[str] | None = None) -> list[dict]:
    """Where each planted contributor should rank: contributor, effect, metric, side, within
    (`planted`: entries as in a config, or from `entries`; only metrics in `metrics`, when given)."""
    filled = [
        e if "name" in e else _filled(dict(e), f"planted[{i}]") for i, e in enumerate(planted)
    ]
    if metrics is not None:  # an entry that names no metric expects the first measured of its own
        filled = [_following(e, metrics) for e in filled]
    _fill_within(filled)
    return [
        {
            "contributor": e["contributor"],
            "effect": e["effect"],
            "metric": e["expect"]["metric"],
            "side": e["expect"]["rank"],
            "within": int(e["expect"]["within"]),
        }
        for e in filled
        if metrics is None or e["expect"]["metric"] in metrics
    ]


# --------------------------------------------------------------------------- checks
def box(position, size: int, height: int, width: int) -> tuple[int, int]:
    """Top-left pixel (row, col) of a `size` square at `position` in a height x width image;
    PlantedError when it does not fit inside."""
    if isinstance(position, str):
        if position not in POSITIONS:
            raise PlantedError(
                f"position {position!r} is not one of {', '.join(POSITIONS)} or [row, col]"
            )
        row = {"top": 0, "bottom": height - size, "center": (height - size) // 2}[
            position.split("-")[0]
        ]
        col = {"left": 0, "right": width - size, "center": (width - size) // 2}[
            position.split("-")[-1]
        ]
    else:
        if not (isinstance(position, (list, tuple)) and len(position) == 2):
            raise PlantedError(f"position {position!r} is not a name or [row, col]")
        row, col = int(position[0]), int(position[1])
    if size < 1 or row < 0 or col < 0 or row + size > height or col + size > width:
        raise PlantedError(
            f"a {size}x{size} box at {position!r} (row {row}, col {col}) lies outside the "
            f"{height}x{width} image"
        )
    return row, col


def box_slices(position, size: int, height: int, width: int) -> tuple[slice, slice]:
    row, col = box(position, size, height, width)
    return slice(row, row + size), slice(col, col + size)


def problems(
    planted: list[dict],
    image_size: int | None = None,
    contributors: dict[str, int] | None = None,
    metrics: list[str] | None = None,
) -> list[str]:
    """Every problem of the planted entries, one line each naming the entry. Known at config
    time: effects, styles, marker geometry in `image_size` images; at preparation time also the
    contributors (name -> item count)."""
    out = []
    for entry in planted:
        where = label(entry)
        effect = entry.get("effect")
        if effect not in EFFECTS:
            out.append(f"{where}: unknown effect {effect!r}; expected one of {', '.join(EFFECTS)}")
            continue
        if contributors is not None and entry.get("contributor") not in contributors:
            shown = ", ".join(repr(n) for n in sorted(contributors)[:6])
            more = ", ..." if len(contributors) > 6 else ""
            out.append(
                f"{where}: unknown contributor {entry.get('contributor')!r} (the dataset has {shown}{more})"
            )
        if effect == "marker" and image_size is not None:
            try:
                box(entry["position"], int(entry["size"]), image_size, image_size)
            except PlantedError as error:
                out.append(f"{where}: marker outside the image: {error}")
        if effect == "style" and entry["style"] not in STYLES:
            out.append(
                f"{where}: unknown style {entry['style']!r}; expected one of {', '.join(STYLES)}"
            )
        if effect == "near_duplicates" and contributors is not None:
            n = contributors.get(entry.get("contributor"))
            if n is not None and int(entry["copies"]) >= n:
                out.append(
                    f"{where}: copies {entry['copies']} >= the contributor's {n} items (nothing would be duplicated)"
                )
        rank = entry["expect"]["rank"]
        if rank not in ("top", "bottom"):
            out.append(f"{where}: expect.rank {rank!r} is not 'top' or 'bottom'")
        if metrics is not None and entry["expect"]["metric"] not in metrics:
            pass  # an expectation about a metric not measured is simply not checked
    return out


# --------------------------------------------------------------------------- effects
def apply_effect(image: np.ndarray, entry: dict, rng: np.random.Generator) -> np.ndarray:
    """One planted effect (not near_duplicates: see `plant`) on a float image in [0, 1]."""
    effect, strength = entry["effect"], float(entry["strength"])
    if effect == "noise":
        out = image + rng.normal(0.0, strength, size=image.shape)
    elif effect == "blur":
        from scipy.ndimage import gaussian_filter

        sigma = (strength, strength, 0) if image.ndim == 3 else strength
        out = gaussian_filter(image, sigma=sigma, mode="constant")
    elif effect == "marker":
        out = image.copy()
        rows, cols = box_slices(entry["position"], int(entry["size"]), *image.shape[:2])
        out[rows, cols] = float(entry["value"])
    elif effect == "style":
        out = _style(image, entry)
    else:
        raise PlantedError(f"{label(entry)}: unknown effect {effect!r}; expected one of {EFFECTS}")
    return np.clip(out, 0.0, 1.0)


def _style(image: np.ndarray, entry: dict) -> np.ndarray:
    style = entry["style"]
    if style == "invert":
        return 1.0 - image
    if style == "stripes":
        rows = (np.arange(image.shape[0]) // int(entry["period"])) % 2
        pattern = float(entry["strength"]) * rows.reshape(-1, *([1] * (image.ndim - 1)))
        return image + pattern
    if style == "tint":
        rgb = image if image.ndim == 3 else np.repeat(image[..., None], 3, axis=-1)
        return rgb * np.asarray(entry["color"], dtype=np.float64)
    raise PlantedError(f"{label(entry)}: unknown style {style!r}; expected one of {STYLES}")


def read_image(path: Path) -> np.ndarray:
    """An image file as float64 in [0, 1]: (H, W) when grayscale, else (H, W, 3)."""
    from PIL import Image

    with Image.open(path) as image:
        mode = "L" if image.mode in ("L", "1", "I", "I;16", "LA") else "RGB"
        return np.asarray(image.convert(mode), dtype=np.float64) / 255.0


def write_image(path: Path, image: np.ndarray) -> None:
    """Atomically, in the format its name says (PNG when the suffix is unknown)."""
    from PIL import Image

    from ..workflow.io import atomic_path

    pixels = np.round(np.clip(image, 0.0, 1.0) * 255).astype(np.uint8)
    fmt = Image.registered_extensions().get(path.suffix.lower(), "PNG")
    with atomic_path(path) as tmp:
        Image.fromarray(pixels, mode="RGB" if pixels.ndim == 3 else "L").save(tmp, format=fmt)


def plant(
    root, items: pd.DataFrame, planted: list[dict], seed: int, out_root=None, progress=None
) -> Path:
    """Apply the planted entries to their contributors' image files; return the dataset's root.

    With `out_root` (a folder dataset: the user's files are never touched) every listed file is
    copied there byte for byte first and only the planted contributors' files are rewritten;
    without it (the digits export, which this stage wrote itself) they are rewritten in place.
    Draws come from `seed` and the entry's contributor and effect, so adding an entry does not
    change another's."""
    from ..proxy.game import _rng
    from ..workflow.io import atomic_path
    from .datasets import item_path

    counts = items["contributor"].value_counts().to_dict()
    found = problems(planted, contributors=counts)
    if found:
        raise PlantedError("planted entries refused:\n  " + "\n  ".join(found))
    root = Path(root)
    if out_root is not None:
        out_root = Path(out_root)
        for name in items["file_name"]:
            target = out_root / name
            target.parent.mkdir(parents=True, exist_ok=True)
            with atomic_path(target) as tmp:
                shutil.copyfile(item_path(root, name), tmp)
        root = out_root
    for entry in planted:
        names = items.loc[items["contributor"] == entry["contributor"], "file_name"].tolist()
        rng = _rng(seed, "planted", entry["contributor"], entry["effect"])
        images = [read_image(root / name) for name in names]
        problem = _marker_fits(entry, images)
        if problem:
            raise PlantedError(f"planted entries refused:\n  {problem}")
        if entry["effect"] == "near_duplicates":
            sources = rng.choice(len(names), size=int(entry["copies"]), replace=False)
            strength = float(entry["strength"])
            out = []
            for i in range(len(names)):
                copy = images[sources[i % len(sources)]]
                noise = rng.normal(0.0, strength, size=copy.shape) if strength > 0 else 0.0
                out.append(np.clip(copy + noise, 0.0, 1.0))
        else:
            out = [apply_effect(image, entry, rng) for image in images]
        for name, image in zip(names, out):
            write_image(root / name, image)
        if progress is not None:
            progress(f"{label(entry)}: {len(names)} items changed")
    return root


def _marker_fits(entry: dict, images: list[np.ndarray]) -> str | None:
    if entry["effect"] != "marker":
        return None
    for image in images:
        try:
            box(entry["position"], int(entry["size"]), *image.shape[:2])
        except PlantedError as error:
            return f"{label(entry)}: marker outside the image: {error}"
    return None
