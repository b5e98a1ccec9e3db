"""Open the report in headless Chromium: no console errors, every image loads, the summary opens
the page and the interactions are drawn; save screenshots (the README's picture is taken the same
way: `python -m tests.test_report_browser REPORT PNG`)."""

import os
import shutil
import subprocess
from pathlib import Path

import pytest

pytestmark = [pytest.mark.slow, pytest.mark.browser]

CHROMIUM_FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def chromium_path() -> str:
    """Debian's chromium, installed here when missing (CI runs as root on Debian)."""
    path = shutil.which("chromium")
    if path:
        return path
    if os.geteuid() != 0:
        pytest.fail("chromium is not installed and this user cannot apt-get install it")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    subprocess.run(["apt-get", "update", "-qq"], check=True, env=env, timeout=600)
    subprocess.run(
        ["apt-get", "install", "-y", "-qq", "chromium"], check=True, env=env, timeout=900
    )
    return shutil.which("chromium")


def open_report(path: Path, screenshot: Path, summary_shot: Path | None = None) -> dict:
    from playwright.sync_api import sync_playwright

    problems = {"console": [], "page": [], "failed": [], "dialogs": []}
    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=chromium_path(), args=CHROMIUM_FLAGS, timeout=60_000
        )
        page = browser.new_page(viewport={"width": 1200, "height": 900})
        page.on(
            "console", lambda m: problems["console"].append(m.text) if m.type == "error" else None
        )
        page.on("pageerror", lambda e: problems["page"].append(str(e)))
        page.on("requestfailed", lambda r: problems["failed"].append(r.url[:100]))
        page.on(
            "dialog", lambda d: (problems["dialogs"].append(d.message), d.dismiss())
        )  # alert(): injected code ran
        page.goto(path.resolve().as_uri(), wait_until="load", timeout=60_000)
        problems["images"] = page.evaluate(
            "Array.from(document.images).map(i => [i.alt, i.complete && i.naturalWidth > 0])"
        )
        problems["text"] = page.inner_text("body")
        problems["name_cells"] = page.evaluate(
            "Array.from(document.querySelectorAll('td.name')).map(td => td.textContent)"
        )
        problems["contributors"] = page.evaluate(
            "Array.from(document.querySelectorAll('#contributors tbody td.name'))"
            ".map(td => td.textContent)"
        )
        problems["injected"] = page.evaluate(
            "document.querySelectorAll('script:not(#report-script), iframe, object, embed,"
            ' img[src="x"], pre *\').length'
        )
        problems["config"] = page.evaluate("document.querySelector('pre').textContent")
        problems["summary"] = page.evaluate(
            "(() => { const s = document.querySelector('#summary'); if (!s) return null;"
            " return {top: s.getBoundingClientRect().top, text: s.innerText,"
            " rows: s.querySelectorAll('tbody tr').length,"
            " first: s.contains(document.querySelector('h2'))}; })()"
        )
        page.screenshot(path=str(screenshot), full_page=False)
        problems["find"] = find_and_sort(page, problems["contributors"])
        if summary_shot and problems["summary"] is not None:
            page.locator("#summary").screenshot(path=str(summary_shot))
        browser.close()
    return problems


def find_and_sort(page, names: list[str]) -> dict:
    """Type each name into the find box (the rows of the contributors' table left visible), then
    sort the first metric's table by its value column, down and up."""
    visible = (
        "Array.from(document.querySelectorAll('#contributors tbody tr:not([hidden]) td.name'))"
        ".map(td => td.textContent)"
    )
    found = {}
    for name in names:
        page.fill("#find", name)
        found[name] = page.evaluate(visible)
    page.fill("#find", "")
    found[""] = page.evaluate(visible)
    column = (
        "Array.from(document.querySelector('table.sortable').querySelectorAll('tbody tr'))"
        ".map(r => parseFloat(r.children[2].dataset.sort))"
    )
    header = page.locator("table.sortable").first.locator("thead th").nth(2)
    header.click()
    ascending = page.evaluate(column)
    header.click()
    return {"found": found, "ascending": ascending, "descending": page.evaluate(column)}


def test_report_opens_cleanly(run_dir):
    report = run_dir / "results/small/report/index.html"
    shot = run_dir / "logs/report-screenshot.png"
    seen = open_report(report, shot, shot.with_name("report-summary.png"))
    assert not seen["console"] and not seen["page"] and not seen["failed"], seen
    assert len(seen["images"]) >= 5 * 2 and all(ok for _, ok in seen["images"]), seen["images"]
    assert "digit-7-b" in seen["text"] and "Fréchet distance" in seen["text"]
    assert shot.stat().st_size > 5000
    # the page opens with the summary: one row per metric, the planted contributors' verdict
    summary = seen["summary"]
    assert summary and summary["first"] and summary["top"] < 900, summary
    assert summary["rows"] == 5, summary  # the small config's five metrics
    assert "raises it most" in summary["text"] and "lowers it most" in summary["text"]
    assert "Planted contributors:" in summary["text"] and "digit-7-b" in summary["text"]
    assert (shot.with_name("report-summary.png")).stat().st_size > 5000
    heatmaps = [alt for alt, _ in seen["images"] if alt.startswith("Interaction heatmap")]
    assert len(heatmaps) == 5, seen["images"]  # one per metric, each loaded (checked above)
    # find a contributor by name, sort a metric's table by its values
    for name, rows in seen["find"]["found"].items():
        expected = [n for n in seen["contributors"] if name.lower() in n.lower()]
        assert rows == expected and (rows or not name), (name, rows)
    assert seen["find"]["ascending"] == sorted(seen["find"]["ascending"])
    assert seen["find"]["descending"] == sorted(seen["find"]["ascending"], reverse=True)


def test_hostile_names_show_as_text(hostile_run_dir):
    """Names with markup, quotes, right-to-left text, ... (conftest.HOSTILE_NAMES): shown exactly, never run."""
    from .conftest import HOSTILE_NAMES

    report = hostile_run_dir / "results/hostile/report/index.html"
    seen = open_report(report, hostile_run_dir / "logs/hostile-screenshot.png")
    assert (
        not seen["console"] and not seen["page"] and not seen["failed"] and not seen["dialogs"]
    ), seen
    assert seen["injected"] == 0  # no <script> but the page's own, no <img src=x>, no markup
    found = seen["find"]["found"]
    assert sorted(found.pop("")) == sorted(HOSTILE_NAMES)  # the box emptied: everyone again
    for name, rows in found.items():  # each found by its name, as text
        assert name in rows, (name, rows)
    assert all(ok for _, ok in seen["images"]), seen["images"]
    assert sorted(seen["contributors"]) == sorted(HOSTILE_NAMES)  # character for character
    assert set(HOSTILE_NAMES) <= set(seen["name_cells"])  # in every metric's table too
    assert "my data <b>ü</b> & co" in seen["config"]  # a config value with markup, as text
    assert "<img src=x onerror=alert(1)>" in seen["text"]
    assert seen["summary"] and seen["summary"]["first"], seen["summary"]


if (
    __name__ == "__main__"
):  # the README's screenshot: python -m tests.test_report_browser REPORT PNG
    import sys

    seen = open_report(Path(sys.argv[1]), Path(sys.argv[2]))
    print({k: seen[k] for k in ("console", "page", "failed")}, seen["summary"] and "summary found")
