import numpy as np
import pandas as pd
import pytest

from surrogateshap.cli import main
from surrogateshap.estimation.payout import PayoutError, payout, split
from surrogateshap.workflow.io import read_table_metadata, write_table

NAMES = ["alice", "bob", "carol", "dave"]


def _table(values, half_width=0.1):
    values = np.asarray(values, dtype=np.float64)
    return pd.DataFrame(
        {
            "contributor": NAMES,
            "shapley": values,
            "ci_low": values - half_width,
            "ci_high": values + half_width,
        }
    )


def _meta(name, direction):
    return {"metric": {"name": name, "direction": direction}, "ci_level": 0.9}


def test_clip_pays_the_helpers_in_proportion_and_sums_to_the_budget():
    table, meta = payout({"q": (_table([3.0, 1.0, -2.0, 0.0]), _meta("q", "higher"))}, 1000.0)
    paid = table.set_index("contributor")["payout"]
    assert paid.to_dict() == pytest.approx({"alice": 750, "bob": 250, "carol": 0, "dave": 0})
    assert table["payout"].sum() == pytest.approx(1000, abs=1e-9)
    assert table["share"].sum() == pytest.approx(1.0)
    assert table["rank"].tolist() == [1, 2, 3, 4] and table["contributor"][0] == "alice"
    assert not meta["metrics"]["q"]["equal_split"]


def test_a_lower_is_better_metric_pays_those_who_lower_it():
    table, _ = payout({"fd": (_table([3.0, 1.0, -2.0, 0.0]), _meta("fd", "lower"))}, 10.0)
    paid = table.set_index("contributor")["payout"]
    assert paid.to_dict() == pytest.approx({"alice": 0, "bob": 0, "carol": 10, "dave": 0})


def test_shift_and_net_policies():
    values = np.array([3.0, 1.0, -2.0, 0.0])
    assert split(values, 20.0, "shift")[0] == pytest.approx([10, 6, 0, 4])
    assert split(values, 4.0, "net")[0] == pytest.approx([6, 2, -4, 0])
    with pytest.raises(PayoutError, match="net: the values sum to -1"):
        split(np.array([1.0, -2.0]), 1.0, "net")
    with pytest.raises(PayoutError, match="'zero'"):
        split(values, 1.0, "zero")


def test_no_helper_splits_equally_and_says_so():
    table, meta = payout({"q": (_table([-1.0, -2.0, 0.0, -0.5]), _meta("q", "higher"))}, 8.0)
    assert table["payout"].tolist() == pytest.approx([2, 2, 2, 2])
    assert meta["metrics"]["q"]["equal_split"]


def test_weighted_metrics_split_the_budget_by_weight():
    tables = {
        "a": (_table([1.0, 0.0, 0.0, 0.0]), _meta("a", "higher")),
        "b": (_table([0.0, 0.0, 0.0, -5.0]), _meta("b", "lower")),
    }
    table, meta = payout(tables, 100.0, weights={"a": 3, "b": 1})
    paid = table.set_index("contributor")
    assert paid["payout"].to_dict() == pytest.approx(
        {"alice": 75, "bob": 0, "carol": 0, "dave": 25}
    )
    assert paid["payout_b"]["dave"] == pytest.approx(25)
    assert meta["metrics"]["a"]["part"] == 75 and meta["metrics"]["b"]["direction"] == "lower"
    # a direction given overrides the table's: no one lowers a, so its part is split equally
    flipped, meta = payout(tables, 100.0, weights={"a": 3, "b": 1}, directions={"a": "lower"})
    assert flipped.set_index("contributor")["payout_a"].tolist() == pytest.approx([18.75] * 4)
    assert meta["metrics"]["a"]["equal_split"]


def test_intervals_hold_the_payout_and_widen_with_the_values_intervals():
    values = [3.0, 1.0, 2.0, 0.5]
    widths = {}
    for half_width in (0.1, 0.4, 1.0):
        table, _ = payout(
            {"q": (_table(values, half_width), _meta("q", "higher"))}, 100.0, draws=4000
        )
        table = table.set_index("contributor").loc[NAMES]
        assert (table["payout_low"] <= table["payout"]).all()
        assert (table["payout"] <= table["payout_high"]).all()
        widths[half_width] = (table["payout_high"] - table["payout_low"]).to_numpy()
    assert (widths[0.1] < widths[0.4]).all() and (widths[0.4] < widths[1.0]).all()
    # values without an interval (none computed, or a design too small for one): no payout
    # interval either, and the metadata says why, rather than a zero-width one that looks certain
    for exact in (
        _table(values).drop(columns=["ci_low", "ci_high"]),
        _table(values).assign(ci_low=np.nan, ci_high=np.nan),
    ):
        table, meta = payout({"q": (exact, _meta("q", "higher"))}, 100.0)
        assert table["payout_low"].isna().all() and table["payout_high"].isna().all()
        assert meta["interval"].startswith("no interval")
        assert np.isclose(table["payout"].sum(), 100.0)


