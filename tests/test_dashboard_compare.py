"""Tests for the dashboard's Compare page and the Metrics page's intervals and sample sizes.

Fixture runs (``make_compare_root``): ``demo`` and ``rival``, the same prompts and seeds, with
metrics.parquet / sweep.parquet intervals and per-image scores whose verdicts are planted
(``DEMO_VERDICTS``, ``RIVAL_VERDICTS``): over both guidance scales demo is right on p000 and p001 and
wrong on p002, rival wrong on p000 and right on p001 and p002.  Tiers: pure functions, then AppTest
pages (the real ``bench.compare`` for the statistics, and a stand-in for the highlighting).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pandas as pd
import pytest

from bench import contract as C
from dashboard.data import compare as K
from dashboard.data import metrics as M
from dashboard.data import text as T
from dashboard_fixtures import (
    CI_HALF_WIDTH, FD, FD_METHOD, GUIDANCE, HEADLINE, PROMPTS, PROMPTS_METHOD, XSS_PROMPT, fake_compare_table,
    make_compare_root, page_test,
)  # fmt: skip

KID = "KID_efficientnet-lite0"


@pytest.fixture
def root(tmp_path: Path) -> Path:
    """'demo' and 'rival' (scored, intervals, per-image scores), 'half-done', a junk dir."""
    return make_compare_root(tmp_path)


@pytest.fixture(autouse=True)
def _fresh_caches():
    """The page caches per file stamps; a test that swaps bench.compare must not see an earlier result."""
    from dashboard.views import compare_page

    compare_page.compare_sides.clear()
    yield
    compare_page.compare_sides.clear()


def _param(at, name: str) -> list[str]:
    """The URL's values of a query parameter (AppTest gives one value as a string)."""
    value = at.query_params[name]
    return value if isinstance(value, list) else [value]


def _charts(at) -> list[dict]:
    return [json.loads(chart.proto.spec) for chart in at.get("plotly_chart")]


# ------------------------------------------------------------ metrics: pure functions


def test_headline_details_show_n_reference_std_and_intervals(root: Path) -> None:
    from dashboard.views.metrics_page import describe_metric

    metrics, _ = M.load_metrics(root / "demo")
    table = M.headline_details(metrics, describe_metric)
    assert list(table.columns) == ["metric", "guidance", "value", "95% low", "95% high", "flag", "N for ±1%", "n",
                                   "n_ref", "reference", "std"]  # fmt: skip
    assert len(table) == len(HEADLINE) * 3 and list(table["guidance"][:3]) == ["all", "g=1", "g=7.5"]
    fd = table[table["metric"] == "FD (efficientnet-lite0) ↓"].set_index("guidance")
    assert fd.loc["g=7.5", "value"] == 120.25
    assert fd.loc["g=7.5", "95% low"] == pytest.approx(120.25 * (1 - CI_HALF_WIDTH))
    assert fd.loc["g=7.5", "95% high"] == pytest.approx(120.25 * (1 + CI_HALF_WIDTH))
    assert fd.loc["all", "n"] == 6 and fd.loc["g=1", "n"] == 3 and fd.loc["all", "n_ref"] == 6
    assert fd.loc["all", "N for ±1%"] == pytest.approx(6 * (CI_HALF_WIDTH / 0.01) ** 2)
    assert set(fd["reference"]) == {"runs/other"} and set(fd["flag"]) == {M.UNRELIABLE_FLAG}
    kid = table[table["metric"] == "KID (efficientnet-lite0) ↓"]
    assert set(kid["std"]) == {0.001} and set(kid["flag"]) == {""}
    clip = table[table["metric"] == "CLIP score ↑"]
    assert clip["n_ref"].isna().all() and set(clip["reference"]) == {""} and clip["std"].isna().all()
    assert M.interval_methods(metrics)[0] == (FD_METHOD, [FD])
    assert (PROMPTS_METHOD, ["CLIPScore", "compositional_accuracy"]) in M.interval_methods(metrics)

    # A run scored without std (no KID) and without intervals: no std column, NaN intervals, no methods.
    plain = metrics[~metrics["metric"].str.startswith("KID")].drop(columns=["std"])
    plain = plain.assign(ci_low=math.nan, ci_high=math.nan, ci_method="")
    table = M.headline_details(plain, describe_metric)
    assert "std" not in table.columns and table["95% low"].isna().all() and M.interval_methods(plain) == []


