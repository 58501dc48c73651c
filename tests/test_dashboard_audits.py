"""Tests for the dashboard's page registry (dashboard.pages) and the generic Audits page.

The fixture runs record their audits through ``bench.contract.record_audit``
with the real probes' declared info (``dashboard_fixtures``); a probe the
dashboard has never heard of (``toy``, as a plugin would record it) must show
on the Audits page all the same.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from bench import contract as C
from bench.registry import Registry
from dashboard import pages as P
from dashboard.data import audits as A
from dashboard.data import text as T
from dashboard_fixtures import (COPIES, N_IMAGES, VISIBLE_SCORES, WATERMARK_THRESHOLD, app_test, make_audited_runs_root,
                                page_test)

TOY = {"name": "toy", "display_name": "Toy brightness <b>probe</b>", "description": "share of *bright* images",
       "higher_is_better": True, "headline": "bright_rate", "page": "toy", "summary_key": "toy_block",
       "table": C.audit_table_file("toy")}  # fmt: skip
TOY_TABLE = C.audit_table("toy", {"image_id": "str", "brightness": "float", "bright": "bool"})


@pytest.fixture
def root(tmp_path: Path) -> Path:
    """Runs root: 'demo' with both audits, 'plain' without, 'half-done', a junk dir."""
    return make_audited_runs_root(tmp_path)


def add_toy_audit(run: Path) -> pd.DataFrame:
    """A plugin probe's outputs: its own table and its record in summary.json."""
    table = pd.DataFrame({"image_id": ["a", "b", "c", "d"], "brightness": [10.0, 200.0, 90.0, 250.0],
                          "bright": [False, True, False, True]})  # fmt: skip
    C.write_table(run, TOY_TABLE, table)
    C.record_audit(run, TOY, {"n_images": 4, "bright_rate": 0.5, "level": 128.0})
    return table


# ------------------------------------------------------------ dashboard.data.audits


def test_list_audits_reads_what_the_probes_recorded(root: Path) -> None:
    from audit.probes.memorization import PROBE as MEMORIZATION
    from audit.probes.watermark import PROBE as WATERMARK

    audits, problems = A.list_audits(C.read_summary(root / "demo"))
    assert problems == [] and [a.name for a in audits] == ["memorization", "watermark"]
    memorization, watermark = audits
    for audit, probe in ((memorization, MEMORIZATION), (watermark, WATERMARK)):
        assert audit.display_name == probe.display_name and audit.table == probe.table
        assert audit.higher_is_better is probe.higher_is_better and audit.headline == probe.headline
        assert audit.page == probe.page and audit.recorded
    assert memorization.headline_value == len(COPIES) / N_IMAGES
    n_flagged = sum(score >= WATERMARK_THRESHOLD for score in VISIBLE_SCORES.values())
    assert watermark.headline_value == n_flagged / N_IMAGES
    assert A.probe_block(C.read_summary(root / "demo"), "watermark")["threshold"] == WATERMARK_THRESHOLD

    # Further tables sit with their probe; nothing is left unclaimed.
    with_tables = A.with_tables(root / "demo", audits)
    assert [a.parts for a in with_tables] == [(C.MEMORIZATION_PROMPTS_TABLE.file,), ()]
    assert A.list_audits(C.read_summary(root / "plain")) == ([], [])
    assert A.with_tables(root / "plain", []) == []


def test_list_audits_takes_any_probe_and_survives_odd_entries(root: Path) -> None:
    add_toy_audit(root / "demo")
    summary = C.read_summary(root / "demo")
    audits, _ = A.list_audits(summary)
    toy = audits[-1]
    assert (toy.name, toy.summary_key, toy.headline_value, toy.higher_is_better) == ("toy", "toy_block", 0.5, True)
    assert A.probe_block(summary, "toy") == {"n_images": 4, "bright_rate": 0.5, "level": 128.0}
    table, error = A.load_audit_table(root / "demo", toy.table, toy.name)
    assert error is None and table["bright"].tolist() == [False, True, False, True]

    odd = {"audits": {"bare": {}, "broken": "yes", "toy": {**TOY, "higher_is_better": "maybe"}}}
    audits, problems = A.list_audits(odd)
    assert [(a.name, a.table, a.block, a.higher_is_better) for a in audits] == [
        ("bare", "audit/bare.parquet", None, None), ("toy", TOY["table"], None, None),
    ]  # fmt: skip
    assert len(problems) == 1 and "'broken'" in problems[0]
    assert A.list_audits({"audits": [1, 2]})[1][0].startswith('summary.json has an "audits" entry')


def test_load_audit_table_stays_inside_the_run(root: Path) -> None:
    run = root / "demo"
    hits, error = A.load_audit_table(run, C.MEMORIZATION_TABLE.file, "memorization")
    assert error is None and hits["is_copy"].dtype == bool  # a known table is typed by the contract
    assert "outside the run directory" in A.load_audit_table(run, "../plain/samples.parquet")[1]
    assert "outside the run directory" in A.load_audit_table(run, "/etc/passwd")[1]
    assert "not a parquet table" in A.load_audit_table(run, C.MANIFEST)[1]
    assert A.load_audit_table(run, "audit/toy.parquet", "toy") == (
        None, "audit/toy.parquet is missing (the toy audit did not write it)",
    )  # fmt: skip
    (run / "audit" / "toy.parquet").write_bytes(b"junk")
    assert A.load_audit_table(run, "audit/toy.parquet", "toy")[1].startswith("audit/toy.parquet cannot be read")


