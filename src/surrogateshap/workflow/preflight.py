"""What is checked before the first job, when the workflow is parsed (and by `check-data`).

A problem here would otherwise surface in a job, after training and generation: the dataset's
metadata table (columns, duplicates, empty names, files present, items per contributor, planted
names), the user's functions (imported, signature, one call on a synthetic batch), model and
weight paths (a local folder holds what its `model.type` needs; a hub id only from the local
cache unless `model.allow_download`), and designs that cannot support the numbers (one
contributor, fewer coalitions than contributors, more generation jobs than pools).

Cheap enough for every parse: the table is read and each listed file is stat-ed, not decoded
(decoding is `check-data`'s and the data job's, which runs before any training).
Imports: pandas and numpy only (a Snakemake environment parses the workflow).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

from .config import generated_size

# A Hugging Face hub id: "org/name" (a revision may follow after '@' in some tools: not here).
HUB_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*/[A-Za-z0-9][A-Za-z0-9_.-]*$")
DIGITS_CLASSES = 10
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pth", ".pt", ".ckpt")


@dataclass
class Findings:
    """Problems refuse the run; warnings are printed and the run goes on."""

    problems: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    contributors: list[str] | None = (
        None  # the dataset's contributor names, when they could be read
    )


def preflight(config: dict) -> Findings:
    """Every check of this module on a validated config (defaults filled in)."""
    found = Findings()
    dataset_findings(config, found)
    found.problems.extend(path_problems(config))
    found.problems.extend(user_code_problems(config))
    if found.contributors is not None:
        design_findings(config, len(found.contributors), found)
    return found


# --------------------------------------------------------------------------- the dataset
def dataset_findings(config: dict, found: Findings, decode_images: bool = False) -> None:
    """The metadata table and the planted entries' contributors; fills found.contributors."""
    from ..data import planted
    from ..data.datasets import DataError, digits_contributor, load_configured

    data = config["data"]
    entries = planted.entries(data)
    if data["source"] == "digits":
        splits = int(data["digits"]["splits_per_class"])
        names = [digits_contributor(c, p) for c in range(DIGITS_CLASSES) for p in range(splits)]
        found.contributors = names
        # item counts are not known before the export: count only the names
        found.problems.extend(
            p
            for p in planted.problems(entries, contributors=dict.fromkeys(names, 10**9))
            if "unknown contributor" in p
        )
        return
    root, metadata, problems = table_location(data)
    if problems:
        found.problems.extend(problems)
        return
    try:
        dataset = load_configured(data, root, metadata, decode_images=decode_images)
    except DataError as error:
        found.problems.append(_first_line_fix(str(error)))
        found.problems.extend(planted_on_raw(metadata, data))
        return
    counts = dataset.contributors.set_index("contributor")["n_items"].to_dict()
    found.contributors = list(counts)
    found.problems.extend(planted.problems(entries, contributors=counts))


def planted_on_raw(metadata: Path, data: dict) -> list[str]:
    """The planted entries against the table's raw contributor column, when the dataset did not
    load (so that a wrong planted name is reported with the table's own problems)."""
    from ..data import planted
    from ..data.datasets import DataError, read_metadata

    try:
        raw = read_metadata(metadata)
    except DataError:
        return []
    column = data.get("contributor_column", "contributor")
    if column not in raw.columns:
        return []
    counts = raw[column].astype(str).value_counts().to_dict()
    return planted.problems(planted.entries(data), contributors=counts)


def table_location(data: dict) -> tuple[Path, Path, list[str]]:
    """A folder dataset's root and metadata table, and why they cannot be read (missing)."""
    root = Path(data["root"])
    metadata = Path(data.get("metadata") or root / "metadata.csv")
    if not root.is_dir():
        return (
            root,
            metadata,
            [
                f"data.root: folder not found: {root} (a relative path is taken from the folder "
                "the workflow runs in)"
            ],
        )
    if not metadata.is_file():
        setting = "data.metadata" if data.get("metadata") else "data.root (its metadata.csv)"
        return (
            root,
            metadata,
            [
                f"{setting}: metadata table not found: {metadata} (set data.metadata to a .csv, "
                ".jsonl or .parquet table with file_name and contributor columns)"
            ],
        )
    return root, metadata, []


