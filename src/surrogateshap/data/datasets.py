"""Datasets: the embedded digits export and the validating metadata loader.

A dataset is a folder of images plus a metadata table (`file_name`, a contributor
column, optionally a label column), the Hugging Face `imagefolder` convention.
"""

from __future__ import annotations

import hashlib
import os
import posixpath
import re
import unicodedata
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

# Pillow and pyarrow are imported where images and tables are written or decoded: the workflow
# validates the metadata table when it is parsed, where only pandas is needed.


class DataError(ValueError):
    """Bad dataset input; the message names the file, column or value at fault."""


# --------------------------------------------------------------------------- contributor names and keys
def name_identity(name: str) -> str:
    """What makes two contributor names the same person: equal NFC forms without surrounding white space.

    Names that differ only by Unicode normalisation ('é' as one code point or as 'e' plus an
    accent) or by surrounding white space look identical to a reader, so they are refused as a
    collision rather than silently merged or kept apart. Case is kept: 'Bob' and 'bob' differ.
    """
    return unicodedata.normalize("NFC", name).strip()


def contributor_key(name: str) -> str:
    """A stable key for a contributor, safe as a file name, Snakemake wildcard, SLURM job name and shell word.

    An ASCII slug of the name (accents dropped, lower case, every run of other characters
    turned into '-', at most 24 characters; 'c' when nothing is left) plus 10 hex digits of the
    SHA-256 of its identity (`name_identity`). The same name gets the same key in any dataset;
    keys are lower case, so 'Bob' and 'bob' keep distinct keys on case-insensitive file systems.
    """
    identity = name_identity(name)
    ascii_text = unicodedata.normalize("NFKD", identity).encode("ascii", "ignore").decode().lower()
    slug = re.sub(r"[^a-z0-9]+", "-", ascii_text).strip("-")[:24].strip("-") or "c"
    return f"{slug}-{hashlib.sha256(identity.encode('utf-8')).hexdigest()[:10]}"


KEY_PATTERN = r"[a-z0-9][a-z0-9-]*"  # every key matches it (for wildcard constraints)


def _shown(name: str) -> str:
    """repr, plus the code points when the repr hides them (combining marks, look-alikes)."""
    return repr(name) if ascii(name) == repr(name) else f"{name!r} {ascii(name)}"


def name_problems(names) -> list[str]:
    """Why these (distinct, non-empty) contributor names cannot be used, one line per kind of problem.

    Refused: control characters and line breaks (newline, tab, NUL, U+2028, ...: they cannot be
    shown faithfully and make logs and tables ambiguous), text that is not valid Unicode (lone
    surrogates, e.g. from JSON escapes), and names whose keys collide (see `name_identity`).
    """
    problems = []
    invalid, control, by_key = [], [], {}
    for name in names:
        if any(unicodedata.category(ch) == "Cs" for ch in name):
            invalid.append(name)
        elif any(
            unicodedata.category(ch) in ("Cc", "Zl", "Zp") for ch in name
        ):  # incl. U+2028/9 line breaks
            control.append(name)
        else:
            by_key.setdefault(contributor_key(name), []).append(name)
    if invalid:
        problems.append(
            "contributor names that are not valid Unicode (lone surrogates): "
            + ", ".join(ascii(n) for n in invalid[:20])
        )
    if control:
        problems.append(
            "contributor names with control characters or line breaks (newline, tab, NUL, ...): "
            + ", ".join(ascii(n) for n in control[:20])
        )
    collisions = [group for group in by_key.values() if len(group) > 1]
    if collisions:
        problems.append(
            "contributor names that differ only by Unicode normalisation or surrounding white space "
            "(they would look the same in the report and share one key): "
            + "; ".join(" and ".join(_shown(n) for n in sorted(group)) for group in collisions[:20])
        )
    return problems


def contributor_table(counts: pd.Series) -> pd.DataFrame:
    """The contributors table: name (as given), safe key, index, item count; names sorted."""
    names = sorted(counts.index)
    return pd.DataFrame(
        {
            "contributor": names,
            "key": [contributor_key(name) for name in names],
            "index": np.arange(len(names), dtype=np.int64),
            "n_items": [int(counts[name]) for name in names],
        }
    )


