"""The `evaluate` target end to end on the small test config (slow: it retrains models)."""

import json
import shutil

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from .conftest import SMALL, snakemake

pytestmark = pytest.mark.slow
EVALUATE = "tests/configs/evaluate.yaml"


@pytest.fixture(scope="module")
def evaluated(run_dir):
    snakemake(run_dir, "evaluate", "--configfile", SMALL, EVALUATE)
    return run_dir / "results/small/evaluation"


def test_lds_for_every_method_and_metric(evaluated):
    lds = pd.read_parquet(evaluated / "tables/lds.parquet")
    metrics = {
        "frechet_distance",
        "inception_score_like",
        "mean_confidence",
        "diversity",
        "marker_rate",
    }
    for method in (
        "surrogate",
        "surrogate + interactions",
        "kernel",
        "permutation",
        "banzhaf",
        "loo",
        "similarity_pixel_mean",
        "similarity_feature_max",
        "random",
    ):
        rows = lds[lds["method"] == method]
        assert set(rows["metric"]) == metrics, method
        assert (rows["coalitions"] == 6).all()  # both draws' coalitions in one LDS
        assert rows["per_draw"].map(lambda d: len(json.loads(d)) == 2).all()
        finite = rows[rows["lds"].notna()]
        assert (finite["lds_low"] <= finite["lds"] + 1e-9).all()
        assert (finite["lds"] <= finite["lds_high"] + 1e-9).all()
        if method != "surrogate":
            assert finite["vs_reference"].notna().all(), method
    ceiling = pd.read_parquet(evaluated / "tables/ceiling.parquet")
    assert set(ceiling["metric"]) == metrics and (ceiling["replicates"] == 2).all()
    assert ceiling["noise_ceiling"].notna().any()
    # the chance level from many random value vectors, and the score given coalition size
    chance = ceiling[["chance_mean", "chance_p95", "chance_given_size_p95"]]
    assert chance.notna().all().all() and (ceiling["chance_p95"] > ceiling["chance_mean"]).all()
    assert lds["lds_given_size"].notna().any()
    assert (
        lds["above_chance"]
        == (lds["lds"] > lds["metric"].map(ceiling.set_index("metric")["chance_p95"]))
    ).all()


def test_the_cheaper_game_is_measured_against_full_retraining(evaluated):
    fidelity = pd.read_parquet(evaluated / "tables/game_fidelity.parquet")
    assert set(fidelity["game"]) == {"finetune"} and (fidelity["coalitions"] == 3).all()
    assert (fidelity["cost_ratio"] > 0).all()
    retrained = pd.read_parquet(evaluated / "tables/retrained.parquet")
    full = retrained[retrained["source"] == "fidelity"]
    assert len(full) == 3 and set(full["game"]) == {"full"}
    heldout = retrained[retrained["source"] == "heldout"]
    assert set(heldout["game"]) == {"finetune"} and len(heldout) == 2 * 8  # 2 replicates


def _lds(values, heldout, method, metric):
    """The LDS recomputed from the published tables: scipy's Spearman, over every scored held-out
    coalition of every draw, of its summed values against its retrained (replicate-mean) utility."""
    phi = values[(values["method"] == method) & (values["metric"] == metric)].set_index(
        "contributor"
    )["value"]
    scored = heldout[heldout["draw"] >= 0]
    predicted = np.array([phi.loc[list(m)].sum() for m in scored["members"]])
    actual = scored[metric].to_numpy()
    if np.ptp(predicted) > 0 and np.ptp(actual) > 0:
        return float(stats.spearmanr(predicted, actual).statistic)
    return float("nan")


def test_lds_is_the_spearman_of_predicted_and_retrained_utilities(evaluated):
    lds = pd.read_parquet(evaluated / "tables/lds.parquet")
    heldout = pd.read_parquet(evaluated / "tables/heldout.parquet")
    values = pd.read_parquet(
        next((evaluated.parents[2] / "results/cache").glob("baselines/*/values.parquet"))
    )
    finite = 0
    additive = lds[lds["method"].isin(set(values["method"]))]  # not the surrogate's variants
    for row in additive.itertuples():
        expected = _lds(values, heldout, row.method, row.metric)
        if np.isnan(expected):
            assert np.isnan(row.lds), (row.method, row.metric)
        else:
            finite += 1
            assert row.lds == pytest.approx(expected, abs=1e-9), (row.method, row.metric)
    assert finite >= 0.8 * len(additive)


def test_retrained_models_saw_only_their_coalition(evaluated):
    retrained = pd.read_parquet(evaluated / "tables/retrained.parquet")
    contributors = pd.read_parquet(
        next((evaluated.parents[2] / "results/cache/data").glob("*/contributors.parquet"))
    )
    counts = dict(zip(contributors["contributor"], contributors["n_items"]))
    assert len(retrained) >= 8  # 6 held out + empty + grand, and the counterfactual ones
    for row in retrained.itertuples():
        # what the batches drew: only members' items (a small coalition may miss none of them)
        assert set(row.trained_contributors) <= set(row.members)
        assert row.n_items == sum(counts[m] for m in row.members)
        assert row.trained_items <= row.n_items


