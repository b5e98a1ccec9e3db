"""What every step shares: its log, its shard of a scatter, the prepared dataset, the
Fréchet reference and coalition tables as index tuples."""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from ...data import datasets as data_mod
from ...estimation import coalitions as coal
from ...proxy.metric_base import Reference

log = logging.getLogger("surrogateshap")


def setup_logging(log_path: str | None) -> None:
    handlers = [logging.StreamHandler()]
    if log_path:
        Path(log_path).parent.mkdir(parents=True, exist_ok=True)
        handlers.append(logging.FileHandler(log_path, mode="w"))
    logging.basicConfig(
        level=logging.INFO,
        format="%(asctime)s %(levelname)s %(message)s",
        handlers=handlers,
        force=True,
    )
    sys.excepthook = _log_uncaught
    # which copy of the package this job runs (a deployed workflow runs its own: docs/deploy.md)
    log.info("surrogateshap package: %s", Path(__file__).resolve().parents[2])


def _log_uncaught(kind, error, trace) -> None:
    """Put a failing step's error in its log file too (Snakemake points users there)."""
    if isinstance(error, (data_mod.DataError, ValueError, FileNotFoundError)):
        log.error("%s", error)  # a bad input: its message names the file, field or value
    else:
        log.error("step failed", exc_info=(kind, error, trace))
    sys.__excepthook__(kind, error, trace)


def shard_of(scatteritem: str) -> tuple[int, int]:
    """Snakemake's '3-of-8' -> (2, 8), zero-based."""
    index, total = scatteritem.split("-of-")
    return int(index) - 1, int(total)


def load_prepared(data_dir: str) -> data_mod.Dataset:
    """The dataset as the prepare_data rule left it in `data_dir`."""
    data_dir = Path(data_dir)
    info = json.loads((data_dir / "dataset.json").read_text())
    return data_mod.Dataset(
        Path(info["root"]),
        pd.read_parquet(data_dir / "items.parquet"),
        pd.read_parquet(data_dir / "contributors.parquet"),
        info.get("color", "grayscale"),
    )


def contributor_names(data_dir: str) -> list[str]:
    return pd.read_parquet(Path(data_dir) / "contributors.parquet")["contributor"].tolist()


def load_reference(path: str) -> Reference:
    return Reference.from_features(
        np.stack(pd.read_parquet(path)["feature"].to_numpy()).astype(np.float64)
    )


def coalition_tuples(table: pd.DataFrame, names: list[str]) -> list[tuple[int, ...]]:
    """The `members` column of a coalition table as sorted tuples of contributor indices."""
    x = coal.indicator_matrix(table["members"], names)
    return [tuple(np.flatnonzero(row).tolist()) for row in x]