def test_category_details_carry_n_and_intervals(root: Path) -> None:
    metrics, _ = M.load_metrics(root / "demo")
    table = M.category_details(metrics, "compositional_accuracy")
    assert list(table.columns) == ["category", "guidance", "value", "95% low", "95% high", "N for ±1%", "n", "flag"]
    assert list(zip(table["category"], table["guidance"])) == [
        (c, g) for c in ("counting", "spatial") for g in ("all", "g=1", "g=7.5")
    ]  # fmt: skip
    spatial = table[(table["category"] == "spatial") & (table["guidance"] == "g=7.5")].iloc[0]
    assert spatial["value"] == 1.0 and spatial["n"] == 2 and spatial["95% high"] == pytest.approx(1 + CI_HALF_WIDTH)
    assert M.category_details(metrics, FD).empty


def test_axes_are_numeric_columns_and_reasons_name_the_axis(root: Path) -> None:
    sweep, _ = M.load_sweep(root / "demo")
    sweep = sweep.assign(notes="text", empty=math.nan)  # a text column and a numeric one without values
    options = M.metric_columns(sweep)
    assert options == list(HEADLINE)  # no guidance_formulation, notes, empty, nor any *_ci_low / *_ci_high
    assert M.tradeoff_points(sweep, "guidance_formulation", FD) == (None, "guidance_formulation is not a numeric column")
    assert M.tradeoff_points(sweep, "notes", FD) == (None, "notes is not a numeric column")
    assert M.tradeoff_points(sweep, "empty", FD) == (None, "empty has no value at any guidance scale")
    points, reason = M.tradeoff_points(sweep)
    assert reason is None and points["x_low"].tolist() == pytest.approx([24 * 0.9, 30 * 0.9])
    assert points["y_high"].tolist() == pytest.approx([95.5 * 1.1, 120.25 * 1.1])


def test_sweep_from_metrics_keeps_intervals_and_error_bars(root: Path) -> None:
    metrics, _ = M.load_metrics(root / "demo")
    rebuilt = M.sweep_from_metrics(metrics)
    assert f"{FD}_ci_low" in rebuilt.columns and f"CLIPScore{C.INTERVAL_SUFFIXES[1]}" in rebuilt.columns
    assert M.metric_columns(rebuilt) == list(HEADLINE)
    curve = M.guidance_curve(rebuilt, "CLIPScore")
    assert curve["guidance"].tolist() == GUIDANCE and curve["value"].tolist() == [24.0, 30.0]
    plus, minus = M.error_bars(curve["value"], curve["low"], curve["high"])
    assert plus == pytest.approx([2.4, 3.0]) and minus == pytest.approx([2.4, 3.0])
    # A bound on the wrong side of its value (FD with N <= d) is a bar of 0, a missing one too.
    assert M.error_bars([10.0, 5.0], [11.0, math.nan], [12.0, 6.0]) == ([2.0, 1.0], [0.0, 0.0])
    assert M.error_bars([1.0], [math.nan], [math.nan]) is None


# ------------------------------------------------------------ compare: pure functions


def test_sides_parse_label_and_default() -> None:
    assert K.parse_side("rival@7.5") == K.SideChoice("rival", 7.5) and K.SideChoice("rival", 7.5).label == "rival@7.5"
    assert K.parse_side("demo") == K.SideChoice("demo") and K.parse_side("a@b") == K.SideChoice("a@b")
    assert K.parse_side("x@nan") == K.SideChoice("x@nan")
    runs = [("demo", [1.0, 7.5]), ("rival", [1.0])]
    assert K.side_options(runs) == ["demo", "demo@1", "demo@7.5", "rival", "rival@1"]
    assert K.default_sides(runs) == ["demo", "rival"]
    assert K.default_sides(runs[:1]) == ["demo@1", "demo@7.5"] and K.default_sides([]) == []


