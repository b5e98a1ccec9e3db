"""The evaluation's tables (`write_tables`: LDS, noise ceilings, fidelity, counterfactual removal,
planted placements, cost) from the retraining shards and the methods' values, and their Markdown
rendering for the docs (`markdown_tables`, `replace_between_markers`).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from .scores import (
    check_no_leakage,
    empty_gap,
    expected_placements,
    game_fidelity,
    lds_table,
    placement_table,
    replicate_means,
    spearman,
)


def _interaction_matrix(path: str, names: list[str]) -> np.ndarray:
    position = {name: i for i, name in enumerate(names)}
    pairs = pd.read_parquet(path)
    matrix = np.zeros((len(names), len(names)))
    i = pairs["contributor_i"].map(position).to_numpy()
    j = pairs["contributor_j"].map(position).to_numpy()
    matrix[i, j] = matrix[j, i] = pairs["interaction"].to_numpy()
    return matrix


def _read_rows(paths: list[str]) -> pd.DataFrame:
    frames = [pd.read_parquet(p) for p in paths]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def write_tables(
    data_dir: str,
    values_path: str,
    interaction_paths: list[str],
    heldout_proxy_path: str,
    heldout_shards: list[str],
    removals_path: str,
    removal_shards: list[str],
    fidelity_shards: list[str],
    metric_names: list[str],
    cfg: dict,
    out_dir: str,
    threads: int = 1,
) -> None:
    """The evaluation's tables: LDS (interval, paired difference, ceiling), noise ceilings, proxy
    fidelity, the cheaper game's fidelity, counterfactual removal, planted placements, cost.
    The planted contributors: the data section's (`planted.entries`)."""
    from pathlib import Path

    from ..data.planted import entries
    from ..estimation import coalitions as coal
    from ..estimation import surrogate
    from ..workflow.io import atomic_dir, read_table_metadata, write_json, write_table

    eval_cfg, surrogate_cfg = cfg["evaluation"], cfg["surrogate"]
    # the data section's planted contributors (ground truth by construction)
    planted = entries(
        {
            "source": cfg.get("data.source"),
            "digits": {"planted": cfg.get("data.digits.planted")},
            "planted": cfg.get("data.planted"),
        }
    )
    out = Path(out_dir)
    names = pd.read_parquet(Path(data_dir) / "contributors.parquet")["contributor"].tolist()
    values = pd.read_parquet(values_path)
    replicate_rows = _read_rows(heldout_shards)
    removed = _read_rows(removal_shards)
    full = _read_rows(fidelity_shards)
    for rows in (replicate_rows, removed, full):
        if len(rows):
            check_no_leakage(rows)
    proxy = pd.read_parquet(heldout_proxy_path).set_index("coalition")
    heldout = replicate_means(replicate_rows, metric_names)
    heldout = heldout.join(proxy[["draw"] + metric_names], on="coalition", rsuffix="_proxy")
    scored = (heldout["draw"] >= 0).to_numpy()

    interactions = {
        m: _interaction_matrix(p, names) for m, p in zip(metric_names, interaction_paths)
    }
    lds_rows, ceilings = lds_table(
        values,
        interactions,
        heldout,
        replicate_rows,
        names,
        metric_names,
        eval_cfg["lds"],
        eval_cfg["seed"],
        empty_gap(heldout, metric_names),
    )

    # Proxy fidelity: utilities over the same coalitions, and Shapley values of each game.
    all_retrained = pd.concat(
        [replicate_rows.assign(source="heldout")]
        + ([removed.assign(source="counterfactual")] if len(removed) else [])
        + ([full.assign(source="fidelity")] if len(full) else []),
        ignore_index=True,
    )
    same_game = pd.concat(
        [heldout.assign(source="heldout")]
        + ([replicate_means(removed, metric_names)] if len(removed) else []),
        ignore_index=True,
    )
    x_all = coal.indicator_matrix(same_game["members"], names)
    fit_cfg = dict(surrogate_cfg, bootstrap=0, threads=threads)
    fidelity_rows = []
    for metric in metric_names:
        game_values, diag = surrogate.attribute(
            x_all, same_game[metric].to_numpy(np.float64), names, fit_cfg, surrogate_cfg["seed"]
        )
        proxy_values = values[(values["method"] == "surrogate") & (values["metric"] == metric)]
        shapley_rho = float("nan")
        if len(proxy_values):
            a = game_values.set_index("contributor").loc[names, "shapley"]
            b = proxy_values.set_index("contributor").loc[names, "value"]
            shapley_rho = spearman(a, b)
        fidelity_rows.append(
            {
                "metric": metric,
                "utility_spearman": spearman(
                    heldout[f"{metric}_proxy"][scored], heldout[metric][scored]
                ),
                "shapley_spearman": shapley_rho,
                "heldout_coalitions": int(scored.sum()),
                "retrained_coalitions": int(len(same_game)),
                "retraining_game_oof_r2": diag["oof_r2"],
            }
        )
    fidelity = pd.DataFrame(fidelity_rows)
    game_name = eval_cfg["retrain"]["game"]
    cheap_fidelity = game_fidelity(heldout, full, metric_names, game_name)

    # Counterfactual removal: the change from the retrained grand coalition.
    removals = pd.read_parquet(removals_path)
    grand = heldout[heldout["members"].map(len) == len(names)].iloc[0]
    if len(removals):
        by_coalition = replicate_means(removed, metric_names).set_index("coalition")
        for metric in metric_names:
            removals[f"{metric}_retrained"] = removals["coalition"].map(by_coalition[metric])
        removals["change"] = [
            by_coalition.loc[c, m] - grand[m]
            for c, m in zip(removals["coalition"], removals["metric"])
        ]
    counterfactual = removals.drop(columns=["members"])

    expected = expected_placements(planted, names, metric_names)
    placement = placement_table(values, expected)

    cost = read_table_metadata(values_path)["cost"]

    def spent(rows):
        return {
            "retrains": int(len(rows)),
            "coalitions": int(rows["coalition"].nunique()) if len(rows) else 0,
            "seconds": float(rows["seconds"].sum()) if len(rows) else 0.0,
            "train_seconds": float(rows["train_seconds"].sum()) if len(rows) else 0.0,
            "images": int(rows["images"].sum()) if len(rows) else 0,
        }

    summary = {
        "retraining": {
            **spent(all_retrained),
            "game": game_name,
            "replicates": int(eval_cfg["retrain"]["replicates"]),
            "common_random_numbers": bool(eval_cfg["retrain"]["common_random_numbers"]),
            "samples": int(eval_cfg["retrain"]["samples"]),
            "train": read_table_metadata(heldout_shards[0]).get("train"),
            "by_source": {
                "heldout": spent(replicate_rows),
                "counterfactual": spent(removed),
                "fidelity": spent(full),
            },
        },
        "methods": cost,
        "heldout": eval_cfg["heldout"],
        "lds": eval_cfg["lds"],
        "counterfactual": eval_cfg["counterfactual"],
    }
    with atomic_dir(out) as tables:  # built beside, then renamed: never half a folder
        write_table(tables / "lds.parquet", lds_rows)
        write_table(tables / "ceiling.parquet", ceilings)
        write_table(tables / "fidelity.parquet", fidelity)
        write_table(tables / "game_fidelity.parquet", cheap_fidelity)
        write_table(tables / "counterfactual.parquet", counterfactual)
        write_table(tables / "placement.parquet", placement)
        write_table(tables / "retrained.parquet", all_retrained)
        write_table(tables / "heldout.parquet", heldout)
        write_json(tables / "summary.json", summary)


