"""Snakemake's own view of the workflow for many configs in one process (the cache-key tests).

Run as `python tests/dags.py REQUESTS.json` in a copy of the workflow: for each request
({"config": dict, "targets": [...], "forceall": bool, "touch": bool}) it builds the DAG with
Snakemake's Python API and prints one JSON line: every job's rule, outputs, inputs, params, logs,
script and whether it needs to run (and why), plus every rule the config defines; or the error.
With "touch", it then simulates running the needed jobs: creates their missing outputs (empty
files and folders) and lets Snakemake's touch executor record them as done (params included),
as if the workflow had run. A dry run per config through the CLI costs seconds each; this costs
a fraction of a second per DAG.
"""

from __future__ import annotations

import contextlib
import io
import json
import sys
from pathlib import Path

from snakemake.api import SnakemakeApi
from snakemake.io import is_flagged
from snakemake.settings.types import (
    ConfigSettings,
    DAGSettings,
    OutputSettings,
    Quietness,
    ResourceSettings,
)


@contextlib.contextmanager
def _session(workdir: Path, request: dict):
    with SnakemakeApi(OutputSettings(quiet={Quietness.ALL})) as api:
        workflow_api = api.workflow(
            ResourceSettings(cores=1),
            ConfigSettings(config=request["config"]),
            snakefile=workdir / "workflow" / "Snakefile",
            workdir=workdir,
        )
        dag_settings = DAGSettings(
            targets=set(request.get("targets") or ["all"]), forceall=request.get("forceall", False)
        )
        yield workflow_api, dag_settings


def _job(dag, job) -> dict:
    return {
        "rule": job.rule.name,
        "output": sorted(map(str, job.output)),
        "directories": sorted(str(f) for f in job.output if is_flagged(f, "directory")),
        "input": sorted(map(str, job.input)),
        "params": json.loads(json.dumps(dict(job.params.items()), sort_keys=True, default=str)),
        "log": sorted(map(str, job.log)) + ([str(job.benchmark)] if job.benchmark else []),
        "script": Path(job.rule.script).stem if job.rule.script else None,
        "needrun": dag.needrun(job),
        "reason": str(dag.reason(job)) if dag.needrun(job) else "",
    }


def build(workdir: Path, request: dict) -> dict:
    with _session(workdir, request) as (workflow_api, dag_settings):
        workflow = workflow_api._workflow  # parses the Snakefile with this config
        workflow.dag_settings = dag_settings
        workflow._prepare_dag(
            forceall=dag_settings.forceall, ignore_incomplete=True, lock_warn_only=True
        )
        workflow._build_dag()
        dag = workflow.dag
        return {
            "jobs": [_job(dag, job) for job in dag.jobs],
            "rules": sorted(rule.name for rule in workflow.rules),
        }


def touch(workdir: Path, request: dict, jobs: list[dict]) -> None:
    for job in jobs:
        if not job["needrun"]:
            continue
        for out in job["output"]:
            path = workdir / out
            if out in job["directories"]:
                path.mkdir(parents=True, exist_ok=True)
            else:
                path.parent.mkdir(parents=True, exist_ok=True)
                path.touch()
    with _session(workdir, request) as (workflow_api, dag_settings):
        workflow_api.dag(dag_settings).execute_workflow(pseudo_executor="touch")


def main(requests_path: str) -> None:
    workdir = Path.cwd()
    for request in json.loads(Path(requests_path).read_text()):
        try:
            with contextlib.redirect_stdout(io.StringIO()):
                result = build(workdir, request)
                if request.get("touch"):
                    touch(workdir, request, result["jobs"])
        except Exception as error:  # noqa: BLE001 - reported to the test, which decides
            result = {"error": f"{type(error).__name__}: {error}"}
        print(json.dumps(result, default=str), flush=True)


if __name__ == "__main__":
    main(sys.argv[1])
