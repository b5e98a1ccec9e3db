"""The report's charts and image grids, as PNG bytes (matplotlib with the Agg backend, Pillow),
embedded in the page as data URIs (`_png_uri`).
"""

from __future__ import annotations

import base64
import io
import warnings

import numpy as np
import pandas as pd

from .tables import format_number, short_name


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
