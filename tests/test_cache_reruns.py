"""What reruns, from Snakemake's own dry runs, after a simulated run (issue 16's reproductions).

Each test "runs" a config by letting Snakemake's touch executor record every job as done (empty
outputs, real metadata: params, inputs, code), changes one thing a user would change, and asks
Snakemake what it would run now. Whatever reruns must rerun into new paths: a cache entry is
never rewritten with another result.
"""

from __future__ import annotations

import copy
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from surrogateshap.workflow.config import workflow_fingerprints

from .conftest import ROOT, SCHEMA, copy_workflow
from .test_cache_keys import Fixtures, base_configs, build_dags

TARGETS = ["all"]


def run(config: dict) -> dict:
    return {"config": config, "targets": TARGETS, "touch": True}


def plan(config: dict) -> dict:
    return {"config": config, "targets": TARGETS}


def planned(dag: dict) -> dict[str, list[str]]:
    assert "error" not in dag, dag.get("error")
    jobs: dict[str, list[str]] = {}
    for job in dag["jobs"]:
        if job["needrun"]:
            jobs.setdefault(job["rule"], []).extend(job["output"])
    return jobs


def downstream(dag: dict, rules) -> set[str]:
    """The rules of the jobs that read (directly or not) the outputs of jobs of `rules`."""
    produced = {out: job for job in dag["jobs"] for out in job["output"]}
    memo: dict[int, bool] = {}

    def depends(job) -> bool:
        key = id(job)
        if key not in memo:
            memo[key] = job["rule"] in rules or any(
                depends(produced[i]) for i in job["input"] if i in produced
            )
        return memo[key]

    return {job["rule"] for job in dag["jobs"] if depends(job)}


def assert_new_paths(workdir: Path, jobs: dict[str, list[str]], run_name: str) -> None:
    """Nothing reruns into an existing cache path (the run's own folder is rewritten, of course)."""
    rewritten = [
        out
        for outs in jobs.values()
        for out in outs
        if out.startswith("results/cache/") and (workdir / out).exists()
    ]
    assert not rewritten, f"cache entries rerun in place: {rewritten}"


@pytest.fixture
def setup(tmp_path):
    workdir = copy_workflow(tmp_path / "work")
    fx = Fixtures(tmp_path / "inputs")
    return workdir, fx, base_configs(fx)


def test_another_config_does_not_invalidate_the_demo(setup):
    """Issue 16, 1: a folder dataset with a spurious detector after the demo config, then the demo
    again: nothing to be done (the reference used to be rewritten with the other's params)."""
    workdir, fx, bases = setup
    demo, other = bases["small"], bases["folder"]
    first, second, again, other_again = build_dags(
        workdir, [run(demo), run(other), plan(demo), plan(other)]
    )
    assert planned(first), "the simulated demo run did nothing"
    assert planned(second), "the simulated second run did nothing"
    assert planned(again) == {}, f"the demo reruns after the other config: {planned(again)}"
    assert planned(other_again) == {}


@pytest.mark.parametrize("change", ["metadata", "images"])
def test_edited_data_reruns_exactly_what_depends_on_it(setup, change):
    """Issue 16, 2: a fixed label in metadata.csv, or new bytes in one contributor's images,
    reruns data preparation and everything downstream of it, into new paths; nothing else. And
    touching nothing reruns nothing."""
    workdir, fx, bases = setup
    config = bases["folder"]
    (unchanged,) = build_dags(workdir, [run(config), plan(config)])[1:]
    assert planned(unchanged) == {}, "touching nothing reruns nothing"
    if change == "metadata":
        table = fx.dataset / "metadata.csv"
        lines = table.read_text().splitlines()
        lines[1] = lines[1].rsplit(",", 1)[0] + ",7"  # one item's label
        table.write_text("\n".join(lines) + "\n")
    else:
        rng = np.random.default_rng(9)
        for image in sorted((fx.dataset / "img").glob("bob_*.png")):
            Image.fromarray(rng.integers(0, 255, (8, 8), dtype=np.uint8)).save(image)
    (changed,) = build_dags(workdir, [plan(config)])
    jobs = planned(changed)
    expected = downstream(changed, {"prepare_data"})
    assert set(jobs) == expected, (set(jobs) ^ expected, jobs)
    # the digits classifier never reads the data; the extractor trained on it and its reference do
    assert "train_classifier" not in jobs
    assert {"train_extractor", "reference_features"} <= set(jobs), jobs
    assert_new_paths(workdir, jobs, config["run"])


