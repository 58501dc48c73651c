"""The "Runs" page: pick a run, read its manifest, browse its images.

When the run has a watermark audit (``audit/watermark.parquet``, from
``t2i-audit watermark``), each image shows its visible-watermark score (a badge
when the probe flags it), the invisible-watermark verdict and the retrieved
neighbours' mean ``pwatermark``; runs without one look as before.

All user-supplied text (prompts, categories, paths, manifest values) goes
through ``escape_markdown`` or widgets that escape it themselves (``st.json``,
``st.code``), because Streamlit renders captions and table cells as Markdown.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import streamlit as st

from bench import contract as C
from dashboard.data import samples as S
from dashboard.data import watermark as W
from dashboard.data.discovery import run_problems
from dashboard.data.reading import file_stamp, load_manifest, load_summary, missing_image_reason
from dashboard.data.text import caption_text, escape_markdown, fact_table, manifest_facts
from dashboard.views.common import choose_run, runs_in_sidebar

PER_PAGE = 48  # images per grid page; keeps big runs fast


@st.cache_data(show_spinner=False, max_entries=16)
def _cached_samples(run_dir: str, stamp: tuple[int, int]) -> tuple[pd.DataFrame | None, str | None]:
    """``samples.load_samples`` cached per (run, samples.parquet mtime and size)."""
    return S.load_samples(Path(run_dir))


@st.cache_data(show_spinner=False, max_entries=16)
def _cached_watermark(run_dir: str, stamp: tuple[int, int]) -> tuple[pd.DataFrame | None, str | None]:
    """``watermark.load_watermark`` cached per (run, watermark.parquet mtime and size)."""
    return W.load_watermark(Path(run_dir))


def load_watermark_cached(run_dir: Path) -> tuple[pd.DataFrame | None, str | None]:
    """The watermark audit of a run, re-read only when audit/watermark.parquet changes."""
    return _cached_watermark(str(run_dir), file_stamp(C.WATERMARK_TABLE.path(run_dir)))


def load_samples_cached(run_dir: Path) -> tuple[pd.DataFrame | None, str | None]:
    """Samples of a run, re-read only when samples.parquet changes (images re-checked too)."""
    samples, error = _cached_samples(str(run_dir), file_stamp(C.SAMPLES_TABLE.path(run_dir)))
    if samples is not None:  # images may have appeared since the cache was filled
        samples = samples.copy()
        samples["exists"] = [bool(p) and Path(p).is_file() for p in samples["abs_path"]]
    return samples, error


def render(root: Path) -> None:
    """Draw the Runs page for the runs under ``root``."""
    runs = runs_in_sidebar(root)
    if not runs:
        _render_no_runs(root)
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
    watermark, watermark_error = load_watermark_cached(run.path)
    if watermark is None and C.WATERMARK_TABLE.path(run.path).is_file():
        st.warning(f"Watermark scores not shown: {escape_markdown(watermark_error)}")
    headline = W.watermark_headline(summary) if watermark is not None else None
    if headline:
        st.caption(escape_markdown(headline))
    _render_grid(run.name, W.attach_watermark(samples, watermark))


def _render_grid(run_name: str, samples: pd.DataFrame) -> None:
    """Sidebar filters and the paginated image grid for one run's samples."""
    with st.sidebar:
        chosen_categories = st.multiselect(
            "Category",
            S.categories(samples),
            key=f"categories::{run_name}",
            placeholder="All categories",
        )
        chosen_guidance = st.multiselect(
            "Guidance",
            S.guidance_values(samples),
            format_func=lambda g: f"{g:g}",
            key=f"guidance::{run_name}",
            placeholder="All guidance values",
        )
        n_columns = st.slider("Columns", min_value=1, max_value=8, value=4, key="columns")

    shown = S.filter_samples(samples, chosen_categories, chosen_guidance)
    st.subheader("Images")
    if shown.empty:
        st.info("No images match the filters.")
        return

    n_pages = S.page_count(len(shown), PER_PAGE)
    page = 1
    if n_pages > 1:
        # The key includes the page count so a filter change starts again at page 1.
        page = int(st.number_input("Page", 1, n_pages, 1, key=f"page::{run_name}::{n_pages}"))
    on_page = S.page_slice(shown, page, PER_PAGE)
    first = (page - 1) * PER_PAGE + 1
    st.caption(
        f"{len(shown)} of {len(samples)} images match the filters; "
        f"showing {first}–{first + len(on_page) - 1} (page {page} of {n_pages})."
    )

    rows = on_page.to_dict("records")
    for start in range(0, len(rows), n_columns):
        columns = st.columns(n_columns)
        for column, row in zip(columns, rows[start : start + n_columns]):
            with column:
                _render_image(row)


def _render_image(row: dict) -> None:
    """One grid cell: the image with its caption, or a note when it cannot be shown."""
    caption = escape_markdown(caption_text(row))
    if not row["exists"]:
        reason = missing_image_reason(row["path"], row["abs_path"])
        st.warning(f"{reason}: {escape_markdown(row['path'])}\n\n{caption}")
        return
    try:
        st.image(row["abs_path"], caption=caption, width="stretch")
    except Exception as exc:  # a damaged file must not take the page down
        st.error(f"Cannot show {escape_markdown(row['path'])}: {escape_markdown(exc)}")
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


def _render_no_runs(root: Path) -> None:
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
