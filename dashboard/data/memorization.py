"""The memorization audit (the Memorization page): ``audit/memorization.parquet``,
``audit/memorization_prompts.parquet`` and ``summary.json["memorization"]``.

Tables come from ``bench.contract`` (``MEMORIZATION_TABLE``,
``MEMORIZATION_PROMPTS_TABLE``), typed by it: a verdict that is not
true/false is refused (a missing verdict must never read as "not a copy").
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterable

import pandas as pd

from bench import contract as C
from dashboard.data.audits import probe_block
from dashboard.data.reading import add_image_paths, read_table
from dashboard.data.text import to_number

#: The file names the page cites (sources of its numbers).
HITS_FILE = C.MEMORIZATION_TABLE.file
PROMPTS_FILE = C.MEMORIZATION_PROMPTS_TABLE.file
PROBE = "memorization"


def load_memorization(run_dir: Path) -> tuple[pd.DataFrame | None, str | None]:
    """Load ``audit/memorization.parquet``: one row per (generated image, neighbour rank).

    Adds ``abs_path``/``exists`` for the generated image and
    ``neighbour_abs_path``/``neighbour_exists`` for the saved neighbour copy
    (``neighbour_path`` is "" when the audit did not save it).  Optional
    columns a writer left out get the contract's defaults.  Rows come back
    ordered by prompt, guidance, image and rank.
    """
    df, error = read_table(run_dir, C.MEMORIZATION_TABLE)
    if df is None:
        return None, error
    add_image_paths(df, run_dir)
    add_image_paths(df, run_dir, "neighbour_path", "neighbour_")
    order = ["prompt_id", "guidance", "image_id", "rank"]
    return df.sort_values(order, kind="stable").reset_index(drop=True), None


def image_verdicts(hits: pd.DataFrame) -> pd.DataFrame:
    """One row per generated image from the (image, rank) rows of ``load_memorization``.

    The image's columns and its top-1 neighbour (lowest rank) come from the
    top-1 row; ``is_copy`` is True when *any* retrieved neighbour is confirmed
    a copy (kNN ranks by CLIP cosine, the copy distance confirms, so the copy
    need not be the top-1); ``copy_rank`` is the lowest such rank (-1: none)
    and ``n_neighbours`` the number of neighbours retrieved.
    """
    top = hits.loc[hits.groupby("image_id", sort=False)["rank"].idxmin()].set_index("image_id")
    copy_ranks = hits[hits["is_copy"]].groupby("image_id")["rank"].min()
    verdicts = top.assign(
        is_copy=top.index.isin(copy_ranks.index),
        copy_rank=copy_ranks.reindex(top.index).fillna(-1).astype("int64"),
        n_neighbours=hits.groupby("image_id").size().reindex(top.index).astype("int64"),
    ).reset_index()
    return verdicts.sort_values(["prompt_id", "guidance", "image_id"], kind="stable").reset_index(drop=True)


def featured_neighbours(verdicts: pd.DataFrame, hits: pd.DataFrame) -> pd.DataFrame:
    """The neighbour each image's pair shows, one row per row of ``verdicts`` (same order), from ``hits``.

    The confirmed copy (the lowest rank whose ``is_copy`` is true) when the image is a copy, else the
    top-1 by CLIP cosine: a "copy" badge then always sits on the neighbour that is the copy.  Columns are
    the hit's neighbour columns (``rank``, ``neighbour_*``, ``clip_cosine``, ``copy_distance``, ``is_copy``
    of that neighbour).
    """
    wanted = [int(r) if bool(c) else int(t) for r, c, t in zip(verdicts["copy_rank"], verdicts["is_copy"],
                                                            verdicts["rank"])]  # fmt: skip
    keyed = hits.set_index(["image_id", "rank"])
    rows = keyed.loc[list(zip(verdicts["image_id"], wanted))].reset_index()
    columns = ["image_id", "rank", "neighbour_id", "neighbour_key", "neighbour_caption", "neighbour_path",
               "neighbour_abs_path", "neighbour_exists", "clip_cosine", "copy_distance", "relative_distance",
               "is_copy"]  # fmt: skip
    return rows[[c for c in columns if c in rows.columns]].reset_index(drop=True)


def download_tables(run_dir: Path) -> list[tuple[str, Path]]:
    """``(file name, path)`` of the memorization tables the run has (for the page's CSV downloads)."""
    tables = (C.MEMORIZATION_TABLE, C.MEMORIZATION_PROMPTS_TABLE)
    return [(t.file, t.path(run_dir)) for t in tables if t.path(run_dir).is_file()]


def filter_verdicts(
    verdicts: pd.DataFrame,
    copies_only: bool = False,
    categories: Iterable[str] | None = None,
    prompt_ids: Iterable[str] | None = None,
) -> pd.DataFrame:
    """Images matching the filters; an empty selection means "no filter" on that column."""
    mask = pd.Series(True, index=verdicts.index)
    if copies_only:
        mask &= verdicts["is_copy"]
    cats = [str(c) for c in (categories or [])]
    if cats:
        mask &= verdicts["category"].isin(cats)
    ids = [str(p) for p in (prompt_ids or [])]
    if ids:
        mask &= verdicts["prompt_id"].isin(ids)
    return verdicts[mask].reset_index(drop=True)


def prompt_copy_rates(verdicts: pd.DataFrame) -> pd.DataFrame:
    """Copy rate per prompt, ``n_copies / n_images``, in the columns of memorization_prompts.parquet."""
    columns = list(C.MEMORIZATION_PROMPTS_TABLE.columns)
    if verdicts.empty:
        return pd.DataFrame({c: pd.Series(dtype=object) for c in columns})
    table = verdicts.groupby("prompt_id", sort=True).agg(
        prompt=("prompt", "first"), category=("category", "first"),
        n_images=("image_id", "size"), n_copies=("is_copy", "sum"),
    ).reset_index()  # fmt: skip
    table["n_copies"] = table["n_copies"].astype("int64")
    table["copy_rate"] = table["n_copies"] / table["n_images"]
    return table[columns]


def load_memorization_score(run_dir: Path) -> tuple[pd.DataFrame | None, str | None]:
    """Wen et al.'s index-free score per prompt (``t2i-audit memorization-score --run``), highest first;
    ``(None, None)`` when the run has none, ``(None, error)`` when it cannot be read."""
    if not C.MEMORIZATION_SCORE_TABLE.path(run_dir).is_file():
        return None, None
    df, error = read_table(run_dir, C.MEMORIZATION_SCORE_TABLE)
    if df is None:
        return None, error
    return df.sort_values(["score", "prompt_id"], ascending=[False, True], kind="stable").reset_index(drop=True), None


def load_memorization_prompts(run_dir: Path) -> tuple[pd.DataFrame | None, str | None]:
    """Load ``audit/memorization_prompts.parquet`` (copy rate per prompt), sorted by prompt id."""
    df, error = read_table(run_dir, C.MEMORIZATION_PROMPTS_TABLE)
    if df is None:
        return None, error
    return df.sort_values("prompt_id", kind="stable").reset_index(drop=True), None


def memorization_headline(summary: dict | None, verdicts: pd.DataFrame | None) -> dict | None:
    """Headline numbers of the memorization audit.

    From ``summary.json["memorization"]`` when present (``source`` =
    "summary.json"); otherwise recomputed from the per-image verdicts
    (``source`` = the parquet file).  None when neither exists.  Keys:
    n_images, n_copies, copy_rate, index, method, thresholds (dict), source.

    ``thresholds`` has the writer's keys (``audit/probes/memorization/run.py``):
    ``clip_cosine``, ``copy_distance`` and ``k`` (candidates per image); recomputed,
    ``k`` is the most neighbours any image has in the table.
    """
    block = probe_block(summary, PROBE)
    if block is not None:
        thresholds = block.get("thresholds")
        return {
            "n_images": block.get("n_images"), "n_copies": block.get("n_copies"),
            "copy_rate": to_number(block.get("copy_rate")), "index": block.get("index"),
            "method": block.get("method"), "thresholds": thresholds if isinstance(thresholds, dict) else {},
            "source": C.SUMMARY,
        }  # fmt: skip
    if verdicts is None or verdicts.empty:
        return None
    n_images, n_copies = len(verdicts), int(verdicts["is_copy"].sum())
    thresholds: dict = {
        name: float(verdicts[column].dropna().iloc[0])
        for name, column in (("clip_cosine", "threshold_cosine"), ("copy_distance", "threshold_distance"))
        if verdicts[column].notna().any()
    }
    if "n_neighbours" in verdicts.columns:
        thresholds["k"] = int(verdicts["n_neighbours"].max())
    methods = [m for m in dict.fromkeys(verdicts["method"]) if m]
    return {
        "n_images": n_images, "n_copies": n_copies, "copy_rate": n_copies / n_images, "index": None,
        "method": ", ".join(methods) or None, "thresholds": thresholds, "source": HITS_FILE,
    }  # fmt: skip


def headline_mismatch(headline: dict, verdicts: pd.DataFrame) -> str | None:
    """A note when summary.json's counts disagree with memorization.parquet (a stale summary), else None."""
    if headline.get("source") != C.SUMMARY:
        return None
    counted = {"n_images": len(verdicts), "n_copies": int(verdicts["is_copy"].sum())}
    differ = [f"{k} {headline.get(k)} vs {v}" for k, v in counted.items() if headline.get(k) != v]
    if not differ:
        return None
    return f"{C.SUMMARY} and {HITS_FILE} disagree ({'; '.join(differ)}); re-run the audit to refresh them"
