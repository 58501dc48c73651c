"""Tests for the dashboard: reading runs (dashboard.data), the page registry, the app, the CLI.

Tiers: pure-function tests; in-process app tests with Streamlit's AppTest;
a subprocess check that torch is never imported; and one browser test
(``-m browser``) that serves the real app and drives it in headless Chromium.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import textwrap
import time
import urllib.request
from pathlib import Path

import pandas as pd
import pytest

from bench import contract as C
from dashboard.cli import APP_PATH, build_parser, main, streamlit_command
from dashboard.data import discovery as D
from dashboard.data import metrics as M
from dashboard.data import reading as IO
from dashboard.data import samples as S
from dashboard.data import text as T
from dashboard_fixtures import (
    app_on_page, app_test, page_test,
    keep_screenshots, launch_chromium,
    LIGHT_BENCH_MODULES,
    FD, N_IMAGES, PRECISION, RECALL, SHA, XSS_PROMPT, legacy_metrics_rows, make_runs_root, metrics_rows, write_json,
)  # fmt: skip

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture
def root(tmp_path: Path) -> Path:
    """A runs root with a complete run 'demo', an interrupted 'half-done' and a junk dir."""
    return make_runs_root(tmp_path)


# ------------------------------------------------------------ dashboard.data


def test_discover_lists_runs_newest_first_and_skips_junk(root: Path) -> None:
    runs = D.discover_runs(root)
    assert [r.name for r in runs] == ["demo", "half-done"]
    demo, half = runs
    assert demo.complete and demo.error is None and demo.label == "demo (complete)"
    assert not half.complete and half.label == "half-done (incomplete)"


def test_discover_missing_root_is_empty(tmp_path: Path) -> None:
    assert D.discover_runs(tmp_path / "nope") == []
    assert D.discover_runs(tmp_path) == []


def test_discover_falls_back_to_mtime_and_lists_corrupt_manifests(root: Path) -> None:
    (root / "no-date").mkdir()
    write_json(root / "no-date" / "manifest.json", {"run": "no-date"})  # no 'created': mtime (now) wins
    (root / "broken").mkdir()
    (root / "broken" / "manifest.json").write_text("{not json")
    os.utime(root / "broken" / "manifest.json", (0, 0))  # oldest
    runs = D.discover_runs(root)
    assert [r.name for r in runs] == ["no-date", "demo", "half-done", "broken"]
    broken = runs[-1]
    assert broken.error.startswith("manifest.json is not valid JSON") and broken.label.startswith(
        "broken (damaged: manifest.json is not valid JSON")


def test_load_json_errors_are_strings(tmp_path: Path) -> None:
    assert IO.load_json(tmp_path / "x.json") == (None, "x.json is missing")
    (tmp_path / "list.json").write_text("[1, 2]")
    assert IO.load_json(tmp_path / "list.json") == (None, "list.json is not a JSON object (found list)")


def test_load_samples_adds_paths_and_flags_missing_images(root: Path) -> None:
    run = root / "demo"
    (run / "images" / "p000__s000__g1.png").unlink()
    samples, error = S.load_samples(run)
    assert error is None and len(samples) == N_IMAGES
    assert samples["exists"].sum() == N_IMAGES - 1
    assert all(Path(p).is_absolute() for p in samples["abs_path"])
    manifest, _ = IO.load_manifest(run)
    assert D.run_problems(manifest, samples, None) == [
        f"1 of {N_IMAGES} images listed in samples.parquet are missing on disk"
    ]


def test_load_samples_missing_corrupt_and_unsafe(root: Path) -> None:
    samples, error = S.load_samples(root / "half-done")
    assert samples is None and error.startswith("samples.parquet is missing")
    manifest, _ = IO.load_manifest(root / "half-done")
    problems = D.run_problems(manifest, None, error)
    assert len(problems) == 2 and "does not mark this run complete" in problems[0]

    (root / "half-done" / "samples.parquet").write_bytes(b"PAR1 garbage")
    samples, error = S.load_samples(root / "half-done")
    assert samples is None and error.startswith("samples.parquet cannot be read")

    good, _ = S.load_samples(root / "demo")
    C.write_table(root / "demo", C.SAMPLES_TABLE, good.drop(columns=["abs_path", "exists"]).assign(path="../../etc/passwd"))
    unsafe, error = S.load_samples(root / "demo")
    assert error is None and not unsafe["exists"].any() and set(unsafe["abs_path"]) == {""}

    good.drop(columns=["abs_path", "exists", "prompt"]).to_parquet(root / "demo" / "samples.parquet")  # off-schema
    assert S.load_samples(root / "demo") == (None, "samples.parquet lacks column(s): prompt")


def test_filter_samples_by_category_and_guidance(root: Path) -> None:
    samples, _ = S.load_samples(root / "demo")
    assert S.categories(samples) == ["counting", "spatial"]
    assert S.guidance_values(samples) == [1.0, 7.5]
    assert len(S.filter_samples(samples)) == 6
    assert len(S.filter_samples(samples, [], [])) == 6
    assert len(S.filter_samples(samples, ["spatial"])) == 2
    assert len(S.filter_samples(samples, guidance=[7.5])) == 3
    both = S.filter_samples(samples, ["counting"], [1.0])
    assert list(both["prompt_id"]) == ["p000", "p001"] and set(both["guidance"]) == {1.0}


def test_pagination() -> None:
    df = pd.DataFrame({"i": range(100)})
    assert S.page_count(0, 48) == 1 and S.page_count(100, 48) == 3
    assert list(S.page_slice(df, 3, 48)["i"]) == [96, 97, 98, 99]
    assert list(S.page_slice(df, 99, 48)["i"]) == [96, 97, 98, 99]  # clamped


def test_manifest_facts(root: Path) -> None:
    manifest, _ = IO.load_manifest(root / "demo")
    facts = dict(T.manifest_facts(manifest, 6))
    assert facts["Model"] == "builtin:shapes-ldm-tiny"
    assert facts["Scheduler"] == "DDIMScheduler" and facts["Steps"] == "20"
    assert facts["Guidance"] == "1, 7.5" and facts["Seed"] == "1234" and facts["Images"] == "6"
    assert facts["Prompt set"] == f"shapes-mini v1.0 (sha256 {SHA[:12]}), subset all"
    empty = dict(T.manifest_facts({}, None))
    assert empty["Model"] == T.MISSING and empty["Prompt set"] == T.MISSING


def test_escape_markdown_shows_user_text_literally() -> None:
    assert T.escape_markdown("<script>alert(1)</script>") == r"\<script\>alert\(1\)\</script\>"
    assert T.escape_markdown("$x$ *a* :red[b]\nnext") == r"\$x\$ \*a\* \:red\[b\] next"
    assert T.truncate("a" * 100, 10) == "a" * 9 + "…"


# ------------------------------------------------------- metrics (pure functions)


def test_load_metrics_and_sweep(root: Path) -> None:
    metrics, error = M.load_metrics(root / "demo")
    assert error is None and len(metrics) == len(metrics_rows())
    assert metrics["guidance"].dtype == float and metrics["value"].dtype == float
    assert metrics["guidance"].isna().any()  # NaN = all guidance scales together
    assert {PRECISION, RECALL} <= set(metrics["metric"])
    sweep, error = M.load_sweep(root / "demo")
    assert error is None and list(sweep["guidance"]) == [1.0, 7.5] and FD in sweep.columns

    assert M.load_metrics(root / "half-done") == (None, "metrics.parquet is missing (the run has not been scored yet)")
    assert M.load_sweep(root / "half-done") == (None, "sweep.parquet is missing (no guidance sweep for this run)")
    (root / "half-done" / "metrics.parquet").write_bytes(b"PAR1 garbage")
    assert M.load_metrics(root / "half-done")[1].startswith("metrics.parquet cannot be read")
    metrics.drop(columns=["value"]).to_parquet(root / "half-done" / "metrics.parquet")
    assert M.load_metrics(root / "half-done") == (None, "metrics.parquet lacks column(s): value")


def test_load_metrics_upgrades_old_metric_names(root: Path) -> None:
    """Runs scored before the naming rule wrote bare "precision"/"recall"; they read back with their extractor."""
    C.write_table(root / "demo", C.METRICS_TABLE, legacy_metrics_rows())
    metrics, error = M.load_metrics(root / "demo")
    assert error is None and "precision" not in set(metrics["metric"])
    pd.testing.assert_frame_equal(metrics, C.read_table(root / "demo", C.METRICS_TABLE).pipe(C.upgrade_metric_names))
    assert list(dict.fromkeys(metrics["metric"])) == list(dict.fromkeys(metrics_rows()["metric"]))


def test_describe_metric_uses_the_registry() -> None:
    from dashboard.views.metrics_page import describe_metric

    assert describe_metric("FID") == ("FID", False)
    assert describe_metric(FD) == ("FD (efficientnet-lite0)", False)
    assert describe_metric("KID_efficientnet-lite0") == ("KID (efficientnet-lite0)", False)
    assert describe_metric(PRECISION) == ("Precision (efficientnet-lite0)", True)
    assert describe_metric("recall_inception-v3-pool3") == ("Recall (inception-v3-pool3)", True)
    assert describe_metric("precision") == ("Precision", True)  # bare: an old run whose extractor is unknown
    assert describe_metric("CLIPScore") == ("CLIP score", True)
    assert describe_metric("IS") == ("Inception Score", True)
    assert describe_metric("compositional_accuracy") == ("Compositional accuracy", True)
    assert describe_metric("made-up") == ("made-up", None)
    assert M.metric_label("made-up") == "made-up" and M.metric_label("x", "X", True) == "X ↑"


def test_headline_and_category_tables(root: Path) -> None:
    from dashboard.views.metrics_page import describe_metric

    metrics, _ = M.load_metrics(root / "demo")
    table = M.headline_table(metrics, describe_metric)
    assert list(table.columns) == ["all", "g=1", "g=7.5"]
    assert list(table.index) == [
        "FD (efficientnet-lite0) ↓", "KID (efficientnet-lite0) ↓", "Precision (efficientnet-lite0) ↑",
        "Recall (efficientnet-lite0) ↑",
        "CLIP score ↑", "Compositional accuracy ↑",
    ]  # fmt: skip
    assert table.loc["FD (efficientnet-lite0) ↓", "g=7.5"] == 120.25 and table.loc["CLIP score ↑", "all"] == 27.0
    assert list(M.headline_table(metrics).index)[0] == FD  # no metadata: plain names

    assert M.category_metrics(metrics) == ["CLIPScore", "compositional_accuracy"]
    per_category = M.category_table(metrics, "compositional_accuracy")
    assert list(per_category.index) == ["counting", "spatial"] and list(per_category.columns) == ["all", "g=1", "g=7.5"]
    assert per_category.loc["spatial", "g=7.5"] == 1.0
    assert M.category_table(metrics, FD).empty


def test_tradeoff_points_from_sweep_or_metrics(root: Path) -> None:
    metrics, _ = M.load_metrics(root / "demo")
    sweep, _ = M.load_sweep(root / "demo")
    rebuilt = M.sweep_from_metrics(metrics)
    for table in (sweep, rebuilt):
        points, reason = M.tradeoff_points(table)
        assert reason is None
        assert points.to_dict("list") == {"guidance": [1.0, 7.5], "x": [24.0, 30.0], "y": [95.5, 120.25],
                                          "label": ["g=1", "g=7.5"]}  # fmt: skip
    no_clip = rebuilt.drop(columns=["CLIPScore"])
    assert M.alignment_column(no_clip) == "compositional_accuracy"
    assert M.tradeoff_points(no_clip)[0]["x"].round(3).tolist() == [0.333, 0.667]
    assert "no FD/FID" in M.tradeoff_points(rebuilt.drop(columns=[FD]))[1]
    assert "at least two guidance" in M.tradeoff_points(rebuilt.head(1))[1]
    assert "no CLIP score" in M.tradeoff_points(rebuilt[["guidance", FD]])[1]
    imported = metrics[metrics["guidance"].isna()]  # a run without guidance scales
    assert "at least two guidance" in M.tradeoff_points(M.sweep_from_metrics(imported))[1]


# ------------------------------------------------------------ the app (AppTest)


def test_app_shows_run_and_filters(root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    at = app_on_page(monkeypatch, root)  # the landing page is the Overview
    assert at.sidebar.selectbox[0].value == "demo"
    assert len(at.image) == N_IMAGES
    captions = [c for img in at.image for c in img.captions]
    assert T.escape_markdown(T.truncate(XSS_PROMPT)) in " ".join(captions)
    at.sidebar.multiselect[0].set_value(["spatial"]).run()
    assert len(at.image) == 2
    at.sidebar.multiselect[1].set_value([7.5]).run()
    assert len(at.image) == 1


def test_app_incomplete_run_warns(root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    at = app_on_page(monkeypatch, root)  # the landing page is the Overview
    at.sidebar.selectbox[0].set_value("half-done").run()
    assert not at.exception
    assert "Incomplete run" in at.warning[0].value and len(at.image) == 0
    assert "No images to show yet" in at.info[0].value


def test_app_unreadable_manifest_shows_error(root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (root / "broken").mkdir()
    (root / "broken" / "manifest.json").write_text("{not json")
    at = app_on_page(monkeypatch, root)  # the landing page is the Overview
    at.sidebar.selectbox[0].set_value("broken").run()
    assert not at.exception
    assert "manifest.json is not valid JSON" in at.error[0].value.replace("\\", "")


def test_app_paginates_big_runs(root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    samples = C.read_table(root / "demo", C.SAMPLES_TABLE)
    big = pd.concat([samples.assign(sample_index=i) for i in range(9)], ignore_index=True)  # 54 rows
    C.write_table(root / "demo", C.SAMPLES_TABLE, big)
    at = app_on_page(monkeypatch, root)  # the landing page is the Overview
    assert len(at.image) == 48
    at.number_input[0].set_value(2).run()
    assert len(at.image) == 54 - 48


def test_app_without_runs_says_how_to_make_one(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    at = app_test(monkeypatch, tmp_path)
    assert "No runs found" in at.info[0].value
    assert "make demo" in at.code[0].value and "t2i-bench generate --help" in at.code[0].value


def test_metrics_page_tables_and_curve(root: Path) -> None:
    at = page_test("metrics_page", root)
    assert at.sidebar.selectbox[0].value == "demo"
    headline = at.dataframe[0].value  # long: one row per (metric, guidance), with n, interval, reference
    clip_g1 = headline[(headline.metric == "CLIP score ↑") & (headline.guidance == "g=1")]
    assert clip_g1.value.tolist() == [24.0]
    assert set(headline.guidance) == {"all", "g=1", "g=7.5"}
    assert set(at.dataframe[1].value["category"]) == {"counting", "spatial"}
    assert len(at.get("plotly_chart")) == 2  # the trade-off curve and the metric against guidance
    assert "from sweep.parquet" in " ".join(c.value for c in at.caption)
    # Axes default to the papers' choice and can be changed.
    assert [at.selectbox[0].value, at.selectbox[1].value] == ["CLIPScore", FD]
    at.selectbox[0].set_value("compositional_accuracy").run()
    assert not at.exception and len(at.get("plotly_chart")) == 2

    at.sidebar.selectbox[0].set_value("half-done").run()
    assert not at.exception and "No metrics yet" in at.info[0].value
    assert at.code[0].value.startswith("t2i-bench score ") and "--features efficientnet-lite0" in at.code[0].value
    assert len(at.dataframe) == 0 and len(at.get("plotly_chart")) == 0


def test_metrics_page_without_sweep_or_curve(root: Path) -> None:
    run = root / "demo"
    (run / "sweep.parquet").write_bytes(b"PAR1 garbage")  # damaged: ignored, curve from metrics.parquet
    at = page_test("metrics_page", root)
    assert "Ignoring sweep.parquet" in at.warning[0].value and len(at.get("plotly_chart")) == 2
    assert "from metrics.parquet" in " ".join(c.value for c in at.caption)

    (run / "sweep.parquet").unlink()
    rows = metrics_rows()
    C.write_table(run, C.METRICS_TABLE, rows[rows["metric"] != FD])  # no FD: no curve
    at = page_test("metrics_page", root)
    assert "no FD/FID values" in at.info[0].value and len(at.get("plotly_chart")) == 0
    assert len(at.dataframe) == 4  # headline, 2 per-category tables, notes

    (run / "metrics.parquet").write_bytes(b"junk")
    at = page_test("metrics_page", root)
    assert "cannot be shown" in at.error[0].value and "t2i-bench score" in at.code[0].value


def test_metrics_page_without_runs(tmp_path: Path) -> None:
    at = page_test("metrics_page", tmp_path)
    assert "No runs found" in at.info[0].value


# ------------------------------------------------------------------- the CLI


def test_cli_missing_runs_dir_is_one_line_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    missing = tmp_path / "nope"
    assert main(["--runs", str(missing)]) == 2
    err = capsys.readouterr().err
    assert err == (
        f"error: runs directory '{missing}' does not exist; "
        "create a run with 't2i-bench generate ...' or pass --runs\n"
    )


def test_cli_help_has_examples_and_defaults() -> None:
    text = build_parser().format_help()
    assert "t2i-dashboard --runs" in text and "127.0.0.1" in text
    args = build_parser().parse_args([])
    assert (args.runs, args.port, args.host, args.headless) == ("runs", 8501, "127.0.0.1", False)


def test_streamlit_command(tmp_path: Path) -> None:
    cmd = streamlit_command(tmp_path, "127.0.0.1", 8765)
    assert cmd[:5] == [sys.executable, "-m", "streamlit", "run", str(APP_PATH)]
    joined = " ".join(cmd)
    assert "--server.address 127.0.0.1 --server.port 8765 --server.headless true" in joined
    assert "--browser.gatherUsageStats false" in joined
    assert "--client.toolbarMode minimal" in joined
    assert cmd[-3:] == ["--", "--runs", str(tmp_path.resolve())]


# ------------------------------------------------------ never import torch


def test_dashboard_never_imports_torch(root: Path) -> None:
    """Importing every dashboard module and running the pages leaves torch and audit unloaded."""
    code = textwrap.dedent(
        f"""
        import os, pkgutil, sys, importlib
        os.environ["T2I_RUNS_DIR"] = {str(root)!r}
        import dashboard
        for module in pkgutil.walk_packages(dashboard.__path__, "dashboard."):
            importlib.import_module(module.name)
        from streamlit.testing.v1 import AppTest
        at = AppTest.from_file({str(APP_PATH)!r}, default_timeout=30)
        at.run()  # the landing page (Overview), then the Runs page
        assert not at.exception, at.exception
        at._page_hash = next(h for h, i in at._registered_pages.items() if i.get("page_name") == "Runs")
        at.run()
        assert not at.exception, at.exception
        assert len(at.image) == {N_IMAGES}
        # The Runs page needs bench's run-directory contract, registry and intervals only.
        light = {LIGHT_BENCH_MODULES!r}
        bad = sorted(m for m in sys.modules if m.split(".")[0] in ("torch", "audit")
                     or (m.split(".")[0] == "bench" and m not in light and not m.startswith("bench.contract")))
        assert not bad, bad

        # The Metrics page reads bench.metrics (numpy/scipy) for metadata, the Audits page summary.json: still no torch.
        for page in ("metrics_page", "audits_page"):
            script = ("from pathlib import Path\\n"
                      f"from dashboard.views import {{page}}\\n{{page}}.render(Path({str(root)!r}))")
            at = AppTest.from_string(script, default_timeout=30)
            at.run()
            assert not at.exception, at.exception
            if page == "metrics_page":
                assert len(at.get("plotly_chart")) == 2 and len(at.dataframe) >= 3
        assert "bench.metrics" in sys.modules
        bad = sorted(m for m in sys.modules if m.split(".")[0] in ("torch", "torchvision", "open_clip", "audit")
                     or m.split(".")[:2] in (["bench", "models"], ["bench", "score"], ["bench", "generate"]))
        assert not bad, bad
        print("ok")
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0 and result.stdout.strip() == "ok", result.stderr[-3000:]


