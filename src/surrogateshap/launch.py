"""`surrogateshap launch`: the Snakemake controller itself as a SLURM job (submitted with submitit).

On clusters where nothing long may run on a login node, the process that submits and watches
the workflow's jobs must be a job too. `launch` submits `snakemake --profile PROFILE [ARGS]`,
run in the current directory, and returns at once with the job id and the controller's log.
The controller's partition and account are the profile's `default-resources` (slurm_partition,
slurm_account) unless given.
"""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import yaml

CONTROLLER_TIME_MIN = 24 * 60  # the controller waits for the whole workflow
CONTROLLER_MEM_MB = 4000  # the DAG of a 1,000-contributor run fits with room to spare
CONTROLLER_CPUS = 1


@dataclass
class ControllerJob:
    job_id: str
    log: Path  # the controller's stdout and stderr (Snakemake's output)
    command: list[str]


def read_profile(profile: str | Path) -> dict:
    """The profile's config.yaml as a dict; a clear error when `profile` is not a profile folder."""
    path = Path(profile) / "config.yaml"
    if not path.is_file():
        raise ValueError(
            f"--profile {profile}: no {path} (a Snakemake profile is a folder holding config.yaml)"
        )
    try:
        settings = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as error:
        raise ValueError(f"{path}: not valid YAML: {error}") from None
    if not isinstance(settings, dict):
        raise ValueError(
            f"{path}: expected a mapping of Snakemake options, got {type(settings).__name__}"
        )
    return settings


def profile_default(settings: dict, resource: str) -> str | None:
    """A value of the profile's default-resources (a mapping, or a list of 'name=value')."""
    defaults = settings.get("default-resources") or {}
    if isinstance(defaults, list):
        defaults = dict(item.split("=", 1) for item in defaults if "=" in item)
    value = defaults.get(resource)
    return None if value in (None, "") else str(value).strip("'\"")


def snakemake_command(profile: str | Path, snakemake_args: list[str]) -> list[str]:
    return [
        sys.executable,
        "-m",
        "snakemake",
        "--profile",
        str(Path(profile).resolve()),
        *snakemake_args,
    ]


def run_controller(command: list[str], workdir: str) -> int:
    """Run Snakemake inside the controller job; fail the job when Snakemake fails.

    SLURM warns a job 90 s before its time limit with SIGUSR2 (submitit asks for it), sent to
    every process of the job; Snakemake would die of it and leave its lock and its jobs behind.
    Snakemake ignores it instead (inherited) and is interrupted as by Ctrl-C (SIGINT): it cancels
    its running jobs and releases its lock in time, so that launching again resumes the workflow.
    (SIGTERM would make it wait for its running jobs, which may outlast the time limit.)
    """
    started: list[subprocess.Popen] = []
    warned = []

    def interrupt(*_):
        warned.append(True)
        for process in started:
            process.send_signal(signal.SIGINT)

    def child_signals():
        signal.signal(signal.SIGUSR2, signal.SIG_IGN)
        # SIGINT must reach Snakemake even when this process was started with it ignored (as a
        # shell's background job is): Python then installs its Ctrl-C handler in the child.
        signal.signal(signal.SIGINT, signal.SIG_DFL)

    # The handler is in place before Snakemake starts (a warning between the two is not lost);
    # Snakemake itself starts with the warning ignored.
    signal.signal(signal.SIGUSR2, interrupt)
    process = subprocess.Popen(
        command, cwd=workdir, stderr=subprocess.STDOUT, preexec_fn=child_signals
    )
    started.append(process)
    if warned:
        process.send_signal(signal.SIGINT)
    status = process.wait()
    if status != 0:
        raise RuntimeError(f"snakemake exited with status {status}: {' '.join(command)}")
    return status


def launch(
    profile: str | Path,
    snakemake_args: list[str],
    *,
    log_dir: str | Path = "logs/launch",
    time_min: int = CONTROLLER_TIME_MIN,
    mem_mb: int = CONTROLLER_MEM_MB,
    cpus: int = CONTROLLER_CPUS,
    partition: str | None = None,
    account: str | None = None,
    workdir: str | Path = ".",
) -> ControllerJob:
    """Submit the controller; return at once with its job id and log."""
    settings = read_profile(profile)
    if shutil.which("sbatch") is None:
        raise ValueError(
            "sbatch not found: `surrogateshap launch` submits to SLURM; run it where sbatch works"
        )
    import submitit

    partition = partition or profile_default(settings, "slurm_partition")
    account = account or profile_default(settings, "slurm_account")
    executor = submitit.AutoExecutor(folder=Path(log_dir).resolve(), cluster="slurm")
    executor.update_parameters(
        name="snakemake-controller",
        timeout_min=time_min,
        slurm_mem=f"{mem_mb}M",
        cpus_per_task=cpus,
        stderr_to_stdout=True,
        **({"slurm_partition": partition} if partition else {}),
        **({"slurm_account": account} if account else {}),
    )
    command = snakemake_command(profile, snakemake_args)
    try:
        job = executor.submit(run_controller, command, str(Path(workdir).resolve()))
    except submitit.core.utils.FailedJobError as error:
        raise ValueError(f"SLURM refused the controller job: {str(error).strip()}") from None
    return ControllerJob(str(job.job_id), job.paths.stdout, command)
