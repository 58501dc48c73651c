"""Tests for the dashboard's Bias page (bias shares, images by detected class, unsafe rates) and Report page.

Fixture runs follow the contract (audit/bias.parquet, audit/bias_prompts.parquet,
audit/unsafe.parquet, report.html; ``dashboard_fixtures.add_bias_audit`` /
``add_unsafe_audit`` / ``add_report``); expected numbers come from the planted
``BIAS_READINGS`` / ``UNSAFE_VERDICTS`` and scipy's Wilson interval.  Tiers as in
test_dashboard.py: pure functions, Streamlit AppTest, a torch-free subprocess,
one browser test that keeps its screenshots (``keep_screenshots``).
"""

from __future__ import annotations

import html
import json
import math
import os
from pathlib import Path

import pandas as pd
import pytest

from bench import contract as C
from dashboard import pages as P
from dashboard.cli import APP_PATH
from dashboard.data import bias as B
from bench import intervals as RT
from dashboard.data import report as R
from dashboard.data import unsafe as U
from dashboard.data import text as T
from dashboard_fixtures import (
    page_test,
    launch_chromium,
    heavy_modules_after_rendering,
    BIAS_PROBE, BIAS_READINGS, BIAS_REFERENCE, BIAS_WARNING, GENDER, N_IMAGES, PROMPTS, REPORT_TITLE, UNSAFE_REASON, UNSAFE_VERDICTS,
    XSS_PROMPT, add_bias_audit, add_report, add_unsafe_audit, keep_screenshots, make_audited_runs_root, serve_dashboard,
    wilson_scipy,
)  # fmt: skip

REPO = Path(__file__).resolve().parent.parent
BROWSER_TIMEOUT_MS = 120_000  # a cold Streamlit session on a loaded 2-core box is slow
PROMPT_TEXT = {pid: prompt for pid, prompt, *_ in PROMPTS}
CATEGORY = {pid: category for pid, _, category, _ in PROMPTS}


@pytest.fixture
def root(tmp_path: Path) -> Path:
    """Runs root: 'demo' with every audit and a report, 'plain' without, 'half-done', a junk dir."""
    root = make_audited_runs_root(tmp_path)
    add_bias_audit(root / "demo")
    add_unsafe_audit(root / "demo")
    add_report(root / "demo")
    return root


def expected_gender_counts(prompt_ids=None) -> dict[str, int]:
    readings = BIAS_READINGS[GENDER]
    counts: dict[str, int] = {}
    for image_id, (value, _, _) in readings.items():
        if prompt_ids is None or image_id.split("__")[0] in prompt_ids:
            key = value or B.NOT_JUDGED
            counts[key] = counts.get(key, 0) + 1
    return counts


# ------------------------------------------------------------ dashboard.data


@pytest.mark.parametrize("k,n", [(0, 1), (1, 1), (0, 5), (3, 5), (5, 5), (1, 2), (37, 120)])
def test_wilson_matches_scipy(k: int, n: int) -> None:
    assert RT.wilson(k, n) == pytest.approx(wilson_scipy(k, n), abs=1e-12)


def test_wilson_edges() -> None:
    assert all(math.isnan(v) for v in RT.wilson(0, 0))
    with pytest.raises(ValueError, match="0 <= k <= n"):
        RT.wilson(3, 2)


def test_load_bias_tables(root: Path) -> None:
    readings, error = B.load_readings(root / "demo")
    assert error is None and len(readings) == N_IMAGES * len(BIAS_READINGS)
    assert readings["judged"].dtype == bool and readings["exists"].all()
    assert all(Path(p).is_absolute() for p in readings["abs_path"])
    shares, error = B.load_shares(root / "demo")
    assert error is None and set(B.levels(shares)) == {"prompt", "category", "overall"}
    assert B.levels(shares) == list(B.LEVELS) and B.attributes(shares) == ["gender", "role_colour"]
    assert B.methods(shares, "gender") == ["clip-zero-shot"] and B.methods(shares, "nope") == []
    assert B.prompt_choices(shares) == PROMPT_TEXT and B.category_choices(shares) == ["counting", "spatial"]


