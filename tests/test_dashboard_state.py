"""The dashboard's shared run state and safety: the chosen run across pages and in the URL, damaged runs,
the default run, live runs, refused symlinks and images, the CLI's exposure warning, and (``-m browser``)
no request leaving 127.0.0.1."""

from __future__ import annotations

import json
import re
import shutil
import time
from pathlib import Path

import pytest

from bench import contract as C
from dashboard import cli
from dashboard.cli import APP_PATH
from dashboard.data import discovery as D
from dashboard_fixtures import (
    N_IMAGES, launch_chromium, make_complete_run, make_runs_root, manifest, serve_dashboard, write_json,
)  # fmt: skip

PAGES = ("runs_page", "metrics_page", "memorization_page", "audits_page", "bias_page", "report_page")


@pytest.fixture
def root(tmp_path: Path) -> Path:
    """``make_runs_root`` (complete 'demo', incomplete 'half-done') plus two newer damaged runs:
    'truncated' (manifest cut short, newest by file time) and 'corrupt' (newest ``created``, bad samples.parquet)."""
    root = make_runs_root(tmp_path)
    (root / "truncated").mkdir()
    (root / "truncated" / C.MANIFEST).write_text(json.dumps(manifest("truncated", "2025-03-01T00:00:00+00:00"))[:40])
    corrupt = make_complete_run(root, "corrupt", created="2025-02-01T00:00:00+00:00")
    C.SAMPLES_TABLE.path(corrupt).write_bytes(b"PAR1 garbage")
    return root


def _app(monkeypatch: pytest.MonkeyPatch, runs_dir: Path, run: str | None = None):
    from streamlit.testing.v1 import AppTest

    monkeypatch.setenv("T2I_RUNS_DIR", str(runs_dir))
    at = AppTest.from_file(str(APP_PATH), default_timeout=30)
    if run is not None:
        at.query_params["run"] = run
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return _switch(at, "Runs")  # the landing page is the Overview; the run picker's home is Runs


def _switch(at, title: str):
    """Navigate to the registered page titled ``title`` (st.navigation pages are callables, not files)."""
    page_hash = next(h for h, info in at._registered_pages.items() if info.get("page_name") == title)
    at._page_hash = page_hash
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def _page(runs_dir: Path, page: str, run: str | None = None):
    from streamlit.testing.v1 import AppTest

    script = f"from pathlib import Path\nfrom dashboard.views import {page}\n{page}.render(Path({str(runs_dir)!r}))"
    at = AppTest.from_string(script, default_timeout=30)
    if run is not None:
        at.query_params["run"] = run
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


# ------------------------------------------------------------ 1. the chosen run: across pages, in the URL


