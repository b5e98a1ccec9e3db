"""Every job's output path is keyed on everything the job reads (issue 16).

The property, checked from Snakemake's own DAGs (tests/dags.py builds them in one process):
for every leaf of the config schema, on the small config and on a folder dataset, a user's
checkpoint and a LoRA, change that one value; then every cache job of the changed config whose
output path the unchanged config also has must be the same job (rule, params, inputs, logs).
Put the other way: a job whose params or inputs change gets a new output path. So two configs
never write one cache file with two results, and a cached file is never reused for another.
"""

from __future__ import annotations

import copy
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from surrogateshap.workflow.config import (
    STAGE_SCRIPTS,
    ConfigError,
    load_yaml,
    merge,
    validate_config,
)

from .conftest import ROOT, SCHEMA, copy_workflow

TARGETS = ["all", "evaluate"]
DAGS = Path(__file__).with_name("dags.py")


# --------------------------------------------------------------------------- fixtures
def write_dataset(root: Path, contributors=("ann", "bob", "cy"), per=4, seed=0) -> Path:
    """A tiny folder dataset: 8x8 PNGs and a metadata.csv."""
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    rows = ["file_name,contributor,label"]
    for c, name in enumerate(contributors):
        for i in range(per):
            file = f"img/{name}_{i}.png"
            (root / "img").mkdir(exist_ok=True)
            Image.fromarray(rng.integers(0, 255, (8, 8), dtype=np.uint8)).save(root / file)
            rows.append(f"{file},{name},{c}")
    (root / "metadata.csv").write_text("\n".join(rows) + "\n")
    return root


class Fixtures:
    """Files the configs name: datasets, weights, a model folder, user code, a coalition table."""

    def __init__(self, base: Path):
        self.dataset = write_dataset(base / "data")
        self.dataset_copy = write_dataset(base / "data_copy", seed=1)
        self.metadata_copy = base / "data" / "other.csv"
        self.metadata_copy.write_text((self.dataset / "metadata.csv").read_text())
        self.weights = base / "weights.safetensors"
        self.weights.write_bytes(b"weights")
        self.folder = base / "model"
        (self.folder / "unet").mkdir(parents=True)
        (self.folder / "unet" / "model.safetensors").write_bytes(b"unet")
        self.lora = base / "lora.safetensors"
        self.lora.write_bytes(b"lora")
        self.code = base / "user_code.py"
        self.code.write_text("def flag(images):\n    return images.mean(axis=(1, 2, 3)) > 0.5\n")
        self.fingerprints = (
            base / "fingerprints.json"
        )  # an earlier run's, for cache.code_fingerprints
        self.fingerprints.write_text('{"code": {"attribution": "0123456789abcdef"}}')
        self.table = base / "coalitions.csv"
        self.table.write_text('members\n"[]"\n"[0]"\n"[0, 1]"\n')

    def file(self) -> str:
        return str(self.weights)

    def callable(self) -> str:
        return f"{self.code}:flag"


def small_config() -> dict:
    config = load_yaml(ROOT / "config/config.yaml")
    for name in ("small.yaml", "evaluate.yaml"):
        config = merge(config, load_yaml(ROOT / "tests/configs" / name))
    return config


def base_configs(fx: Fixtures) -> dict[str, dict]:
    small = small_config()
    folder = merge(
        small,
        {
            "run": "folder",
            "data": {"source": "folder", "root": str(fx.dataset), "image_size": 8},
            # measured in a classifier trained on the folder itself (the train_extractor rule)
            "features": {"extractor": "trained", "spurious_detector": fx.callable()},
            "metrics": ["frechet_distance", "marker_rate", "spurious_rate"],
            "evaluation": {"counterfactual": {"metrics": ["marker_rate"]}},
        },
    )
    checkpoint = merge(small, {"run": "checkpoint", "model": {"path": str(fx.folder)}})
    lora = merge(
        folder,
        {
            "run": "lora",
            "model": {"type": "stable_diffusion", "path": str(fx.folder), "lora": str(fx.lora)},
            "data": {"caption_template": "a picture by {contributor}"},
            # the finetune game needs the workflow's own class-conditional model
            "evaluation": {"retrain": {"game": "full"}},
        },
    )
    # the pipeline the workflow trains, with a LoRA: the LoRA is the generation jobs' (pool key)
    trained_lora = merge(
        folder,
        {
            "run": "trained-lora",
            "model": {"type": "tiny_text_to_image", "lora": str(fx.lora)},
            "data": {"caption_template": "a picture by {contributor}", "image_size": 8},
            "evaluation": {"retrain": {"game": "full"}},
        },
    )
    bases = {
        "small": small,
        "folder": folder,
        "checkpoint": checkpoint,
        "lora": lora,
        "trained_lora": trained_lora,
    }
    return {name: validate_config(config, SCHEMA) for name, config in bases.items()}


