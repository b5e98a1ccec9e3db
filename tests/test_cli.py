import numpy as np
import pandas as pd

from surrogateshap.cli import main
from surrogateshap.estimation.coalitions import sample_coalitions
from surrogateshap.workflow.io import read_table_metadata


def _inputs(tmp_path, extra_member=None):
    names = ["alice", "bob", "carol", "dave"]
    pd.DataFrame({"contributor": names}).to_csv(tmp_path / "c.csv", index=False)
    coalitions = sample_coalitions(4, 16, "shapley_kernel", 0)
    members = [[names[i] for i in c] for c in coalitions]
    if extra_member:
        members[3] = members[3] + [extra_member]
    values = np.array([1.0, 2.0, 0.0, -1.0])
    y = [float(sum(values[i] for i in c)) for c in coalitions]
    pd.DataFrame({"members": members + members[:2], "fd": y + y[:2]}).to_parquet(
        tmp_path / "u.parquet"
    )
    return values


def test_attribute_writes_values_and_diagnostics(tmp_path, capsys):
    values = _inputs(tmp_path)
    code = main(
        [
            "attribute",
            "--contributors",
            str(tmp_path / "c.csv"),
            "--utilities",
            str(tmp_path / "u.parquet"),
            "--metric",
            "fd",
            "--out",
            str(tmp_path / "a.parquet"),
        ]
    )
    assert code == 0
    table = pd.read_parquet(tmp_path / "a.parquet").set_index("contributor")
    assert np.allclose(table.loc[["alice", "bob", "carol", "dave"], "shapley"], values, atol=0.05)
    assert read_table_metadata(tmp_path / "a.parquet")["n_coalitions"] == 16  # repeats averaged
    assert "oof_r2" in capsys.readouterr().out


def test_unknown_contributor_and_missing_metric_are_named(tmp_path, capsys):
    _inputs(tmp_path, extra_member="mallory")
    args = [
        "attribute",
        "--contributors",
        str(tmp_path / "c.csv"),
        "--utilities",
        str(tmp_path / "u.parquet"),
        "--out",
        str(tmp_path / "a.parquet"),
    ]
    assert main(args + ["--metric", "fd"]) == 2
    assert "'mallory'" in capsys.readouterr().err
    assert main(args + ["--metric", "nope"]) == 2
    assert "'nope'" in capsys.readouterr().err


def test_every_estimator_and_interactions(tmp_path):
    from surrogateshap.estimation.estimators import permutation_coalitions

    names = ["a", "b", "c", "d", "e"]
    pd.DataFrame({"contributor": names}).to_parquet(tmp_path / "c.parquet")
    linear = np.array([1.0, -1.0, 0.5, 2.0, 0.0])

    def utility(members):
        idx = [names.index(m) for m in members]
        return float(linear[idx].sum() + (3.0 if {"a", "b"} <= set(members) else 0.0))

    everything = [[names[i] for i in range(5) if m >> i & 1] for m in range(32)]
    chains = [[names[i] for i in c] for c in permutation_coalitions(5, 40, seed=0)]
    for label, members in (("all", everything), ("chains", chains)):
        pd.DataFrame({"members": members, "u": [utility(m) for m in members]}).to_parquet(
            tmp_path / f"{label}.parquet"
        )
    truth = linear + np.array([1.5, 1.5, 0, 0, 0])
    for estimator, table in (
        ("exact", "all"),
        ("kernel", "all"),
        ("kernel_centred", "all"),
        ("loo", "all"),
        ("banzhaf", "all"),
        ("permutation", "chains"),
        ("surrogate", "all"),
    ):
        out = tmp_path / f"{estimator}.parquet"
        extra = (
            ["--interactions", str(tmp_path / "pairs.parquet")] if estimator == "surrogate" else []
        )
        assert (
            main(
                [
                    "attribute",
                    "--contributors",
                    str(tmp_path / "c.parquet"),
                    "--utilities",
                    str(tmp_path / f"{table}.parquet"),
                    "--metric",
                    "u",
                    "--estimator",
                    estimator,
                    "--out",
                    str(out),
                ]
                + extra
            )
            == 0
        )
        values = pd.read_parquet(out).set_index("contributor").loc[names, "shapley"].to_numpy()
        if estimator in ("exact", "kernel", "kernel_centred", "surrogate"):
            assert np.allclose(values, truth, atol=0.05), (estimator, values)
        assert read_table_metadata(out)["estimator"] == estimator
    pairs = pd.read_parquet(tmp_path / "pairs.parquet")
    assert len(pairs) == 10
    top = pairs.iloc[0]
    assert {top["contributor_i"], top["contributor_j"]} == {"a", "b"} and abs(
        top["interaction"] - 3.0
    ) < 0.1


def test_convergence_command(tmp_path, capsys):
    _inputs(tmp_path)
    code = main(
        [
            "convergence",
            "--contributors",
            str(tmp_path / "c.csv"),
            "--utilities",
            str(tmp_path / "u.parquet"),
            "--metric",
            "fd",
            "--estimator",
            "kernel",
            "--out",
            str(tmp_path / "conv.parquet"),
            "--budgets",
            "8",
            "12",
            "16",
            "18",
            "--threshold",
            "0.9",
        ]
    )
    assert code == 0
    table = pd.read_parquet(tmp_path / "conv.parquet")
    assert sorted(table["budget"].unique()) == [8, 12, 16, 18]
    meta = read_table_metadata(tmp_path / "conv.parquet")
    assert "converged" in meta and meta["summary"]["budget"] == [8, 12, 16, 18]
    assert "spearman_with_previous" in capsys.readouterr().out


def test_interactions_need_the_surrogate_and_fail_before_any_output(tmp_path, capsys):
    _inputs(tmp_path)
    code = main(
        [
            "attribute",
            "--contributors",
            str(tmp_path / "c.csv"),
            "--utilities",
            str(tmp_path / "u.parquet"),
            "--metric",
            "fd",
            "--estimator",
            "kernel",
            "--out",
            str(tmp_path / "a.parquet"),
            "--interactions",
            str(tmp_path / "pairs.parquet"),
        ]
    )
    assert code == 2 and "'kernel'" in capsys.readouterr().err
    assert not (tmp_path / "a.parquet").exists()


def test_attribute_without_a_config_fits_the_workflows_default_surrogate():
    from surrogateshap.cli import DEFAULT_SURROGATE
    from surrogateshap.workflow.config import load_yaml

    from .conftest import ROOT

    workflow = load_yaml(ROOT / "config/config.yaml")["surrogate"]
    for key, value in DEFAULT_SURROGATE.items():
        if key != "threads":  # the command's own (the workflow's rule sets the rule's)
            assert workflow[key] == value, key
