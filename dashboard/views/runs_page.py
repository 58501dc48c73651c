"""The "Runs" page: pick a run, read its manifest, browse its images (the prompt browser).

The browser filters the run's images by category, guidance, a text search of
the prompts and the per-image verdicts the run has: the detector's
(``image_scores.parquet``, compositional accuracy 1/0), the memorization
audit's copy verdict and the watermark audit's flag; it sorts by CLIP score or
watermark score, and pages through the result (page size selectable,
pagination above and below the grid).  Filters, sort, page and page size live
in the URL (``?cat=...&q=...&page=2``, ``dashboard.data.samples.parse_state``)
next to ``?run=``, so a view can be shared by link; a bad value there gives a
note and the default.  Under each thumbnail: its CLIP score, detector and copy
verdicts, "blank canvas" for a one-colour image, and its watermark scores.

Thumbnails are served as the run's own PNG bytes (read once per file stamp,
``st.image(..., output_format="PNG")``), never re-encoded as JPEG on a rerun.

All user-supplied text (prompts, categories, paths, manifest values) goes
through ``escape_markdown`` or widgets that escape it themselves (``st.json``,
``st.code``, ``st.dataframe``), because Streamlit renders captions as Markdown.
"""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd
import streamlit as st

from bench import contract as C
from dashboard.data import memorization as MZ
from dashboard.data import samples as S
from dashboard.data import watermark as W
from dashboard.data.discovery import run_problems
from dashboard.data.reading import file_stamp, load_manifest, load_summary, missing_image_reason
from dashboard.data.text import caption_text, escape_markdown, fact_table, format_rate, manifest_facts
from dashboard.views.common import choose_run, runs_in_sidebar

PER_PAGE = S.DEFAULT_PAGE_SIZE  # images per grid page by default; keeps big runs fast
VERDICT_LABELS = {
    "det": ("Detector verdict", {"any": "Any", "correct": "Correct (drawn as asked)", "wrong": "Wrong"}),
    "copy": ("Copy verdict", {"any": "Any", "copy": "Copy of a training image", "not-copy": "Not a copy"}),
    "wm": ("Visible watermark", {"any": "Any", "flagged": "Flagged", "not-flagged": "Not flagged"}),
}


@st.cache_data(show_spinner=False, max_entries=16)
def _cached_samples(run_dir: str, stamp: tuple[int, int]) -> tuple[pd.DataFrame | None, str | None]:
    """``samples.load_samples`` cached per (run, samples.parquet mtime and size)."""
    return S.load_samples(Path(run_dir))


@st.cache_data(show_spinner=False, max_entries=16)
def _cached_watermark(run_dir: str, stamp: tuple[int, int]) -> tuple[pd.DataFrame | None, str | None]:
    """``watermark.load_watermark`` cached per (run, watermark.parquet mtime and size)."""
    return W.load_watermark(Path(run_dir))


@st.cache_data(show_spinner=False, max_entries=16)
def _cached_image_scores(run_dir: str, stamp: tuple[int, int]) -> tuple[pd.DataFrame | None, str | None]:
    """``samples.load_image_scores`` cached per (run, image_scores.parquet mtime and size)."""
    return S.load_image_scores(Path(run_dir))


@st.cache_data(show_spinner=False, max_entries=16)
def _cached_copies(run_dir: str, stamp: tuple[int, int]) -> tuple[pd.DataFrame | None, str | None]:
    """The memorization audit's per-image verdicts (``image_verdicts``) cached per file stamp."""
    hits, error = MZ.load_memorization(Path(run_dir))
    if hits is None:
        return None, error
    return MZ.image_verdicts(hits)[["image_id", "is_copy", "copy_rank"]], None


@st.cache_data(show_spinner=False, max_entries=4096)
def _thumbnail(path: str, stamp: tuple[int, int]) -> bytes:
    """The image file's bytes, read once per (path, mtime, size)."""
    return Path(path).read_bytes()


def load_watermark_cached(run_dir: Path) -> tuple[pd.DataFrame | None, str | None]:
    """The watermark audit of a run, re-read only when audit/watermark.parquet changes."""
    return _cached_watermark(str(run_dir), file_stamp(C.WATERMARK_TABLE.path(run_dir)))


def load_samples_cached(run_dir: Path) -> tuple[pd.DataFrame | None, str | None]:
    """Samples of a run, re-read only when samples.parquet changes (images re-checked too)."""
    samples, error = _cached_samples(str(run_dir), file_stamp(C.SAMPLES_TABLE.path(run_dir)))
    if samples is not None:  # images may have appeared since the cache was filled
        samples = samples.copy()
        samples["exists"] = [bool(p) and os.path.isfile(p) for p in samples["abs_path"]]
    return samples, error


