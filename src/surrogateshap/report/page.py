"""The self-contained HTML report: charts and images are embedded as data URIs,
and every string that came from data or config is HTML-escaped. The page and its summary
here; its tables and number format in `tables`, its charts in `charts`, the evaluation section
in `evaluation_section`."""

from __future__ import annotations

import base64
import hashlib
import json
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from ..data import planted as planted_mod
from ..data.datasets import contributor_key
from ..evaluation.scores import expected_placements, placement_table
from ..proxy.features import read_images
from ..workflow.config import digest
from ..workflow.io import read_table_metadata, write_text
from .charts import _png_uri, bar_chart, image_grid, interaction_heatmap
from .evaluation_section import evaluation_section
from .tables import _esc, _signed, _table_html, format_interval, format_number, scrolled

CSS = """
body{font-family:system-ui,sans-serif;margin:2em auto;max-width:1100px;color:#222;line-height:1.4}
h1{font-size:1.6em}h2{border-bottom:1px solid #ccc;padding-bottom:.2em;margin-top:2em}
table{border-collapse:collapse;font-size:.9em;margin:.5em 0}td,th{border:1px solid #ddd;padding:.2em .5em;text-align:right}
td.name,th.name{text-align:left}tr.planted td{background:#fff4d6}td.name{max-width:32em;overflow-wrap:anywhere}
.grids{display:flex;gap:2em;flex-wrap:wrap}.grid figure{margin:0}.grid img{image-rendering:pixelated;border:1px solid #aaa}
pre{background:#f6f6f6;padding:1em;overflow:auto;font-size:.85em}.note{color:#555;font-size:.9em}
#summary{background:#f4f8fc;border:1px solid #c9d8ea;padding:.2em 1em 1em;margin:1em 0}#summary h2{margin-top:.6em}
#summary td{text-align:left}.found{color:#17692e;font-weight:600}.missed{color:#a3261b;font-weight:600}
.weak{color:#8a5a00}
.scroll{max-height:32em;overflow:auto;display:inline-block}.scroll thead th{position:sticky;top:0;background:#fff}
table.sortable th{cursor:pointer}th[data-order=up]::after{content:" ▲"}th[data-order=down]::after{content:" ▼"}
nav .find{margin:.3em 0}nav input{font:inherit;padding:.1em .3em}#found{color:#555}
"""


EMPTY_COALITION_TEXT = {
    "unconditional": "v(empty) is the model's unconditional generation (the null class). ",
    "noise": "v(empty) is what a model that learned nothing outputs: the sampler's starting noise. ",
}


def planted_contributors(config: dict) -> list[dict]:
    """The contributors planted with a known effect ({contributor, effect, expect, ...}), which
    the summary checks: data.planted on any dataset, data.digits.planted on the digits export
    (`planted.entries`)."""
    return planted_mod.entries(config["data"])


def interval_text(diag: dict) -> str:
    """How the metric's intervals were drawn, or why there are none."""
    how = diag.get("interval", "percentile")
    if how.startswith("no interval"):
        return how[0].upper() + how[1:] + "."
    if how.startswith("normal"):
        return (
            f"Intervals: {diag['ci_level']:.0%}, the value -/+ the normal quantile times a standard "
            f"error from the bootstrap over coalitions ({diag['bootstrap']} refits) and the "
            "residual correction's stratified error."
        )
    return f"Intervals: {diag['ci_level']:.0%} percentile bootstrap over coalitions ({diag['bootstrap']} refits)."


def _who(row: pd.Series) -> str:
    """'name +1.34 [1.10, 1.58]', with a note when the interval does not exclude 0."""
    low, high = row["ci_low"], row["ci_high"]
    if not (np.isfinite(low) and np.isfinite(high)):
        note = ' <span class="weak">(no interval)</span>'
    elif low <= 0 <= high:
        note = ' <span class="weak">(interval includes 0)</span>'
    else:
        note = ""
    return (
        f"<bdi>{_esc(row['contributor'])}</bdi> {_esc(_signed(row['shapley']))} "
        f"{_esc(format_interval(row['ci_low'], row['ci_high']))}{note}"
    )