def test_counterfactual_and_planted_tables(evaluated):
    counterfactual = pd.read_parquet(evaluated / "tables/counterfactual.parquet")
    assert set(counterfactual["method"]) == {"surrogate", "random"}
    assert (
        set(counterfactual["side"]) == {"top", "bottom"} and counterfactual["change"].notna().all()
    )
    top = counterfactual[
        (counterfactual["method"] == "surrogate") & (counterfactual["side"] == "top")
    ]
    assert top["removed"].iloc[0].tolist() == [
        "digit-7-b"
    ]  # the planted marker, ranked first by the surrogate
    placement = pd.read_parquet(evaluated / "tables/placement.parquet")
    surrogate = placement[placement["method"] == "surrogate"].set_index("contributor")
    assert surrogate.loc["digit-7-b", "found"]
    summary = json.loads((evaluated / "tables/summary.json").read_text())
    assert (
        summary["retraining"]["train"]["steps"] == 30  # the finetune game's
        and summary["methods"]["kernel"]["utility_evaluations"] > 0
        and summary["methods"]["kernel_centred"]["utility_evaluations"]
        == summary["methods"]["kernel"]["utility_evaluations"]  # the run's own coalitions
    )
    assert summary["retraining"]["by_source"]["fidelity"]["retrains"] == 3


def test_report_has_the_evaluation_section(evaluated):
    page = (evaluated / "index.html").read_text()
    for text in (
        "Evaluation: does the attribution predict retraining?",
        "LDS",
        "Proxy fidelity",
        "Counterfactual removal",
        "Planted ground truth",
        "surrogate + interactions",
        "Noise ceiling",
        "Fidelity of the finetune game",
    ):
        assert text in page


def test_a_rerun_does_nothing_and_counterfactual_settings_keep_the_heldout_retrains(evaluated):
    run_dir = evaluated.parents[2]
    out = snakemake(run_dir, "evaluate", "-n", "--configfile", SMALL, EVALUATE).stdout
    assert "Nothing to be done" in out
    changed = run_dir / "tests/configs/evaluate_k2.yaml"
    changed.write_text("evaluation:\n  counterfactual: {k: [1, 2]}\n")
    planned = snakemake(
        run_dir,
        "evaluate",
        "-n",
        "--quiet",
        "rules",
        "--configfile",
        SMALL,
        EVALUATE,
        str(changed.relative_to(run_dir)),
    ).stdout
    assert "retrain_counterfactual" in planned and "retrain_heldout" not in planned


def test_retraining_does_not_depend_on_shard_count(evaluated, tmp_path):
    """The held-out and counterfactual retrains in 3 jobs instead of 2 (in a copy of the run):
    the shard files say so, and every evaluation table is the same."""
    run_dir = evaluated.parents[2]
    workdir = tmp_path / "resharded"
    shutil.copytree(run_dir, workdir, symlinks=True, ignore=shutil.ignore_patterns("locks"))
    cache = workdir / "results/cache"
    before = {
        s: sorted(p.name for p in cache.glob(f"{s}/*/shards/*"))
        for s in ("retrain", "counterfactual")
    }
    assert before["retrain"] == ["1-of-2.parquet", "2-of-2.parquet"], before
    snakemake(
        workdir,
        "evaluate",
        "--configfile",
        SMALL,
        EVALUATE,
        "--set-scatter",
        "retrain=3",
        "--until",
        "evaluation_tables",
    )
    for stage in ("retrain", "counterfactual"):
        after = sorted(p.name for p in cache.glob(f"{stage}/*/shards/*"))
        assert set(after) - set(before[stage]) == {
            "1-of-3.parquet",
            "2-of-3.parquet",
            "3-of-3.parquet",
        }, stage
    tables = next(cache.glob("evaluation/*")) / "tables"
    original = next((run_dir / "results/cache").glob("evaluation/*")) / "tables"
    for name in ("lds", "retrained", "heldout", "fidelity", "counterfactual"):
        a = pd.read_parquet(original / f"{name}.parquet")
        b = pd.read_parquet(tables / f"{name}.parquet")
        key = [
            c
            for c in ("source", "coalition", "replicate", "method", "metric", "side", "k")
            if c in a.columns
        ]
        a, b = (t.sort_values(key).reset_index(drop=True) if key else t for t in (a, b))
        assert list(a.columns) == list(b.columns), name
        for column in [c for c in a.columns if "second" not in c]:  # timings differ
            if a[column].dtype.kind == "f":
                np.testing.assert_allclose(
                    b[column], a[column], rtol=1e-9, err_msg=f"{name}.{column}"
                )
            else:
                assert a[column].map(str).tolist() == b[column].map(str).tolist(), (name, column)


def test_the_docs_tables_are_written_from_the_runs_tables(evaluated, tmp_path):
    import subprocess
    import sys

    from .conftest import ROOT

    doc = tmp_path / "doc.md"
    doc.write_text(
        "intro\n<!-- evaluation-tables:begin -->\nold\n<!-- evaluation-tables:end -->\nend\n"
    )
    tables = evaluated / "tables"
    subprocess.run(
        [
            sys.executable,
            str(ROOT / "benchmarks/evaluation_tables.py"),
            str(tables),
            "--doc",
            str(doc),
        ],
        check=True,
        cwd=ROOT,
    )
    text = doc.read_text()
    assert text.startswith("intro\n") and text.endswith("end\n") and "\nold\n" not in text
    lds = pd.read_parquet(tables / "lds.parquet")
    row = lds[(lds["method"] == "random") & (lds["metric"] == "marker_rate")].iloc[0]
    # the run's own numbers, as the table prints them
    assert f"{row.lds:.3f} [{row.lds_low:.3f}, {row.lds_high:.3f}]" in text
    assert "Noise ceiling" in text and "Fidelity of the `finetune` game" in text
