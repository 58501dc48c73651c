"""Compositional accuracy: share of images that the world's exact detector judges correct.

GenEval-style (Ghosh, Hajishirzi, Schmidt 2023, "GenEval: An Object-Focused
Framework for Evaluating Text-to-Image Alignment", NeurIPS Datasets and
Benchmarks), with the shapes world's exact detector in place of an object
detector: ``check(prompt_spec, image)`` returns per-field verdicts (shape, colour,
size, count, relation: True/False/None when the prompt does not constrain the
field) and ``correct`` = all constrained fields true.

    accuracy(group) = (1 / N_group) · Σ_images correct(image)

Reported per image, per group (``by``, default "category"), and overall (mean over
images).  Each prompt needs a spec (the shapes prompt set has one per prompt).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import pandas as pd

from bench.errors import UserError
from bench.metrics.base import Metric, MetricInfo, MetricResult, ScoreGroup, category_results
from bench.metrics.bootstrap import prompt_intervals

METRIC = MetricInfo(
    name="compositional_accuracy",
    display_name="Compositional accuracy",
    higher_is_better=True,
    paper="Ghosh et al. 2023, GenEval: An Object-Focused Framework for Evaluating Text-to-Image Alignment "
    "(NeurIPS D&B)",
    formula="share of images whose detected objects satisfy every constrained field of the prompt spec",
    inputs="generated images and the prompt specs (shapes prompt set), judged by bench.world.detect.check",
    url="https://arxiv.org/abs/2310.11513",
    lower_bound=0.0,
    upper_bound=1.0,
)

FIELDS = ("shape", "colour", "size", "count", "relation")
CheckFn = Callable[[Mapping[str, Any], Any], Mapping[str, Any]]


@dataclass(frozen=True)
class CompositionalReport:
    overall: MetricResult
    per_image: pd.DataFrame  # samples' columns + correct + one column per field verdict
    per_group: pd.DataFrame  # group columns, n, accuracy, and the accuracy of each field where constrained


def _open(image: Any) -> Any:
    if isinstance(image, (str, os.PathLike)):
        from bench.features.images import ImageProblem, load_image

        try:
            return load_image(Path(image))[0]
        except ImageProblem as e:
            raise UserError(f"compositional accuracy: cannot read {image} ({e}): regenerate or remove it") from e
    return image


def compositional_accuracy(
    samples: pd.DataFrame,
    images: Sequence[Any],
    check_fn: CheckFn | None = None,
    specs: Mapping[str, Mapping[str, Any]] | None = None,
    by: str | Sequence[str] = "category",
) -> CompositionalReport:
    """Judge each image (aligned with ``samples`` rows: PIL, array or path) against its prompt's spec.

    Specs come from ``specs[prompt_id]`` or else a ``spec`` column of ``samples``;
    ``check_fn`` defaults to ``bench.world.detect.check``.
    """
    by = [by] if isinstance(by, str) else list(by)
    missing = [c for c in ["prompt_id", *by] if c not in samples.columns]
    if missing:
        raise UserError(
            f"compositional accuracy: samples table lacks column(s) {missing}: use the run's samples.parquet"
        )
    if len(images) != len(samples):
        raise UserError(
            f"compositional accuracy: {len(images)} images for {len(samples)} samples: align them row by row"
        )
    if len(samples) == 0:
        raise UserError("compositional accuracy: no images to judge")
    if check_fn is None:
        from bench.world.detect import check as check_fn
    rows = samples.reset_index(drop=True)
    verdicts = []
    for i, row in rows.iterrows():
        spec = specs.get(row["prompt_id"]) if specs is not None else row.get("spec")
        if spec is None or (isinstance(spec, float) and np.isnan(spec)):
            raise UserError(
                f"compositional accuracy: prompt {row['prompt_id']} has no spec: "
                f"use a prompt set with specs (e.g. shapes) or drop such prompts"
            )
        result = check_fn(spec, _open(images[i]))
        verdicts.append({"correct": bool(result["correct"]), **{f: result.get(f) for f in FIELDS}})
    per_image = pd.concat([rows, pd.DataFrame(verdicts)], axis=1)

    def summarise(group: pd.DataFrame) -> pd.Series:
        out = {"n": len(group), "accuracy": group["correct"].mean()}
        for f in FIELDS:
            judged = group[f].dropna()
            out[f"{f}_accuracy"] = judged.astype(bool).mean() if len(judged) else np.nan
        return pd.Series(out)

    per_group = per_image.groupby(by, dropna=False, sort=True)[["correct", *FIELDS]].apply(summarise).reset_index()
    per_group["n"] = per_group["n"].astype(int)
    overall = MetricResult(
        "compositional_accuracy",
        float(per_image["correct"].mean()),
        n=len(per_image),
        details={"n_prompts": int(per_image["prompt_id"].nunique())},
    )
    return CompositionalReport(overall=overall, per_image=per_image, per_group=per_group)


#: Judged by the shapes world's detector (recorded as the ``extractor`` of the per-category rows).
JUDGE = "shapes-world-detector"


def _score(group: ScoreGroup) -> list[MetricResult]:
    report = compositional_accuracy(group.samples, group.images, specs=group.specs)
    per_image = report.per_image.assign(correct_value=report.per_image["correct"].astype(np.float64))
    overall = replace(report.overall, values=per_image["correct_value"].to_numpy(),
                      prompts=per_image["prompt_id"].tolist(),
                      image_ids=per_image["image_id"].tolist() if "image_id" in per_image else None)
    return [overall, *category_results(report.per_group, report.overall.metric, "accuracy", "n", JUDGE,
                                       per_image=per_image, image_value_col="correct_value")]


#: Intervals: percentile bootstrap over prompts, images nested (``bench.metrics.bootstrap``); the images are
#: judged once, each resample reuses their verdicts.
SCORER = Metric("compositional_accuracy", (METRIC,), stage="specs", needs=("images", "specs"), compute=_score,
                min_images=1, interval=prompt_intervals)
