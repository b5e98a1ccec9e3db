"""How long Snakemake takes to plan the workflow (`snakemake -n`) as the number of generation
shards grows, with the exponent of a log-log fit.

    .venv/bin/python benchmarks/dag.py [--shards 10 30 100 300 1000] [--contributors 1000] [--repeats 2]

The workflow is copied to a temporary folder (as the tests do) with a config that points
`data` at a folder dataset of `--contributors` contributors: the metadata table and a stand-in
for each image (a PNG signature: the parse-time check of the table stats each file and reads its
first bytes, and nothing decodes them in a dry run), with twice as many coalitions as
contributors (fewer than n + 1 are refused). The contributors enter the DAG only through the
parse-time check; the jobs are planned from the shards.
Each size is a fresh `snakemake -n --quiet rules` process: its wall time includes Snakemake's
start-up (the smallest size shows about how much), and the job counts it prints are checked.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import _common
import numpy as np
import pandas as pd
import yaml

sys.path.insert(0, str(_common.ROOT))
from tests.conftest import copy_workflow, planned_jobs  # noqa: E402  (the tests' own copy and dry-run helpers)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--shards", type=int, nargs="+", default=[10, 30, 100, 300, 1000])
    parser.add_argument("--contributors", type=int, default=1000)
    parser.add_argument(
        "--repeats", type=int, default=2, help="dry runs per size (the median is shown)"
    )
    parser.add_argument("--quick", action="store_true", help="tiny sizes, for a smoke test")
    args = parser.parse_args()
    if args.quick:
        args.shards, args.contributors, args.repeats = [2, 4], 30, 1
    with tempfile.TemporaryDirectory() as tmp:
        workdir = copy_workflow(Path(tmp) / "workflow")
        data = Path(tmp) / "data"
        data.mkdir()
        names = [f"contributor-{i:04d}" for i in range(args.contributors)]
        files = [f"{name}-{k}.png" for name in names for k in range(2)]
        for file in files:
            (data / file).write_bytes(b"\x89PNG\r\n\x1a\n")
        pd.DataFrame({"file_name": files, "contributor": np.repeat(names, 2)}).to_csv(
            data / "metadata.csv", index=False
        )
        print(
            f"snakemake -n on the default config with a folder dataset of {args.contributors} contributors "
            f"(median of {args.repeats})"
        )
        table = _common.Table(("shards", "d"), ("jobs", "d"), ("seconds", ".2f"))
        results = []
        for shards in args.shards:
            config = {
                "run": "dag",
                "data": {"source": "folder", "root": str(data)},
                # the default's digits features on a folder, as asked for (planning cost only)
                "features": {"allow_digits_on_folder": True},
                "generation": {"shards": shards},
                "coalitions": {"count": 2 * args.contributors},
            }
            path = workdir / f"dag-{shards}.yaml"
            path.write_text(yaml.safe_dump(config))
            runs = [
                _common.timed(planned_jobs, workdir, "--configfile", path.name)
                for _ in range(args.repeats)
            ]
            jobs = runs[0][1]
            if jobs.get("generate_pool") != shards or jobs.get("extract_features") != shards:
                raise SystemExit(
                    f"dry run with {shards} shards planned {jobs}, not {shards} generation jobs"
                )
            seconds = _common.median(s for s, _ in runs)
            results.append((shards, seconds))
            table.row(shards, sum(jobs.values()), seconds)
    data = np.array(results, dtype=float)
    if len(data) > 1:
        print(
            f"log-log fit: seconds ~ shards^{_common.loglog_exponents(data[:, :1], data[:, 1])[0]:.2f}; "
            f"between the two largest sizes: shards^{_common.loglog_exponents(data[-2:, :1], data[-2:, 1])[0]:.2f}"
        )


if __name__ == "__main__":
    main()
