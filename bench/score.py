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

import logging
import math
import re
import warnings
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from bench import contract as C
from bench import distributed, rundir, runlock
from bench.cache import cache_dir
from bench.errors import UserError

log = logging.getLogger("t2i_audit")
METRICS = C.METRICS  # kept for callers of bench.score.METRICS
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
    bootstrap: int = 1000  # resamples for the 95% intervals (0: no intervals); bench.metrics.bootstrap
    seed: int = 0  # of the bootstrap


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
    if C.is_run_dir(path):
        samples = rundir.read_samples(path)
        paths = tuple(path / p for p in samples.path)
        return Reference(label=f"run:{path}", paths=paths, root=path, cache=path / C.FEATURES_DIR)
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
    """The features of some images, still carrying the extractor key (so mixing is refused).

    All rows (the "all" group): the set itself, no copy, so memory-mapped cached features stay on disk
    and the metrics read them in blocks (``bench.metrics.base.ROW_BLOCK``)."""
    from bench.features.base import FeatureSet

    if rows.dtype == bool and len(rows) == len(fs.features) and rows.all():
        return fs
    return FeatureSet(fs.features[rows], fs.extractor, tuple(np.asarray(fs.paths)[rows]), (), {}, None, fs.from_cache)


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


def _run_metrics(metrics, stage: str, samples: pd.DataFrame, fields: dict, ref_label: str | None,
                 options: dict, boot=None, image_scores: list | None = None) -> list[dict]:
    """metrics.parquet rows of every registered metric of ``stage``, for all images and per guidance scale.

    ``fields`` holds the pass's inputs for all of ``samples``: row-aligned ones
    (FeatureSets, arrays, lists) are cut to each group; the reference is shared.
    With ``boot`` (``bench.metrics.bootstrap.Bootstrap``, resamples > 0) each metric that
    declares an ``interval`` gets ci_low, ci_high, ci_method and n_for_1pct on its rows,
    from a generator seeded by (seed, stage and metric name, group).  Per-image values of the
    all-images group (results carrying ``image_ids``) are appended to ``image_scores`` as frames.
    """
    from bench.metrics import ScoreGroup

    shared = ("reference", "reference_stats", "specs")
    rows = []
    for group_no, (guidance, mask) in enumerate(_guidance_groups(samples)):
        group = {}
        for name, value in fields.items():
            if value is None or name in shared:
                group[name] = value
            elif hasattr(value, "features"):  # a FeatureSet
                group[name] = _rows_of(value, mask)
            elif isinstance(value, np.ndarray):
                group[name] = value[mask]
            else:
                group[name] = [v for v, keep in zip(value, mask) if keep]
        every = mask.all() and samples.index.equals(pd.RangeIndex(len(samples)))  # "all": no copy of the table
        g = ScoreGroup(stage=stage, samples=samples if every else samples[mask].reset_index(drop=True),
                       options=options, **group)
        for _, metric in metrics:
            if metric.stage == stage and metric.applies(g):
                results = list(metric.compute(g))
                intervals = [None] * len(results)
                if boot is not None and boot.resamples > 0 and metric.interval is not None:
                    rng = boot.rng(zlib.crc32(f"{stage}/{metric.name}".encode()), group_no)
                    intervals = list(metric.interval(g, results, boot, rng))
                if image_scores is not None and guidance is None:
                    image_scores += [_image_score_frame(r) for r in results
                                     if r.subset == C.ALL_SUBSET and r.image_ids is not None and r.values is not None]
                for result, interval in zip(results, intervals):
                    row = result.to_row()
                    row.update(guidance=math.nan if guidance is None else guidance,
                               reference=ref_label if metric.uses_reference else None)
                    if interval is not None:
                        row.update(interval.to_row())
                    rows.append(row)
    return rows


def _image_score_frame(result) -> pd.DataFrame:
    return pd.DataFrame({"image_id": list(result.image_ids), "prompt_id": list(result.prompts),
                         "metric": result.metric, "value": np.asarray(result.values, np.float64),
                         "extractor": result.extractor})


def _write_image_scores(run: Path, frames: list[pd.DataFrame], samples: pd.DataFrame) -> None:
    """image_scores.parquet: every per-image value, with the image's category and guidance from samples."""
    if not frames:  # no per-image metric this time: drop a stale table of an earlier score
        C.IMAGE_SCORES_TABLE.path(run).unlink(missing_ok=True)
        return
    scores = pd.concat(frames, ignore_index=True)
    info = samples[["image_id", "category", "guidance"]].drop_duplicates("image_id")
    scores = scores.merge(info, on="image_id", how="left")
    C.write_table(run, C.IMAGE_SCORES_TABLE, C.coerce(scores, C.IMAGE_SCORES_TABLE))


