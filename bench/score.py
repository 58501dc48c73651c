"""``t2i-bench score``: one pass over a run's images feeding every metric.

Each image is read and embedded once per extractor (cached in
``<run>/features/``); every metric then works on those arrays:

* per image-feature extractor (``--features``): FD/FID, KID, precision/recall
  against the reference, and IS for Inception;
* with a CLIP (``--clip``): CLIP score (per image, prompt, category) and CMMD;
* for prompt sets whose specs the shapes world can judge: compositional accuracy.

Every metric is computed for all images and per guidance scale.  Results go to
``<run>/metrics.parquet`` (one row per metric, subset and guidance) and the
headline numbers into ``summary.json``.

A reference is a folder of images, another run directory, or a pytorch-fid /
clean-fid ``.npz`` (``mu``, ``sigma``; FD only).
"""

from __future__ import annotations

import json
import logging
import math
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from bench import rundir
from bench.atomic import atomic_path
from bench.cache import cache_dir
from bench.errors import UserError

log = logging.getLogger("t2i_audit")
METRICS = "metrics.parquet"
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".webp", ".bmp"}
BUILTIN_CLIP = "builtin"


@dataclass(frozen=True)
class ScoreSpec:
    run: str
    reference: str | None = None
    features: tuple[str, ...] = ("inception",)
    clip: str | None = None
    batch_size: int = 32
    kid_subset_size: int = 1000
    pr_k: int = 3
    inception_weights: str | None = None


@dataclass(frozen=True)
class Reference:
    """Images (paths + feature cache folder) or Gaussian statistics from a .npz."""

    label: str
    paths: tuple[Path, ...] = ()
    root: Path | None = None
    cache: Path | None = None
    npz: Path | None = None


def resolve_reference(ref: str | None) -> Reference | None:
    if ref is None:
        return None
    path = Path(ref).expanduser()
    if not path.exists():
        raise UserError(f"reference '{ref}' does not exist; pass a folder of images, a run directory or a .npz")
    if path.is_file():
        if path.suffix != ".npz":
            raise UserError(f"reference file '{ref}' is not a .npz with mu and sigma; pass a folder, run or .npz")
        return Reference(label=str(path), npz=path)
    if (path / rundir.MANIFEST).exists():
        samples = rundir.read_samples(path)
        paths = tuple(path / p for p in samples.path)
        return Reference(label=f"run:{path}", paths=paths, root=path, cache=path / "features")
    paths = tuple(sorted(p for p in path.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES))
    if not paths:
        raise UserError(f"reference folder '{ref}' holds no images ({', '.join(sorted(IMAGE_SUFFIXES))})")
    return Reference(label=str(path), paths=paths, root=path, cache=cache_dir() / "features")


def clip_extractor_spec(clip: str) -> str:
    """``builtin`` is the shapes world's evaluator CLIP; anything else is an extractor spec."""
    if clip == BUILTIN_CLIP:
        from bench.models.evaluator_clip import DEFAULT_DIR

        if not DEFAULT_DIR.is_dir():
            raise UserError(f"the built-in evaluator CLIP is not installed at {DEFAULT_DIR}; run `make builtin-models` or pass --clip MODEL@TAG")
        return f"clip:local-dir:{DEFAULT_DIR}"
    return clip if clip.startswith("clip:") else f"clip:{clip}"


def _guidance_groups(samples: pd.DataFrame):
    """('all', every row) then one group per guidance scale (imported runs have none)."""
    yield None, np.ones(len(samples), dtype=bool)
    guidance = samples.guidance.to_numpy(dtype=float)
    if np.isfinite(guidance).any() and len(set(guidance[np.isfinite(guidance)])) > 1:
        for g in sorted(set(guidance[np.isfinite(guidance)])):
            yield float(g), guidance == g