def _optional(loader, run_dir: Path, table: C.Table, what: str):
    """An optional table of the run: None when absent; a one-line warning when it exists but cannot be read."""
    path = table.path(run_dir)
    if not path.is_file():
        return None
    df, error = loader(str(run_dir), file_stamp(path))
    if df is None:
        st.warning(f"{what} not shown: {escape_markdown(error)}", icon=":material/broken_image:")
    return df


def render(root: Path) -> None:
    """Draw the Runs page for the runs under ``root``."""
    runs = runs_in_sidebar(root)
    if not runs:
        render_no_runs(root)
        return
    run = choose_run(runs)

    st.title(escape_markdown(run.name))
    manifest, error = load_manifest(run.path)
    if error:
        st.error(f"This run cannot be shown: {escape_markdown(error)}")
        return

    samples, samples_error = load_samples_cached(run.path)
    summary, _ = load_summary(run.path)
    problems = run_problems(manifest, samples, samples_error)
    if problems:
        st.warning("**Incomplete run**\n\n" + "\n".join(f"- {escape_markdown(p)}" for p in problems))

    n_images = len(samples) if samples is not None else (summary or {}).get("n_images")
    facts = manifest_facts(manifest, n_images)
    half = (len(facts) + 1) // 2
    left, right = st.columns(2)
    left.table(fact_table(facts[:half]), hide_header=True)
    right.table(fact_table(facts[half:]), hide_header=True)
    with st.expander("Full manifest"):
        st.json(manifest, expanded=True)
    if summary:
        with st.expander("Summary"):
            st.json(summary, expanded=True)

    if samples is None or samples.empty:
        st.info("No images to show yet for this run.")
        return
    watermark = _optional(_cached_watermark, run.path, C.WATERMARK_TABLE, "Watermark scores")
    scores = _optional(_cached_image_scores, run.path, C.IMAGE_SCORES_TABLE, "Per-image scores")
    copies = _optional(_cached_copies, run.path, C.MEMORIZATION_TABLE, "Copy verdicts")
    headline = W.watermark_headline(summary) if watermark is not None else None
    if headline:
        st.caption(escape_markdown(headline))
    grid = W.attach_watermark(samples, watermark)
    grid = S.attach_copies(S.attach_image_scores(grid, scores), copies)
    _render_browser(run.name, samples, grid, watermark is not None)


# ------------------------------------------------------------ the browser's state: widgets <-> session <-> URL


def _key(name: str, run_name: str) -> str:
    return f"{name}::{run_name}"


def _url_params() -> dict[str, list[str]]:
    return {name: st.query_params.get_all(name) for name in S.PARAMS}


def _init_state(run_name: str, categories: list[str], scales: list[float], verdicts: set[str],
                sorts: set[str]) -> list[str]:  # fmt: skip
    """Fill the browser's widget state of ``run_name`` once per session and page visit; returns notes on bad URL values.

    The URL wins when it has any browser parameter (a shared link); else this
    session's last state of the run (``browser::<run>``, kept across page
    switches, which drop widget state); else the defaults.
    """
    if _key("categories", run_name) in st.session_state:
        return []
    params = _url_params()
    remembered = st.session_state.get(_key("browser", run_name))
    if any(params.values()) or not isinstance(remembered, S.BrowserState):
        state, notes = S.parse_state(params, categories, scales, verdicts, sorts)
    else:
        state, notes = remembered, []
    st.session_state[_key("categories", run_name)] = list(state.categories)
    st.session_state[_key("guidance", run_name)] = list(state.guidance)
    st.session_state[_key("q", run_name)] = state.search
    for name in S.VERDICT_FILTERS:
        if name in verdicts:
            st.session_state[_key(name, run_name)] = getattr(state, name)
    st.session_state[_key("sort", run_name)] = state.sort if state.sort in sorts else "prompt"
    st.session_state[_key("size", run_name)] = state.size
    st.session_state[_key("page", run_name)] = state.page
    st.session_state[_key("filters", run_name)] = None  # the page from the URL stands
    return notes


def _write_url(state: S.BrowserState) -> None:
    """Put ``state`` in the URL (only what differs from the defaults), touching only what changed."""
    wanted = S.state_params(state)
    current = _url_params()
    for name in S.PARAMS:
        value = wanted.get(name)
        values = [] if value is None else ([value] if isinstance(value, str) else list(value))
        if values == current[name]:
            continue
        if values:
            st.query_params[name] = values if len(values) > 1 else values[0]
        else:
            del st.query_params[name]


