"""The HTML report in a real browser at 1400 px: every figure loads, no console errors, and
it is legible: no table wider than the page, no number wrapped over lines, every figure's
smallest text at least 9 CSS px as shown, failed cells marked.

Needs Debian's ``chromium`` and ``chromium-driver`` (``.ci/run`` installs them); the test
is skipped, with the reason, where they are absent.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
from pathlib import Path

import pytest

from densbench.report.render import write_report
from densbench.runner.execute import run_cells, run_suite
from densbench.runner.plan import Cell, Spec, builtin_suite
from densbench.runner.store import RunStore

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
DRIVER = shutil.which("chromedriver")
pytestmark = [pytest.mark.skipif(not (CHROMIUM and DRIVER),
                                 reason="Debian chromium + chromium-driver not installed"),
              pytest.mark.slow]

SCREENSHOT = Path(os.environ.get("DENSBENCH_SCREENSHOT_DIR", "results")) / "report_screenshot.png"

#: The window the report is read in, and the smallest text a reader is asked to read.
WIDTH_PX, MIN_TEXT_PX = 1400, 9.0

SMALL = {"n_train": 400, "n_val": 100, "n_test": 400}

#: A user's model whose samples lie far from the data: its sample metrics are outliers.
FAR = '''
import numpy as np
from densbench.estimators import DensityEstimator


class Far(DensityEstimator):
    """A Gaussian whose samples are drawn 50 standard deviations away."""

    def _fit(self, X, X_val):
        self.mean_, self.std_ = X.mean(axis=0), X.std(axis=0)

    def _score_samples(self, X):
        z = (X - self.mean_) / self.std_
        return -0.5 * (z ** 2 + np.log(2 * np.pi * self.std_ ** 2)).sum(axis=1)

    def _sample(self, n, rng):
        return self.mean_ + self.std_ * (50.0 + rng.standard_normal((n, self.mean_.size)))

    def _n_parameters(self):
        return 2 * self.mean_.size
'''


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    """A run of the quick suite narrowed to one estimator on a small banana, with a
    user's model from a file (by its absolute path) whose samples are outliers, and a
    cell that fails; its HTML report."""
    root = tmp_path_factory.mktemp("run")
    model = tmp_path_factory.mktemp("user") / "model.py"
    model.write_text(FAR)
    suite = builtin_suite("quick").restrict(estimators=["gaussian"], datasets=["banana"])
    suite = dataclasses.replace(suite, datasets=(Spec("banana", SMALL),))
    store = RunStore(root, create=True)
    run_suite(suite, store, executor="inprocess", command="densbench run --quick ...")
    run_cells([Cell(Spec(f"{model}:Far"), Spec("banana", SMALL), 0),
               Cell(Spec("kde", {"bandwidth": -1.0}), Spec("banana", SMALL), 0)],
              store, executor="inprocess")
    paths = write_report(root)
    return next(p for p in paths if p.suffix == ".html")


@pytest.fixture(scope="module")
def page(report, tmp_path_factory):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic",
                 "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--hide-scrollbars",
                 "--force-device-scale-factor=1",
                 f"--user-data-dir={tmp_path_factory.mktemp('profile')}",
                 f"--window-size={WIDTH_PX},1000"):
        opts.add_argument(flag)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(DRIVER), options=opts)
    try:
        driver.get(report.resolve().as_uri())
        yield driver
    finally:
        driver.quit()


def test_report_renders_in_headless_chromium(page):
    n_images = page.execute_script("return document.images.length")
    loaded = page.execute_script(
        "return Array.from(document.images).filter("
        "i => i.complete && i.naturalWidth > 0).length")
    assert n_images >= 6 and loaded == n_images
    assert "densbench report" in page.title
    errors = [e for e in page.get_log("browser") if e["level"] == "SEVERE"]
    assert not errors, errors
    SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
    page.save_screenshot(str(SCREENSHOT))
    assert SCREENSHOT.read_bytes()[:4] == b"\x89PNG"


def test_no_table_is_wider_than_the_page(page):
    assert page.execute_script("return window.innerWidth") == WIDTH_PX
    wide = page.execute_script("""
        const room = e => { const s = getComputedStyle(e);
            return e.clientWidth - parseFloat(s.paddingLeft) - parseFloat(s.paddingRight); };
        return Array.from(document.querySelectorAll('table')).filter(
            t => t.scrollWidth > room(t.parentElement)
                 || t.getBoundingClientRect().right > window.innerWidth)
            .map(t => [t.scrollWidth, room(t.parentElement),
                       t.rows[0].innerText.slice(0, 60)]);""")
    assert not wide, wide
    assert page.execute_script("return document.documentElement.scrollWidth") <= WIDTH_PX
    assert page.execute_script("return document.querySelectorAll('table').length") >= 3


def test_no_number_is_wrapped_over_lines(page):
    # every "mean ± se" in the page, as the browser laid it out: one line box each
    wrapped = page.execute_script(r"""
        const out = [], re = /-?\d[\d.e+-]* ± \d[\d.e+-]*/g;
        const walk = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
        let n = 0;
        while (walk.nextNode()) {
            const node = walk.currentNode;
            for (const m of node.data.matchAll(re)) {
                n += 1;
                const r = document.createRange();
                r.setStart(node, m.index);
                r.setEnd(node, m.index + m[0].length);
                const tops = new Set(Array.from(r.getClientRects()).map(b => Math.round(b.top)));
                if (tops.size > 1) out.push(m[0]);
            }
        }
        return [n, out];""")
    count, bad = wrapped
    assert count >= 20 and not bad, bad


def test_every_figure_text_is_legible_as_shown(page):
    figures = page.execute_script("""
        return Array.from(document.images).map(i => [
            i.alt, i.dataset.minFontPt, i.dataset.dpi, i.width, i.naturalWidth]);""")
    assert len(figures) >= 6
    for alt, font_pt, dpi, shown, natural in figures:
        assert font_pt is not None and dpi is not None, f"{alt}: no font size recorded"
        px = float(font_pt) * float(dpi) / 72 * shown / natural
        assert px >= MIN_TEXT_PX, f"{alt}: smallest text {px:.1f} CSS px"


def test_failed_cells_are_marked_and_names_shortened(page):
    failed = page.execute_script("""
        return Array.from(document.querySelectorAll('td.failed')).map(
            td => [td.parentElement.cells[0].innerText, td.innerText]);""")
    assert failed and all(text.startswith("✗ failed: ") and "kde: bandwidth must be" in text
                          for _, text in failed)
    assert {name for name, _ in failed} == {"kde"}
    text = page.execute_script("return document.body.innerText")
    assert "model.py:Far" in text
    shown = page.execute_script("""
        return Array.from(document.querySelectorAll('td[title]')).map(
            td => [td.innerText, td.title]);""")
    assert shown and all(s == "model.py:Far" and t.endswith("/model.py:Far")
                         for s, t in shown)
    intro = page.execute_script("return document.querySelector('p').innerText")
    assert "suite quick (quick.toml), restricted by the command line" in intro
    assert "digits" not in intro and "banana (continuous, 2-D)" in intro


def test_far_values_are_named_in_the_caption_not_scaling_the_panel(page):
    captions = page.execute_script("""
        return Array.from(document.querySelectorAll('figcaption')).map(c => c.innerText)""")
    metrics = [c for c in captions if c.startswith("sample metrics vs floor on banana")]
    assert len(metrics) == 1 and "drawn at the edge" in metrics[0]
    assert "frechet_distance: model.py:Far" in metrics[0]
    samples = [c for c in captions if c.startswith("model.py:Far samples")]
    assert len(samples) == 1