def test_tables_no_probe_recorded_are_listed(root: Path) -> None:
    """A run audited before probes were recorded: its tables show, without a headline."""
    run = root / "demo"
    C.modify_summary(run, lambda summary: summary.pop(C.AUDITS_KEY))
    audits = A.with_tables(run, A.list_audits(C.read_summary(run))[0])
    assert [(a.name, a.table, a.recorded) for a in audits] == [
        ("memorization", C.MEMORIZATION_TABLE.file, False),
        ("memorization_prompts", C.MEMORIZATION_PROMPTS_TABLE.file, False),
        ("watermark", C.WATERMARK_TABLE.file, False),
    ]  # fmt: skip


def test_format_value() -> None:
    assert T.format_value("copy_rate", 0.5) == "50.0 %" and T.format_value("fd", 12.3456) == "12.35"
    assert T.format_value("x", None) == T.MISSING and T.format_value("probe", "clip") == "clip"
    assert T.direction(False) == "↓ lower is better" and T.direction(None) == ""


# ------------------------------------------------------------ the page registry


def test_page_registry_lists_the_built_in_pages() -> None:
    assert P.page_titles() == [("Overview", "overview"), ("Runs", "runs"), ("Metrics", "metrics"),
                               ("Compare", "compare"), ("Memorization", "memorization"), ("Audits", "audits"),
                               ("Bias", "bias"), ("Report", "report")]  # fmt: skip
    assert P.PAGES.get("compare").renderer().__module__ == "dashboard.views.compare_page"
    assert P.page_title("memorization") == "Memorization" and P.page_title("nope") is None
    assert all(isinstance(P.PAGES.get(name).render, str) for name in P.PAGES)  # lazy: "module:function"
    assert P.PAGES.get("audits").renderer().__module__ == "dashboard.views.audits_page"
    with pytest.raises(Exception, match="did you mean 'audits'"):
        P.PAGES.get("audit")


def _toy_render(root: Path) -> None:
    import streamlit as st

    st.title("Toy page")
    st.write(f"{len(list(Path(root).iterdir()))} entries")


def registry_with(*extra: tuple[str, object, str]) -> Registry:
    """The built-in pages plus ``(name, entry, origin)`` entries, as plugins would add them."""
    registry = Registry("dashboard page", check=P._as_page)
    for name in P.PAGES.names():
        registry.add(name, P.PAGES.get(name))
    for name, entry, origin in extra:
        registry.add(name, entry, origin)
    return registry


def test_load_pages_orders_and_refuses_bad_plugins() -> None:
    toy = P.PageInfo("Toy", ":material/lightbulb:", "toy", _toy_render, order=35)
    registry = registry_with(
        ("toy", lambda: toy, "plugin toy:page"),  # a factory returning a PageInfo
        ("dict", {"title": "Dict", "icon": ":material/abc:", "url_path": "dict", "render": _toy_render}, "plugin d"),
        ("clash", P.PageInfo("Clash", ":material/abc:", "runs", _toy_render), "plugin clash:PAGE"),
        ("broken", "no_such_module_xyz:PAGE", "plugin no_such_module_xyz:PAGE"),
        ("bad-path", P.PageInfo("Bad", ":material/abc:", "a/b", _toy_render), "plugin bad:PAGE"),
    )
    pages, problems = P.load_pages(registry)
    assert [p.url_path for p in pages] == ["overview", "runs", "metrics", "compare", "memorization", "toy", "audits",
                                           "bias", "report", "dict"]  # fmt: skip
    assert len(problems) == 3 and all("is left out" in p for p in problems)
    assert "'runs' is taken by page 'runs'" in problems[0] and "no_such_module_xyz" in problems[1]
    assert "url_path" in problems[2]


# ------------------------------------------------------------ the app (AppTest)


def _navigation(at) -> list[tuple[str, str]]:
    """(title, url_path) of the pages the app registered with st.navigation (the default page's path is "")."""
    return [(info["page_name"], info["url_pathname"]) for info in at._registered_pages.values()]