def _sidebar_filters(run_name: str, grid: pd.DataFrame, verdicts: set[str], sorts: set[str]) -> None:
    with st.sidebar:
        st.multiselect("Category", S.categories(grid), key=_key("categories", run_name), placeholder="All categories")
        st.multiselect("Guidance", S.guidance_values(grid), format_func=lambda g: f"{g:g}",
                       key=_key("guidance", run_name), placeholder="All guidance values")  # fmt: skip
        st.text_input("Search prompts", key=_key("q", run_name), placeholder="words of the prompt or its id")
        for name, (label, choices) in VERDICT_LABELS.items():
            if name in verdicts:
                st.selectbox(label, list(choices), format_func=choices.get, key=_key(name, run_name))
        order = [name for name in S.SORTS if name in sorts]
        st.selectbox("Sort", order, format_func=lambda name: S.SORTS[name][0], key=_key("sort", run_name))
        st.slider("Columns", min_value=1, max_value=8, value=4, key="columns")


def _state(run_name: str, verdicts: set[str]) -> S.BrowserState:
    """The browser state the widgets hold (the page comes later: it depends on the page count)."""
    get = st.session_state.get
    return S.BrowserState(
        categories=tuple(get(_key("categories", run_name)) or ()),
        search=str(get(_key("q", run_name)) or "").strip(),
        guidance=tuple(get(_key("guidance", run_name)) or ()),
        **{name: get(_key(name, run_name), "any") if name in verdicts else "any" for name in S.VERDICT_FILTERS},
        sort=get(_key("sort", run_name)) or "prompt",
        page=int(get(_key("page", run_name)) or 1),
        size=int(get(_key("size", run_name)) or S.DEFAULT_PAGE_SIZE),
    )  # fmt: skip


def _pager(run_name: str, where: str, page: int, n_pages: int) -> None:
    """One of the two page inputs (``where``: "top" or "bottom"); both write the page."""
    mine = _key(f"page_{where}", run_name)
    st.session_state[mine] = page  # both inputs show the page; each writes it when changed

    def changed() -> None:
        st.session_state[_key("page", run_name)] = st.session_state[mine]

    st.number_input("Page", 1, n_pages, key=mine, on_change=changed, label_visibility="visible" if where == "top"
                    else "collapsed")  # fmt: skip


def _render_browser(run_name: str, samples: pd.DataFrame, grid: pd.DataFrame, has_watermark: bool) -> None:
    """Sidebar filters, the paginated image grid, the watermark table by category and the downloads."""
    categories, scales = S.categories(grid), S.guidance_values(grid)
    verdicts, sorts = S.available_filters(grid)
    notes = _init_state(run_name, categories, scales, verdicts, sorts)
    _sidebar_filters(run_name, grid, verdicts, sorts)
    for note in notes:
        st.info(escape_markdown(note), icon=":material/link_off:")

    state = _state(run_name, verdicts)
    if st.session_state.get(_key("filters", run_name)) not in (None, state.filters()):
        state = S.BrowserState(**{**state.__dict__, "page": 1})  # new filters: back to the first page
    st.session_state[_key("filters", run_name)] = state.filters()

    shown = S.browse(grid, state)
    st.subheader("Images")
    n_pages = S.page_count(len(shown), state.size)
    page, note = S.clamp_page(state.page, n_pages)
    if note and not shown.empty:
        st.info(escape_markdown(note), icon=":material/link_off:")
    state = S.BrowserState(**{**state.__dict__, "page": page})
    st.session_state[_key("page", run_name)] = page
    st.session_state[_key("browser", run_name)] = state
    _write_url(state)

    top = st.columns([1, 1, 4], vertical_alignment="bottom")
    if n_pages > 1 and not shown.empty:
        with top[0]:
            _pager(run_name, "top", page, n_pages)
    top[1].selectbox("Per page", S.PAGE_SIZES, key=_key("size", run_name))  # a new size starts at page 1
    if shown.empty:
        top[2].caption(f"0 of {len(samples)} images match the filters.")
        st.info("No images match the filters.")
    else:
        on_page = S.page_slice(shown, page, state.size)
        first = (page - 1) * state.size + 1
        status = (f"{len(shown)} of {len(samples)} images match the filters; "
                  f"showing {first}–{first + len(on_page) - 1} (page {page} of {n_pages}).")  # fmt: skip
        top[2].caption(status)
        _render_grid(on_page)
        if n_pages > 1:
            bottom = st.columns([1, 5], vertical_alignment="center")
            with bottom[0]:
                _pager(run_name, "bottom", page, n_pages)
            bottom[1].caption(status)

    if has_watermark:
        _render_watermark_table(shown)
    _render_downloads(run_name, samples, shown)


