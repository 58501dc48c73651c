"""The watermark audit in the Runs page's image grid: ``audit/watermark.parquet`` and
``summary.json["watermark"]``.

The table is ``bench.contract.WATERMARK_TABLE``, typed by it (verdicts that may
be absent are True/False/None).  ``invisible_checkable`` False means the image
is too small for the dwtDct decoder, so "invisible: False" there means unchecked.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pandas as pd

from bench import contract as C
from bench.intervals import WILSON, wilson_interval
from dashboard.data.audits import probe_block
from dashboard.data.reading import read_table
from dashboard.data.text import MISSING, format_rate, to_number, truncate

FILE = C.WATERMARK_TABLE.file
PROBE = "watermark"
#: Watermark columns shown in the image grid (joined on image_id).
GRID_COLUMNS = ("visible_score", "visible", "neighbour_pwatermark", "invisible", "invisible_message",
                "invisible_checkable")  # fmt: skip
_FLAGS = ("visible", "invisible", "invisible_checkable")


def _flag(value: Any) -> bool | None:
    """A per-image verdict that may be absent (NaN after a left join): True, False or None."""
    if value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value)):
        return None
    return bool(value)


def load_watermark(run_dir: Path) -> tuple[pd.DataFrame | None, str | None]:
    """Load ``audit/watermark.parquet`` (one row per generated image), typed by the contract."""
    df, error = read_table(run_dir, C.WATERMARK_TABLE)
    if df is None:
        return None, error
    return df.reset_index(drop=True), None


def attach_watermark(samples: pd.DataFrame, watermark: pd.DataFrame | None) -> pd.DataFrame:
    """``samples`` with the watermark columns of ``GRID_COLUMNS`` joined on ``image_id``.

    Images the audit did not score get the missing values (NaN / None / "").
    Without a watermark table the samples come back unchanged.
    """
    if watermark is None:
        return samples
    scores = watermark.drop_duplicates("image_id", keep="last")[["image_id", *GRID_COLUMNS]]
    merged = samples.drop(columns=[c for c in GRID_COLUMNS if c in samples.columns]).merge(
        scores, on="image_id", how="left", validate="many_to_one"
    )
    merged["invisible_message"] = merged["invisible_message"].fillna("")
    for column in _FLAGS:
        merged[column] = [_flag(v) for v in merged[column]]
    return merged


def watermark_note(row: Any) -> str | None:
    """Plain-text watermark line for one grid image, or None when the image has no watermark scores.

    E.g. ``"visible watermark 0.91 (flagged) · invisible: 'test' · neighbours' pwatermark 0.42"``.
    """
    score = to_number(row.get("visible_score"))
    visible, invisible = _flag(row.get("visible")), _flag(row.get("invisible"))
    pwatermark = to_number(row.get("neighbour_pwatermark"))
    if score is None and visible is None and invisible is None and pwatermark is None:
        return None
    parts = []
    if score is not None or visible is not None:
        flagged = " (flagged)" if visible else ""
        parts.append(f"visible watermark {MISSING if score is None else f'{score:.2f}'}{flagged}")
    if invisible is not None and _flag(row.get("invisible_checkable")) is False:
        parts.append("invisible: not checkable (too small)")
    elif invisible is not None:
        message = str(row.get("invisible_message") or "")
        if invisible and message:
            parts.append(f"invisible: {message!r}")
        else:
            parts.append(f"invisible: {'yes' if invisible else 'none'}")
    if pwatermark is not None:
        parts.append(f"neighbours' pwatermark {pwatermark:.2f}")
    return " · ".join(parts)


#: Probe file endings dropped from the name shown.
_PROBE_SUFFIXES = (".safetensors", ".json", ".npz", ".pt", ".pth", ".pkl")


def short_probe_name(probe: Any, limit: int = 40) -> str:
    """A short name for the probe the audit recorded (a file name, possibly a path).

    The cache's names are ``<extractor key>__...__<config digest>.safetensors``:
    shown as ``"<extractor> · <digest[:8]>"``; any other name loses its folder
    and file ending and is cut to ``limit`` characters.
    """
    name = str(probe).replace("\\", "/").rsplit("/", 1)[-1]
    for suffix in _PROBE_SUFFIXES:
        if name.endswith(suffix):
            name = name[: -len(suffix)]
            break
    parts = [p for p in name.split("__") if p]
    if len(parts) >= 3:
        name = f"{parts[0]} · {parts[-1][:8]}"
    return truncate(name, limit)


def category_rates(table: pd.DataFrame) -> pd.DataFrame:
    """Visible-watermark rate per category of the images with a verdict: ``category, n, flagged, rate,
    ci_low, ci_high`` (95% Wilson interval, ``bench.intervals``), categories sorted, then an "all" row.

    ``table`` has ``category`` and ``visible`` (True/False/None, e.g. the grid of ``attach_watermark``);
    images without a verdict are not counted.
    """
    columns = ["category", "n", "flagged", "rate", "ci_low", "ci_high"]
    judged = table[[v is not None and v is not pd.NA and not (isinstance(v, float) and math.isnan(v))
                    for v in table["visible"]]]  # fmt: skip
    if judged.empty:
        return pd.DataFrame({c: pd.Series(dtype=object if c == "category" else float) for c in columns})
    flags = judged["visible"].astype(bool)
    groups = flags.groupby(judged["category"].astype(str), sort=True).agg(["size", "sum"])
    counts = pd.DataFrame({"category": list(groups.index), "n": groups["size"].to_numpy(),
                           "flagged": groups["sum"].to_numpy()})  # fmt: skip
    counts.loc[len(counts)] = ["all", len(flags), int(flags.sum())]
    counts = counts.astype({"n": "int64", "flagged": "int64"})
    counts["rate"] = counts["flagged"] / counts["n"]
    low, high = wilson_interval(counts["flagged"].to_numpy(), counts["n"].to_numpy())
    counts["ci_low"], counts["ci_high"] = low, high
    return counts[columns]


CATEGORY_RATES_METHOD = WILSON


def watermark_headline(summary: dict | None) -> str | None:
    """One line from ``summary.json["watermark"]`` for above the grid, or None without one."""
    block = probe_block(summary, PROBE)
    if block is None:
        return None
    text = (
        f"Watermark audit of {block.get('n_images', MISSING)} images: "
        f"visible watermark in {format_rate(block.get('visible_rate'))}"
    )
    details = []
    if block.get("probe"):
        details.append(f"probe {short_probe_name(block['probe'])}")
    if to_number(block.get("threshold")) is not None:
        details.append(f"threshold {float(block['threshold']):.3g}")
    if details:
        text += f" ({', '.join(details)})"
    if to_number(block.get("invisible_rate")) is not None:
        text += f"; invisible watermark decoded in {format_rate(block['invisible_rate'])}"
    elif block.get("n_invisible_checkable") == 0:
        text += "; invisible watermark not checkable (images under the decoder's minimum size)"
    if to_number(block.get("neighbour_pwatermark_mean")) is not None:
        text += f"; neighbours' mean pwatermark {float(block['neighbour_pwatermark_mean']):.2f}"
    return text + "."