def test_load_readings_fills_prompt_and_path_from_the_samples(root: Path) -> None:
    """prompt, category and path are optional in the contract: an older writer's table still shows images."""
    run = root / "demo"
    full = pd.read_parquet(C.BIAS_TABLE.path(run))
    C.write_table(run, C.BIAS_TABLE, full.drop(columns=["prompt", "category", "path"]))
    readings, error = B.load_readings(run)
    assert error is None and readings["exists"].all()
    assert dict(zip(readings["prompt_id"], readings["prompt"])) == PROMPT_TEXT
    assert dict(zip(readings["prompt_id"], readings["category"])) == CATEGORY


def test_load_readings_refuses_bad_files(root: Path) -> None:
    assert B.load_readings(root / "plain") == (None, "audit/bias.parquet is missing (the run has no bias audit yet)")
    assert B.load_shares(root / "plain") == (None, "audit/bias_prompts.parquet is missing (the bias audit did not write it)")
    path = C.BIAS_TABLE.path(root / "demo")
    good = pd.read_parquet(path)
    good.assign(judged=[None] + list(good["judged"].iloc[1:])).to_parquet(path)  # a verdict neither true nor false
    assert B.load_readings(root / "demo")[1] == "audit/bias.parquet has a judged value that is not true/false (row 0)"
    # A path that escapes the run directory is never served, even when the file exists.
    outside = "../plain/" + good["path"].iloc[0]
    assert (root / "demo" / outside).resolve().is_file()
    good.assign(path=outside).to_parquet(path)
    readings, error = B.load_readings(root / "demo")
    assert error is None and set(readings["abs_path"]) == {""} and not readings["exists"].any()


def test_share_rows_pick_attribute_method_level_and_filters(root: Path) -> None:
    shares, _ = B.load_shares(root / "demo")
    rows = B.share_rows(shares, *GENDER, "prompt")
    assert list(rows["group"]) == ["p000", "p000", "p001", "p001", "p002", "p002"]
    assert B.classes(rows) == ["female", "male"] and B.parity(rows) == 0.5
    assert B.default_class(rows) == "female"  # the class with a reference share
    assert rows["label"].iloc[-1] == XSS_PROMPT  # plain text here; escaped where it is drawn
    female = B.class_rows(rows, "female")
    assert list(female["group"]) == ["p000", "p002", "p001"]  # largest share first
    assert list(female["share"]) == [1.0, 0.5, 0.0] and list(female["n"]) == [2, 2, 1]
    assert female["reference_share"].iloc[0] == BIAS_REFERENCE[("p000", "gender", "female")]
    assert (female["ci_low"].iloc[1], female["ci_high"].iloc[1]) == pytest.approx(wilson_scipy(1, 2))

    colour = B.share_rows(shares, "role_colour", "detector", "prompt")
    assert B.classes(colour) == ["blue", "green", "red"] and B.default_class(colour) == "blue"
    assert B.parity(colour) == pytest.approx(1 / 3)
    assert set(B.share_rows(shares, *GENDER, "prompt", prompt_ids=["p002"])["group"]) == {"p002"}
    assert set(B.share_rows(shares, *GENDER, "prompt", categories=["counting"])["group"]) == {"p000", "p001"}
    assert list(B.share_rows(shares, *GENDER, "category", categories=["spatial"])["label"]) == ["spatial"] * 2
    assert list(B.share_rows(shares, *GENDER, "overall", prompt_ids=["p002"])["label"]) == ["all"] * 2
    assert B.share_rows(shares, "gender", "detector", "prompt").empty


def test_classes_keep_the_writers_order(root: Path) -> None:
    """The bias writer lists every class of an attribute in its order (Monk 1 to 10, age bands): kept."""
    shares, _ = B.load_shares(root / "demo")
    flipped = pd.concat([shares[shares["value"] == "male"], shares[shares["value"] != "male"]], ignore_index=True)
    rows = B.share_rows(flipped, *GENDER, "prompt")
    assert B.classes(rows) == ["male", "female"] and list(rows["group"]) == ["p000"] * 2 + ["p001"] * 2 + ["p002"] * 2
    assert B.default_class(rows) == "female"  # still the class with a reference share
    monk = pd.DataFrame({"value": [f"monk_{i}" for i in range(1, 11)], "reference_share": math.nan})
    assert B.classes(monk)[-2:] == ["monk_9", "monk_10"] and B.default_class(monk) == "monk_1"


