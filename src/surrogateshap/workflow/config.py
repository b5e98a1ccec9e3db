"""Config validation and the stage keys that cache every stage on a config hash.

Each stage's outputs live under a folder named by a hash of exactly the config
sections that the stage reads, the fingerprints of the files those sections name
(data, weights, user code; see `fingerprint`), the hash of the code the stage runs,
and the keys of the stages it consumes. Change any of them and only the stages
downstream get new keys, so only they rerun, into new folders: a cache entry is
never rewritten with another result (docs/caching.md).
"""

from __future__ import annotations

import copy
import functools
import hashlib
import json
from pathlib import Path

import jsonschema
import yaml


class ConfigError(ValueError):
    """A config that fails validation; the message names the field at fault."""


def load_yaml(path) -> dict:
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"config file not found: {path}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from None
    return data or {}


def load_schema(path) -> dict:
    """The config schema, parsed once per process (a workflow reads it more than once)."""
    stat = Path(path).stat()
    return copy.deepcopy(_parsed_schema(str(path), stat.st_size, stat.st_mtime_ns))


@functools.lru_cache(maxsize=8)
def _parsed_schema(path: str, size: int, mtime_ns: int) -> dict:
    return load_yaml(path)


def merge(base: dict, override: dict) -> dict:
    """Recursive dict merge, as Snakemake merges several --configfile arguments."""
    merged = copy.deepcopy(base)
    for key, value in (override or {}).items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def _with_defaults(validator_class):
    validate_properties = validator_class.VALIDATORS["properties"]

    def set_defaults(validator, properties, instance, schema):
        if isinstance(instance, dict):
            for name, subschema in properties.items():
                if "default" in subschema and name not in instance:
                    instance[name] = copy.deepcopy(subschema["default"])
        yield from validate_properties(validator, properties, instance, schema)

    return jsonschema.validators.extend(validator_class, {"properties": set_defaults})


_Validator = _with_defaults(jsonschema.Draft202012Validator)


# Settings that the config no longer holds: (section, key) -> what to do instead. An old config
# that still sets one gets this advice, not the schema's "unexpected property".
REMOVED_SETTINGS = {
    ("surrogate", "threads"): (
        "no longer a config setting: remove it. XGBoost runs on the threads of the rule that fits "
        "the surrogate (attribute, pooled_utilities, evaluation_tables; 1 by default): set them in "
        "a profile, e.g. `set-threads: {attribute: 4}` (docs/deploy.md)"
    ),
}


