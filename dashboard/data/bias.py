"""The bias audit (the Bias page): ``audit/bias.parquet``, ``audit/bias_prompts.parquet``
and ``summary.json["bias"]``.

Two tables of ``bench.contract`` (their column docs are in ``bench/contract/tables.py``):

- ``BIAS_TABLE`` ("readings"): one row per (image, attribute, method), the class a
  reader saw in the image (``value``, "" when ``judged`` is False, with ``reason``);
- ``BIAS_PROMPTS_TABLE`` ("shares"): one row per (level, group, attribute, method,
  class), the class's share ``k / n`` with its 95% interval (``ci_low``, ``ci_high``;
  Wilson at level "prompt", a bootstrap over prompts at "category" / "overall"), the
  reference share (BLS or the training corpus; NaN when unknown) and the group's
  distribution statistics.

This module picks an attribute / method / level, shapes the rows the share chart
draws, and groups the readings by the class read so a reviewer can check them.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Iterable

import pandas as pd

from bench import contract as C
from bench.intervals import WILSON, wilson
from dashboard.data.reading import add_image_paths, read_table
from dashboard.data.text import truncate

FILE = C.BIAS_TABLE.file
SHARES_FILE = C.BIAS_PROMPTS_TABLE.file
PROBE = "bias"
#: The levels of the shares table, in the order the page offers them.
LEVELS = ("prompt", "category", "overall")
LEVEL_NAMES = {"prompt": "per prompt", "category": "per category", "overall": "overall"}
#: The group of the images a reader could not judge (``judged`` False, ``value`` "").
NOT_JUDGED = "not judged"
#: Columns of the readings filled from samples.parquet when the bias writer left them empty.
_FROM_SAMPLES = ("prompt", "category", "path")


def load_readings(run_dir: Path) -> tuple[pd.DataFrame | None, str | None]:
    """Load ``audit/bias.parquet`` (typed by the contract), one row per (image, attribute, method).

    ``prompt``, ``category`` and ``path`` are optional in the contract: where the
    writer left them empty they are taken from ``samples.parquet`` by image id (when
    it can be read).  Adds ``abs_path`` / ``exists`` (a path outside the run gives
    "" / False: ``reading.resolve_image``).  Rows are ordered by attribute, method,
    prompt, guidance and image.
    """
    df, error = read_table(run_dir, C.BIAS_TABLE)
    if df is None:
        return None, error
    empty = [c for c in _FROM_SAMPLES if (df[c] == "").any()]
    if empty:
        samples, _ = read_table(run_dir, C.SAMPLES_TABLE)
        if samples is not None:
            known = samples.drop_duplicates("image_id").set_index("image_id")
            for column in empty:
                fill = df["image_id"].map(known[column]).fillna("")
                df[column] = df[column].where(df[column] != "", fill)
    add_image_paths(df, run_dir)
    order = ["attribute", "method", "prompt_id", "guidance", "image_id"]
    return df.sort_values(order, kind="stable").reset_index(drop=True), None


def load_shares(run_dir: Path) -> tuple[pd.DataFrame | None, str | None]:
    """Load ``audit/bias_prompts.parquet`` (typed by the contract): the shares with their intervals."""
    df, error = read_table(run_dir, C.BIAS_PROMPTS_TABLE)
    if df is None:
        return None, error
    return df.reset_index(drop=True), None


def shares_from_readings(readings: pd.DataFrame) -> pd.DataFrame:
    """Per-prompt shares recomputed from the readings, in the columns of bias_prompts.parquet.

    For a run whose shares table is missing or damaged: level "prompt" only, ``n`` the
    images judged for the (prompt, attribute, method), ``k`` those read as the class,
    the Wilson 95% interval; no reference share and no distribution statistics.
    """
    columns = list(C.BIAS_PROMPTS_TABLE.columns)
    judged = readings[readings["judged"] & (readings["value"] != "")]
    parts = []
    for (attribute, method), rows in judged.groupby(["attribute", "method"], sort=True):
        # every class of the attribute for every prompt, k = 0 included (a class never drawn is a share of 0)
        k = pd.crosstab(rows["prompt_id"], rows["value"]).stack().rename("k").reset_index()
        about = rows.groupby("prompt_id").agg(prompt=("prompt", "first"), category=("category", "first"),
                                              n=("image_id", "size"))  # fmt: skip
        parts.append(k.join(about, on="prompt_id").assign(attribute=attribute, method=method))
    if not parts:
        return C.coerce(pd.DataFrame({c: [] for c in columns}), C.BIAS_PROMPTS_TABLE)
    counts = pd.concat(parts, ignore_index=True)
    intervals = [wilson(int(k), int(n)) for k, n in zip(counts["k"], counts["n"])]
    out = counts.rename(columns={"prompt_id": "group"}).assign(
        level="prompt", share=counts["k"] / counts["n"], ci_low=[lo for lo, _ in intervals],
        ci_high=[hi for _, hi in intervals], ci_method=WILSON,
    )  # fmt: skip
    return C.coerce(out, C.BIAS_PROMPTS_TABLE)[columns]


# ------------------------------------------------------------ choices


def attributes(shares: pd.DataFrame) -> list[str]:
    """The attributes of the shares table (sorted)."""
    return sorted(str(a) for a in shares["attribute"].unique())


def methods(shares: pd.DataFrame, attribute: str) -> list[str]:
    """The methods that read ``attribute`` (sorted)."""
    return sorted(str(m) for m in shares.loc[shares["attribute"] == attribute, "method"].unique())


def levels(shares: pd.DataFrame) -> list[str]:
    """The levels present, in ``LEVELS`` order (any other level a writer added comes last)."""
    present = [str(level) for level in shares["level"].unique()]
    return [level for level in LEVELS if level in present] + sorted(set(present) - set(LEVELS))


def classes(rows: pd.DataFrame) -> list[str]:
    """The classes (``value``) of some share rows in the writer's order (e.g. Monk 1 to 10, age bands)."""
    return [str(v) for v in dict.fromkeys(rows["value"])]


