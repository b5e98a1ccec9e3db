"""The report's summary, number formatting and interaction heatmap, without a workflow run."""

import numpy as np
import pandas as pd
import pytest

from surrogateshap.report.charts import bar_chart, interaction_heatmap
from surrogateshap.report.evaluation_section import _low_ceiling_note
from surrogateshap.report.page import planted_contributors, summary_html
from surrogateshap.report.tables import _table_html, format_number


@pytest.mark.parametrize(
    "value, text",
    [
        (0.05601, "0.0560"),  # the example: 0.05601 beside 0.5888 beside 0.009289
        (0.5888, "0.589"),
        (0.009289, "0.00929"),
        (0.9996, "1.00"),  # rounded first: three digits, not four
        (-1.3449, "-1.34"),
        (1234.5, "1,230"),
        (123456.0, "123,000"),
        (1.0e6, "1.00e+06"),
        (1.234e-5, "1.23e-05"),
        (0.0, "0"),
        (np.float32(0.25), "0.250"),
        (12, "12"),  # counts and ranks stay exact
        (np.int64(20000), "20,000"),
        (float("nan"), "n/a"),
        (None, "n/a"),
    ],
)
def test_numbers_have_three_significant_digits(value, text):
    assert format_number(value) == text


HOSTILE = "<script>alert('x')</script>"


def _attribution(values: dict[str, float], metric: str, direction: str, r2=0.9):
    table = pd.DataFrame({"contributor": list(values), "shapley": list(values.values())})
    table["ci_low"] = table["shapley"] - 0.01
    table["ci_high"] = table["shapley"] + 0.01
    table["rank"] = table["shapley"].rank(ascending=False, method="min").astype(int)
    diag = {
        "metric": {"name": metric, "title": metric.replace("_", " "), "direction": direction},
        "oof_r2": r2,
        "ci_level": 0.9,
    }
    return table, diag


def test_summary_names_who_raises_and_lowers_each_metric_and_the_planted_found():
    results = [
        _attribution(
            {
                "digit-5-b": 1.3449,
                "digit-1-b": 1.14,
                HOSTILE: 0.0,
                "digit-2-a": -0.05601,
                "digit-7-b": 0.01,
            },
            "frechet_distance",
            "lower",
        ),
        _attribution(
            {
                "digit-7-b": -0.002,
                "digit-5-b": 0.009289,
                HOSTILE: 0.17,
                "digit-1-b": -0.004,
                "digit-2-a": -0.003,
            },
            "marker_rate",
            "lower",
            r2=0.3,
        ),
    ]
    planted = [
        {"contributor": "digit-1-b", "effect": "noise"},
        {"contributor": "digit-5-b", "effect": "blur"},
        {"contributor": "digit-7-b", "effect": "marker"},
    ]
    page = summary_html(results, planted)
    fd, marker = page.split("<tr>")[2:4]  # header row first
    assert "digit-5-b</bdi> +1.34 [1.33, 1.35]" in fd  # raises it most
    assert "digit-2-a</bdi> -0.0560 [-0.0660, -0.0460]" in fd  # lowers it most
    assert "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;</bdi> +0.170" in marker
    assert "digit-1-b</bdi> -0.00400 [-0.0140, 0.00600]" in marker
    assert "(interval includes 0)" in marker and "(interval includes 0)" not in fd
    assert "weak: read with care" in marker and "weak" not in fd  # out-of-fold R² 0.3
    assert "<script>" not in page  # names are escaped
    assert "Planted contributors: 2 of 3 found" in page
    assert page.count('class="found"') == 2 and page.count('class="missed"') == 1
    assert "digit-7-b</bdi> (marker) should be in the top 1 of marker_rate; it ranks 3 of 5" in page


def test_summary_without_planted_contributors_or_raisers():
    results = [_attribution({"a": -0.5, "b": -0.1}, "diversity", "higher")]
    page = summary_html(results, [])
    assert "Planted" not in page
    assert "no one" in page and "b</bdi> -0.100" not in page.split("<tr>")[2].split("<td>")[2]
    assert "a</bdi> -0.500" in page  # lowers it most