def score_run(spec: ScoreSpec, progress: bool = True) -> pd.DataFrame:
    """Score a run directory; returns (and writes) the metrics table.

    Holds the run's writer lock (``bench.runlock``).  Launched as several processes (docs/scale.md),
    every rank extracts its share of the features (``bench.features.cache``), and rank 0 alone computes
    the metrics and writes them; the other ranks return an empty table.
    """
    try:  # every rank meets a launch refusal on its own: rank 0 prints it
        processes = distributed.setup("cpu", "score")  # the feature extractors run on the CPU
    except UserError as exc:
        exc.quiet = getattr(exc, "quiet", False) or distributed.env_rank() != 0
        raise
    with processes.quiet_logs():
        try:
            if processes.is_main:  # refusals that must come before the lock file is made in the folder
                rundir.check_run_dir(spec.run)
                rundir.check_run_writable(spec.run, "t2i-bench score")
            with runlock.run_lock(spec.run, "t2i-bench score", enabled=processes.is_main):
                return _score_run(spec, progress, processes)
        except UserError as exc:
            processes.fail(exc)  # before the ranks have met: all of them stop, the error is printed once
            raise


def _score_run(spec: ScoreSpec, progress: bool, processes: distributed.Processes) -> pd.DataFrame:
    """Score a run directory (``score_run`` holds the lock); returns (and writes, on rank 0) the metrics table.

    Three passes (``bench.metrics.base.STAGES``) prepare the inputs: each
    ``--features`` extractor, the ``--clip`` CLIP, and the shapes-world specs.
    Every metric of the registry ``bench.metrics.METRICS`` then runs in its
    pass on every group it has inputs for.
    """
    from bench.features import extract_features, get_extractor
    from bench.metrics import METRICS, MetricWarning
    from bench.metrics.bootstrap import Bootstrap
    from bench.metrics.fid import GaussianStats

    run = rundir.check_run_dir(spec.run)
    manifest = rundir.read_manifest(run)
    samples = C.read_table(run, C.SAMPLES_TABLE) if (run / C.SAMPLES).is_file() else pd.DataFrame()
    if len(samples) == 0:
        raise UserError(f"run '{spec.run}' has no images in {C.SAMPLES}; generate or import images first")
    rundir.check_run_writable(run, "t2i-bench score")  # before any work: features, metrics and summary go there
    reference = resolve_reference(spec.reference)
    ref_label = reference.label if reference else None
    metrics = list(METRICS.items()) if processes.is_main else []  # the other ranks extract features only
    options = {"kid_subset_size": spec.kid_subset_size, "pr_k": spec.pr_k}
    if spec.bootstrap < 0:
        raise UserError(f"--bootstrap must be 0 (no intervals) or a number of resamples, got {spec.bootstrap}")
    boot = Bootstrap(resamples=spec.bootstrap, seed=spec.seed)
    rows: list[dict] = []
    image_scores: list[pd.DataFrame] = []
    skipped: dict[str, str] = {}

    def gen_features(extractor):
        fs = extract_features([run / p for p in samples.path], extractor, run / C.FEATURES_DIR, spec.batch_size,
                              progress, root=run)
        skipped.update({str(p): why for p, why in fs.skipped})
        if fs.converted:
            log.warning("%d generated images were not 8-bit RGB and were converted (%s)", sum(fs.converted.values()),
                        ", ".join(f"{k}: {v}" for k, v in fs.converted.items()))
        kept = samples.path.isin(set(fs.paths)).to_numpy()  # fs.paths are relative to the run, like samples.path
        return fs, samples[kept].reset_index(drop=True)

    def ref_features(extractor):
        return extract_features(list(reference.paths), extractor, reference.cache, spec.batch_size, progress,
                                root=reference.root)

    processes.sync()  # every rank is ready, or all stop with the first rank's error
    # Metric warnings (e.g. N <= d) are logged as they come, without touching the warnings module's globals.
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", MetricWarning)

        for name in spec.features:
            kwargs = {"weights": spec.inception_weights} if name == "inception" and spec.inception_weights else {}
            extractor = get_extractor(name, **kwargs)
            fs, kept = gen_features(extractor)
            fields = {"gen": fs, "reference": None, "reference_stats": None,
                      "logits": extractor.logits(fs.features) if hasattr(extractor, "logits") else None}
            if reference and reference.npz:
                fields["reference_stats"] = GaussianStats.load_npz(reference.npz, expect_extractor=extractor.key)
            elif reference:
                fields["reference"] = ref_features(extractor)
                fields["reference_stats"] = GaussianStats.from_features(  # once, not per guidance
                    fields["reference"], what="Fréchet distance, reference set")
            rows += _run_metrics(metrics, "features", kept, fields, ref_label, options, boot, image_scores)
            _log_warnings(caught)

        if spec.clip:
            clip = get_extractor(clip_extractor_spec(spec.clip))
            if spec.clip == BUILTIN_CLIP:
                _warn_outside_shapes_world(samples.prompt.drop_duplicates().tolist())
            fs, kept = gen_features(clip)
            prompts = kept.prompt.tolist()
            unique = list(dict.fromkeys(prompts))
            text_emb, truncated = clip.encode_text(unique)
            position = {p: i for i, p in enumerate(unique)}
            index = [position[p] for p in prompts]
            if truncated.any():
                log.warning("%d of %d prompts are longer than the CLIP context (%d tokens) and were truncated for CLIP score",
                            int(truncated.sum()), len(unique), clip.context_length)
            fields = {"gen": fs, "text_emb": text_emb[index], "truncated": truncated[index],
                      "reference": ref_features(clip) if reference and not reference.npz else None}
            rows += _run_metrics(metrics, "clip", kept, fields, ref_label, options, boot, image_scores)
            _log_warnings(caught)

        specs = _prompt_specs(manifest)
        if specs:
            judged = samples[samples.prompt_id.isin(specs) & ~samples.path.isin(skipped)].reset_index(drop=True)
            fields = {"images": [run / p for p in judged.path], "specs": specs}
            rows += _run_metrics(metrics, "specs", judged, fields, None, options, boot, image_scores)
            _log_warnings(caught)

    if not processes.is_main:
        return pd.DataFrame(rows)
    if not rows:
        raise UserError(
            "nothing to score: pass --reference (for FD/KID/precision/recall) and/or --clip (for CLIP score), "
            "or use a prompt set with shapes-world specs (compositional accuracy)"
        )
    table = C.coerce(pd.DataFrame(rows), C.METRICS_TABLE)
    C.write_table(run, C.METRICS_TABLE, _merge_with_other_references(run, table, ref_label))
    _write_image_scores(run, image_scores, samples)
    _update_summary(run, table, skipped)
    return table