def test_verdict_filters_pick_prompts_right_on_one_side_wrong_on_the_other(root: Path) -> None:
    scores = {name: K.load_image_scores(root / name)[0] for name in ("demo", "rival")}
    demo, rival = K.prompt_verdicts(scores["demo"], None), K.prompt_verdicts(scores["rival"], None)
    assert demo.to_dict() == {"p000": 1.0, "p001": 0.5, "p002": 0.0}
    assert [K.verdict_word(demo[p]) for p in demo.index] == ["right", "right", "wrong"]  # 0.5 counts as right
    assert K.verdict_word(None) == "" and K.verdict_word(math.nan) == ""
    samples = [C.read_table(root / name, C.SAMPLES_TABLE) for name in ("demo", "rival")]
    prompts = K.prompts_of(samples)
    assert list(prompts["prompt_id"]) == [p for p, *_ in PROMPTS] and prompts["prompt"][2] == XSS_PROMPT

    def ids(categories, wants, verdicts=(demo, rival)):
        return list(K.filter_prompts(prompts, categories, wants, list(verdicts))["prompt_id"])

    assert ids([], ["right", "wrong"]) == ["p000"]  # A right, B wrong
    assert ids([], ["wrong", "right"]) == ["p002"]
    assert ids([], ["right", "right"]) == ["p001"]
    assert ids([], ["any", "any"]) == ["p000", "p001", "p002"]
    assert ids(["spatial"], ["any", "any"]) == ["p002"] and ids(["counting"], ["wrong", "any"]) == []
    # At one guidance scale: demo@1 is right on p000 only, demo@7.5 on p000 and p001.
    at_1, at_7 = K.prompt_verdicts(scores["demo"], 1.0), K.prompt_verdicts(scores["demo"], 7.5)
    assert ids([], ["wrong", "right"], (at_1, at_7)) == ["p001"]
    # A side without per-image scores has no verdict: it matches "any" only.
    assert ids([], ["any", "right"], (demo, K.prompt_verdicts(None, None))) == []
    assert ids([], ["right", "any"], (demo, K.prompt_verdicts(None, None))) == ["p000", "p001"]


def test_grid_columns_cells_and_notes(root: Path) -> None:
    samples = C.read_table(root / "demo", C.SAMPLES_TABLE)
    sides = [K.SideChoice("demo"), K.SideChoice("rival", 7.5)]
    columns = K.grid_columns(sides, [samples, K.at_guidance(samples, 7.5)])
    assert [(c.side, c.title) for c in columns] == [(0, "demo · g=1"), (0, "demo · g=7.5"), (1, "rival@7.5")]
    cell = K.grid_image(samples, "p001", 7.5, 0)
    assert cell["image_id"] == "p001__s000__g7.5" and K.grid_image(samples, "p001", 7.5, 1) is None
    assert K.grid_image(None, "p001", 7.5, 0) is None
    assert K.sample_indices([samples, samples]) == [0] and K.sample_indices([]) == []
    notes = K.scores_by_image(K.load_image_scores(root / "demo")[0])
    assert K.image_note(notes, "p001__s000__g7.5") == "detector: right · CLIP 35.0"
    assert K.image_note(notes, "nope") == "" and K.scores_by_image(None) == {}


# ------------------------------------------------------------ the Metrics page (AppTest)


