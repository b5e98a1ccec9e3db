"""Smoke tests: every benchmark script runs end to end at tiny sizes and prints its table.

They check that the scripts work, not how fast anything is (timings come from running the
benchmarks themselves; see docs/benchmarks.md)."""

import subprocess
import sys

import numpy as np
import pandas as pd
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
                "default: estimator 'surrogate' on sampler 'leverage'",
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
        (
            "cv_choice.py",
            ["--games", "vote:7", "poly:8", "--multipliers", "3", "--seeds", "2"],
            ["regret", "cross-validation picked a best point in"],
        ),
        ("fingerprint.py", ["--quick"], ["us/image", "read+hash s"]),
        (
            "interval_coverage.py",
            ["--games", "additive:4", "tanh:5", "--multipliers", "4", "--noise", "0.1"]
            + ["--seeds", "2"],
            ["90% intervals", "additive:4", "tanh:5", "err/half"],
        ),
        (
            "unet_sizes.py",
            ["--steps", "1", "--sizes", "8", "16", "--batch-size", "4"],
            ["s/1000 steps", "636,067", "[32, 64, 64]"],
        ),
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
        pytest.param(
            "job_groups.py",
            ["--quick", "--per-job", "1"],
            [
                # 2 shards: every rule job on its own, or each shard's two in one job
                "one job per rule and shard" + " " * 11 + "4" + " " * 7 + "4",
                "job groups, 1 shard per job" + " " * 10 + "2" + " " * 7 + "4",
                "start-up share",
            ],
            marks=SLOW,
        ),
        (
            "frechet_spread.py",
            ["--sizes", "16", "32", "--coalitions", "4", "--repeats", "1"],
            ["fd_sd/spread", "marker_rate"],
        ),
        pytest.param(
            "retrain_noise.py",
            ["--train-steps", "3", "--coalitions", "3", "--steps", "2", "--samples", "8"]
            + ["--settings", "crn", "sampling"],
            ["variance_reliability", "sampling", "frechet_distance", "training_seed"],
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


def test_retrain_noise_splits_the_noise_by_source_from_kept_rows(tmp_path, capsys, monkeypatch):
    # one replicate's coalition-specific noise is e in crn, e/2 when only the images differ and
    # 2e without common random numbers, replicate 1 shifted by 5 throughout (a shift common to
    # every coalition is no noise): image sample 1/4 of the crn noise variance, training seed
    # 3/4, and 4 times the noise without common random numbers
    base, e = np.arange(4.0), np.array([0.2, -0.2, 0.2, -0.2])
    metrics = ["frechet_distance", "inception_score_like", "mean_confidence"]
    metrics += ["diversity", "marker_rate"]
    for setting, scale in [("crn", 1.0), ("sampling", 0.5), ("independent", 2.0)]:
        rows = pd.DataFrame(
            [
                {
                    "coalition": c,
                    "replicate": r,
                    **dict.fromkeys(metrics, base[c] + r * (5 + scale * e[c])),
                }
                for c in range(4)
                for r in range(2)
            ]
        )
        rows.to_parquet(tmp_path / f"rows-{setting}-150.parquet")
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    import retrain_noise

    args = ["--workdir", str(tmp_path), "--from-rows", "--settings", "crn", "sampling"]
    monkeypatch.setattr(sys, "argv", ["retrain_noise.py", *args, "independent"])
    retrain_noise.main()  # in this process: no second start-up of torch
    stdout = capsys.readouterr().out
    split = stdout.split("\n\n")[1]
    assert "image_sample  training_seed  no_crn_ratio" in split, stdout
    for line in split.splitlines()[1:]:
        assert line.split()[2:] == ["0.250", "0.750", "4.000"], stdout


def _benchmark_variants():
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        import estimators
    finally:
        sys.path.remove(str(ROOT / "benchmarks"))
    return estimators


def _points(surrogate_cfg):
    from surrogateshap.estimation.selection import grid_candidates

    return sorted(sorted(c.items()) for c in grid_candidates(surrogate_cfg))


def test_the_default_config_is_the_benchmarked_default_variant():
    """config/config.yaml's sampler and surrogate are benchmarks/estimators.py's `candidate-values`
    (the settings docs/estimators-benchmark.md measured before they became the default)."""
    import yaml

    config = yaml.safe_load((ROOT / "config/config.yaml").read_text())
    _, sampler, overrides = _benchmark_variants().VARIANTS["candidate-values"]
    assert config["coalitions"]["sampler"] == sampler
    benchmarked = dict(config["surrogate"], **overrides)
    assert _points(config["surrogate"]) == _points(benchmarked)
    for key in ("odd_targets", "residual_correction", "select"):
        assert config["surrogate"][key] == benchmarked[key]


def test_the_documented_former_default_config_is_the_benchmarked_today():
    """docs/estimators-benchmark.md's YAML, merged over config/config.yaml as --configfile merges,
    gives the sampler and the grid points of benchmarks/estimators.py's `today` column."""
    import re

    import yaml

    from surrogateshap.workflow.config import merge

    bench = _benchmark_variants()
    page = (ROOT / "docs/estimators-benchmark.md").read_text(encoding="utf-8")
    (snippet,) = re.findall(r"```yaml\n(.*?)```", page, flags=re.S)
    config = merge(
        yaml.safe_load((ROOT / "config/config.yaml").read_text()), yaml.safe_load(snippet)
    )
    assert config["coalitions"]["sampler"] == "shapley_kernel"
    today = dict(bench.default_settings(), **bench.TODAY)
    assert _points(config["surrogate"]) == _points(today)
    for key in ("odd_targets", "residual_correction", "select", "cv_folds"):
        assert config["surrogate"][key] == today[key]


def test_the_stage_table_sums_the_jobs_written_since_the_run_started(tmp_path, monkeypatch):
    import os
    import time

    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    import stages

    head = "s\th:m:s\tmax_rss\tmax_vms\tmax_uss\tmax_pss\tio_in\tio_out\tmean_load\tcpu_time\n"
    jobs = {
        "generate_pool/pool-a/1-of-2.tsv": (10.0, 600.0, 9.0),
        "generate_pool/pool-a/2-of-2.tsv": (30.0, 700.0, 28.0),
        "train_model/model-a.tsv": (50.0, 900.0, 95.0),
        "train_model/model-old.tsv": (99.0, 999.0, 99.0),  # an earlier run's: left out
    }
    for name, (seconds, rss, cpu) in jobs.items():
        path = tmp_path / "benchmarks" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(head + f"{seconds}\t0:00:00\t{rss}\t0\t0\t0\t0\t0\t0\t{cpu}\n")
    since = time.time() - 60
    os.utime(tmp_path / "benchmarks/train_model/model-old.tsv", (since - 60, since - 60))
    table = stages.stage_table(since, tmp_path).set_index("rule")
    assert table.index.tolist() == ["train_model", "generate_pool"]  # longest first
    assert table.loc["generate_pool"].tolist() == [2, 40.0, 30.0, 700.0, 37.0]
    assert table.loc["train_model"].tolist() == [1, 50.0, 50.0, 900.0, 95.0]
