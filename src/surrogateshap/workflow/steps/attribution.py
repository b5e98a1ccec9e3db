"""The rules of attribute.smk: the surrogate's Shapley values and interactions for one metric,
and the payout table (the publish_* rules of that file only copy files: no package)."""

from __future__ import annotations

import pandas as pd

from ...estimation import coalitions as coal
from ...estimation import estimators
from ..io import read_table_metadata, write_table
from .common import contributor_names, log


def attribute(
    *,
    data_dir: str,
    utilities_path: str,
    metric: str,
    cfg: dict,
    threads: int,
    out_path: str,
    interactions_path: str | None = None,
) -> None:
    """The surrogate's values for `metric`, XGBoost on the rule's `threads`."""
    from ...proxy.metrics import get_metric

    names = contributor_names(data_dir)
    x, y = coal.read_utility_table(
        utilities_path, metric, names
    )  # refuses NaN / infinite utilities, naming rows
    x, y = estimators.merge_repeats(x, y, utilities_path)
    values, diagnostics = estimators.attribute(
        "surrogate",
        x,
        y,
        names,
        dict(cfg, threads=threads),
        cfg["seed"],
        progress=log.info,
        pairs=None if interactions_path else cfg["top_pairs"],
    )
    if (
        interactions_path
    ):  # every pair computed (those of the 64 strongest contributors when n > 64)
        interactions = pd.DataFrame(
            diagnostics.pop("top_interactions"),
            columns=["contributor_i", "contributor_j", "interaction"],
        )
        write_table(interactions_path, interactions, metadata={"metric": metric})
        if cfg["top_pairs"]:
            diagnostics["top_interactions"] = interactions.head(cfg["top_pairs"]).to_dict("records")
    diagnostics["metric"] = (
        read_table_metadata(utilities_path).get("metrics", {}).get(metric)
        or get_metric(metric).info()
    )
    log.info(
        "%s: out-of-fold R^2 %.3f, efficiency gap %.4g; top: %s",
        metric,
        diagnostics["oof_r2"],
        diagnostics["efficiency_gap"],
        ", ".join(map(repr, values["contributor"].head(3))),
    )
    write_table(out_path, values, metadata=diagnostics)


def payout(*, attribution_paths: list[str], cfg: dict, out_path: str) -> None:
    """The payout table of config `payout` from the published attribution tables."""
    from ...estimation.payout import payout_from_files

    weights = cfg.get("metrics")
    table, meta = payout_from_files(
        attribution_paths,
        cfg["budget"],
        [(m, float(w), None) for m, w in weights.items()] if weights else None,
        cfg["negative"],
        cfg["draws"],
        None,  # the attribution tables' level
        cfg["seed"],
    )
    for name, m in meta["metrics"].items():
        if m["equal_split"]:
            log.warning("payout: no contributor helps %s; its part is split equally", name)
    log.info("payout of %s: %s", cfg["budget"], ", ".join(map(repr, table["contributor"].head(3))))
    write_table(out_path, table, metadata=meta)
