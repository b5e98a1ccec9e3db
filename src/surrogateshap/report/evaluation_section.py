"""The report's evaluation section: whether the attributions predict retraining (noise ceilings,
LDS, game and proxy fidelity, counterfactual removal, planted placements, cost), from the tables
`evaluation.tables.write_tables` writes.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from ..evaluation.scores import CHANCE_DRAWS
from ..evaluation.tables import by_method_and_metric
from .charts import _counterfactual_png, _png_uri, _scatter_png
from .tables import _esc, _table_html, format_number

# A noise ceiling below this visibly bounds the LDS any method can reach.
LOW_CEILING = 0.8


def _low_ceiling_note(ceiling: pd.DataFrame, retraining: dict) -> str:
    """Names the metrics whose ceiling is below LOW_CEILING, says where their noise comes from
    (as measured on the embedded default) and which of the run's settings lower it."""
    low = ceiling[ceiling["noise_ceiling"] < LOW_CEILING]
    if not len(low):
        return ""
    named = ", ".join(
        f"{_esc(m)} ({format_number(c)})" for m, c in zip(low["metric"], low["noise_ceiling"])
    )
    crn = (
        ""
        if retraining["common_random_numbers"]
        else "This run has <code>evaluation.retrain.common_random_numbers</code> off; on the "
        "embedded default, turning them on cut that noise up to 3-fold. "
    )
    steps_key = (
        "evaluation.retrain.finetune.train.steps"
        if retraining["game"] == "finetune"
        else "evaluation.retrain.train.steps"
    )
    steps = (retraining.get("train") or {}).get("steps")
    this_run = f", {steps} in this run" if steps else ""
    return (
        f"<p>Below {LOW_CEILING}: {named}. What is left is the retrains' own variation. On the "
        "embedded default, the fine-tuning's training seed was 62-94% of one replicate's noise "
        "variance and the images each model is scored on the rest "
        "(<code>benchmarks/retrain_noise.py</code> splits it by source; "
        f"docs/evaluation-power.md). {crn}Longer training raises the ceiling most: 300 "
        "fine-tuning steps instead of 150 took the default's Fréchet distance from 0.88 to 0.95 "
        "and its IS-like score from 0.86 to 0.99 on 16 coalitions, at 1.5 times the retraining's "
        f"cost (<code>{steps_key}</code>{this_run}); more replicates "
        "(<code>evaluation.retrain.replicates</code>) raise it too.</p>"
    )


