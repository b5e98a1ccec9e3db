"""The `evaluate` target end to end on the small test config (slow: it retrains models)."""

import json

import pandas as pd
import pytest

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
        assert (rows["draws"] == 2).all() and (rows["coalitions"] == 6).all()
        assert rows["lds_mean"].between(-1, 1).all() or rows["lds_mean"].isna().any()


def test_retrained_models_saw_only_their_coalition(evaluated):
    retrained = pd.read_parquet(evaluated / "tables/retrained.parquet")
    contributors = pd.read_parquet(
        next((evaluated.parents[2] / "results/cache/data").glob("*/contributors.parquet"))
    )
    counts = dict(zip(contributors["contributor"], contributors["n_items"]))
    assert len(retrained) >= 8  # 6 held out + empty + grand, and the counterfactual ones
    for row in retrained.itertuples():
        assert sorted(row.trained_contributors) == sorted(row.members)
        assert row.n_items == sum(counts[m] for m in row.members)


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
        summary["retraining"]["train"]["steps"] == 60
        and summary["methods"]["kernel"]["utility_evaluations"] > 0
    )


def test_report_has_the_evaluation_section(evaluated):
    page = (evaluated / "index.html").read_text()
    for text in (
        "Evaluation: does the attribution predict retraining?",
        "LDS",
        "Proxy fidelity",
        "Counterfactual removal",
        "Planted ground truth",
        "surrogate + interactions",
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
