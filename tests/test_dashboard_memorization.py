"""Tests for the dashboard's memorization page and the watermark scores in the Runs grid.

Fixture runs follow the audit contract (audit/memorization.parquet,
audit/memorization_prompts.parquet, audit/watermark.parquet, summary.json
keys); expected values are derived from the planted ``COPIES`` /
``VISIBLE_SCORES`` of ``dashboard_fixtures``.  Tiers as in test_dashboard.py:
pure functions, Streamlit AppTest, a torch-free subprocess, one browser test.
"""

from __future__ import annotations

import html
from pathlib import Path

import pandas as pd
import pytest

from bench import contract as C
from dashboard.data import memorization as MZ
from dashboard.data import reading as IO
from dashboard.data import samples as S
from dashboard.data import text as T
from dashboard.data import watermark as W
from dashboard_fixtures import (
    app_test, page_test,
    keep_screenshots, launch_chromium,
    heavy_modules_after_rendering,
    COPIES, GUIDANCE, INDEX, INVISIBLE_MESSAGES, METHOD, N_IMAGES, N_NEIGHBOURS, NEIGHBOUR_PWATERMARK, NOT_CHECKABLE,
    PROMPTS, THRESHOLD_COSINE, THRESHOLD_DISTANCE, UNSAVED_RANK, VISIBLE_SCORES, WATERMARK_THRESHOLD, XSS_CAPTION,
    XSS_PROMPT, expected_copy_rates, make_audited_runs_root, memorization_summary, serve_dashboard,
)  # fmt: skip

REPO = Path(__file__).resolve().parent.parent
N_SAVED_NEIGHBOURS = N_NEIGHBOURS - 1  # one rank (UNSAVED_RANK) was not saved
# A cold Streamlit session drawing 18 images on a loaded 2-core box takes well over 30 s.
BROWSER_TIMEOUT_MS = 120_000
N_FLAGGED = sum(score >= WATERMARK_THRESHOLD for score in VISIBLE_SCORES.values())


@pytest.fixture
def root(tmp_path: Path) -> Path:
    """Runs root: 'demo' with both audits, 'plain' without, 'half-done', a junk dir."""
    return make_audited_runs_root(tmp_path)


# ------------------------------------------------------------ dashboard.data


def test_load_memorization_types_and_paths(root: Path) -> None:
    hits, error = MZ.load_memorization(root / "demo")
    assert error is None and len(hits) == N_IMAGES * N_NEIGHBOURS
    assert hits["is_copy"].dtype == bool and hits["rank"].dtype == "int64" and hits["clip_cosine"].dtype == float
    assert hits["exists"].all() and all(Path(p).is_absolute() for p in hits["abs_path"])
    saved = hits["rank"] != UNSAVED_RANK
    assert hits.loc[saved, "neighbour_exists"].all() and not hits.loc[~saved, "neighbour_exists"].any()
    assert set(hits.loc[~saved, "neighbour_path"]) == {""}
    assert list(hits.groupby("image_id", sort=False)["rank"].apply(list).iloc[0]) == list(range(N_NEIGHBOURS))


def test_load_memorization_refuses_bad_files(root: Path) -> None:
    path = root / "demo" / MZ.HITS_FILE
    good = pd.read_parquet(path)
    assert MZ.load_memorization(root / "plain") == (
        None, "audit/memorization.parquet is missing (the run has no memorization audit yet)",
    )  # fmt: skip
    good.drop(columns=["is_copy"]).to_parquet(path)
    assert MZ.load_memorization(root / "demo") == (None, "audit/memorization.parquet lacks column(s): is_copy")
    good.assign(is_copy=[None] + list(good["is_copy"].iloc[1:])).to_parquet(path)  # a missing verdict
    assert MZ.load_memorization(root / "demo")[1] == (
        "audit/memorization.parquet has a is_copy value that is not true/false (row 0)"
    )
    path.write_bytes(b"PAR1 garbage")
    assert MZ.load_memorization(root / "demo")[1].startswith("audit/memorization.parquet cannot be read")
    # A neighbour path that escapes the run directory is never served.
    good.assign(neighbour_path="../../../etc/passwd").drop(columns=["method"]).to_parquet(path)
    hits, error = MZ.load_memorization(root / "demo")
    assert error is None and not hits["neighbour_exists"].any() and set(hits["method"]) == {""}