def _rows_of(fs, rows: np.ndarray):
    """The features of some images, still carrying the extractor key (so mixing is refused)."""
    from bench.features.base import FeatureSet

    return FeatureSet(fs.features[rows], fs.extractor, tuple(np.asarray(fs.paths)[rows]), (), {}, None, fs.from_cache)


def _row(result, subset: str, guidance: float | None, reference: str | None) -> dict:
    row = result.to_row()
    row.update(subset=subset, guidance=math.nan if guidance is None else guidance, reference=reference)
    return row


def _category_rows(per_group: pd.DataFrame, metric: str, value_col: str, n_col: str, extractor: str | None,
                   guidance: float | None) -> list[dict]:
    """metrics.parquet rows for a report's per-category table."""
    return [
        {"metric": metric, "value": float(g[value_col]), "n": int(g[n_col]), "extractor": extractor,
         "subset": f"category={g['category']}", "guidance": math.nan if guidance is None else guidance, "reference": None}
        for _, g in per_group.iterrows()
    ]


def _prompt_specs(manifest: dict) -> dict | None:
    """Specs by prompt id when the run's prompt set is judged by the shapes-world detector."""
    from bench.prompts import load_prompt_set
    from bench.world import validate_prompt_spec

    name = manifest.get("prompt_set", {}).get("name")
    try:
        prompt_set = load_prompt_set(name)
    except UserError:
        return None
    specs = {p.id: p.spec for p in prompt_set.prompts if p.spec is not None}
    if not specs:
        return None
    try:
        for spec in specs.values():
            validate_prompt_spec(spec)
    except Exception:  # e.g. GenEval's COCO-class specs: not this detector's to judge
        return None
    return specs