def _merge_with_other_references(run: Path, table: pd.DataFrame, ref_label: str | None) -> pd.DataFrame:
    """This score's rows plus the earlier rows of *other* references (metrics.parquet is keyed by reference):
    scoring against a second reference keeps the first one's FD/KID/precision/recall.  Rows without a
    reference (CLIP score, CMMD, compositional accuracy) and the rows of this reference are replaced."""
    if not C.METRICS_TABLE.path(run).is_file():
        return table
    try:
        old = C.read_table(run, C.METRICS_TABLE)
    except C.ContractError as exc:
        log.warning("%s; it is replaced by this score's rows", exc)
        return table
    keep = old[old.reference.notna() & (old.reference != ref_label)] if "reference" in old else old.iloc[:0]
    if keep.empty:
        return table
    return C.coerce(pd.concat([table, keep[[c for c in keep.columns if c in table.columns]]], ignore_index=True),
                    C.METRICS_TABLE)


def _warn_outside_shapes_world(prompts: list[str]) -> None:
    """``--clip builtin`` was trained on the shapes world only: say so when prompts name no shape of it."""
    from bench.world.vocab import SHAPES

    words = re.compile(r"\b(" + "|".join(SHAPES) + r")s?\b", re.IGNORECASE)
    outside = [p for p in prompts if not words.search(p)]
    if outside:
        log.warning("--clip builtin is the shapes world's evaluator CLIP and knows only its scenes (%s), but %d of "
                    "%d prompts name none of them (e.g. %r): their CLIP score and CMMD mean nothing; pass --clip "
                    "MODEL@TAG for other prompts", ", ".join(SHAPES), len(outside), len(prompts), outside[0][:60])


def _log_warnings(caught: list) -> None:
    for w in caught:
        log.warning("%s", w.message)
    caught.clear()


def _update_summary(run: Path, table: pd.DataFrame, skipped: dict[str, str]) -> None:
    """Headline numbers (all images and per guidance) for the dashboard: summary.json["metrics"], and their
    95% intervals ``[low, high]`` under summary.json["metric_intervals"] (same keys; absent when none)."""
    overall = table[table.subset == C.ALL_SUBSET]
    headline: dict = {}
    intervals: dict = {}
    for _, r in overall.iterrows():
        key = "all" if pd.isna(r.guidance) else f"{r.guidance:g}"
        headline.setdefault(key, {})[r.metric] = r.value
        if np.isfinite(r.ci_low) and np.isfinite(r.ci_high):
            intervals.setdefault(key, {})[r.metric] = [float(r.ci_low), float(r.ci_high)]
    C.update_summary(run, {"metrics": headline, "metric_intervals": intervals, "skipped_images": len(skipped),
                           "skipped": dict(list(skipped.items())[:20])})