def test_image_verdicts_count_a_copy_at_any_rank(root: Path) -> None:
    hits, _ = MZ.load_memorization(root / "demo")
    verdicts = MZ.image_verdicts(hits)
    assert len(verdicts) == N_IMAGES and (verdicts["rank"] == 0).all()  # the card shows the top-1
    assert set(verdicts.loc[verdicts["is_copy"], "image_id"]) == set(COPIES)
    assert dict(zip(verdicts["image_id"], verdicts["copy_rank"])) == {
        image_id: COPIES.get(image_id, -1) for image_id in verdicts["image_id"]
    }
    assert (verdicts["n_neighbours"] == N_NEIGHBOURS).all()

    assert len(MZ.filter_verdicts(verdicts, copies_only=True)) == len(COPIES)
    assert set(MZ.filter_verdicts(verdicts, categories=["spatial"])["prompt_id"]) == {"p002"}
    both = MZ.filter_verdicts(verdicts, True, ["counting"], ["p001"])
    assert list(both["image_id"]) == [i for i in COPIES if i.startswith("p001")]


def test_prompt_copy_rates_match_the_file_and_the_planted_copies(root: Path) -> None:
    hits, _ = MZ.load_memorization(root / "demo")
    derived = MZ.prompt_copy_rates(MZ.image_verdicts(hits))
    written, error = MZ.load_memorization_prompts(root / "demo")
    assert error is None
    pd.testing.assert_frame_equal(derived, written, check_dtype=False)
    expected = expected_copy_rates()
    assert {r.prompt_id: (r.n_images, r.n_copies) for r in derived.itertuples()} == expected
    assert derived["copy_rate"].tolist() == [c / n for n, c in expected.values()]


def test_memorization_headline_from_summary_or_recomputed(root: Path) -> None:
    hits, _ = MZ.load_memorization(root / "demo")
    verdicts = MZ.image_verdicts(hits)
    summary, _ = IO.load_summary(root / "demo")
    headline = MZ.memorization_headline(summary, verdicts)
    assert headline == {
        "n_images": N_IMAGES, "n_copies": len(COPIES), "copy_rate": len(COPIES) / N_IMAGES, "index": INDEX,
        "method": METHOD, "source": "summary.json",
        "thresholds": {"clip_cosine": THRESHOLD_COSINE, "copy_distance": THRESHOLD_DISTANCE, "k": N_NEIGHBOURS},
    }  # fmt: skip
    assert headline["thresholds"] == memorization_summary()["thresholds"]  # the writer's keys
    assert MZ.headline_mismatch(headline, verdicts) is None
    recomputed = MZ.memorization_headline({}, verdicts)
    assert {k: v for k, v in recomputed.items() if k not in ("index", "source")} == {
        k: v for k, v in headline.items() if k not in ("index", "source")
    }
    assert recomputed["index"] is None and recomputed["source"] == MZ.HITS_FILE
    assert MZ.memorization_headline(None, None) is None
    stale = {"memorization": {**summary["memorization"], "n_copies": 0}}
    assert "disagree (n_copies 0 vs 3)" in MZ.headline_mismatch(MZ.memorization_headline(stale, verdicts), verdicts)
    assert T.format_rate(1 / 3) == "33.3 %" and T.format_rate(None) == T.MISSING
    assert T.format_thresholds(headline["thresholds"]) == "clip_cosine 0.95, copy_distance 0.1, k 3"