# Which leaves each base config varies: all of them on the small config; on the others, those of
# the sections their dataset or model changes.
VARIED = {"small": ("",), "folder": ("data.", "features."), "checkpoint": ("model.",)}
VARIED["lora"] = ("model.", "data.caption")
VARIED["trained_lora"] = ("model.",)
# `snakemake evaluate` is refused for the pipeline the workflow trains
TARGETS_OF = {"trained_lora": ["all"]}


# --------------------------------------------------------------------------- schema leaves
def schema_leaves(schema: dict, path: str = ""):
    """(dotted path, schema) of every leaf: a value that is no object with listed properties. An
    object that also takes other keys (a map, like surrogate.params) is a leaf of its own too."""
    properties = schema.get("properties")
    if not properties:
        yield path, schema
        return
    for name, sub in properties.items():
        yield from schema_leaves(sub, f"{path}.{name}" if path else name)
    if schema.get("additionalProperties", True) is not False and path:
        yield path, {k: v for k, v in schema.items() if k != "properties"}


def _types(schema: dict) -> list[str]:
    kind = schema.get("type", [])
    return [kind] if isinstance(kind, str) else list(kind)


def sample(schema: dict, fx: Fixtures):
    """A valid value for a setting that is unset (null or absent)."""
    if "x-fingerprint" in schema:
        return fx.callable() if schema["x-fingerprint"] == "callable" else fx.file()
    if "enum" in schema:
        return next(v for v in schema["enum"] if v is not None)
    types = [t for t in _types(schema) if t != "null"]
    if "object" in types:
        return {
            name: sample(sub, fx)
            for name, sub in schema.get("properties", {}).items()
            if name in schema.get("required", [])
        }
    if "array" in types:
        return [sample(schema.get("items", {"type": "string"}), fx)] * schema.get("minItems", 1)
    if "integer" in types or "number" in types:
        return max(schema.get("minimum", 1), 1)
    if "boolean" in types:
        return True
    return "changed"


def candidates(value, schema: dict, fx: Fixtures):
    """Changed values of one setting, in order of preference (the first valid one is used)."""
    if value is None:
        yield sample(schema, fx)
        return
    if "x-fingerprint" in schema:
        yield fx.file() if schema["x-fingerprint"] == "file" else f"{fx.code}:other"
        return
    if "enum" in schema:
        yield from (v for v in schema["enum"] if v != value)
        return
    if isinstance(value, bool):
        yield not value
    elif isinstance(value, (int, float)):
        high = schema.get("maximum", schema.get("exclusiveMaximum"))
        if isinstance(value, int) and "number" not in _types(schema):
            yield from (value + 1, value - 1)
        elif high is not None:
            yield value + (high - value) / 2
        else:
            yield from (value * 2 if value else 1.0, value + 1)
    elif isinstance(value, str):
        yield from (value + "-2", "cpu", "changed")
    elif isinstance(value, list):
        if len(value) > schema.get("minItems", 0):
            yield value[:-1]
        if value and isinstance(value[0], int):
            yield value + [max(value) + 1]
            yield [value[0] + 8] + value[1:]
        yield value + value[-1:]
    elif isinstance(value, dict):
        if value:
            yield {k: v for k, v in value.items() if k != sorted(value)[-1]}
        yield dict(value, extra=1)