def _first_line_fix(text: str) -> str:
    """A DataError's 'file:\n  a\n  b' as one problem whose lines stay readable."""
    return text.replace("\n  ", "\n    ")


# --------------------------------------------------------------------------- the user's functions
def image_shape(config: dict) -> tuple[int, ...]:
    """The shape of one generated image as the user's functions receive it."""
    if config["model"]["type"] == "class_conditional":
        size = generated_size(config)
        return (size, size) + ((3,) if model_color(config) == "rgb" else ())
    size = generated_size(config) or 64  # the pipeline's own size is unknown before loading it
    return (size, size, 3)


def model_color(config: dict) -> str:
    """data.color as the model will see it; auto on a folder reads the stored images' headers."""
    from ..data.datasets import read_metadata, resolve_color

    data = config["data"]
    if data["source"] == "folder" and (data.get("color") or "auto") == "auto":
        if not data.get("root"):
            return "grayscale"
        located = table_location(data)
        if located is None or located[2]:
            return "grayscale"  # the table's own problems are reported elsewhere
        try:
            names = read_metadata(located[1])["file_name"]
            return resolve_color(data, located[0], names)
        except Exception:  # a bad table or file: reported by the dataset checks
            return "grayscale"
    return resolve_color(data)


def configured_functions(config: dict) -> list[tuple[str, str]]:
    """(config field, "module:function") of every user function the config names."""
    features = config.get("features") or {}
    out = []
    if features.get("spurious_detector"):
        out.append(("features.spurious_detector", features["spurious_detector"]))
    for name, custom in (features.get("custom_metrics") or {}).items():
        out.append((f"features.custom_metrics.{name}.function", custom["function"]))
    return out


def user_code_problems(config: dict) -> list[str]:
    from ..proxy.usercode import check_callable

    functions = configured_functions(config)
    if not functions:  # the shape may read image headers: only when there is something to call
        return []
    shape = image_shape(config)
    problems = []
    for setting, spec in functions:
        problems.extend(check_callable(setting, spec, shape))
    return problems


# --------------------------------------------------------------------------- model and weight paths
def path_problems(config: dict) -> list[str]:
    """Model folders, LoRA weights and a coalitions table named by the config."""
    model = config["model"]
    problems = []
    allow = bool(model.get("allow_download"))
    if model.get("path"):
        problems.extend(_model_path_problems(model["path"], model["type"], allow))
    if model.get("lora"):
        problems.extend(_lora_problems(model["lora"], allow))
    # (the features' weight files and folders are checked with the metrics' needs: config.py)
    table = (config.get("coalitions") or {}).get("table")
    if table and not Path(table).expanduser().is_file():
        problems.append(f"coalitions.table: file not found: {table}")
    return problems


def _hub_problem(setting: str, value: str, allow: bool) -> str | None:
    """None when a hub id may be used: downloads allowed, or the id is in the local hub cache."""
    from .fingerprint import hub_revision

    if allow or hub_revision(value):
        return None
    return (
        f"{setting}: {value!r} is no local folder, and as a hub id it is not in the local Hugging "
        "Face cache. Downloads are off: download it first (e.g. `hf download "
        f"{value} --local-dir <folder>`) and set {setting} to that folder, or set "
        "model.allow_download: true to let the job download it"
    )


def _model_path_problems(path: str, kind: str, allow: bool) -> list[str]:
    local = Path(path).expanduser()
    if not local.exists():
        if HUB_ID.match(path) and not path.startswith((".", "~")):
            problem = _hub_problem("model.path", path, allow)
            return [problem] if problem else []
        return [f"model.path: folder not found: {path}"]
    if not local.is_dir():
        return [f"model.path: {path} is a file; expected a model folder"]
    if kind == "class_conditional":
        return _class_conditional_problems(local)
    return _pipeline_problems(local, kind)


def _class_conditional_problems(folder: Path) -> list[str]:
    """The workflow's own model folder (rule train_model writes one)."""
    needed = [
        "unet/config.json",
        "unet/diffusion_pytorch_model.safetensors",
        "scheduler/scheduler_config.json",
        "conditioning.json",
    ]
    missing = [name for name in needed if not (folder / name).is_file()]
    if not missing:
        return []
    return [
        f"model.path: {folder} is not a class_conditional model folder: missing "
        + ", ".join(missing)
        + " (a folder that rule train_model wrote; for a Stable Diffusion or FLUX folder set "
        "model.type)"
    ]