def evaluation_section(tables_dir, planted: set[str]) -> str:
    """LDS table, proxy fidelity, counterfactual curves, planted placements and each method's cost."""
    tables = Path(tables_dir)
    lds = pd.read_parquet(tables / "lds.parquet")
    fidelity = pd.read_parquet(tables / "fidelity.parquet")
    counterfactual = pd.read_parquet(tables / "counterfactual.parquet")
    placement = pd.read_parquet(tables / "placement.parquet")
    heldout = pd.read_parquet(tables / "heldout.parquet")
    summary = json.loads((tables / "summary.json").read_text())
    retraining = summary["retraining"]
    metrics = list(fidelity["metric"])
    ceiling = pd.read_parquet(tables / "ceiling.parquet")
    game_fidelity = pd.read_parquet(tables / "game_fidelity.parquet")
    by_source = retraining["by_source"]
    parts = [
        '<h2 id="evaluation">Evaluation: does the attribution predict retraining?</h2>',
        f"<p>Retraining game <b>{_esc(retraining['game'])}</b> "
        f"({_esc(json.dumps(retraining['train'], sort_keys=True))}), "
        f"{retraining['replicates']} replicate(s) per held-out coalition, common random numbers "
        f"{'on' if retraining['common_random_numbers'] else 'off'}, {retraining['samples']} images "
        f"per retrained model. {retraining['retrains']} retrains of {retraining['coalitions']} "
        f"coalitions (held out {by_source['heldout']['retrains']}, counterfactual "
        f"{by_source['counterfactual']['retrains']}, full-retraining fidelity check "
        f"{by_source['fidelity']['retrains']}), {retraining['images']} images generated, "
        f"{format_number(retraining['seconds'])} s in all. Held-out coalitions: {summary['heldout']['coalitions']} per draw, "
        f"each contributor kept with probability {summary['heldout']['alpha']}, draws "
        f"{_esc(summary['heldout']['draws'])}.</p>",
    ]
    level = summary["lds"]["level"]

    def lds_cell(row) -> str:
        text = (
            f"{format_number(row.lds)} [{format_number(row.lds_low)}, {format_number(row.lds_high)}]"
            if np.isfinite(row.lds)
            else "n/a"
        )
        if row.method != "surrogate" and np.isfinite(getattr(row, "vs_reference", np.nan)):
            text += (
                f"; Δ {format_number(row.vs_reference)} [{format_number(row.vs_reference_low)}, "
                f"{format_number(row.vs_reference_high)}]"
            )
        return text

    parts.append(
        "<h3>Noise ceiling of the retraining game</h3><p>Split-half Spearman correlation of the "
        "replicates' utilities across the held-out coalitions, Spearman-Brown corrected: the "
        "reliability of the replicate-mean utility the LDS is measured against.</p>"
        + _table_html(ceiling, set(), ("metric",))
        + _low_ceiling_note(ceiling, retraining)
    )
    parts.append(
        f"<h3>LDS</h3><p>Spearman correlation, over all {int(lds['coalitions'].iloc[0])} held-out "
        "coalitions, between the utility each method predicts (v(∅) + the members' values; the "
        "surrogate's second-order prediction with its pairwise interactions is its own row) and the "
        f"retrained utility (mean over replicates), with its {level:.0%} bootstrap interval over "
        "coalitions; Δ: SurrogateSHAP's LDS minus the method's, with its interval on the same "
        "bootstrap draws (an interval above 0: SurrogateSHAP is ahead). n/a: the retrained utility "
        "or the prediction is constant.</p>"
        + _table_html(by_method_and_metric(lds, metrics, lds_cell), set(), ("method",))
    )
    if "lds_given_size" in lds.columns:

        def given_size_cell(row) -> str:
            if not np.isfinite(row.lds_given_size):
                return "n/a"
            above = " (above chance)" if row.given_size_above_chance else ""
            return format_number(row.lds_given_size) + above

        chance = ", ".join(
            f"{_esc(r.metric)} {format_number(r.chance_p95)} (given size "
            f"{format_number(r.chance_given_size_p95)})"
            for r in ceiling.itertuples()
        )
        parts.append(
            "<h3>Chance and coalition size</h3><p>Values with a non-zero sum predict a utility that "
            "moves with the coalition's size, whatever they say of each contributor. The chance "
            f"level is the 95th percentile of the LDS of {CHANCE_DRAWS} random value vectors: "
            f"{chance}. Below, each method's LDS given coalition size (the partial rank "
            "correlation given |S|): the part of its prediction about which contributors are in a "
            "coalition, not how many; n/a: the prediction is the size alone, or constant.</p>"
            + _table_html(by_method_and_metric(lds, metrics, given_size_cell), set(), ("method",))
        )
    if len(game_fidelity):
        parts.append(
            f"<h3>Fidelity of the {_esc(retraining['game'])} game</h3><p>Spearman correlation of its "
            "utilities with full retraining's on the same held-out coalitions, and its cost per "
            "retrain relative to full retraining.</p>"
            + _table_html(game_fidelity, set(), ("game", "metric"))
        )
    parts.append(
        "<h3>Proxy fidelity</h3><p>Spearman correlation of proxy-game and retraining-game utilities over "
        "the held-out coalitions, and of the Shapley values of the two games (the retraining game's from a "
        "surrogate fitted to every retrained coalition: few, so read it as a rough check).</p>"
        + _table_html(fidelity, set(), ("metric",))
    )
    scored = heldout[heldout["draw"] >= 0]
    plots = "".join(
        f'<img alt="proxy vs retrained {_esc(m)}" src="{_png_uri(_scatter_png(scored[f"{m}_proxy"], scored[m], m, "proxy game", "retrained"))}">'
        for m in metrics
    )
    parts.append(f"<div class='grids'>{plots}</div>")
    if len(counterfactual):
        parts.append(
            "<h3>Counterfactual removal</h3><p>Change of the metric when the model is retrained without "
            "each method's top-k (solid) or bottom-k (dotted) contributors, from the retrained grand "
            "coalition. A ranking that knows what drives the metric moves it most by removing its top-k.</p>"
        )
        curves = "".join(
            f'<img alt="counterfactual {_esc(m)}" src="{_png_uri(_counterfactual_png(counterfactual, m))}">'
            for m in counterfactual["metric"].unique()
        )
        parts.append(f"<div class='grids'>{curves}</div>")
        shown = counterfactual[["method", "metric", "k", "side", "removed", "change"]].copy()
        shown["removed"] = shown["removed"].map(lambda v: ", ".join(v))
        parts.append(_table_html(shown, set(), ("method", "metric", "side", "removed")))
    if len(placement):
        parts.append(
            "<h3>Planted ground truth</h3><p>Where each method ranks the contributors planted with a known "
            "effect; found: within the planted group's size at the expected end.</p>"
            + _table_html(
                placement,
                planted,
                ("method", "metric", "contributor", "effect", "expected", "found"),
            )
        )
    cost = pd.DataFrame([{"method": m, **c} for m, c in summary["methods"].items()])
    parts.append(
        "<h3>Cost</h3><p>Every proxy-game method reads the same pools of generated images (generated once); "
        "the table is each method's CPU seconds after that and the utility evaluations it used "
        "(from the pools, microseconds each). Retraining the evaluation's models cost "
        f"{format_number(retraining['train_seconds'])} s of training.</p>"
        + _table_html(cost, set(), ("method",))
    )
    return "".join(parts)
