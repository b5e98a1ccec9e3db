"""Imported first by every rule script: puts this workflow's own package (src/ beside
workflow/) first on sys.path, so a job runs the code of the workflow it belongs to, wherever
that workflow lives (its clone, a module, a snakedeploy deployment; docs/deploy.md) and in
whichever environment (a conda env holds only the dependencies). Snakemake puts a local
script's folder on sys.path, which is how the scripts find this file. Without src/, an
installed package is used, as at parse time (rules/common.smk)."""

import sys
from pathlib import Path

SRC = str(Path(__file__).resolve().parents[2] / "src")
if Path(SRC, "surrogateshap", "__init__.py").is_file():
    # first, not merely present: Snakemake's preamble appends the controller's sys.path, after
    # site-packages (where an installed surrogateshap would win)
    while SRC in sys.path:
        sys.path.remove(SRC)
    sys.path.insert(0, SRC)