def coerce_strings(value, schema: dict):
    """`value` with strings turned into the booleans, numbers, nulls or lists the schema expects.

    Snakemake reads a nested `--config key='{a: {b: false}}'` with YAML's base loader, which keeps
    every scalar a string; where the schema admits no string there, the string is read as YAML
    ('false' -> False, '0.5' -> 0.5, 'null' -> None). A string the schema allows stays as it is."""
    if not isinstance(schema, dict):
        return value
    if isinstance(value, dict):
        properties = schema.get("properties") or {}
        extra = schema.get("additionalProperties")
        return {
            k: coerce_strings(v, properties.get(k, extra if isinstance(extra, dict) else {}))
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [coerce_strings(v, schema.get("items") or {}) for v in value]
    if not isinstance(value, str):
        return value
    types = schema.get("type")
    types = [types] if isinstance(types, str) else list(types or [])
    if value == "null" and ("null" in types or None in schema.get("enum", ())):
        return None  # YAML's null: no setting that takes a string means the text 'null'
    untyped = (
        not types
        and "enum" not in schema
        and not any(k in schema for k in ("oneOf", "anyOf", "properties"))
    )
    if "enum" in schema:
        if value in schema["enum"]:
            return value
    elif "string" in types or (not types and not untyped):
        return value
    try:
        parsed = yaml.safe_load(value)
    except yaml.YAMLError:
        return value
    if untyped:  # e.g. surrogate.grid's values: only what is plainly a number or a boolean
        return parsed if isinstance(parsed, (bool, int, float)) else value
    return coerce_strings(parsed, schema) if not isinstance(parsed, str) else value


def validate_config(config: dict, schema_path, source: str = "config") -> dict:
    """Validate in place (filling defaults); raise ConfigError listing every problem."""
    removed = [
        f"  {section}.{key}: {advice}"
        for (section, key), advice in REMOVED_SETTINGS.items()
        if isinstance(config.get(section), dict) and key in config[section]
    ]
    if removed:
        raise ConfigError(f"{source}:\n" + "\n".join(removed))
    schema = load_schema(schema_path)
    # command-line overrides arrive as strings (see coerce_strings)
    config.update(coerce_strings(config, schema))
    errors = sorted(_Validator(schema).iter_errors(config), key=lambda e: list(e.absolute_path))
    if errors:
        lines = []
        for error in errors:
            field = ".".join(str(p) for p in error.absolute_path) or "<top level>"
            lines.append(f"  {field}: {error.message}")
        raise ConfigError(f"{source} does not match {schema_path}:\n" + "\n".join(lines))
    _check_semantics(config, source)
    return config


def _check_semantics(config: dict, source: str) -> None:
    data = config["data"]
    if data["source"] == "folder" and not data.get("root"):
        raise ConfigError(f"{source}: data.root is required when data.source is 'folder'")
    metrics = config["metrics"]
    if len(set(metrics)) != len(metrics):
        raise ConfigError(f"{source}: metrics lists a metric twice: {metrics}")
    from ..proxy.metrics import config_problems

    problems = config_problems(metrics, config["features"])
    model = config["model"]
    problems.extend(_planted_problems(config))
    problems.extend(_extractor_problems(config))
    problems.extend(_size_problems(config))
    if model.get("type", "class_conditional") == "class_conditional" and model.get("lora"):
        problems.append(
            "model.lora: a LoRA is loaded into a text-to-image pipeline (model.type "
            "stable_diffusion, flux or tiny_text_to_image); the class-conditional UNet takes none"
        )
    if model.get("type", "class_conditional") != "class_conditional":
        trained = model["type"] == TRAINED_TEXT_TO_IMAGE
        if trained and model.get("path"):
            problems.append(
                f"model.path is set, but model.type {TRAINED_TEXT_TO_IMAGE!r} is the pipeline the "
                "workflow trains: unset model.path, or set model.type: stable_diffusion to use the "
                "pipeline folder in model.path"
            )
        if not trained and not model.get("path"):
            problems.append(
                f"model.path (a local folder or hub id) is required for model.type {model['type']!r}"
            )
        if not (data.get("caption_column") or data.get("caption_template")):
            problems.append(
                "a text-to-image model needs captions: set data.caption_column or data.caption_template"
            )
    retrain = config["evaluation"]["retrain"]
    finetunable = (
        model.get("type", "class_conditional") == "class_conditional"
        and model.get("conditioning", "contributor") == "contributor"
    )
    if retrain["game"] == "auto":  # resolved here, once: the stage keys see the game played
        retrain["game"] = "finetune" if finetunable else "full"
    if retrain["game"] == "finetune" and not finetunable:
        problems.append(
            "evaluation.retrain.game 'finetune' fine-tunes the workflow's class-conditional model "
            "conditioned on contributors; use game: full with this model"
        )
    rounds = config["coalitions"].get("rounds") or {}
    if coalition_rounds(config):
        if config["game"]["mode"] != "pooled":
            problems.append(
                "coalitions.rounds.max > 1 needs game.mode: pooled (each per_coalition round would "
                "generate anew; raise coalitions.count instead)"
            )
        if config["coalitions"].get("table"):
            problems.append(
                "coalitions.rounds.max > 1 draws more coalitions, but coalitions.table fixes them"
            )
        unknown = [m for m in rounds.get("metrics") or [] if m not in metrics]
        if unknown:
            problems.append(f"coalitions.rounds.metrics names metric(s) not in metrics: {unknown}")
    unpaid = [m for m in (config.get("payout") or {}).get("metrics") or {} if m not in metrics]
    if unpaid:
        problems.append(f"payout.metrics names metric(s) not in metrics: {unpaid}")
    if problems:
        raise ConfigError(f"{source}:\n  " + "\n  ".join(problems))


# model.type of the small Stable Diffusion pipeline that the workflow trains on the captions
TRAINED_TEXT_TO_IMAGE = "tiny_text_to_image"
# its VAE halves the side once (tiny.tiny_vae's two levels)
TRAINED_VAE_FACTOR = 2


def generated_size(config: dict) -> int | None:
    """The side of the generated images: data.image_size for the models the workflow trains,
    else the pipeline's (generation.resolution; None when left to the pipeline)."""
    kind = config["model"].get("type", "class_conditional")
    if kind == "class_conditional":
        return int(config["data"]["image_size"])
    resolution = (config.get("generation") or {}).get("resolution")
    if kind == TRAINED_TEXT_TO_IMAGE:
        return int(resolution or config["data"]["image_size"])
    return resolution


def model_spec(config: dict, model_dir: str) -> dict:
    """What the generation steps load. The pipeline the workflow trains is a Stable Diffusion
    folder, loaded exactly as a user's: type stable_diffusion, path = the trained folder."""
    model = config["model"]
    kind = "stable_diffusion" if model["type"] == TRAINED_TEXT_TO_IMAGE else model["type"]
    return canonical(
        {"type": kind, "lora": model["lora"], "lora_scale": model["lora_scale"], "path": model_dir}
        # only when set: a hub id is otherwise read from the local cache, never downloaded
        | ({"allow_download": True} if model.get("allow_download") else {})
    )


def detector_box(config: dict) -> dict:
    """The marker detector's box {position, size}: features.marker, else where the first planted
    marker is, else the digits export's top-left corner of side data.digits.marker_size."""
    from ..data import planted

    features = config.get("features") or {}
    chosen = features.get("marker") or {}
    markers = [e for e in planted.entries(config["data"]) if e["effect"] == "marker"]
    default = (
        {"position": markers[0]["position"], "size": int(markers[0]["size"])}
        if markers
        else {"position": "top-left", "size": int(config["data"]["digits"]["marker_size"])}
    )
    return {
        "position": chosen.get("position") or default["position"],
        "size": int(chosen.get("size") or default["size"]),
    }


def _extractor_problems(config: dict) -> list[str]:
    """The digits classifier measures a folder dataset only when asked for explicitly."""
    from ..proxy.metrics import extractor_metrics

    features = config["features"]
    measured = extractor_metrics(config["metrics"])
    if (
        config["data"]["source"] == "folder"
        and features.get("extractor", "digits") == "digits"
        and measured
        and not features.get("allow_digits_on_folder")
    ):
        return [
            f"features.extractor is 'digits' on a folder dataset: {', '.join(measured)} would be "
            "measured with a classifier of scikit-learn's handwritten digits, the Fréchet distance "
            "against the clean digits. Set features.extractor: trained (a network trained on your "
            "own images, no download), or clip / inception with local weights; to measure against "
            "the digits anyway, set features.allow_digits_on_folder: true"
        ]
    return []


def _size_problems(config: dict) -> list[str]:
    """Image sizes the models cannot take, and a detector box outside the generated images."""
    problems = []
    model = config["model"]
    kind = model.get("type", "class_conditional")
    size = generated_size(config)
    if kind in ("class_conditional", TRAINED_TEXT_TO_IMAGE) and not model.get("path"):
        levels = len(model["train"]["block_out_channels"])
        vae = TRAINED_VAE_FACTOR if kind == TRAINED_TEXT_TO_IMAGE else 1
        factor = vae * 2 ** (levels - 1)
        side = int(config["data"]["image_size"])
        if side % factor:
            through = f"the UNet's {levels} levels"
            if vae > 1:
                through = f"the VAE (it halves the side) and {through}"
            problems.append(
                f"data.image_size {side} cannot go through {through} "
                f"(model.train.block_out_channels has {levels} entries: each level halves the side, "
                f"so it must be a multiple of {factor}); set data.image_size to a multiple of {factor}"
            )
    if kind == TRAINED_TEXT_TO_IMAGE and size != int(config["data"]["image_size"]):
        problems.append(
            f"generation.resolution {size}: the {TRAINED_TEXT_TO_IMAGE} pipeline generates at the "
            f"side it is trained at, data.image_size {config['data']['image_size']}; set "
            "generation.resolution to null"
        )
    multiple = {"stable_diffusion": 8, "flux": 16}.get(kind)
    if multiple and size and size % multiple:
        problems.append(
            f"generation.resolution {size} cannot be taken by a {kind} pipeline (its VAE needs a "
            f"multiple of {multiple})"
        )
    marker = (config["features"] or {}).get("marker")
    if marker and size:
        from ..data.planted import PlantedError, box

        try:
            box(detector_box(config)["position"], detector_box(config)["size"], size, size)
        except PlantedError as error:
            problems.append(f"features.marker: outside the {size}x{size} generated images: {error}")
    return problems


def _planted_problems(config: dict) -> list[str]:
    """What is wrong with the planted entries before any job runs (the contributors and the
    stored images are checked when the data is prepared)."""
    from ..data import planted

    return planted.problems(planted.entries(config["data"]), image_size=generated_size(config))


def coalition_rounds(config: dict) -> bool:
    """Whether the utility job draws further rounds of coalitions (coalitions.rounds.max > 1)."""
    return (config["coalitions"].get("rounds") or {}).get("max", 1) > 1


def canonical(obj, drop_null: bool = False):
    """`obj` with every mapping's keys sorted (recursively), so that the same settings give the same
    value whatever their order in a config file. With `drop_null`, null settings are dropped too:
    the stage keys use that, so a new optional setting whose default is null changes no key."""
    if isinstance(obj, dict):
        return {
            k: canonical(obj[k], drop_null)
            for k in sorted(obj)
            if not (drop_null and obj[k] is None)
        }
    if isinstance(obj, (list, tuple)):
        return [canonical(v, drop_null) for v in obj]
    return obj


def digest(obj) -> str:
    """A short, stable hash of a JSON-able object (see `canonical`)."""
    text = json.dumps(
        canonical(obj, drop_null=True), sort_keys=True, separators=(",", ":"), default=str
    )
    return hashlib.sha256(text.encode()).hexdigest()[:12]


# Which config sections each stage reads (a top-level key, or a dotted path to one
# setting inside a section), and which stages it consumes. This is the single place
# that defines what invalidates what.
# What a retrained model's utilities depend on: its training, its sampling, the metrics.
RETRAINING_GAME = (
    "evaluation.retrain",
    "model.train",
    "generation",
    "features",
    "metrics",
    "data.image_size",
    "seed",
)

# Full retraining of some held-out coalitions, the truth a cheaper game is measured against.
FULL_RETRAINING = (
    "evaluation.retrain.game",
    "evaluation.retrain.train",
    "evaluation.retrain.samples",
    "evaluation.retrain.common_random_numbers",
    "evaluation.retrain.fidelity",
    "model.train",
    "generation",
    "features",
    "metrics",
    "data.image_size",
    "seed",
)

# model settings read when the pipeline is loaded for generation, not by its training: a LoRA or
# its scale changes the pool stage's key, and the pipeline the workflow trains is trained once
GENERATION_TIME_MODEL = ("lora", "lora_scale", "allow_download")


STAGES: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "data": (("data", "seed"), ()),
    "classifier": (("classifier", "seed"), ()),
    # features.extractor: trained: the classifier trained on the dataset itself (it replaces
    # "classifier" upstream of every stage that reads features: see `stage_keys`)
    "extractor": (("classifier", "seed", "data.image_size", "model.train.device"), ("data",)),
    "model": (("model", "seed"), ("data",)),
    # the LoRA is loaded with the pipeline by each generation job
    "pool": (
        ("generation", "seed", "game.empty_coalition")
        + tuple(f"model.{name}" for name in GENERATION_TIME_MODEL),
        ("model", "data"),
    ),
    "features": (("features",), ("pool", "classifier")),
    # the Fréchet reference of another extractor than digits: the dataset's images in its features
    # (the digits extractor's reference is the classifier's: it lives in the classifier stage)
    "reference": (("features",), ("classifier", "data")),
    "coalitions": (("coalitions",), ("data",)),
    "utilities": (("metrics", "game"), ("features", "coalitions")),
    "proxy_check": (
        ("metrics", "game", "generation", "features", "seed"),
        ("utilities", "model", "classifier"),
    ),
    "attribution": (("surrogate",), ("utilities",)),
    # the `evaluate` target
    "heldout": (("evaluation.heldout",), ("data",)),
    "baselines": (
        ("evaluation.methods", "evaluation.counterfactual", "evaluation.seed"),
        ("attribution", "pool", "features", "heldout"),
    ),
    # the finetune game starts from the trained model
    "retrain": (RETRAINING_GAME, ("heldout", "classifier", "model")),
    "counterfactual": (RETRAINING_GAME, ("baselines", "classifier", "model")),
    "fidelity": (FULL_RETRAINING, ("heldout", "classifier")),
    "evaluation": (
        ("evaluation", "surrogate", "data.source", "data.digits.planted", "data.planted"),
        ("retrain", "counterfactual", "fidelity"),
    ),
}


