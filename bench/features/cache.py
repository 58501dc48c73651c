"""Extract features once per image set and extractor, and cache them on disk.

``extract_features(paths, extractor, cache_dir)`` writes two files:

* ``<cache_dir>/<extractor key>__<image-set hash>.npy``: float32 [N, d], rows in
  the sorted order of the images' relative paths;
* ``<same name>.json``: the npy's sha256 (a truncated or altered cache is detected and rebuilt), the row
  paths, skipped images (with reasons), conversion
  counts and the extractor key.

The image-set hash is the sha256 of the sorted list of (relative path, file
sha256), so any changed, added or removed image gives a new cache file, while
moving the whole folder or listing the files in another order does not.  Both
files are written atomically (temporary name, then rename); the ``.npy`` is
written last and marks a complete entry.

Each image is decoded once; every file is hashed first (a sequential read, far
cheaper than decoding and embedding) so that a cache hit decodes nothing.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
from collections import Counter
from pathlib import Path
from typing import Sequence

import numpy as np

from bench import distributed
from bench.atomic import atomic_write_bytes, atomic_write_text
from bench.cache import sha256_file
from bench.errors import UserError
from bench.features.base import FeatureExtractor, FeatureSet
from bench.features.images import ImageProblem, load_image

log = logging.getLogger("t2i_audit")


def relative_paths(paths: Sequence[Path], root: Path) -> list[str]:
    out = []
    for p in paths:
        try:
            out.append(p.resolve().relative_to(root).as_posix())
        except ValueError:
            raise UserError(
                f"image {p} is not under the root folder {root}: pass root= a folder holding all images"
            ) from None
    return out


def image_set_hash(rel_paths: Sequence[str], file_hashes: Sequence[str]) -> str:
    """sha256 over the sorted "relative path<TAB>file sha256" lines."""
    lines = sorted(f"{r}\t{h}" for r, h in zip(rel_paths, file_hashes))
    return hashlib.sha256("\n".join(lines).encode("utf-8")).hexdigest()


def cache_file_for(cache_dir: str | Path, key: str, set_hash: str) -> Path:
    return Path(cache_dir) / f"{key}__{set_hash[:16]}.npy"


def _read_cache(npy: Path, key: str, set_hash: str) -> tuple[np.ndarray, dict] | None:
    meta_path = npy.with_suffix(".json")
    if not (npy.is_file() and meta_path.is_file()):
        return None
    try:
        meta = json.loads(meta_path.read_text())
        feats = np.load(npy, allow_pickle=False, mmap_mode="r")  # memory-mapped: metrics read it in blocks
    except (OSError, ValueError) as e:
        log.warning("ignoring unreadable feature cache %s (%s)", npy, e)
        return None
    if (
        meta.get("extractor") != key
        or meta.get("image_set_sha256") != set_hash
        or feats.shape[0] != len(meta.get("paths", ()))
    ):
        log.warning("ignoring inconsistent feature cache %s", npy)
        return None
    expected = meta.get("features_sha256")  # absent in caches written before the checksum: trusted as before
    if expected is not None and sha256_file(npy) != expected:
        log.warning("feature cache %s is damaged (its checksum does not match: truncated or altered); "
                    "extracting the features again", npy)
        return None
    return feats, meta


def extract_features(
    image_paths: Sequence[str | os.PathLike],
    extractor: FeatureExtractor,
    cache_dir: str | os.PathLike | None,
    batch_size: int = 32,
    progress: bool = True,
    root: str | os.PathLike | None = None,
) -> FeatureSet:
    """Features of ``image_paths`` by ``extractor``, from the cache or computed and cached.

    ``root`` is the folder that relative paths (in the image-set hash and the
    result) are taken from; default: the images' common parent folder.
    ``cache_dir=None`` disables caching.  Unreadable images are skipped and listed
    in ``result.skipped``; the rows of ``result.features`` follow the order of
    ``image_paths`` minus the skipped ones (``result.paths``).  Images that were
    not 8-bit RGB are converted (see ``bench.features.images``) and counted in
    ``result.converted``.  Rows do not depend on ``batch_size`` beyond CPU/GPU
    kernel rounding (~1e-6).
    """
    if batch_size < 1:
        raise UserError(f"batch size must be >= 1, got {batch_size}")
    paths = [Path(p) for p in image_paths]
    if not paths:
        raise UserError("no images to extract features from: check the image folder or samples table")
    root_path = (
        Path(root).resolve() if root is not None else Path(os.path.commonpath([p.resolve().parent for p in paths]))
    )
    rels = relative_paths(paths, root_path)
    by_rel = dict(zip(rels, paths))
    unique = sorted(by_rel)

    hashes = []
    missing = []
    for r in unique:
        try:
            hashes.append(sha256_file(by_rel[r]))
        except OSError as e:
            hashes.append("unreadable")
            missing.append((r, f"cannot read file: {e.strerror or e}"))
    set_hash = image_set_hash(unique, hashes)
    npy = cache_file_for(cache_dir, extractor.key, set_hash) if cache_dir is not None else None

    processes = distributed.current()  # several processes (torchrun, accelerate launch): docs/scale.md
    cached = _read_cache(npy, extractor.key, set_hash) if npy is not None else None
    if processes.multi and not all(processes.gather([cached is not None])):
        cached = None  # every rank computes its share, or none does
    if cached is not None:
        feats, meta = cached
        from_cache = True
    else:
        feats, meta = _compute(unique, by_rel, dict(missing), extractor, batch_size, progress, processes)
        meta["extractor"] = extractor.key
        meta["image_set_sha256"] = set_hash
        from_cache = False
        if npy is not None and processes.is_main:  # every rank holds the gathered features; rank 0 writes them
            # The json (with the npy's checksum) first, the npy last: the npy's presence marks a complete entry.
            buffer = io.BytesIO()
            np.save(buffer, feats, allow_pickle=False)
            meta["features_sha256"] = hashlib.sha256(buffer.getbuffer()).hexdigest()
            atomic_write_text(npy.with_suffix(".json"), json.dumps(meta, indent=1, sort_keys=True))
            atomic_write_bytes(npy, buffer.getvalue())
        processes.wait()  # the next call (e.g. the same run as its own reference) finds the cache on every rank

    skipped = [tuple(s) for s in meta["skipped"]]
    converted = dict(meta["converted"])
    if skipped:
        log.warning("skipped %d unreadable image(s), e.g. %s: %s", len(skipped), skipped[0][0], skipped[0][1])
    if converted:
        log.info("converted %d image(s) to 8-bit RGB: %s", sum(converted.values()), converted)

    # Back from the canonical (sorted) row order to the caller's order.
    row_of = {r: i for i, r in enumerate(meta["paths"])}
    kept = [r for r in rels if r in row_of]
    out = feats[[row_of[r] for r in kept]] if kept else feats[:0]
    return FeatureSet(
        features=out,
        extractor=extractor.key,
        paths=tuple(kept),
        skipped=tuple(skipped),
        converted=converted,
        cache_file=str(npy) if npy is not None else None,
        from_cache=from_cache,
    )


def _compute(
    unique: list[str],
    by_rel: dict[str, Path],
    missing: dict[str, str],
    extractor: FeatureExtractor,
    batch_size: int,
    progress: bool,
    processes: "distributed.Processes | None" = None,
) -> tuple[np.ndarray, dict]:
    """Features of the fixed batches of ``unique`` (sorted); with several processes each computes its
    contiguous share of the batches and the shares are gathered back in batch order, so the result is
    the one a single process computes, byte for byte."""
    from tqdm.auto import tqdm

    processes = processes or distributed.Processes()
    rows: list[np.ndarray] = []
    kept: list[str] = []
    skipped: list[tuple[str, str]] = []
    converted: Counter[str] = Counter()
    done = []  # (start, rels, features or None, skipped, conversion notes) per batch of this rank
    with processes.split(range(0, len(unique), batch_size)) as mine, tqdm(
            total=sum(min(batch_size, len(unique) - s) for s in mine), unit="img",
            desc=f"features {extractor.name}", disable=not progress or not processes.is_main) as bar:
        for start in mine:
            batch_rels, batch_imgs, batch_skipped, notes = [], [], [], []
            for r in unique[start : start + batch_size]:
                if r in missing:
                    batch_skipped.append((r, missing[r]))
                    continue
                try:
                    arr, note = load_image(by_rel[r])
                except ImageProblem as e:
                    batch_skipped.append((r, str(e)))
                    continue
                if note:
                    notes.append(note)
                batch_rels.append(r)
                batch_imgs.append(arr)
            feats = None
            if batch_imgs:
                feats = np.asarray(extractor(batch_imgs), dtype=np.float32)
                if feats.shape != (len(batch_imgs), extractor.dim):
                    raise RuntimeError(
                        f"extractor {extractor.key} returned {feats.shape}, "
                        f"expected ({len(batch_imgs)}, {extractor.dim})"
                    )
            done.append((start, batch_rels, feats, batch_skipped, notes))
            bar.update(min(batch_size, len(unique) - start))
    for _, batch_rels, feats, batch_skipped, notes in sorted(processes.gather(done), key=lambda d: d[0]):
        skipped.extend(batch_skipped)
        converted.update(notes)
        if feats is not None:
            rows.append(feats)
            kept.extend(batch_rels)
    feats = np.concatenate(rows) if rows else np.zeros((0, extractor.dim), np.float32)
    meta = {"paths": kept, "skipped": skipped, "converted": dict(sorted(converted.items()))}
    return feats, meta
