"""A run's images (``samples.parquet``, ``bench.contract.SAMPLES_TABLE``): loading, filtering, paging,
and the prompt browser of the Runs page built on them.

The browser joins to each image its per-image scores (``image_scores.parquet``,
``bench.contract.IMAGE_SCORES_TABLE``: CLIP score, the detector's verdict as
compositional accuracy 1/0), its copy verdict (the memorization audit) and its
watermark scores (``dashboard.data.watermark``); filters on them, a text
search, a sort order, the page and the page size make a ``BrowserState`` that
lives in the URL (``parse_state`` / ``state_params``).
"""

from __future__ import annotations

import math
import os
import stat
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Iterable, Mapping

import pandas as pd
from PIL import Image

from bench import contract as C
from dashboard.data.reading import file_stamp, read_table, resolve_image
from dashboard.data.text import truncate


def load_samples(run_dir: Path) -> tuple[pd.DataFrame | None, str | None]:
    """Load ``samples.parquet`` (typed by the contract) and add ``abs_path`` and ``exists`` columns.

    ``abs_path`` is the image's absolute path (the contract stores paths
    relative to the run dir; one outside it gives ""); ``exists`` says whether
    that file is on disk, so a partly written run can be shown as such.
    """
    df, error = read_table(run_dir, C.SAMPLES_TABLE)
    if df is None:
        return None, error
    return add_image_paths_fast(df, run_dir).reset_index(drop=True), None


def add_image_paths_fast(df: pd.DataFrame, run_dir: Path, column: str = "path") -> pd.DataFrame:
    """``reading.add_image_paths`` (``abs_path``, "" when refused, and ``exists``) for many rows: the same
    answer, with each folder resolved once and ``lstat`` per file instead of a full ``realpath``.

    A file that is a symlink, a path with ``..`` or an absolute path goes through
    ``reading.resolve_image`` as before, so a path that leaves the run directory is still refused.
    """
    base = Path(run_dir).resolve()
    base_text = str(base)
    folders: dict[str, str | None] = {}
    abs_paths, exists = [], []
    for rel in df[column]:
        path, found = "", False
        if isinstance(rel, str) and rel and not os.path.isabs(rel) and ".." not in rel.replace("\\", "/").split("/"):
            folder, _, name = rel.rpartition("/")
            if folder not in folders:
                real = os.path.realpath(os.path.join(base_text, folder)) if folder else base_text
                folders[folder] = real if real == base_text or real.startswith(base_text + os.sep) else None
            real_folder = folders[folder]
            if real_folder is not None and name not in ("", "."):
                candidate = os.path.join(real_folder, name)
                try:
                    st_mode = os.lstat(candidate).st_mode
                except OSError:
                    path = candidate  # not on disk (yet): the path it will have
                else:
                    if stat.S_ISLNK(st_mode):
                        resolved = resolve_image(run_dir, rel)
                        path = str(resolved) if resolved else ""
                        found = bool(resolved) and resolved.is_file()
                    else:
                        path, found = candidate, stat.S_ISREG(st_mode)
                abs_paths.append(path)
                exists.append(found)
                continue
        resolved = resolve_image(run_dir, rel)
        abs_paths.append(str(resolved) if resolved else "")
        exists.append(bool(resolved) and resolved.is_file())
    df["abs_path"] = abs_paths
    df["exists"] = exists
    return df


def categories(samples: pd.DataFrame) -> list[str]:
    """Sorted distinct categories in the samples."""
    return sorted(str(c) for c in samples["category"].dropna().unique())


def guidance_values(samples: pd.DataFrame) -> list[float]:
    """Sorted distinct guidance scales in the samples."""
    return sorted(float(g) for g in samples["guidance"].dropna().unique())


def filter_samples(
    samples: pd.DataFrame,
    categories: Iterable[str] | None = None,
    guidance: Iterable[float] | None = None,
) -> pd.DataFrame:
    """Rows matching the chosen categories and guidance values.

    ``None`` or an empty selection means "no filter" on that column.  Rows
    keep a stable order: prompt id, guidance, sample index.
    """
    mask = pd.Series(True, index=samples.index)
    cats = list(categories or [])
    if cats:
        mask &= samples["category"].astype(str).isin(cats)
    scales = [float(g) for g in (guidance or [])]
    if scales:
        mask &= samples["guidance"].astype(float).apply(lambda g: any(math.isclose(g, s) for s in scales))
    out = samples[mask]
    return out.sort_values(["prompt_id", "guidance", "sample_index"], kind="stable").reset_index(drop=True)


def page_count(n_items: int, per_page: int) -> int:
    """Number of pages needed for ``n_items`` (at least 1, so a page input always works)."""
    return max(1, math.ceil(n_items / per_page))


