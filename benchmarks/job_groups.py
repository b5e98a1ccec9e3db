"""The pool stage's submitted jobs and their start-up share on a cluster, side by side: one job
per rule and shard (every rule job submitted on its own) against profiles/slurm's job groups
(a shard's generation and features in one job, K consecutive shards per job).

    .venv/bin/python benchmarks/job_groups.py [--per-job 1 2 4] [--quick] [-- CONFIG ARGS]

Run on one machine, no cluster needed. Each layout's jobs are those that
`snakemake -n --profile profiles/slurm --group-components pool=K` lists ("Group job ..."); each
job is then run the way a submitted job runs it: a fresh Snakemake process on the job's outputs
(`--cores 1`, the GPU rule on this machine's device), the jobs one after another, every layout
from the same upstream stages (data, model, classifier; made once beforehand, not timed). Per
layout: jobs, rule scripts run (each a fresh Python), wall time summed over the jobs, the steps'
own work (from a step's first log line, written once its imports are done, to its output
written; the model's loading included), and the start-up, the rest: Snakemake's own time in each
job (job wall time minus its scripts' time, from their `benchmark:` files) plus each script's
start (its Python and imports: script time minus work), with its share of the wall time. On a
cluster each job also pays its queue wait and submission, not counted here.

Without config arguments: the embedded default's pool stage (config/config.yaml: its shards,
samples per contributor, DDIM steps, batch size) with the model and classifier trained a few
steps (sampling time does not depend on how well they are trained). --quick: the SLURM tests'
config (tests/configs/small.yaml + slurm.yaml) with 2 shards of tiny pools, for a smoke test.
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import _common
import pandas as pd
import yaml

sys.path.insert(0, str(_common.ROOT))
from tests.conftest import SNAKEMAKE, copy_workflow, snakemake  # noqa: E402  (the tests' own copy and run helpers)

STEPS = ("generate_pool", "extract_features")
# the embedded default's pool stage, with upstream models barely trained (not timed)
FAST_UPSTREAM = {"model": {"train": {"steps": 20}}, "classifier": {"epochs": 1}}
# --quick, over the SLURM tests' config: 2 shards of tiny pools
QUICK = {
    "classifier": {"epochs": 1},
    "generation": {"shards": 2, "samples_per_contributor": 4, "steps": 2},
}


@dataclass
class RuleJob:
    rule: str
    shard: str = ""
    input: list[str] = field(default_factory=list)
    output: list[str] = field(default_factory=list)
    log: list[str] = field(default_factory=list)
    benchmark: list[str] = field(default_factory=list)


@dataclass
class Job:
    """One submitted job: its name and the rule jobs it runs."""

    name: str
    steps: list[RuleJob] = field(default_factory=list)


def planned_pool_jobs(workdir: Path, configs: list[str], per_job: int | None) -> list[Job]:
    """The pool stage's submitted jobs through profiles/slurm: its job groups with
    group-components pool=`per_job`, or (None) every rule job on its own."""
    extra = [] if per_job is None else ["--group-components", f"pool={per_job}"]
    out = snakemake(workdir, "-n", "--profile", "profiles/slurm", *configs, *extra).stdout
    groups, steps = [], []
    group = step = None
    for line in out.splitlines():
        if match := re.search(r"Group job (\S+) \(jobs in", line):
            group = Job(match.group(1))
            groups.append(group)
        elif line.strip() and not line.startswith("    "):
            group = None  # a group's jobs are listed indented
        if match := re.match(r"\s*rule (\w+):$", line):
            step = RuleJob(match.group(1)) if match.group(1) in STEPS else None
            if step is not None:
                steps.append(step)
                if group is not None:
                    group.steps.append(step)
        elif step is not None and (
            match := re.match(r"\s+(input|output|log|benchmark): (.+)$", line)
        ):
            setattr(step, match.group(1), match.group(2).split(", "))
        elif step is not None and (match := re.search(r"wildcards: scatteritem=(\S+)", line)):
            step.shard = match.group(1)
    if per_job is None:  # every rule job on its own, the generation before the features
        steps.sort(key=lambda s: (STEPS.index(s.rule), s.shard))
        return [Job(f"{s.rule} {s.shard}", [s]) for s in steps]
    return groups


def step_work(workdir: Path, step: RuleJob) -> float:
    """Seconds of a step's own work: from its first log line (written once its imports are
    done) to its output's last change (written whole, then renamed into place)."""
    first = (workdir / step.log[0]).read_text().splitlines()[0]
    started = datetime.strptime(first[:23], "%Y-%m-%d %H:%M:%S,%f").timestamp()
    return (workdir / step.output[0]).stat().st_mtime - started


