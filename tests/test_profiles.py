"""The Snakemake profiles (profiles/slurm, profiles/local) name real rules, ask for GPUs the way
the SLURM plugin expects, and give memory that grows with each retry."""

import re

import pytest
import yaml

from .conftest import ROOT, SMALL, copy_workflow, planned_groups, snakemake

PROFILES = {
    name: yaml.safe_load((ROOT / f"profiles/{name}/config.yaml").read_text())
    for name in ("slurm", "local")
}


def workflow_rules() -> set[str]:
    text = (
        "".join(p.read_text() for p in (ROOT / "workflow/rules").glob("*.smk"))
        + (ROOT / "Snakefile").read_text()
    )
    return set(re.findall(r"^\s*rule (\w+):", text, re.M))


def evaluate(expression, attempt: int):
    """A resource value as Snakemake evaluates it: a number, or a Python expression of `attempt`."""
    return (
        expression
        if isinstance(expression, (int, float))
        else eval(str(expression), {"attempt": attempt})
    )


@pytest.mark.parametrize("name", sorted(PROFILES))
def test_set_resources_name_existing_rules(name):
    unknown = set(PROFILES[name].get("set-resources") or {}) - workflow_rules()
    assert not unknown, (
        f"profiles/{name} sets resources of rules the workflow does not have: {sorted(unknown)}"
    )


@pytest.mark.parametrize("name", sorted(PROFILES))
def test_memory_grows_with_each_attempt(name):
    profile = PROFILES[name]
    assert profile.get("retries", 0) >= 1
    entries = {
        "default-resources": profile["default-resources"],
        **(profile.get("set-resources") or {}),
    }
    for rule, resources in entries.items():
        if "mem_mb" in resources:
            memory = [evaluate(resources["mem_mb"], attempt) for attempt in (1, 2, 3)]
            assert memory[0] >= 1000 and memory[0] < memory[1] < memory[2], (rule, memory)


def test_slurm_profile_asks_for_gpus_the_plugin_way():
    profile = PROFILES["slurm"]
    assert profile["executor"] == "slurm"
    resources = profile["set-resources"]
    gpu_rules = {rule for rule, r in resources.items() if r.get("gpu")}
    assert {
        "train_model",
        "train_extractor",
        "generate_pool",
        "per_coalition_utilities",
        "proxy_check_shard",
    } <= gpu_rules
    assert {
        "train_classifier",
        "extract_features",
        "pooled_utilities",
        "attribute",
        "html_report",
    }.isdisjoint(gpu_rules)
    for rule, r in {"default": profile["default-resources"], **resources}.items():
        assert r.get("gpu", 1) == 1 and "gres" not in r, rule
        assert not re.search(r"--(gres|gpus)", str(r.get("slurm_extra", ""))), (
            f"{rule}: the plugin refuses GPUs in slurm_extra"
        )
        assert all(isinstance(evaluate(r[k], 1), int) for k in ("runtime", "mem_mb") if k in r), (
            rule
        )
    # left to the user, and said so
    text = (ROOT / "profiles/slurm/config.yaml").read_text()
    assert "slurm_partition" not in profile["default-resources"] and "# slurm_partition:" in text
    assert "slurm_account" not in profile["default-resources"] and "# slurm_account:" in text
    assert "# gpu_model:" in text


def dry_run_resources(workdir, *args) -> dict[str, list[dict[str, str]]]:
    """rule -> the resources of each of its jobs, as `snakemake -n` prints them."""
    out = snakemake(workdir, "-n", *args)
    jobs, rule = {}, None
    for line in (out.stdout + out.stderr).splitlines():
        match = re.match(r"\s*(?:local)?rule (\w+):$", line)  # indented: in a job group
        if match:
            rule = match.group(1)
        elif line.strip().startswith("resources:") and rule:
            pairs = (item.split("=", 1) for item in line.split(":", 1)[1].split(", "))
            jobs.setdefault(rule, []).append({k.strip(): v.strip() for k, v in pairs})
            rule = None
    return jobs


def test_rules_have_resource_defaults_that_profiles_override(tmp_path):
    """Every job has mem_mb and runtime of its rule's own (no profile needed), the GPU rules ask
    for a GPU and no other does; a profile's set-resources (here on the command line) wins."""
    workdir = copy_workflow(tmp_path)
    jobs = dry_run_resources(workdir, "evaluate", "all", "--configfile", SMALL)
    gpu_rules = {rule for rule, r in PROFILES["slurm"]["set-resources"].items() if r.get("gpu")}
    # copies in the Snakemake process itself, and the targets (no job of their own)
    local = {
        "publish_utilities",
        "publish_contributors",
        "publish_attribution",
        "record_fingerprints",
        "all",
        "evaluate",
    }
    assert {"generate_pool", "attribute", "html_report", "retrain_heldout"} <= set(jobs)
    for rule, resources in jobs.items():
        for job in resources:
            if rule not in local:
                assert "mem_mb" in job and "runtime" in job, (rule, job)
                assert int(job["mem_mb"]) >= 1000 and int(job["runtime"]) >= 10, (rule, job)
            assert job.get("gpu", "0") == ("1" if rule in gpu_rules else "0"), (rule, job)
    changed = dry_run_resources(
        workdir,
        "--configfile",
        SMALL,
        "--set-resources",
        "attribute:mem_mb=1234",
        "attribute:gpu=1",
    )
    assert all(j["mem_mb"] == "1234" and j["gpu"] == "1" for j in changed["attribute"])
    assert all(j["mem_mb"] == jobs["html_report"][0]["mem_mb"] for j in changed["html_report"])


def test_slurm_profile_submits_the_pool_stage_in_job_groups(tmp_path):
    """profiles/slurm groups each generation shard with its features, K consecutive shards per
    submitted job (group-components pool=K), each job named for its shards; one GPU per job,
    not a limit on the whole run."""
    profile = PROFILES["slurm"]
    assert profile["group-components"]["pool"] == 2
    assert profile["resources"]["gpu"] == 1 and profile["set-resource-scopes"]["gpu"] == "local"
    workdir = copy_workflow(tmp_path)
    configs = ("--configfile", SMALL, "tests/configs/slurm.yaml")  # 4 shards
    steps = ("extract_features", "generate_pool")
    expected = {
        None: {
            "pool_shards_1-2-of-4": ["1-of-4", "2-of-4"],
            "pool_shards_3-4-of-4": ["3-of-4", "4-of-4"],
        },
        "1": {f"pool_shard_{i}-of-4": [f"{i}-of-4"] for i in range(1, 5)},
        "3": {
            "pool_shards_1-3-of-4": ["1-of-4", "2-of-4", "3-of-4"],
            "pool_shard_4-of-4": ["4-of-4"],
        },
        "4": {"pool_shards_1-4-of-4": [f"{i}-of-4" for i in range(1, 5)]},
    }
    for per_job, groups in expected.items():
        extra = () if per_job is None else ("--group-components", f"pool={per_job}")
        planned = planned_groups(workdir, "--profile", "profiles/slurm", *configs, *extra)
        assert planned == {g: dict.fromkeys(steps, shards) for g, shards in groups.items()}, (
            per_job,
            planned,
        )