def page_slice(rows: pd.DataFrame, page: int, per_page: int) -> pd.DataFrame:
    """Rows on 1-based ``page``; out-of-range pages are clamped."""
    page = min(max(1, int(page)), page_count(len(rows), per_page))
    start = (page - 1) * per_page
    return rows.iloc[start : start + per_page]


# ------------------------------------------------------------ the prompt browser: per-image scores and verdicts
#: Per-image metrics of image_scores.parquet shown in the grid, and the grid column each becomes.
SCORE_COLUMNS = {"CLIPScore": "clip_score", "compositional_accuracy": "detector_correct"}
#: Grid columns the browser adds (absent values: NaN / None).
VERDICT_COLUMNS = ("clip_score", "detector_correct", "is_copy", "copy_rank")


def load_image_scores(run_dir: Path) -> tuple[pd.DataFrame | None, str | None]:
    """Load ``image_scores.parquet`` (``bench.contract.IMAGE_SCORES_TABLE``, long: one row per image and metric)."""
    df, error = read_table(run_dir, C.IMAGE_SCORES_TABLE)
    if df is None:
        return None, error
    return df.reset_index(drop=True), None


def _verdict(value: Any) -> bool | None:
    """A 1/0 score as True/False; NaN / None as None."""
    if value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value)):
        return None
    return bool(float(value) >= 0.5)


def attach_image_scores(samples: pd.DataFrame, scores: pd.DataFrame | None) -> pd.DataFrame:
    """``samples`` with ``clip_score`` (float, NaN when absent) and ``detector_correct`` (True/False/None).

    From the long image_scores table: one value per (image, metric), the last
    row winning; metrics other than those of ``SCORE_COLUMNS`` are ignored.
    """
    out = samples.drop(columns=[c for c in SCORE_COLUMNS.values() if c in samples.columns])
    if scores is None or scores.empty:
        out["clip_score"] = math.nan
        out["detector_correct"] = None
        return out
    wanted = scores[scores["metric"].isin(list(SCORE_COLUMNS))].drop_duplicates(["image_id", "metric"], keep="last")
    wide = wanted.pivot(index="image_id", columns="metric", values="value")
    for metric, column in SCORE_COLUMNS.items():
        values = wide[metric] if metric in wide.columns else pd.Series(dtype=float)
        mapped = out["image_id"].map(values)
        out[column] = mapped.astype(float) if column == "clip_score" else [_verdict(v) for v in mapped]
    return out


def attach_copies(samples: pd.DataFrame, verdicts: pd.DataFrame | None) -> pd.DataFrame:
    """``samples`` with ``is_copy`` (True/False, None for an image the audit did not judge) and ``copy_rank``
    (0-based rank of the copied neighbour, -1 none) from ``memorization.image_verdicts``."""
    out = samples.drop(columns=[c for c in ("is_copy", "copy_rank") if c in samples.columns])
    if verdicts is None or verdicts.empty:
        out["is_copy"] = None
        out["copy_rank"] = -1
        return out
    by_id = verdicts.drop_duplicates("image_id", keep="last").set_index("image_id")
    copies = out["image_id"].map(by_id["is_copy"])
    out["is_copy"] = [None if v is None or (isinstance(v, float) and math.isnan(v)) else bool(v) for v in copies]
    out["copy_rank"] = out["image_id"].map(by_id["copy_rank"]).fillna(-1).astype("int64")
    return out


def scores_note(row: Any, blank: bool | None = None) -> str | None:
    """Plain-text line of an image's per-image scores, or None when it has none.

    E.g. ``"CLIP score 27.31 · detector: correct · copy of neighbour #2 · blank canvas"``;
    only the parts that exist are shown (the watermark has its own line, ``watermark.watermark_note``).
    """
    parts = []
    clip = row.get("clip_score")
    if clip is not None and not (isinstance(clip, float) and math.isnan(clip)):
        parts.append(f"CLIP score {float(clip):.2f}")
    detector = row.get("detector_correct")
    if detector is not None and detector is not pd.NA:
        parts.append(f"detector: {'correct' if detector else 'wrong'}")
    is_copy = row.get("is_copy")
    if is_copy is not None and is_copy is not pd.NA:
        rank = row.get("copy_rank")
        rank = -1 if rank is None or (isinstance(rank, float) and math.isnan(rank)) else int(rank)
        parts.append(f"copy of neighbour #{rank + 1}" if is_copy and rank >= 0 else ("copy" if is_copy else "not a copy"))
    if blank:
        parts.append("blank canvas")
    return " · ".join(parts) or None


