"""Guidance trade-off curves: generate (or reuse) each guidance scale, score it, plot FD against CLIP score.

The curve is the one of the GLIDE, Imagen and Stable Diffusion papers: each point
is one classifier-free guidance scale; raising guidance usually buys text
alignment (CLIP score, compositional accuracy) at the cost of diversity and
fidelity (FD).  ``sweep.parquet`` has one row per guidance; ``sweep.png`` is the plot.
"""

from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd

from bench import contract as C
from bench import distributed
from bench.atomic import atomic_path
from bench.errors import UserError
from bench.intervals import error_bars
from bench.generate import generate
from bench.runspec import RunSpec
from bench.score import ScoreSpec, score_run

SWEEP = C.SWEEP
SWEEP_PLOT = C.SWEEP_PLOT
ALIGNMENT_METRICS = ("CLIPScore", "compositional_accuracy")  # x axis, first one present


def sweep_table(metrics: pd.DataFrame, guidance: list[float]) -> pd.DataFrame:
    """One row per guidance: the headline (subset 'all') value of every metric, then the metrics' 95% intervals
    as ``<metric>_ci_low`` / ``<metric>_ci_high`` (``C.INTERVAL_SUFFIXES``) where metrics.parquet has them."""
    rows = metrics[(metrics.subset == C.ALL_SUBSET) & metrics.guidance.notna()]
    table = rows.pivot_table(index="guidance", columns="metric", values="value", aggfunc="first")
    table = table.reindex(sorted(guidance))
    names = list(table.columns)
    for column, suffix in zip(("ci_low", "ci_high"), C.INTERVAL_SUFFIXES):
        if column not in rows.columns or rows[column].isna().all():
            continue
        bound = rows.pivot_table(index="guidance", columns="metric", values=column, aggfunc="first", dropna=False)
        bound = bound.reindex(index=table.index, columns=names)
        table = table.join(bound.add_suffix(suffix))
    table = table.reset_index()
    table.columns.name = None
    return table


def _interval_err(table: pd.DataFrame, column: str):
    """Asymmetric error bars (2 x rows) of a column from its interval columns, or None."""
    low, high = (f"{column}{s}" for s in C.INTERVAL_SUFFIXES)
    if low not in table.columns or high not in table.columns:
        return None
    return error_bars(table[column], table[low], table[high])



def fd_column(table: pd.DataFrame) -> str | None:
    return next((c for c in table.columns if c == "FID" or c.startswith("FD_")), None)


def plot_sweep(table: pd.DataFrame, path: Path, title: str) -> Path | None:
    """FD (y) against the first alignment metric (x), points labelled by guidance."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    y = fd_column(table)
    x = next((c for c in ALIGNMENT_METRICS if c in table.columns), None)
    if y is None or x is None:
        return None
    fig, (ax, by_w) = plt.subplots(1, 2, figsize=(10, 4.2), dpi=120, gridspec_kw={"width_ratios": [1.3, 1]})
    ax.plot(table[x], table[y], "-o", color="#1f77b4")
    xerr, yerr = _interval_err(table, x), _interval_err(table, y)
    if xerr is not None or yerr is not None:
        ax.errorbar(table[x], table[y], xerr=xerr, yerr=yerr, fmt="none", ecolor="#1f77b4", alpha=0.5, capsize=3,
                    label="95% interval")
        ax.legend(fontsize=8, loc="best")
    for i, (_, r) in enumerate(table.iterrows()):
        if not (math.isnan(r[x]) or math.isnan(r[y])):
            # Alternate above / below the point: neighbouring scales often land close together.
            ax.annotate(f"w={r.guidance:g}", (r[x], r[y]), textcoords="offset points",
                        xytext=(5, 4) if i % 2 == 0 else (5, -11), fontsize=8)
    ax.set_xlabel(f"{x} (higher is better)")
    ax.set_ylabel(f"{y} (lower is better)")
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)

    # Right: the alignment metrics against the guidance scale itself.
    by_w.errorbar(table.guidance, table[x], yerr=_interval_err(table, x), fmt="-o", color="#1f77b4", capsize=3,
                  label=x)
    by_w.set_xlabel("guidance scale w")
    by_w.set_ylabel(x, color="#1f77b4")
    by_w.grid(alpha=0.3)
    if "compositional_accuracy" in table.columns and x != "compositional_accuracy":
        acc = by_w.twinx()
        acc.errorbar(table.guidance, table["compositional_accuracy"], yerr=_interval_err(table, "compositional_accuracy"),
                     fmt="-s", color="#d62728", capsize=3)
        acc.set_ylabel("compositional_accuracy", color="#d62728")
    by_w.set_title("alignment against guidance", fontsize=10)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)
    return path


def run_sweep(spec: RunSpec, score: ScoreSpec, progress: bool = True) -> pd.DataFrame:
    if len(spec.guidance) < 2:
        raise UserError("a sweep needs at least two guidance scales, e.g. --guidance 1,1.5,2,3,4,5,7.5,10")
    generate(spec, progress=progress)
    metrics = score_run(replace(score, run=spec.out), progress=progress)
    if distributed.current().rank != 0:  # several processes (docs/scale.md): rank 0 writes the sweep
        return metrics
    table = sweep_table(metrics, list(spec.guidance))
    table.insert(1, "guidance_formulation", spec.guidance_formulation)
    out = Path(spec.out)
    C.write_table(out, C.SWEEP_TABLE, table)
    plot_sweep(table, out / SWEEP_PLOT, f"{spec.model} on {spec.prompts}: guidance sweep ({spec.guidance_formulation})")
    return table
