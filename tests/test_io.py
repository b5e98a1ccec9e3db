import pandas as pd
import pytest

from surrogateshap.workflow.io import atomic_path, read_table_metadata, write_table


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


def test_a_process_killed_mid_write_leaves_no_output(tmp_path):
    """SIGKILL (what scancel ends with) inside a write: the target never appears, only the temporary."""
    import signal
    import subprocess
    import sys

    target = tmp_path / "shard.parquet"
    code = (
        "import os, signal\nfrom surrogateshap.workflow.io import atomic_path\n"
        f"with atomic_path({str(target)!r}) as tmp:\n"
        "    with open(tmp, 'wb') as f:\n"
        "        f.write(b'PAR1' + b'x' * 1_000_000)\n"
        "        f.flush()\n"
        "        os.kill(os.getpid(), signal.SIGKILL)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], timeout=120)
    assert result.returncode == -signal.SIGKILL
    assert not target.exists()
    assert [p.name.endswith(".partial") for p in tmp_path.iterdir()] == [True]


def test_outputs_get_the_umask_mode_not_a_private_one(tmp_path):
    import os

    old = os.umask(0o022)
    try:
        write_table(tmp_path / "t.parquet", pd.DataFrame({"a": [1]}))
    finally:
        os.umask(old)
    assert (tmp_path / "t.parquet").stat().st_mode & 0o777 == 0o644
