"""What fingerprinting and checking a folder dataset cost at parse time (every `snakemake` call,
and every cluster job, parses the workflow and so fingerprints the data once; the scheduling
process also checks the metadata table before the first job).

    .venv/bin/python benchmarks/fingerprint.py [--sizes 1000 100000] [--repeats 3] [--quick]

For each size, a temporary folder gets that many small image files (their bytes do not matter:
the fingerprint reads the metadata table's bytes and stats each listed image, it opens no image)
and a metadata.csv listing them; `surrogateshap.workflow.fingerprint.dataset_fingerprint` is timed (the
median of `--repeats` calls, files in the OS cache, as on a second `snakemake` call), split into
reading + hashing the table and the per-image stats. A network file system pays its own stat
latency per image on top: measure there with the same command. The "check s" column times the
parse-time check of the table (`surrogateshap.workflow.preflight.dataset_findings`: columns, duplicates,
names, each file's presence and first bytes; no image is decoded).
"""

from __future__ import annotations

import argparse
import hashlib
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import Table  # noqa: E402

from surrogateshap.data.datasets import read_metadata  # noqa: E402
from surrogateshap.workflow.fingerprint import dataset_fingerprint  # noqa: E402
from surrogateshap.workflow.preflight import Findings, dataset_findings  # noqa: E402

PNG = b"\x89PNG\r\n\x1a\n"


def make_dataset(root: Path, n: int, contributors: int = 100) -> None:
    (root / "img").mkdir(parents=True)
    lines = ["file_name,contributor,label"]
    for i in range(n):
        name = f"img/{i:06d}.png"
        # a PNG signature and 4 bytes: the check reads a file's first bytes, nothing decodes it
        (root / name).write_bytes(PNG + i.to_bytes(4, "little"))
        lines.append(f"{name},contributor-{i % contributors},{i % 10}")
    (root / "metadata.csv").write_text("\n".join(lines) + "\n")


def timed(function, repeats: int) -> float:
    seconds = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        seconds.append(time.perf_counter() - start)
    return statistics.median(seconds)


def measure(root: Path, n: int, repeats: int) -> tuple:
    """(images, table MB, read+hash s, stat s, total s, us per image) for n images in root."""
    make_dataset(root, n)
    metadata = root / "metadata.csv"
    config = {"source": "folder", "root": str(root), "metadata": str(metadata)}
    fingerprint = dataset_fingerprint(config)
    assert fingerprint["images"] == n, fingerprint
    total = timed(lambda: dataset_fingerprint(config), repeats)
    names = read_metadata(metadata)["file_name"].tolist()
    read = timed(
        lambda: (
            hashlib.sha256(metadata.read_bytes()).hexdigest(),
            read_metadata(metadata)["file_name"].tolist(),
        ),
        repeats,
    )
    base = str(root)
    stats = timed(lambda: [os.stat(os.path.join(base, name)) for name in names], repeats)
    check_config = {
        "data": {
            **config,
            "contributor_column": "contributor",
            "label_column": "label",
            "min_items": 1,
            "planted": [],
        }
    }
    found = Findings()
    dataset_findings(check_config, found)
    assert not found.problems and len(found.contributors) == 100, found
    check = timed(lambda: dataset_findings(check_config, Findings()), repeats)
    return n, metadata.stat().st_size / 1e6, read, stats, total, total / n * 1e6, check


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 100_000])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="sizes 100 and 1000, one repeat")
    args = parser.parse_args()
    if args.quick:
        args.sizes, args.repeats = [100, 1000], 1
    table = Table(
        ("images", "d"),
        ("table MB", ".2f"),
        ("read+hash s", ".3f", 12),
        ("stat s", ".3f"),
        ("total s", ".3f"),
        ("us/image", ".1f"),
        ("check s", ".3f"),
    )
    for n in args.sizes:
        with tempfile.TemporaryDirectory() as tmp:
            table.row(*measure(Path(tmp), n, args.repeats))


if __name__ == "__main__":
    main()