BLANK_CHECK_MAX_PIXELS = 1024 * 1024  # larger files are not decoded for the blank-canvas note


@lru_cache(maxsize=8192)
def _uniform(path: str, stamp: tuple[int, int]) -> bool | None:
    try:
        with Image.open(path) as image:
            if image.width * image.height > BLANK_CHECK_MAX_PIXELS:
                return None  # not a thumbnail: not worth decoding on every page
            extrema = image.convert("RGB").getextrema()
    except (OSError, ValueError):
        return None
    return all(low == high for low, high in extrema)


def is_blank(path: str) -> bool | None:
    """Whether the image at ``path`` is one flat colour (a blank canvas); None when it cannot be read.

    PIL's ``getextrema`` on the (small) file, cached per (path, mtime, size).
    """
    if not path:
        return None
    return _uniform(str(path), file_stamp(Path(path)))


# ------------------------------------------------------------ the prompt browser: its state (filters, page) in the URL
#: Verdict filters: URL parameter -> (choices, the grid column it filters, the value each choice keeps).
VERDICT_FILTERS: dict[str, tuple[tuple[str, ...], str, dict[str, Any]]] = {
    "det": (("any", "correct", "wrong"), "detector_correct", {"correct": True, "wrong": False}),
    "copy": (("any", "copy", "not-copy"), "is_copy", {"copy": True, "not-copy": False}),
    "wm": (("any", "flagged", "not-flagged"), "visible", {"flagged": True, "not-flagged": False}),
}
#: Sort orders: URL value -> (label, column, ascending); "prompt" is the stable prompt/guidance/sample order.
SORTS: dict[str, tuple[str, str | None, bool]] = {
    "prompt": ("Prompt, guidance, sample", None, True),
    "clip-asc": ("CLIP score, lowest first", "clip_score", True),
    "clip-desc": ("CLIP score, highest first", "clip_score", False),
    "wm-desc": ("Watermark score, highest first", "visible_score", False),
}
PAGE_SIZES = (24, 48, 96, 192)
DEFAULT_PAGE_SIZE = 48
#: The URL parameters of the browser (``run`` is the run picker's, ``dashboard.views.common``).
PARAMS = ("cat", "q", "g", "det", "copy", "wm", "sort", "page", "size")


@dataclass(frozen=True)
class BrowserState:
    """What the prompt browser shows: filters, sort order, page and page size (all kept in the URL)."""

    categories: tuple[str, ...] = ()
    search: str = ""
    guidance: tuple[float, ...] = ()
    det: str = "any"
    copy: str = "any"
    wm: str = "any"
    sort: str = "prompt"
    page: int = 1
    size: int = DEFAULT_PAGE_SIZE

    def filters(self) -> tuple:
        """Everything but the page: when it changes, the browser goes back to page 1."""
        return (self.categories, self.search, self.guidance, self.det, self.copy, self.wm, self.sort, self.size)


def available_filters(samples: pd.DataFrame) -> tuple[set[str], set[str]]:
    """The verdict filters (``VERDICT_FILTERS`` keys) and sorts (``SORTS`` keys) the grid's columns allow."""
    def has(column: str) -> bool:
        return column in samples.columns and samples[column].notna().any()

    verdicts = {key for key, (_, column, _) in VERDICT_FILTERS.items() if has(column)}
    sorts = {key for key, (_, column, _) in SORTS.items() if column is None or has(column)}
    return verdicts, sorts


def _same_scale(a: float, b: float) -> bool:
    return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12)


