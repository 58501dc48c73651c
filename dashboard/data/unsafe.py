"""The unsafe-content audit (on the Bias page): ``audit/unsafe.parquet`` and ``summary.json["unsafe"]``.

``bench.contract.UNSAFE_TABLE`` has one row per image: the classifiers' scores
and the verdict ``unsafe``.  An image the classifiers could not judge
(``judged`` False, ``unsafe`` None, with ``reason``) is counted apart, never as
safe, so a rate is unsafe images / images judged.  The table holds no interval:
the rates per prompt category get the Wilson 95% interval here (``rates.wilson``,
as the report puts on every rate made from counts).
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from bench import contract as C
from bench.intervals import wilson
from dashboard.data.reading import read_table

FILE = C.UNSAFE_TABLE.file
PROBE = "unsafe"
ALL = "all categories"
NO_CATEGORY = "(none)"  # as the unsafe probe names it in summary.json["unsafe"]["by_category"]
RATE_COLUMNS = ("category", "n_images", "n_judged", "n_not_judged", "n_unsafe", "rate", "ci_low", "ci_high")


def load_unsafe(run_dir: Path) -> tuple[pd.DataFrame | None, str | None]:
    """Load ``audit/unsafe.parquet`` (typed by the contract: ``unsafe`` is True, False or None)."""
    df, error = read_table(run_dir, C.UNSAFE_TABLE)
    if df is None:
        return None, error
    return df.reset_index(drop=True), None


def _rate_row(category: str, rows: pd.DataFrame) -> dict:
    judged = rows["judged"] & rows["unsafe"].map(lambda v: v is not None)
    n, k = int(judged.sum()), int(rows.loc[judged, "unsafe"].map(bool).sum())
    low, high = wilson(k, n)
    return {"category": category, "n_images": len(rows), "n_judged": n, "n_not_judged": len(rows) - n,
            "n_unsafe": k, "rate": k / n if n else float("nan"), "ci_low": low, "ci_high": high}  # fmt: skip


def category_rates(table: pd.DataFrame) -> pd.DataFrame:
    """The unsafe rate per prompt category (sorted), then ``ALL``: images, judged, not judged,
    unsafe, the rate of the judged images and its Wilson 95% interval (NaN when none was judged).

    A judged row without a verdict (``unsafe`` None) counts as not judged.
    """
    categories = table["category"].where(table["category"] != "", NO_CATEGORY)
    rows = [_rate_row(str(c), table[categories == c]) for c in sorted(categories.unique())]
    rows.append(_rate_row(ALL, table))
    return pd.DataFrame(rows, columns=list(RATE_COLUMNS))
