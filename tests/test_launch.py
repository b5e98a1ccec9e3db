"""`surrogateshap launch` without a cluster: arguments, profile errors, and the controller's own
process handling (the submission itself is tested on the SLURM test cluster, tests/test_slurm.py)."""

import contextlib
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from surrogateshap import cli, launch

from .conftest import ROOT


def test_a_missing_profile_is_named(tmp_path, capsys):
    assert cli.main(["launch", "--profile", str(tmp_path / "nope"), "--configfile", "x.yaml"]) == 2
    assert f"{tmp_path / 'nope'}/config.yaml" in capsys.readouterr().err


def test_a_profile_that_is_not_a_mapping_is_named(tmp_path):
    (tmp_path / "config.yaml").write_text("- just\n- a list\n")
    with pytest.raises(ValueError, match="config.yaml: expected a mapping"):
        launch.read_profile(tmp_path)


def test_snakemake_arguments_pass_through_in_order(monkeypatch, capsys):
    seen = {}

    def fake_launch(profile, snakemake_args, **settings):  # records what the CLI would submit
        seen.update(profile=profile, args=snakemake_args, **settings)
        return launch.ControllerJob("42", ROOT / "logs/launch/42_0_log.out", ["snakemake"])

    monkeypatch.setattr(launch, "launch", fake_launch)
    args = [
        "--configfile",
        "a.yaml",
        "b.yaml",
        "-n",
        "--until",
        "attribute",
        "--set-scatter",
        "pool=8",
    ]
    assert cli.main(["launch", "--profile", "profiles/slurm", "--mem-mb", "8000", *args]) == 0
    assert seen["profile"] == "profiles/slurm" and seen["args"] == args and seen["mem_mb"] == 8000
    out = capsys.readouterr().out
    assert "SLURM job 42" in out and "log: " in out
    cli.main(["launch", "--profile", "profiles/slurm", "--", "--cores", "4"])
    assert seen["args"] == ["--cores", "4"]


def test_other_commands_still_refuse_unknown_arguments():
    with pytest.raises(SystemExit):
        cli.main(["convergence", "--bogus"])


def test_partition_and_account_default_to_the_profile():
    assert (
        launch.profile_default({"default-resources": {"slurm_partition": "gpu"}}, "slurm_partition")
        == "gpu"
    )
    assert (
        launch.profile_default(
            {"default-resources": ["slurm_account='proj1'", "runtime=30"]}, "slurm_account"
        )
        == "proj1"
    )
    assert (
        launch.profile_default(launch.read_profile(ROOT / "profiles/slurm"), "slurm_partition")
        is None
    )


def test_the_command_runs_snakemake_with_the_profile():
    command = launch.snakemake_command("profiles/slurm", ["-n"])
    assert command[:3] == [sys.executable, "-m", "snakemake"]
    assert command[3:] == [
        "--profile",
        str(Path("profiles/slurm").resolve()),
        "-n",
    ]  # absolute: the job's cwd may differ


def test_controller_fails_when_snakemake_fails(tmp_path):
    assert launch.run_controller([sys.executable, "-c", "pass"], str(tmp_path)) == 0
    with pytest.raises(RuntimeError, match="exited with status 3"):
        launch.run_controller([sys.executable, "-c", "raise SystemExit(3)"], str(tmp_path))


def test_time_limit_warning_stops_snakemake_cleanly(tmp_path):
    """SLURM's SIGUSR2 before the time limit reaches every process of the job: the Snakemake
    process must ignore it and be interrupted (SIGINT: cancel its jobs, unlock) by the controller."""
    child = textwrap.dedent("""
        import sys, time
        try:  # "ready" inside the try: a signal right after it must still land in the handler
            open("ready", "w").close()
            time.sleep(60)
        except KeyboardInterrupt:
            open("stopped", "w").write("SIGINT")
            sys.exit(5)
    """)
    parent = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys; from surrogateshap.launch import run_controller; "
            f"run_controller([sys.executable, '-c', {child!r}], {str(tmp_path)!r})",
        ],
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 60
    while not (tmp_path / "ready").exists():
        assert time.monotonic() < deadline and parent.poll() is None, "the child did not start"
        time.sleep(0.1)
    children = subprocess.run(
        ["pgrep", "-P", str(parent.pid)], capture_output=True, text=True
    ).stdout.split()
    for pid in [*map(int, children), parent.pid]:  # as SLURM does: every process of the job
        with contextlib.suppress(ProcessLookupError):  # the child may already have been interrupted
            os.kill(pid, signal.SIGUSR2)
    _, err = parent.communicate(timeout=60)
    assert (tmp_path / "stopped").read_text() == "SIGINT"
    assert parent.returncode != 0 and "exited with status 5" in err