# Leaves that a single change cannot make valid, or whose value must name a real file: the
# changes that go with them (dotted path -> value).
def companions(fx: Fixtures) -> dict[str, dict]:
    clip = {"features.extractor": "clip", "features.clip": str(fx.folder)}
    return {
        "data.source": {
            "data.source": "folder",
            "data.root": str(fx.dataset),
            "features.extractor": "trained",
        },
        "data.root": {"data.root": str(fx.dataset_copy)},
        "model.type": {
            "model.type": "flux",
            "model.path": str(fx.folder),
            "data.caption_template": "a picture by {contributor}",
            "evaluation.retrain.game": "full",
        },
        "model.conditioning": {"model.conditioning": "label", "evaluation.retrain.game": "full"},
        # the pipeline the workflow trains has no model.path: a user's folder is another type
        "model.path": [
            {"model.path": str(fx.folder)},
            {"model.path": str(fx.folder), "model.type": "stable_diffusion"},
        ],
        # a LoRA goes into a text-to-image pipeline only: on the class-conditional bases, with one
        "model.lora": [
            {"model.lora": fx.file()},
            {
                "model.lora": str(fx.lora),
                "model.type": "stable_diffusion",
                "model.path": str(fx.folder),
                "data.caption_template": "a picture by {contributor}",
                "evaluation.retrain.game": "full",
            },
        ],
        "data.image_size": {"data.image_size": 16},
        "model.train.device": {"model.train.device": "cpu"},
        "features.backbone": {"features.backbone": str(fx.folder)},
        "features.clip": {"features.clip": str(fx.folder)},
        "features.reward": {"features.reward": str(fx.folder)},
        "features.marker.position": {"features.marker.position": "bottom-right"},
        "features.marker.size": {"features.marker.size": 3},
        "data.planted": [
            {"data.planted": [{"contributor": name, "effect": "noise", "strength": 0.5}]}
            for name in ("digit-1-a", "bob")
        ],
        "data.metadata": {"data.metadata": str(fx.metadata_copy)},
        "features.attributes": clip | {"features.attributes": {"color": ["red", "blue"]}},
        "features.extractor": clip,
        "features.custom_metrics": {
            "features.custom_metrics": {"mine": {"function": fx.callable(), "direction": "lower"}},
        },
        "features.prompt_groups": {"features.prompt_groups": {"cats": "cat"}},
        "coalitions.rounds.metrics": {
            "coalitions.rounds.metrics": ["marker_rate"],
            "coalitions.rounds.max": 2,
        },
        "coalitions.table": {"coalitions.table": str(fx.table)},
        "cache.code_fingerprints": {"cache.code_fingerprints": str(fx.fingerprints)},
    }


def get_path(config: dict, path: str):
    value = config
    for part in path.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    return value


def set_path(config: dict, path: str, value, schema: dict, fx: Fixtures) -> None:
    parts = path.split(".")
    node, node_schema = config, schema
    for part in parts[:-1]:
        node_schema = node_schema["properties"][part]
        if not isinstance(node.get(part), dict):
            node[part] = sample(node_schema, fx)
        node = node[part]
    node[parts[-1]] = value


def is_valid(config: dict) -> str | None:
    try:
        validate_config(copy.deepcopy(config), SCHEMA)
    except ConfigError as error:
        return str(error)
    return None


def mutations(base: dict, schema: dict, prefixes, fx: Fixtures):
    """(leaf, changed config) for every leaf under `prefixes`; a leaf with no valid change: an
    AssertionError naming it (give it an entry in `companions`)."""
    special = companions(fx)
    for leaf, leaf_schema in schema_leaves(schema):
        if not leaf.startswith(tuple(prefixes)):
            continue
        tried = []
        # a companion: one change, or alternatives (the first valid one on this base is used)
        extra = special.get(leaf, [])
        options = list(extra) if isinstance(extra, list) else [extra]
        options += [{leaf: v} for v in candidates(get_path(base, leaf), leaf_schema, fx)]
        for changes in options:
            changed = copy.deepcopy(base)
            for path, value in changes.items():
                set_path(changed, path, value, schema, fx)
            problem = is_valid(changed)
            if problem is None and changed != base:
                yield leaf, changed
                break
            tried.append(f"{changes}: {problem}")
        else:
            raise AssertionError(
                f"no valid change of {leaf!r} (add one to companions):\n" + "\n".join(tried)
            )