# --------------------------------------------------------------------------- file names inside the dataset folder
def escape_reason(root: Path, name: str, root_real: str | None = None) -> str | None:
    """Why a metadata file name may not be opened (None when it names a path inside `root`).

    Plain strings, not pathlib: the workflow checks every name when it is parsed (10,000 names
    in a fraction of a second). `root_real`: os.path.realpath(root), when the caller has it."""
    if "\x00" in name or (
        not name.isascii() and any(unicodedata.category(ch) == "Cs" for ch in name)
    ):
        return "not a valid file name (NUL or lone surrogate)"
    # POSIX or Windows absolute: /x, \\x, C:x, C:\\x, \\\\server\\share
    if name.startswith(("/", "\\")) or WINDOWS_DRIVE.match(name):
        return "absolute path"
    if ".." in PARTS.split(name):
        return "climbs out of the folder with '..'"
    try:
        root_real = root_real or os.path.realpath(root)
        target = os.path.realpath(os.path.join(root_real, name))
    except (OSError, RuntimeError, ValueError):  # a symlink loop, an unencodable name
        return "cannot be resolved"
    inside = target == root_real or target.startswith(root_real.rstrip(os.sep) + os.sep)
    return None if inside else "resolves (through a symlink) to outside the folder"


WINDOWS_DRIVE = re.compile(r"^[A-Za-z]:")
PARTS = re.compile(r"[\\/]")


def item_path(root, name: str) -> Path:
    """The path of a dataset file; DataError when it would leave the dataset folder."""
    root = Path(root)
    reason = escape_reason(root, name)
    if reason:
        raise DataError(f"file_name {name!r} under {root}: {reason}")
    return root / name


# --------------------------------------------------------------------------- the digits export
def digits_images() -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's bundled digits (no download) as float images in [0, 1] and labels."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    return digits.images.astype(np.float64) / 16.0, digits.target.astype(np.int64)


def digits_contributor(label: int, part: int) -> str:
    return f"digit-{label}-{'abcdefghijklmnopqrstuvwxyz'[part]}"


def export_digits(out_dir, splits_per_class: int, seed: int) -> pd.DataFrame:
    """Write the clean digits as PNGs plus metadata.csv; each class is split into contributors.

    Items of a class are dealt to its contributors in a seeded random order. Planted effects
    are applied afterwards, as on any dataset (`surrogateshap.data.planted`)."""
    from PIL import Image

    from ..workflow.io import atomic_path

    images, labels = digits_images()
    rng = np.random.default_rng(seed)
    contributors = np.empty(len(labels), dtype=object)
    for label in np.unique(labels):
        idx = rng.permutation(np.flatnonzero(labels == label))
        for part, chunk in enumerate(np.array_split(idx, splits_per_class)):
            contributors[chunk] = digits_contributor(int(label), part)
    out_dir = Path(out_dir)
    (out_dir / "images").mkdir(parents=True, exist_ok=True)
    rows = []
    for i, (image, label, contributor) in enumerate(zip(images, labels, contributors)):
        file_name = f"images/{i:05d}.png"
        with atomic_path(out_dir / file_name) as tmp:
            Image.fromarray(np.round(image * 255).astype(np.uint8), mode="L").save(
                tmp, format="PNG"
            )
        rows.append({"file_name": file_name, "contributor": contributor, "label": int(label)})
    return pd.DataFrame(rows)


# --------------------------------------------------------------------------- loading
@dataclass
class Dataset:
    root: Path
    items: pd.DataFrame  # columns: file_name, contributor, label (optional)
    contributors: pd.DataFrame  # columns: contributor, key, index, n_items (see contributor_table)
    color: str = "grayscale"  # what the class-conditional model sees: "grayscale" or "rgb"

    @property
    def n(self) -> int:
        return len(self.contributors)

    @property
    def mode(self) -> str:
        """The PIL mode that `load_images` reads the items in for the model."""
        return image_mode(self.color)