def test_watermark_scores_join_the_samples(root: Path) -> None:
    samples, _ = S.load_samples(root / "demo")
    watermark, error = W.load_watermark(root / "demo")
    assert error is None and len(watermark) == N_IMAGES
    grid = W.attach_watermark(samples, watermark)
    assert list(grid["image_id"]) == list(samples["image_id"])  # order kept
    notes = dict(zip(grid["image_id"], [W.watermark_note(row) for row in grid.to_dict("records")]))
    flagged, pwatermark = VISIBLE_SCORES["p001__s000__g1"], NEIGHBOUR_PWATERMARK["p001__s000__g1"]
    assert notes["p001__s000__g1"] == (
        f"visible watermark {flagged:.2f} (flagged) · invisible: none · neighbours' pwatermark {pwatermark:.2f}"
    )
    # No neighbours' pwatermark (NaN: audited without an index): left out.
    assert notes["p002__s000__g1"] == f"visible watermark {VISIBLE_SCORES['p002__s000__g1']:.2f} · invisible: none"
    (unchecked,) = NOT_CHECKABLE
    assert "invisible: not checkable (too small)" in notes[unchecked]
    message = INVISIBLE_MESSAGES["p002__s000__g7.5"]
    assert notes["p002__s000__g7.5"].endswith(f"invisible: {message!r} · neighbours' pwatermark 0.10")
    assert sum(bool(v) for v in grid["visible"]) == N_FLAGGED

    # An image the audit did not score, and a run without an audit, show nothing.
    partial = W.attach_watermark(samples, watermark[watermark["image_id"] != "p000__s000__g1"])
    assert W.watermark_note(partial.iloc[0].to_dict()) is None
    assert W.attach_watermark(samples, None) is samples
    assert W.watermark_note(samples.iloc[0].to_dict()) is None
    summary, _ = IO.load_summary(root / "demo")
    line = W.watermark_headline(summary)
    rate = T.format_rate(N_FLAGGED / N_IMAGES)
    assert line.startswith(f"Watermark audit of {N_IMAGES} images: visible watermark in {rate} (probe ")
    assert f"threshold {WATERMARK_THRESHOLD:g}" in line
    unchecked_summary = {"watermark": {**summary["watermark"], "invisible_rate": None, "n_invisible_checkable": 0}}
    assert "invisible watermark not checkable" in W.watermark_headline(unchecked_summary)
    assert W.watermark_headline({}) is None
    assert W.load_watermark(root / "plain") == (
        None, "audit/watermark.parquet is missing (the run has no watermark audit yet)",
    )  # fmt: skip


# ------------------------------------------------------------ the app (AppTest)


def _verdicts(at) -> list[str]:
    return ["copy" if ">copy</span>" in card.value else "not a copy" for card in at.html]


def test_memorization_page_pairs_headline_and_rates(root: Path) -> None:
    at = page_test("memorization_page", root)
    assert at.sidebar.selectbox[0].value == "demo" and at.title[0].value == "Memorization · demo"
    assert [(m.label, m.value) for m in at.metric] == [
        ("Copy rate", T.format_rate(len(COPIES) / N_IMAGES)),
        ("Copies", str(len(COPIES))),
        ("Images audited", str(N_IMAGES)),
    ]  # fmt: skip
    facts = at.table[0].value["Value"].tolist()
    assert facts[0] == T.escape_markdown(METHOD) and facts[1] == T.escape_markdown(INDEX)
    # One card per generated image, in prompt/guidance order, with the image's verdict.
    assert len(at.html) == N_IMAGES
    in_order = [f"{prompt_id}__s000__g{g:g}" for prompt_id, *_ in PROMPTS for g in GUIDANCE]
    assert _verdicts(at) == ["copy" if image_id in COPIES else "not a copy" for image_id in in_order]
    # Generated + top-1 side by side, the other saved ranks in expanders; the unsaved rank is a note.
    assert len(at.image) == N_IMAGES * (1 + N_SAVED_NEIGHBOURS)
    assert [img.captions[0] for img in at.image[:2]] == ["generated", T.escape_markdown("neighbour #1 (the copy)")]
    assert len(at.expander) == N_IMAGES and at.expander[0].label == f"Other neighbours ({N_NEIGHBOURS - 1})"
    assert sum("Image not saved by the audit" in i.value for i in at.info) == N_IMAGES
    # Copy rate per prompt: table (highest first) and bar chart.
    rates = at.dataframe[0].value
    expected = expected_copy_rates()
    assert {r.prompt_id: (r.n_images, r.n_copies) for r in rates.itertuples()} == expected
    assert rates["copy_rate"].is_monotonic_decreasing and len(at.get("vega_lite_chart")) == 1
    assert "from audit/memorization_prompts.parquet" in " ".join(c.value for c in at.caption)