# ------------------------------------------------------------ the browser


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def served_app(chromium: Path, root: Path, tmp_path: Path):
    """Serve the real app on a free local port; yields its URL; always stops it."""
    port = _free_port()
    log = open(tmp_path / "streamlit.log", "w")
    process = subprocess.Popen(
        streamlit_command(root, "127.0.0.1", port), cwd=tmp_path, stdout=log, stderr=subprocess.STDOUT
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            if process.poll() is not None:
                pytest.fail(f"streamlit exited with {process.returncode}:\n{_tail(tmp_path / 'streamlit.log')}")
            try:
                with urllib.request.urlopen(url + "/_stcore/health", timeout=2) as response:
                    if response.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"streamlit did not answer within 60 s:\n{_tail(tmp_path / 'streamlit.log')}")
            time.sleep(0.3)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()


def _tail(path: Path, n: int = 3000) -> str:
    return path.read_text(errors="replace")[-n:]


@pytest.mark.browser
def test_browser_runs_and_metrics_pages(chromium: Path, served_app: str, tmp_path: Path) -> None:
    from playwright.sync_api import expect, sync_playwright

    expect.set_options(timeout=180_000)  # a cold Streamlit session on a busy 2-core box is slow
    dialogs: list[str] = []
    with sync_playwright() as pw:
        browser = launch_chromium(pw, chromium)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1400})
            page.set_default_timeout(180_000)
            page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
            page.goto(served_app + "/runs")

            images = page.locator('[data-testid="stImage"] img')
            expect(images).to_have_count(N_IMAGES)
            page.screenshot(path=str(tmp_path / "dashboard.png"), full_page=True)
            sidebar = page.get_by_test_id("stSidebar")
            run_picker = sidebar.get_by_role("combobox", name="Run")
            expect(run_picker).to_have_value("demo (complete)")
            run_picker.click()
            expect(page.get_by_role("option", name="half-done (incomplete)")).to_be_visible()
            page.keyboard.press("Escape")
            for fact in ("builtin:shapes-ldm-tiny", "DDIMScheduler", "float32", SHA[:12]):
                expect(page.get_by_text(fact, exact=False).first).to_be_visible()
            expect(page.get_by_text("6 of 6 images match")).to_be_visible()

            # The XSS probe is shown as literal text and runs nothing.
            expect(page.get_by_text("<script>alert(1)</script> a *red* circle", exact=False).first).to_be_visible()

            # Filter by category: the grid shrinks to the 2 'spatial' images.
            sidebar.get_by_test_id("stMultiSelect").first.locator("input").click()
            page.keyboard.type("spatial")
            page.keyboard.press("Enter")
            page.keyboard.press("Escape")
            expect(page.get_by_text("2 of 6 images match")).to_be_visible()
            expect(images).to_have_count(2)

            injected = page.evaluate("() => [...document.scripts].some(s => s.text.includes('alert(1)'))")
            assert not injected

            # The Metrics page: headline and per-category tables, and the interactive trade-off curve.
            sidebar.get_by_role("link", name="Metrics").click()
            expect(page.get_by_role("heading", name="Metrics · demo")).to_be_visible()
            expect(sidebar.get_by_role("combobox", name="Run")).to_have_value("demo (complete)")
            tables = page.locator('[data-testid="stDataFrame"]')  # headline, 2 per category (+ 1 in an expander)
            expect(tables.nth(2)).to_be_visible()
            chart = page.locator(".js-plotly-plot")
            expect(chart).to_have_count(2)  # the trade-off curve, the metric against guidance
            expect(chart.first.locator("text", has_text="g=7.5").first).to_be_visible()
            expect(page.get_by_text("from sweep.parquet", exact=False)).to_be_visible()
            page.screenshot(path=str(tmp_path / "metrics.png"), full_page=True)
            assert dialogs == []
        finally:
            browser.close()

    keep_screenshots(tmp_path, list(("dashboard.png", "metrics.png")))
