"""Every page of the dashboard's registry, loaded in headless Chromium on a fixture runs root, with a screenshot.

The runs root (``screenshot_root``) has something for every page to show: ``demo`` scored with intervals
and per-image scores, audited (memorization, watermark, bias, unsafe) and reported; ``rival`` to compare
with; ``half-done`` and a junk folder.  Each page of ``dashboard.pages.load_pages()`` (the built-ins and
any installed plugin page) is opened by its URL; the test fails when a page shows a Streamlit exception
box or the word "Traceback", or draws no title.  The screenshots (``<url_path>.png``) are kept under the
test's ``tmp_path`` and, when kept under ``screenshots/`` of the tests' artifacts (``dashboard_fixtures.artifacts_dir``).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from dashboard.pages import load_pages
from dashboard_fixtures import (
    add_bias_audit, add_memorization_audit, add_report, add_unsafe_audit, add_watermark_audit, launch_chromium,
    keep_screenshots, make_compare_root, serve_dashboard,
)  # fmt: skip

# A cold Streamlit session on a loaded 2-core box: the first page alone may take half a minute.
PAGE_TIMEOUT_MS = 150_000
SETTLE_MS = 1500  # after the script run ends, for charts and images to paint


@pytest.fixture
def screenshot_root(tmp_path: Path) -> Path:
    root = make_compare_root(tmp_path)
    demo = root / "demo"
    add_memorization_audit(demo)
    add_watermark_audit(demo)
    add_bias_audit(demo)
    add_unsafe_audit(demo)
    add_report(demo)
    return root


@pytest.mark.browser
def test_every_page_loads_without_an_exception(chromium: Path, screenshot_root: Path, tmp_path: Path) -> None:
    from playwright.sync_api import expect, sync_playwright

    pages, problems = load_pages()
    assert problems == []
    assert {"runs", "metrics", "memorization", "audits", "bias", "report", "compare"} <= {p.url_path for p in pages}
    shots = tmp_path / "screenshots"
    shots.mkdir()
    failures: list[str] = []
    dialogs: list[str] = []
    expect.set_options(timeout=PAGE_TIMEOUT_MS)
    with serve_dashboard(screenshot_root, tmp_path / "streamlit.log", timeout=120) as url, sync_playwright() as pw:
        browser = launch_chromium(pw, chromium)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 2600})
            page.set_default_timeout(PAGE_TIMEOUT_MS)
            page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
            for i, info in enumerate(pages):
                page.goto(url if i == 0 else f"{url}/{info.url_path}")
                expect(page.locator("h1").first).to_be_visible()
                expect(page.locator('[data-testid="stApp"][data-test-script-state="notRunning"]')).to_have_count(1)
                page.wait_for_function("() => [...document.images].every(img => img.complete)")
                page.wait_for_timeout(SETTLE_MS)
                name = f"{info.url_path}.png"
                page.screenshot(path=str(shots / name), full_page=True)
                exceptions = page.get_by_test_id("stException")
                if exceptions.count():
                    failures.append(f"{info.title}: exception box: {exceptions.first.inner_text()[:500]}")
                elif "Traceback" in page.locator("body").inner_text():
                    failures.append(f"{info.title}: the page shows a Traceback")
        finally:
            browser.close()
    assert dialogs == []
    assert failures == [], "\n".join(failures)
    names = sorted(f"{p.url_path}.png" for p in pages)
    assert sorted(p.name for p in shots.glob("*.png")) == names
    keep_screenshots(shots, names, folder="screenshots")
