"""Runs side by side (the Compare page): sides, per-prompt verdicts, the image grid, guidance curves.

A *side* is a run, optionally at one guidance scale: labelled ``"name"`` or
``"name@7.5"`` as ``bench.compare.Side.label`` labels it, and kept in the URL in
that form (``?side=demo&side=rival@7.5``).  The first side is A; every other
side is compared with it.

Per-image values come from ``image_scores.parquet`` (``bench.contract.IMAGE_SCORES_TABLE``,
long format: one row per image and per-image metric).  The detector's verdict is
``compositional_accuracy`` (1.0 right, 0.0 wrong per image); a prompt is *right*
on a side when the mean verdict of its images on that side (at the side's
guidance scale, or over all scales) is at least ``RIGHT_AT``.

Pure functions of pandas and ``bench.contract``; the statistics themselves
(paired differences, significance) are ``bench.compare``'s, called by the page.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

import pandas as pd

from bench import contract as C
from dashboard.data import metrics as M
from dashboard.data.reading import file_stamp, read_table

VERDICT_METRIC = "compositional_accuracy"  # the detector's per-image verdict, 1.0 / 0.0
CLIP_METRIC = "CLIPScore"
RIGHT_AT = 0.5  # a prompt is right on a side when its images' mean verdict is at least this
VERDICT_CHOICES = ("any", "right", "wrong")


@dataclass(frozen=True)
class SideChoice:
    """One side of a comparison: a run by name, at one guidance scale or (None) all of them."""

    run: str
    guidance: float | None = None

    @property
    def label(self) -> str:
        """``"name"`` or ``"name@7.5"`` (``bench.compare.Side.label``'s form)."""
        return self.run if self.guidance is None else f"{self.run}@{self.guidance:g}"


def parse_side(text: str) -> SideChoice:
    """The side a label names: ``"rival@7.5"`` is run "rival" at 7.5; a tail that is no number is part of the name."""
    name, at, tail = str(text).rpartition("@")
    if at and name:
        try:
            guidance = float(tail)
        except ValueError:
            return SideChoice(str(text))
        if math.isfinite(guidance):
            return SideChoice(name, guidance)
    return SideChoice(str(text))


def side_options(runs: Sequence[tuple[str, Sequence[float]]]) -> list[str]:
    """Every side a user may pick: each run (all scales), then the run at each of its guidance scales."""
    options: list[str] = []
    for name, scales in runs:
        options.append(name)
        options += [SideChoice(name, float(g)).label for g in scales]
    return options


def default_sides(runs: Sequence[tuple[str, Sequence[float]]]) -> list[str]:
    """The sides to start with: the first two runs (all scales), else one run at its lowest and highest scale."""
    if len(runs) >= 2:
        return [runs[0][0], runs[1][0]]
    if runs and len(runs[0][1]) >= 2:
        name, scales = runs[0]
        return [SideChoice(name, float(min(scales))).label, SideChoice(name, float(max(scales))).label]
    return [runs[0][0]] if runs else []


def load_image_scores(run_dir: Path) -> tuple[pd.DataFrame | None, str | None]:
    """``image_scores.parquet`` typed by the contract, or ``(None, error)``."""
    return read_table(run_dir, C.IMAGE_SCORES_TABLE)


def run_stamps(run_dir: Path) -> tuple:
    """The file stamps of what a comparison reads of a run (samples, metrics, image scores, sweep)."""
    return tuple(file_stamp(t.path(run_dir)) for t in (C.SAMPLES_TABLE, C.METRICS_TABLE, C.IMAGE_SCORES_TABLE,
                                                       C.SWEEP_TABLE))  # fmt: skip


def curve_table(run_dir: Path) -> tuple[pd.DataFrame | None, str | None, str | None]:
    """The run's sweep-shaped table for guidance curves: ``(table, source file, None)``, from sweep.parquet
    (with its interval columns) else rebuilt from metrics.parquet; ``(None, None, error)`` with neither."""
    sweep, _ = M.load_sweep(run_dir)
    if sweep is not None:
        return sweep, C.SWEEP, None
    metrics, error = M.load_metrics(run_dir)
    if metrics is None:
        return None, None, error
    return M.sweep_from_metrics(metrics), C.METRICS, None


def at_guidance(frame: pd.DataFrame, guidance: float | None) -> pd.DataFrame:
    """The rows of ``frame`` at one guidance scale (all rows for None)."""
    if guidance is None:
        return frame
    return frame[[isinstance(g, float) and math.isclose(g, guidance) for g in frame["guidance"].astype(float)]]


def prompt_verdicts(scores: pd.DataFrame | None, guidance: float | None,
                    metric: str = VERDICT_METRIC) -> pd.Series:
    """prompt_id -> mean per-image verdict on one side (its guidance scale, or all); prompts without one are absent."""
    if scores is None or scores.empty:
        return pd.Series(dtype=float)
    rows = at_guidance(scores[scores["metric"] == metric], guidance)
    return rows.groupby("prompt_id", sort=True)["value"].mean()


def verdict_word(mean: float | None) -> str:
    """ "right" (mean verdict >= ``RIGHT_AT``), "wrong", or "" when the side has no verdict for the prompt."""
    if mean is None or (isinstance(mean, float) and math.isnan(mean)):
        return ""
    return "right" if mean >= RIGHT_AT else "wrong"


def prompts_of(samples: Iterable[pd.DataFrame | None]) -> pd.DataFrame:
    """The prompts of the sides (``prompt_id, prompt, category``), each once (first side that has it), by id."""
    frames = [s[["prompt_id", "prompt", "category"]] for s in samples if s is not None and not s.empty]
    if not frames:
        return pd.DataFrame({c: pd.Series(dtype=str) for c in ("prompt_id", "prompt", "category")})
    prompts = pd.concat(frames, ignore_index=True).drop_duplicates("prompt_id")
    return prompts.sort_values("prompt_id", kind="stable").reset_index(drop=True)


def filter_prompts(prompts: pd.DataFrame, categories: Iterable[str] | None, wants: Sequence[str],
                   verdicts: Sequence[pd.Series]) -> pd.DataFrame:
    """The prompts in the chosen categories (none chosen: all) whose verdict on each side is what that side
    ``wants`` ("any", "right" or "wrong"; a prompt a side has no verdict for matches "any" only)."""
    mask = pd.Series(True, index=prompts.index)
    cats = [str(c) for c in (categories or [])]
    if cats:
        mask &= prompts["category"].isin(cats)
    for want, means in zip(wants, verdicts):
        if want in ("right", "wrong"):
            words = [verdict_word(means.get(pid)) for pid in prompts["prompt_id"]]
            mask &= pd.Series([w == want for w in words], index=prompts.index)
    return prompts[mask].reset_index(drop=True)


@dataclass(frozen=True)
class GridColumn:
    """One column of the side-by-side grid: a side (by index) at one guidance scale."""

    side: int
    label: str  # the side's label
    guidance: float

    @property
    def title(self) -> str:
        return f"{self.label} · g={self.guidance:g}" if "@" not in self.label else self.label


def grid_columns(sides: Sequence[SideChoice], samples: Sequence[pd.DataFrame | None]) -> list[GridColumn]:
    """The grid's columns, run × guidance: a side at one scale is one column, a side over all scales one
    column per scale its samples have (in increasing order)."""
    columns = []
    for i, (side, rows) in enumerate(zip(sides, samples)):
        if side.guidance is not None:
            columns.append(GridColumn(i, side.label, side.guidance))
        elif rows is not None:
            scales = sorted({float(g) for g in rows["guidance"].dropna()})
            columns += [GridColumn(i, side.label, g) for g in scales]
    return columns


def grid_image(samples: pd.DataFrame | None, prompt_id: str, guidance: float, sample_index: int) -> dict | None:
    """The sample of one grid cell (the prompt, at the scale, with that sample index: the same seed), or None."""
    if samples is None:
        return None
    rows = samples[(samples["prompt_id"] == prompt_id) & (samples["sample_index"] == sample_index)]
    rows = at_guidance(rows, guidance)
    return None if rows.empty else rows.iloc[0].to_dict()


def image_note(scores_by_image: dict[str, dict[str, float]], image_id: str) -> str:
    """The per-image values shown under a grid image, e.g. ``"detector: right · CLIP 27.0"`` ("" without any)."""
    values = scores_by_image.get(image_id, {})
    parts = []
    if VERDICT_METRIC in values:
        parts.append(f"detector: {verdict_word(values[VERDICT_METRIC])}")
    if CLIP_METRIC in values:
        parts.append(f"CLIP {values[CLIP_METRIC]:.1f}")
    return " · ".join(parts)


def scores_by_image(scores: pd.DataFrame | None) -> dict[str, dict[str, float]]:
    """image_id -> {metric: value} of an image_scores table (empty without one)."""
    if scores is None or scores.empty:
        return {}
    out: dict[str, dict[str, float]] = {}
    for image_id, metric, value in zip(scores["image_id"], scores["metric"], scores["value"]):
        out.setdefault(str(image_id), {})[str(metric)] = float(value)
    return out


def sample_indices(samples: Iterable[pd.DataFrame | None]) -> list[int]:
    """The sample indices (seeds) every side has, sorted; the grid shows one at a time."""
    sets = [set(int(i) for i in s["sample_index"]) for s in samples if s is not None and not s.empty]
    return sorted(set.intersection(*sets)) if sets else []


def compare_view(table: pd.DataFrame, subsets: Sequence[str] = (C.ALL_SUBSET,)) -> pd.DataFrame:
    """The rows of a ``COMPARE_TABLE`` to show: the chosen subsets ("all", "category=<name>"), in the table's order."""
    return table[table["subset"].isin(list(subsets))].reset_index(drop=True)


def verdict_summary(prompts: pd.DataFrame, labels: Sequence[str], verdicts: Sequence[pd.Series]) -> pd.DataFrame:
    """One row per prompt: its id, category, and the verdict word on each side (a column per side label)."""
    table = prompts[["prompt_id", "category"]].copy()
    for label, means in zip(labels, verdicts):
        table[label] = [verdict_word(means.get(pid)) for pid in prompts["prompt_id"]]
    return table