# PIL modes without colour; any other mode (RGB, RGBA, P, CMYK, ...) counts as colour.
GREY_MODES = frozenset({"L", "1", "I", "I;16", "LA", "F"})


def image_mode(color: str) -> str:
    return "RGB" if color == "rgb" else "L"


def stored_color(root, file_names) -> str:
    """ "rgb" when any stored image has colour channels, else "grayscale" (headers only; stops at
    the first colour image). A palette image counts as colour: its palette may hold any."""
    from PIL import Image

    for name in file_names:
        with Image.open(item_path(root, name)) as image:
            if image.mode not in GREY_MODES:
                return "rgb"
    return "grayscale"


def resolve_color(data_cfg: dict, root=None, file_names=()) -> str:
    """data.color as the model will see it: rgb or grayscale as set; auto (or unset) is
    grayscale for the digits and the stored images' colour for a folder."""
    setting = data_cfg.get("color") or "auto"
    if setting != "auto":
        return setting
    if data_cfg["source"] == "digits":
        return "grayscale"
    return stored_color(root, file_names)


def read_metadata(path) -> pd.DataFrame:
    path = Path(path)
    if not path.exists():
        raise DataError(f"metadata table not found: {path}")
    suffix = path.suffix.lower()
    try:
        if suffix == ".csv":
            # utf-8-sig: a spreadsheet's byte-order mark would otherwise stick to the first column's name
            table = pd.read_csv(path, dtype=str, keep_default_na=False, encoding="utf-8-sig")
            _refuse_other_separator(path, table)
            return table
        if suffix in (".jsonl", ".json"):
            return pd.read_json(path, lines=suffix == ".jsonl", dtype=False)
        if suffix == ".parquet":
            return pd.read_parquet(path)
    except DataError:
        raise
    except Exception as exc:  # a parser error: name the file
        raise DataError(f"{path}: cannot read metadata table: {exc}") from None
    raise DataError(f"{path}: metadata must be .csv, .jsonl or .parquet, not {suffix!r}")


def _refuse_other_separator(path: Path, table: pd.DataFrame) -> None:
    """A CSV written with ';' or tabs (a spreadsheet's regional default) reads as one column whose
    name holds the real ones: say so instead of 'missing column file_name'."""
    if len(table.columns) != 1:
        return
    header = str(table.columns[0])
    for separator, name in ((";", "semicolons"), ("\t", "tabs"), ("|", "'|'")):
        if separator in header:
            raise DataError(
                f"{path}: the table is separated by {name} ({header!r}); metadata CSV files are "
                "comma-separated: save it again with commas (or as .jsonl / .parquet)"
            )


