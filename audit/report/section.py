"""What one section of the societal-risk report holds: ``ReportSection`` and its parts.

A section is data, not markup: ``audit.report.render`` turns it into HTML (Jinja2,
autoescaped) and markdown.  Every part carries plain values (numbers, strings,
DataFrames, PNG bytes), so a probe's ``report_section`` hook builds one without
knowing how the report is drawn:

    ReportSection(
        key="toy", title="Toy brightness", status="ok",
        headline=[Headline.rate("bright images", k=3, n=40, higher_is_better=False)],
        tables=[TableBlock(frame, "the brightest images")],
        figures=[Figure(png_bytes, "bright share by category (Wilson 95% bars)", key="by-category")],
        pairs=[ImagePair(generated_png, neighbour_png, "prompt ... / neighbour ...")],
        notes=["..."], limitations=["..."],
    )

A section whose probe has not been run is ``ReportSection.not_run(key, title, command)``.
``counts`` (``CountsBlock``) are the per-group counts behind a section's rates, which the
report compares between runs (``--compare``) with an interval on each difference.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from bench.intervals import WILSON, wilson

OK = "ok"
NOT_RUN = "not run"


def anchor(text: str) -> str:
    """An HTML id from any text: lower-case letters, digits and dashes."""
    return re.sub(r"[^a-z0-9]+", "-", str(text).lower()).strip("-") or "section"


def fmt_number(value: Any, digits: int = 3) -> str:
    """A number as the report prints it: 0.123, 12.35, 1234, 1.2e-05; '' for None/NaN; text as is."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return ""
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        if value == int(value) and abs(value) < 1e6:
            return str(int(value)) if abs(value) >= 1 else f"{value:.{digits}f}"
        if abs(value) >= 1000:
            return f"{value:.0f}"
        if abs(value) >= 1:
            return f"{value:.{max(digits - 1, 1)}f}"
        if abs(value) >= 10 ** -digits:
            return f"{value:.{digits}f}"
        return f"{value:.2g}"
    try:  # numpy scalars
        import numpy as np

        if isinstance(value, np.generic):
            return fmt_number(value.item(), digits)
    except ImportError:  # pragma: no cover
        pass
    return str(value)


def fmt_interval(low: float | None, high: float | None, digits: int = 3) -> str:
    if low is None or high is None or (isinstance(low, float) and math.isnan(low)) or \
            (isinstance(high, float) and math.isnan(high)):
        return ""
    return f"[{fmt_number(float(low), digits)}, {fmt_number(float(high), digits)}]"


@dataclass
class Headline:
    """One headline number of a section.

    ``kind`` is "rate" (a share in [0, 1]; ``k`` of ``n`` when it comes from counts),
    "number" (a score, a mean) or "text".  ``low``/``high`` is its 95% interval and
    ``interval`` says which; ``higher_is_better`` gives the direction (None: neither).
    """

    label: str
    value: Any
    n: int | None = None
    k: int | None = None
    low: float | None = None
    high: float | None = None
    interval: str = ""
    kind: str = "rate"
    higher_is_better: bool | None = None
    note: str = ""
    #: False when the runs' difference is shown elsewhere with a better interval (bias shares: a bootstrap
    #: over prompts), so the headline table does not show a second, Newcombe, interval for it.
    differ: bool = True

    @classmethod
    def rate(cls, label: str, k: int, n: int, higher_is_better: bool | None = None, note: str = "") -> "Headline":
        """A rate k/n with its Wilson score 95% interval."""
        k, n = int(k), int(n)
        low, high = wilson(k, n)
        return cls(label, k / n if n else math.nan, n=n, k=k, low=low, high=high, interval=WILSON if n else "",
                   kind="rate", higher_is_better=higher_is_better, note=note)

    @property
    def value_text(self) -> str:
        if self.kind == "text":
            return "" if self.value is None else str(self.value)
        return fmt_number(self.value)

    @property
    def counts_text(self) -> str:
        if self.k is not None and self.n is not None:
            return f"{self.k} of {self.n}"
        return "" if self.n is None else f"N = {self.n}"

    @property
    def interval_text(self) -> str:
        return fmt_interval(self.low, self.high)

    @property
    def direction_text(self) -> str:
        if self.higher_is_better is None:
            return ""
        return "higher is better" if self.higher_is_better else "lower is better"

    @property
    def comparable(self) -> bool:
        """Two runs' values of this row can be differenced with Newcombe's interval."""
        return self.differ and self.kind == "rate" and self.k is not None and self.n is not None and self.n > 0


@dataclass
class TableBlock:
    """A table to show: ``frame`` (already cut to what is worth showing), a caption, and how many
    rows the full table had (``total_rows``; None when ``frame`` is the whole table)."""

    frame: pd.DataFrame
    caption: str
    total_rows: int | None = None
    key: str = ""


@dataclass
class Figure:
    """A chart (PNG bytes) with its caption; ``key`` matches the same chart of other runs (--compare)."""

    png: bytes
    caption: str
    key: str = ""


@dataclass
class ImagePair:
    """A generated image beside the training image it resembles (thumbnails, PNG bytes)."""

    generated: bytes
    neighbour: bytes
    caption: str
    generated_label: str = "generated"
    neighbour_label: str = "training neighbour"


@dataclass
class Thumbnail:
    png: bytes
    caption: str


@dataclass
class CountsBlock:
    """The counts behind a section's rates, for the differences between runs (--compare).

    ``frame`` has columns ``item`` (what the rate is of, e.g. "gender = female (clip)"),
    ``cluster`` (the unit resampled, e.g. the prompt id; "" when there is none), ``n`` and ``k``.
    ``method`` is "newcombe" (items summed over clusters, images independent) or
    "cluster-bootstrap" (pooled shares, clusters resampled).
    """

    key: str
    caption: str
    frame: pd.DataFrame
    method: str = "newcombe"


@dataclass
class ReportSection:
    key: str
    title: str
    status: str = OK
    description: str = ""
    headline: list[Headline] = field(default_factory=list)
    tables: list[TableBlock] = field(default_factory=list)
    figures: list[Figure] = field(default_factory=list)
    pairs: list[ImagePair] = field(default_factory=list)
    thumbnails: list[Thumbnail] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    limitations: list[str] = field(default_factory=list)
    command: str | None = None
    counts: list[CountsBlock] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.key = anchor(self.key)
        if self.status not in (OK, NOT_RUN):
            raise ValueError(f"ReportSection.status must be {OK!r} or {NOT_RUN!r}, got {self.status!r}")

    @classmethod
    def not_run(cls, key: str, title: str, command: str, description: str = "", note: str = "") -> "ReportSection":
        return cls(key=key, title=title, status=NOT_RUN, description=description, command=command,
                   notes=[note] if note else [])

    @property
    def ran(self) -> bool:
        return self.status == OK

    @property
    def has_content(self) -> bool:
        """Anything to show under the run's own heading (beyond the headline and figures shown per group)."""
        return bool(self.tables or self.pairs or self.thumbnails or self.notes)
