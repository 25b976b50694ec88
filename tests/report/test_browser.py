"""The HTML report opens in a real browser: every figure loads, no console errors.

Needs Debian's ``chromium`` and ``chromium-driver`` (``.ci/run`` installs them); the test
is skipped, with the reason, where they are absent.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from densbench.report.render import write_report
from densbench.runner.execute import run_cells
from densbench.runner.plan import Cell, Spec
from densbench.runner.store import RunStore

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
DRIVER = shutil.which("chromedriver")
pytestmark = pytest.mark.skipif(not (CHROMIUM and DRIVER),
                                reason="Debian chromium + chromium-driver not installed")

SCREENSHOT = Path(os.environ.get("DENSBENCH_SCREENSHOT_DIR", "results")) / "report_screenshot.png"


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    root = tmp_path_factory.mktemp("run")
    small = {"n_train": 400, "n_val": 100, "n_test": 400}
    cells = [Cell(Spec(e), Spec(d, p), s) for e in ("gaussian", "gmm")
             for d, p in (("banana", small), ("digits", {})) for s in (0, 1)]
    run_cells(cells, RunStore(root, create=True))
    paths = write_report(root)
    return next(p for p in paths if p.suffix == ".html")


def test_report_renders_in_headless_chromium(report, tmp_path):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic",
                 "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync",
                 f"--user-data-dir={tmp_path / 'profile'}", "--window-size=1300,2000"):
        opts.add_argument(flag)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(DRIVER), options=opts)
    try:
        driver.get(report.resolve().as_uri())
        n_images = driver.execute_script("return document.images.length")
        loaded = driver.execute_script(
            "return Array.from(document.images).filter("
            "i => i.complete && i.naturalWidth > 0).length")
        assert n_images >= 6 and loaded == n_images
        assert "densbench report" in driver.title
        tables = driver.find_elements("tag name", "table")
        assert len(tables) == 4  # banana, digits: leaderboard and sample quality
        errors = [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]
        assert not errors, errors
        SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
        driver.save_screenshot(str(SCREENSHOT))
    finally:
        driver.quit()
    assert SCREENSHOT.read_bytes()[:4] == b"\x89PNG"
