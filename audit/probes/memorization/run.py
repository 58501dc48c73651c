"""Memorization audit: which generated images copy an image of the training index?

Two stages, as in Carlini et al. 2023 and Somepalli et al. 2023:

1. **Candidates**: the top-``k`` neighbours of every generated image by CLIP
   cosine in a LAION-style ``ClipIndex`` (``audit.index``), or in an index
   served by a clip-retrieval backend (``audit.index.remote_index.RemoteClipIndex``).
   The run's images are embedded with the index's own CLIP (its extractor key
   is checked, so a different model or dimension is refused; a remote backend
   cannot tell its CLIP, so there the caller must name it) through
   ``bench.features.extract_features``, cached under ``runs/<run>/features/``.
2. **Confirmation**: the stricter copy distance of ``audit.probes.memorization.copy_similarity``
   (tiled L2, max over a 4 x 4 grid, each tile aligned within 1 px) between the generated image and each
   candidate.  A (generation, neighbour) pair is a copy when

       clip_cosine >= threshold_cosine  and  copy_distance <= threshold_distance       (criterion "absolute")
       clip_cosine >= threshold_cosine  and  relative_distance <= threshold_relative   (criterion "relative")

   or both (criterion "both"), and an image is a copy when any of its top-``k``
   neighbours is.  ``relative_distance`` is Carlini et al.'s distance over
   alpha times the mean distance to the generation's n nearest distinct
   training images (``copy_similarity.relative_distances``), taken over a
   ``pool`` of CLIP candidates (the top-``k`` among them); ``n_within`` counts
   the pool's training images within ``threshold_distance``: a scene that
   matches hundreds of training images is a common scene, not a copy of one.
   The defaults come from the calibration on the built-in world's generations
   (``scripts/calibrate_audit.py``, ``docs/audit-calibration.md``).

Outputs (named by ``bench.contract``, docs/DESIGN.md §3), all written atomically:

* ``audit/memorization.parquet``: one row per (generated image, neighbour rank);
* ``audit/memorization_prompts.parquet``: per prompt ``n_images``, ``n_copies``,
  ``copy_rate``;
* ``audit/neighbours/<index row>.png``: the neighbour images (the top-1 of
  every image, and every confirmed copy);
* ``summary.json["memorization"]``: ``n_images``, ``n_copies``, ``copy_rate``,
  ``index``, ``method``, ``thresholds``.

Re-running replaces all of them; neighbour files no longer referenced are removed.
"""

from __future__ import annotations

import hashlib
import io
import logging
import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from audit.probes.memorization.copy_similarity import (GRID, RELATIVE_ALPHA, RELATIVE_N, SHIFT, SIDE, method_name,
                                                      relative_distances, tiled_l2, to_unit_array)
from audit.probes.base import load_run_samples
from bench import contract as C
from bench.atomic import atomic_write_bytes
from bench.errors import UserError

log = logging.getLogger("t2i_audit")