def summary_html(results: list[tuple[pd.DataFrame, dict]], planted: list[dict]) -> str:
    """What a reader can act on, first: per metric who raises it most and who lowers it most
    (value and interval), how well the surrogate fits, and whether the planted contributors
    land where they belong. `results`: (attribution table, its diagnostics) per metric."""
    rows = []
    for table, diag in results:
        metric = diag["metric"]
        ordered = table.sort_values("rank", kind="stable")
        top, bottom = ordered.iloc[0], ordered.iloc[-1]
        better = "lower is better" if metric["direction"] == "lower" else "higher is better"
        fit = diag.get("oof_r2")
        fit_text = format_number(fit)
        if fit is not None and np.isfinite(fit) and fit < 0.5:
            fit_text += ' <span class="weak">(weak: read with care)</span>'
        if diag.get("constant_utility") is not None:
            raises = lowers = '<span class="note">none: the utility is constant</span>'
        else:
            raises = _who(top) if top["shapley"] > 0 else '<span class="note">no one</span>'
            lowers = _who(bottom) if bottom["shapley"] < 0 else '<span class="note">no one</span>'
        rows.append(
            f'<tr><td><a href="#{_esc(metric["name"])}">{_esc(metric["title"])}</a><br>'
            f'<span class="note">{_esc(better)}</span></td><td>{raises}</td><td>{lowers}</td>'
            f"<td>{fit_text}</td></tr>"
        )
    level = results[0][1].get("ci_level") if results else None
    parts = [
        '<section id="summary"><h2>Summary</h2>',
        "<p>Per metric, the contributor whose data raises it most and the one whose data lowers it "
        "most, with the Shapley value and its "
        + (f"{level:.0%} " if level else "")
        + "interval. Whether raising is good depends on the metric's direction. "
        "Fit: the surrogate's out-of-fold R² on held-out coalitions (near 1: the values can be "
        "trusted; below 0.5: weak).</p>",
        "<table><thead><tr><th class='name'>metric</th><th class='name'>raises it most</th>"
        "<th class='name'>lowers it most</th><th>fit (R²)</th></tr></thead><tbody>"
        + "".join(rows)
        + "</tbody></table>",
    ]
    names = results[0][0]["contributor"].tolist() if results else []
    metric_names = [diag["metric"]["name"] for _, diag in results]
    expected = expected_placements(planted, names, metric_names)
    if expected:
        values = pd.concat(
            [t.assign(method="surrogate", metric=d["metric"]["name"]) for t, d in results]
        )
        placement = placement_table(values, expected)
        items = []
        for _, row in placement.iterrows():
            verdict = (
                '<span class="found">found</span>'
                if row["found"]
                else '<span class="missed">not found</span>'
            )
            items.append(
                f"<li>{verdict}: <bdi>{_esc(row['contributor'])}</bdi> ({_esc(row['effect'])}) "
                f"should be in the {_esc(row['expected'])} of {_esc(row['metric'])}; it ranks "
                f"{_esc(format_number(int(row['rank'])))} of {len(names)}</li>"
            )
        found = int(placement["found"].sum())
        parts.append(
            f"<p><b>Planted contributors: {found} of {len(placement)} found</b> where their "
            f"effect puts them.</p><ul>{''.join(items)}</ul>"
        )
    elif planted:
        parts.append(
            '<p class="note">The planted contributors move none of the metrics attributed.</p>'
        )
    parts.append("</section>")
    return "".join(parts)


# The page's one script: the "find a contributor" box and sorting by a column. It reads and moves
# existing nodes and sets only `hidden`; no string becomes markup. The page's Content-Security-Policy
# lets this script run (by its hash) and nothing else.
SCRIPT = """
const find = document.getElementById('find');
find.addEventListener('input', () => {
  const query = find.value.trim().toLowerCase();
  let shown = 0;
  for (const row of document.querySelectorAll('table.sortable tbody tr')) {
    const name = row.querySelector('td.name');
    row.hidden = query !== '' && !(name && name.textContent.toLowerCase().includes(query));
    if (!row.hidden && name && row.closest('#contributors')) shown += 1;
  }
  document.getElementById('found').textContent = query ? shown + ' found' : '';
});
for (const table of document.querySelectorAll('table.sortable')) {
  table.querySelectorAll('thead th').forEach((th, column) => {
    th.title = 'sort by this column';
    th.addEventListener('click', () => {
      const up = th.dataset.order !== 'up';
      table.querySelectorAll('thead th').forEach((h) => delete h.dataset.order);
      th.dataset.order = up ? 'up' : 'down';
      const key = (row) => {
        const cell = row.children[column];
        if (!('sort' in cell.dataset)) return cell.textContent.toLowerCase();
        return cell.dataset.sort === '' ? null : parseFloat(cell.dataset.sort);
      };
      const body = table.tBodies[0];
      const rows = Array.from(body.rows);
      rows.sort((a, b) => {
        const x = key(a), y = key(b);
        if (x === null || y === null) return (x === null) - (y === null);  // n/a last
        return (x < y ? -1 : x > y ? 1 : 0) * (up ? 1 : -1);
      });
      rows.forEach((row) => body.appendChild(row));
    });
  });
}
"""


