"""Datasets: the embedded digits export and the validating metadata loader.

A dataset is a folder of images plus a metadata table (`file_name`, a contributor
column, optionally a label column), the Hugging Face `imagefolder` convention.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from .io import atomic_path, write_table

PLANTED_EFFECTS = ("noise", "blur", "marker")


class DataError(ValueError):
    """Bad dataset input; the message names the file, column or value at fault."""


# --------------------------------------------------------------------------- planted effects
def marker_box(marker_size: int) -> tuple[slice, slice]:
    """Where the planted marker sits: the top-left corner. One place for export and detector."""
    return slice(0, marker_size), slice(0, marker_size)


def apply_effect(image: np.ndarray, effect: str, strength: float, rng: np.random.Generator, marker_size: int) -> np.ndarray:
    """Apply a planted effect to one float image in [0, 1]."""
    if effect == "noise":
        out = image + rng.normal(0.0, strength, size=image.shape)
    elif effect == "blur":
        from scipy.ndimage import gaussian_filter

        out = gaussian_filter(image, sigma=strength, mode="constant")
    elif effect == "marker":
        out = image.copy()
        rows, cols = marker_box(marker_size)
        out[rows, cols] = 1.0
    else:  # the schema restricts effects; this guards direct callers
        raise DataError(f"unknown planted effect {effect!r}; expected one of {PLANTED_EFFECTS}")
    return np.clip(out, 0.0, 1.0)


def digits_images() -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's bundled digits (no download) as float images in [0, 1] and labels."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    return digits.images.astype(np.float64) / 16.0, digits.target.astype(np.int64)


def digits_contributor(label: int, part: int) -> str:
    return f"digit-{label}-{'abcdefghijklmnopqrstuvwxyz'[part]}"


def export_digits(out_dir, splits_per_class: int, planted: list[dict], seed: int, marker_size: int) -> pd.DataFrame:
    """Write the digits as PNGs plus metadata.csv; each class is split into contributors.

    Items of a class are dealt to its contributors in a seeded random order.
    """
    images, labels = digits_images()
    rng = np.random.default_rng(seed)
    contributors = np.empty(len(labels), dtype=object)
    for label in np.unique(labels):
        idx = rng.permutation(np.flatnonzero(labels == label))
        for part, chunk in enumerate(np.array_split(idx, splits_per_class)):
            contributors[chunk] = digits_contributor(int(label), part)
    known = set(contributors)
    effects = {}
    for entry in planted:
        if entry["contributor"] not in known:
            raise DataError(
                f"data.digits.planted names contributor {entry['contributor']!r}, which the digits export "
                f"does not create (it creates {sorted(known)[:3]}...)"
            )
        effects[entry["contributor"]] = entry
    out_dir = Path(out_dir)
    image_dir = out_dir / "images"
    image_dir.mkdir(parents=True, exist_ok=True)
    rows = []
    for i, (image, label, contributor) in enumerate(zip(images, labels, contributors)):
        effect = effects.get(contributor)
        if effect is not None:
            image = apply_effect(image, effect["effect"], float(effect.get("strength", 0.0)), rng, marker_size)
        file_name = f"images/{i:05d}.png"
        with atomic_path(out_dir / file_name) as tmp:
            Image.fromarray(np.round(image * 255).astype(np.uint8), mode="L").save(tmp, format="PNG")
        rows.append({"file_name": file_name, "contributor": contributor, "label": int(label)})
    table = pd.DataFrame(rows)
    return table


# --------------------------------------------------------------------------- loading
@dataclass
class Dataset:
    root: Path
    items: pd.DataFrame  # columns: file_name, contributor, label (optional)
    contributors: pd.DataFrame  # columns: contributor, index, n_items

    @property
    def n(self) -> int:
        return len(self.contributors)


def read_metadata(path) -> pd.DataFrame:
    path = Path(path)
    if not path.exists():
        raise DataError(f"metadata table not found: {path}")
    suffix = path.suffix.lower()
    try:
        if suffix == ".csv":
            return pd.read_csv(path, dtype=str, keep_default_na=False)
        if suffix in (".jsonl", ".json"):
            return pd.read_json(path, lines=suffix == ".jsonl", dtype=False)
        if suffix == ".parquet":
            return pd.read_parquet(path)
    except Exception as exc:  # a parser error: name the file
        raise DataError(f"{path}: cannot read metadata table: {exc}") from None
    raise DataError(f"{path}: metadata must be .csv, .jsonl or .parquet, not {suffix!r}")


def load_dataset(root, metadata, contributor_column="contributor", label_column="label",
                 min_items: int = 1, check_images: bool = True) -> Dataset:
    """Load and validate a dataset; every problem found is listed in one DataError."""
    root = Path(root)
    metadata_path = Path(metadata)
    table = read_metadata(metadata_path)
    problems: list[str] = []
    for column in ("file_name", contributor_column):
        if column not in table.columns:
            problems.append(f"missing column {column!r} (columns present: {list(table.columns)})")
    if problems:
        raise DataError(f"{metadata_path}: " + "; ".join(problems))
    items = pd.DataFrame({
        "file_name": table["file_name"].astype(str),
        "contributor": table[contributor_column].astype(str),
    })
    if label_column and label_column in table.columns:
        labels = pd.to_numeric(table[label_column], errors="coerce")
        bad = table.loc[labels.isna(), "file_name"].tolist()
        if bad:
            problems.append(f"column {label_column!r} is not an integer for {_listing(bad)}")
        else:
            items["label"] = labels.astype(np.int64)
    empty = items.loc[items["contributor"].str.strip() == "", "file_name"].tolist()
    if empty:
        problems.append(f"empty {contributor_column!r} for {_listing(empty)}")
    duplicated = items.loc[items["file_name"].duplicated(), "file_name"].unique().tolist()
    if duplicated:
        problems.append(f"duplicate file_name {_listing(duplicated)}")
    if check_images:
        problems.extend(_image_problems(root, items["file_name"]))
    counts = items["contributor"].value_counts()
    too_few = counts[counts < min_items]
    if len(too_few):
        problems.append(
            "contributors with fewer than "
            f"{min_items} items: " + ", ".join(f"{name!r} ({count})" for name, count in too_few.items())
        )
    if problems:
        raise DataError(f"{metadata_path}:\n  " + "\n  ".join(problems))
    names = sorted(items["contributor"].unique())
    contributors = pd.DataFrame({
        "contributor": names,
        "index": np.arange(len(names), dtype=np.int64),
        "n_items": [int(counts[name]) for name in names],
    })
    return Dataset(root=root, items=items.reset_index(drop=True), contributors=contributors)


def _listing(values: list[str], limit: int = 20) -> str:
    shown = ", ".join(repr(v) for v in values[:limit])
    more = f" and {len(values) - limit} more" if len(values) > limit else ""
    return f"{len(values)} item(s): {shown}{more}"


def _image_problems(root: Path, file_names) -> list[str]:
    missing, unreadable = [], []
    for name in file_names:
        path = root / name
        if not path.is_file():
            missing.append(name)
            continue
        try:
            with Image.open(path) as image:
                image.verify()
        except Exception:
            unreadable.append(name)
    problems = []
    if missing:
        problems.append(f"image files missing under {root}: {_listing(missing)}")
    if unreadable:
        problems.append(f"image files that cannot be read: {_listing(unreadable)}")
    return problems


def load_images(root: Path, file_names, size: int) -> np.ndarray:
    """Grayscale images as float32 in [0, 1], resized to `size` when they differ."""
    out = np.empty((len(file_names), size, size), dtype=np.float32)
    for i, name in enumerate(file_names):
        with Image.open(Path(root) / name) as image:
            image = image.convert("L")
            if image.size != (size, size):
                image = image.resize((size, size), Image.BILINEAR)
            out[i] = np.asarray(image, dtype=np.float32) / 255.0
    return out


def write_dataset_tables(out_dir, dataset: Dataset) -> None:
    out_dir = Path(out_dir)
    write_table(out_dir / "items.parquet", dataset.items)
    write_table(out_dir / "contributors.parquet", dataset.contributors)