#: CLIP candidates per image.  The built-in 128-d evaluator CLIP ranks a copy's own
#: training image in its top 5 for only 0.93 of the simulated copies, in its top 20
#: for all of them (docs/audit-calibration.md); the tiled L2 of 20 candidates costs little.
DEFAULT_K = 20
#: Calibrated on the built-in world (docs/audit-calibration.md): the distance
#: with the highest F1 on the SIMULATED calibration split among those that flag at
#: most 1% of the real generator's fresh-prompt images on its calibration split
#: (0.135).  At the unconstrained max-F1 distance, 0.16, 2.1% of the real
#: generator's fresh images on the evaluation split were flagged: a generator that
#: draws a two-object prompt as one blob lands near a one-object training image.  The cosine gate is one 0.05 step below every true copy's
#: candidate: it only drops candidates CLIP already finds unrelated (fresh scenes
#: still reach cosine 0.99 with the built-in CLIP); the tiled-L2 distance is what
#: separates copies from look-alikes.  Re-run scripts/calibrate_audit.py on a
#: new generator or CLIP and update both.
DEFAULT_THRESHOLD_COSINE = 0.85
DEFAULT_THRESHOLD_DISTANCE = 0.135
#: CLIP candidates whose distances make Carlini's S (the n = 50 nearest distinct training images).  The
#: built-in world duplicates each iconic scene 110 times, so 50 distinct look-alikes of a copy lie beyond
#: rank 160; 200 leaves room.  The top-``k`` of the pool are the table's rows.
DEFAULT_POOL = 200
#: Chosen on generations of builtin:shapes-ldm against shapes-laion:20000 (docs/audit-calibration.md, "false
#: copies on generations"; scripts/calibrate_audit.py --probe false-copies --index-source shapes-laion:20000):
#: the largest value keeping every non-iconic category (fresh, stock_cue, no_cue, role, single_object; >= 200
#: images each) at or under 0.5% false copies on the calibration seed.  On the evaluation seed the worst category
#: was no_cue at 0.9% (2/216), against 20-52% for the absolute criterion alone.
DEFAULT_THRESHOLD_RELATIVE = 0.45
CRITERIA = ("absolute", "relative", "both")
#: Both criteria: the absolute distance keeps the pixel-level meaning of "copy", the relative one drops common
#: scenes (same calibration: the absolute verdict alone flagged 20-52% of single-object and role images).
DEFAULT_CRITERION = "both"
NEIGHBOUR_CHOICES = ("top1", "copies", "all")

TABLE_COLUMNS = list(C.MEMORIZATION_TABLE.columns)
PROMPT_COLUMNS = list(C.MEMORIZATION_PROMPTS_TABLE.columns)


@dataclass(frozen=True)
class MemorizationResult:
    table: pd.DataFrame      # memorization.parquet
    prompts: pd.DataFrame    # memorization_prompts.parquet
    summary: dict            # summary.json["memorization"]


def copy_verdict(clip_cosine, copy_distance, threshold_cosine: float, threshold_distance: float,
                 relative_distance=None, threshold_relative: float = DEFAULT_THRESHOLD_RELATIVE,
                 criterion: str = "absolute") -> np.ndarray:
    """The pair verdict: CLIP finds the neighbour close AND the tiled L2 confirms it, absolutely
    (``copy_distance``), relatively to the generation's look-alikes (``relative_distance``), or both.

    A NaN distance (neighbour image not available, or no look-alike to compare with) is never a copy."""
    if criterion not in CRITERIA:
        raise UserError(f"unknown criterion {criterion!r}; use one of {', '.join(CRITERIA)}")
    cos = np.asarray(clip_cosine, dtype=np.float64)
    dist = np.asarray(copy_distance, dtype=np.float64)
    rel = np.full(dist.shape, np.nan) if relative_distance is None else np.asarray(relative_distance, np.float64)
    with np.errstate(invalid="ignore"):
        absolute = dist <= threshold_distance
        relative = rel <= threshold_relative
        confirmed = {"absolute": absolute, "relative": relative, "both": absolute & relative}[criterion]
        return (cos >= threshold_cosine) & confirmed


def per_prompt_table(table: pd.DataFrame) -> pd.DataFrame:
    """memorization_prompts.parquet from memorization.parquet: an image counts once."""
    if table.empty:
        return pd.DataFrame(columns=PROMPT_COLUMNS)
    images = table.groupby("image_id", sort=True).agg(
        prompt_id=("prompt_id", "first"), prompt=("prompt", "first"), category=("category", "first"),
        is_copy=("is_copy", "any"))
    out = images.groupby("prompt_id", sort=True).agg(
        prompt=("prompt", "first"), category=("category", "first"),
        n_images=("is_copy", "size"), n_copies=("is_copy", "sum")).reset_index()
    out["n_images"] = out["n_images"].astype(np.int64)
    out["n_copies"] = out["n_copies"].astype(np.int64)
    out["copy_rate"] = out["n_copies"] / out["n_images"]
    return out[PROMPT_COLUMNS]