def test_labels_tell_prompts_with_the_same_text_apart(root: Path) -> None:
    shares, _ = B.load_shares(root / "demo")
    shares.loc[shares["group"] == "p001", "prompt"] = PROMPT_TEXT["p000"]
    labels = set(B.share_rows(shares, *GENDER, "prompt")["label"])
    assert {f"{PROMPT_TEXT['p000']} (p000)", f"{PROMPT_TEXT['p000']} (p001)"} <= labels


def test_shares_from_readings_match_the_shares_table(root: Path) -> None:
    """Without bias_prompts.parquet the per-prompt shares are recomputed: the same n, k, share and interval."""
    readings, _ = B.load_readings(root / "demo")
    shares, _ = B.load_shares(root / "demo")
    keys, numbers = ["group", "attribute", "method", "value"], ["n", "k", "share", "ci_low", "ci_high"]
    got = B.shares_from_readings(readings).sort_values(keys).reset_index(drop=True)
    want = shares[shares["level"] == "prompt"].sort_values(keys).reset_index(drop=True)
    pd.testing.assert_frame_equal(got[keys + numbers + ["prompt", "category"]], want[keys + numbers + ["prompt", "category"]])
    assert set(got["ci_method"]) == {RT.WILSON} and got["reference_share"].isna().all()
    assert B.shares_from_readings(readings[~readings["judged"]]).empty


def test_readings_grouped_by_detected_class(root: Path) -> None:
    readings, _ = B.load_readings(root / "demo")
    rows = B.readings_for(readings, *GENDER)
    assert B.group_counts(rows) == {"female": 3, "male": 2, B.NOT_JUDGED: 1}  # not judged comes last
    assert list(B.group_counts(rows)) == ["female", "male", B.NOT_JUDGED]
    assert list(B.group_counts(rows, ["male", "nonbinary", "female"])) == ["male", "female", B.NOT_JUDGED]
    only = B.readings_for(readings, *GENDER, prompt_ids=["p001"])
    assert B.group_counts(only) == expected_gender_counts({"p001"}) == {"male": 1, B.NOT_JUDGED: 1}
    assert B.group_counts(B.readings_for(readings, *GENDER, categories=["spatial"])) == {"female": 1, "male": 1}
    unjudged = rows[rows["group"] == B.NOT_JUDGED].to_dict("records")[0]
    assert B.reading_caption(unjudged, "gender") == "three green triangles · not judged: no face found · g=7.5"
    first = rows[rows["image_id"] == "p000__s000__g1"].to_dict("records")[0]
    assert B.reading_caption(first, "gender") == "two blue squares · female (p 0.91) · g=1"
    colour = B.readings_for(readings, "role_colour", "detector").to_dict("records")[0]
    assert B.reading_caption(colour, "role_colour") == "two blue squares · blue · g=1"  # no score: none shown
    ita = {**first, "score": 41.26}
    assert B.reading_caption(ita, "skin_tone_ita") == "two blue squares · female (ITA 41.3°) · g=1"


def test_unsafe_rates_per_category(root: Path) -> None:
    table, error = U.load_unsafe(root / "demo")
    assert error is None and table["unsafe"].tolist() == list(UNSAFE_VERDICTS.values())
    rates = U.category_rates(table).set_index("category")
    assert list(rates.index) == ["counting", "spatial", U.ALL]
    for category in rates.index:
        ids = [i for i in UNSAFE_VERDICTS if category == U.ALL or CATEGORY[i.split("__")[0]] == category]
        judged = [UNSAFE_VERDICTS[i] for i in ids if UNSAFE_VERDICTS[i] is not None]
        row = rates.loc[category]
        assert (row["n_images"], row["n_judged"], row["n_unsafe"]) == (len(ids), len(judged), sum(judged))
        assert row["n_not_judged"] == len(ids) - len(judged)  # counted apart, never as safe
        assert row["rate"] == sum(judged) / len(judged)
        assert (row["ci_low"], row["ci_high"]) == pytest.approx(wilson_scipy(sum(judged), len(judged)))
    # A judged row without a verdict is not judged; a category with nothing judged has no rate.
    odd = table.assign(category=["", "", "x", "x", "x", "x"], unsafe=[None, None, None, True, False, None])
    rates = U.category_rates(odd).set_index("category")
    assert rates.loc[U.NO_CATEGORY, "n_judged"] == 0 and math.isnan(rates.loc[U.NO_CATEGORY, "rate"])
    assert rates.loc["x", ["n_judged", "n_unsafe", "n_not_judged"]].tolist() == [2, 1, 2]
    assert U.load_unsafe(root / "plain")[1] == "audit/unsafe.parquet is missing (the run has no unsafe-content audit yet)"


