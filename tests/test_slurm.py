"""The workflow on a real SLURM cluster: one node on this machine (tests/slurm/cluster_up.sh: slurmctld,
slurmd, munge, slurmdbd + MariaDB for sacct, cgroups enforcing memory, two fake GPUs as GRES),
driven by Snakemake's SLURM executor through profiles/slurm, and by `surrogateshap launch`.

Test-only settings on top of the profile: the plugin polls SLURM every few seconds instead of
after 40 s (`--slurm-init-seconds-before-status-checks`), and keeps the SLURM logs of
successful jobs, which the tests read. Every cluster call has a timeout.
"""

from __future__ import annotations

import fcntl
import os
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

from .conftest import ROOT, SMALL, SNAKEMAKE, copy_workflow, snakemake

pytestmark = [pytest.mark.slurm, pytest.mark.slow]

CLUSTER_DIR = Path(os.environ.get("SLURM_TEST_DIR", "/tmp/surrogateshap-slurm"))
CONFIGS = ("--configfile", SMALL, "tests/configs/slurm.yaml")
RUN = "slurm"
METRICS = ("frechet_distance", "marker_rate")
SHARDS = [f"{i}-of-4" for i in range(1, 5)]
TEST_SETTINGS = ("--slurm-init-seconds-before-status-checks", "2", "--slurm-keep-successful-logs")
SURROGATESHAP = str(Path(sys.executable).with_name("surrogateshap"))
# Memory of one job in the retry test: the profile's form of expression (base * attempt) with the
# base lowered so that the first attempt cannot hold the job's two Snakemake processes and its step
# and its cgroup kills it; each retry gets `attempt` times as much. Since the steps were split into
# one module per rule the draw no longer imports torch, and 300 MB held it (seen in this test);
# 100 MB does not, and the profile's two retries reach 300 MB. The coalition draw runs while the
# model trains, so its retries cost the test no time.
OOM_RULE, LOW_MEMORY_MB = "draw_coalitions", 100


@dataclass
class Cluster:
    conf: Path
    started_here: bool