def load_dataset(
    root,
    metadata,
    contributor_column="contributor",
    label_column="label",
    min_items: int = 1,
    check_images: bool = True,
    caption_column: str | None = None,
    caption_template: str | None = None,
    decode_images: bool = True,
) -> Dataset:
    """Load and validate a dataset; every problem found is listed in one DataError.

    `check_images` checks that every listed file exists and, with `decode_images`, that Pillow
    can read it (the workflow's parse-time check leaves decoding to the data job).

    Captions (for text-to-image models) come from `caption_column`; `caption_template`
    (e.g. "a painting by {contributor}", any metadata column by name) fills the items
    without one. An empty caption with no template is an error."""
    root = Path(root)
    metadata_path = Path(metadata)
    table = read_metadata(metadata_path)
    problems: list[str] = []
    for column, setting in (("file_name", None), (contributor_column, "data.contributor_column")):
        if column not in table.columns:
            fix = f"; set {setting} to the column that names them" if setting else ""
            problems.append(
                f"missing column {column!r}{fix} (columns present: {list(table.columns)})"
            )
    if problems:
        raise DataError(f"{metadata_path}: " + "; ".join(problems))
    if not len(table):
        raise DataError(f"{metadata_path}: the metadata table has no rows")
    # Missing cells (Parquet/JSON nulls) stay empty: never the text 'None' or 'nan'.
    items = pd.DataFrame(
        {
            "file_name": table["file_name"].where(table["file_name"].notna(), "").astype(str),
            "contributor": table[contributor_column]
            .where(table[contributor_column].notna(), "")
            .astype(str),
        }
    )
    no_file = np.flatnonzero(items["file_name"].to_numpy() == "")
    if len(no_file):
        problems.append(
            f"empty or missing file_name in data row(s) {no_file[:20].tolist()}"
            + (f" and {len(no_file) - 20} more" if len(no_file) > 20 else "")
            + " (counted from 0)"
        )
    if label_column and label_column in table.columns:
        labels = _integer_labels(table[label_column])
        bad = items.loc[labels.isna(), "file_name"].tolist()
        if bad:
            problems.append(f"column {label_column!r} is not an integer for {_listing(bad)}")
        else:
            items["label"] = labels.astype(np.int64)
    empty = items.loc[items["contributor"].str.strip() == "", "file_name"].tolist()
    if empty:
        problems.append(f"empty {contributor_column!r} for {_listing(empty)}")
    if caption_column or caption_template:
        captions, caption_problems = _captions(
            table, contributor_column, caption_column, caption_template
        )
        problems.extend(caption_problems)
        items["caption"] = captions
    named = items.loc[items["file_name"] != "", "file_name"]
    # 'img/a.png' and './img/a.png' are one file
    duplicated = named[named.map(posixpath.normpath).duplicated()].unique().tolist()
    if duplicated:
        problems.append(f"duplicate file_name {_listing(duplicated)}")
    root_real = os.path.realpath(root)
    escaping = {
        name: reason for name in named.unique() if (reason := escape_reason(root, name, root_real))
    }
    problems.extend(_escape_problems(root, escaping))
    if check_images:  # never open a file outside the folder
        problems.extend(
            _image_problems(root, [n for n in named if n not in escaping], decode_images)
        )
    names = [n for n in items["contributor"].unique() if n.strip()]
    problems.extend(name_problems(names))
    counts = items["contributor"].value_counts()
    too_few = counts[counts < min_items]
    if len(too_few):
        problems.append(
            "contributors with fewer than "
            f"{min_items} items: "
            + ", ".join(f"{name!r} ({count})" for name, count in too_few.head(20).items())
            + (f" and {len(too_few) - 20} more" if len(too_few) > 20 else "")
        )
    if problems:
        raise DataError(f"{metadata_path}:\n  " + "\n  ".join(problems))
    return Dataset(
        root=root, items=items.reset_index(drop=True), contributors=contributor_table(counts)
    )


def load_configured(
    data_cfg: dict, root, metadata, check_images: bool = True, decode_images: bool = True
) -> Dataset:
    """`load_dataset` with the settings of a validated `data` config section."""
    return load_dataset(
        root,
        metadata,
        data_cfg["contributor_column"],
        data_cfg["label_column"],
        data_cfg["min_items"],
        check_images=check_images,
        caption_column=data_cfg.get("caption_column"),
        caption_template=data_cfg.get("caption_template"),
        decode_images=decode_images,
    )


def _integer_labels(column: pd.Series) -> pd.Series:
    """Labels as floats holding integers; NaN where a value is missing, not a number or not whole."""
    scalars = column.map(lambda v: v if isinstance(v, (str, int, float, np.number)) else None)
    numbers = pd.to_numeric(scalars, errors="coerce").astype(np.float64)
    whole = np.isfinite(numbers) & (numbers == np.round(numbers)) & (numbers.abs() < 2.0**62)
    return numbers.where(whole)


def _escape_problems(root: Path, escaping: dict[str, str]) -> list[str]:
    """One problem line per way that file names leave the dataset folder, listing each name."""
    by_reason: dict[str, list[str]] = {}
    for name, reason in escaping.items():
        by_reason.setdefault(reason, []).append(name)
    return [
        f"file_name outside the dataset folder {root} ({reason}): {_listing(names)}"
        for reason, names in by_reason.items()
    ]


