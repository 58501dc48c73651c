"""The "Memorization" page: generated images beside their nearest training images.

Reads what ``t2i-audit memorization RUN --index DIR`` writes (DESIGN.md §3, §5):
``audit/memorization.parquet`` (one row per generated image and neighbour
rank: CLIP cosine, copy distance, verdict), ``audit/memorization_prompts.parquet``
(copy rate per prompt) and ``summary.json["memorization"]`` (headline numbers).

An image counts as a copy when any of its retrieved neighbours is confirmed
by the copy distance (kNN by CLIP cosine finds candidates, the stricter
distance confirms: Carlini et al. 2023, "Extracting Training Data from
Diffusion Models"); the card shows the top-1 neighbour, the other ranks sit in
an expander.

Escaping: the card text is HTML (``st.html``), so every run-derived string
(prompts, neighbour captions, keys) goes through ``html.escape``; image
captions, titles and notes are Markdown and go through ``escape_markdown``;
tables use ``st.dataframe``, which draws cell text literally.
"""

from __future__ import annotations

import html
import shlex
from pathlib import Path

import pandas as pd
import streamlit as st

from bench import contract as C
from dashboard.data import memorization as MZ
from dashboard.data.discovery import RunInfo
from dashboard.data.reading import file_stamp, load_summary, missing_image_reason
from dashboard.data.samples import page_count, page_slice
from dashboard.data.text import MISSING, escape_markdown, fact_table, format_rate, format_thresholds, to_number, truncate
from dashboard.views.common import choose_run, runs_in_sidebar

PER_PAGE = 12  # image pairs per page: each pair is two images and a card
AUDIT_HINT = "--index INDEX_DIR"


def audit_command(run_dir: Path) -> str:
    """The command that makes the memorization audit of ``run_dir`` (shown when it is missing)."""
    return f"t2i-audit memorization {shlex.quote(str(run_dir))} {AUDIT_HINT}"


@st.cache_data(show_spinner=False, max_entries=16)
def _cached_memorization(run_dir: str, stamp: tuple[int, int]) -> tuple[pd.DataFrame | None, str | None]:
    """``memorization.load_memorization`` cached per (run, file mtime and size)."""
    return MZ.load_memorization(Path(run_dir))


def verdict_badge(is_copy: bool) -> str:
    """HTML badge for a verdict: red "copy" or green "not a copy"."""
    colour, text = ("#c62828", "copy") if is_copy else ("#2e7d32", "not a copy")
    return (
        f'<span class="t2i-verdict" style="background:{colour};color:#fff;border-radius:0.6em;'
        f'padding:0.1em 0.6em;font-weight:600">{text}</span>'
    )


def _score_line(cosine: float, distance: float, row: dict) -> str:
    """HTML: CLIP cosine and copy distance against the thresholds the audit used."""
    cos_t, dist_t = to_number(row.get("threshold_cosine")), to_number(row.get("threshold_distance"))
    cos_text = f"CLIP cosine <b>{cosine:.3f}</b>" + (f" (copy ≥ {cos_t:g})" if cos_t is not None else "")
    dist_text = f"copy distance <b>{distance:.3f}</b>" + (f" (copy ≤ {dist_t:g})" if dist_t is not None else "")
    parts = [cos_text, dist_text]
    relative = to_number(row.get("relative_distance"))
    if relative is not None:  # audits before the relative criterion have none
        rel_t = to_number(row.get("threshold_relative"))
        parts.append(f"relative distance <b>{relative:.3f}</b>" + (f" (copy ≤ {rel_t:g})" if rel_t is not None else ""))
    return " · ".join(parts)


def _evidence_line(row: dict) -> str:
    """HTML: which criterion made the verdict, and how many training images lie within the copy distance."""
    n_within = to_number(row.get("n_within"))
    parts = []
    if row.get("criterion"):
        parts.append(f"verdict by the {html.escape(str(row['criterion']))} criterion")
    if n_within is not None and n_within >= 0:
        n = int(n_within)
        # Many distinct look-alikes make a common scene; many byte-identical duplicates make a duplicated image
        # (the relative distance tells the two apart).
        parts.append(f"{n} training image{'s' if n != 1 else ''} of the candidate pool within the copy distance")
    return f'<div style="opacity:0.75">{" · ".join(parts)}</div>' if parts else ""


