"""Bad inputs refused before any job starts: each case of the table runs through `snakemake -n`
(the workflow's parse-time checks) and `surrogateshap check-data`, and must be refused in under
10 s with a message naming the field or file at fault, without a traceback. The same table is in
docs/trust-and-safety.md (a test below keeps the two in step).

Every case starts from one good folder dataset and config (checked to pass both) and breaks one
thing.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from .conftest import ROOT, SNAKEMAKE, copy_workflow

SURROGATESHAP = str(Path(sys.executable).with_name("surrogateshap"))
CONTRIBUTORS = ["alice", "bob", "carol", "dave"]
LIMIT_S = 10.0

GOOD = {
    "run": "bad-inputs",
    "data": {"source": "folder", "root": "data", "image_size": 8},
    "features": {"extractor": "trained"},
    "generation": {"shards": 2},
    "coalitions": {"count": 16},
    "metrics": ["frechet_distance", "marker_rate"],
}


def _write_dataset(root: Path) -> None:
    (root / "img").mkdir(parents=True)
    rng = np.random.default_rng(0)
    rows = ["file_name,contributor,label"]
    for c, name in enumerate(CONTRIBUTORS):
        for i in range(3):
            file = f"img/{name}-{i}.png"
            pixels = (rng.random((8, 8)) * 255).astype(np.uint8)
            Image.fromarray(pixels, mode="L").save(root / file)
            rows.append(f"{file},{name},{c % 2}")
    (root / "metadata.csv").write_text("\n".join(rows) + "\n")


def _metadata(work: Path, rows: list[str]) -> None:
    (work / "data/metadata.csv").write_text("\n".join(rows) + "\n")


def _rows(work: Path) -> list[str]:
    return (work / "data/metadata.csv").read_text().splitlines()


# Each case: (id, what breaks, how: a function (workdir, config) -> config, and the words the
# refusal must contain: the field or file at fault).
def _set(path: str, value):
    def change(work: Path, config: dict) -> dict:
        node = config
        parts = path.split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = value
        return config

    return change


def _missing_image(work, config):
    (work / "data/img/bob-1.png").unlink()
    return config


def _unreadable_image(work, config):
    (work / "data/img/bob-1.png").write_bytes(b"not an image at all")
    return config


def _duplicate_file(work, config):
    rows = _rows(work)
    _metadata(work, rows + [rows[1]])
    return config


def _empty_contributor(work, config):
    rows = _rows(work)
    rows[2] = rows[2].replace(",alice,", ",,")
    _metadata(work, rows)
    return config


def _semicolons(work, config):
    _metadata(work, [row.replace(",", ";") for row in _rows(work)])
    return config


def _no_rows(work, config):
    _metadata(work, _rows(work)[:1])
    return config


def _label_not_integer(work, config):
    rows = _rows(work)
    rows[1] = rows[1].rsplit(",", 1)[0] + ",three"
    _metadata(work, rows)
    return config


def _escaping_file(work, config):
    rows = _rows(work)
    rows[1] = "../outside.png," + rows[1].split(",", 1)[1]
    _metadata(work, rows)
    return config


def _single_contributor(work, config):
    _metadata(work, [_rows(work)[0]] + [r for r in _rows(work)[1:] if ",alice," in r])
    return config


def _user_file(name: str, source: str):
    def change(work, config):
        (work / name).write_text(source)
        return _set("features.spurious_detector", f"{name}:detect")(work, config) | {
            "metrics": ["frechet_distance", "spurious_rate"]
        }

    return change


def _custom_metric(spec: str, source: str | None = None):
    def change(work, config):
        if source is not None:
            (work / spec.split(":")[0]).write_text(source)
        config.setdefault("features", {})["custom_metrics"] = {"sharp": {"function": spec}}
        return config | {"metrics": ["frechet_distance", "sharp"]}

    return change


def _empty_model_folder(work, config):
    (work / "empty-model").mkdir()
    return _set("model.path", "empty-model")(work, config)


def _text_to_image(path: str):
    def change(work, config):
        config["model"] = {"type": "stable_diffusion", "path": path}
        config["data"]["caption_template"] = "a picture by {contributor}"
        return config

    return change


def _pipeline_without_weights(work, config):
    folder = work / "sd"
    (folder / "unet").mkdir(parents=True)
    (folder / "model_index.json").write_text(
        '{"_class_name": "StableDiffusionPipeline", "unet": ["diffusers", "UNet2DConditionModel"]}'
    )
    (folder / "unet/config.json").write_text("{}")
    return _text_to_image("sd")(work, config)


CASES = [
    # the data table
    ("missing-image", _missing_image, ["image files missing", "img/bob-1.png"]),
    ("unreadable-image", _unreadable_image, ["cannot be read", "img/bob-1.png"]),
    ("duplicate-file-name", _duplicate_file, ["duplicate file_name", "img/alice-0.png"]),
    ("empty-contributor", _empty_contributor, ["empty 'contributor'", "img/alice-1.png"]),
    (
        "wrong-contributor-column",
        _set("data.contributor_column", "owner"),
        ["missing column 'owner'", "data.contributor_column"],
    ),
    ("missing-data-root", _set("data.root", "no-such-folder"), ["data.root", "no-such-folder"]),
    ("missing-metadata", _set("data.metadata", "data/nope.csv"), ["data.metadata", "nope.csv"]),
    ("semicolon-csv", _semicolons, ["metadata.csv", "semicolons"]),
    ("no-rows", _no_rows, ["metadata.csv", "no rows"]),
    ("label-not-integer", _label_not_integer, ["'label' is not an integer", "img/alice-0.png"]),
    ("file-outside-folder", _escaping_file, ["outside the dataset folder", "../outside.png"]),
    ("too-few-items", _set("data.min_items", 5), ["fewer than 5 items", "'alice' (3)"]),
    (
        "missing-caption-column",
        _set("data.caption_column", "caption"),
        ["missing caption column 'caption'"],
    ),
    (
        "unknown-planted-contributor",
        _set("data.planted", [{"contributor": "zoe", "effect": "noise"}]),
        ["data.planted[0]", "unknown contributor 'zoe'"],
    ),
    (
        "unknown-planted-effect",
        _set("data.planted", [{"contributor": "bob", "effect": "sparkle"}]),
        ["data.planted[0]", "unknown effect 'sparkle'"],
    ),
    # the user's functions
    (
        "detector-file-missing",
        _set("features.spurious_detector", "nope.py:detect"),
        ["features.spurious_detector", "file not found", "nope.py"],
    ),
    (
        "detector-function-missing",
        _user_file("det.py", "def other(images, prompts):\n    return [0] * len(images)\n"),
        ["features.spurious_detector", "no function 'detect'", "other"],
    ),
    (
        "detector-syntax-error",
        _user_file("det.py", "def detect(images, prompts)\n    return 1\n"),
        ["features.spurious_detector", "det.py, line 1", "syntax error"],
    ),
    (
        "detector-wrong-signature",
        _user_file("det.py", "def detect(x):\n    return x\n"),
        ["features.spurious_detector", "detect(x)", "det.py, line 1", "fn(images, prompts)"],
    ),
    (
        "detector-raises",
        _user_file("det.py", "def detect(images, prompts):\n    return images.nonexistent\n"),
        ["features.spurious_detector", "AttributeError", "det.py, line 2"],
    ),
    (
        "detector-import-raises",
        _user_file(
            "det.py", "import no_such_package_here\ndef detect(images, prompts):\n    return [0]\n"
        ),
        ["features.spurious_detector", "no_such_package_here"],
    ),
    (
        "custom-metric-wrong-count",
        _custom_metric("sharp.py:score", "def score(images, prompts):\n    return 1.0\n"),
        ["features.custom_metrics.sharp.function", "1 value(s) for 2 images"],
    ),
    (
        "custom-metric-non-finite",
        _custom_metric(
            "sharp.py:score",
            "def score(images, prompts):\n    return [float('nan')] * len(images)\n",
        ),
        ["features.custom_metrics.sharp.function", "non-finite"],
    ),
    (
        "custom-metric-no-module",
        _custom_metric("no_such_module_xyz:score"),
        ["features.custom_metrics.sharp.function", "cannot import 'no_such_module_xyz'"],
    ),
    # model and weight paths
    (
        "model-path-empty-folder",
        _empty_model_folder,
        ["model.path", "empty-model", "unet/config.json"],
    ),
    (
        "model-path-missing-absolute",
        _set("model.path", "/no/such/model/folder"),
        ["model.path: folder not found", "/no/such/model/folder"],
    ),
    (
        "model-path-uncached-hub-id",
        _text_to_image("some-org/some-model-not-cached"),
        ["model.path", "some-org/some-model-not-cached", "model.allow_download"],
    ),
    (
        "pipeline-folder-no-weights",
        _pipeline_without_weights,
        ["model.path", "unet/ has a config.json but no weight files"],
    ),
    (
        "lora-missing",
        lambda w, c: _set("model.lora", "lora/none.safetensors")(
            w, _text_to_image("sd-missing")(w, c)
        ),
        ["model.lora: not found", "lora/none.safetensors"],
    ),
    (
        "clip-folder-missing",
        _set("features.clip", "clip-folder"),
        ["features.clip", "no such model folder", "clip-folder"],
    ),
    # designs that cannot support the numbers
    ("single-contributor", _single_contributor, ["1 contributor(s)"]),
    (
        "too-few-coalitions",
        _set("coalitions.count", 4),
        ["coalitions.count 4", "coalitions.allow_small_design"],
    ),
    ("more-shards-than-pools", _set("generation.shards", 9), ["generation.shards 9", "at most 5"]),
    # config values
    (
        "unknown-sampler",
        _set("coalitions.sampler", "permutation"),
        ["coalitions.sampler", "'permutation' is not one of"],
    ),
    (
        "unknown-metric",
        _set("metrics", ["frechet_distance", "crispness"]),
        ["metrics.1", "unknown metric 'crispness'"],
    ),
    (
        "wrong-type",
        _set("generation.steps", "many"),
        ["generation.steps", "'many' is not of type 'integer'"],
    ),
]


def _run(args: list[str], cwd: Path) -> tuple[subprocess.CompletedProcess, float]:
    start = time.perf_counter()
    result = subprocess.run(args, cwd=cwd, capture_output=True, text=True, timeout=120)
    return result, time.perf_counter() - start


@pytest.fixture(scope="module")
def outcomes(tmp_path_factory):
    """Every case (and the good config) through `snakemake -n` and `check-data`, two at a time:
    (case -> {"snakemake": (result, seconds), "check-data": (result, seconds)})."""
    workflow = copy_workflow(tmp_path_factory.mktemp("workflow"))
    jobs = []
    for case_id, change, _ in [("good", lambda w, c: c, [])] + CASES:
        work = tmp_path_factory.mktemp(case_id)
        for name in ("Snakefile", "workflow", "config"):
            source = workflow / name
            (shutil.copytree if source.is_dir() else shutil.copy2)(source, work / name)
        _write_dataset(work / "data")
        config = change(work, yaml.safe_load(yaml.safe_dump(GOOD)))
        (work / "case.yaml").write_text(yaml.safe_dump(config))
        jobs.append(
            (
                case_id,
                "snakemake",
                [SNAKEMAKE, "-n", "--cores", "1", "--configfile", "case.yaml"],
                work,
            )
        )
        jobs.append(
            (
                case_id,
                "check-data",
                [SURROGATESHAP, "check-data", "--configfile", "case.yaml"],
                work,
            )
        )
    with ThreadPoolExecutor(max_workers=2) as pool:
        results = list(pool.map(lambda job: _run(job[2], job[3]), jobs))
    out: dict[str, dict] = {}
    for (case_id, tool, _, _), result in zip(jobs, results):
        out.setdefault(case_id, {})[tool] = result
    return out


@pytest.mark.parametrize("tool", ["snakemake", "check-data"])
def test_the_good_config_passes(outcomes, tool):
    result, _ = outcomes["good"][tool]
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]


@pytest.mark.parametrize("tool", ["snakemake", "check-data"])
@pytest.mark.parametrize(
    "case_id, expected", [(c[0], c[2]) for c in CASES], ids=[c[0] for c in CASES]
)
def test_bad_input_is_refused_before_any_job(outcomes, case_id, expected, tool):
    result, seconds = outcomes[case_id][tool]
    text = result.stdout + result.stderr
    assert result.returncode != 0, f"{case_id} accepted by {tool}:\n{text[-3000:]}"
    for words in expected:
        assert words in text, f"{case_id}: {words!r} not in the {tool} message:\n{text[-3000:]}"
    assert "Traceback" not in text, text[-3000:]
    assert seconds < LIMIT_S, f"{case_id}: {tool} took {seconds:.1f} s"
    if tool == "snakemake":  # refused when parsed: no job was planned, let alone run
        assert "Job stats" not in text and "rule prepare_data" not in text, text[-3000:]


def test_the_table_is_documented():
    """docs/trust-and-safety.md lists every case of this table by its id."""
    doc = (ROOT / "docs/trust-and-safety.md").read_text()
    missing = [case_id for case_id, _, _ in CASES if f"`{case_id}`" not in doc]
    assert not missing, f"cases missing from docs/trust-and-safety.md: {missing}"


# --------------------------------------------------------------------------- in-process units
def test_command_line_strings_become_what_the_schema_expects():
    from surrogateshap.workflow.config import coerce_strings, load_schema

    from .conftest import SCHEMA

    schema = load_schema(SCHEMA)
    # what Snakemake's --config gives for '{retrain: {common_random_numbers: false}}' and friends
    given = {
        "evaluation": {"retrain": {"common_random_numbers": "false", "samples": "32"}},
        "coalitions": {"count": "200", "p": "0.25", "table": "null"},
        "surrogate": {"grid": {"n_estimators": ["0", "300"]}},
        "run": "123",  # a string field keeps its string, digits and all
        "generation": {"scheduler": "ddim", "dtype": "float16"},
    }
    out = coerce_strings(given, schema)
    assert out["evaluation"]["retrain"] == {"common_random_numbers": False, "samples": 32}
    assert out["coalitions"] == {"count": 200, "p": 0.25, "table": None}
    assert out["surrogate"]["grid"]["n_estimators"] == [0, 300]
    assert out["run"] == "123"
    assert out["generation"] == {"scheduler": "ddim", "dtype": "float16"}
    # a value that is no boolean stays a string, so validation names it
    assert (
        coerce_strings({"coalitions": {"paired": "maybe"}}, schema)["coalitions"]["paired"]
        == "maybe"
    )


def test_an_override_of_a_boolean_reaches_the_config(tmp_path):
    """The documented override runs (it was refused as "'false' is not of type 'boolean'")."""
    from .conftest import snakemake

    work = copy_workflow(tmp_path / "wf")
    result = snakemake(
        work,
        "-n",
        "--config",
        "evaluation={retrain: {common_random_numbers: false}}",
        "coalitions={count: 300}",
    )
    assert "This was a dry-run" in result.stdout
    refused = snakemake(
        work, "-n", "--config", "evaluation={retrain: {common_random_numbers: maybe}}", check=False
    )
    assert refused.returncode != 0
    assert "evaluation.retrain.common_random_numbers" in refused.stdout + refused.stderr


def test_a_thin_design_is_warned_about_and_runs(tmp_path):
    """Between n + 1 and 2n coalitions: a warning with the fix, not a refusal; below n + 1 with
    coalitions.allow_small_design: a warning."""
    from surrogateshap.workflow.config import load_yaml, validate_config
    from surrogateshap.workflow.preflight import Findings, design_findings

    from .conftest import SCHEMA

    config = validate_config(load_yaml(ROOT / "config/config.yaml"), SCHEMA)
    config["coalitions"]["count"] = 30
    found = Findings()
    design_findings(config, 20, found)
    assert not found.problems and "below 2n = 40" in found.warnings[0]
    config["coalitions"]["count"] = 12
    found = Findings()
    design_findings(config, 20, found)
    assert "coalitions.allow_small_design" in found.problems[0]
    config["coalitions"]["allow_small_design"] = True
    found = Findings()
    design_findings(config, 20, found)
    assert not found.problems and "run anyway" in found.warnings[0]
    # every coalition of a small game is no thin design, whatever count asks for
    config["coalitions"] = config["coalitions"] | {"count": 8, "allow_small_design": None}
    found = Findings()
    design_findings(config, 3, found)
    assert not found.problems and not found.warnings


def test_a_user_function_is_tried_on_the_configured_shape(tmp_path):
    from surrogateshap.proxy.usercode import check_callable

    (tmp_path / "colour.py").write_text(
        "def score(images, prompts):\n    return images[..., 2].mean(axis=(1, 2))\n"
    )
    spec = f"{tmp_path / 'colour.py'}:score"
    assert check_callable("features.custom_metrics.c.function", spec, (8, 8, 3)) == []
    # a colour-only function on grey images fails, named with its line
    [problem] = check_callable("features.custom_metrics.c.function", spec, (8, 8))
    assert "AxisError" in problem and "colour.py, line 2" in problem and "(8, 8)" in problem