def parse_state(
    params: Mapping[str, list[str]],
    categories: list[str],
    guidance: list[float],
    verdicts: set[str] | None = None,
    sorts: set[str] | None = None,
) -> tuple[BrowserState, list[str]]:
    """The browser state a URL asks for (``params``: parameter -> all its values) and one note per bad value.

    A value that does not fit (an unknown category or guidance, a verdict
    filter the run has no data for, a page that is not a positive number, a
    page size not offered) is dropped with a note and its default used.  The
    page is not checked against the page count here (``clamp_page``).
    """
    verdicts = set(VERDICT_FILTERS) if verdicts is None else verdicts
    sorts = set(SORTS) if sorts is None else sorts
    notes: list[str] = []

    def bad(key: str, value: str, why: str) -> None:
        notes.append(f"URL parameter {key}={truncate(value, 40)} {why}; ignored.")

    def last(key: str) -> str | None:
        values = params.get(key) or []
        return values[-1] if values else None

    cats = []
    for value in params.get("cat") or []:
        if value not in categories:
            bad("cat", value, "is not a category of this run")
        elif value not in cats:
            cats.append(value)
    scales: list[float] = []
    for value in params.get("g") or []:
        try:
            number = float(value)
        except ValueError:
            bad("g", value, "is not a guidance scale")
            continue
        match = next((g for g in guidance if _same_scale(g, number)), None)
        if match is None:
            bad("g", value, "is not a guidance scale of this run")
        elif match not in scales:
            scales.append(match)
    fields: dict[str, Any] = {"categories": tuple(cats), "guidance": tuple(scales), "search": (last("q") or "").strip()}
    for key, (choices, _, _) in VERDICT_FILTERS.items():
        value = last(key)
        if value is None or value == "any":
            continue
        if value not in choices:
            bad(key, value, f"is not one of {', '.join(choices)}")
        elif key not in verdicts:
            bad(key, value, "filters on an audit or score this run does not have")
        else:
            fields[key] = value
    value = last("sort")
    if value is not None and value != "prompt":
        if value not in SORTS:
            bad("sort", value, f"is not one of {', '.join(SORTS)}")
        elif value not in sorts:
            bad("sort", value, "sorts by a score this run does not have")
        else:
            fields["sort"] = value
    value = last("size")
    if value is not None:
        if value.isdigit() and int(value) in PAGE_SIZES:
            fields["size"] = int(value)
        else:
            bad("size", value, f"is not a page size ({', '.join(map(str, PAGE_SIZES))})")
    value = last("page")
    if value is not None:
        if value.isdigit() and int(value) >= 1:
            fields["page"] = int(value)
        else:
            bad("page", value, "is not a page number")
    return BrowserState(**fields), notes


def state_params(state: BrowserState) -> dict[str, str | list[str]]:
    """The URL parameters of ``state``: only those that differ from the defaults."""
    default = BrowserState()
    params: dict[str, str | list[str]] = {}
    if state.categories:
        params["cat"] = list(state.categories)
    if state.search:
        params["q"] = state.search
    if state.guidance:
        params["g"] = [f"{g:g}" for g in state.guidance]
    for key in ("det", "copy", "wm", "sort"):
        if getattr(state, key) != getattr(default, key):
            params[key] = getattr(state, key)
    if state.page != default.page:
        params["page"] = str(state.page)
    if state.size != default.size:
        params["size"] = str(state.size)
    return params


def clamp_page(page: int, n_pages: int) -> tuple[int, str | None]:
    """``page`` within 1..n_pages, with a note when it had to move."""
    if 1 <= page <= n_pages:
        return page, None
    fixed = min(max(1, page), n_pages)
    return fixed, f"Page {page} does not exist ({n_pages} page{'s' if n_pages != 1 else ''} match the filters); showing page {fixed}."


def browse(samples: pd.DataFrame, state: BrowserState) -> pd.DataFrame:
    """The rows ``state`` selects, in its sort order: ``filter_samples`` plus text search and verdict filters.

    The search is a case-insensitive substring of the prompt or the prompt id;
    a verdict filter keeps the images with that verdict (images without one
    are left out while it is set).  Sorting by a score puts images without it last.
    """
    shown = filter_samples(samples, state.categories, state.guidance)
    if state.search:
        needle = state.search.casefold()
        mask = shown["prompt"].astype(str).str.casefold().str.contains(needle, regex=False)
        mask |= shown["prompt_id"].astype(str).str.casefold().str.contains(needle, regex=False)
        shown = shown[mask]
    for key, (_, column, keep) in VERDICT_FILTERS.items():
        choice = getattr(state, key)
        if choice != "any" and column in shown.columns:
            shown = shown[[v is not None and v is not pd.NA and bool(v) == keep[choice] for v in shown[column]]]
    _, column, ascending = SORTS.get(state.sort, SORTS["prompt"])
    if column is not None and column in shown.columns:
        shown = shown.sort_values(column, ascending=ascending, kind="stable", na_position="last")
    return shown.reset_index(drop=True)


# ------------------------------------------------------------ downloads
def samples_csv(samples: pd.DataFrame) -> bytes:
    """samples.parquet as CSV: the contract's columns only (none of the dashboard's own)."""
    columns = [c for c in C.SAMPLES_TABLE.columns if c in samples.columns]
    return samples[columns].to_csv(index=False).encode("utf-8")


def browser_csv(shown: pd.DataFrame) -> bytes:
    """The filtered table as CSV: the samples' columns and the per-image scores and verdicts it has."""
    extra = [c for c in (*VERDICT_COLUMNS, "visible_score", "visible", "invisible", "neighbour_pwatermark")
             if c in shown.columns and c not in C.SAMPLES_TABLE.columns]  # fmt: skip
    columns = [c for c in C.SAMPLES_TABLE.columns if c in shown.columns] + extra
    return shown[columns].to_csv(index=False).encode("utf-8")