def card_html(row: dict) -> str:
    """The text of one image pair as HTML; every run-derived string is ``html.escape``d.

    ``row`` is the image's verdict (``image_verdicts``) with the neighbour columns of the neighbour the pair
    shows (``featured_neighbours``: the confirmed copy, else the top-1) and ``top_rank``, the top-1's rank.
    """
    e = html.escape
    guidance = to_number(row.get("guidance"))
    facts = [f"prompt {e(row['prompt_id'])}", f"category {e(row['category'])}"]
    if guidance is not None:
        facts.append(f"g={guidance:g}")
    rank, top = int(row["rank"]), int(row.get("top_rank", row["rank"]))
    which = "Top-1 neighbour" if rank == top else f"Neighbour #{rank + 1}"
    lines = [
        f"<div>{verdict_badge(bool(row['is_copy']))}</div>",
        f'<div class="t2i-prompt" style="margin:0.4em 0"><b>{e(truncate(row["prompt"], 200))}</b></div>',
        f'<div style="opacity:0.75">{" · ".join(facts)} · image {e(row["image_id"])}</div>',
        f"<div>{which}: {_score_line(row['clip_cosine'], row['copy_distance'], row)}</div>",
        _evidence_line(row),
        f'<div class="t2i-caption">Caption: “{e(truncate(row["neighbour_caption"], 200))}”</div>'
        if row.get("neighbour_caption") else "",
        f'<div style="opacity:0.75">index row {int(row["neighbour_id"])}'
        + (f" · key {e(row['neighbour_key'])}" if row.get("neighbour_key") else "") + "</div>",
    ]  # fmt: skip
    if row["is_copy"] and rank != top:
        lines.append(
            f"<div>Copy of neighbour #{rank + 1} (shown beside the image); the top-1 by CLIP cosine "
            f"(#{top + 1}, under the other neighbours) is not confirmed by the copy distance.</div>"
        )
    return '<div class="t2i-card">' + "".join(line for line in lines if line) + "</div>"


def render(root: Path) -> None:
    """Draw the Memorization page for the runs under ``root``."""
    runs = runs_in_sidebar(root)
    if not runs:
        st.title("Memorization")
        st.info(f"No runs found in {escape_markdown(root)}; make one (see the Runs page), audit it, then reload.")
        return

    run = choose_run(runs)
    st.title(f"Memorization · {escape_markdown(run.name)}")
    _render_index_free(run.path)

    hits, error = _cached_memorization(str(run.path), file_stamp(C.MEMORIZATION_TABLE.path(run.path)))
    if hits is None:
        if C.MEMORIZATION_TABLE.path(run.path).is_file():
            st.error(f"The memorization audit of this run cannot be shown: {escape_markdown(error)}")
            st.markdown("Run the audit again to rewrite it:")
        else:
            st.info("No memorization audit for this run yet. Make one against a CLIP index, then reload this page:")
        st.code(audit_command(run.path), language="bash")
        st.caption(
            "`t2i-audit index build shapes-laion:20000 --out INDEX_DIR` makes an index of the built-in "
            "world's training corpus; any clip-retrieval index folder works too."
        )
        return
    if hits.empty:
        st.info(f"{MZ.HITS_FILE} holds no rows.")
        return
    hits = hits.assign(  # images may have appeared or gone since the cache was filled
        exists=[bool(p) and Path(p).is_file() for p in hits["abs_path"]],
        neighbour_exists=[bool(p) and Path(p).is_file() for p in hits["neighbour_abs_path"]],
    )

    verdicts = MZ.image_verdicts(hits)
    summary, _ = load_summary(run.path)
    _render_headline(MZ.memorization_headline(summary, verdicts), verdicts)
    _render_downloads(run.path)

    with st.sidebar:
        copies_only = st.toggle("Copies only", key=f"mem-copies::{run.name}")
        chosen_categories = st.multiselect(
            "Category", sorted(verdicts["category"].unique()), key=f"mem-categories::{run.name}",
            placeholder="All categories",
        )  # fmt: skip
        prompts = verdicts.drop_duplicates("prompt_id").set_index("prompt_id")["prompt"]
        chosen_prompts = st.multiselect(
            "Prompt", list(prompts.index), key=f"mem-prompts::{run.name}", placeholder="All prompts",
            format_func=lambda pid: f"{pid}: {truncate(prompts[pid], 60)}",
        )  # fmt: skip

    _render_prompt_rates(run, verdicts, chosen_categories, chosen_prompts)
    shown = MZ.filter_verdicts(verdicts, copies_only, chosen_categories, chosen_prompts)
    _render_pairs(run.name, shown, len(verdicts), hits)


