"""CLIP score: image-text agreement.

Hessel, Holtzman, Forbes, Le Bras, Choi 2021, "CLIPScore: A Reference-free
Evaluation Metric for Image Captioning", EMNLP.

For image embedding v and prompt embedding c (both from the same CLIP model):

    CLIPScore(v, c) = 100 · max(cos(v, c), 0)

The paper uses the weight w = 2.5 in place of 100; 100 is the convention of
torchmetrics and of text-to-image papers.  The clamp is applied *per image*, as
in the paper; torchmetrics' ``CLIPScore`` instead clamps the mean (identical
whenever every cosine is positive, which is the normal case).

Reported per image, mean and max per prompt, and per group (``by``, default
"category") as the mean over the group's images.  Prompts longer than the text
encoder's context (77 tokens for CLIP) are truncated by the tokenizer: pass the
``truncated`` flags from ``OpenClipExtractor.encode_text`` and they are counted
in the report, so a low score from a cut prompt is visible.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Sequence

import numpy as np
import pandas as pd

from bench.errors import UserError
from bench.features.base import FeatureSet
from bench.metrics.base import Metric, MetricInfo, MetricResult, ScoreGroup, category_results
from bench.metrics.bootstrap import prompt_intervals

METRIC = MetricInfo(
    name="clip_score",
    display_name="CLIP score",
    higher_is_better=True,
    paper="Hessel et al. 2021, CLIPScore: A Reference-free Evaluation Metric for Image Captioning (EMNLP)",
    formula="100 · max(cos(E_image, E_text), 0), mean over images",
    inputs="CLIP image embeddings and prompt text embeddings from the same model",
    url="https://arxiv.org/abs/2104.08718",
    lower_bound=0.0,
    upper_bound=100.0,
)


def _rows(emb, what: str) -> tuple[np.ndarray, str | None]:
    key = None
    if isinstance(emb, FeatureSet):
        key, emb = emb.extractor, emb.features
    arr = np.asarray(emb, dtype=np.float64)
    if arr.ndim != 2:
        raise UserError(f"CLIP score: {what} embeddings must be 2-D [N, d], got shape {arr.shape}")
    return arr, key


def clip_scores(image_emb, text_emb) -> np.ndarray:
    """Per-pair CLIP score 100 · max(cos, 0) of aligned rows (float64 [N])."""
    img, _ = _rows(image_emb, "image")
    txt, _ = _rows(text_emb, "text")
    if img.shape != txt.shape:
        raise UserError(
            f"CLIP score: image embeddings {img.shape} and text embeddings {txt.shape} do not align: "
            f"one prompt embedding per image, from the same CLIP model"
        )
    img = img / np.linalg.norm(img, axis=1, keepdims=True)
    txt = txt / np.linalg.norm(txt, axis=1, keepdims=True)
    return 100.0 * np.maximum((img * txt).sum(axis=1), 0.0)


@dataclass(frozen=True)
class ClipScoreReport:
    overall: MetricResult  # mean over all images
    per_image: pd.DataFrame  # samples' columns + clip_score, truncated
    per_prompt: pd.DataFrame  # prompt_id, group columns, n, mean, max, truncated
    per_group: pd.DataFrame  # group columns, n_images, n_prompts, mean, n_truncated_prompts


def clip_score_report(
    samples: pd.DataFrame,
    image_emb,
    text_emb,
    truncated: Sequence[bool] | None = None,
    by: str | Sequence[str] = "category",
    extractor: str | None = None,
) -> ClipScoreReport:
    """CLIP scores of images (rows of ``samples``, which needs ``prompt_id`` and the ``by`` columns).

    ``image_emb`` and ``text_emb`` are aligned with ``samples`` rows (the prompt's
    embedding repeated for each of its images); ``truncated`` marks rows whose
    prompt was cut to the context length.
    """
    by = [by] if isinstance(by, str) else list(by)
    missing = [c for c in ["prompt_id", *by] if c not in samples.columns]
    if missing:
        raise UserError(f"CLIP score: samples table lacks column(s) {missing}: use the run's samples.parquet")
    if len(samples) < 1:
        raise UserError("CLIP score: no images to score")
    scores = clip_scores(image_emb, text_emb)
    if len(scores) != len(samples):
        raise UserError(f"CLIP score: {len(scores)} embeddings for {len(samples)} samples: align them row by row")
    key_img = image_emb.extractor if isinstance(image_emb, FeatureSet) else None
    if key_img and extractor and key_img != extractor:
        raise UserError(
            f"CLIP score: image embeddings come from {key_img}, not {extractor}: "
            f"embed images and prompts with the same CLIP model"
        )
    key = key_img or extractor
    trunc = np.zeros(len(samples), bool) if truncated is None else np.asarray(truncated, dtype=bool)
    if trunc.shape != (len(samples),):
        raise UserError(f"CLIP score: {trunc.shape[0]} truncation flags for {len(samples)} samples")

    per_image = samples.reset_index(drop=True).copy()
    per_image["clip_score"] = scores
    per_image["truncated"] = trunc
    per_prompt = (
        per_image.groupby(["prompt_id", *by], dropna=False, sort=True)
        .agg(
            n=("clip_score", "size"),
            mean=("clip_score", "mean"),
            max=("clip_score", "max"),
            truncated=("truncated", "any"),
        )
        .reset_index()
    )
    per_group = (
        per_image.groupby(by, dropna=False, sort=True)
        .agg(n_images=("clip_score", "size"), n_prompts=("prompt_id", "nunique"), mean=("clip_score", "mean"))
        .reset_index()
    )
    n_trunc = per_prompt.groupby(by, dropna=False, sort=True)["truncated"].sum().to_numpy()
    per_group["n_truncated_prompts"] = n_trunc.astype(int)
    overall = MetricResult(
        metric="CLIPScore",
        value=float(scores.mean()),
        n=len(scores),
        extractor=key,
        details={
            "n_prompts": int(per_image["prompt_id"].nunique()),
            "n_truncated_prompts": int(per_prompt["truncated"].sum()),
            "n_truncated_images": int(trunc.sum()),
        },
    )
    return ClipScoreReport(overall=overall, per_image=per_image, per_prompt=per_prompt, per_group=per_group)


def _score(group: ScoreGroup) -> list[MetricResult]:
    report = clip_score_report(group.samples, group.gen.features, group.text_emb, truncated=group.truncated,
                               extractor=group.gen.extractor)
    per_image = report.per_image
    overall = replace(report.overall, values=per_image["clip_score"].to_numpy(), prompts=per_image["prompt_id"].tolist(),
                      image_ids=per_image["image_id"].tolist() if "image_id" in per_image else None)
    return [overall, *category_results(report.per_group, report.overall.metric, "mean", "n_images",
                                       group.gen.extractor, per_image=per_image, image_value_col="clip_score")]


#: Intervals: percentile bootstrap over prompts, images nested (``bench.metrics.bootstrap``).
SCORER = Metric("clip_score", (METRIC,), stage="clip", needs=("gen", "text_emb"), compute=_score, min_images=1,
                interval=prompt_intervals)