# The rule scripts (workflow/scripts/<name>.py) whose jobs write each stage's outputs: their code,
# and that of every package module they import, is in the stage's key (tests check it is complete).
STAGE_SCRIPTS: dict[str, tuple[str, ...]] = {
    "data": ("prepare_data",),
    "classifier": ("train_classifier", "reference_features"),
    "extractor": ("train_extractor",),
    "model": ("train_model",),
    "pool": ("generate_pool",),
    "features": ("extract_features",),
    "reference": ("reference_features",),
    "coalitions": ("draw_coalitions",),
    "utilities": ("pooled_utilities", "per_coalition_utilities", "gather_utilities"),
    "proxy_check": ("per_coalition_utilities", "proxy_check"),
    "attribution": ("attribute",),
    "heldout": ("draw_heldout",),
    "baselines": ("evaluation_baselines",),
    "retrain": ("retrain",),
    "counterfactual": ("retrain",),
    "fidelity": ("retrain",),
    "evaluation": ("evaluation_tables",),
}


def stage_section(config: dict, stage: str) -> dict:
    sections, _ = STAGES[stage]
    section = _settings(config, sections)
    if stage == "model" and isinstance(section.get("model"), dict):
        section["model"] = {
            k: v for k, v in section["model"].items() if k not in GENERATION_TIME_MODEL
        }
    return section