def test_memorization_page_escapes_prompts_and_captions(root: Path) -> None:
    at = page_test("memorization_page", root)
    cards = " ".join(card.value for card in at.html)
    assert html.escape(XSS_PROMPT) in cards and "<script>" not in cards
    assert html.escape(XSS_CAPTION) in cards and "<img" not in cards
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in cards


def test_memorization_page_filters(root: Path) -> None:
    at = page_test("memorization_page", root)
    at.sidebar.toggle[0].set_value(True).run()  # copies only
    assert _verdicts(at) == ["copy"] * len(COPIES)
    assert f"{len(COPIES)} of {N_IMAGES} images match" in " ".join(c.value for c in at.caption)
    at.sidebar.multiselect[1].set_value(["p001"]).run()  # ... of one prompt: its copy is neighbour #2
    assert len(at.html) == 1 and "Copy of neighbour #2" in at.html[0].value
    assert list(at.dataframe[0].value["prompt_id"]) == ["p001"]
    at.sidebar.toggle[0].set_value(False).run()
    at.sidebar.multiselect[1].set_value([]).run()
    at.sidebar.multiselect[0].set_value(["spatial"]).run()  # by category
    assert len(at.html) == sum(p.startswith("p002") for p in VISIBLE_SCORES)
    at.sidebar.toggle[0].set_value(True).run()  # the spatial prompt copies nothing
    assert len(at.html) == 0 and "No images match the filters." in [i.value for i in at.info]


def test_memorization_page_without_audit_says_which_command(root: Path) -> None:
    at = page_test("memorization_page", root)
    at.sidebar.selectbox[0].set_value("plain").run()
    assert not at.exception and "No memorization audit" in at.info[0].value
    assert at.code[0].value == f"t2i-audit memorization {root / 'plain'} --index INDEX_DIR"
    assert len(at.image) == 0 and len(at.html) == 0 and len(at.metric) == 0

    (root / "plain" / "audit").mkdir()
    (root / "plain" / MZ.HITS_FILE).write_bytes(b"junk")
    at.run()
    assert "cannot be shown" in at.error[0].value and at.code[0].value.startswith("t2i-audit memorization ")

    at = page_test("memorization_page", root / "nope")
    assert "No runs found" in at.info[0].value


def test_memorization_page_recomputes_what_is_missing(root: Path) -> None:
    C.modify_summary(root / "demo", lambda summary: summary.pop("memorization"))  # "audits" still lists it
    (root / "demo" / MZ.PROMPTS_FILE).write_bytes(b"junk")
    at = page_test("memorization_page", root)
    assert at.metric[0].value == T.format_rate(len(COPIES) / N_IMAGES)
    assert at.table[0].value["Value"].tolist()[-1] == T.escape_markdown(MZ.HITS_FILE)  # source
    assert "Ignoring audit/memorization_prompts.parquet" in at.warning[0].value.replace("\\", "")
    assert {r.prompt_id: (r.n_images, r.n_copies) for r in at.dataframe[0].value.itertuples()} == expected_copy_rates()