def _render_index_free(run_dir: Path) -> None:
    """Wen et al.'s score per prompt, when the run has one: a ranking of prompts, beside the index verdicts."""
    table, error = MZ.load_memorization_score(run_dir)
    if table is None and error is None:
        return
    st.subheader("Index-free memorization score (Wen et al., ICLR 2024)")
    if table is None:
        st.error(f"The memorization score of this run cannot be shown: {escape_markdown(error)}")
        return
    first = table.iloc[0]
    st.caption(
        f"Per prompt: ||pred(x_t, prompt) − pred(x_t, \"\")||₂ over the first {int(first['steps'])} step(s) × "
        f"{int(first['generations'])} generation(s) of {escape_markdown(first['model'])} "
        f"({escape_markdown(first['prediction'])}). Higher = more likely memorized. It ranks prompts and needs no "
        "index; compare it with prompts of the same caption form (docs/memorization-score.md)."
    )
    st.dataframe(table[["prompt_id", "category", "score", "prompt"]], hide_index=True,
                 column_config={"score": st.column_config.NumberColumn(format="%.3f")})


def _render_headline(headline: dict, verdicts: pd.DataFrame) -> None:
    st.subheader("Headline")
    left, middle, right = st.columns(3)
    left.metric("Copy rate", format_rate(headline["copy_rate"]))
    middle.metric("Copies", MISSING if headline["n_copies"] is None else str(headline["n_copies"]))
    right.metric("Images audited", MISSING if headline["n_images"] is None else str(headline["n_images"]))
    facts = [
        ("Method", str(headline["method"] or MISSING)),
        ("Index", str(headline["index"] or MISSING)),
        ("Thresholds", format_thresholds(headline["thresholds"])),
        ("Source", headline["source"]),
    ]
    st.table(fact_table(facts), hide_header=True)
    mismatch = MZ.headline_mismatch(headline, verdicts)
    if mismatch:
        st.warning(escape_markdown(mismatch))


@st.cache_data(show_spinner=False, max_entries=16)
def _csv(path: str, stamp: tuple[int, int]) -> bytes:
    """A parquet file of the run as CSV, cached per file stamp (made when the button is clicked)."""
    return pd.read_parquet(path).to_csv(index=False).encode("utf-8")


def _render_downloads(run_dir: Path) -> None:
    """A CSV download button per memorization table the run has."""
    tables = MZ.download_tables(run_dir)
    if not tables:
        return
    columns = st.columns(3)
    for i, (file, path) in enumerate(tables):
        name = f"{Path(file).stem}.csv"
        columns[i % 3].download_button(  # data made on click only
            f"Download {name}", lambda path=path: _csv(str(path), file_stamp(path)), file_name=name,
            mime="text/csv", key=f"mem-csv-{i}", on_click="ignore", icon=":material/download:",
        )  # fmt: skip


def _render_prompt_rates(run: RunInfo, verdicts: pd.DataFrame, categories: list, prompt_ids: list) -> None:
    """Copy rate per prompt (table and bar chart), restricted to the chosen categories and prompts."""
    st.subheader("Copy rate per prompt")
    rates, error = MZ.load_memorization_prompts(run.path)
    source = MZ.PROMPTS_FILE
    if rates is None:
        if C.MEMORIZATION_PROMPTS_TABLE.path(run.path).is_file():
            st.warning(f"Ignoring {MZ.PROMPTS_FILE}: {escape_markdown(error)}")
        rates, source = MZ.prompt_copy_rates(verdicts), MZ.HITS_FILE
    if categories:
        rates = rates[rates["category"].isin(categories)]
    if prompt_ids:
        rates = rates[rates["prompt_id"].isin(prompt_ids)]
    if rates.empty:
        st.info("No prompts match the filters.")
        return
    rates = rates.sort_values(["copy_rate", "prompt_id"], ascending=[False, True], kind="stable")
    left, right = st.columns([3, 2])
    left.dataframe(
        rates, hide_index=True, key="prompt-rates",
        column_config={
            "prompt_id": "prompt id", "n_images": "images", "n_copies": "copies",
            "copy_rate": st.column_config.NumberColumn("copy rate", format="percent"),
        },
    )  # fmt: skip
    right.bar_chart(rates, x="prompt_id", y="copy_rate", x_label="prompt", y_label="copy rate", height=300)
    st.caption(f"Copy rate = images confirmed as copies / images of the prompt; from {source}.")