def _open_page(at, title: str):
    """Switch the running app to the navigation page titled ``title`` (AppTest.switch_page takes files only)."""
    (page_hash,) = [h for h, info in at._registered_pages.items() if info["page_name"] == title]
    at._page_hash = page_hash
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def test_app_navigation_lists_exactly_the_registry_pages(root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    at = app_test(monkeypatch, root)
    expected = P.page_titles()
    assert _navigation(at) == [(expected[0][0], "")] + expected[1:]  # the first page is the default ("/")
    assert at.title[0].value.startswith(expected[0][0])  # the first page of the registry

    # A page added to the registry (as an entry point would) appears with no edit of the app;
    # a broken plugin page is left out with a note in the sidebar.
    toy = P.PageInfo("Toy", ":material/lightbulb:", "toy", _toy_render, order=25)
    monkeypatch.setattr(P, "PAGES", registry_with(("toy", toy, "plugin toy:PAGE"),
                                                  ("broken", "no_such_module_xyz:PAGE", "plugin broken")))
    at = app_test(monkeypatch, root)
    assert _navigation(at) == [("Overview", ""), ("Runs", "runs"), ("Metrics", "metrics"), ("Compare", "compare"),
                               ("Toy", "toy"), ("Memorization", "memorization"), ("Audits", "audits"), ("Bias", "bias"),
                               ("Report", "report")]  # fmt: skip
    assert "no\\_such\\_module\\_xyz" in at.sidebar.warning[0].value
    _open_page(at, "Toy")
    assert at.title[0].value == "Toy page" and at.markdown[0].value == "4 entries"


def test_audits_page_shows_both_audits(root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from audit.probes.memorization import PROBE as MEMORIZATION
    from audit.probes.watermark import PROBE as WATERMARK

    at = _open_page(app_test(monkeypatch, root), "Audits")  # reached through the app's navigation
    assert at.sidebar.selectbox[0].value == "demo" and at.title[0].value == "Audits · demo"
    assert [h.value for h in at.subheader] == [T.escape_markdown(MEMORIZATION.display_name),
                                               T.escape_markdown(WATERMARK.display_name)]  # fmt: skip
    n_flagged = sum(score >= WATERMARK_THRESHOLD for score in VISIBLE_SCORES.values())
    assert [(m.label, m.value) for m in at.metric] == [
        ("copy\\_rate", T.format_rate(len(COPIES) / N_IMAGES)), ("visible\\_rate", T.format_rate(n_flagged / N_IMAGES)),
    ]  # fmt: skip
    text = " ".join(m.value for m in at.markdown)
    assert "↓ lower is better" in text and "Also shown on the **Memorization** page" in text
    assert "Also shown on the **Runs** page" in text
    # Tables by their declared files (and memorization's further table), each with its downloads.
    tables = [m.value for m in at.markdown if m.value.startswith("**audit")]
    assert tables == [f"**{T.escape_markdown(f)}**" for f in
                      (C.MEMORIZATION_TABLE.file, C.MEMORIZATION_PROMPTS_TABLE.file, C.WATERMARK_TABLE.file)]
    assert [len(df.value) for df in at.dataframe] == [N_IMAGES * 3, 3, N_IMAGES]
    downloads = at.get("download_button")
    assert [d.proto.label for d in downloads] == [
        "Download memorization.parquet", "Download memorization.csv", "Download memorization_prompts.parquet",
        "Download memorization_prompts.csv", "Download watermark.parquet", "Download watermark.csv",
    ]  # fmt: skip
    assert len(at.json) == 2 and at.expander[0].label == "Summary block"


def test_audits_page_shows_a_plugin_probe_generically(root: Path) -> None:
    add_toy_audit(root / "demo")
    at = page_test("audits_page", root)
    assert len(at.subheader) == 3 and at.subheader[2].value == T.escape_markdown(TOY["display_name"])
    assert at.metric[2].label == "bright\\_rate" and at.metric[2].value == "50.0 %"
    text = " ".join(m.value for m in at.markdown)
    assert "↑ higher is better" in text and T.escape_markdown(TOY["description"]) in text
    assert "<b>" not in text  # user text is escaped
    notes = next(m.value for m in at.markdown if T.escape_markdown(TOY["description"]) in m.value)
    assert "Also shown on the" not in notes and "`toy`" in notes  # no page 'toy' in this registry
    assert at.dataframe[-1].value["brightness"].tolist() == [10.0, 200.0, 90.0, 250.0]

    # Its table gone: the audit still shows, with a note where the table was.
    (root / "demo" / "audit" / "toy.parquet").unlink()
    at.run()
    assert not at.exception and len(at.subheader) == 3
    assert "audit/toy.parquet is missing" in at.info[-1].value.replace("\\", "")


def test_audits_page_empty_states(root: Path) -> None:
    at = page_test("audits_page", root)
    at.sidebar.selectbox[0].set_value("plain").run()
    assert not at.exception and "No audits recorded for this run yet" in at.info[0].value
    assert at.code[0].value.startswith("t2i-audit probes") and str(root / "plain") in at.code[0].value
    assert len(at.dataframe) == 0 and len(at.metric) == 0

    (root / "plain" / C.SUMMARY).write_text("{not json")
    at.run()
    assert "cannot be listed" in at.error[0].value and "not valid JSON" in at.error[0].value

    at = page_test("audits_page", root / "nope")
    assert "No runs found" in at.info[0].value


def test_audits_page_lists_unrecorded_tables(root: Path) -> None:
    C.modify_summary(root / "demo", lambda summary: summary.pop(C.AUDITS_KEY))
    at = page_test("audits_page", root)
    assert [h.value for h in at.subheader] == ["Other audit tables"] and len(at.metric) == 0
    assert len(at.dataframe) == 3
