"""Each stage's time and memory for one whole run of the workflow: runs Snakemake with the
arguments given after `--`, then reads the `benchmark:` files (logs/benchmarks/) its jobs wrote
and prints one row per rule (jobs, wall seconds summed over its jobs, the longest job, peak
resident memory of one job, CPU seconds) and the run's wall time.

    .venv/bin/python benchmarks/stages.py -- --cores 2 --configfile config/datasets/scenes.yaml

Only jobs that ran count: start from an empty results/ folder (or one that holds none of the
run's stages) to time the run from scratch. Rules without a benchmark file (the final `all`)
are not listed; their time is in the wall time.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

import _common
import pandas as pd


def stage_table(since: float, logs: Path) -> pd.DataFrame:
    """One row per rule from the benchmark files written after `since` (a time.time())."""
    rows = []
    for path in sorted((logs / "benchmarks").rglob("*.tsv")):
        if path.stat().st_mtime < since:
            continue
        rule = path.relative_to(logs / "benchmarks").parts[0]
        for _, row in pd.read_csv(path, sep="\t").iterrows():
            rows.append(
                {"rule": rule, "s": row["s"], "max_rss": row["max_rss"], "cpu": row["cpu_time"]}
            )
    if not rows:
        return pd.DataFrame(columns=["rule", "jobs", "wall s", "longest s", "peak MB", "CPU s"])
    frame = pd.DataFrame(rows)
    table = frame.groupby("rule", sort=False).agg(
        jobs=("s", "size"),
        wall=("s", "sum"),
        longest=("s", "max"),
        peak=("max_rss", "max"),
        cpu=("cpu", "sum"),
    )
    table = table.sort_values("wall", ascending=False).reset_index()
    return table.rename(
        columns={"wall": "wall s", "longest": "longest s", "peak": "peak MB", "cpu": "CPU s"}
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "snakemake_args", nargs=argparse.REMAINDER, help="after --: Snakemake's arguments"
    )
    args = parser.parse_args()
    snakemake_args = args.snakemake_args[1:] if args.snakemake_args[:1] == ["--"] else []
    if not snakemake_args:
        parser.error("give Snakemake's arguments after --, e.g. -- --cores 2 --configfile X")
    since = time.time()
    start = time.perf_counter()
    snakemake = Path(sys.executable).with_name("snakemake")
    done = subprocess.run([str(snakemake), *snakemake_args], cwd=_common.ROOT, check=False)
    wall = time.perf_counter() - start
    table = stage_table(since, _common.ROOT / "logs")
    print(table.to_string(index=False, float_format=lambda v: f"{v:,.1f}"))
    print(
        f"run wall time: {wall:,.0f} s ({wall / 60:.1f} min); Snakemake exit status {done.returncode}"
    )
    sys.exit(done.returncode)


if __name__ == "__main__":
    main()