def _settings(config: dict, names) -> dict:
    section = {}
    for name in names:
        value = config
        for part in name.split("."):
            value = value.get(part) if isinstance(value, dict) else None
        section[name] = value
    return section


def _in_section(section: dict, path: str) -> bool:
    """Whether the dotted setting `path` is in a stage's section (a name of it, or inside one;
    not a setting the section leaves out, like the model stage's LoRA)."""
    for name, value in section.items():
        if path == name:
            return True
        if path.startswith(name + "."):
            for part in path[len(name) + 1 :].split("."):
                if not isinstance(value, dict) or part not in value:
                    return False
                value = value[part]
            return True
    return False


def stage_keys(config: dict, fingerprints: dict | None = None) -> dict[str, str]:
    """Map each stage to the hash of its own config sections, the fingerprints of the files they
    name and of its code (`fingerprints`, from `workflow_fingerprints`), and its upstream keys."""
    files = (fingerprints or {}).get("files", {})
    code = (fingerprints or {}).get("code", {})
    keys: dict[str, str] = {}

    def key(stage: str) -> str:
        if stage not in keys:
            _, upstream = STAGES[stage]
            section = stage_section(config, stage)
            if stage == "model" and config["model"].get("path"):
                # A user's checkpoint does not depend on our data or training settings.
                section = _settings(
                    config,
                    (
                        "model.path",
                        "model.type",
                        "model.allow_download",  # null unless set: no key changes
                    ),
                )
                upstream = ()
            if (config.get("features") or {}).get("extractor") == "trained":
                upstream = tuple("extractor" if u == "classifier" else u for u in upstream)
            if stage == "utilities" and coalition_rounds(config):
                # adaptive rounds: the stopping rule fits the surrogate, so its settings decide the table
                section = dict(section, surrogate=config["surrogate"])
            payload = {"config": section, "upstream": [key(u) for u in upstream]}
            # a file named by a setting the stage reads (the setting itself or one inside it)
            read = {path: fp for path, fp in files.items() if _in_section(section, path)}
            if read:
                payload["files"] = read
            if stage in code:
                payload["code"] = code[stage]
            keys[stage] = f"{stage}-" + digest(payload)
        return keys[stage]

    for stage in STAGES:
        key(stage)
    return keys