def _coalition_rounds_html(rounds: list | None) -> list[str]:
    """The stopping rule's verdict after each round of coalitions (coalitions.rounds)."""
    if not rounds:
        return []
    rows = pd.DataFrame(
        [
            {
                "round": r["round"],
                "coalitions": r["coalitions"],
                "rule holds": r["converged"],
                **{f"ρ {m}": d["spearman_last"] for m, d in r["metrics"].items()},
            }
            for r in rounds
        ]
    )
    last = rounds[-1]
    verdict = (
        "the stopping rule held: more coalitions are unlikely to change the values"
        if last["converged"]
        else "the rounds ran out before the stopping rule held: the values may still move with more coalitions "
        "(raise coalitions.rounds.max or coalitions.count)"
    )
    return [
        f"<h2>Coalition rounds</h2><p>After each round the surrogate was refitted on growing prefixes of the "
        f"table; the rule holds when the Spearman correlation ρ of successive prefixes' values is at least "
        f"{last['threshold']} for {last['patience']} step(s) in a row on every checked metric. "
        f"{len(rounds)} round(s): {verdict}.</p>" + _table_html(rows, set(), ("round",))
    ]


def fingerprint_html(fingerprints: dict | None) -> str:
    """Every fingerprint that went into the stage keys: the files the config names, each stage's code."""
    if not fingerprints:
        return ""
    rows = [
        {"input": f"file: {path}", "fingerprint": json.dumps(fp, sort_keys=True)}
        for path, fp in sorted(fingerprints.get("files", {}).items())
    ] + [
        {"input": f"code: {stage}", "fingerprint": value}
        for stage, value in fingerprints.get("code", {}).items()
    ]
    return "<p>Fingerprints in the stage keys (docs/caching.md):</p>" + _table_html(
        pd.DataFrame(rows, columns=["input", "fingerprint"]), set(), ("input", "fingerprint")
    )


def payout_html(table: pd.DataFrame, meta: dict, top: int = 10) -> str:
    """The payout table's first `top` rows (the rest summed) and how it was split."""
    parts = []
    for name, m in meta["metrics"].items():
        better = "lower" if m["direction"] == "lower" else "higher"
        note = " (split equally: no contributor helps it)" if m["equal_split"] else ""
        parts.append(f"{_esc(name)}: {_esc(format_number(m['part']))} ({better} is better){note}")
    policy = {
        "clip": "contributors who hurt a metric get 0 of its part",
        "shift": "each metric's part is split in proportion to each value minus the least value",
        "net": "each metric's part is split in proportion to the values; those who hurt it are "
        "charged (negative payouts)",
    }[meta["negative"]]
    shown = table.head(top)[["rank", "contributor", "payout", "payout_low", "payout_high", "share"]]
    if meta.get("interval", "").startswith("no interval"):
        policy += f". No payout interval ({_esc(meta['interval'][len('no interval: ') :])})"
    rest = table.iloc[top:]
    more = (
        f"<p class='note'>{len(rest)} more contributor(s) share "
        f"{_esc(format_number(float(rest['payout'].sum())))} (results/&lt;run&gt;/payout.parquet "
        "lists everyone).</p>"
        if len(rest)
        else ""
    )
    return (
        '<section id="payout"><h2>Payout</h2>'
        f"<p>A budget of {_esc(format_number(meta['budget']))} split among the contributors by "
        "their Shapley values, each metric's part by its weight, a metric where lower is better by "
        f"the negated values; {policy}. Parts: {'; '.join(parts)}. Intervals: "
        f"{meta['level']:.0%}, the values redrawn from their intervals {meta['draws']} times and "
        "the budget split again each time (docs/payout.md).</p>"
        + _table_html(shown, set())
        + more
        + "</section>"
    )