def test_chosen_run_survives_page_switches_and_is_in_the_url(root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    at = _app(monkeypatch, root)
    assert at.sidebar.selectbox[0].value == "demo" and at.query_params["run"] == "demo"
    at.sidebar.selectbox[0].set_value("half-done").run()
    assert at.query_params["run"] == "half-done"
    for title in ("Metrics", "Memorization", "Bias", "Runs"):
        _switch(at, title)
        assert at.sidebar.selectbox[0].value == "half-done", title
        assert at.query_params["run"] == "half-done"
    _switch(at, "Metrics")
    assert at.title[0].value.replace("\\", "") == "Metrics · half-done"


def test_run_from_the_url_and_unknown_names(root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    at = _app(monkeypatch, root, run="half-done")
    assert at.sidebar.selectbox[0].value == "half-done"
    assert not [i for i in at.info if "No run named" in i.value]

    at = _app(monkeypatch, root, run="no-such-run")
    assert at.sidebar.selectbox[0].value == "demo" and at.query_params["run"] == "demo"
    notes = [i.value.replace("\\", "") for i in at.info if "No run named" in i.value]
    assert notes == ["No run named “no-such-run” under the runs root; showing demo."]


# ------------------------------------------------------------ 2. damaged runs, the default run


def test_damaged_runs_are_labelled_and_never_the_default(root: Path) -> None:
    runs = D.discover_runs(root)
    assert [r.name for r in runs] == ["truncated", "corrupt", "demo", "half-done"]
    labels = {r.name: r.label for r in runs}
    assert labels["truncated"].startswith("truncated (damaged: manifest.json is not valid JSON")
    assert labels["corrupt"].startswith("corrupt (damaged: samples.parquet cannot be read")
    assert len(labels["corrupt"]) < 100 and "\n" not in labels["corrupt"]
    assert labels["demo"] == "demo (complete)" and labels["half-done"] == "half-done (incomplete)"
    assert not runs[1].complete
    assert D.default_run(runs).name == "demo"
    assert D.default_run([r for r in runs if r.name != "demo"]).name == "half-done"  # undamaged beats damaged
    assert D.default_run(runs[:2]).name == "truncated" and D.default_run([]) is None


@pytest.mark.parametrize("page", PAGES)
def test_every_page_warns_about_a_damaged_run(root: Path, page: str) -> None:
    at = _page(root, page)
    assert at.sidebar.selectbox[0].value == "demo"
    assert not [w for w in at.warning if "damaged" in w.value]
    for name, reason in (("corrupt", "samples.parquet cannot be read"), ("truncated", "manifest.json is not valid")):
        at = _page(root, page, run=name)
        damaged = [w.value for w in at.warning if w.value.startswith("This run is damaged")]
        assert len(damaged) == 1 and reason in damaged[0].replace("\\", ""), (page, name, damaged)


# ------------------------------------------------------------ 3. safety


def test_symlinked_run_outside_the_root_is_refused(root: Path, tmp_path: Path) -> None:
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    make_complete_run(outside, "escapee", created="2026-01-01T00:00:00+00:00")
    (root / "escapee").symlink_to(outside / "escapee", target_is_directory=True)
    (root / "alias").symlink_to(root / "demo", target_is_directory=True)  # inside the root: listed
    names = [r.name for r in D.discover_runs(root)]
    assert "escapee" not in names and "alias" in names


def test_refused_images_say_so(root: Path) -> None:
    samples = C.read_table(root / "demo", C.SAMPLES_TABLE)
    samples.loc[0, "path"] = "../../../etc/passwd"
    samples.loc[1, "path"] = "images/gone.png"
    C.write_table(root / "demo", C.SAMPLES_TABLE, samples)
    at = _page(root, "runs_page")
    notes = [w.value for w in at.warning if w.value.startswith("Image")]
    assert len(notes) == 2 and len(at.image) == N_IMAGES - 2
    assert notes[0].startswith("Image refused (its path lies outside the run directory)")
    assert notes[1].startswith("Image not on disk")


@pytest.mark.parametrize(
    "host, local", [("127.0.0.1", True), ("127.0.0.2", True), ("::1", True), ("localhost", True),
                    ("0.0.0.0", False), ("::", False), ("192.168.1.5", False), ("gpu-box", False)],
)  # fmt: skip
def test_cli_warns_when_the_host_is_not_loopback(
    host: str, local: bool, root: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    started: list[list[str]] = []

    class FakeProcess:
        def __init__(self, argv: list[str]) -> None:
            started.append(argv)

        def wait(self, timeout: float | None = None) -> int:
            return 0

    monkeypatch.setattr(cli.subprocess, "Popen", FakeProcess)
    assert cli.main(["--runs", str(root), "--host", host, "--headless"]) == 0
    assert started and started[0][started[0].index("--server.address") + 1] == host
    warnings = [line for line in capsys.readouterr().err.splitlines() if line.startswith("warning:")]
    if local:
        assert warnings == []
    else:
        assert len(warnings) == 1 and f"--host {host} is not a loopback address" in warnings[0]


def test_favicon_is_local() -> None:
    from dashboard import app
    from streamlit.string_util import is_emoji

    assert is_emoji(app.FAVICON)  # Streamlit draws it as an inline SVG; a :material/: icon is fetched from Google


# ------------------------------------------------------------ 4. live runs


def _finish(run: Path, demo: Path) -> None:
    """Turn the interrupted run into a complete one (what generation does at its end)."""
    shutil.copytree(demo / "images", run / "images", dirs_exist_ok=True)
    shutil.copy(C.SAMPLES_TABLE.path(demo), C.SAMPLES_TABLE.path(run))
    write_json(run / C.MANIFEST, manifest(run.name, "2025-01-01T09:00:00+00:00", complete=True))


def test_live_run_list_is_reread_on_every_rerun(root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    at = _app(monkeypatch, root, run="half-done")
    labels = at.sidebar.selectbox[0].options
    assert "half-done (incomplete)" in labels
    before = D.live_stamp(root / "half-done")
    time.sleep(0.01)
    _finish(root / "half-done", root / "demo")
    assert D.live_stamp(root / "half-done") != before
    at.run()
    assert "half-done (complete)" in at.sidebar.selectbox[0].options
    assert at.sidebar.selectbox[0].value == "half-done" and len(at.image) == N_IMAGES


def test_only_incomplete_runs_are_polled(root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from dashboard.views import common

    polled: list[Path] = []
    monkeypatch.setattr(common, "_watch_live_run", lambda run_dir, stamp: polled.append(Path(run_dir)))
    for name in ("demo", "corrupt", "half-done"):
        _page(root, "metrics_page", run=name)
    assert [p.name for p in polled] == ["half-done"]


# ------------------------------------------------------------ the browser


@pytest.mark.browser
def test_browser_url_state_live_refresh_and_no_external_requests(chromium: Path, root: Path, tmp_path: Path) -> None:
    from playwright.sync_api import expect, sync_playwright

    expect.set_options(timeout=180_000)
    requests: list[str] = []
    with serve_dashboard(root, tmp_path / "streamlit.log") as url, sync_playwright() as pw:
        browser = launch_chromium(pw, chromium)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1200})
            page.set_default_timeout(180_000)
            page.on("request", lambda request: requests.append(request.url))
            page.goto(url + "/metrics?run=half-done")
            sidebar = page.get_by_test_id("stSidebar")
            picker = sidebar.get_by_role("combobox", name="Run")
            expect(picker).to_have_value("half-done (incomplete)")
            expect(page.get_by_role("heading", name="Metrics · half-done")).to_be_visible()

            # Switching pages keeps the run, and the URL names it.
            sidebar.get_by_role("link", name="Runs").click()
            expect(page.get_by_role("heading", name="half-done")).to_be_visible()
            expect(picker).to_have_value("half-done (incomplete)")
            expect(page).to_have_url(re.compile(r"[?&]run=half-done(&|$)"), timeout=30_000)

            # The run finishes: the page refreshes by itself (no reload).
            _finish(root / "half-done", root / "demo")
            expect(picker).to_have_value("half-done (complete)", timeout=60_000)
            expect(page.locator('[data-testid="stImage"] img')).to_have_count(N_IMAGES)

            # A shared link with an unknown run lands on the default run with a note.
            page.goto(url + "/runs?run=nope")
            expect(picker).to_have_value("demo (complete)")
            expect(page.get_by_text("No run named", exact=False)).to_be_visible()
            favicon = page.evaluate("() => document.querySelector(\"link[rel='shortcut icon']\")?.href || ''")
            assert favicon.startswith("data:image/svg+xml"), favicon
        finally:
            browser.close()
    external = sorted({r for r in requests if not r.startswith((url, "data:", "blob:", "about:"))})
    assert requests and external == [], external