def run_jobs(workdir: Path, configs: list[str], jobs: list[Job]) -> dict[str, float]:
    """Each job as a fresh Snakemake process on its outputs, after removing the stage's outputs:
    seconds summed over the jobs, wall, inside the scripts and inside the steps' own work."""
    for stage in ("pool", "features"):
        shutil.rmtree(workdir / "results/cache" / stage, ignore_errors=True)
    totals = dict.fromkeys(("wall", "scripts", "work"), 0.0)
    for job in jobs:
        targets = [path for s in job.steps for path in s.output]
        started = time.perf_counter()
        result = subprocess.run(
            [SNAKEMAKE, *targets, "--cores", "1", "--resources", "gpu=1", *configs],
            cwd=workdir,
            capture_output=True,
            text=True,
        )
        seconds = time.perf_counter() - started
        if result.returncode != 0:
            raise SystemExit(f"job {job.name} failed:\n{result.stderr[-4000:]}")
        files = [workdir / s.benchmark[0] for s in job.steps]
        if not all(f.exists() for f in files):
            raise SystemExit(f"job {job.name}: a step left no benchmark file")
        inside = sum(pd.read_csv(f, sep="\t")["s"].iloc[-1] for f in files)
        work = sum(step_work(workdir, s) for s in job.steps)
        _common.note(
            f"{job.name}: {seconds:.1f} s, {inside:.1f} s in its {len(files)} scripts, "
            f"{work:.1f} s of their steps' work"
        )
        for name, value in zip(totals, (seconds, inside, work)):
            totals[name] += value
        for f in files:
            f.unlink()
    return totals


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--per-job",
        type=int,
        nargs="+",
        default=[1, 2, 4],
        help="shards per job of the grouped layouts (group-components pool=K)",
    )
    parser.add_argument(
        "--quick", action="store_true", help="the SLURM tests' config, 2 shards of tiny pools"
    )
    parser.add_argument(
        "config_args", nargs=argparse.REMAINDER, help="after --: Snakemake's config arguments"
    )
    args = parser.parse_args()
    configs = args.config_args[1:] if args.config_args[:1] == ["--"] else args.config_args
    with tempfile.TemporaryDirectory() as tmp:
        workdir = copy_workflow(Path(tmp) / "workflow")
        if args.quick:
            (workdir / "quick.yaml").write_text(yaml.safe_dump(QUICK))
            configs = ["--configfile", "tests/configs/small.yaml", "tests/configs/slurm.yaml"]
            configs.append("quick.yaml")
        elif not configs:
            (workdir / "fast-upstream.yaml").write_text(yaml.safe_dump(FAST_UPSTREAM))
            configs = ["--configfile", "fast-upstream.yaml"]
        layouts = {"one job per rule and shard": None}
        layouts |= {f"job groups, {k} shard{'s' if k > 1 else ''} per job": k for k in args.per_job}
        planned = {name: planned_pool_jobs(workdir, configs, k) for name, k in layouts.items()}
        first = next(iter(planned.values()))
        upstream = {
            path
            for job in first
            for step in job.steps
            for path in step.input
            if not path.startswith(("results/cache/pool/", "results/cache/features/"))
        }
        _common.note(f"upstream stages, not timed: {' '.join(sorted(upstream))}")
        snakemake(workdir, *sorted(upstream), *configs)
        shards = len({s.shard for j in first for s in j.steps})
        source = (
            "the embedded default (model and classifier trained a few steps)"
            if configs == ["--configfile", "fast-upstream.yaml"]
            else " ".join(configs)
        )
        print(
            f"pool stage of {source}: {shards} shards (generate_pool + extract_features); "
            "each job a fresh Snakemake process (--cores 1), jobs one after another"
        )
        table = _common.Table(
            ("layout", "<", 32),
            ("jobs", "d", 5),
            ("scripts", "d", 7),
            ("wall s", ".1f", 7),
            ("work s", ".1f", 7),
            ("Snakemake s", ".1f", 11),
            ("script start s", ".1f", 14),
            ("start-up/job s", ".1f", 14),
            ("start-up share", ".1%", 14),
        )
        everything = sorted((s.rule, s.shard) for j in first for s in j.steps)
        for name, jobs in planned.items():
            if sorted((s.rule, s.shard) for j in jobs for s in j.steps) != everything:
                raise SystemExit(f"{name}: its jobs do not hold every step of every shard once")
            seconds = run_jobs(workdir, configs, jobs)
            start_up = seconds["wall"] - seconds["work"]
            table.row(
                name,
                len(jobs),
                sum(len(j.steps) for j in jobs),
                seconds["wall"],
                seconds["work"],
                seconds["wall"] - seconds["scripts"],
                seconds["scripts"] - seconds["work"],
                start_up / len(jobs),
                start_up / seconds["wall"],
            )
        print(
            "work: the steps' own (first log line to output written); start-up: the rest, "
            "Snakemake's in each job (wall - scripts) + each script's start (Python, imports: "
            "scripts - work). A cluster adds each job's queue wait and submission."
        )


if __name__ == "__main__":
    main()