def test_planted_contributors_come_from_the_data_section():
    planted = [{"contributor": "digit-7-b", "effect": "marker"}]
    digits = {"data": {"source": "digits", "digits": {"planted": planted}}}
    assert [(p["contributor"], p["effect"]) for p in planted_contributors(digits)] == [
        ("digit-7-b", "marker")
    ]
    # the digits export's entries plant nothing on a folder; data.planted plants on any dataset
    folder = {"data": {"source": "folder", "digits": {"planted": planted}}}
    assert planted_contributors(folder) == []
    folder["data"]["planted"] = [{"contributor": "ann", "effect": "noise"}]
    assert [p["contributor"] for p in planted_contributors(folder)] == ["ann"]


def test_interaction_heatmap_is_a_png_for_any_names():
    pairs = pd.DataFrame(
        {
            "contributor_i": ["a", HOSTILE, "$x$ 日本"],
            "contributor_j": [HOSTILE, "b", "a"],
            "interaction": [0.2, -0.1, 0.05],
        }
    )
    png = interaction_heatmap(pairs, "test")
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 2000


def _values(n: int) -> pd.DataFrame:
    shapley = np.linspace(1.0, -1.0, n)
    return pd.DataFrame(
        {
            "contributor": [f"c{i:03d}" for i in range(n)],
            "shapley": shapley,
            "ci_low": shapley - 0.1,
            "ci_high": shapley + 0.1,
            "rank": np.arange(1, n + 1),
        }
    )


def _png_size(png: bytes) -> tuple[int, int]:
    import io

    from PIL import Image

    with Image.open(io.BytesIO(png)) as image:
        return image.size


def test_a_chart_of_hundreds_shows_the_top_and_bottom_bars_only():
    """300 contributors: the chart is as tall as one of 41 (40 bars and the gap between the top and
    the bottom), not 300 bars; up to the limit every contributor has a bar."""
    _, tall = _png_size(bar_chart(_values(300), "m", set(), limit=40))
    _, forty_one = _png_size(bar_chart(_values(41), "m", set(), limit=40))
    _, forty = _png_size(bar_chart(_values(40), "m", set(), limit=40))
    _, every = _png_size(bar_chart(_values(300), "m", set(), limit=300))
    assert tall == forty_one and forty < tall < every / 4


def test_sortable_tables_keep_each_number_whole_for_sorting():
    frame = pd.DataFrame({"contributor": ["a", "b"], "shapley": [0.123456, float("nan")]})
    html = _table_html(frame, set(), sortable=True)
    assert '<table class="sortable">' in html
    assert 'data-sort="0.123456"' in html and 'data-sort=""' in html  # n/a sorts last
    assert "sortable" not in _table_html(frame, set())


def test_low_ceilings_are_named_with_where_their_noise_comes_from():
    ceiling = pd.DataFrame(
        {
            "metric": ["frechet_distance", "marker_rate", "diversity"],
            "noise_ceiling": [0.79, 0.89, np.nan],
        }
    )
    finetune = {"common_random_numbers": True, "game": "finetune", "train": {"steps": 150}}
    note = _low_ceiling_note(ceiling, finetune)
    assert "frechet_distance (0.790)" in note and "retrain_noise.py" in note
    assert "marker_rate" not in note and "diversity" not in note
    assert "common_random_numbers</code> off" not in note
    # the lever that raises it most, named for the run's game, with the run's own setting
    assert "evaluation.retrain.finetune.train.steps</code>, 150 in this run" in note
    full = {"common_random_numbers": False, "game": "full", "train": None}
    off = _low_ceiling_note(ceiling, full)
    assert "common_random_numbers</code> off" in off
    assert "<code>evaluation.retrain.train.steps</code>)" in off
    assert _low_ceiling_note(ceiling.iloc[1:], full) == ""
