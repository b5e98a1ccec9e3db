"""Smoke tests: every benchmark script runs end to end at tiny sizes and prints its table.

They check that the scripts work, not how fast anything is (timings come from running the
benchmarks themselves; see docs/benchmarks.md)."""

import subprocess
import sys

import pytest

from .conftest import ROOT

SLOW = pytest.mark.slow


@pytest.mark.parametrize(
    "script, args, expected",
    [
        ("frechet.py", ["--dims", "8", "--coalitions", "2"], ["speed-up"]),
        (
            "estimators.py",
            # shapiq runs in its own environment (docs/estimators-benchmark.md): ours only here
            ["--games", "poly:6", "vote:7", "--multipliers", "3", "--seeds", "2", "--shapiq"],
            [
                "default: estimator 'surrogate' on sampler 'shapley_kernel'",
                "poly:6",
                "mean seconds",
            ],
        ),
        ("scaling.py", ["--ns", "5", "8", "--rows", "12", "24"], ["log-log fit: seconds ~ n^"]),
        (
            "kernel_centring.py",
            ["--games", "jump:8", "vote:7", "--multipliers", "4", "--seeds", "1"],
            ["size-centred", "jump:8", "vote:7"],
        ),
        ("fingerprint.py", ["--quick"], ["us/image", "read+hash s"]),
        (
            "utility_throughput.py",
            ["--quick"],
            ["coalitions/s", "frechet_distance", "group moments"],
        ),
        pytest.param(
            "generation.py",
            ["--quick"],
            ["vs bare", "generation + features", "start-up per job"],
            marks=SLOW,
        ),
        pytest.param(
            "proxy_game.py",
            ["--quick", "--ceiling", "4"],
            ["img ratio", "extrap.", "rho FD", "another seed"],
            marks=SLOW,
        ),
        pytest.param("dag.py", ["--quick"], ["log-log fit: seconds ~ shards^"], marks=SLOW),
        (
            "frechet_spread.py",
            ["--sizes", "16", "32", "--coalitions", "4", "--repeats", "1"],
            ["fd_sd/spread", "marker_rate"],
        ),
        pytest.param(
            "retrain_noise.py",
            ["--train-steps", "3", "--coalitions", "3", "--steps", "2", "--samples", "8"],
            ["variance_reliability", "independent", "frechet_distance"],
            marks=SLOW,
        ),
    ],
)
def test_benchmark_runs(script, args, expected):
    result = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / script), *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    for text in expected:
        assert text in result.stdout, result.stdout