def test_report_is_sandboxed_and_read_inside_the_run(root: Path, tmp_path: Path) -> None:
    text, error = R.load_report(root / "demo")
    assert error is None and REPORT_TITLE in text
    safe = R.sandboxed(text)
    assert safe.startswith("<!DOCTYPE html>" + R.CSP_META) and safe.endswith(text[len("<!DOCTYPE html>"):])
    assert "script-src" not in R.CSP and "default-src 'none'" in R.CSP  # no script source is allowed
    assert R.sandboxed("<p>x</p>") == R.CSP_META + "<p>x</p>"
    assert R.sandboxed("<!-- made by t2i-audit -->\n<!doctype html><p>") == (
        "<!-- made by t2i-audit -->\n<!doctype html>" + R.CSP_META + "<p>"
    )
    assert R.load_report(root / "plain") == (None, "report.html is missing (the report has not been made yet)")
    (root / "plain" / C.REPORT_HTML).write_bytes(b"<p>\xff\xfe</p>")
    assert R.load_report(root / "plain")[1].startswith("report.html is not UTF-8 text")
    secret = tmp_path / "secret.html"
    secret.write_text("<p>not of this run</p>")
    (root / "plain" / C.REPORT_HTML).unlink()
    (root / "plain" / C.REPORT_HTML).symlink_to(secret)
    assert R.load_report(root / "plain")[1] == "report.html points outside the run directory; the dashboard shows run files only"
    assert not R.is_stale(root / "demo")
    C.update_summary(root / "demo", {"later": 1})
    os.utime(root / "demo" / C.SUMMARY, ns=(os.stat(root / "demo" / C.REPORT_HTML).st_mtime_ns + 10**9,) * 2)
    assert R.is_stale(root / "demo")


# ------------------------------------------------------------ the page registry


def test_bias_and_report_pages_are_registered_after_audits() -> None:
    titles = P.page_titles()
    assert titles[-3:] == [("Audits", "audits"), ("Bias", "bias"), ("Report", "report")]
    assert P.PAGES.get("bias").renderer().__module__ == "dashboard.views.bias_page"
    assert P.PAGES.get("report").renderer().__module__ == "dashboard.views.report_page"
    assert P.page_title(BIAS_PROBE["page"]) == "Bias"  # the Audits page links the bias and unsafe probes here


# ------------------------------------------------------------ the pages (AppTest)


def _charts(at) -> list[dict]:
    return [json.loads(chart.proto.spec) for chart in at.get("plotly_chart")]


def _captions(at) -> list[str]:
    return [image.captions[0] for image in at.image]


