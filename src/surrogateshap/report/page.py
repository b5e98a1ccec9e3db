"""The self-contained HTML report: charts and images are embedded as data URIs,
and every string that came from data or config is HTML-escaped."""

from __future__ import annotations

import base64
import hashlib
import html
import io
import json
import warnings
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


def _esc(value) -> str:
    return html.escape(str(value), quote=True)


SIGNIFICANT_DIGITS = 3


def format_number(value, digits: int = SIGNIFICANT_DIGITS) -> str:
    """Every number the report shows, with the same significant digits: 0.0560, 0.589, 0.00929,
    1,230, -1.34, 1.23e-05. Whole numbers (counts, ranks) stay exact; NaN and None are 'n/a'."""
    if value is None or isinstance(value, (bool, np.bool_)):
        return "n/a" if value is None else str(bool(value))
    if isinstance(value, (int, np.integer)):
        return f"{int(value):,}" if abs(int(value)) >= 10_000 else str(int(value))
    x = float(value)
    if not np.isfinite(x):
        return "n/a" if np.isnan(x) else ("∞" if x > 0 else "-∞")
    if x == 0:
        return "0"
    x = float(f"{x:.{digits - 1}e}")  # rounded first, so 0.9996 becomes 1.00, not 1.000
    exponent = int(np.floor(np.log10(abs(x))))
    if not -4 <= exponent < 6:
        return f"{x:.{digits - 1}e}"
    decimals = max(digits - 1 - exponent, 0)
    return f"{x:,.{decimals}f}"


def format_interval(low, high) -> str:
    return f"[{format_number(low)}, {format_number(high)}]"