def _render_grid(on_page: pd.DataFrame) -> None:
    n_columns = int(st.session_state.get("columns") or 4)
    rows = on_page.to_dict("records")
    for start in range(0, len(rows), n_columns):
        columns = st.columns(n_columns)
        for column, row in zip(columns, rows[start : start + n_columns]):
            with column:
                _render_image(row)


def _render_image(row: dict) -> None:
    """One grid cell: the image with its caption and scores, or a note when it cannot be shown."""
    caption = escape_markdown(caption_text(row))
    if not row["exists"]:
        reason = missing_image_reason(row["path"], row["abs_path"])
        st.warning(f"{reason}: {escape_markdown(row['path'])}\n\n{caption}")
        return
    path = row["abs_path"]
    try:
        png = path.lower().endswith(".png")
        st.image(_thumbnail(path, file_stamp(Path(path))), caption=caption, width="stretch",
                 output_format="PNG" if png else "auto")  # fmt: skip
    except Exception as exc:  # a damaged file must not take the page down
        st.error(f"Cannot show {escape_markdown(row['path'])}: {escape_markdown(exc)}")
        return
    if row.get("is_copy"):
        st.badge("copy", icon=":material/content_copy:", color="violet")
    note = S.scores_note(row, S.is_blank(path))
    if note:
        st.caption(escape_markdown(note))
    _render_watermark(row)


def _render_watermark(row: dict) -> None:
    """The image's watermark scores under it (nothing for a run or image without a watermark audit)."""
    note = W.watermark_note(row)
    if note is None:
        return
    if row.get("visible"):
        st.badge("visible watermark", icon=":material/warning:", color="red")
    if row.get("invisible"):
        st.badge("invisible watermark", icon=":material/key:", color="orange")
    st.caption(escape_markdown(note))


def _render_watermark_table(shown: pd.DataFrame) -> None:
    """Visible-watermark rate per category of the images that match the filters, with Wilson intervals."""
    rates = W.category_rates(shown)
    with st.expander(f"Visible watermark by category ({int(rates['n'].iloc[-1]) if len(rates) else 0} images "
                     f"with a verdict match the filters)"):  # fmt: skip
        if rates.empty:
            st.info("No image that matches the filters has a watermark verdict.")
            return
        st.dataframe(rates, hide_index=True, width="stretch", column_config={
            "category": st.column_config.TextColumn("Category"),
            "n": st.column_config.NumberColumn("Images", format="%d"),
            "flagged": st.column_config.NumberColumn("Flagged", format="%d"),
            "rate": st.column_config.NumberColumn("Rate", format="percent"),
            "ci_low": st.column_config.NumberColumn("95% CI low", format="percent"),
            "ci_high": st.column_config.NumberColumn("95% CI high", format="percent"),
        })  # fmt: skip
        overall = rates.iloc[-1]
        st.caption(escape_markdown(
            f"Overall {format_rate(overall['rate'])} ({format_rate(overall['ci_low'])} – {format_rate(overall['ci_high'])}); "
            f"intervals: {W.CATEGORY_RATES_METHOD}."
        ))  # fmt: skip


def _render_downloads(run_name: str, samples: pd.DataFrame, shown: pd.DataFrame) -> None:
    """Download buttons: samples.parquet as CSV, and the filtered table with its scores (made on click)."""
    left, right = st.columns(2)
    left.download_button("Download samples.parquet as CSV", lambda: S.samples_csv(samples),
                         file_name=f"{run_name}-samples.csv", mime="text/csv", on_click="ignore",
                         icon=":material/download:", key=_key("download_samples", run_name))  # fmt: skip
    right.download_button(f"Download the filtered table ({len(shown)} images) as CSV", lambda: S.browser_csv(shown),
                          file_name=f"{run_name}-filtered.csv", mime="text/csv", on_click="ignore",
                          icon=":material/download:", key=_key("download_filtered", run_name))  # fmt: skip


def render_no_runs(root: Path) -> None:
    """Friendly empty state: where we looked and how to make a run."""
    st.title("t2i-audit dashboard")
    if not Path(root).is_dir():
        st.error(f"The runs directory {escape_markdown(root)} does not exist.")
    else:
        st.info(f"No runs found in {escape_markdown(root)} (a run is a folder holding manifest.json).")
    st.markdown("Create a run, then reload this page:")
    st.code(
        "t2i-bench generate --help        # options for a generation run\n"
        "make demo                        # a small run with the built-in model",
        language="bash",
    )


_render_no_runs = render_no_runs  # the old name
