"""HTML tables for the report, and the one number format every table and chart uses (3
significant digits). Every string that came from data or config is HTML-escaped here.
"""

from __future__ import annotations

import html

import numpy as np
import pandas as pd


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


def _signed(value) -> str:
    text = format_number(value)
    return text if text.startswith("-") or text in ("0", "n/a") else "+" + text


def short_name(name, limit: int = 40) -> str:
    name = str(name)
    return name if len(name) <= limit else name[: limit - 1] + "…"


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


def scrolled(table_html: str, rows: int, rows_before_scrolling: int = 40) -> str:
    """A table of `rows` rows; a long one in a box of its own height, so that the page around it
    stays short."""
    return f'<div class="scroll">{table_html}</div>' if rows > rows_before_scrolling else table_html