@pytest.fixture(scope="session")
def slurm_cluster():
    """A running test cluster; SLURM_CONF points at it for this session."""
    if os.geteuid() != 0:
        pytest.skip("the SLURM test cluster needs root (daemons, device nodes, apt-get)")
    needed = ("slurmctld", "slurmd", "munged", "slurmdbd", "mariadbd")
    if not shutil.which("apt-get") and not all(
        shutil.which(n) or Path(f"/usr/sbin/{n}").exists() for n in needed
    ):
        pytest.skip("SLURM is not installed and there is no apt-get to install it")
    if Path("/etc/slurm/slurm.conf").exists():
        pytest.skip(
            "this machine has its own SLURM (/etc/slurm/slurm.conf); the test cluster does not start over it"
        )
    # One test session at a time on this machine: another one's cluster_up/down would pull the
    # cluster from under this one's jobs.
    lock = open(f"{CLUSTER_DIR}.lock", "w")
    wait_for(
        lambda: _try_lock(lock),
        1800,
        "another test session to release the SLURM test cluster",
        interval=2,
    )
    env = dict(os.environ, SLURM_TEST_DIR=str(CLUSTER_DIR), ACCOUNTING="1")
    started = time.monotonic()
    result = subprocess.run(
        ["bash", str(ROOT / "tests/slurm/cluster_up.sh")],
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    seconds = time.monotonic() - started
    if result.returncode != 0:
        subprocess.run(["bash", str(ROOT / "tests/slurm/cluster_down.sh")], env=env, timeout=180)
        pytest.fail(
            f"tests/slurm/cluster_up.sh failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
        )
    print(f"\nSLURM test cluster up in {seconds:.1f} s:\n{result.stdout}")
    cluster = Cluster(CLUSTER_DIR / "etc/slurm.conf", "already up" not in result.stdout)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("SLURM_CONF", str(cluster.conf))
        yield cluster
    if cluster.started_here:
        subprocess.run(["bash", str(ROOT / "tests/slurm/cluster_down.sh")], env=env, timeout=180)
    lock.close()


def _try_lock(lock) -> bool:
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except BlockingIOError:
        return False


# --------------------------------------------------------------------------- cluster helpers
def slurm(*command: str, timeout: float = 30) -> str:
    result = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
    if result.returncode != 0:
        raise AssertionError(f"{' '.join(command)} failed: {result.stderr}")
    return result.stdout


def queue() -> list[dict]:
    """Jobs SLURM still lists (finished ones for MinJobAge): id, name, comment (rule and wildcards), state."""
    out = slurm("squeue", "--states=all", "--noheader", "--format=%i|%j|%k|%T")
    return [
        dict(zip(("id", "name", "comment", "state"), line.split("|"))) for line in out.splitlines()
    ]


def accounting(run_id: str) -> list[dict]:
    """Every job of a Snakemake run (its SLURM job name), from slurmdbd, oldest first."""
    out = slurm(
        "sacct",
        "-X",
        "--parsable2",
        "--noheader",
        f"--name={run_id}",
        "--starttime=now-1days",
        "--format=JobIDRaw,Comment,State,ReqMem,AllocTRES,ExitCode",
    )
    keys = ("id", "comment", "state", "req_mem", "tres", "exit")
    return [dict(zip(keys, line.split("|"))) for line in out.splitlines()]


def wait_for(predicate, timeout: float, what: str, interval: float = 0.5):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


def run_ids(log: str) -> list[str]:
    """The SLURM run IDs (the job name of all of a controller's jobs) in a controller's output."""
    return re.findall(r"SLURM run ID: (\S+)", log)


POOL_JOB = re.compile(
    r"rule_pool_shards?_(\d+)(?:-(\d+))?-of-(\d+)_extract_features_generate_pool$"
)


def shards_of(comment: str) -> list[str]:
    """The generation shards a pool job (a Snakemake job group) is named for: `rule_pool_shards_1-2-of-4_...`."""
    first, last, total = POOL_JOB.match(comment).groups()
    return [f"{i}-of-{total}" for i in range(int(first), int(last or first) + 1)]


def group_log_shards(text: str, rule: str) -> list[str]:
    """The shards of `rule` that a group job ran, from its SLURM log (the inner Snakemake's
    listing, which names each of its jobs more than once)."""
    return sorted(set(re.findall(rf"rule {rule}:.*?wildcards: scatteritem=(\S+)", text, re.S)))


def mem_mb(req_mem: str) -> float:
    number, unit = float(req_mem[:-1]), req_mem[-1]
    return number * {"M": 1, "G": 1024, "T": 1024**2}[unit]


# --------------------------------------------------------------------------- workflow helpers
def profile_with(workdir: Path, name: str, changes: dict) -> str:
    """profiles/slurm with some rules' resources replaced, as profiles/<name> in the copy."""
    settings = yaml.safe_load((workdir / "profiles/slurm/config.yaml").read_text())
    for rule, resources in changes.items():
        settings["set-resources"].setdefault(rule, {}).update(resources)
    target = workdir / "profiles" / name
    target.mkdir(parents=True, exist_ok=True)
    (target / "config.yaml").write_text(yaml.safe_dump(settings, sort_keys=False))
    return f"profiles/{name}"


def result_tables(workdir: Path) -> dict[str, pa.Table]:
    names = ["utilities.parquet"] + [f"attributions/{m}.parquet" for m in METRICS]
    return {name: pq.read_table(workdir / "results" / RUN / name) for name in names}


def assert_same_results(a: Path, b: Path) -> None:
    """Number for number: the utility table and every attribution, values and columns."""
    tables_a, tables_b = result_tables(a), result_tables(b)
    for name, table in tables_a.items():
        other = tables_b[name]
        assert table.column_names == other.column_names, name
        for column in table.column_names:
            assert table[column].to_pylist() == other[column].to_pylist(), (
                f"{name}: column {column} differs"
            )


def pool_dir(workdir: Path) -> Path:
    return next((workdir / "results/cache/pool").glob("pool-*")) / "shards"


# --------------------------------------------------------------------------- runs shared by the tests
@pytest.fixture(scope="module")
def runs(slurm_cluster, tmp_path_factory):
    """The whole workflow through profiles/slurm (one job's first attempt short of memory),
    and the same config with Snakemake's local executor, run meanwhile (the SLURM run mostly waits)."""
    local = copy_workflow(tmp_path_factory.mktemp("slurm-local"))
    local_run = subprocess.Popen(
        [SNAKEMAKE, "--cores", "2", *CONFIGS],
        cwd=local,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        workdir = copy_workflow(tmp_path_factory.mktemp("slurm-run"))
        profile = profile_with(
            workdir, "slurm-low-memory", {OOM_RULE: {"mem_mb": f"{LOW_MEMORY_MB} * attempt"}}
        )
        started = time.monotonic()
        result = snakemake(workdir, "--profile", profile, *CONFIGS, *TEST_SETTINGS, timeout=900)
        print(f"\nworkflow through SLURM: {time.monotonic() - started:.0f} s")
        log = result.stdout + result.stderr
        (workdir / "controller.log").write_text(log)
        local_log, _ = local_run.communicate(timeout=900)
    finally:
        local_run.kill()
    assert local_run.returncode == 0, local_log[-6000:]
    return workdir, log, local


@pytest.fixture(scope="module")
def slurm_run(runs):
    workdir, log, _ = runs
    return workdir, log


@pytest.fixture(scope="module")
def local_run(runs):
    return runs[2]


# --------------------------------------------------------------------------- tests
def test_cluster_has_two_gpus(slurm_cluster):
    assert slurm("sinfo", "--noheader", "--format=%G").split() == ["gpu:fake:2"]


def test_slurm_run_equals_local_run(slurm_run, local_run):
    workdir, log = slurm_run
    assert "steps (100%) done" in log
    assert_same_results(workdir, local_run)
    # the images themselves, shard by shard
    for shard in SHARDS:
        a = pq.read_table(pool_dir(workdir) / f"{shard}.parquet")
        b = pq.read_table(pool_dir(local_run) / f"{shard}.parquet")
        assert a["png"].to_pylist() == b["png"].to_pylist(), shard


def test_jobs_went_through_slurm_and_generation_and_training_got_gpus(slurm_run):
    workdir, log = slurm_run
    (run_id,) = run_ids(log)
    jobs = accounting(run_id)
    rules = {j["comment"].split("_wildcards_")[0].removeprefix("rule_") for j in jobs}
    # the pool stage in job groups (profiles/slurm: group-components pool=2): each job holds two
    # consecutive shards' generation and features, and says which in its name
    pool_jobs = [j for j in jobs if POOL_JOB.match(j["comment"]) and j["state"] == "COMPLETED"]
    assert sorted(tuple(shards_of(j["comment"])) for j in pool_jobs) == [
        tuple(SHARDS[:2]),
        tuple(SHARDS[2:]),
    ], [j["comment"] for j in jobs]
    assert not rules & {"generate_pool", "extract_features"}, "pool steps submitted on their own"
    for job in pool_jobs:  # its SLURM log: both steps of exactly its shards, in one Snakemake
        text = (
            workdir / f".snakemake/slurm_logs/group_{job['comment'][5:]}/{job['id']}.log"
        ).read_text()
        for rule in ("generate_pool", "extract_features"):
            assert group_log_shards(text, rule) == shards_of(job["comment"]), text
    assert {
        "prepare_data",
        "train_model",
        "pooled_utilities",
        "attribute",
        "html_report",
    } <= rules, rules
    assert not rules & {"publish_utilities", "publish_attribution", "publish_contributors"}, (
        "local rules were submitted"
    )
    gpu_rules = ("rule_pool_", "rule_train_model")
    for job in jobs:  # a GPU for every generation and training job, none for the others
        if job["state"] == "COMPLETED":
            on_gpu = "gres/gpu=1" in job["tres"].split(",")
            assert on_gpu == job["comment"].startswith(gpu_rules), job
    # each generation job's own log names the GPU that SLURM gave it
    key = pool_dir(workdir).parent.name
    for shard in SHARDS:
        text = (workdir / f"logs/generate_pool/{key}/{shard}.log").read_text()
        assert re.search(r"CUDA_VISIBLE_DEVICES=[01]\b", text), text


def test_out_of_memory_job_is_retried_with_more_memory(slurm_run):
    workdir, log = slurm_run
    (run_id,) = run_ids(log)
    *failed, last = [j for j in accounting(run_id) if j["comment"] == f"rule_{OOM_RULE}"]
    assert last["state"] == "COMPLETED"
    assert failed, f"the first attempt ({LOW_MEMORY_MB} MB) did not fail"
    # Snakemake's retry policy asked for more memory each time: the profile's `base * attempt`
    assert [mem_mb(j["req_mem"]) for j in (*failed, last)] == [
        LOW_MEMORY_MB * (i + 1) for i in range(len(failed) + 1)
    ]
    for job in failed:
        # the controller's output reports the failure and points to the job's SLURM log, which says why
        slurm_log = workdir / f".snakemake/slurm_logs/rule_{OOM_RULE}/{job['id']}.log"
        assert f"SLURM-job '{job['id']}' failed" in log and str(slurm_log) in log
        text = slurm_log.read_text()
        # SLURM's record: the job step was killed by its cgroup's OOM killer (cluster_up.sh's
        # default), or by SLURM's memory poll where cgroup v1 is missing (NO_CGROUP=1)
        steps = slurm(
            "sacct", "--noheader", "--parsable2", f"--jobs={job['id']}", "--format=JobID,State"
        )
        # (at 100 MB the kill can come in the job step or already in the batch step itself)
        cgroup_oom = (
            any(f"{job['id']}.{step}|OUT_OF_MEMORY" in steps for step in ("0", "batch"))
            and "oom-kill event" in text
        )
        assert cgroup_oom or "exceeded memory limit" in text, (steps, text[-2000:])
    assert "Trying to restart job" in log


def launch(workdir: Path, *args: str) -> tuple[str, Path]:
    """`surrogateshap launch` in `workdir`: the controller's job id and log, as it prints them."""
    result = subprocess.run(
        [SURROGATESHAP, "launch", *args], cwd=workdir, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stdout + result.stderr
    job_id = re.search(r"as SLURM job (\d+)", result.stdout).group(1)
    log = Path(re.search(r"^log: (.+)$", result.stdout, re.M).group(1))
    return job_id, log


def job_state(job_id: str) -> str:
    out = slurm("sacct", "-X", "--noheader", "--parsable2", f"--jobs={job_id}", "--format=State")
    return out.split()[0] if out.split() else "UNKNOWN"


def _read(path: Path) -> str:
    return path.read_text() if path.exists() else ""


def planned_shards(workdir: Path, *args: str) -> set[str]:
    """The generation shards a dry run would (re)do."""
    out = snakemake(workdir, "-n", *args).stdout
    blocks = re.findall(r"rule generate_pool:.*?wildcards: scatteritem=(\S+)", out, re.S)
    return set(blocks)


def test_kill_and_resume(slurm_run, tmp_path):
    """Kill the controller (a launched SLURM job) and the running generation jobs mid-stage; the same
    launch command again finishes the workflow, redoes only the unfinished shards (the job listing
    says so) and gives the uninterrupted run's results."""
    source, _ = slurm_run
    workdir = tmp_path / "wf"
    shutil.copytree(source, workdir, symlinks=True)
    # keep the data, classifier, model and coalitions; everything from the pools on is redone
    for stage in ("pool", "features", "utilities", "attribution"):
        shutil.rmtree(workdir / "results/cache" / stage)
    shutil.rmtree(workdir / "results" / RUN)
    shutil.rmtree(workdir / ".snakemake/slurm_logs")
    shards_dir = workdir / pool_dir(source).relative_to(source)
    step_logs = workdir / "logs/generate_pool" / shards_dir.parent.name
    shutil.rmtree(step_logs)
    command = ("--profile", "profiles/slurm", *CONFIGS, *TEST_SETTINGS)

    controller, log = launch(workdir, *command)
    assert log.parent == workdir / "logs/launch", log
    first = wait_for(
        lambda: log.exists() and run_ids(log.read_text()), 300, "the controller to start"
    )[0]

    def mid_generation() -> str | None:
        """A shard mid-generation (its step has started, its output is not written, the pool job
        holding it runs) while another shard is finished."""
        if not any(shards_dir.glob("*.parquet")):
            return None
        for job in queue():
            if (
                job["name"] != first
                or job["state"] != "RUNNING"
                or not POOL_JOB.match(job["comment"])
            ):
                continue
            for shard in shards_of(job["comment"]):
                text = _read(step_logs / f"{shard}.log")
                # started and not a single group sampled yet: the kill lands well before its end
                # (its group's other shard may have taken the job's first seconds)
                if (
                    "generation device" in text
                    and " done (" not in text
                    and not (shards_dir / f"{shard}.parquet").exists()
                ):
                    return shard
        return None

    generating = wait_for(
        mid_generation, 600, "a generation shard mid-run while another has finished", interval=0.2
    )
    # A hard kill: the controller gets no chance to cancel its jobs or release its lock ...
    slurm("scancel", "--signal=KILL", "--full", controller)
    # ... and what it left queued or running is cancelled, the shard above mid-generation.
    slurm("scancel", f"--name={first}")
    wait_for(
        lambda: (
            not any(
                j["name"] == first and j["state"] in ("RUNNING", "PENDING", "COMPLETING")
                for j in queue()
            )
        ),
        120,
        "the killed run's jobs to end",
    )
    wait_for(
        lambda: job_state(controller) not in ("RUNNING", "PENDING"), 60, "the controller job to end"
    )
    # Outputs are written beside their target and renamed into place when whole: the shard killed
    # mid-generation left nothing at its path, and whatever else is there is a whole shard (the
    # uninterrupted run's, exactly); besides them, only temporaries.
    assert not (shards_dir / f"{generating}.parquet").exists()
    for path in shards_dir.iterdir():
        if path.name.startswith("."):
            assert path.name.endswith(".partial"), path
            continue
        assert pq.read_table(path).equals(pq.read_table(pool_dir(source) / path.name)), (
            f"{path.name} is unfinished"
        )
    kept = {p.stem: (p.stat().st_ino, p.stat().st_mtime_ns) for p in shards_dir.glob("*.parquet")}

    snakemake(workdir, "--unlock", *CONFIGS)  # the killed controller's lock
    redo = planned_shards(workdir, "--profile", "profiles/slurm", *CONFIGS)
    assert generating in redo and redo != set(SHARDS), (generating, redo)

    controller, log = launch(workdir, *command)
    wait_for(
        lambda: job_state(controller) not in ("PENDING", "RUNNING", "COMPLETING", "UNKNOWN"),
        900,
        "the relaunched controller",
    )
    text = log.read_text()
    assert job_state(controller) == "COMPLETED", text[-4000:]
    second = run_ids(text)[-1]
    pool_jobs = [j for j in accounting(second) if POOL_JOB.match(j["comment"])]
    # each pool job's name says the shards it was formed for, and its log which of them it
    # generated: only the unfinished shards, once each
    rerun = []
    for job in pool_jobs:
        log_file = workdir / f".snakemake/slurm_logs/group_{job['comment'][5:]}/{job['id']}.log"
        ran = group_log_shards(log_file.read_text(), "generate_pool")
        assert set(ran) <= set(shards_of(job["comment"])), (job, ran)
        rerun += ran
    assert sorted(rerun) == sorted(redo), (rerun, redo)
    assert len(pool_jobs) == len({shards_of(j["comment"])[0] for j in pool_jobs}), pool_jobs
    for shard, stamp in kept.items():
        if shard not in redo:
            path = shards_dir / f"{shard}.parquet"
            assert (path.stat().st_ino, path.stat().st_mtime_ns) == stamp, f"{shard} was rewritten"
    assert_same_results(workdir, source)