def _metadata_lookup(index, ids: np.ndarray) -> tuple[dict[int, str], dict[int, str]]:
    """Keys and captions of the retrieved rows (``key``/``caption`` columns when the index has them)."""
    wanted = sorted({int(i) for i in ids.ravel() if i >= 0})
    lookup = getattr(index, "metadata_for", None)
    if callable(lookup):
        # A remote index has no metadata table to slice, only the rows its answers
        # carried (RemoteClipIndex.metadata_for: one row per wanted id, in order).
        rows = lookup(wanted)
    else:
        # Read only the two columns needed when the index can list its columns (ClipIndex can).
        lister = getattr(index, "metadata_columns", None)
        columns = [c for c in ("key", "caption") if c in lister()] if callable(lister) else None
        meta = index.metadata(columns) if columns != [] else None
        rows = meta.iloc[wanted] if meta is not None else None
    keys = rows["key"].astype(str).tolist() if rows is not None and "key" in rows else [str(i) for i in wanted]
    caps = (rows["caption"].fillna("").astype(str).tolist() if rows is not None and "caption" in rows
            else [""] * len(wanted))
    return dict(zip(wanted, keys)), dict(zip(wanted, caps))


def _png(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    return buf.getvalue()




def audit_memorization(run, index, *, clip: str = "builtin", k: int = DEFAULT_K,
                       threshold_cosine: float = DEFAULT_THRESHOLD_COSINE,
                       threshold_distance: float = DEFAULT_THRESHOLD_DISTANCE,
                       threshold_relative: float = DEFAULT_THRESHOLD_RELATIVE, criterion: str = DEFAULT_CRITERION,
                       pool: int = DEFAULT_POOL, relative_n: int = RELATIVE_N,
                       neighbours: str = "top1", side: int = SIDE, grid: int = GRID, shift: int = SHIFT,
                       batch_size: int = 64, progress: bool = True) -> MemorizationResult:
    """Audit the images of run directory ``run`` against the ``ClipIndex`` folder ``index``
    (or an open index with ``ClipIndex``'s interface, e.g. ``audit.index.remote_index.RemoteClipIndex``
    over a clip-retrieval backend) and write the outputs listed in the module docstring.

    ``clip`` names the CLIP that embeds the run ("builtin" = the evaluator CLIP,
    or an extractor spec / open_clip MODEL@TAG); it must be the index's.  An index
    whose size is unknown (``n`` None: a remote backend) is asked for ``k``
    neighbours as is.  Outputs are written only at the end, so a failed search
    (e.g. ``RemoteQueryError``) leaves the previous outputs as they were.
    ``neighbours`` picks which neighbour images are saved: "top1" (the top-1
    of every image, plus every confirmed copy), "copies" (copies only) or "all".
    """
    from tqdm.auto import tqdm

    from audit.index import ClipIndex
    from bench.features import extract_features, get_extractor
    from bench.score import clip_extractor_spec

    if k < 1:
        raise UserError(f"k must be at least 1, got {k}")
    if pool < k:
        raise UserError(f"the candidate pool ({pool}) must hold at least the k = {k} neighbours; raise --pool")
    if relative_n < 1:
        raise UserError(f"relative n must be at least 1, got {relative_n}")
    if criterion not in CRITERIA:
        raise UserError(f"unknown criterion {criterion!r}; use one of {', '.join(CRITERIA)}")
    if neighbours not in NEIGHBOUR_CHOICES:
        raise UserError(f"unknown neighbours={neighbours!r}; use one of {', '.join(NEIGHBOUR_CHOICES)}")
    for name, v in (("threshold_cosine", threshold_cosine), ("threshold_distance", threshold_distance),
                    ("threshold_relative", threshold_relative)):
        if not (isinstance(v, (int, float)) and math.isfinite(v)):
            raise UserError(f"{name} must be a finite number, got {v!r}")
    run = Path(run)
    samples = load_run_samples(run)
    # A folder is opened here; an already open index (or anything with its interface) is used as is.
    idx = ClipIndex.open(index) if isinstance(index, (str, os.PathLike)) else index
    n_rows = getattr(idx, "n", None)  # None: size unknown (a remote backend does not say)
    if n_rows == 0:
        raise UserError(f"index '{idx.folder}' holds no images; build it from a non-empty source")
    extractor = get_extractor(clip_extractor_spec(clip))
    # Refuse a different CLIP before spending time on features.
    idx.check_query(extractor.key, extractor.dim)

    paths = [run / p for p in samples["path"]]
    fs = extract_features(paths, extractor, run / "features", batch_size=batch_size, progress=progress, root=run)
    kept = set(fs.paths)
    samples = samples[samples["path"].isin(kept)].reset_index(drop=True)
    if fs.skipped:
        log.warning("memorization: %d unreadable image(s) not audited, e.g. %s", len(fs.skipped), fs.skipped[0][0])
    if samples.empty:
        raise UserError(f"no image of run '{run}' could be read; regenerate or re-import the images")
    row_of = {p: i for i, p in enumerate(fs.paths)}
    queries = fs.features[[row_of[p] for p in samples["path"]]].astype(np.float32)

    k_eff = k if n_rows is None else min(k, n_rows)
    # The absolute criterion needs only the top k: a remote backend is then not asked for the whole pool.
    pool = k if criterion == "absolute" else pool
    pool_eff = pool if n_rows is None else min(pool, n_rows)
    scores, ids = idx.search(queries, pool_eff, modality="image", query_key=extractor.key)
    keys, captions = _metadata_lookup(idx, ids[:, :k_eff])
    method = method_name(grid, side, shift)

    # Candidates repeat across generations (a memorized image is everyone's top-1), so each index row is
    # loaded, converted and fingerprinted once; byte-identical rows share a fingerprint (one image in S).
    candidate_cache: dict[int, tuple[np.ndarray, bytes] | None] = {}
    neighbour_png: dict[int, np.ndarray] = {}

    def candidate(row_id: int):
        if row_id not in candidate_cache:
            img = idx.load_image(row_id)
            if img is None:
                candidate_cache[row_id] = None
            else:
                arr = np.asarray(img, dtype=np.uint8)
                candidate_cache[row_id] = (to_unit_array(arr, side), hashlib.blake2b(arr.tobytes(), digest_size=16).digest())
        return candidate_cache[row_id]

    rows: list[dict] = []
    missing: set[int] = set()
    with tqdm(total=len(samples), unit="img", desc="memorization", disable=not progress) as bar:
        for i, s in enumerate(samples.itertuples(index=False)):
            with Image.open(run / s.path) as im:
                gen = to_unit_array(im, side)
            valid = [r for r in range(pool_eff) if ids[i, r] >= 0]
            loaded = {r: candidate(int(ids[i, r])) for r in valid}
            missing.update(int(ids[i, r]) for r in valid if loaded[r] is None)
            # Each candidate's fingerprint; an unloadable one is its own group (its distance stays NaN).
            groups = np.array([loaded[r][1] if loaded.get(r) is not None else f"missing-{r}".encode()
                               for r in range(pool_eff)], dtype=object)
            # One distance per distinct image: duplicates of a fingerprint share it.
            by_print: dict[bytes, list[int]] = {}
            for r in valid:
                if loaded[r] is not None:
                    by_print.setdefault(loaded[r][1], []).append(r)
            dist = np.full(pool_eff, np.nan)
            if by_print:
                stack = np.stack([loaded[rs[0]][0] for rs in by_print.values()])
                values = np.atleast_1d(tiled_l2(np.broadcast_to(gen, stack.shape), stack, grid, shift))
                for rs, value in zip(by_print.values(), values):
                    dist[rs] = value
            rel = relative_distances(dist, groups, n=relative_n)
            n_within = int(np.sum(dist <= threshold_distance))
            verdicts = copy_verdict(scores[i, :pool_eff], dist, threshold_cosine, threshold_distance, rel,
                                    threshold_relative, criterion)
            for rank in range(k_eff):
                nid = int(ids[i, rank])
                if nid < 0:
                    continue
                entry = loaded.get(rank)
                is_copy = bool(verdicts[rank])
                save = entry is not None and (neighbours == "all" or is_copy or (neighbours == "top1" and rank == 0))
                if save and nid not in neighbour_png:  # a memorized image is many generations' neighbour
                    neighbour_png[nid] = np.asarray(idx.load_image(nid), dtype=np.uint8)
                rows.append({
                    "image_id": s.image_id, "prompt_id": s.prompt_id, "prompt": s.prompt,
                    "category": s.category, "guidance": float(s.guidance), "path": s.path, "rank": rank,
                    "neighbour_id": nid, "neighbour_key": keys.get(nid, str(nid)),
                    "neighbour_caption": captions.get(nid, ""),
                    "neighbour_path": f"{C.NEIGHBOURS_DIR}/{nid:09d}.png" if save else "",
                    "clip_cosine": float(scores[i, rank]), "copy_distance": float(dist[rank]),
                    "relative_distance": float(rel[rank]), "n_within": n_within,
                    "is_copy": is_copy, "criterion": criterion, "method": method,
                    "threshold_cosine": float(threshold_cosine), "threshold_distance": float(threshold_distance),
                    "threshold_relative": float(threshold_relative),
                })
            bar.update(1)
    if missing:
        log.warning("memorization: %d neighbour image(s) could not be loaded from the index; "
                    "their copy_distance is NaN and they are never copies", len(missing))

    table = pd.DataFrame(rows, columns=TABLE_COLUMNS)
    table = table.astype({"rank": np.int64, "neighbour_id": np.int64, "is_copy": bool, "n_within": np.int64,
                          "clip_cosine": np.float64, "copy_distance": np.float64, "relative_distance": np.float64})
    prompts = per_prompt_table(table)
    n_images = int(table["image_id"].nunique())
    n_copies = int(table.groupby("image_id")["is_copy"].any().sum()) if n_images else 0
    summary = {
        "n_images": n_images, "n_copies": n_copies, "copy_rate": n_copies / n_images if n_images else 0.0,
        "index": str(idx.folder), "method": method,
        "criterion": criterion,
        "thresholds": {"clip_cosine": float(threshold_cosine), "copy_distance": float(threshold_distance),
                       "relative_distance": float(threshold_relative), "k": int(k), "pool": int(pool),
                       "relative_n": int(relative_n), "relative_alpha": RELATIVE_ALPHA},
    }
    _write_outputs(run, table, prompts, summary, neighbour_png)
    return MemorizationResult(table, prompts, summary)


def _write_outputs(run: Path, table: pd.DataFrame, prompts: pd.DataFrame, summary: dict,
                   neighbour_png: dict[int, np.ndarray]) -> None:
    """Neighbour images first, then the tables, then summary.json, then stale neighbours go:
    a reader never finds a table row pointing at a missing file."""
    from audit.probes.memorization import PROBE

    folder = run / C.NEIGHBOURS_DIR
    folder.mkdir(parents=True, exist_ok=True)
    wanted = {f"{nid:09d}.png" for nid in neighbour_png}
    for nid, arr in neighbour_png.items():
        atomic_write_bytes(folder / f"{nid:09d}.png", _png(arr))
    C.write_table(run, C.MEMORIZATION_TABLE, table)
    C.write_table(run, C.MEMORIZATION_PROMPTS_TABLE, prompts)
    PROBE.record(run, summary)
    for stale in folder.glob("*.png"):
        if stale.name not in wanted:
            stale.unlink(missing_ok=True)