def _pipeline_problems(folder: Path, kind: str) -> list[str]:
    """A diffusers pipeline folder: model_index.json, each component's folder with its config,
    and weights for each model component."""
    index_path = folder / "model_index.json"
    if not index_path.is_file():
        found = ", ".join(sorted(p.name for p in folder.iterdir())[:8]) or "nothing"
        return [
            f"model.path: {folder} has no model_index.json, so it is no diffusers {kind} pipeline "
            f"folder (it holds: {found}); save one with pipeline.save_pretrained(folder)"
        ]
    try:
        index = json.loads(index_path.read_text(encoding="utf-8"))
    except ValueError as error:
        return [f"model.path: {index_path}: not valid JSON: {error}"]
    problems = []
    for name, entry in index.items():
        if name.startswith("_") or not isinstance(entry, list) or entry[0] is None:
            continue
        component = folder / name
        if not component.is_dir():
            problems.append(f"model.path: {folder}: component folder {name}/ is missing")
            continue
        if (component / "config.json").is_file() and not any(
            p.name.endswith(WEIGHT_SUFFIXES) or p.name.endswith(".index.json")
            for p in component.iterdir()
        ):
            problems.append(f"model.path: {folder}: {name}/ has a config.json but no weight files")
    return problems


def _lora_problems(lora: str, allow: bool) -> list[str]:
    local = Path(lora).expanduser()
    if not local.exists():
        if HUB_ID.match(lora) and not lora.endswith(WEIGHT_SUFFIXES):
            problem = _hub_problem("model.lora", lora, allow)
            return [problem] if problem else []
        return [f"model.lora: not found: {lora} (a .safetensors file or a folder holding one)"]
    if local.is_dir() and not any(p.name.endswith(WEIGHT_SUFFIXES) for p in local.iterdir()):
        return [f"model.lora: {lora} holds no weight file (.safetensors)"]
    return []


# --------------------------------------------------------------------------- the design
def design_findings(config: dict, n: int, found: Findings) -> None:
    """Designs that cannot support the numbers: refused, or warned about, with the fix."""
    if n < 2:
        found.problems.append(
            f"the dataset has {n} contributor(s): Shapley values share a utility among at least "
            "two contributors (check data.contributor_column)"
        )
        return
    coalitions = config["coalitions"]
    forced = bool(coalitions.get("allow_small_design"))
    all_coalitions = 2**n if n < 63 else float("inf")
    count = min(int(coalitions["count"]), all_coalitions)
    if not coalitions.get("table") and count < all_coalitions:
        if count < n + 1:
            text = (
                f"coalitions.count {count} is below the {n} contributors + 1: the values are not "
                f"identified (an n-player game needs at least n + 1 coalitions; expect errors as "
                f"large as the values and intervals that rarely cover them). Set "
                f"coalitions.count to at least {2 * n} (about 10n = {10 * n} for tight intervals)"
            )
            if forced:
                found.warnings.append(text + "; run anyway (coalitions.allow_small_design)")
            else:
                found.problems.append(text + ", or set coalitions.allow_small_design: true")
        elif count < 2 * n:
            found.warnings.append(
                f"coalitions.count {count} is below 2n = {2 * n} for {n} contributors: the "
                "surrogate is fitted on about one coalition per value, so expect large errors "
                f"and wide intervals; about 10n = {10 * n} coalitions give tight values"
            )
    pools = n + 1  # every contributor's pool and the unconditional one
    shards = int(config["generation"]["shards"])
    if config["game"]["mode"] == "pooled" and shards > pools:
        found.problems.append(
            f"generation.shards {shards} is more than the {pools} pools ({n} contributors and "
            f"the unconditional pool): {shards - pools} generation job(s) would have nothing to "
            f"do; set generation.shards to at most {pools}"
        )
    per_coalition = config["game"]["per_coalition"]
    if config["game"]["mode"] == "per_coalition" and int(per_coalition["shards"]) > count:
        found.problems.append(
            f"game.per_coalition.shards {per_coalition['shards']} is more than the {count} "
            f"coalitions scored; set it to at most {count}"
        )