# --------------------------------------------------------------------------- DAGs
def build_dags(workdir: Path, requests: list[dict], src: Path = ROOT / "src") -> list[dict]:
    """Snakemake's DAG for each request, built in one process (tests/dags.py), with the package
    from `src`."""
    path = workdir / f"requests-{time.monotonic_ns()}.json"
    path.write_text(json.dumps(requests, default=str))
    # the keys of configs whose inputs are stand-ins (a weights file for a model folder, code
    # that is never called): the parse-time input checks are tests/test_bad_inputs.py's
    env = dict(os.environ, PYTHONPATH=str(src), SURROGATESHAP_PREFLIGHT="off")
    result = subprocess.run(
        [sys.executable, str(DAGS), str(path)],
        cwd=workdir,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    return [json.loads(line) for line in result.stdout.splitlines()]


CACHE_PATH = re.compile(r"^results/cache/(?P<stage>[a-z_]+)/(?P=stage)-[0-9a-f]{12}/")


def layout_problems(dag: dict, run: str) -> list[str]:
    """Every output is a cache entry of a stage (written by that stage's scripts) or the run's own."""
    problems = []
    for job in dag["jobs"]:
        for out in job["output"]:
            match = CACHE_PATH.match(out)
            if match is None:
                if not out.startswith(f"results/{run}/"):
                    problems.append(f"{job['rule']}: {out} is neither a cache entry nor the run's")
            elif job["script"] not in STAGE_SCRIPTS.get(match["stage"], ()):
                problems.append(
                    f"{job['rule']}: writes stage {match['stage']!r} but its script "
                    f"{job['script']!r} is not in STAGE_SCRIPTS[{match['stage']!r}] (its code "
                    "would not be in the key)"
                )
    return problems


def collisions(base: dict, changed: dict, run: str) -> list[str]:
    """Cache jobs of `changed` that write a path of `base` but are not the same job."""
    by_output = {out: job for job in base["jobs"] for out in job["output"]}
    by_log = {log: job for job in base["jobs"] for log in job["log"]}
    problems = []
    for job in changed["jobs"]:
        for log in job["log"]:
            other = by_log.get(log)
            if other is not None and other["output"] != job["output"] and job["output"]:
                problems.append(f"{job['rule']} logs to {log} as {other['rule']} of other outputs")
        for out in job["output"]:
            if out.startswith(f"results/{run}/") or out not in by_output:
                continue
            other = by_output[out]
            fields = ("rule", "params", "input", "output", "log", "script")
            differ = [f for f in fields if other[f] != job[f]]
            if differ:
                detail = {f: (other[f], job[f]) for f in differ if f != "params"}
                if "params" in differ:
                    detail["params"] = {
                        k: (other["params"].get(k), job["params"].get(k))
                        for k in set(other["params"]) | set(job["params"])
                        if other["params"].get(k) != job["params"].get(k)
                    }
                problems.append(f"{job['rule']} writes {out} with other {differ}: {detail}")
                break
    return problems


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    return copy_workflow(tmp_path_factory.mktemp("keys"))


@pytest.fixture(scope="module")
def fx(tmp_path_factory):
    return Fixtures(tmp_path_factory.mktemp("inputs"))


def test_every_job_is_keyed_on_everything_it_reads(workdir, fx):
    schema = load_yaml(SCHEMA)
    bases = base_configs(fx)
    requests, labels = [], []
    for name, base in bases.items():
        targets = TARGETS_OF.get(name, TARGETS)
        requests.append({"config": base, "targets": targets, "forceall": True})
        labels.append((name, None))
        for leaf, changed in mutations(base, schema, VARIED[name], fx):
            requests.append({"config": changed, "targets": targets, "forceall": True})
            labels.append((name, leaf))
    start = time.monotonic()
    dags = build_dags(workdir, requests)
    seconds = time.monotonic() - start
    print(f"{len(dags)} DAGs in {seconds:.1f} s")
    problems, defined, scheduled, base_dags = [], set(), set(), {}
    for (name, leaf), request, dag in zip(labels, requests, dags):
        where = f"{name}" + (f", {leaf} changed" if leaf else "")
        if "error" in dag:
            problems.append(f"{where}: the DAG failed: {dag['error']}")
            continue
        defined.update(dag["rules"])
        scheduled.update(job["rule"] for job in dag["jobs"])
        problems.extend(f"{where}: {p}" for p in layout_problems(dag, request["config"]["run"]))
        if leaf is None:
            base_dags[name] = dag
        elif name in base_dags:
            run = bases[name]["run"]
            problems.extend(f"{where}: {p}" for p in collisions(base_dags[name], dag, run))
    assert not problems, "\n".join(problems[:40]) + f"\n({len(problems)} problems)"
    # every rule of `all` and `evaluate` (under some config) was in a checked DAG
    assert defined - scheduled == set(), f"rules never scheduled: {sorted(defined - scheduled)}"
    assert len(dags) > 100


def test_schema_walk_reaches_every_setting(fx):
    """The leaves cover every setting of the full config (so a new field is varied too)."""
    schema = load_yaml(SCHEMA)
    config = validate_config(small_config(), SCHEMA)
    leaves = {leaf for leaf, _ in schema_leaves(schema)}

    def paths(value, prefix=""):
        if isinstance(value, dict) and value and f"{prefix}".rstrip(".") not in leaves:
            for k, v in value.items():
                yield from paths(v, f"{prefix}{k}.")
        else:
            yield prefix.rstrip(".")

    # an unset object setting (features.lpips: null) is covered by the leaves inside it
    missing = [
        p
        for p in paths(config)
        if p not in leaves and not any(x.startswith(p + ".") for x in leaves)
    ]
    assert not missing, missing


def test_rule_scripts_read_only_params_inputs_and_wildcards():
    """A script that read snakemake.config would read settings no key sees."""
    for script in (ROOT / "workflow/scripts").glob("*.py"):
        assert "snakemake.config" not in script.read_text(), script