def test_featured_neighbour_is_the_confirmed_copy(root: Path) -> None:
    hits, _ = MZ.load_memorization(root / "demo")
    verdicts = MZ.image_verdicts(hits)
    featured = MZ.featured_neighbours(verdicts, hits)
    assert list(featured["image_id"]) == list(verdicts["image_id"])
    # A copy shows the neighbour it copies (p001 at g=7.5: rank 1, not the top-1); others their top-1.
    assert dict(zip(featured["image_id"], featured["rank"])) == {i: COPIES.get(i, 0) for i in verdicts["image_id"]}
    assert dict(zip(featured["image_id"], featured["is_copy"])) == {i: i in COPIES for i in verdicts["image_id"]}
    assert featured.loc[featured["image_id"] == "p001__s000__g7.5", "copy_distance"].item() == 0.05


def test_memorization_page_puts_the_copy_badge_on_the_copy(root: Path) -> None:
    at = page_test("memorization_page", root)
    at.sidebar.multiselect[1].set_value(["p001"]).run()
    at.sidebar.toggle[0].set_value(True).run()  # p001 at g=7.5: a copy of its rank-1 (second) neighbour
    (card,) = at.html
    assert ">copy</span>" in card.value and "Neighbour #2: CLIP cosine" in card.value
    assert "Top-1 neighbour" not in card.value
    assert at.image[1].captions[0] == T.escape_markdown("neighbour #2 (the copy)")
    # Under "Other neighbours": the top-1 with its own badge, "not a copy", and the unsaved rank.
    assert at.expander[0].label == f"Other neighbours ({N_NEIGHBOURS - 1})"
    badges = [m.value for m in at.expander[0].markdown]
    assert badges == [":green-badge[not a copy] **\\#1**", ":green-badge[not a copy] **\\#3**"]


def test_memorization_page_lays_many_neighbours_out_in_rows(root: Path) -> None:
    hits = C.read_table(root / "demo", C.MEMORIZATION_TABLE)
    one = hits[hits["image_id"] == "p000__s000__g1"]
    many = pd.concat([one.iloc[[1]].assign(rank=r, neighbour_id=5000 + r, is_copy=False) for r in range(1, 20)])
    C.write_table(root / "demo", C.MEMORIZATION_TABLE, pd.concat([one.iloc[[0]], many], ignore_index=True))
    at = page_test("memorization_page", root)
    (expander,) = at.expander
    assert expander.label == "Other neighbours (19)"
    rows = list(expander.children.values())  # one block of columns per row
    assert [len(row.children) for row in rows] == [6, 6, 6, 6]  # 19 neighbours: 4 rows of 6 columns, never 19
    assert sum(len(column.image) for row in rows for column in row.children.values()) == 19


def test_memorization_page_downloads_the_audit_tables_as_csv(root: Path) -> None:
    from dashboard.views import memorization_page

    at = page_test("memorization_page", root)
    downloads = at.get("download_button")
    assert [d.proto.label for d in downloads] == ["Download memorization.csv", "Download memorization_prompts.csv"]
    path = C.MEMORIZATION_TABLE.path(root / "demo")
    csv = memorization_page._csv(str(path), IO.file_stamp(path)).decode()
    assert csv.splitlines()[0].split(",")[:3] == ["image_id", "prompt_id", "prompt"]
    assert len(csv.strip().splitlines()) == N_IMAGES * N_NEIGHBOURS + 1
    (root / "demo" / MZ.PROMPTS_FILE).unlink()
    at.run()
    assert [d.proto.label for d in at.get("download_button")] == ["Download memorization.csv"]


def _badges(at) -> list[str]:
    return [m.value for m in at.markdown if "-badge[" in m.value]


