"""Write the docs' evaluation tables from a run's tables (nothing typed by hand).

    .venv/bin/python benchmarks/evaluation_tables.py results/<run>/evaluation/tables \
        [--doc docs/evaluation-power.md] [--marker evaluation-tables]

Replaces what lies between `<!-- evaluation-tables:begin -->` and `<!-- evaluation-tables:end -->`
(`--marker NAME`: between `<!-- NAME:begin -->` and `<!-- NAME:end -->`, one block per run)
in the document with the run's noise ceilings, LDS with intervals, paired differences to
SurrogateSHAP, the cheaper game's fidelity and the evaluation's cost (`--print`: print instead).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from surrogateshap.evaluation import tables as evaluation_tables
from surrogateshap.workflow.io import write_text


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("tables", help="a run's results/<run>/evaluation/tables folder")
    parser.add_argument("--doc", default="docs/evaluation-power.md")
    parser.add_argument("--marker", default="evaluation-tables", help="the block's marker name")
    parser.add_argument("--print", action="store_true", help="print the tables, write nothing")
    args = parser.parse_args()
    body = evaluation_tables.markdown_tables(args.tables)
    marker = "" if args.marker == "evaluation-tables" else f" --marker {args.marker}"
    command = f"<!-- written by: benchmarks/evaluation_tables.py {args.tables}{marker} -->\n"
    if args.print:
        print(body)
        return
    doc = Path(args.doc)
    write_text(
        doc, evaluation_tables.replace_between_markers(doc.read_text(), command + body, args.marker)
    )
    print(f"wrote the evaluation tables of {args.tables} into {doc}")


if __name__ == "__main__":
    main()