def test_metrics_page_shows_intervals_sizes_and_flags(root: Path) -> None:
    sweep = C.read_table(root / "demo", C.SWEEP_TABLE)
    C.write_table(root / "demo", C.SWEEP_TABLE, sweep.assign(notes="a text column"))
    at = page_test("metrics_page", root)
    headline = at.dataframe[0].value
    assert {"95% low", "95% high", "N for ±1%", "n", "n_ref", "reference", "std", "flag"} <= set(headline.columns)
    kid = headline[headline["metric"] == "KID (efficientnet-lite0) ↓"]
    assert kid["std"].tolist() == [0.001] * 3 and kid["n_ref"].tolist() == [6.0] * 3
    categories = at.dataframe[1].value
    assert list(categories.columns[:3]) == ["category", "guidance", "value"] and "95% low" in categories.columns
    captions = " ".join(c.value for c in at.caption)
    assert T.escape_markdown(PROMPTS_METHOD) in captions and T.escape_markdown(FD_METHOD) in captions
    assert "Bars: the 95% interval of each value" in captions
    assert T.escape_markdown(M.UNRELIABLE_FLAG) in at.warning[0].value and "FD" in at.warning[0].value
    # Only numeric metric columns are offered as axes: no guidance_formulation, no text, no interval bound.
    assert at.selectbox(key="tradeoff-x::demo").options == [
        "FD (efficientnet-lite0)", "KID (efficientnet-lite0)", "Precision (efficientnet-lite0)",
        "Recall (efficientnet-lite0)", "CLIP score", "Compositional accuracy",
    ]  # fmt: skip
    tradeoff, against = _charts(at)
    point = tradeoff["data"][0]
    assert point["error_x"]["array"] == pytest.approx([2.4, 3.0]) and point["error_y"]["arrayminus"] == pytest.approx(
        [9.55, 12.025])
    assert against["data"][0]["x"] == GUIDANCE and against["data"][0]["error_y"]["array"] == pytest.approx([2.4, 3.0])


def test_metrics_page_without_intervals_says_so(root: Path) -> None:
    rows = C.read_table(root / "demo", C.METRICS_TABLE)
    C.write_table(root / "demo", C.METRICS_TABLE, rows.drop(columns=["ci_low", "ci_high", "ci_method", "n_for_1pct"]))
    sweep = C.read_table(root / "demo", C.SWEEP_TABLE)
    C.write_table(root / "demo", C.SWEEP_TABLE, sweep[[c for c in sweep.columns if "_ci_" not in c]])
    at = page_test("metrics_page", root)
    captions = " ".join(c.value for c in at.caption)
    assert "No intervals in this run" in captions and "--bootstrap N" in captions
    assert len(at.warning) == 0 and at.dataframe[0].value["95% low"].isna().all()
    assert "error_x" not in _charts(at)[0]["data"][0] or _charts(at)[0]["data"][0]["error_x"] in (None, {})


# ------------------------------------------------------------ the Compare page (AppTest)


def _compare(root: Path, **params):
    from streamlit.testing.v1 import AppTest

    script = f"from pathlib import Path\nfrom dashboard.views import compare_page\ncompare_page.render(Path({str(root)!r}))"
    at = AppTest.from_string(script, default_timeout=60)
    for key, value in params.items():
        at.query_params[key] = value
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def _grid(at) -> list[str]:
    """The images' captions (detector verdict and CLIP score), row by row."""
    return [image.captions[0] for image in at.image]


