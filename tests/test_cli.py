import numpy as np
import pandas as pd

from surrogateshap.cli import main
from surrogateshap.coalitions import sample_coalitions
from surrogateshap.io import read_table_metadata


def _inputs(tmp_path, extra_member=None):
    names = ["alice", "bob", "carol", "dave"]
    pd.DataFrame({"contributor": names}).to_csv(tmp_path / "c.csv", index=False)
    coalitions = sample_coalitions(4, 16, "shapley_kernel", 0)
    members = [[names[i] for i in c] for c in coalitions]
    if extra_member:
        members[3] = members[3] + [extra_member]
    values = np.array([1.0, 2.0, 0.0, -1.0])
    y = [float(sum(values[i] for i in c)) for c in coalitions]
    pd.DataFrame({"members": members + members[:2], "fd": y + y[:2]}).to_parquet(tmp_path / "u.parquet")
    return values


def test_attribute_writes_values_and_diagnostics(tmp_path, capsys):
    values = _inputs(tmp_path)
    code = main(["attribute", "--contributors", str(tmp_path / "c.csv"), "--utilities", str(tmp_path / "u.parquet"),
                 "--metric", "fd", "--out", str(tmp_path / "a.parquet")])
    assert code == 0
    table = pd.read_parquet(tmp_path / "a.parquet").set_index("contributor")
    assert np.allclose(table.loc[["alice", "bob", "carol", "dave"], "shapley"], values, atol=0.05)
    assert read_table_metadata(tmp_path / "a.parquet")["n_coalitions"] == 16  # repeats averaged
    assert "oof_r2" in capsys.readouterr().out


def test_unknown_contributor_and_missing_metric_are_named(tmp_path, capsys):
    _inputs(tmp_path, extra_member="mallory")
    args = ["attribute", "--contributors", str(tmp_path / "c.csv"), "--utilities", str(tmp_path / "u.parquet"),
            "--out", str(tmp_path / "a.parquet")]
    assert main(args + ["--metric", "fd"]) == 2
    assert "'mallory'" in capsys.readouterr().err
    assert main(args + ["--metric", "nope"]) == 2
    assert "'nope'" in capsys.readouterr().err