def _open_runs_page(at):
    """The app's Runs page (the navigation's default page may be another one)."""
    (page_hash,) = [h for h, info in at._registered_pages.items() if info["page_name"] == "Runs"]
    at._page_hash = page_hash
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def test_runs_grid_shows_watermark_scores(root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    at = _open_runs_page(app_test(monkeypatch, root))
    assert at.sidebar.selectbox[0].value == "demo" and len(at.image) == N_IMAGES
    badges = _badges(at)
    assert sum(b.endswith(": visible watermark]") for b in badges) == N_FLAGGED
    assert sum(b.endswith(": invisible watermark]") for b in badges) == len(INVISIBLE_MESSAGES)
    captions = [c.value for c in at.caption]
    assert sum(c.startswith("visible watermark") for c in captions) == N_IMAGES
    assert any(c.startswith("Watermark audit of 6 images") for c in captions)
    flagged = f"visible watermark {VISIBLE_SCORES['p001__s000__g1']:.2f} (flagged)"
    assert T.escape_markdown(flagged) in " ".join(captions)

    at.sidebar.selectbox[0].set_value("plain").run()  # no audit: the grid looks as before
    assert not at.exception and len(at.image) == N_IMAGES and _badges(at) == []
    assert not any(c.value.startswith(("visible watermark", "Watermark audit")) for c in at.caption)

    (root / "plain" / "audit").mkdir()
    (root / "plain" / W.FILE).write_bytes(b"junk")
    at.run()
    assert "Watermark scores not shown" in at.warning[0].value and len(at.image) == N_IMAGES


# ------------------------------------------------------ never import torch


def test_memorization_page_never_imports_torch(root: Path) -> None:
    """The Memorization page and the watermark grid load no torch or audit, and of bench only its contract."""
    assert heavy_modules_after_rendering(root, ("memorization_page", "runs_page"), min_images=N_IMAGES) == []


# ------------------------------------------------------------ the browser


@pytest.mark.browser
def test_browser_memorization_page(chromium: Path, root: Path, tmp_path: Path) -> None:
    from playwright.sync_api import expect, sync_playwright

    expect.set_options(timeout=BROWSER_TIMEOUT_MS)
    dialogs: list[str] = []
    with serve_dashboard(root, tmp_path / "streamlit.log") as url, sync_playwright() as pw:
        browser = launch_chromium(pw, chromium)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1400})
            page.set_default_timeout(BROWSER_TIMEOUT_MS)
            page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
            page.goto(url)
            # Reach the page through the navigation, as a user does.
            page.get_by_test_id("stSidebar").get_by_role("link", name="Memorization").click()
            expect(page.get_by_role("heading", name="Memorization · demo")).to_be_visible()

            cards = page.locator(".t2i-card")
            expect(cards).to_have_count(N_IMAGES)
            verdicts = page.locator(".t2i-verdict")
            expect(verdicts).to_have_count(N_IMAGES)
            assert sorted(verdicts.all_inner_texts()) == sorted(
                ["copy"] * len(COPIES) + ["not a copy"] * (N_IMAGES - len(COPIES))
            )
            # Side by side: each bordered pair holds the generated image and its top-1 neighbour, both decoded.
            pair = page.locator(".st-key-mem-pair-0")  # the first bordered pair (its container key)
            expect(pair.locator(".t2i-card")).to_have_count(1)
            images = pair.locator('[data-testid="stImage"] img')
            expect(images.first).to_be_visible()
            boxes = [images.nth(i).bounding_box() for i in range(2)]
            assert boxes[0]["x"] < boxes[1]["x"] and abs(boxes[0]["y"] - boxes[1]["y"]) < 5  # same row
            assert images.nth(0).evaluate("img => img.naturalWidth") > 0
            assert images.nth(1).evaluate("img => img.naturalWidth") > 0
            expect(page.get_by_text("Copy rate", exact=True)).to_be_visible()
            expect(page.get_by_text(T.format_rate(len(COPIES) / N_IMAGES), exact=True)).to_be_visible()

            # User text is shown literally and runs nothing.
            expect(page.locator(".t2i-prompt", has_text=XSS_PROMPT).first).to_be_visible()
            expect(page.locator(".t2i-caption", has_text=XSS_CAPTION)).to_have_count(1)
            injected = page.evaluate("() => [...document.scripts].some(s => s.text.includes('alert('))")
            assert not injected
            page.screenshot(path=str(tmp_path / "memorization.png"), full_page=True)

            # Copies only.
            page.get_by_test_id("stSidebar").get_by_text("Copies only").click()
            expect(cards).to_have_count(len(COPIES))
            assert set(verdicts.all_inner_texts()) == {"copy"}

            # The Audits page (from the page registry) lists both recorded probes with their tables.
            from audit.probes.memorization import PROBE as MEMORIZATION
            from audit.probes.watermark import PROBE as WATERMARK

            page.get_by_test_id("stSidebar").get_by_role("link", name="Audits").click()
            expect(page.get_by_role("heading", name="Audits · demo")).to_be_visible()
            for probe in (MEMORIZATION, WATERMARK):
                expect(page.get_by_role("heading", name=probe.display_name)).to_be_visible()
            expect(page.get_by_test_id("stDownloadButton")).to_have_count(6)  # 3 tables x (parquet, csv)
            expect(page.locator('[data-testid="stDataFrame"]')).to_have_count(3)
            page.screenshot(path=str(tmp_path / "audits.png"), full_page=True)
            assert dialogs == []
        finally:
            browser.close()

    keep_screenshots(tmp_path, list(("memorization.png", "audits.png")))


