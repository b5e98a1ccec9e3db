"""End-to-end runs of the workflow on the small test config (a faster embedded default)."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import zipfile

import numpy as np
import pandas as pd
import pytest
import yaml

from surrogateshap.workflow.io import read_table_metadata

from .conftest import ROOT, SMALL, SNAKEMAKE, planned_jobs, snakemake

pytestmark = pytest.mark.slow
METRICS = yaml.safe_load((ROOT / "config/config.yaml").read_text())[
    "metrics"
]  # small.yaml keeps them


def _extra(workdir, name, content):
    path = workdir / f"{name}.yaml"
    path.write_text(yaml.safe_dump(content))
    return str(path.name)


def _attribution(run_dir, metric):
    return pd.read_parquet(run_dir / f"results/small/attributions/{metric}.parquet").set_index(
        "contributor"
    )


def test_outputs_and_layout(run_dir):
    utilities = pd.read_parquet(run_dir / "results/small/utilities.parquet")
    assert {"members", "frechet_distance", "marker_rate"} <= set(utilities.columns)
    assert len(utilities) == 400
    assert utilities["members"].iloc[0].tolist() == [] and len(utilities["members"].iloc[1]) == 20
    table = _attribution(run_dir, "frechet_distance")
    assert {"shapley", "ci_low", "ci_high", "rank"} <= set(table.columns)
    assert sorted(table["rank"]) == list(range(1, 21))
    assert (run_dir / "results/small/report/index.html").stat().st_size > 10_000
    assert "Strongest interactions" in (run_dir / "results/small/report/index.html").read_text()
    meta = read_table_metadata(run_dir / "results/small/attributions/frechet_distance.parquet")
    assert len(meta["top_interactions"]) == 10 and {
        "contributor_i",
        "contributor_j",
        "interaction",
    } <= set(meta["top_interactions"][0])
    assert list((run_dir / "logs").rglob("train_model/*.log"))


def test_planted_contributors_are_found(run_dir):
    # The small run's proxy game (near-exact values, 4,000 permutations over its pools): blur 1.33,
    # noise 1.06, then the watermark 0.73 and a clean contributor 0.70. At 400 coalitions, over 8
    # sampling seeds, the default puts noise and blur in its top 3 in 8 of 8 draws and in its top
    # 2 in 5 of 8 (the former default: 8 and 8); at 200, in its top 3 in 6 and 5 of 8
    # (benchmarks/planted_ranking.py, docs/estimators-benchmark.md).
    fd = _attribution(run_dir, "frechet_distance")
    assert {"digit-1-b", "digit-5-b"} <= set(fd.index[fd["rank"] <= 3]), fd.sort_values(
        "rank"
    ).head(5)
    marker = _attribution(run_dir, "marker_rate")
    assert marker.loc["digit-7-b", "rank"] == 1
    # Near zero: in the exact proxy game each other contributor only dilutes the marker's
    # share (measured: -0.5% to -7% of the marker's value); the surrogate adds up to ~7% more.
    others = marker.drop(index="digit-7-b")["shapley"].abs()
    assert others.max() < 0.15 * marker.loc["digit-7-b", "shapley"], marker.sort_values("rank")


# Spearman of pooled vs per-coalition utilities over the check's 16 coalitions x 128 fresh images
# (tests/configs/small.yaml; the size docs/demo.md reports). The run is deterministic (every draw
# seeded); measured on it (2026-12-04, 400 coalitions of the leverage design, from which the check
# samples its 14 non-endpoint coalitions): diversity 0.935, Fréchet 0.929, IS-like 0.965, marker
# 0.766, mean confidence 0.900. Each threshold is that value less 0.05. (On 200 paired
# Shapley-kernel coalitions the marker rate had 0.869: other coalitions, fewer of middle size.)
POOLED_AGREEMENT = {
    "frechet_distance": 0.87,
    "inception_score_like": 0.91,
    "marker_rate": 0.71,
    "diversity": 0.88,
    "mean_confidence": 0.85,
}


def test_pooled_agrees_with_per_coalition(run_dir):
    summary_path = next((run_dir / "results/cache").glob("proxy_check/*/summary.json"))
    summary = json.loads(summary_path.read_text())
    print({m: round(v["spearman"], 3) for m, v in summary.items()})
    assert set(summary) == set(POOLED_AGREEMENT), summary
    for metric, threshold in POOLED_AGREEMENT.items():
        assert summary[metric]["spearman"] >= threshold, (metric, summary)


def test_planted_ranking_benchmark_reads_the_run(run_dir):
    """benchmarks/planted_ranking.py replays the run's planted check on its own proxy game: the
    near-exact values put the watermark first on the marker rate, and each estimate is counted."""
    result = subprocess.run(
        [
            sys.executable,
            str(ROOT / "benchmarks/planted_ranking.py"),
            "--cache",
            str(run_dir / "results/cache"),
            "--configfile",
            str(ROOT / SMALL),
            "--multipliers",
            "2",
            "--seeds",
            "1",
            "--permutations",
            "100",
            "--ours",
            "default",
        ],
        capture_output=True,
        text=True,
        env=dict(os.environ, PYTHONPATH=str(ROOT / "src")),
        check=True,
    )
    rows = [line.split() for line in result.stdout.splitlines()]
    truth = [r for r in rows if r[:2] == ["marker_rate", "truth"]]
    assert truth and truth[0][-2:] == ["1", "1"], result.stdout
    assert [r[2] for r in rows if r[:1] == ["marker_rate"] and r[1] == "40"] == ["default"]


def test_second_run_does_nothing(run_dir):
    result = snakemake(run_dir, "--configfile", SMALL)
    assert "Nothing to be done" in result.stdout + result.stderr


def test_surrogate_change_reruns_only_fit_payout_and_report(run_dir):
    extra = _extra(run_dir, "surrogate", {"surrogate": {"bootstrap": 5}})
    jobs = planned_jobs(run_dir, "--configfile", SMALL, extra)
    # record_fingerprints: results/<run>/fingerprints.json lists the (new) attribution key
    assert set(jobs) == {
        "attribute",
        "publish_attribution",
        "payout",
        "html_report",
        "record_fingerprints",
        "all",
    }, jobs


def test_metric_settings_do_not_regenerate(run_dir):
    extra = _extra(run_dir, "metric", {"features": {"marker_threshold": 0.7}})
    jobs = planned_jobs(run_dir, "--configfile", SMALL, extra)
    assert "extract_features" in jobs and "pooled_utilities" in jobs
    assert "generate_pool" not in jobs and "train_model" not in jobs


def test_guidance_change_regenerates(run_dir):
    extra = _extra(run_dir, "guidance", {"generation": {"guidance_scale": 3.0}})
    jobs = planned_jobs(run_dir, "--configfile", SMALL, extra)
    assert jobs.get("generate_pool") == 2 and "train_model" not in jobs


def test_two_runs_share_stages(run_dir):
    extra = _extra(run_dir, "other_run", {"run": "other"})
    jobs = planned_jobs(run_dir, "--configfile", SMALL, extra)
    assert set(jobs) == {
        "publish_attribution",
        "publish_utilities",
        "publish_contributors",
        "payout",
        "html_report",
        "record_fingerprints",
        "all",
    }, jobs


def test_bad_config_names_the_field(run_dir):
    extra = _extra(run_dir, "bad", {"generation": {"steps": -3}})
    result = snakemake(run_dir, "-n", "--configfile", SMALL, extra, check=False)
    assert result.returncode != 0
    assert "generation.steps" in result.stdout + result.stderr


def test_bad_dataset_fails_clearly_and_keeps_the_cache(run_dir, tmp_path):
    (tmp_path / "img").mkdir()
    pd.DataFrame({"file_name": ["img/a.png"], "label": [1]}).to_csv(
        tmp_path / "meta.csv", index=False
    )
    before = sorted(p for p in (run_dir / "results/cache").rglob("*") if p.is_file())
    extra = _extra(
        run_dir,
        "folder",
        {
            "data": {
                "source": "folder",
                "root": str(tmp_path),
                "metadata": str(tmp_path / "meta.csv"),
            },
            "features": {"extractor": "trained"},
        },
    )
    result = snakemake(run_dir, "--configfile", SMALL, extra, check=False)
    assert result.returncode != 0
    # refused when the workflow is parsed, before any job: named in Snakemake's own output
    output = result.stdout + result.stderr
    assert "missing column 'contributor'" in output and "meta.csv" in output, output[-3000:]
    assert "nothing was run" in output
    after = sorted(p for p in (run_dir / "results/cache").rglob("*") if p.is_file())
    assert set(before) <= set(after)


def copy_run(run_dir, dest):
    """A copy of a finished run (results, logs, Snakemake's records) to change without touching it."""
    shutil.copytree(run_dir, dest, symlinks=True, ignore=shutil.ignore_patterns("locks"))
    return dest


def shard_names(workdir, stage):
    return sorted(p.name for p in (workdir / "results/cache").glob(f"{stage}/*/shards/*.parquet"))


def assert_same_tables(a, b, run, metrics):
    """Every metric's utilities and attribution table, value for value."""
    for name in ["utilities"] + [f"attributions/{m}" for m in metrics]:
        x = pd.read_parquet(a / f"results/{run}/{name}.parquet")
        y = pd.read_parquet(b / f"results/{run}/{name}.parquet")
        assert list(x.columns) == list(y.columns), name
        for column in x.columns:
            if x[column].dtype.kind == "f":
                np.testing.assert_allclose(y[column], x[column], rtol=1e-9, err_msg=name)
            else:
                assert x[column].map(str).tolist() == y[column].map(str).tolist(), (name, column)


def test_numbers_do_not_depend_on_shard_count(run_dir, tmp_path):
    """The pools generated in 3 jobs instead of 2 (in a copy of the run): the shard files say so,
    and every metric's utilities and attributions are the same."""
    workdir = copy_run(run_dir, tmp_path / "resharded")
    assert shard_names(workdir, "pool") == ["1-of-2.parquet", "2-of-2.parquet"]
    snakemake(
        workdir,
        "--configfile",
        SMALL,
        "--set-scatter",
        "pool=3",
        "--until",
        "publish_utilities",
        "publish_attribution",
    )
    for stage in ("pool", "features"):
        assert shard_names(workdir, stage) == sorted(
            [
                "1-of-2.parquet",
                "2-of-2.parquet",
                "1-of-3.parquet",
                "2-of-3.parquet",
                "3-of-3.parquet",
            ]
        ), stage
    log = "".join(p.read_text() for p in (workdir / "logs/generate_pool").rglob("*-of-3.log"))
    assert log.count("images/s") >= 3  # the three new jobs generated
    assert_same_tables(run_dir, workdir, "small", METRICS)
    frames = [
        pd.read_parquet(p)
        for p in sorted((workdir / "results/cache").glob("pool/*/shards/*-of-3.parquet"))
    ]
    resharded = pd.concat(frames).sort_values(["group", "sample"]).reset_index(drop=True)
    original = (
        pd.concat(
            [
                pd.read_parquet(p)
                for p in sorted((run_dir / "results/cache").glob("pool/*/shards/*.parquet"))
            ]
        )
        .sort_values(["group", "sample"])
        .reset_index(drop=True)
    )
    assert resharded["png"].tolist() == original["png"].tolist()  # the images themselves


def test_no_job_needs_more_than_4_gb(run_dir):
    tables = list((run_dir / "logs/benchmarks").rglob("*.tsv"))
    assert len(tables) >= 8
    peaks = {
        p.relative_to(run_dir).as_posix(): pd.read_csv(p, sep="\t")["max_rss"].max() for p in tables
    }
    assert max(peaks.values()) < 4096, peaks


def test_long_steps_log_progress(run_dir):
    training = next((run_dir / "logs/train_model").glob("*.log")).read_text()
    assert "diffusion step 700/700" in training
    generation = "".join(p.read_text() for p in (run_dir / "logs/generate_pool").rglob("*.log"))
    assert "images/s" in generation


def test_snakemake_report(run_dir):
    """The zip holds Snakemake's report page and every file flagged with report(): the run's HTML,
    the utility, contributor and attribution tables, with their captions."""
    snakemake(run_dir, "--configfile", SMALL, "--report", "report.zip")
    with zipfile.ZipFile(run_dir / "report.zip") as archive:
        names = archive.namelist()
        page = next(n for n in names if n.endswith("report.html"))
        html_text = archive.read(page).decode("utf-8", "replace")
    flagged = ["index.html", "utilities.parquet", "contributors.parquet"] + [
        f"{m}.parquet" for m in METRICS
    ]
    for name in flagged:
        assert any(n.endswith("/" + name) for n in names), (name, names[:40])
    for caption in ("Utility table: one row per coalition", "Shapley values of metric"):
        assert caption in html_text, caption
    for rule in ("train_model", "generate_pool", "attribute"):
        assert rule in html_text, rule


def test_coalition_table_with_unknown_contributor(run_dir):
    pd.DataFrame({"members": [[], ["digit-0-a", "mallory"]]}).to_parquet(run_dir / "mine.parquet")
    extra = _extra(run_dir, "table", {"coalitions": {"table": "mine.parquet"}})
    result = snakemake(
        run_dir, "--configfile", SMALL, extra, "--until", "draw_coalitions", check=False
    )
    assert result.returncode != 0
    logs = "".join(p.read_text() for p in (run_dir / "logs/draw_coalitions").glob("*.log"))
    assert "'mallory'" in logs and "mine.parquet" in logs


def test_user_checkpoint_skips_training(run_dir):
    model = next((run_dir / "results/cache/model").glob("*/model"))
    extra = _extra(run_dir, "checkpoint", {"model": {"path": str(model)}})
    jobs = planned_jobs(run_dir, "--configfile", SMALL, extra)
    assert "train_model" not in jobs and jobs.get("generate_pool") == 2, jobs


def test_per_coalition_mode_runs_end_to_end(run_dir, tmp_path):
    extra = _extra(
        run_dir,
        "per_coalition",
        {
            "run": "per_coalition",
            "game": {"mode": "per_coalition", "per_coalition": {"samples": 32, "shards": 2}},
            "coalitions": {"count": 24},
        },
    )
    snakemake(run_dir, "--configfile", SMALL, extra)
    utilities = pd.read_parquet(run_dir / "results/per_coalition/utilities.parquet")
    assert len(utilities) == 24 and utilities["coalition"].tolist() == list(range(24))
    assert np.isfinite(utilities[["frechet_distance", "marker_rate"]].to_numpy()).all()
    marker = pd.read_parquet(run_dir / "results/per_coalition/attributions/marker_rate.parquet")
    assert sorted(marker["rank"]) == list(range(1, 21))
    # the same coalitions scored in 3 jobs instead of 2 (in a copy): the same numbers
    workdir = copy_run(run_dir, tmp_path / "per_coalition_resharded")
    before = shard_names(workdir, "utilities")
    assert {"1-of-2.parquet", "2-of-2.parquet"} <= set(before)
    snakemake(
        workdir,
        "--configfile",
        SMALL,
        extra,
        "--set-scatter",
        "coalition_shard=3",
        "--until",
        "publish_utilities",
        "publish_attribution",
    )
    assert set(shard_names(workdir, "utilities")) - set(before) == {
        "1-of-3.parquet",
        "2-of-3.parquet",
        "3-of-3.parquet",
    }
    assert_same_tables(run_dir, workdir, "per_coalition", METRICS)


def test_coalition_rounds_draw_more_until_the_stopping_rule_holds(run_dir):
    rounds = {
        "max": 3,
        "threshold": 0.9999,
        "patience": 2,
    }  # a rule that cannot hold: every round is drawn
    extra = _extra(
        run_dir, "rounds", {"run": "rounds", "coalitions": {"count": 60, "rounds": rounds}}
    )
    jobs = planned_jobs(run_dir, "--configfile", SMALL, extra)
    assert "generate_pool" not in jobs and "extract_features" not in jobs, (
        jobs
    )  # rounds cost no generation
    snakemake(run_dir, "--configfile", SMALL, extra)
    path = run_dir / "results/rounds/utilities.parquet"
    utilities = pd.read_parquet(path)
    members = [tuple(m) for m in utilities["members"]]
    assert len(utilities) == 3 * 60 and len(set(members)) == len(members)
    assert utilities["coalition"].tolist() == list(range(180))
    history = read_table_metadata(path)["rounds"]
    assert [r["round"] for r in history] == [1, 2, 3] and [r["coalitions"] for r in history] == [
        60,
        120,
        180,
    ]
    assert set(history[0]["metrics"]) == set(utilities.columns) - {"coalition", "members", "size"}
    report = (run_dir / "results/rounds/report/index.html").read_text()
    assert (
        "Coalition rounds" in report
        and "the rounds ran out before the stopping rule held" in report
    )
    # a rule that holds at once keeps the first draw
    easy = _extra(
        run_dir,
        "rounds_easy",
        {
            "run": "rounds_easy",
            "coalitions": {
                "count": 60,
                "rounds": dict(rounds, threshold=0.05, patience=1, metrics=["frechet_distance"]),
            },
        },
    )
    snakemake(run_dir, "--configfile", SMALL, easy, "--until", "publish_utilities")
    easy_path = run_dir / "results/rounds_easy/utilities.parquet"
    assert len(pd.read_parquet(easy_path)) == 60
    assert read_table_metadata(easy_path)["rounds"][0]["converged"]


def test_resume_after_a_kill_under_the_local_executor(run_dir, tmp_path):
    """Snakemake's local executor killed (SIGKILL, the whole process group) while one pool shard is
    written and the other is mid-generation: the killed shard left nothing at its path, the rerun
    (after --unlock) redoes only that shard, keeps the finished one untouched, and gives the
    uninterrupted run's pools and utilities."""
    workdir = copy_run(run_dir, tmp_path / "killed")
    cache = workdir / "results/cache"
    # the utilities and their published copy too: Snakemake does not remake missing
    # intermediate files whose consumers are up to date, so without them nothing would run
    for stage in ("pool", "features", "utilities"):
        shutil.rmtree(cache / stage)
    (workdir / "results/small/utilities.parquet").unlink()
    pool_key = next((run_dir / "results/cache/pool").iterdir()).name
    shards = cache / "pool" / pool_key / "shards"
    step_logs = workdir / "logs/generate_pool" / shards.parent.name
    shutil.rmtree(step_logs, ignore_errors=True)
    command = [SNAKEMAKE, "--cores", "1", "--configfile", SMALL, "--until", "publish_utilities"]
    process = subprocess.Popen(
        command,
        cwd=workdir,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 900

        def mid_generation():
            done = sorted(p.name for p in shards.glob("*.parquet")) if shards.exists() else []
            logs = (
                {p.stem: p.read_text() for p in step_logs.glob("*.log")}
                if step_logs.exists()
                else {}
            )
            running = [
                s
                for s, text in logs.items()
                if "generation device" in text and f"{s}.parquet" not in done
            ]
            return done, running

        while time.monotonic() < deadline:
            done, running = mid_generation()
            if len(done) == 1 and running:
                break
            assert process.poll() is None, "the run ended before it could be killed"
            time.sleep(0.1)
        else:
            raise AssertionError("no shard mid-generation while the other was finished")
        os.killpg(process.pid, signal.SIGKILL)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=60)
    killed = running[0]
    assert not (shards / f"{killed}.parquet").exists()
    leftovers = [p.name for p in shards.iterdir() if p.name.startswith(".")]
    assert all(".partial" in n or n.endswith(".tmp") for n in leftovers), leftovers
    finished = done[0]
    stamp = (shards / finished).stat().st_mtime_ns
    snakemake(workdir, "--unlock", "--configfile", SMALL)
    jobs = planned_jobs(workdir, "--configfile", SMALL, "--until", "publish_utilities")
    assert jobs.get("generate_pool") == 1, jobs  # only the killed shard
    snakemake(workdir, "--configfile", SMALL, "--until", "publish_utilities")
    assert (shards / finished).stat().st_mtime_ns == stamp, "the finished shard was rewritten"
    for name in ("1-of-2.parquet", "2-of-2.parquet"):
        a = pd.read_parquet(shards / name)
        b = pd.read_parquet(run_dir / "results/cache/pool" / pool_key / "shards" / name)
        assert a["png"].tolist() == b["png"].tolist(), name
    assert_same_tables(run_dir, workdir, "small", [])


def test_proxy_estimators_benchmark_plays_the_runs_own_game(run_dir):
    """benchmarks/proxy_estimators.py finds a run's pools by its stage keys (not by globbing the
    cache) and scores an estimator against near-exact permutation values of that game."""
    result = subprocess.run(
        [
            sys.executable,
            str(ROOT / "benchmarks/proxy_estimators.py"),
            "--cache",
            str(run_dir / "results/cache"),
            "--configfile",
            SMALL,
            "--metrics",
            "marker_rate",
            "--multipliers",
            "2",
            "--seeds",
            "1",
            "--permutations",
            "20",
            "--ours",
            "kernel",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    assert "n = 20" in result.stdout and "marker_rate" in result.stdout, result.stdout