@pytest.mark.parametrize("base, weights", [("checkpoint", "folder"), ("lora", "lora")])
def test_replaced_weights_rerun_what_uses_them(setup, base, weights):
    """Issue 16, 3: a model retrained into the same folder (or a LoRA into the same file) reruns
    the pools and all that follows, into new paths; not the data or the classifier."""
    workdir, fx, bases = setup
    config = bases[base]
    (unchanged,) = build_dags(workdir, [run(config), plan(config)])[1:]
    assert planned(unchanged) == {}
    file = fx.folder / "unet" / "model.safetensors" if weights == "folder" else fx.lora
    file.write_bytes(b"retrained weights")
    (changed,) = build_dags(workdir, [plan(config)])
    jobs = planned(changed)
    assert "generate_pool" in jobs, jobs
    assert set(jobs) == downstream(changed, {"generate_pool", "proxy_check_shard"})
    assert not {"prepare_data", "train_classifier", "draw_coalitions"} & set(jobs)
    assert_new_paths(workdir, jobs, config["run"])


def test_edited_user_code_reruns_what_runs_it(setup):
    """Issue 16, 4 (user code): editing the spurious detector's file in place reruns the features
    and what follows, not the data, model or pools."""
    workdir, fx, bases = setup
    config = bases["folder"]
    build_dags(workdir, [run(config)])
    fx.code.write_text(fx.code.read_text() + "\n# a fix\n")
    jobs = planned(build_dags(workdir, [plan(config)])[0])
    assert "extract_features" in jobs, jobs
    assert not {"prepare_data", "train_model", "generate_pool"} & set(jobs), jobs
    assert_new_paths(workdir, jobs, config["run"])


def test_edited_workflow_code_reruns_what_runs_it(setup, tmp_path):
    """Issue 16, 4 (our code): an edited rule script, or package module, gets new keys for the
    stages that run it; an edited attribution script reruns the attribution, not the game."""
    workdir, fx, bases = setup
    config = bases["small"]
    build_dags(workdir, [run(config)])
    script = workdir / "workflow/scripts/attribute.py"
    script.write_text(script.read_text() + "\n# a fix\n")
    jobs = planned(build_dags(workdir, [plan(config)])[0])
    assert "attribute" in jobs, jobs
    assert not {"prepare_data", "train_model", "generate_pool", "pooled_utilities"} & set(jobs)
    assert_new_paths(workdir, jobs, config["run"])
    # the package: a copy of it, edited, on PYTHONPATH
    src = tmp_path / "src"
    shutil.copytree(ROOT / "src/surrogateshap", src / "surrogateshap")
    module = src / "surrogateshap/estimation/surrogate.py"
    module.write_text(module.read_text() + "\n# a fix\n")
    jobs = planned(build_dags(workdir, [plan(config)], src=src)[0])
    assert "attribute" in jobs, jobs
    # the data, model and pool stages do not import the surrogate module
    assert not {"prepare_data", "train_model", "generate_pool"} & set(jobs), jobs
    assert_new_paths(workdir, jobs, config["run"])


def test_pinned_code_fingerprints_keep_old_keys(tmp_path):
    """cache.code_fingerprints: an earlier run's fingerprints.json keeps its code hashes."""
    import json

    from surrogateshap.workflow.config import load_yaml, stage_keys, validate_config

    scripts = tmp_path / "scripts"
    shutil.copytree(ROOT / "workflow/scripts", scripts)
    config = validate_config(load_yaml(ROOT / "config/config.yaml"), SCHEMA)
    before = workflow_fingerprints(config, SCHEMA, scripts)
    record = tmp_path / "fingerprints.json"
    record.write_text(json.dumps(before))
    (scripts / "attribute.py").write_text((scripts / "attribute.py").read_text() + "# fix\n")
    after = workflow_fingerprints(config, SCHEMA, scripts)
    assert after["code"]["attribution"] != before["code"]["attribution"]
    assert after["code"]["data"] == before["code"]["data"]
    pinned_config = copy.deepcopy(config)
    pinned_config["cache"]["code_fingerprints"] = str(record)
    pinned = workflow_fingerprints(pinned_config, SCHEMA, scripts)
    assert pinned["code"] == before["code"]
    assert stage_keys(pinned_config, pinned) == stage_keys(config, before)
