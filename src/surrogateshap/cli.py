"""The `surrogateshap` command line: `surrogateshap attribute ...` (also what the workflow computes)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from . import coalitions as coal
from . import estimators
from .io import write_table

DEFAULT_SURROGATE = {
    "params": {"n_estimators": 300, "subsample": 1.0, "min_child_weight": 1},
    "grid": {"max_depth": [2, 3, 4], "learning_rate": [0.05, 0.1], "base": ["none", "linear"]},
    "cv_folds": 5, "bootstrap": 30, "ci_level": 0.9, "top_k": 3, "threads": 1, "anchor_endpoints": True,
}


def read_contributors(path: str) -> list[str]:
    frame = pd.read_parquet(path) if path.endswith(".parquet") else pd.read_csv(path, dtype=str, keep_default_na=False)
    if "contributor" not in frame.columns:
        raise ValueError(f"{path}: no 'contributor' column (columns: {list(frame.columns)})")
    names = frame["contributor"].astype(str).tolist()
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise ValueError(f"{path}: contributor(s) listed twice: {repeated[:10]}")
    return names


def read_utilities(path: str, metric: str, names: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """Indicators and utilities in table order (repeats kept)."""
    table = pd.read_parquet(path)
    for column in ("members", metric):
        if column not in table.columns:
            raise ValueError(f"{path}: no column {column!r} (columns: {list(table.columns)})")
    x = coal.indicator_matrix(table["members"], names, source=path)
    y = pd.to_numeric(table[metric], errors="coerce").to_numpy(np.float64)
    return x, y


def cmd_attribute(args) -> int:
    names = read_contributors(args.contributors)
    x, y = read_utilities(args.utilities, args.metric, names)
    if args.estimator not in ("permutation", "hybrid"):  # these read chains in table order
        x, y = estimators.average_repeats(x, y)
    values, diagnostics = estimators.attribute(args.estimator, x, y, names, _settings(args), args.seed,
                                               pairs=None if args.interactions else 0)
    pairs = pd.DataFrame(diagnostics.pop("top_interactions", []))  # their own file, not the metadata
    write_table(args.out, values, metadata=diagnostics)
    print(values.to_string(index=False))
    print(json.dumps(diagnostics, indent=2, default=str))
    if args.interactions:
        write_table(args.interactions, pairs)
        print(f"strongest interactions ({args.interactions}):")
        print(pairs.head(10).to_string(index=False))
    return 0


def _settings(args) -> dict:
    cfg = dict(DEFAULT_SURROGATE)
    if args.config:
        cfg.update(json.loads(Path(args.config).read_text()))
    return cfg


def cmd_convergence(args) -> int:
    from .convergence import convergence

    names = read_contributors(args.contributors)
    x, y = read_utilities(args.utilities, args.metric, names)
    per_player, summary, decision = convergence(args.estimator, x, y, names, _settings(args), args.seed,
                                                budgets=args.budgets, threshold=args.threshold)
    write_table(args.out, per_player, metadata={"summary": summary.to_dict("list"), **decision})
    print(summary.to_string(index=False))
    print(json.dumps(decision))
    return 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="surrogateshap", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    attr = sub.add_parser("attribute", help="Shapley values from a utility table")
    attr.add_argument("--contributors", required=True, help="CSV or Parquet with a 'contributor' column")
    attr.add_argument("--utilities", required=True, help="Parquet: 'members' and one column per metric")
    attr.add_argument("--metric", required=True)
    attr.add_argument("--estimator", default="surrogate", choices=estimators.ESTIMATORS)
    attr.add_argument("--out", required=True, help="Parquet output")
    attr.add_argument("--seed", type=int, default=0)
    attr.add_argument("--config", help="JSON file overriding surrogate settings")
    attr.add_argument("--interactions", help="Parquet output of the surrogate's pairwise interaction values")
    attr.set_defaults(func=cmd_attribute)
    conv = sub.add_parser("convergence", help="values and ranks on growing prefixes of the table, and a stopping rule")
    for flag, kwargs in (("--contributors", {"required": True}), ("--utilities", {"required": True}),
                         ("--metric", {"required": True}), ("--out", {"required": True}),
                         ("--estimator", {"default": "surrogate", "choices": estimators.ESTIMATORS}),
                         ("--seed", {"type": int, "default": 0}), ("--config", {}),
                         ("--budgets", {"type": int, "nargs": "+"}),
                         ("--threshold", {"type": float, "default": 0.95})):
        conv.add_argument(flag, **kwargs)
    conv.set_defaults(func=cmd_convergence)
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except (ValueError, FileNotFoundError) as error:
        print(f"surrogateshap: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