def test_payout_is_seeded():
    tables = {"q": (_table([3.0, 1.0, -2.0, 0.0], 2.0), _meta("q", "higher"))}
    first, _ = payout(tables, 1.0, seed=1)
    assert first.equals(payout(tables, 1.0, seed=1)[0])
    assert not first.equals(payout(tables, 1.0, seed=2)[0])


def _write(tmp_path, name, values, meta=None):
    path = tmp_path / f"{name}.parquet"
    write_table(path, _table(values, 0.5), metadata=meta)
    return str(path)


def test_command_writes_the_table_and_names_bad_input(tmp_path, capsys):
    fd = _write(tmp_path, "frechet_distance", [1.0, -1.0, -3.0, 0.0])  # direction: the package's
    own = _write(tmp_path, "watermark", [2.0, 0.0, 0.0, 2.0], _meta("watermark", "higher"))
    out = tmp_path / "payout.parquet"
    args = ["payout", fd, own, "--budget", "10000", "--out", str(out)]
    assert main(args + ["--metric", "frechet_distance:1", "--metric", "watermark:3"]) == 0
    printed = capsys.readouterr().out
    assert "carol" in printed and "lower is better" in printed
    table = pd.read_parquet(out).set_index("contributor")
    assert table["payout"].sum() == pytest.approx(10000)
    assert table["payout"].to_dict() == pytest.approx(
        {"alice": 3750, "bob": 625, "carol": 1875, "dave": 3750}
    )
    assert read_table_metadata(out)["metrics"]["watermark"]["weight"] == 3
    assert main(args[:-1] + [str(tmp_path / "p.csv")]) == 0
    assert pd.read_csv(tmp_path / "p.csv")["payout"].sum() == pytest.approx(10000)
    capsys.readouterr()
    for extra, message in (
        (["--metric", "fid"], "metric 'fid': none of the tables holds it"),
        (["--budget", "0"], "budget 0.0: must be a number above 0"),
        (["--metric", "watermark:-1"], "weight -1.0 must be a number above 0"),
        (["--metric", "watermark:1:sideways"], "direction 'sideways'"),
    ):
        assert main(args + extra) == 2
        assert message in capsys.readouterr().err, extra
    unknown = _write(tmp_path, "mystery", [1.0, 0.0, 0.0, 0.0])
    assert main(["payout", unknown, "--budget", "1", "--out", str(out)]) == 2
    assert f"{unknown}: metric 'mystery' has no known direction" in capsys.readouterr().err
    assert main(["payout", unknown, "--budget", "1", "--metric", "mystery::lower",
                 "--out", str(out)]) == 0  # fmt: skip
    with pytest.raises(SystemExit):
        main(args + ["--negative", "zero"])
    assert "invalid choice: 'zero'" in capsys.readouterr().err
    assert main(["payout", str(tmp_path / "none.parquet"), "--budget", "1", "--out", str(out)]) == 2
    assert "attribution table not found" in capsys.readouterr().err


def test_the_workflows_step_reads_the_config_section_and_the_report_shows_it(tmp_path):
    """config/config.yaml's payout section (budget 1: fractions; every metric, weight 1) on two
    published tables: the table sums to the budget, and the report's section shows its top
    rows and what the rest share."""
    from surrogateshap.report.page import payout_html
    from surrogateshap.workflow.config import load_yaml
    from surrogateshap.workflow.steps.attribution import payout as step

    from .conftest import ROOT

    cfg = load_yaml(ROOT / "config/config.yaml")["payout"]
    paths = [
        _write(tmp_path, "a", [1.0, 0.0, 2.0, 1.0], _meta("frechet_distance", "lower")),
        _write(tmp_path, "b", [1.0, 0.0, 2.0, 1.0], _meta("marker_rate", "higher")),
    ]
    out = tmp_path / "payout.parquet"
    step(attribution_paths=paths, cfg=cfg, out_path=str(out))
    table, meta = pd.read_parquet(out), read_table_metadata(out)
    assert table["payout"].sum() == pytest.approx(cfg["budget"])
    assert meta["metrics"]["frechet_distance"]["equal_split"]  # no one lowers it
    assert table.set_index("contributor")["payout"]["carol"] == pytest.approx(0.125 + 0.25)
    page = payout_html(table, meta, top=2)
    assert 'id="payout"' in page and "carol" in page and "dave" not in page
    assert "2 more contributor(s) share" in page and "split equally" in page
