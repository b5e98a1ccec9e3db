import pandas as pd
import pytest

from surrogateshap.io import atomic_path, read_table_metadata, write_table


def test_a_failed_write_leaves_nothing_that_looks_finished(tmp_path):
    target = tmp_path / "out.parquet"
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_bytes(b"half a file")
            raise RuntimeError("killed mid-write")
    assert not target.exists()
    assert list(tmp_path.iterdir()) == []


def test_a_failed_rewrite_keeps_the_previous_file(tmp_path):
    target = tmp_path / "out.parquet"
    write_table(target, pd.DataFrame({"a": [1]}), metadata={"v": 1})
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_bytes(b"garbage")
            raise RuntimeError("killed")
    assert pd.read_parquet(target)["a"].tolist() == [1]
    assert read_table_metadata(target) == {"v": 1}
