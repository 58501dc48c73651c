"""The watermark audit of a run: visible marks, the neighbours' pwatermark, invisible SD marks.

For every generated image of a run directory:

* ``visible_score``: the visible-watermark probe's probability
  (``audit.probes.watermark.classifier``: logistic regression on frozen image features,
  trained on synthetic overlays), and ``visible`` at the probe's calibrated
  threshold.  The features are EfficientNet-Lite0's by default
  (``DEFAULT_PROBE_FEATURES``), or the audit's CLIP with
  ``probe_features="clip"``, or any extractor spec; or, with ``probe_file``,
  LAION's own detector (``audit.probes.watermark.laion``: its pwatermark,
  flagged at LAION's 0.5);
* ``neighbour_pwatermark``: with an index (``audit.index.ClipIndex``), the mean
  ``pwatermark`` of the image's top-k retrieved training images (NaN when the
  index has no such column, or no index was given).  A model that learned
  watermarks from its data retrieves watermarked neighbours;
* ``invisible`` / ``invisible_message``: a known Stable Diffusion dwtDct
  message decoded from the pixels (``audit.probes.watermark.invisible``);
  ``invisible_checkable`` is False for images under 256 x 256 px, which the
  decoder cannot read (their ``invisible`` is False).

Outputs (atomic writes): ``RUN/audit/watermark.parquet``, one row per readable
image (unreadable ones are skipped, counted in ``n_skipped`` and warned about),
and ``summary.json["watermark"]`` = {n_images, visible_rate, threshold, probe,
invisible_rate, neighbour_pwatermark_mean} plus n_skipped and
n_invisible_checkable.  ``invisible_rate`` is over checkable images (None when
none was); ``neighbour_pwatermark_mean`` is None without an index or column.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from audit.probes.watermark.invisible import checkable, decode_invisible
from audit.probes.watermark.classifier import ProbeConfig, WatermarkProbe, default_config, load_or_train_probe
from audit.probes.base import load_run_samples
from bench import contract as C
from bench.errors import UserError

log = logging.getLogger("t2i_audit")

DEFAULT_K = 10
#: The probe's default features.  LAION's own watermark detector (LAION-5B-WatermarkDetection,
#: which gave LAION-5B its pwatermark) is an ImageNet EfficientNet with a new classifier head,
#: not a CLIP probe: a convolutional ImageNet network keeps the thin strokes and flat
#: translucent bands of a mark that a CLIP embedding, trained to match captions, mostly
#: drops.  Measured in the built-in world (docs/audit-calibration.md): held-out AUROC on the
#: planted PIXSTOCK mark of a probe trained on synthetic overlays only is far higher on
#: EfficientNet-Lite0 features than on the evaluator CLIP's embeddings.
DEFAULT_PROBE_FEATURES = "efficientnet-lite0"
PROBE_ON_CLIP = "clip"
COLUMNS = list(C.WATERMARK_TABLE.columns)


@dataclass(frozen=True)
class WatermarkResult:
    table: pd.DataFrame      # audit/watermark.parquet
    summary: dict            # summary.json["watermark"]
    probe: WatermarkProbe
    probe_source: str        # "given" | "cached" | "trained"
    skipped: tuple[tuple[str, str], ...]


def neighbour_pwatermark(index, queries: np.ndarray, k: int, query_key: str | None) -> np.ndarray:
    """Mean ``pwatermark`` of each query's top-k index rows; NaN where the index has no such column.

    Rows the search did not fill (id -1) and NaN pwatermarks are left out of the mean.
    """
    meta = index.metadata()
    if "pwatermark" not in meta.columns:
        return np.full(len(queries), np.nan)
    _, ids = index.search(queries, min(k, index.n), modality="image", query_key=query_key)
    pw = pd.to_numeric(meta["pwatermark"], errors="coerce").to_numpy(dtype=np.float64)
    values = np.where(ids >= 0, pw[np.clip(ids, 0, None)], np.nan)
    with np.errstate(invalid="ignore"):
        counts = np.isfinite(values).sum(axis=1)
        sums = np.nansum(values, axis=1)
    return np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)






def _invisible_columns(run: Path, paths: list[str], sizes: list[tuple[int, int]], progress: bool):
    """(invisible, message, checkable) per image; only images of 256 x 256 px or more are decoded."""
    from tqdm.auto import tqdm

    from bench.features.images import ImageProblem, load_image

    found, messages, can = [], [], []
    todo = sum(checkable(w, h) for w, h in sizes)
    with tqdm(total=todo, unit="img", desc="invisible watermarks", disable=not progress or todo == 0) as bar:
        for rel, (w, h) in zip(paths, sizes):
            if not checkable(w, h):
                found.append(False), messages.append(""), can.append(False)
                continue
            try:
                result = decode_invisible(load_image(run / rel)[0])
            except ImageProblem:  # read fine for the features a moment ago; changed since
                result = None
            found.append(bool(result and result.detected))
            messages.append(result.message if result else "")
            can.append(bool(result and result.checkable))
            bar.update(1)
    return found, messages, can


def _image_sizes(run: Path, samples: pd.DataFrame) -> list[tuple[int, int]]:
    """(width, height) from samples.parquet, or from the file header where the table has none."""
    from PIL import Image

    out = []
    for s in samples.itertuples(index=False):
        w, h = getattr(s, "width", None), getattr(s, "height", None)
        if w is None or h is None or pd.isna(w) or pd.isna(h):
            with Image.open(run / s.path) as im:
                w, h = im.size
        out.append((int(w), int(h)))
    return out


def probe_extractor_spec(probe_features: str, clip: str) -> str:
    """The extractor spec of the probe's features: ``"clip"`` = the audit's CLIP, else a spec as given."""
    from bench.score import clip_extractor_spec

    return clip_extractor_spec(clip) if probe_features == PROBE_ON_CLIP else probe_features


def audit_watermark(run, *, clip: str = "builtin", index=None, k: int = DEFAULT_K, probe: str | None = None,
                    probe_features: str = DEFAULT_PROBE_FEATURES, config: ProbeConfig | None = None,
                    invisible: bool = True, batch_size: int = 64, progress: bool = True,
                    probe_file: str | os.PathLike | None = None, allow_pickle: bool = False) -> WatermarkResult:
    """Audit run directory ``run`` for watermarks and write the outputs (module docstring).

    ``clip`` names the CLIP ("builtin" = the evaluator CLIP, or an extractor
    spec / open_clip MODEL@TAG); ``index`` an index folder (or an open
    ``ClipIndex``) made with that CLIP.  ``probe_features`` names the features
    the visible-watermark probe reads (default EfficientNet-Lite0; ``"clip"``
    for the CLIP); ``probe`` a saved probe file for those features, else the
    cached probe for ``config`` is used or trained.  ``probe_file`` instead names LAION's own
    watermark detector (``watermark_model_v1.pt``, or the safetensors copy made from it; see
    ``audit.probes.watermark.laion``): a pickle is refused unless ``allow_pickle``.
    """
    from bench.features import extract_features, get_extractor
    from bench.score import clip_extractor_spec

    if k < 1:
        raise UserError(f"k must be at least 1, got {k}")
    config = default_config() if config is None else config
    if probe is not None and probe_file is not None:
        raise UserError("pass either --probe (a probe head) or --probe-file (LAION's detector), not both")
    run = Path(run)
    samples = load_run_samples(run)
    if probe_file is not None:
        from audit.probes.watermark.laion import laion_probe

        probe_extractor, laion, laion_path = laion_probe(probe_file, allow_pickle)
    else:
        probe_extractor = get_extractor(probe_extractor_spec(probe_features, clip))
    clip_extractor = None  # the CLIP is only needed to query the index
    idx = None
    if index is not None:
        from audit.index import ClipIndex

        clip_extractor = get_extractor(clip_extractor_spec(clip))
        idx = ClipIndex.open(index) if isinstance(index, (str, os.PathLike)) else index
        if idx.n == 0:
            raise UserError(f"index '{idx.folder}' holds no images; build it from a non-empty source")
        idx.check_query(clip_extractor.key, clip_extractor.dim)  # refuse another CLIP before any work
    # Probe before features: a probe for other features is refused before any work.
    if probe_file is not None:
        wm_probe, how, probe_path = laion, "given", laion_path
    else:
        wm_probe, how, probe_path = load_or_train_probe(probe_extractor, config, probe, progress=progress)

    def features_of(extractor, rel_paths: list[str]):
        """(features in the order of ``rel_paths`` minus unreadable images, the FeatureSet)."""
        fs = extract_features([run / p for p in rel_paths], extractor, run / "features", batch_size=batch_size,
                              progress=progress, root=run)
        row_of = {p: i for i, p in enumerate(fs.paths)}
        return fs.features[[row_of[p] for p in rel_paths if p in row_of]].astype(np.float32), fs

    probe_emb, fs = features_of(probe_extractor, list(samples["path"]))
    if fs.skipped:
        log.warning("watermark: %d unreadable image(s) skipped, e.g. %s: %s",
                    len(fs.skipped), fs.skipped[0][0], fs.skipped[0][1])
    samples = samples[samples["path"].isin(set(fs.paths))].reset_index(drop=True)
    if samples.empty:
        raise UserError(f"no image of run '{run}' could be read; regenerate or re-import the images")
    scores = wm_probe.scores(probe_emb)
    if idx is not None:
        clip_emb, _ = features_of(clip_extractor, list(samples["path"]))
        neighbour = neighbour_pwatermark(idx, clip_emb, k, clip_extractor.key)
    else:
        neighbour = np.full(len(samples), np.nan)
    if invisible:
        found, messages, can = _invisible_columns(run, list(samples["path"]), _image_sizes(run, samples), progress)
    else:
        found, messages, can = [False] * len(samples), [""] * len(samples), [False] * len(samples)

    table = pd.DataFrame({
        "image_id": samples["image_id"].astype(str), "prompt_id": samples["prompt_id"].astype(str),
        "prompt": samples["prompt"].astype(str), "category": samples["category"].fillna("").astype(str),
        "guidance": samples["guidance"].astype(float), "path": samples["path"].astype(str),
        "visible_score": scores.astype(np.float64), "visible": scores >= wm_probe.threshold,
        "neighbour_pwatermark": neighbour.astype(np.float64),
        "invisible": np.asarray(found, bool), "invisible_message": messages,
        "invisible_checkable": np.asarray(can, bool),
    }, columns=COLUMNS)

    n_check = int(table["invisible_checkable"].sum())
    finite = np.isfinite(neighbour)
    summary = {
        "n_images": int(len(table)),
        "visible_rate": float(table["visible"].mean()),
        "threshold": float(wm_probe.threshold),
        "probe": probe_path.name,
        "invisible_rate": float(table.loc[table["invisible_checkable"], "invisible"].mean()) if n_check else None,
        "neighbour_pwatermark_mean": float(neighbour[finite].mean()) if finite.any() else None,
        "n_skipped": len(fs.skipped),
        "n_invisible_checkable": n_check,
        "extractor": probe_extractor.key,
        "clip": clip_extractor.key if clip_extractor is not None else None,
        "index": str(idx.folder) if idx is not None else None,
        "k": int(min(k, idx.n)) if idx is not None else None,
    }
    from audit.probes.watermark import PROBE

    C.write_table(run, C.WATERMARK_TABLE, table)
    PROBE.record(run, summary)
    return WatermarkResult(table, summary, wm_probe, how, tuple(tuple(s) for s in fs.skipped))
