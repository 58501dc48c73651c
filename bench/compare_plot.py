"""``compare.png``: the compared runs' guidance curves overlaid with 95% interval bars, and the differences.

Left panels: each headline metric against the guidance scale (the diffusers CFG scale when the runs'
guidance formulations differ), one line per run, bars from metrics.parquet's ci_low/ci_high.  Right panel:
every overall difference B - A with its interval (a forest plot); filled markers are significant.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from bench import contract as C
from bench.atomic import atomic_path
from bench.compare import CompareResult, Side
from bench.intervals import error_bars

CURVE_METRICS = 3  # at most this many metrics get a curve panel (headline metrics first)
_PREFERRED = ("compositional_accuracy", "CLIPScore", "FID")


def _curves(run: Path, on_cfg_scale: bool) -> pd.DataFrame | None:
    """The run's rows per guidance scale (metric, x, value, ci_low, ci_high); None when not scored."""
    if not C.METRICS_TABLE.path(run).is_file():
        return None
    m = C.upgrade_metric_names(C.read_table(run, C.METRICS_TABLE))
    m = m[(m.subset == C.ALL_SUBSET) & m.guidance.notna()].copy()
    if on_cfg_scale:
        samples = C.read_table(run, C.SAMPLES_TABLE)
        to_cfg = dict(zip(samples.guidance, samples.cfg_scale))
        m["guidance"] = m.guidance.map(lambda g: to_cfg.get(g, g))
    return m.rename(columns={"guidance": "x"})[["metric", "x", "value", "ci_low", "ci_high"]]


def _yerr(rows: pd.DataFrame) -> np.ndarray | None:
    if not np.isfinite(rows.ci_low.to_numpy(float)).any():
        return None
    return error_bars(rows.value, rows.ci_low, rows.ci_high)


def plot_compare(result: CompareResult, sides: list[Side], path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    on_cfg = any("guidance formulations" in n for n in result.notes)
    runs: dict[Path, list[Side]] = {}
    for side in sides:  # one curve per run: sides that are scales of one run are points on it
        runs.setdefault(side.run, []).append(side)
    curves = {run: _curves(run, on_cfg) for run in runs}
    names = sorted({m for c in curves.values() if c is not None for m in set(c.metric)},
                   key=lambda m: (_PREFERRED.index(m) if m in _PREFERRED else len(_PREFERRED), m))
    names = [m for m in names if m in set(result.table.metric)][:CURVE_METRICS]
    overall = result.table[result.table.subset == C.ALL_SUBSET].reset_index(drop=True)
    deltas = list(dict.fromkeys(overall.metric))
    fig = plt.figure(figsize=(4.2 * len(names) + 5.5, max(4.0, 0.55 * len(overall) + 1.2)), dpi=110)
    grid = fig.add_gridspec(1, len(names) + 1, width_ratios=[1] * len(names) + [1.3])
    for col, metric in enumerate(names):
        ax = fig.add_subplot(grid[0, col])
        for i, (run, c) in enumerate(curves.items()):
            if c is None:
                continue
            rows = c[c.metric == metric].sort_values("x")
            if not len(rows):
                continue
            ax.errorbar(rows.x, rows.value, yerr=_yerr(rows), fmt="-o", capsize=3, label=run.name,
                        color=f"C{i}", alpha=0.9)
            for side in runs[run]:  # the compared scales, ringed
                at = rows[np.isclose(rows.x, side.guidance)] if side.guidance is not None else rows.iloc[:0]
                ax.plot(at.x, at.value, "o", ms=12, mfc="none", mec=f"C{i}")
                for r in at.itertuples():
                    ax.annotate(side.label, (r.x, r.value), textcoords="offset points", xytext=(6, 6), fontsize=7)
        ax.set_xlabel("diffusers CFG scale" if on_cfg else "guidance scale w")
        ax.set_title(f"{metric} (95% interval bars)", fontsize=9)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="best")
    # One small forest plot per metric (each on its own scale): B - A for every B.
    forest = grid[0, -1].subgridspec(max(len(deltas), 1), 1, hspace=0.9)
    for k, metric in enumerate(deltas):
        ax = fig.add_subplot(forest[k, 0])
        rows = overall[overall.metric == metric].reset_index(drop=True)
        ys = np.arange(len(rows))[::-1]
        for y, r in zip(ys, rows.itertuples()):
            color = "#d62728" if r.significant else "#7f7f7f"
            ax.errorbar([r.delta], [y], xerr=[[max(r.delta - r.ci_low, 0)], [max(r.ci_high - r.delta, 0)]],
                        fmt="o", capsize=3, color=color, markerfacecolor=color if r.significant else "white")
        ax.axvline(0, color="black", lw=0.8)
        ax.set_yticks(ys)
        ax.set_yticklabels([f"{r.run_b} - {r.run_a}" for r in rows.itertuples()], fontsize=6)
        ax.set_ylim(-0.7, len(rows) - 0.3)
        ax.set_title(metric, fontsize=7, loc="left", pad=2)
        ax.tick_params(axis="x", labelsize=6)
        ax.grid(alpha=0.3, axis="x")
        if k == 0:
            ax.text(1.0, 1.6, "difference B - A, 95% interval (red: significant)", transform=ax.transAxes,
                    ha="right", fontsize=8)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", bbox_inches="tight")
    plt.close(fig)
    return path


def save_comparison(result: CompareResult, sides: list[Side], out: Path) -> tuple[Path, Path]:
    """Write ``compare.parquet`` and ``compare.png`` into the folder ``out`` (made if missing)."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    C.write_table(out, C.COMPARE_TABLE, result.table)
    return out / C.COMPARE, plot_compare(result, sides, out / C.COMPARE_PLOT)