def write_report(
    out_path,
    config: dict,
    keys: dict,
    attribution_paths: list[str],
    utilities_path: str,
    contributors_path: str,
    pool_paths: list[str],
    classifier_metrics_path: str | None,
    check_summary_path: str | None,
    evaluation_dir: str | None = None,
    fingerprints: dict | None = None,
    payout_path: str | None = None,
) -> None:
    contributors = pd.read_parquet(contributors_path)
    names = contributors["contributor"].tolist()
    planted_list = planted_contributors(config)
    planted = {p["contributor"]: p["effect"] for p in planted_list}
    frame, images = read_images(pool_paths)
    utilities = pd.read_parquet(utilities_path)
    rcfg = config["report"]

    def grid_for(name: str) -> str:
        group = names.index(name)
        idx = np.flatnonzero(frame["group"].to_numpy() == group)[: rcfg["grid_samples"]]
        if not len(idx):
            return '<p class="note">no samples</p>'
        label = f"{name} ({planted[name]})" if name in planted else name
        return (
            f'<figure class="grid"><img alt="samples of {_esc(name)}" src="{_png_uri(image_grid(images[idx]))}">'
            f"<figcaption><bdi>{_esc(label)}</bdi></figcaption></figure>"
        )

    results = [(pd.read_parquet(p), read_table_metadata(p)) for p in attribution_paths]
    parts = [f"<h1>SurrogateSHAP report: run {_esc(config['run'])}</h1>"]
    parts.append(summary_html(results, planted_list))
    if payout_path:
        parts.append(payout_html(pd.read_parquet(payout_path), read_table_metadata(payout_path)))
    parts.append(
        f"<p>{len(names)} contributors, {len(utilities)} coalitions, proxy game mode "
        f"<b>{_esc(config['game']['mode'])}</b>. Shapley values from an XGBoost surrogate of the utility "
        "(interventional TreeSHAP, the empty coalition as baseline, the grand coalition explained). "
        + EMPTY_COALITION_TEXT[config["game"]["empty_coalition"]]
        + "Rank 1 is the contributor that raises the metric most; whether raising it is good depends on the "
        "metric's direction, stated with each metric.</p>"
    )
    parts.extend(_coalition_rounds_html(read_table_metadata(utilities_path).get("rounds")))
    truncated = sum(int(read_table_metadata(p).get("truncated_captions") or 0) for p in pool_paths)
    if truncated:
        parts.append(
            f'<p class="note">{truncated} caption(s) of the generated pools were longer than the text '
            "encoder's token limit and were truncated by the pipeline (the pool jobs' logs show examples).</p>"
        )
    if planted:
        items = "".join(f"<li><bdi>{_esc(n)}</bdi>: {_esc(e)}</li>" for n, e in planted.items())
        parts.append(
            f"<p>Planted contributors (known by construction, highlighted):</p><ul>{items}</ul>"
        )
    if check_summary_path:
        summary = json.loads(Path(check_summary_path).read_text())
        rows = pd.DataFrame([{"metric": m, **v} for m, v in summary.items()])
        parts.append(
            "<h2>Pooled vs per-coalition check</h2><p>The same coalitions scored from the pooled mixtures "
            "and from fresh per-coalition samples; Spearman correlation of the two.</p>"
            + _table_html(rows, set(), ("metric",))
        )
    toc = ['<li><a href="#summary">Summary</a></li>']
    if payout_path:
        toc.append('<li><a href="#payout">Payout</a></li>')
    for table, diag in results:
        metric = diag["metric"]
        anchor = _esc(metric["name"])
        toc.append(f'<li><a href="#{anchor}">{_esc(metric["title"])}</a></li>')
        better = "lower is better" if metric["direction"] == "lower" else "higher is better"
        parts.append(f'<h2 id="{anchor}">{_esc(metric["title"])}</h2>')
        parts.append(
            f"<p>{_esc(metric['description'])} <b>{_esc(better)}</b>: a positive value means the "
            f"contributor {'worsens' if metric['direction'] == 'lower' else 'improves'} the model on "
            "this metric.</p>"
        )
        parts.append(
            f'<img alt="Shapley values for {anchor}" src="{_png_uri(bar_chart(table, metric["title"], set(planted), rcfg["bars"]))}">'
        )
        shown = table[["rank", "contributor", "shapley", "ci_low", "ci_high", "p_top_k"]].rename(
            columns={"p_top_k": f"P(rank<={diag['top_k']})"}
        )
        if diag.get("constant_utility") is not None:
            parts.append(
                f"<p class='note'>The utility is {format_number(diag['constant_utility'])} for every coalition: every "
                "Shapley value is 0 and all contributors are tied (no surrogate was fitted).</p>"
            )
        parts.append(
            f"<p>{_esc(interval_text(diag))} Click a column's header to sort.</p>"
            + scrolled(_table_html(shown, set(planted), sortable=True), len(shown))
        )
        k = rcfg["grid_contributors"]
        top = table.sort_values("rank")["contributor"].tolist()
        parts.append(
            "<h3>Generated samples</h3><div class='grids'><div><p>Top contributors</p>"
            + "".join(grid_for(n) for n in top[:k])
            + "</div><div><p>Bottom contributors</p>"
            + "".join(grid_for(n) for n in top[::-1][:k])
            + "</div></div>"
        )
        diag_rows = {
            "out-of-fold R²": diag["oof_r2"],
            "coalitions": diag["n_coalitions"],
            "sum of values": diag["sum_values"],
            "measured v(grand) − v(empty)": diag["measured_grand"] - diag["measured_empty"],
            "efficiency gap of the trees": diag["efficiency_gap"],
            "measured endpoints replace the trees' f(∅), f(N)": "yes (exact uniform shift)"
            if diag["anchored_endpoints"]
            else "no",
            "surrogate parameters": json.dumps(diag["params"], sort_keys=True),
            "fit seconds": diag["seconds"],
        }
        pairs = pd.DataFrame(diag.get("top_interactions", []))
        if len(pairs):
            heatmap = _png_uri(
                interaction_heatmap(pairs, f"{metric['title']}: strongest interactions")
            )
            parts.append(
                "<h3>Strongest interactions</h3><p>Pairwise Shapley interaction values of the surrogate: "
                "positive (red) when two contributors raise the metric more together than apart, "
                f"negative (blue) when less; the {len(pairs)} strongest pairs (grey: pairs not among "
                "them).</p>"
                f'<img class="heatmap" alt="Interaction heatmap for {anchor}" src="{heatmap}">'
                + _table_html(pairs, set(planted), ("contributor_i", "contributor_j"))
            )
        parts.append(
            "<h3>Surrogate diagnostics</h3>"
            + _table_html(
                pd.DataFrame({"diagnostic": list(diag_rows), "value": list(diag_rows.values())}),
                set(),
                ("diagnostic", "value"),
            )
        )
    if evaluation_dir:
        toc.append('<li><a href="#evaluation">Evaluation</a></li>')
        parts.append(evaluation_section(evaluation_dir, set(planted)))
    if "key" not in contributors:  # a data stage cached before keys existed
        contributors = contributors.assign(key=contributors["contributor"].map(contributor_key))
    contributor_table = contributors[["contributor", "key", "n_items"]].copy()
    for table, diag in results:  # where each contributor ranks, metric by metric
        ranks = table.set_index("contributor")["rank"]
        contributor_table[f"rank: {diag['metric']['name']}"] = contributor_table["contributor"].map(
            ranks
        )
    parts.append(
        '<section id="contributors"><h2>Contributors</h2><p>Every contributor, its items and its '
        "rank on each metric (1 raises the metric most). Find one by name with the box at the top; "
        "click a column's header to sort.</p>"
        + scrolled(_table_html(contributor_table, set(planted), sortable=True), len(names))
        + "</section>"
    )
    if classifier_metrics_path:
        accuracy = json.loads(Path(classifier_metrics_path).read_text()).get("heldout_accuracy")
        parts.append(
            f"<p class='note'>Feature extractor: digits classifier, held-out accuracy {format_number(accuracy)}.</p>"
        )
    parts.append(
        f"<h2>Config</h2><p>Config hash <code>{_esc(digest(config))}</code>; stage keys:</p>"
        + _table_html(
            pd.DataFrame({"stage": list(keys), "key": list(keys.values())}), set(), ("stage", "key")
        )
        + fingerprint_html(fingerprints)
        + f"<pre>{_esc(yaml.safe_dump(config, sort_keys=False, allow_unicode=True))}</pre>"
    )
    toc.append('<li><a href="#contributors">All contributors</a></li>')
    find = (
        '<p class="find"><label>Find a contributor: <input id="find" type="search" '
        'placeholder="part of a name" autocomplete="off"></label> <span id="found"></span></p>'
    )
    body = parts[0] + f"<nav><ul>{''.join(toc)}</ul>{find}</nav>" + "".join(parts[1:])
    script_hash = base64.b64encode(hashlib.sha256(SCRIPT.encode()).digest()).decode()
    page = (
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
        '<meta http-equiv="Content-Security-Policy" content="default-src \'none\'; '
        f"img-src data:; style-src 'unsafe-inline'; script-src 'sha256-{script_hash}'\">"
        f"<title>SurrogateSHAP report: {_esc(config['run'])}</title><style>{CSS}</style></head>"
        f'<body>{body}<script id="report-script">{SCRIPT}</script></body></html>\n'
    )
    write_text(out_path, page)