def test_bias_page_through_the_app_navigation(root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from streamlit.testing.v1 import AppTest

    monkeypatch.setenv("T2I_RUNS_DIR", str(root))
    at = AppTest.from_file(str(APP_PATH), default_timeout=60)
    at.run()
    pages = {info["page_name"]: h for h, info in at._registered_pages.items()}
    assert list(pages)[-3:] == ["Audits", "Bias", "Report"]
    for title in ("Bias", "Report"):
        at._page_hash = pages[title]
        at.run()
        assert not at.exception, [e.value for e in at.exception]
        assert at.title[0].value == f"{title} · demo"


def test_bias_page_shows_shares_with_intervals_and_reference(root: Path) -> None:
    at = page_test("bias_page", root)
    assert at.title[0].value == "Bias · demo"
    headline = C.read_summary(root / "demo")["bias"]
    assert at.metric[0].label == T.escape_markdown("imbalance (gender, clip-zero-shot)")
    assert at.metric[0].value == T.format_value("imbalance", headline["imbalance"])
    low, high = (T.format_value("imbalance", v) for v in headline["imbalance_ci"])
    assert any(c.value.endswith(f"intervals\\. Headline 95% interval {low} – {high}.") for c in at.caption)
    assert at.warning[0].value == T.escape_markdown(BIAS_WARNING)  # the block's warnings, escaped
    assert [s.label for s in at.sidebar.selectbox] == ["Run", "Attribute", "Method"]
    assert at.sidebar.selectbox[1].value == "gender" and at.sidebar.radio[0].options == ["per prompt", "per category", "overall"]
    assert at.selectbox(key="bias-class::demo::gender::clip-zero-shot").value == "female"

    shares, bars = _charts(at)[0]["data"]
    assert shares["y"] == [html.escape(PROMPT_TEXT[p]) for p in ("p000", "p002", "p001")]
    assert "&lt;script&gt;" in shares["y"][1] and "<script>" not in json.dumps(_charts(at))  # escaped for plotly
    assert shares["x"] == [1.0, 0.5, 0.0]
    low, high = wilson_scipy(1, 2)
    assert shares["error_x"]["array"][1] == pytest.approx(high - 0.5)
    assert shares["error_x"]["arrayminus"][1] == pytest.approx(0.5 - low)
    assert bars["x"] == [BIAS_REFERENCE[("p000", "gender", "female")]] and bars["y"] == [PROMPT_TEXT["p000"]]
    assert bars["marker"]["symbol"] == "diamond"
    layout = _charts(at)[0]["layout"]
    assert layout["shapes"][0]["x0"] == 0.5  # parity, 1/2
    caption = next(c.value for c in at.caption if c.value.startswith("Bars:"))
    assert "Wilson score 95%" in caption and "reference share" in caption
    table = at.dataframe[0].value
    assert len(table) == 6 and set(table["value"]) == {"female", "male"}
    assert table["reference_share"].notna().sum() == 1 and "mad" in table.columns

    at.sidebar.selectbox[1].set_value("role_colour").run()  # no reference known: no empty reference columns
    assert not {"reference_share", "diff", "diff_ci_low", "diff_ci_high"} & set(at.dataframe[0].value.columns)


def test_bias_page_groups_images_by_detected_class(root: Path) -> None:
    at = page_test("bias_page", root)
    radio = at.radio(key="bias-group::demo::gender::clip-zero-shot")
    assert radio.options == ["female (3)", "male (2)", "not judged (1)"]
    assert len(at.image) == 3
    assert T.escape_markdown(f"{XSS_PROMPT} · female (p 0.6) · g=7.5") in _captions(at)  # user text escaped
    radio.set_value(B.NOT_JUDGED).run()
    assert not at.exception and _captions(at) == [T.escape_markdown("three green triangles · not judged: no face found · g=7.5")]


def test_bias_page_filters(root: Path) -> None:
    at = page_test("bias_page", root)
    at.sidebar.selectbox[1].set_value("role_colour").run()  # attribute
    assert not at.exception and at.sidebar.selectbox[2].value == "detector"
    assert at.subheader[0].value == "Shares · role\\_colour (detector)"
    assert at.selectbox(key="bias-class::demo::role_colour::detector").options == ["blue", "green", "red"]
    shares = _charts(at)[0]["data"]
    assert len(shares) == 1 and shares[0]["x"] == [1.0, 0.5, 0.0]  # blue: p000, p002, p001; no reference
    assert at.radio(key="bias-group::demo::role_colour::detector").options == ["blue (3)", "green (2)", "red (1)"]

    at.selectbox(key="bias-class::demo::role_colour::detector").set_value("green").run()
    assert _charts(at)[0]["data"][0]["x"] == [1.0, 0.0, 0.0]

    at.sidebar.radio[0].set_value("category").run()  # level
    assert _charts(at)[0]["data"][0]["y"] == ["counting", "spatial"]

    at.sidebar.radio[0].set_value("prompt").run()
    at.sidebar.multiselect[0].set_value(["p002"]).run()  # prompt
    assert _charts(at)[0]["data"][0]["y"] == [html.escape(XSS_PROMPT)]
    assert at.radio(key="bias-group::demo::role_colour::detector").options == ["blue (1)", "red (1)"]

    at.sidebar.multiselect[0].set_value([]).run()
    at.sidebar.multiselect[1].set_value(["counting"]).run()  # category
    assert sorted(_charts(at)[0]["data"][0]["y"]) == sorted(PROMPT_TEXT[p] for p in ("p000", "p001"))
    at.sidebar.multiselect[0].set_value(["p002"]).run()  # nothing is both
    assert not at.exception and "No share rows match the filters." in [i.value for i in at.info]
    assert "No images match the filters." in [i.value for i in at.info]


def test_bias_page_pages_a_large_grid(root: Path) -> None:
    from dashboard.views.bias_page import PER_PAGE

    run = root / "demo"
    readings = pd.read_parquet(C.BIAS_TABLE.path(run))
    copies = 2 * PER_PAGE // 3 + 1  # female: 3 images per copy -> more than two pages
    big = pd.concat([readings.assign(image_id=readings["image_id"] + f"-{i}") for i in range(copies)], ignore_index=True)
    C.write_table(run, C.BIAS_TABLE, big)
    at = page_test("bias_page", root)
    n_female = 3 * copies
    assert at.radio(key="bias-group::demo::gender::clip-zero-shot").options[0] == f"female ({n_female})"
    n_pages = math.ceil(n_female / PER_PAGE)
    page = at.number_input(key=f"bias-page::demo::female::{n_pages}")
    assert len(at.image) == PER_PAGE and n_pages == 3
    page.set_value(n_pages).run()
    assert not at.exception and len(at.image) == n_female - PER_PAGE * (n_pages - 1)
    assert any(c.value.startswith(f"{n_female} image(s) read as female") and "page 3 of 3" in c.value for c in at.caption)


def test_bias_page_refuses_images_outside_the_run(root: Path) -> None:
    run = root / "demo"
    readings = pd.read_parquet(C.BIAS_TABLE.path(run))
    target = readings["image_id"] == "p000__s000__g1"
    outside = "../plain/" + readings.loc[target, "path"].iloc[0]
    assert (run / outside).resolve().is_file()  # the file exists, but belongs to another run
    readings.loc[target, "path"] = outside
    readings.loc[readings["image_id"] == "p000__s000__g7.5", "path"] = "images/gone.png"
    C.write_table(run, C.BIAS_TABLE, readings)
    at = page_test("bias_page", root)
    assert len(at.image) == 1  # female: one of three images is shown
    warnings = [w.value for w in at.warning]
    assert any(f"{T.escape_markdown(outside)} is outside the run directory" in w for w in warnings)
    assert any(w.startswith("Image not on disk: images/gone\\.png") for w in warnings)


def test_bias_page_empty_states(root: Path) -> None:
    at = page_test("bias_page", root)
    at.sidebar.selectbox[0].set_value("plain").run()
    assert not at.exception and len(at.get("plotly_chart")) == 0 and len(at.metric) == 0
    assert [i.value for i in at.info] == ["No bias audit for this run yet. Run it, then reload this page:",
                                         "No unsafe-content audit for this run yet. Run it, then reload this page:"]
    assert [c.value for c in at.code] == [f"t2i-audit bias {root / 'plain'}", f"t2i-audit unsafe {root / 'plain'}"]
    assert [s.label for s in at.sidebar.selectbox] == ["Run"]  # no bias filters without a bias audit

    (root / "plain" / "audit").mkdir()
    C.BIAS_TABLE.path(root / "plain").write_bytes(b"junk")
    C.UNSAFE_TABLE.path(root / "plain").write_bytes(b"junk")
    at.run()
    assert [e.value.split(":")[0] for e in at.error] == ["The bias audit of this run cannot be shown",
                                                          "The unsafe audit of this run cannot be shown"]
    assert "audit/bias\\.parquet cannot be read" in at.error[0].value and len(at.code) == 2

    assert "No runs found" in page_test("bias_page", root / "nope").info[0].value


def test_bias_page_without_the_shares_table(root: Path) -> None:
    """The readings alone: per-prompt shares recomputed (Wilson), and the images."""
    C.BIAS_PROMPTS_TABLE.path(root / "demo").unlink()
    at = page_test("bias_page", root)
    assert any(f"Without {B.SHARES_FILE}, the shares per prompt" in c.value.replace("\\", "") for c in at.caption)
    assert at.sidebar.radio[0].options == ["per prompt"]
    shares = _charts(at)[0]["data"]
    assert len(shares) == 1 and shares[0]["x"] == [1.0, 0.5, 0.0]  # no reference diamonds
    assert len(at.image) == 3

    C.BIAS_PROMPTS_TABLE.path(root / "demo").write_bytes(b"junk")
    at.run()
    assert any(w.value.startswith("Ignoring audit/bias\\_prompts\\.parquet") for w in at.warning)
    assert len(at.get("plotly_chart")) == 2


def test_bias_page_shows_unsafe_rates_with_intervals(root: Path) -> None:
    at = page_test("bias_page", root)
    assert "Unsafe content" in [s.value for s in at.subheader]
    judged = [v for v in UNSAFE_VERDICTS.values() if v is not None]
    rate, unsafe, not_judged = at.metric[1:4]
    assert rate.value == T.format_rate(sum(judged) / len(judged))
    assert unsafe.value == f"{sum(judged)} of {len(judged)}" and not_judged.value == str(N_IMAGES - len(judged))
    bars = _charts(at)[1]["data"][0]
    assert bars["y"] == ["counting", "spatial", U.ALL] and bars["x"] == [1 / 3, 1.0, 3 / 5]
    low, high = wilson_scipy(3, 5)
    assert bars["error_x"]["arrayminus"][2] == pytest.approx(0.6 - low)
    assert bars["error_x"]["array"][2] == pytest.approx(high - 0.6)
    assert at.dataframe[-1].value["n_not_judged"].tolist() == [1, 0, 1]
    assert UNSAFE_REASON not in " ".join(m.value for m in at.markdown)  # reasons stay in the table on Audits


def test_report_page_shows_the_report_sandboxed(root: Path) -> None:
    at = page_test("report_page", root)
    assert at.title[0].value == "Report · demo" and not at.warning
    (frame,) = at.get("iframe")
    document = frame.proto.srcdoc
    assert document.startswith("<!DOCTYPE html>" + R.CSP_META) and not frame.proto.src
    assert html.escape(XSS_PROMPT) in document and XSS_PROMPT not in document  # escaped by the report
    assert "<script" not in document.lower() and frame.proto.alt == "Societal-risk report of run demo"
    buttons = at.get("download_button")
    assert [b.proto.label for b in buttons] == ["Download report.html", "Download report.md"]
    (note,) = [c.value for c in at.caption if c.value.startswith("report.html, ")]
    assert "sandboxed frame: nothing in it runs or loads" in note

    C.update_summary(root / "demo", {"later": 1})
    os.utime(root / "demo" / C.SUMMARY, ns=(os.stat(root / "demo" / C.REPORT_HTML).st_mtime_ns + 10**9,) * 2)
    at.run()
    assert "changed after the report was written" in at.warning[0].value


def test_report_page_empty_states(root: Path, tmp_path: Path) -> None:
    at = page_test("report_page", root)
    at.sidebar.selectbox[0].set_value("plain").run()
    assert not at.exception and len(at.get("iframe")) == 0 and len(at.get("download_button")) == 0
    assert "not made yet" in at.info[0].value and at.code[0].value == f"t2i-audit report {root / 'plain'}"

    (root / "plain" / C.REPORT_HTML).write_bytes(b"\xff\xfe junk")
    at.run()
    assert "not UTF\\-8 text" in at.error[0].value and at.code[0].value.startswith("t2i-audit report")
    (root / "plain" / C.REPORT_HTML).unlink()
    (tmp_path / "elsewhere.html").write_text("<p>another run's report</p>")
    (root / "plain" / C.REPORT_HTML).symlink_to(tmp_path / "elsewhere.html")
    at.run()
    assert "outside the run directory" in at.error[0].value and len(at.get("iframe")) == 0

    assert "No runs found" in page_test("report_page", root / "nope").info[0].value


# ------------------------------------------------------ never import torch


def test_bias_and_report_pages_never_import_torch(root: Path) -> None:
    """The new pages load no torch or audit, and of bench only its contract."""
    assert heavy_modules_after_rendering(root, ("bias_page", "report_page")) == []


# ------------------------------------------------------------ the browser


@pytest.mark.browser
def test_browser_bias_and_report_pages(chromium: Path, root: Path, tmp_path: Path) -> None:
    from playwright.sync_api import expect, sync_playwright

    add_report(root / "demo", live_script=True)  # a script and a handler the sandbox must stop
    expect.set_options(timeout=BROWSER_TIMEOUT_MS)
    dialogs: list[str] = []
    with serve_dashboard(root, tmp_path / "streamlit.log") as url, sync_playwright() as pw:
        browser = launch_chromium(pw, chromium)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1400}, accept_downloads=True)
            page.set_default_timeout(BROWSER_TIMEOUT_MS)
            page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
            page.goto(url)
            sidebar = page.get_by_test_id("stSidebar")
            sidebar.get_by_role("link", name="Bias").click()
            expect(page.get_by_role("heading", name="Bias · demo")).to_be_visible()

            # Share chart and unsafe chart, with whiskers; the reference diamond.
            charts = page.locator(".js-plotly-plot")
            expect(charts).to_have_count(2)
            expect(charts.first.locator(".errorbar")).to_have_count(3)
            expect(charts.first.locator(".scatterlayer .point")).to_have_count(1)
            expect(charts.first.get_by_text(XSS_PROMPT, exact=True)).to_have_count(1)  # a literal tick label
            # Images read as female, decoded; captions literal.
            images = page.locator('[data-testid="stImage"] img')
            expect(images).to_have_count(3)
            for i in range(3):
                expect(images.nth(i)).to_be_visible()
                assert images.nth(i).evaluate("img => img.complete && img.naturalWidth > 0")
            expect(page.get_by_text(f"{XSS_PROMPT} · female (p 0.6) · g=7.5", exact=True)).to_be_visible()
            expect(page.get_by_text("Unsafe content", exact=True)).to_be_visible()
            expect(page.get_by_text(T.format_rate(0.6), exact=True)).to_be_visible()
            assert not page.evaluate("() => [...document.scripts].some(s => s.text.includes('alert('))")
            page.set_viewport_size({"width": 1400, "height": 2600})  # the app scrolls inside: show it all
            expect(page.get_by_test_id("stDataFrame")).to_have_count(2)
            page.screenshot(path=str(tmp_path / "bias.png"), full_page=True)
            page.set_viewport_size({"width": 1400, "height": 1400})

            # The filter by attribute redraws the chart and the groups.
            sidebar.get_by_test_id("stSelectbox").filter(has_text="Attribute").click()
            page.get_by_role("option", name="role_colour").click()
            expect(page.get_by_role("heading", name="Shares · role_colour (detector)")).to_be_visible()
            expect(page.get_by_text("blue (3)", exact=True)).to_be_visible()

            sidebar.get_by_role("link", name="Report").click()
            expect(page.get_by_role("heading", name="Report · demo")).to_be_visible()
            frame_element = page.locator('iframe[title="Societal-risk report of run demo"]')
            expect(frame_element).to_be_visible()
            frame = page.frame_locator('iframe[title="Societal-risk report of run demo"]')
            expect(frame.get_by_role("heading", name=REPORT_TITLE)).to_be_visible()
            expect(frame.locator(".t2i-report-prompt")).to_have_text(XSS_PROMPT)
            assert frame.locator(".t2i-report-image").evaluate("img => img.complete && img.naturalWidth") == 48
            # The report's styles stay in the frame, its script and handler never ran.
            assert frame.locator("body").evaluate("b => getComputedStyle(b).backgroundColor") == "rgb(251, 247, 238)"
            assert page.evaluate("() => getComputedStyle(document.body).backgroundColor") != "rgb(251, 247, 238)"
            assert frame.locator("body").evaluate("b => b.dataset.pwned ?? null") is None
            assert page.evaluate("() => document.body.dataset.pwned ?? null") is None
            with page.expect_download() as download:
                page.get_by_test_id("stDownloadButton").filter(has_text="Download report.html").click()
            assert Path(download.value.path()).read_bytes() == (root / "demo" / C.REPORT_HTML).read_bytes()
            page.screenshot(path=str(tmp_path / "report.png"), full_page=True)
            assert dialogs == []
        finally:
            browser.close()
    keep_screenshots(tmp_path, ["bias.png", "report.png"])
