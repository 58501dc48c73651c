"""Does ``t2i-bench compare`` say "significant" as often as it should?  Measured on real generations.

Two checks on one scored run generated with many images per prompt (``--images-per-prompt 2K``) at two
guidance scales (scripts/validate_compare.py makes it):

* **False significance** (the test's size).  Sample indices 2i and 2i+1 are two runs of the *same* model
  with different seeds (a seed is a function of the run seed, the prompt and the sample index).  Each of the
  K pairs, at each guidance scale, is compared on every per-image metric with ``bench.compare.delta_interval`` (the paired bootstrap
  of ``t2i-bench compare``); a 95% interval should exclude 0 for about 5% of them.  The rate is reported
  with its Wilson interval (``bench.intervals``).
* **Power** (a known gap).  The same prompts and sample indices at guidance 1 (unguided) against the
  higher scale: every pair should come out significant on compositional accuracy and CLIP score when
  the whole runs are compared, and the per-pair rate says how often one image per prompt suffices.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from bench import contract as C
from bench.compare import PromptSums, delta_interval
from bench.intervals import wilson


@dataclass(frozen=True)
class Check:
    metric: str
    what: str  # "same model, different seeds" or "guidance G1 vs G2"
    n_tests: int
    n_significant: int

    @property
    def rate(self) -> float:
        return self.n_significant / self.n_tests if self.n_tests else math.nan

    @property
    def interval(self) -> tuple[float, float]:
        return wilson(self.n_significant, self.n_tests)


def per_image_scores(run: Path) -> pd.DataFrame:
    """image_scores joined with each image's sample index."""
    scores = C.read_table(run, C.IMAGE_SCORES_TABLE)
    samples = C.read_table(run, C.SAMPLES_TABLE)[["image_id", "sample_index"]]
    return scores.merge(samples, on="image_id", how="inner")


def _sums(rows: pd.DataFrame) -> PromptSums:
    return PromptSums.of(rows.value, rows.prompt_id)


def seed_pairs(scores: pd.DataFrame, resamples: int, seed: int) -> list[dict]:
    """One paired comparison per (metric, guidance scale, pair of sample indices 2i, 2i+1): disjoint pairs,
    so the tests are independent."""
    rows = []
    for (metric, guidance), m in scores.groupby(["metric", "guidance"]):
        indices = sorted(set(m.sample_index))
        for i in range(len(indices) // 2):
            a = m[m.sample_index == indices[2 * i]]
            b = m[m.sample_index == indices[2 * i + 1]]
            rng = np.random.default_rng([seed, i, len(metric), int(guidance * 100)])
            r = delta_interval(_sums(a), _sums(b), rng, resamples)
            rows.append({"metric": metric, "guidance": guidance, "pair": i, **r})
    return rows


def guidance_pairs(scores: pd.DataFrame, low: float, high: float, resamples: int, seed: int) -> list[dict]:
    """Per sample index: the low scale against the high one, same prompts and seeds (a known gap)."""
    rows = []
    for metric, m in scores.groupby("metric"):
        for index in sorted(set(m.sample_index)):
            mi = m[m.sample_index == index]
            a = mi[np.isclose(mi.guidance.to_numpy(float), low)]
            b = mi[np.isclose(mi.guidance.to_numpy(float), high)]
            rng = np.random.default_rng([seed, int(index), len(metric), 1])
            rows.append({"metric": metric, "sample_index": int(index), **delta_interval(_sums(a), _sums(b), rng,
                                                                                       resamples)})
    return rows


def summarise(rows: list[dict], what: str) -> list[Check]:
    from bench.compare import significant

    frame = pd.DataFrame(rows)
    frame["significant"] = [significant(lo, hi) for lo, hi in zip(frame.ci_low, frame.ci_high)]
    return [Check(metric, what, len(g), int(g.significant.sum())) for metric, g in frame.groupby("metric")]