# --------------------------------------------------------------------------- docs
def _markdown(frame: pd.DataFrame) -> str:
    def cell(value):
        if isinstance(value, (float, np.floating)):
            return "n/a" if not np.isfinite(value) else f"{value:.3f}"
        return str(value)

    lines = ["| " + " | ".join(map(str, frame.columns)) + " |"]
    lines.append("|" + "---|" * len(frame.columns))
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in frame.itertuples(False)]
    return "\n".join(lines)


def by_method_and_metric(lds_rows: pd.DataFrame, metrics: list[str], text) -> pd.DataFrame:
    """The LDS table's rows laid out wide: a `method` column (in the table's order), then one
    column per metric holding `text(row)`; NaN where a method has no row for a metric."""
    cells: dict = {}
    for row in lds_rows.itertuples():
        cells.setdefault(row.method, {})[row.metric] = text(row)
    order = lds_rows.drop_duplicates("method")["method"].tolist()
    return (
        pd.DataFrame.from_dict(cells, orient="index")
        .reindex(index=order, columns=metrics)
        .reset_index(names="method")
    )


def markdown_tables(tables_dir) -> str:
    """The evaluation's tables as Markdown, from a run's results/<run>/evaluation/tables/:
    the noise ceilings, LDS with intervals, the paired differences to SurrogateSHAP, the
    cheaper game's fidelity and the evaluation's cost."""
    import json as json_mod
    from pathlib import Path

    tables = Path(tables_dir)
    lds_rows = pd.read_parquet(tables / "lds.parquet")
    ceiling = pd.read_parquet(tables / "ceiling.parquet")
    game = pd.read_parquet(tables / "game_fidelity.parquet")
    summary = json_mod.loads((tables / "summary.json").read_text())
    metrics = ceiling["metric"].tolist()
    retraining = summary["retraining"]
    level = summary["lds"]["level"]

    def wide(text):
        return by_method_and_metric(lds_rows, metrics, text).fillna("")

    def interval(value, low, high, sign=""):
        if not np.isfinite(value):
            return "n/a"
        return f"{value:{sign}.3f} [{low:{sign}.3f}, {high:{sign}.3f}]"

    parts = [
        f"Retraining game `{retraining['game']}`, {retraining['replicates']} replicate(s) per "
        f"held-out coalition, common random numbers "
        f"{'on' if retraining['common_random_numbers'] else 'off'}, {retraining['samples']} images "
        f"per model; {int(lds_rows['coalitions'].iloc[0])} held-out coalitions; {level:.0%} "
        "percentile bootstrap intervals over coalitions.",
        "",
        "**Noise ceiling** (split-half, Spearman-Brown corrected)",
        "",
        _markdown(ceiling),
        "",
        "**LDS** [interval]",
        "",
        _markdown(wide(lambda r: interval(r.lds, r.lds_low, r.lds_high))),
        "",
        "**LDS / noise ceiling**",
        "",
        _markdown(
            wide(
                lambda r: f"{r.lds_over_ceiling:.3f}" if np.isfinite(r.lds_over_ceiling) else "n/a"
            )
        ),
    ]
    if "lds_given_size" in lds_rows.columns:
        parts += [
            "",
            "**LDS given coalition size** (partial Spearman correlation given |S|; the chance "
            "levels, 95th percentile of random values, are in the ceiling table; * above it)",
            "",
            _markdown(
                wide(
                    lambda r: (
                        f"{r.lds_given_size:.3f}{'*' if r.given_size_above_chance else ''}"
                        if np.isfinite(r.lds_given_size)
                        else "n/a"
                    )
                )
            ),
        ]
    if "vs_reference" in lds_rows.columns:
        parts += [
            "",
            "**SurrogateSHAP's LDS minus each method's** [paired interval; above 0: SurrogateSHAP "
            "ahead]",
            "",
            _markdown(
                wide(
                    lambda r: interval(r.vs_reference, r.vs_reference_low, r.vs_reference_high, "+")
                ).query("method != 'surrogate'")
            ),
        ]
    if len(game):
        parts += ["", f"**Fidelity of the `{retraining['game']}` game to full retraining**", ""]
        parts.append(_markdown(game))
    cost = pd.DataFrame([{"method": m, **c} for m, c in summary["methods"].items()])
    sources = pd.DataFrame([{"retrains of": k, **v} for k, v in retraining["by_source"].items()])
    parts += ["", "**Cost**", "", _markdown(cost), "", _markdown(sources), ""]
    return "\n".join(parts)


def replace_between_markers(text: str, body: str, name: str = "evaluation-tables") -> str:
    """`text` with what lies between <!-- name:begin --> and <!-- name:end --> replaced by `body`."""
    begin, end = f"<!-- {name}:begin -->", f"<!-- {name}:end -->"
    if begin not in text or end not in text:
        raise ValueError(
            f"the document has no {begin} ... {end} markers to write the tables between"
        )
    head, rest = text.split(begin, 1)
    _, tail = rest.split(end, 1)
    return f"{head}{begin}\n{body}\n{end}{tail}"