def test_pair_card_gives_the_verdicts_evidence() -> None:
    """The card of a pair shows the relative distance against its threshold, the criterion that made the
    verdict and how many training images lie within the copy distance; an audit from before the relative
    criterion (NaN, -1) shows neither, instead of "nan"."""
    from dashboard.views.memorization_page import card_html

    row = {"is_copy": True, "prompt": "a <b>red</b> circle", "prompt_id": "p1", "category": "fresh", "guidance": 7.5,
           "image_id": "i1", "rank": 0, "top_rank": 0, "clip_cosine": 0.97, "copy_distance": 0.05,
           "threshold_cosine": 0.85, "threshold_distance": 0.135, "relative_distance": 0.08,
           "threshold_relative": 0.5, "criterion": "both", "n_within": 110, "neighbour_id": 7,
           "neighbour_caption": "", "neighbour_key": ""}
    card = card_html(row)
    assert "relative distance <b>0.080</b> (copy ≤ 0.5)" in card
    assert "verdict by the both criterion" in card and "110 training images of the candidate pool" in card
    assert "&lt;b&gt;red&lt;/b&gt;" in card  # user text escaped
    old = card_html({**row, "relative_distance": float("nan"), "n_within": -1, "criterion": ""})
    assert "relative distance" not in old and "training image" not in old and "nan" not in old


def test_index_free_score_is_shown_highest_first_beside_the_index_verdicts(root: Path) -> None:
    """A run with ``t2i-audit memorization-score --run``'s table (written by the contract's writer) shows it,
    highest score first, above the index-based pairs; a damaged table is one error line."""
    table = pd.DataFrame({"prompt_id": ["p000", "p001", "p002"], "prompt": ["<b>a</b>", "b", "c"],
                          "category": ["iconic", "fresh", "iconic"], "score": [3.0, 9.5, 7.25], "steps": 1,
                          "generations": 1, "num_inference_steps": 50, "guidance_scale": 7.5, "seed": 0,
                          "prediction": "model", "scheduler": "ddim", "model": "builtin:tiny-random"})
    C.write_table(root / "demo", C.MEMORIZATION_SCORE_TABLE, table)
    read, error = MZ.load_memorization_score(root / "demo")
    assert error is None and read["prompt_id"].tolist() == ["p001", "p002", "p000"]
    assert MZ.load_memorization_score(root / "plain") == (None, None)
    at = page_test("memorization_page", root)
    assert "Index-free memorization score (Wen et al., ICLR 2024)" in [h.value for h in at.subheader]
    shown = at.dataframe[0].value  # the first table on the page
    assert shown["prompt_id"].tolist() == ["p001", "p002", "p000"] and shown["prompt"].iloc[2] == "<b>a</b>"
    assert len(at.html) > 0  # the index-based pairs are still there
    C.MEMORIZATION_SCORE_TABLE.path(root / "demo").write_bytes(b"not parquet")
    at = page_test("memorization_page", root)
    assert any("memorization score of this run cannot be shown" in e.value for e in at.error)