def _captions(
    table: pd.DataFrame, contributor_column: str, caption_column: str | None, template: str | None
) -> tuple[pd.Series, list[str]]:
    """Each item's caption: its caption column, else the template filled from its row."""
    problems = []
    if caption_column and caption_column not in table.columns:
        problems.append(
            f"missing caption column {caption_column!r} (columns present: {list(table.columns)})"
        )
        caption_column = None
    captions = (
        table[caption_column].fillna("").astype(str).str.strip()
        if caption_column
        else pd.Series([""] * len(table), index=table.index)
    )
    blank = captions == ""
    if blank.any() and template:
        rows = table.loc[blank].rename(columns={contributor_column: "contributor"}).astype(str)
        try:
            captions.loc[blank] = [template.format(**row) for row in rows.to_dict("records")]
        except (KeyError, IndexError, ValueError) as error:
            problems.append(
                f"data.caption_template {template!r} cannot be filled: {error!r} "
                f"(fields available: {sorted(set(rows.columns))})"
            )
    elif blank.any() and caption_column:
        problems.append(
            f"empty {caption_column!r} caption for {_listing(table.loc[blank, 'file_name'].astype(str).tolist())}"
            " (set data.caption_template to fill them)"
        )
    return captions, problems


def _listing(values: list[str], limit: int = 20) -> str:
    shown = ", ".join(repr(v) for v in values[:limit])
    more = f" and {len(values) - limit} more" if len(values) > limit else ""
    return f"{len(values)} item(s): {shown}{more}"


def _image_problems(root: Path, file_names, decode: bool = True) -> list[str]:
    """Files that are missing and (with `decode`) files Pillow cannot read."""
    if decode:
        from PIL import Image
    missing, unreadable = [], []
    base = str(root)
    for name in file_names:
        path = os.path.join(base, name)  # plain strings: this loop is the cost at 100,000 items
        if not os.path.isfile(path):
            missing.append(name)
            continue
        if not decode:
            if not _has_signature(path):
                unreadable.append(name)
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


# The first bytes of the common image formats, by file suffix: a parse-time check that reads 12
# bytes per file instead of decoding it (a format without a signature, e.g. TGA, is not checked).
SIGNATURES = {
    ".png": (b"\x89PNG\r\n\x1a\n",),
    ".jpg": (b"\xff\xd8\xff",),
    ".jpeg": (b"\xff\xd8\xff",),
    ".gif": (b"GIF87a", b"GIF89a"),
    ".bmp": (b"BM",),
    ".tif": (b"II*\x00", b"MM\x00*"),
    ".tiff": (b"II*\x00", b"MM\x00*"),
    ".webp": (b"RIFF",),
}


def _has_signature(path: str) -> bool:
    """False for an empty file, or one whose first bytes are not its suffix's format."""
    try:
        with open(path, "rb") as handle:
            head = handle.read(12)
    except OSError:
        return False
    if not head:
        return False
    expected = SIGNATURES.get(os.path.splitext(path)[1].lower())
    if expected is None:
        return True
    if expected == (b"RIFF",):
        return head.startswith(b"RIFF") and head[8:12] == b"WEBP"
    return head.startswith(expected)


def load_images(root: Path, file_names, size: int, mode: str = "L") -> np.ndarray:
    """Grayscale (mode "L": (n, size, size)) or RGB ((n, size, size, 3)) images as float32 in
    [0, 1], resized to `size` when they differ."""
    from PIL import Image

    out = np.empty(
        (len(file_names), size, size) + ((3,) if mode == "RGB" else ()), dtype=np.float32
    )
    for i, name in enumerate(file_names):
        with Image.open(item_path(root, name)) as image:
            image = image.convert(mode)
            if image.size != (size, size):
                image = image.resize((size, size), Image.BILINEAR)
            out[i] = np.asarray(image, dtype=np.float32) / 255.0
    return out


def write_dataset_tables(out_dir, dataset: Dataset) -> None:
    from ..workflow.io import write_table

    out_dir = Path(out_dir)
    write_table(out_dir / "items.parquet", dataset.items)
    write_table(out_dir / "contributors.parquet", dataset.contributors)