def test_compare_page_defaults_statistics_curves_and_grid(root: Path) -> None:
    at = _compare(root)
    assert at.title[0].value == "Compare runs"
    assert at.multiselect(key="compare-sides").value == ["demo", "rival"]
    assert _param(at, "side") == ["demo", "rival"]
    # Statistics from bench.compare: demo (A) against rival (B), the per-image metrics, overall rows.
    stats = at.dataframe[0].value
    assert set(stats["A"]) == {"demo"} and set(stats["B"]) == {"rival"} and set(stats["subset"]) == {"all"}
    assert set(stats["metric"]) == {"CLIP score ↑", "Compositional accuracy ↑"}
    clip = stats[stats["metric"] == "CLIP score ↑"].iloc[0]
    assert clip["Δ (B − A)"] == pytest.approx(1.5) and bool(clip["significant"]) and bool(clip["paired"])
    assert any("Test: " in c.value for c in at.caption)
    # Curves: one line per run, with error bars.
    (figure,) = _charts(at)
    assert [trace["name"] for trace in figure["data"]] == ["demo", "rival"]
    assert figure["data"][1]["y"] == pytest.approx([24.0 * 1.1, 30.0 * 1.1])
    assert figure["data"][0]["error_y"]["array"] == pytest.approx([2.4, 3.0])
    # Grid: 3 prompts x (demo g=1, g=7.5, rival g=1, g=7.5), the same seed everywhere.
    assert len(at.image) == len(PROMPTS) * 4
    headers = [m.value for m in at.markdown if m.value.startswith("**") and "·" in m.value]
    assert headers == [f"**{T.escape_markdown(t)}**" for t in ("demo · g=1", "demo · g=7.5", "rival · g=1",
                                                               "rival · g=7.5")]  # fmt: skip
    assert _grid(at)[:4] == [T.escape_markdown(t) for t in ("detector: right · CLIP 22.0", "detector: right · CLIP 35.0",
                                                            "detector: wrong · CLIP 23.5", "detector: wrong · CLIP 36.5")]
    assert T.escape_markdown(T.truncate(XSS_PROMPT, 160)) in " ".join(m.value for m in at.markdown)  # escaped


def test_compare_page_verdict_and_category_filters_go_to_the_url(root: Path) -> None:
    at = _compare(root)
    at.selectbox(key="compare-verdict-0::demo").set_value("right")
    at.selectbox(key="compare-verdict-1::rival").set_value("wrong").run()
    assert not at.exception and _param(at, "verdict") == ["right,wrong"]
    assert "1 of 3 prompts match" in " ".join(c.value for c in at.caption)
    assert len(at.image) == 4
    assert at.dataframe[1].value.to_dict("list") == {
        "prompt_id": ["p000"], "category": ["counting"], "demo": ["right"], "rival": ["wrong"]}
    at.selectbox(key="compare-verdict-0::demo").set_value("any")
    at.selectbox(key="compare-verdict-1::rival").set_value("any").run()
    assert "verdict" not in at.query_params and len(at.image) == 12
    at.multiselect(key="compare-categories").set_value(["spatial"]).run()
    assert _param(at, "category") == ["spatial"] and len(at.image) == 4
    # The category's rows join the statistics.
    assert set(at.dataframe[0].value["subset"]) == {"all", "category=spatial"}
    at.selectbox(key="compare-verdict-0::demo").set_value("right").run()  # demo is wrong on the spatial prompt
    assert len(at.image) == 0 and "No prompts match the filters." in [i.value for i in at.info]
    # Sides whose prompts lack the picked category: the pick is dropped, not an error.
    samples = C.read_table(root / "rival", C.SAMPLES_TABLE)
    C.write_table(root / "rival", C.SAMPLES_TABLE, samples.assign(category="counting"))
    at.multiselect(key="compare-sides").set_value(["rival@1", "rival@7.5"]).run()
    assert not at.exception and at.multiselect(key="compare-categories").value == []
    assert "category" not in at.query_params and _param(at, "side") == ["rival@1", "rival@7.5"]


