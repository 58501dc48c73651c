"""A run's images (``samples.parquet``, ``bench.contract.SAMPLES_TABLE``): loading, filtering, paging."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Iterable

import pandas as pd

from bench import contract as C
from dashboard.data.reading import add_image_paths, read_table


def load_samples(run_dir: Path) -> tuple[pd.DataFrame | None, str | None]:
    """Load ``samples.parquet`` (typed by the contract) and add ``abs_path`` and ``exists`` columns.

    ``abs_path`` is the image's absolute path (the contract stores paths
    relative to the run dir; one outside it gives ""); ``exists`` says whether
    that file is on disk, so a partly written run can be shown as such.
    """
    df, error = read_table(run_dir, C.SAMPLES_TABLE)
    if df is None:
        return None, error
    return add_image_paths(df, run_dir).reset_index(drop=True), None


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