def workflow_fingerprints(config: dict, schema_path, scripts_dir) -> dict:
    """What goes into the stage keys besides config values: {"files": dotted config path ->
    fingerprint of the data, weights or code file it names, "code": stage -> hash of the rule
    scripts in `scripts_dir` and package modules it runs}. With `cache.code_fingerprints` (an
    earlier run's fingerprints.json), that run's code hashes are used instead: its caches are
    kept, on purpose, after the code changed."""
    from .fingerprint import code_fingerprint, external_fingerprints

    scripts_dir = Path(scripts_dir)
    code = {
        stage: code_fingerprint([scripts_dir / f"{name}.py" for name in names])
        for stage, names in STAGE_SCRIPTS.items()
    }
    pinned = (config.get("cache") or {}).get("code_fingerprints")
    if pinned:
        try:
            recorded = json.loads(Path(pinned).read_text(encoding="utf-8"))["code"]
        except FileNotFoundError:
            raise ConfigError(f"cache.code_fingerprints: file not found: {pinned}") from None
        except (ValueError, KeyError, TypeError):
            raise ConfigError(
                f"cache.code_fingerprints: {pinned} is not a fingerprints.json of a run "
                "(a JSON object with a 'code' mapping)"
            ) from None
        code = code | {stage: recorded[stage] for stage in code if stage in recorded}
    return {"files": external_fingerprints(config, load_schema(schema_path)), "code": code}
