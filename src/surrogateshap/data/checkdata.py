"""`surrogateshap check-data --configfile my.yaml`: a dataset config and folder checked without
running the workflow, so a user can fix their data before any (GPU) job.

It lists every problem it finds (config fields, metadata, files, planted entries, image sizes)
and what it found: per-contributor item counts, caption statistics, the stored images' sizes and
modes, and for each metric what it will be measured with and what it needs.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from ..workflow import preflight
from ..workflow.config import (
    ConfigError,
    detector_box,
    generated_size,
    load_yaml,
    merge,
    validate_config,
)
from . import planted as planted_mod
from .datasets import GREY_MODES, DataError, load_dataset, read_metadata, resolve_color

ROOT = Path(__file__).resolve().parents[3]
EXTRACTOR_TEXT = {
    "digits": "the digits classifier (trained on scikit-learn's digits; Fréchet reference: the clean digits)",
    "trained": "a classifier trained on this dataset (rule train_extractor; Fréchet reference: the dataset's own images)",
    "backbone": "the vision backbone in features.backbone (Fréchet reference: the dataset's own images)",
    "clip": "the CLIP model in features.clip (Fréchet reference: the dataset's own images)",
    "inception": "the FID Inception-v3 in features.inception (Fréchet reference: the dataset's own images)",
}


def check(configfiles: list[str], base: str | None = None) -> tuple[list[str], list[str]]:
    """(problems, report lines) for the config merged from `base` (config/config.yaml) and
    `configfiles`, and its dataset."""
    problems: list[str] = []
    lines: list[str] = []
    base_path = Path(base) if base else _default_base()
    try:
        config = load_yaml(base_path)
        for path in configfiles:
            config = merge(config, load_yaml(path))
    except ConfigError as error:
        return [str(error)], lines
    schema = ROOT / "workflow/schemas/config.schema.yaml"
    valid = True
    try:
        validate_config(config, schema, source=" + ".join([str(base_path), *configfiles]))
    except ConfigError as error:
        problems.extend(_lines(str(error)))
        valid = False
    found = preflight.Findings()
    if valid:  # the checks the workflow runs when it is parsed, beyond the dataset's
        found.problems.extend(preflight.path_problems(config))
        found.problems.extend(preflight.user_code_problems(config))
    data = config.get("data") or {}
    lines.append(f"dataset: source {data.get('source')!r}")
    dataset = None
    folder = data.get("source") == "folder" and data.get("root")
    located = preflight.table_location(data) if folder else None
    if located and located[2]:
        problems.extend(located[2])
    elif located:
        root, metadata, _ = located
        lines.append(f"  folder {root}, metadata {metadata}")
        try:
            dataset = load_dataset(
                root,
                metadata,
                data.get("contributor_column", "contributor"),
                data.get("label_column", "label"),
                data.get("min_items", 1),
                caption_column=data.get("caption_column"),
                caption_template=data.get("caption_template"),
            )
        except DataError as error:
            problems.extend(_lines(str(error)))
            problems.extend(preflight.planted_on_raw(metadata, data))
    elif data.get("source") == "digits":
        lines.append("  scikit-learn's digits, exported by the workflow (nothing to check on disk)")
    if dataset is not None:
        lines.extend(_describe(dataset, data, config, problems))
    if valid and (dataset is not None or data.get("source") == "digits"):
        n = (
            dataset.n
            if dataset is not None
            else preflight.DIGITS_CLASSES * int(data["digits"]["splits_per_class"])
        )
        preflight.design_findings(config, n, found)
    problems.extend(found.problems)
    lines.extend(f"warning: {warning}" for warning in found.warnings)
    lines.extend(_metric_needs(config))
    return problems, lines


def _default_base() -> Path:
    here = Path("config/config.yaml")
    return here if here.is_file() else ROOT / "config/config.yaml"


def _lines(text: str) -> list[str]:
    """A multi-line error as one problem per line (its first line kept as the heading's context)."""
    parts = [p.strip() for p in text.splitlines() if p.strip()]
    if len(parts) == 1:
        return parts
    head = parts[0].rstrip(":")
    return [f"{head}: {p}" for p in parts[1:]]


def _describe(dataset, data: dict, config: dict, problems: list[str]) -> list[str]:
    items = dataset.items
    out = [f"  {len(items)} items from {dataset.n} contributors"]
    counts = dataset.contributors.set_index("contributor")["n_items"]
    out.append(
        "  items per contributor (min / median / max): "
        + f"{counts.min()} / {int(counts.median())} / {counts.max()}"
    )
    for name, n in counts.items():
        out.append(f"    {name}: {n}")
    if "label" in items.columns:
        labels = items["label"].value_counts().sort_index()
        out.append(
            f"  labels ({data.get('label_column')}): {len(labels)} classes, "
            + ", ".join(f"{k}: {v}" for k, v in labels.items())
        )
    if "caption" in items.columns:
        captions = items["caption"].astype(str)
        words = captions.str.split().str.len()
        out.append(
            f"  captions: {captions.nunique()} distinct of {len(captions)}; words per caption "
            f"min {words.min()}, mean {words.mean():.1f}, max {words.max()}"
        )
        if data.get("caption_column"):
            raw = read_metadata(Path(data.get("metadata") or Path(data["root"]) / "metadata.csv"))
            if data["caption_column"] in raw.columns:
                filled = int(
                    (raw[data["caption_column"]].fillna("").astype(str).str.strip() == "").sum()
                )
                if filled:
                    out.append(f"    {filled} filled from data.caption_template")
    from PIL import Image

    sizes, modes = Counter(), Counter()
    for name in items["file_name"]:
        with Image.open(Path(dataset.root) / name) as image:
            sizes[image.size] += 1
            modes[image.mode] += 1
    out.append(
        "  stored images: "
        + ", ".join(f"{w}x{h}: {n}" for (w, h), n in sizes.most_common())
        + "; modes "
        + ", ".join(f"{m}: {n}" for m, n in modes.most_common())
    )
    size = generated_size(config)
    if size and (config.get("model") or {}).get("type") == "class_conditional":
        setting = data.get("color") or "auto"
        color = "RGB" if resolve_color(data, dataset.root, items["file_name"]) == "rgb" else "grey"
        resized = any(s != (size, size) for s in sizes)
        out.append(
            f"  the model sees them at {size}x{size} {color} (data.image_size {size}, "
            f"data.color {setting})" + (", resized" if resized else "")
        )
        if color == "grey" and any(m not in GREY_MODES for m in modes):
            out.append("    note: colour images turned grey; data.color: rgb keeps their colour")
        if resized:
            out.append(
                "    note: planted markers and the detector box are in pixels of the stored images and of the generated ones"
            )
    elif size and any(s != (size, size) for s in sizes):
        out.append(
            f"    note: the model sees them at {size}x{size} (resized); planted markers and the detector box are in pixels of the stored images and of the generated ones"
        )
    entries = planted_mod.entries(data)
    if entries:
        problems.extend(planted_mod.problems(entries, contributors=counts.to_dict()))
        sides = {min(s) for s in sizes}
        for entry in entries:
            if entry["effect"] == "marker":
                for side in sides:
                    try:
                        planted_mod.box(entry["position"], int(entry["size"]), side, side)
                    except planted_mod.PlantedError as error:
                        problems.append(
                            f"{planted_mod.label(entry)}: marker outside the stored {side}x{side} images: {error}"
                        )
        out.append("  planted:")
        for e in entries:
            n = counts.get(e["contributor"], 0)
            out.append(
                f"    {e['contributor']}: {e['effect']} on {n} items; expected {e['expect']['rank']} "
                f"{e['expect']['within']} in {e['expect']['metric']}"
            )
    return out


def _metric_needs(config: dict) -> list[str]:
    from ..proxy.metrics import METRICS, get_metric

    features = config.get("features") or {}
    kind = features.get("extractor", "digits")
    out = ["metrics:"]
    for name in config.get("metrics") or []:
        try:
            metric = get_metric(name, features.get("custom_metrics"))
        except ValueError:
            out.append(f"  {name}: unknown")
            continue
        needs = [f"features.{n}" for n in metric.needs]
        if name in METRICS and METRICS[name].uses_extractor:
            needs.insert(0, EXTRACTOR_TEXT.get(kind, kind))
        if name == "marker_rate":
            box = detector_box(config)
            needs.append(
                f"the marker detector: a {box['size']}x{box['size']} box at {box['position']!r}, threshold {features.get('marker_threshold', 0.5)}"
            )
        out.append(
            f"  {name}: " + ("; ".join(needs) if needs else "nothing beyond the generated images")
        )
    return out


def main(configfiles: list[str], base: str | None = None) -> int:
    problems, lines = check(configfiles, base)
    print("\n".join(lines))
    if problems:
        print(f"\n{len(problems)} problem(s):")
        for problem in problems:
            print(f"  - {problem}")
        return 1
    print("\nno problems found")
    return 0