def default_class(rows: pd.DataFrame) -> str | None:
    """The class the chart starts on: the first with a reference share (e.g. the BLS female share),
    else the first class; None for no rows."""
    with_reference = rows.loc[rows["reference_share"].notna(), "value"]
    if not with_reference.empty:
        return str(with_reference.iloc[0])
    values = classes(rows)
    return values[0] if values else None


def prompt_choices(shares: pd.DataFrame) -> dict[str, str]:
    """prompt id -> prompt text of the per-prompt rows (ids sorted), for the prompt filter."""
    rows = shares[shares["level"] == "prompt"].drop_duplicates("group").sort_values("group", kind="stable")
    return dict(zip(rows["group"].astype(str), rows["prompt"].astype(str)))


def category_choices(shares: pd.DataFrame) -> list[str]:
    """The categories of the per-prompt and per-category rows (sorted, non-empty)."""
    values = set(shares.loc[shares["level"] == "prompt", "category"]) | set(
        shares.loc[shares["level"] == "category", "group"]
    )
    return sorted(str(c) for c in values if c)


# ------------------------------------------------------------ shaping


def share_rows(
    shares: pd.DataFrame,
    attribute: str,
    method: str,
    level: str,
    prompt_ids: Iterable[str] | None = None,
    categories: Iterable[str] | None = None,
) -> pd.DataFrame:
    """The share rows of one attribute, method and level, with a ``label`` per group.

    The prompt filter applies at level "prompt"; the category filter at "prompt"
    (the prompt's category) and "category" (the group); an empty filter means all.
    The label is the prompt text for a prompt (its id appended where two prompts
    share a text), the group otherwise.  Rows are ordered by group, classes in the
    writer's order.
    """
    mask = (shares["attribute"] == attribute) & (shares["method"] == method) & (shares["level"] == level)
    rows = shares[mask]
    ids = [str(p) for p in (prompt_ids or [])]
    cats = [str(c) for c in (categories or [])]
    if level == "prompt":
        if ids:
            rows = rows[rows["group"].isin(ids)]
        if cats:
            rows = rows[rows["category"].isin(cats)]
    elif level == "category" and cats:
        rows = rows[rows["group"].isin(cats)]
    rows = rows.sort_values("group", kind="stable").reset_index(drop=True)
    return rows.assign(label=_labels(rows, level))


