"""The report in a real browser: headless Chromium (Debian chromium + chromium-driver) via selenium.

Checks that the page loads without console errors, loads nothing from outside the file, every
<img> decodes, and every number marked ``data-key`` equals report/summary.json (and vice versa).
Skipped with a reason when Chromium is absent outside CI; under CI (env CI set) a missing
browser is a failure — `make browser` / .ci/run install it.
"""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from radae.report.keys import lookup

pytestmark = pytest.mark.browser

CHROMEDRIVER = Path("/usr/bin/chromedriver")  # Debian chromium-driver; given explicitly so selenium-manager never downloads
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
         "--disable-sync", "--no-first-run", "--window-size=1280,1000")


def _chromium_binary() -> str | None:
    for name in ("chromium", "chromium-browser"):
        path = shutil.which(name)
        if path:
            return path
    return None


@pytest.fixture(scope="module")
def browser():
    binary = _chromium_binary()
    driver_path = CHROMEDRIVER if CHROMEDRIVER.exists() else (Path(shutil.which("chromedriver") or "") or None)
    if binary is None or driver_path is None or not Path(driver_path).is_file():
        reason = (f"headless Chromium not installed (chromium: {binary or 'absent'}, chromedriver: "
                  f"{driver_path if driver_path and Path(driver_path).is_file() else 'absent'}); run `make browser`")
        if os.environ.get("CI"):
            pytest.fail(f"CI is set but {reason}")
        pytest.skip(reason)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    for flag in FLAGS:
        opts.add_argument(flag)
    opts.binary_location = binary
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(executable_path=str(driver_path)), options=opts)
    driver.set_page_load_timeout(60)
    try:
        yield driver
    finally:
        driver.quit()


def _open(driver, html: Path):
    driver.get(html.resolve().as_uri())
    driver.get_log("browser")  # noqa: B018 - flush anything from a previous page
    driver.refresh()
    ready = driver.execute_script("return document.readyState")
    assert ready == "complete"


def _check_page(driver, report_dir: Path) -> dict:
    html = report_dir / "report.html"
    summary = json.loads((report_dir / "summary.json").read_text())
    _open(driver, html)

    errors = [e for e in driver.get_log("browser") if e.get("level") in ("SEVERE", "ERROR")]
    assert errors == [], f"console errors: {errors}"

    # self-contained: no resource was fetched from anywhere (images are data: URIs, CSS inline)
    resources = driver.execute_script("return performance.getEntriesByType('resource').map(r => r.name)")
    assert [r for r in resources if not r.startswith("data:")] == []

    images = driver.execute_script(
        "return Array.from(document.images).map(i => ({alt: i.alt, complete: i.complete, w: i.naturalWidth, "
        "h: i.naturalHeight, src: i.src.slice(0, 22)}))")
    for img in images:
        assert img["complete"] and img["w"] > 0 and img["h"] > 0, f"image does not decode: {img}"
        assert img["src"] == "data:image/png;base64,", img

    marked = driver.execute_script(
        "return Array.from(document.querySelectorAll('[data-key]')).map(e => [e.dataset.key, e.textContent])")
    assert marked, "no key numbers marked in the page"
    page_keys = set()
    for key, text in marked:
        value = lookup(summary["numbers"], key)
        if value is None:
            assert text == "n/a", (key, text)
        elif isinstance(value, int) and not isinstance(value, bool):
            assert int(text) == value, (key, text, value)
        else:
            assert float(text) == pytest.approx(value, rel=1e-12, abs=0), (key, text, value)
        page_keys.add(key)

    def flat(node, prefix=""):
        for k, v in node.items():
            if isinstance(v, dict):
                yield from flat(v, f"{prefix}{k}.")
            else:
                yield f"{prefix}{k}"

    assert set(flat(summary["numbers"])) == page_keys, "summary.json and the page state different key numbers"
    return {"images": images, "keys": page_keys}


@pytest.mark.slow  # over 10 s: a subprocess run or a whole tiny pipeline
def test_full_report_in_chromium(browser, tiny_run):
    seen = _check_page(browser, tiny_run / "report")
    assert len(seen["images"]) >= 2  # at least the data section's spacing and volume plots
    assert {"data.lesions", "data.patients"} <= seen["keys"]
    # every section heading is there, in order
    ids = browser.execute_script("return Array.from(document.querySelectorAll('main > section')).map(s => s.id)")
    assert ids[:2] == ["summary", "data"] and "appendix" in ids


def test_partial_run_report_in_chromium(browser, make_tiny_run, tmp_path):
    """A run that stopped after ingest: the page still loads, and says what is missing instead of numbers."""
    from radae.report.build import build_report

    run_dir = make_tiny_run(tmp_path / "runs", stages=["ingest"])
    result = build_report(run_dir, tmp_path / "out")
    _check_page(browser, tmp_path / "out")
    text = browser.find_element("tag name", "body").text
    assert "Not available" in text
    assert "preprocess/rois.parquet" in result.missing
