"""The report's charts and thumbnails, as PNG bytes (matplotlib's Agg canvas; no pyplot, no global state).

``interval_chart`` is the one chart type: one row per group, a point estimate with its
95% interval bar, an optional reference marker (BLS, the corpus), a label with the
counts.  Rates and shares are drawn on a fixed [0, 1] axis so that the charts of two
runs set side by side (``--compare``) read on the same scale; differences on [-1, 1]
around a zero line.
"""

from __future__ import annotations

import io
import math
from pathlib import Path
from typing import Sequence

#: Rows a chart shows at most (the caller says which rows when it cuts).
MAX_ROWS = 24
#: Longest side of an image thumbnail, px.
THUMB_SIDE = 160


def _nan(x) -> float:
    try:
        v = float(x)
    except (TypeError, ValueError):
        return math.nan
    return v


def interval_chart(labels: Sequence[str], estimate: Sequence[float], low: Sequence[float], high: Sequence[float],
                   *, title: str, xlabel: str, reference: Sequence[float] | None = None,
                   reference_label: str = "reference", annotations: Sequence[str] | None = None,
                   difference: bool = False, width: float = 6.4) -> bytes:
    """A dot-and-interval chart, one row per label (top to bottom in the order given), as PNG bytes."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    total = len(labels)
    labels = [str(x) for x in labels][:MAX_ROWS]
    if total > MAX_ROWS:
        title = f"{title} (first {MAX_ROWS} of {total})"
    rows = len(labels)
    est = [_nan(x) for x in estimate][:rows]
    lo = [_nan(x) for x in low][:rows]
    hi = [_nan(x) for x in high][:rows]
    fig = Figure(figsize=(width, 0.9 + 0.32 * max(rows, 1)), dpi=90)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    ys = list(range(rows))[::-1]
    for y, e, a, b in zip(ys, est, lo, hi):
        if not (math.isnan(a) or math.isnan(b)):
            ax.plot([a, b], [y, y], color="#1f5f99", linewidth=2.2, solid_capstyle="butt")
            ax.plot([a, a], [y - 0.18, y + 0.18], color="#1f5f99", linewidth=1.2)
            ax.plot([b, b], [y - 0.18, y + 0.18], color="#1f5f99", linewidth=1.2)
        if not math.isnan(e):
            ax.plot([e], [y], "o", color="#0b2f4f", markersize=5, zorder=3)
    if reference is not None:
        ref = [_nan(x) for x in reference][:rows]
        pts = [(r, y) for r, y in zip(ref, ys) if not math.isnan(r)]
        if pts:
            ax.plot([p[0] for p in pts], [p[1] for p in pts], "D", color="#c0392b", markersize=5, zorder=4,
                    fillstyle="none", markeredgewidth=1.5)
            # the key sits in the axis label: a legend box would cover points or the title
            xlabel = f"{xlabel}    \u25c7 {reference_label}"
    if difference:
        ax.axvline(0.0, color="#555555", linewidth=0.8)
        ax.set_xlim(-1.03, 1.03)
    else:
        ax.set_xlim(-0.02, 1.02)
    if annotations is not None:
        for y, text in zip(ys, list(annotations)[:rows]):
            ax.annotate(str(text), xy=(1.0, y), xycoords=("axes fraction", "data"), xytext=(4, 0),
                        textcoords="offset points", va="center", fontsize=7, color="#333333")
    ax.set_yticks(ys)
    ax.set_yticklabels([_short(t) for t in labels], fontsize=8)
    ax.set_ylim(-0.7, rows - 0.3)
    ax.set_xlabel(xlabel, fontsize=8)
    ax.tick_params(axis="x", labelsize=7)
    ax.grid(axis="x", color="#dddddd", linewidth=0.6)
    ax.set_axisbelow(True)
    ax.set_title(_short(title, 80), fontsize=9)
    if not rows:
        ax.text(0.5, 0.5, "no data", ha="center", va="center", transform=ax.transAxes)
    fig.tight_layout()
    if annotations is not None:
        fig.subplots_adjust(right=min(fig.subplotpars.right, 0.80))
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()


def _short(text: str, limit: int = 38) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def thumbnail(path: str | Path, side: int = THUMB_SIDE) -> bytes | None:
    """A downscaled PNG of an image file (longest side ``side`` px; small images are kept as they are);
    None when the file is missing or unreadable."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            im.load()
            im = im.convert("RGB")
    except (OSError, UnidentifiedImageError, ValueError):
        return None
    im.thumbnail((side, side), Image.Resampling.LANCZOS)
    buf = io.BytesIO()
    im.save(buf, format="PNG", optimize=True)
    return buf.getvalue()


def png_file(path: str | Path, max_width: int = 900) -> bytes | None:
    """An existing PNG chart (e.g. sweep.png), downscaled to ``max_width`` px wide; None when unreadable."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            im.load()
            im = im.convert("RGBA") if im.mode in ("RGBA", "LA", "P") else im.convert("RGB")
    except (OSError, UnidentifiedImageError, ValueError):
        return None
    if im.width > max_width:
        im = im.resize((max_width, round(im.height * max_width / im.width)), Image.Resampling.LANCZOS)
    buf = io.BytesIO()
    im.save(buf, format="PNG", optimize=True)
    return buf.getvalue()
