"""The Overview page (the dashboard's landing page): every run in one sortable table with its status, headline
metrics and their 95% intervals, its audits, and a link to the Runs page (``dashboard.data.overview``)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from bench import contract as C
from dashboard import pages as P
from dashboard.data import discovery as D
from dashboard.data import overview as O
from dashboard.data.text import escape_markdown
from dashboard_fixtures import (
    FD, HEADLINE, add_metric_intervals, app_test, interval_of, make_audited_runs_root, make_complete_run, manifest,
    page_test,
)  # fmt: skip

XSS_RUN = "<img src=x onerror=alert(1)> *bold*"  # a directory name may hold anything but "/"


@pytest.fixture
def root(tmp_path: Path) -> Path:
    """'demo' (audited, metrics with intervals), 'plain' (intervals only in summary.json, no metrics.parquet),
    'half-done' (incomplete), 'corrupt' (damaged samples.parquet), 'truncated' (damaged manifest)."""
    root = make_audited_runs_root(tmp_path)
    add_metric_intervals(root / "demo")
    add_metric_intervals(root / "plain", in_table=False)
    C.METRICS_TABLE.path(root / "plain").unlink()
    corrupt = make_complete_run(root, "corrupt", created="2025-02-01T00:00:00+00:00")
    C.SAMPLES_TABLE.path(corrupt).write_bytes(b"PAR1 garbage")
    (root / "truncated").mkdir()
    (root / "truncated" / C.MANIFEST).write_text(json.dumps(manifest("truncated", "2025-03-01T00:00:00+00:00"))[:40])
    return root


def _by_run(root: Path):
    table, rows = O.load_overview(D.discover_runs(root))
    return table.set_index("run"), {r.name: r for r in rows}


def test_overview_table_has_every_run_with_status_metrics_intervals_and_audits(root: Path) -> None:
    table, rows = _by_run(root)
    assert list(table.index) == ["truncated", "corrupt", "demo", "half-done", "plain"]  # newest first
    assert dict(table["status"]) == {"truncated": "damaged", "corrupt": "damaged", "demo": "complete",
                                     "half-done": "incomplete", "plain": "complete"}  # fmt: skip
    assert table.loc["demo", "model"] == "builtin:shapes-ldm-tiny" and table.loc["demo", "prompt_set"] == "shapes-mini@1.0"
    assert (table.loc["demo", "n_images"], table.loc["demo", "n_expected"]) == (6, 6)
    assert table.loc["demo", "note"] == "" and table.loc["demo", "open"] == "runs?run=demo"
    # Headline metric (all images, all guidance) and its interval, from metrics.parquet ...
    for metric, by_guidance in HEADLINE.items():
        value = by_guidance[math.nan]
        assert table.loc["demo", metric] == pytest.approx(value)
        assert table.loc["demo", metric + O.CI_SUFFIX] == O.format_interval(*interval_of(value))
    assert rows["demo"].metrics_source == C.METRICS
    # ... or, without metrics.parquet, from summary.json's "metrics" and "metric_intervals".
    assert rows["plain"].metrics_source == C.SUMMARY
    assert table.loc["plain", FD] == 80.0 and table.loc["plain", FD + O.CI_SUFFIX] == "72 – 88"
    assert table.loc["half-done", FD + O.CI_SUFFIX] == "—" and math.isnan(table.loc["half-done", FD])
    # The audits that were run, with their headline.
    assert table.loc["demo", "audits"] == "Memorization (training-data copies) (50.0 %), Watermarks (visible and invisible) (33.3 %)"
    assert table.loc["plain", "audits"] == "—"


def test_overview_damaged_and_incomplete_runs_get_one_line(root: Path) -> None:
    table, _ = _by_run(root)
    assert table.loc["corrupt", "note"].startswith("samples.parquet cannot be read")
    assert table.loc["truncated", "note"].startswith("manifest.json is not valid JSON")
    assert "generation has not finished" in table.loc["half-done", "note"]
    for run in ("corrupt", "truncated", "half-done"):
        note = table.loc[run, "note"]
        assert "\n" not in note and "Traceback" not in note and len(note) <= O.NOTE_LIMIT
    (root / "demo" / C.METRICS).write_bytes(b"junk")  # damaged metrics: headline from summary.json, said so
    table, rows = _by_run(root)
    assert table.loc["demo", "note"].startswith("metrics.parquet cannot be read") and rows["demo"].metrics_source == C.SUMMARY
    assert table.loc["demo", FD] == 80.0 and table.loc["demo", FD + O.CI_SUFFIX] == "72 – 88"


def test_overview_headline_prefers_pooled_rows_and_keeps_missing_intervals_missing() -> None:
    import pandas as pd

    rows = pd.DataFrame({"metric": ["A", "A", "B"], "subset": ["all", "all", "category=x"],
                         "guidance": [math.nan, 7.5, math.nan], "value": [1.0, 2.0, 3.0],
                         "ci_low": [math.nan, 1.5, 2.0], "ci_high": [math.nan, 2.5, 4.0]})  # fmt: skip
    assert O.headline_from_metrics(rows) == {"A": (1.0, None, None)}
    single = rows.iloc[[1]]  # one guidance scale only
    assert O.headline_from_metrics(single) == {"A": (2.0, 1.5, 2.5)}
    summary = {"metrics": {"all": {"A": 1.0, "B": "x"}}, "metric_intervals": {"all": {"A": [0.5, "bad"]}}}
    assert O.headline_from_summary(summary) == {"A": (1.0, 0.5, None)}
    assert O.format_interval(0.5, None) == "—" and O.headline_from_summary(None) == {}
    assert O.run_link("a b&c") == "runs?run=a%20b%26c"


def test_overview_page_table_warnings_and_link(root: Path) -> None:
    at = page_test("overview_page", root)
    assert at.title[0].value == "Overview"
    shown = at.dataframe[0].value
    assert list(shown["run"]) == ["truncated", "corrupt", "demo", "half-done", "plain"]
    assert "5 runs under" in at.caption[0].value and "2 damaged" in at.caption[0].value
    damaged = [w.value for w in at.warning]
    assert len(damaged) == 2 and all("\n" not in w for w in damaged)
    assert any("samples.parquet cannot be read" in w.replace("\\", "") for w in damaged)
    # The page link opens the chosen run in the Runs page: ?run=NAME.
    (link,) = at.get("page_link")
    assert (link.proto.page, link.proto.query_string) == ("runs", "run=demo")  # the default run
    at.selectbox[0].set_value("plain").run()
    (link,) = at.get("page_link")
    assert link.proto.query_string == "run=plain" and "plain" in link.proto.label


def test_overview_escapes_run_derived_text(root: Path) -> None:
    make_complete_run(root, XSS_RUN, created="2026-01-01T00:00:00+00:00")
    C.SAMPLES_TABLE.path(root / XSS_RUN).write_bytes(b"PAR1 garbage")
    at = page_test("overview_page", root)
    shown = at.dataframe[0].value.set_index("run")
    assert XSS_RUN in shown.index  # st.dataframe draws cells literally
    warning = next(w.value for w in at.warning if "bold" in w.value)
    assert warning.startswith(escape_markdown(XSS_RUN)) and " <img" not in " " + warning
    assert shown.loc[XSS_RUN, "open"] == "runs?run=%3Cimg%20src%3Dx%20onerror%3Dalert%281%29%3E%20%2Abold%2A"


def test_overview_is_the_landing_page(root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert P.page_titles()[0] == ("Overview", "overview") and P.page_title("runs") == "Runs"
    at = app_test(monkeypatch, root)
    assert at.title[0].value == "Overview" and len(at.dataframe) == 1


def test_overview_without_runs(tmp_path: Path) -> None:
    at = page_test("overview_page", tmp_path)
    assert "No runs found" in at.info[0].value and len(at.dataframe) == 0


def test_overview_and_runs_pages_load_no_heavy_module(root: Path) -> None:
    """The landing page and the prompt browser need the contract, the registry and the intervals only."""
    from dashboard_fixtures import add_image_scores, heavy_modules_after_rendering

    add_image_scores(root / "demo")
    assert heavy_modules_after_rendering(root, ("overview_page", "runs_page")) == []
