"""Open the report in headless Chromium: no console errors, every image loads; save a screenshot."""

import os
import shutil
import subprocess
from pathlib import Path

import pytest

pytestmark = [pytest.mark.slow, pytest.mark.browser]

CHROMIUM_FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def chromium_path() -> str:
    """Debian's chromium, installed here when missing (CI runs as root on Debian)."""
    path = shutil.which("chromium")
    if path:
        return path
    if os.geteuid() != 0:
        pytest.fail("chromium is not installed and this user cannot apt-get install it")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    subprocess.run(["apt-get", "update", "-qq"], check=True, env=env, timeout=600)
    subprocess.run(["apt-get", "install", "-y", "-qq", "chromium"], check=True, env=env, timeout=900)
    return shutil.which("chromium")


def open_report(path: Path, screenshot: Path) -> dict:
    from playwright.sync_api import sync_playwright

    problems = {"console": [], "page": [], "failed": []}
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium_path(), args=CHROMIUM_FLAGS, timeout=60_000)
        page = browser.new_page(viewport={"width": 1200, "height": 900})
        page.on("console", lambda m: problems["console"].append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: problems["page"].append(str(e)))
        page.on("requestfailed", lambda r: problems["failed"].append(r.url[:100]))
        page.goto(path.resolve().as_uri(), wait_until="load", timeout=60_000)
        problems["images"] = page.evaluate(
            "Array.from(document.images).map(i => [i.alt, i.complete && i.naturalWidth > 0])")
        problems["text"] = page.inner_text("body")
        page.screenshot(path=str(screenshot), full_page=False)
        browser.close()
    return problems


def test_report_opens_cleanly(run_dir):
    report = run_dir / "results/small/report/index.html"
    shot = run_dir / "logs/report-screenshot.png"
    seen = open_report(report, shot)
    assert not seen["console"] and not seen["page"] and not seen["failed"], seen
    assert len(seen["images"]) >= 5 * 2 and all(ok for _, ok in seen["images"]), seen["images"]
    assert "digit-7-b" in seen["text"] and "Fréchet distance" in seen["text"]
    assert shot.stat().st_size > 5000