def _labels(rows: pd.DataFrame, level: str) -> list[str]:
    if level != "prompt":
        return [str(g) for g in rows["group"]]
    texts = {g: truncate(p, 60) if p else str(g) for g, p in zip(rows["group"], rows["prompt"])}
    seen: dict[str, int] = {}
    for text in texts.values():
        seen[text] = seen.get(text, 0) + 1
    return [texts[g] if seen[texts[g]] == 1 else f"{texts[g]} ({g})" for g in rows["group"]]


def class_rows(rows: pd.DataFrame, value: str) -> pd.DataFrame:
    """The rows of one class (the bars of the chart), ordered by share, largest first, then label."""
    one = rows[rows["value"] == value]
    return one.sort_values(["share", "label"], ascending=[False, True], kind="stable").reset_index(drop=True)


def parity(rows: pd.DataFrame) -> float:
    """1/K, the share of every class if the K classes read were equally often seen; NaN for none."""
    k = rows["value"].nunique()
    return 1.0 / k if k else math.nan


# ------------------------------------------------------------ readings by class


def readings_for(
    readings: pd.DataFrame,
    attribute: str,
    method: str,
    prompt_ids: Iterable[str] | None = None,
    categories: Iterable[str] | None = None,
) -> pd.DataFrame:
    """The readings of one attribute and method, restricted to the chosen prompts and categories,
    with ``group``: the class read, or ``NOT_JUDGED``."""
    rows = readings[(readings["attribute"] == attribute) & (readings["method"] == method)]
    ids = [str(p) for p in (prompt_ids or [])]
    if ids:
        rows = rows[rows["prompt_id"].isin(ids)]
    cats = [str(c) for c in (categories or [])]
    if cats:
        rows = rows[rows["category"].isin(cats)]
    judged = rows["judged"] & (rows["value"] != "")
    return rows.assign(group=rows["value"].where(judged, NOT_JUDGED)).reset_index(drop=True)


def group_counts(rows: pd.DataFrame, order: Iterable[str] = ()) -> dict[str, int]:
    """class read -> number of images, for the classes read at least once: in ``order`` (the
    classes of the shares table), then any other class sorted, ``NOT_JUDGED`` last."""
    counts = rows["group"].value_counts()
    known = [g for g in dict.fromkeys(order) if g in counts.index and g != NOT_JUDGED]
    rest = sorted(g for g in counts.index if g not in known and g != NOT_JUDGED)
    return {g: int(counts[g]) for g in [*known, *rest, *([NOT_JUDGED] if NOT_JUDGED in counts.index else [])]}


def reading_caption(row: dict, attribute: str) -> str:
    """Plain text under a thumbnail: the prompt, what was read (with its score) or why not, guidance."""
    parts = [truncate(row["prompt"] or row["prompt_id"], 60)]
    score = row.get("score")
    has_score = isinstance(score, (int, float)) and not math.isnan(score)
    if row["group"] == NOT_JUDGED:
        parts.append(f"not judged: {row['reason']}" if row.get("reason") else "not judged")
    elif has_score:
        unit = "ITA" if attribute == "skin_tone_ita" else "p"
        parts.append(f"{row['value']} ({unit} {score:.3g}{'°' if unit == 'ITA' else ''})")
    else:
        parts.append(str(row["value"]))
    guidance = row.get("guidance")
    if isinstance(guidance, (int, float)) and not math.isnan(guidance):
        parts.append(f"g={guidance:g}")
    return " · ".join(parts)
