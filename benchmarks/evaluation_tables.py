"""Print a run's evaluation tables as Markdown, or write them into a document (nothing typed by hand).

    .venv/bin/python benchmarks/evaluation_tables.py results/<run>/evaluation/tables \
        [--doc PAGE.md] [--marker evaluation-tables]

Prints the run's noise ceilings, chance levels, LDS with intervals, paired differences to
SurrogateSHAP, the cheaper game's fidelity and the evaluation's cost. With `--doc`, replaces what lies between `<!-- evaluation-tables:begin -->` and `<!-- evaluation-tables:end -->`
(`--marker NAME`: between `<!-- NAME:begin -->` and `<!-- NAME:end -->`, one block per run)
in that document with them instead.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from surrogateshap.evaluation import tables as evaluation_tables
from surrogateshap.workflow.io import write_text


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("tables", help="a run's results/<run>/evaluation/tables folder")
    parser.add_argument("--doc", help="write the tables into this page between its markers")
    parser.add_argument("--marker", default="evaluation-tables", help="the block's marker name")
    parser.add_argument("--print", action="store_true", help="print the tables (without --doc too)")
    args = parser.parse_args()
    body = evaluation_tables.markdown_tables(args.tables)
    marker = "" if args.marker == "evaluation-tables" else f" --marker {args.marker}"
    command = f"<!-- written by: benchmarks/evaluation_tables.py {args.tables}{marker} -->\n"
    if args.print or not args.doc:
        print(body)
        return
    doc = Path(args.doc)
    write_text(
        doc, evaluation_tables.replace_between_markers(doc.read_text(), command + body, args.marker)
    )
    print(f"wrote the evaluation tables of {args.tables} into {doc}")


if __name__ == "__main__":
    main()