def _png_uri(data: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(data).decode()


def _figure_png(fig) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    return buffer.getvalue()


def bar_chart(table: pd.DataFrame, title: str, planted: set[str], limit: int = 40) -> bytes:
    """One bar per contributor with its interval, in rank order; above `limit` contributors the
    top and bottom `limit // 2` only (a chart of hundreds of bars cannot be read: the table below
    it has everyone)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    table = table.sort_values("rank")
    total, top = len(table), limit // 2
    hidden = max(0, total - limit)
    if hidden:
        table = pd.concat([table.head(top), table.tail(limit - top)])
    y = np.arange(len(table))[::-1].astype(float)
    gap = len(table) - top  # hidden: a blank row between the top and the bottom bars
    if hidden:
        y[:top] += 1
    fig, ax = plt.subplots(figsize=(7, 0.28 * (len(table) + bool(hidden)) + 1.2))
    err = np.vstack([table["shapley"] - table["ci_low"], table["ci_high"] - table["shapley"]])
    err = np.where(np.isfinite(err), np.clip(err, 0, None), 0)
    colours = ["#d9822b" if name in planted else "#4a78b0" for name in table["contributor"]]
    ax.barh(y, table["shapley"], xerr=err, color=colours, ecolor="#333", capsize=2)
    # Names as plain text ('$' is not math), shortened: the table below has them in full.
    ax.set_yticks(y, [short_name(n) for n in table["contributor"]], fontsize=8, parse_math=False)
    if hidden:
        ax.axhline(gap, color="#aaa", lw=0.8, ls=":")
        ax.text(
            0.5,
            gap,
            f"{hidden} contributors ranked between (the table lists all)",
            transform=ax.get_yaxis_transform(),
            ha="center",
            va="center",
            fontsize=8,
            color="#555",
            backgroundcolor="white",
        )
        title = f"{title}: top {top} and bottom {limit - top} of {total}"
    ax.axvline(0, color="#888", lw=0.8)
    ax.set_xlabel("Shapley value (orange: planted contributor)")
    ax.set_title(title, fontsize=10)
    with warnings.catch_warnings():  # names in scripts the default font lacks are drawn as boxes
        warnings.filterwarnings("ignore", message="Glyph .* missing from font")
        data = _figure_png(fig)
    plt.close(fig)
    return data


def interaction_heatmap(pairs: pd.DataFrame, title: str) -> bytes:
    """The strongest pairwise interactions as a symmetric matrix over the contributors they
    involve: red where two contributors raise the metric more together than apart, blue where
    less; grey cells are pairs outside the strongest ones (not computed small, just not kept)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(dict.fromkeys([*pairs["contributor_i"], *pairs["contributor_j"]]))
    index = {name: i for i, name in enumerate(names)}
    matrix = np.full((len(names), len(names)), np.nan)
    for a, b, value in zip(pairs["contributor_i"], pairs["contributor_j"], pairs["interaction"]):
        matrix[index[a], index[b]] = matrix[index[b], index[a]] = value
    limit = float(np.nanmax(np.abs(matrix))) if np.isfinite(matrix).any() else 1.0
    limit = limit if limit > 0 else 1.0
    cmap = matplotlib.colormaps["RdBu_r"].with_extremes(bad="#e4e4e4")
    side = 0.45 * len(names) + 2.2
    fig, ax = plt.subplots(figsize=(side + 1.2, side))
    image = ax.imshow(np.ma.masked_invalid(matrix), cmap=cmap, vmin=-limit, vmax=limit)
    labels = [short_name(n, 24) for n in names]
    ax.set_xticks(range(len(names)), labels, rotation=60, ha="right", fontsize=7, parse_math=False)
    ax.set_yticks(range(len(names)), labels, fontsize=7, parse_math=False)
    for (i, j), value in np.ndenumerate(matrix):
        if np.isfinite(value) and i < j:  # each pair written once, in the upper triangle
            colour = "white" if abs(value) > 0.6 * limit else "black"  # legible on dark cells
            ax.text(j, i, format_number(value), ha="center", va="center", fontsize=6, color=colour)
    fig.colorbar(image, ax=ax, shrink=0.8, label="interaction")
    ax.set_title(title, fontsize=9)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Glyph .* missing from font")
        data = _figure_png(fig)
    plt.close(fig)
    return data


def planted_contributors(config: dict) -> list[dict]:
    """The contributors planted with a known effect ({contributor, effect, expect, ...}), which
    the summary checks: data.planted on any dataset, data.digits.planted on the digits export
    (`planted.entries`)."""
    return planted_mod.entries(config["data"])


def _signed(value) -> str:
    text = format_number(value)
    return text if text.startswith("-") or text in ("0", "n/a") else "+" + text


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
        + "bootstrap interval. Whether raising is good depends on the metric's direction. "
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


def short_name(name, limit: int = 40) -> str:
    name = str(name)
    return name if len(name) <= limit else name[: limit - 1] + "…"


def image_grid(images: np.ndarray, columns: int = 8, scale: int = 4) -> bytes:
    from PIL import Image

    n = len(images)
    rows = max(1, -(-n // columns))
    size = images.shape[1]
    colour = images.shape[3:]  # () for grayscale, (3,) for RGB
    canvas = (
        np.ones((rows * (size + 1) + 1, columns * (size + 1) + 1) + colour, dtype=np.float32) * 0.5
    )
    for i, image in enumerate(images):
        r, c = divmod(i, columns)
        canvas[
            1 + r * (size + 1) : 1 + r * (size + 1) + size,
            1 + c * (size + 1) : 1 + c * (size + 1) + size,
        ] = image
    picture = Image.fromarray(
        np.round(canvas * 255).astype(np.uint8), mode="RGB" if colour else "L"
    )
    picture = picture.resize((picture.width * scale, picture.height * scale), Image.NEAREST)
    buffer = io.BytesIO()
    picture.save(buffer, format="PNG")
    return buffer.getvalue()


def _is_number(value) -> bool:
    return isinstance(value, (float, np.floating, int, np.integer)) and not isinstance(
        value, (bool, np.bool_)
    )


def _table_html(
    frame: pd.DataFrame, planted: set[str], name_columns=("contributor",), sortable: bool = False
) -> str:
    """A table; `sortable` ones sort by a click on a column's header and are filtered by the
    page's "find a contributor" box (numbers sort by their full value, kept in data-sort)."""
    head = "".join(
        f'<th class="{"name" if c in name_columns else ""}">{_esc(c)}</th>' for c in frame.columns
    )
    rows = []
    for _, row in frame.iterrows():
        cells = []
        for column in frame.columns:
            value = row[column]
            text = format_number(value) if _is_number(value) else str(value)
            if column in name_columns:  # <bdi>: right-to-left text cannot reorder what follows it
                cells.append(f'<td class="name"><bdi>{_esc(text)}</bdi></td>')
            elif sortable and _is_number(value):
                key = repr(float(value)) if np.isfinite(float(value)) else ""  # n/a: last
                cells.append(f'<td data-sort="{key}">{_esc(text)}</td>')
            else:
                cells.append(f'<td class="">{_esc(text)}</td>')
        marker = ' class="planted"' if row.get("contributor") in planted else ""
        rows.append(f"<tr{marker}>{''.join(cells)}</tr>")
    kind = ' class="sortable"' if sortable else ""
    return f"<table{kind}><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"


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


def scrolled(table_html: str, rows: int, rows_before_scrolling: int = 40) -> str:
    """A table of `rows` rows; a long one in a box of its own height, so that the page around it
    stays short."""
    return f'<div class="scroll">{table_html}</div>' if rows > rows_before_scrolling else table_html


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
            f"<p>Intervals: {diag['ci_level']:.0%} percentile bootstrap over coalitions "
            f"({diag['bootstrap']} refits). Click a column's header to sort.</p>"
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


def _scatter_png(x: np.ndarray, y: np.ndarray, title: str, xlabel: str, ylabel: str) -> bytes:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(3.2, 3.0))
    ax.scatter(x, y, s=14)
    ax.set(title=title, xlabel=xlabel, ylabel=ylabel)
    ax.title.set_size(9)
    data = _figure_png(fig)
    plt.close(fig)
    return data


def _counterfactual_png(table: pd.DataFrame, metric: str) -> bytes:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(4.2, 3.0))
    for (method, side), rows in table[table["metric"] == metric].groupby(
        ["method", "side"], sort=False
    ):
        rows = rows.sort_values("k")
        ax.plot(
            rows["k"],
            rows["change"],
            marker="o",
            linestyle="-" if side == "top" else ":",
            label=f"{method} ({side})",
        )
    ax.axhline(0, color="#888", linewidth=0.8)
    ax.set(
        title=f"{metric}: change when removing top / bottom k",
        xlabel="k removed",
        ylabel="retrained change",
    )
    ax.title.set_size(9)
    ax.legend(fontsize=6)
    data = _figure_png(fig)
    plt.close(fig)
    return data


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
    cells = {}
    for row in lds.itertuples():
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
        cells.setdefault(row.method, {})[row.metric] = text
    order = lds.drop_duplicates("method")["method"].tolist()
    wide = pd.DataFrame.from_dict(cells, orient="index").reindex(index=order, columns=metrics)
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
        + _table_html(wide.reset_index(names="method"), set(), ("method",))
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
