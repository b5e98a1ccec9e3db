"""The rules of data.smk: the prepared dataset and the coalitions of the proxy game."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from ...data import datasets as data_mod
from ...data import planted
from ...estimation import coalitions as coal
from ..io import write_json, write_table
from .common import contributor_names, log


def prepare_data(*, data_cfg: dict, seed: int, out_dir: str) -> None:
    """Export the digits (or point at the user's folder), validate, write items/contributors."""
    out = Path(out_dir)
    if data_cfg["source"] == "digits":
        digits = data_cfg["digits"]
        table = data_mod.export_digits(out, digits["splits_per_class"], seed)
        write_table(out / "metadata.parquet", table)
        root, metadata = out, out / "metadata.parquet"
    else:
        root, metadata = (
            Path(data_cfg["root"]),
            Path(data_cfg["metadata"] or Path(data_cfg["root"]) / "metadata.csv"),
        )
    dataset = data_mod.load_configured(data_cfg, root, metadata)
    # from the user's files, before planting: a planted effect does not change the model's kind
    dataset.color = data_mod.resolve_color(data_cfg, root, dataset.items["file_name"])
    if planted.entries(data_cfg):  # into the stage's own folder: the user's files stay as they are
        copy_to = None if data_cfg["source"] == "digits" else out / "planted"
        root = dataset.root = planted.plant(
            root, dataset.items, planted.entries(data_cfg), seed, copy_to, log.info
        )
    log.info(
        "dataset %s: %d items from %d contributors (the model sees them in %s)",
        root,
        len(dataset.items),
        dataset.n,
        dataset.color,
    )
    data_mod.write_dataset_tables(out, dataset)
    write_json(
        out / "dataset.json",
        {
            "root": str(Path(root).resolve()),
            "n_items": len(dataset.items),
            "n_contributors": dataset.n,
            "color": dataset.color,
        },
    )


def draw_coalitions(*, data_dir: str, cfg: dict, out_path: str) -> None:
    """The coalitions to score: the user's table (`coalitions.table`) or a seeded sample."""
    names = contributor_names(data_dir)
    if cfg.get("table"):
        members = read_coalition_members(cfg["table"])
        x = coal.indicator_matrix(members, names, source=cfg["table"])
        chosen = [tuple(np.flatnonzero(row).tolist()) for row in x]
    else:
        chosen = coal.sample_coalitions(
            len(names),
            cfg["count"],
            cfg["sampler"],
            cfg["seed"],
            cfg["p"],
            cfg.get("paired", False),
        )
    log.info("%d coalitions of %d contributors", len(chosen), len(names))
    write_table(out_path, coal.coalition_table(chosen, names))


def read_coalition_members(path: str) -> pd.Series:
    frame = pd.read_parquet(path) if str(path).endswith(".parquet") else pd.read_csv(path)
    if "members" not in frame.columns:
        raise ValueError(
            f"{path}: coalition table has no 'members' column (columns: {list(frame.columns)})"
        )
    members = frame["members"]
    if not str(path).endswith(
        ".parquet"
    ):  # CSV: an empty cell (read as NaN) is the empty coalition
        members = members.map(lambda v: "" if isinstance(v, float) and np.isnan(v) else v)
    if members.map(lambda v: isinstance(v, str)).any():  # CSV: members separated by '|'
        members = members.map(
            lambda v: [m for m in str(v).split("|") if m] if isinstance(v, str) else list(v)
        )
    return members.map(list)