def test_compare_page_reads_its_state_from_the_url(root: Path) -> None:
    at = _compare(root, side=["demo@1", "demo@7.5"], verdict="wrong,right", category="counting")
    assert at.multiselect(key="compare-sides").value == ["demo@1", "demo@7.5"]
    assert at.multiselect(key="compare-categories").value == ["counting"]
    assert [s.value for s in at.sidebar.selectbox] == ["wrong", "right", 0]
    assert len(at.image) == 2  # p001: wrong at g=1, right at g=7.5; one column per side
    headers = [m.value for m in at.markdown if m.value.startswith("**demo")]
    assert headers == [f"**{T.escape_markdown('demo@1')}**", f"**{T.escape_markdown('demo@7.5')}**"]
    stats = at.dataframe[0].value
    assert set(stats["A"]) == {"demo@1"} and set(stats["B"]) == {"demo@7.5"}
    assert set(stats["subset"]) == {"all", "category=counting"}
    (figure,) = _charts(at)
    assert len(figure["data"]) == 1 + 2  # demo's curve, and a ring on each picked scale
    # An unknown side in the URL is named, and the page falls back to what it knows.
    at = _compare(root, side=["nope", "rival"])
    assert "nope" in at.info[0].value and at.multiselect(key="compare-sides").value == ["rival"]
    assert "Pick at least two sides" in at.info[1].value and len(at.image) == 0


def test_compare_page_highlights_significant_rows_and_shows_notes(root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import bench.compare
    from bench.errors import UserError

    from dashboard.views import compare_page

    class Result:
        def __init__(self, labels):
            self.table, self.notes = fake_compare_table(labels), ["demo and rival: <b>unpaired</b> fallback"]

    monkeypatch.setattr(bench.compare, "compare_runs", lambda sides, **kw: Result([s.label for s in sides]))
    at = _compare(root)
    stats = at.dataframe[0].value
    assert stats["significant"].tolist() == [True, False]
    assert compare_page.row_colours(fake_compare_table(["demo", "rival"]).head(2)) == [compare_page.GOOD, ""]
    worse = fake_compare_table(["demo", "rival"]).head(1).assign(delta=-1.5)
    assert compare_page.row_colours(worse) == [compare_page.BAD]
    unknown = fake_compare_table(["demo", "rival"]).head(1).assign(higher_is_better=None)
    assert compare_page.row_colours(unknown) == [compare_page.SIGNIFICANT]
    captions = " ".join(c.value for c in at.caption)
    assert "Test: paired bootstrap over shared prompts" in captions
    assert T.escape_markdown("demo and rival: <b>unpaired</b> fallback") in captions

    def refuse(sides, **kw):
        raise UserError("demo and rival were scored with different extractors")

    compare_page.compare_sides.clear()
    monkeypatch.setattr(bench.compare, "compare_runs", refuse)
    at = _compare(root)
    assert "No statistics for these sides" in at.warning[0].value and "different extractors" in at.warning[0].value
    assert len(at.image) == 12  # the curves and the grid need only the run files


def test_compare_page_without_runs_or_scores(root: Path, tmp_path: Path) -> None:
    at = _compare(tmp_path / "nowhere")
    assert "No readable runs found" in at.info[0].value
    (root / "rival" / C.IMAGE_SCORES).unlink()
    at = _compare(root, verdict="any,right")
    assert "No per-image scores" in at.warning[-1].value and len(at.image) == 0


def test_compare_page_never_imports_torch(root: Path) -> None:
    """The Compare page (with bench.compare's statistics) loads no torch, model library or audit module."""
    import subprocess
    import sys
    import textwrap

    code = textwrap.dedent(f"""
        import json, sys
        from streamlit.testing.v1 import AppTest
        at = AppTest.from_string("from pathlib import Path\\nfrom dashboard.views import compare_page\\n"
                                 "compare_page.render(Path({str(root)!r}))", default_timeout=60)
        at.run()
        assert not at.exception, at.exception
        assert len(at.dataframe) == 2 and len(at.image) == 12, (len(at.dataframe), len(at.image))
        print(json.dumps(sorted(m for m in sys.modules if m.split(".")[0] in
                                ("torch", "torchvision", "diffusers", "transformers", "open_clip", "faiss", "audit"))))
    """)
    result = subprocess.run([sys.executable, "-c", code], cwd=Path(__file__).resolve().parents[1],
                            capture_output=True, text=True, timeout=180)  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    assert json.loads(result.stdout.strip().splitlines()[-1]) == []