def score_run(spec: ScoreSpec, progress: bool = True) -> pd.DataFrame:
    """Score a run directory; returns (and writes) the metrics table."""
    from bench import metrics as M
    from bench.features import extract_features, get_extractor
    from bench.metrics.fid import GaussianStats

    run = Path(spec.run)
    manifest = rundir.read_manifest(run)
    if manifest is None:
        raise UserError(f"'{spec.run}' is not a run directory (no {rundir.MANIFEST}); pass the folder t2i-bench generate wrote")
    samples = rundir.read_samples(run)
    if len(samples) == 0:
        raise UserError(f"run '{spec.run}' has no images in samples.parquet; generate or import images first")
    reference = resolve_reference(spec.reference)
    ref_label = reference.label if reference else None
    rows: list[dict] = []
    skipped: dict[str, str] = {}

    def gen_features(extractor):
        fs = extract_features([run / p for p in samples.path], extractor, run / "features", spec.batch_size, progress, root=run)
        skipped.update({str(p): why for p, why in fs.skipped})
        if fs.converted:
            log.warning("%d generated images were not 8-bit RGB and were converted (%s)", sum(fs.converted.values()),
                        ", ".join(f"{k}: {v}" for k, v in fs.converted.items()))
        kept = set(fs.paths)  # relative to the run directory, like samples.path
        mask = samples.path.isin(kept).to_numpy()
        return fs, mask

    with warnings.catch_warnings():
        warnings.simplefilter("always", M.MetricWarning)
        warnings.showwarning = lambda message, *a, **k: log.warning("%s", message)
        for name in spec.features:
            kwargs = {"weights": spec.inception_weights} if name == "inception" and spec.inception_weights else {}
            extractor = get_extractor(name, **kwargs)
            fs, mask = gen_features(extractor)
            ref_feats = ref_stats = None
            if reference and reference.npz:
                ref_stats = GaussianStats.load_npz(reference.npz, expect_extractor=extractor.key)
            elif reference:
                ref_fs = extract_features(list(reference.paths), extractor, reference.cache, spec.batch_size, progress, root=reference.root)
                ref_feats = ref_fs
                ref_stats = GaussianStats.from_features(ref_fs)  # once, not once per guidance
            for guidance, group in _guidance_groups(samples):
                gen = _rows_of(fs, group[mask])
                if gen.n < 2:
                    continue
                if name == "inception":
                    rows.append(_row(M.inception_score(extractor.logits(gen.features)), "all", guidance, None))
                if ref_stats is not None:
                    rows.append(_row(M.fd(gen, ref_stats), "all", guidance, ref_label))
                if ref_feats is not None:
                    rows.append(_row(M.kid(gen, ref_feats, subset_size=spec.kid_subset_size), "all", guidance, ref_label))
                    for r in M.precision_recall(gen, ref_feats, k=spec.pr_k):
                        rows.append(_row(r, "all", guidance, ref_label))

        if spec.clip:
            clip = get_extractor(clip_extractor_spec(spec.clip))
            fs, mask = gen_features(clip)
            kept = samples[mask].reset_index(drop=True)
            prompts = kept.prompt.tolist()
            unique = list(dict.fromkeys(prompts))
            text_emb, truncated = clip.encode_text(unique)
            index = {p: i for i, p in enumerate(unique)}
            rows_idx = [index[p] for p in prompts]
            if truncated.any():
                log.warning("%d of %d prompts are longer than the CLIP context (%d tokens) and were truncated for CLIP score",
                            int(truncated.sum()), len(unique), clip.context_length)
            for guidance, group in _guidance_groups(kept):
                report = M.clip_score_report(kept[group], fs.features[group], text_emb[rows_idx][group],
                                             truncated=truncated[rows_idx][group], extractor=fs.extractor)
                rows.append(_row(report.overall, "all", guidance, None))
                rows += _category_rows(report.per_group, report.overall.metric, "mean", "n_images", fs.extractor, guidance)
            if reference and not reference.npz:
                ref_fs = extract_features(list(reference.paths), clip, reference.cache, spec.batch_size, progress, root=reference.root)
                for guidance, group in _guidance_groups(kept):
                    gen = _rows_of(fs, group)
                    if gen.n >= 2:
                        rows.append(_row(M.cmmd(gen, ref_fs), "all", guidance, ref_label))

        specs = _prompt_specs(manifest)
        if specs:
            judged = samples[samples.prompt_id.isin(specs) & ~samples.path.isin(skipped)]
            judged = judged.reset_index(drop=True)
            for guidance, group in _guidance_groups(judged):
                sub = judged[group].reset_index(drop=True)
                report = M.compositional_accuracy(sub, [run / p for p in sub.path], specs=specs)
                rows.append(_row(report.overall, "all", guidance, None))
                rows += _category_rows(report.per_group, report.overall.metric, "accuracy", "n", "shapes-world-detector", guidance)

    if not rows:
        raise UserError(
            "nothing to score: pass --reference (for FD/KID/precision/recall) and/or --clip (for CLIP score), "
            "or use a prompt set with shapes-world specs (compositional accuracy)"
        )
    table = pd.DataFrame(rows)
    front = ["metric", "subset", "guidance", "value", "n", "n_ref", "extractor", "reference"]
    table = table[[c for c in front if c in table] + [c for c in table if c not in front]]
    with atomic_path(run / METRICS) as tmp:
        table.to_parquet(tmp, index=False)
    _update_summary(run, table, skipped)
    return table


def _update_summary(run: Path, table: pd.DataFrame, skipped: dict[str, str]) -> None:
    """Headline numbers (all images and per guidance) for the dashboard."""
    path = run / rundir.SUMMARY
    summary = json.loads(path.read_text()) if path.exists() else {"run": run.name}
    overall = table[table.subset == "all"]
    headline: dict = {}
    for _, r in overall.iterrows():
        key = "all" if pd.isna(r.guidance) else f"{r.guidance:g}"
        headline.setdefault(key, {})[r.metric] = r.value
    summary["metrics"] = headline
    summary["skipped_images"] = len(skipped)
    summary["skipped"] = dict(list(skipped.items())[:20])
    rundir.write_json(path, summary)