def _render_pairs(run_name: str, shown: pd.DataFrame, n_total: int, hits: pd.DataFrame) -> None:
    """The paginated list of generated image | featured neighbour (the confirmed copy, else the top-1) | card."""
    st.subheader("Generated images and their nearest training images")
    if shown.empty:
        st.info("No images match the filters.")
        return
    n_pages = page_count(len(shown), PER_PAGE)
    page = 1
    if n_pages > 1:  # the key includes the page count so a filter change starts again at page 1
        page = int(st.number_input("Page", 1, n_pages, 1, key=f"mem-page::{run_name}::{n_pages}"))
    on_page = page_slice(shown, page, PER_PAGE)
    first = (page - 1) * PER_PAGE + 1
    st.caption(
        f"{len(shown)} of {n_total} images match the filters; "
        f"showing {first}–{first + len(on_page) - 1} (page {page} of {n_pages}). Beside each image: the "
        "neighbour it copies when the copy distance confirms one, else its top-1 by CLIP cosine."
    )
    featured = MZ.featured_neighbours(on_page, hits)
    by_image = dict(tuple(hits.groupby("image_id", sort=False)))
    for i, (verdict, neighbour) in enumerate(zip(on_page.to_dict("records"), featured.to_dict("records"))):
        row = {**verdict, **neighbour, "is_copy": verdict["is_copy"], "top_rank": verdict["rank"]}
        with st.container(border=True, key=f"mem-pair-{i}"):  # the key gives the pair a CSS class (browser test)
            generated, beside, card = st.columns([1, 1, 2])
            with generated:
                _show_image(row["exists"], row["abs_path"], row["path"], "generated")
            with beside:
                label = f"neighbour #{int(row['rank']) + 1}" + (" (the copy)" if neighbour["is_copy"] else "")
                _show_image(row["neighbour_exists"], row["neighbour_abs_path"], row["neighbour_path"], label)
            with card:
                st.html(card_html(row))
            others = by_image[row["image_id"]]
            others = others[others["rank"] != row["rank"]]
            if not others.empty:
                with st.expander(f"Other neighbours ({len(others)})"):
                    _render_other_neighbours(others)


#: Neighbours per row under "Other neighbours": each keeps a readable width however many were retrieved.
NEIGHBOURS_PER_ROW = 6


def _render_other_neighbours(others: pd.DataFrame) -> None:
    """The other retrieved neighbours in rows of ``NEIGHBOURS_PER_ROW``, each with its own verdict badge."""
    records = others.to_dict("records")
    for start in range(0, len(records), NEIGHBOURS_PER_ROW):
        columns = st.columns(NEIGHBOURS_PER_ROW)
        for column, other in zip(columns, records[start : start + NEIGHBOURS_PER_ROW]):
            with column:
                badge = ":red-badge[copy]" if other["is_copy"] else ":green-badge[not a copy]"
                st.markdown(f"{badge} **\\#{int(other['rank']) + 1}**")
                caption = (f"cos {other['clip_cosine']:.3f} · dist {other['copy_distance']:.3f} · "
                           f"{truncate(other['neighbour_caption'], 60)}")  # fmt: skip
                _show_image(other["neighbour_exists"], other["neighbour_abs_path"], other["neighbour_path"], caption)


def _show_image(exists: bool, abs_path: str, rel_path: str, caption: str) -> None:
    """An image with an escaped caption, or a note when it is not on disk / was not saved."""
    caption = escape_markdown(caption)
    if not rel_path:
        st.info(f"Image not saved by the audit\n\n{caption}")
        return
    if not exists:
        st.warning(f"{missing_image_reason(rel_path, abs_path)}: {escape_markdown(rel_path)}\n\n{caption}")
        return
    try:
        st.image(abs_path, caption=caption, width="stretch")
    except Exception as exc:  # a damaged file must not take the page down
        st.error(f"Cannot show {escape_markdown(rel_path)}: {escape_markdown(exc)}")
