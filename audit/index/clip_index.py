"""A LAION-style CLIP index in clip-retrieval's folder layout (docs/DESIGN.md §5).

Layout (the file names clip-retrieval's ``inference`` writer and ``index`` /
``back`` commands use, so either tool can read the other's folders)::

    <folder>/img_emb/img_emb_<i>.npy       image embeddings, float16, L2-normalised
    <folder>/text_emb/text_emb_<i>.npy     caption embeddings (when there are captions)
    <folder>/metadata/metadata_<i>.parquet one row per embedding, same order
    <folder>/image.index, text.index       faiss indexes, inner product (= cosine)
    <folder>/image.json, text.json         autofaiss' index infos (autofaiss builds only)
    <folder>/t2i_index.json                ours: CLIP extractor key, dim, preprocessing,
                                           index type, source, row count

``t2i_index.json`` is what lets a query be refused when it comes from another
CLIP: cosine similarities between two models' embedding spaces mean nothing,
and nothing in the embeddings themselves would show the mistake.

Search: ``faiss`` ``IndexFlatIP`` (exact) for small sets, or an ``autofaiss``
index (IVF/HNSW/PQ chosen under a memory budget) for large ones.  When the faiss
index compresses the vectors (PQ, SQ), the returned scores are recomputed from
the stored float16 embeddings, so flat and approximate indexes report the same
cosine for the same pair (approximate indexes only change *which* rows come back).

A folder clip-retrieval built (``clip-retrieval index``) opens too: it has
``image.index``/``text.index`` and ``metadata/`` but no ``t2i_index.json``, so
its model is unknown and only the dimension can be checked.  A bare
``clip-retrieval inference`` output (``img_emb/`` without ``image.index``) is
searched exactly, with a flat index built in memory.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from bench.errors import UserError

log = logging.getLogger("t2i_audit")

IMG_EMB, TEXT_EMB, METADATA = "img_emb", "text_emb", "metadata"
IMAGE_INDEX, TEXT_INDEX = "image.index", "text.index"
INFO_FILE = "t2i_index.json"
INFO_FORMAT = "t2i-audit clip index"
INFO_VERSION = 1
INDEX_TYPES = ("auto", "flat", "autofaiss")
#: "auto" uses exact search below this many rows (a flat 100k x 768 index is 300 MB
#: and answers a query in a few ms; beyond that autofaiss' compressed indexes pay off).
FLAT_MAX_ROWS = 100_000
#: An approximate (PQ / SQ) index is asked for k x RERANK_FACTOR candidates, which are
#: re-scored exactly from the stored embeddings and cut to the top k.  Compressed codes
#: rank close neighbours only roughly (docs/scale.md measures it: 1M clustered vectors,
#: PQ64 codes, recall@10 0.50 from the codes alone, at every nprobe), while the true top
#: 10 are almost always among the top 100 candidates.
RERANK_FACTOR = 10
#: Rows per img_emb/text_emb/metadata shard (clip-retrieval writes one per partition).
SHARD_ROWS = 100_000
MODALITIES = ("image", "text")
_SHARD_NUMBER = re.compile(r"_(\d+)$")


def _shards(folder: Path, prefix: str, suffix: str) -> list[Path]:
    """``<prefix>_<i><suffix>`` files in name order.

    Name order, not numeric: an index that autofaiss built from an embeddings folder
    (``clip-retrieval index``) numbers its rows in the order embedding-reader reads the
    files, which is sorted by name (``embedding_reader.get_file_list``).  Both orders agree for zero-padded names (what clip-retrieval and ``write_index_folder``
    write); for unpadded ones (img_emb_10 before img_emb_2) name order is the one that
    matches the faiss ids."""
    files = [p for p in folder.glob(f"{prefix}_*{suffix}") if _SHARD_NUMBER.search(p.stem)]
    return sorted(files, key=lambda p: p.name)


def _rows_of_npy(files: list[Path]) -> tuple[int, int | None]:
    """(total rows, dim) of .npy shards, read from their headers only."""
    n, dim = 0, None
    for f in files:
        try:
            arr = np.load(f, mmap_mode="r")
        except (OSError, ValueError) as e:
            raise UserError(f"cannot read embeddings {f} ({type(e).__name__}); rebuild the index") from e
        if arr.ndim != 2:
            raise UserError(f"embeddings {f} have shape {arr.shape}, expected [rows, dim]; rebuild the index")
        if arr.dtype.kind != "f":  # integer or object rows are not CLIP embeddings (clip-retrieval writes float16/32)
            raise UserError(f"embeddings {f} are {arr.dtype}, expected float16 or float32 CLIP embeddings; "
                            f"rebuild the index")
        if dim is not None and arr.shape[1] != dim:
            raise UserError(f"embedding shards in {f.parent} disagree on the dimension ({dim} vs {arr.shape[1]} in "
                            f"{f.name}); rebuild the index")
        n, dim = n + arr.shape[0], arr.shape[1]
    return n, dim


class ShardRows:
    """Rows of ``img_emb_<i>.npy`` shards by global row id, each shard memory-mapped.

    Re-ranking reads only the candidates' rows, so an index folder far larger
    than RAM (LAION-5B's float16 ViT-L/14 embeddings are 7.7 TB) is re-scored
    from disk without being loaded.
    """

    def __init__(self, files: list[Path]):
        self.shards = [np.load(f, mmap_mode="r") for f in files]
        self.starts = np.cumsum([0] + [len(a) for a in self.shards])

    def take(self, ids: np.ndarray) -> np.ndarray:
        """float32 rows [len(ids), d] for valid row ids (0 <= id < total)."""
        ids = np.asarray(ids, dtype=np.int64)
        shard = np.searchsorted(self.starts, ids, side="right") - 1
        out = np.empty((len(ids), self.shards[0].shape[1]), dtype=np.float32)
        for s in np.unique(shard):
            rows = shard == s
            local = ids[rows] - self.starts[s]
            order = np.argsort(local)  # ascending offsets: sequential-ish reads of the memory map
            out[np.flatnonzero(rows)[order]] = self.shards[s][local[order]]
        return out


#: Queries re-ranked per task of ``exact_rerank``'s thread pool.
RERANK_BLOCK = 64


def _rerank_block(queries: np.ndarray, ids: np.ndarray, rows: ShardRows) -> tuple[np.ndarray, np.ndarray]:
    found = ids >= 0
    vectors = rows.take(np.where(found, ids, 0).ravel()).reshape(*ids.shape, -1)
    scores = np.einsum("qd,qkd->qk", queries, vectors)
    scores[~found] = -np.inf
    order = np.argsort(-scores, axis=1, kind="stable")
    return np.take_along_axis(scores, order, 1), np.take_along_axis(ids, order, 1)


def exact_rerank(queries: np.ndarray, ids: np.ndarray, rows: ShardRows,
                 threads: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Exact cosines of each query's candidate rows (id -1 = none), re-sorted best first.

    Blocks of ``RERANK_BLOCK`` queries run on a thread pool of ``threads`` workers (default: faiss'
    OpenMP thread count, the one the search itself used): the gathers from the memory-mapped shards,
    the float16 -> float32 casts, the products and the sorts all release the GIL, so the re-ranking
    uses every core the search does instead of one (docs/perf.md)."""
    queries = np.asarray(queries, np.float32)
    if threads is None:
        try:
            import faiss

            threads = faiss.omp_get_max_threads()
        except ImportError:  # pragma: no cover - faiss is a core dependency
            threads = os.cpu_count() or 1
    blocks = [slice(s, s + RERANK_BLOCK) for s in range(0, len(ids), RERANK_BLOCK)]
    if threads <= 1 or len(blocks) <= 1:
        return _rerank_block(queries, ids, rows)
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=min(threads, len(blocks))) as pool:
        parts = list(pool.map(lambda b: _rerank_block(queries[b], ids[b], rows), blocks))
    return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])


def _load_npy(files: list[Path]) -> np.ndarray:
    arrays = [np.load(f, mmap_mode="r") for f in files]
    # One shard stays memory-mapped; several are concatenated (read once).
    return arrays[0] if len(arrays) == 1 else np.concatenate(arrays)


def is_index_folder(folder: str | os.PathLike) -> bool:
    """Whether ``folder`` looks like a clip-retrieval / t2i-audit index (or embeddings) folder."""
    folder = Path(folder)
    return (folder / INFO_FILE).is_file() or (folder / IMAGE_INDEX).is_file() or (folder / IMG_EMB).is_dir()


def _exact_distances(index) -> bool:
    """Whether faiss returns exact inner products for this index (no PQ/SQ compression of the vectors)."""
    import faiss

    exact = (faiss.IndexFlat, faiss.IndexHNSWFlat, faiss.IndexIVFFlat, faiss.IndexRefineFlat)
    return isinstance(faiss.downcast_index(index), exact)


class ClipIndex:
    """An opened index folder.  ``open`` checks it; searches and reads are lazy."""

    folder: Path
    dim: int
    n: int
    model_key: str | None
    info: dict

    def __init__(self, folder: Path, dim: int, n: int, info: dict, emb_files: dict[str, list[Path]],
                 index_files: dict[str, Path], metadata_files: list[Path], faiss_indexes: dict[str, Any]):
        self.folder = folder
        self.dim = dim
        self.n = n
        self.info = info
        self.model_key = info.get("model_key")
        self._emb_files = emb_files
        self._index_files = index_files
        self._metadata_files = metadata_files
        # Read once in ``open`` (a LAION-scale index file is gigabytes), tuned here.
        self._faiss: dict[str, Any] = {m: self._tuned(index, m) for m, index in faiss_indexes.items()}
        self._embeddings: dict[str, np.ndarray] = {}
        self._shard_rows: dict[str, ShardRows] = {}  # memory-mapped shards for re-ranking
        self._metadata: pd.DataFrame | None = None

    # ------------------------------------------------------------------ open

    @classmethod
    def open(cls, folder) -> "ClipIndex":
        """Open and check an index folder (ours or clip-retrieval's).

        Refused with ``UserError``: a missing folder, one with no embeddings or
        faiss index, 0 rows, metadata rows that do not align with the embeddings,
        and dimensions that disagree (embeddings, faiss index, ``t2i_index.json``).
        """
        import faiss

        folder = Path(folder).expanduser()
        if not folder.is_dir():
            raise UserError(f"index folder {folder} does not exist; build one with `t2i-audit index build`")
        info: dict = {}
        if (folder / INFO_FILE).is_file():
            try:
                info = json.loads((folder / INFO_FILE).read_text())
            except ValueError as e:
                raise UserError(f"{folder / INFO_FILE} is not valid JSON ({e.msg}); rebuild the index") from e
        emb_files = {"image": _shards(folder / IMG_EMB, IMG_EMB, ".npy"),
                     "text": _shards(folder / TEXT_EMB, TEXT_EMB, ".npy")}
        index_files = {m: folder / name for m, name in (("image", IMAGE_INDEX), ("text", TEXT_INDEX))
                       if (folder / name).is_file()}
        metadata_files = _shards(folder / METADATA, METADATA, ".parquet")
        if not metadata_files and (folder / METADATA).is_dir():
            # clip-retrieval's metadata readers take every parquet file in name order.
            metadata_files = sorted((folder / METADATA).glob("*.parquet"))
        if not emb_files["image"] and "image" not in index_files:
            raise UserError(f"{folder} has no image embeddings ({IMG_EMB}/{IMG_EMB}_0.npy) and no {IMAGE_INDEX}; "
                            f"it is not a CLIP index: build one with `t2i-audit index build SOURCE --out {folder}`")

        counts: dict[str, tuple[int, int | None]] = {}
        faiss_indexes: dict[str, Any] = {}
        for modality in MODALITIES:
            if emb_files[modality]:
                counts[f"{modality} embeddings"] = _rows_of_npy(emb_files[modality])
            if modality in index_files:
                try:
                    index = faiss.read_index(str(index_files[modality]))
                except RuntimeError as e:
                    raise UserError(f"cannot read faiss index {index_files[modality]} "
                                    f"({str(e).strip().splitlines()[-1][:160]}); rebuild the index") from e
                counts[f"{modality} index"] = (int(index.ntotal), int(index.d))
                faiss_indexes[modality] = index
        image_n = counts.get("image embeddings", counts.get("image index"))[0]
        if image_n == 0:
            raise UserError(f"index {folder} is empty (0 rows); build it from a source with images")
        dims = {what: d for what, (_, d) in counts.items() if d is not None}
        if info.get("dim") is not None:
            dims[INFO_FILE] = int(info["dim"])
        if len(set(dims.values())) > 1:
            raise UserError(f"dimensions disagree in {folder}: "
                            + ", ".join(f"{k} {v}" for k, v in dims.items()) + "; rebuild the index")
        rows = {what: n for what, (n, _) in counts.items()}
        if metadata_files:
            import pyarrow.parquet as pq

            try:
                rows["metadata"] = sum(pq.ParquetFile(f).metadata.num_rows for f in metadata_files)
            except (OSError, ValueError) as e:
                raise UserError(f"cannot read metadata in {folder / METADATA} ({type(e).__name__}); rebuild the index") from e
        if len(set(rows.values())) > 1:
            raise UserError(f"rows do not align in {folder}: " + ", ".join(f"{k} {v}" for k, v in rows.items())
                            + "; metadata row i must describe embedding i: rebuild the index")
        if info.get("n") is not None and int(info["n"]) != image_n:
            raise UserError(f"{INFO_FILE} says {info['n']} rows but {folder} holds {image_n}; rebuild the index")
        return cls(folder, int(next(iter(dims.values()))), int(image_n), info, emb_files, index_files, metadata_files,
                   faiss_indexes)

    # ------------------------------------------------------------------ describe

    @property
    def index_type(self) -> str:
        """'flat', 'autofaiss (<faiss index key>)' or, for foreign folders, what the files say."""
        if self.info.get("index_type"):
            key = self.info.get("faiss_index_key")
            return self.info["index_type"] + (f" ({key})" if key and self.info["index_type"] != "flat" else "")
        infos = self.folder / "image.json"  # autofaiss' infos, next to clip-retrieval's image.index
        if infos.is_file():
            try:
                return f"autofaiss ({json.loads(infos.read_text()).get('index_key', 'unknown key')})"
            except ValueError:
                pass
        if "image" in self._index_files:
            return type(self._faiss_index("image")).__name__
        return "flat (built in memory from img_emb)"

    @property
    def modalities(self) -> tuple[str, ...]:
        """Which of 'image' / 'text' can be searched."""
        return tuple(m for m in MODALITIES if self._emb_files[m] or m in self._index_files)

    def metadata_columns(self) -> list[str]:
        if not self._metadata_files:
            return []
        import pyarrow.parquet as pq

        return list(pq.read_schema(self._metadata_files[0]).names)

    def describe(self) -> dict[str, Any]:
        """What ``t2i-audit index open`` prints."""
        return {"folder": str(self.folder), "rows": self.n, "dim": self.dim,
                "model": self.model_key or f"unknown (no {INFO_FILE})", "index_type": self.index_type,
                "modalities": list(self.modalities), "metadata_columns": self.metadata_columns(),
                "source": self.info.get("source", "unknown")}

    # ------------------------------------------------------------------ data

    def metadata(self, columns=None) -> pd.DataFrame:
        """Metadata rows; row i describes embedding i (all columns, or ``columns``)."""
        if self._metadata is None:
            if self._metadata_files:
                self._metadata = pd.concat([pd.read_parquet(f) for f in self._metadata_files], ignore_index=True)
            else:
                self._metadata = pd.DataFrame(index=pd.RangeIndex(self.n))
        if columns is None:
            return self._metadata
        missing = [c for c in columns if c not in self._metadata.columns]
        if missing:
            raise UserError(f"index {self.folder} metadata has no column(s) {', '.join(missing)} "
                            f"(it has {', '.join(self._metadata.columns) or 'none'})")
        return self._metadata[list(columns)]

    def embeddings(self, modality: str = "image") -> np.ndarray:
        """Stored embeddings [n, d] (float16 for our folders); reconstructed from faiss when absent."""
        if modality not in self._embeddings:
            if self._emb_files[modality]:
                self._embeddings[modality] = _load_npy(self._emb_files[modality])
            elif modality in self._index_files:
                self._embeddings[modality] = self._reconstruct(modality)
            else:
                raise UserError(f"index {self.folder} has no {modality} embeddings; "
                                f"searchable: {', '.join(self.modalities)}")
        return self._embeddings[modality]

    def image_embeddings(self) -> np.ndarray:
        """Image embeddings [n, d]."""
        return self.embeddings("image")

    def _reconstruct(self, modality: str) -> np.ndarray:
        import faiss

        index = self._faiss_index(modality)
        try:
            try:
                faiss.extract_index_ivf(index).make_direct_map()  # IVF indexes need the id -> list map
            except RuntimeError:
                pass  # not an IVF index
            return index.reconstruct_n(0, index.ntotal)
        except RuntimeError as e:
            raise UserError(f"{self.folder / self._index_files[modality].name} cannot return its vectors "
                            f"and the folder has no {IMG_EMB if modality == 'image' else TEXT_EMB}/; copy the "
                            f"embeddings folder of clip-retrieval inference next to it") from e

    def _faiss_index(self, modality: str):
        """The faiss index of a modality; a flat one is built in memory for a folder with embeddings only."""
        import faiss

        if modality not in self._faiss:
            index = faiss.IndexFlatIP(self.dim)
            index.add(np.ascontiguousarray(self.embeddings(modality), dtype=np.float32))
            self._faiss[modality] = index
        return self._faiss[modality]

    def _tuned(self, index, modality: str):
        import faiss

        param = self._index_param(modality)
        if param:
            # autofaiss tunes search parameters (nprobe, efSearch...) and records them in its
            # infos (<modality>.json); faiss does not keep all of them in the index file.
            faiss.ParameterSpace().set_index_parameters(index, param)
        return index

    def _index_param(self, modality: str) -> str | None:
        infos = self.folder / f"{modality}.json"
        if infos.is_file():
            try:
                return json.loads(infos.read_text()).get("index_param") or None
            except ValueError:
                return None
        return None

    # ------------------------------------------------------------------ query

    def check_query(self, query_key: str | None, dim: int) -> None:
        """Refuse queries from another CLIP (extractor key) or of another dimension.

        Keys are compared on model, weights hash and preprocessing; the dtype
        field is not compared (the index is float16 whatever computed it).  An
        index without ``t2i_index.json`` has no key, so only ``dim`` is checked;
        ``query_key=None`` (raw vectors) skips the key check.
        """
        if int(dim) != self.dim:
            made = f" made with {self.model_key}" if self.model_key else ""
            raise UserError(f"queries have dimension {dim} but index {self.folder}{made} has dimension {self.dim}; "
                            f"query it with the CLIP that built it")
        if query_key and self.model_key and query_key.split("__")[:3] != self.model_key.split("__")[:3]:
            raise UserError(f"index {self.folder} was built with CLIP {self.model_key}, not {query_key}; "
                            f"query it with --clip naming the same model, or rebuild the index with yours")

    def search(self, queries, k, *, modality="image", query_key=None) -> tuple[np.ndarray, np.ndarray]:
        """k nearest rows by cosine for each L2-normalised query vector.

        Returns (scores float32 [q, k], row ids int64 [q, k]); where the index has
        fewer than k rows (or an approximate index finds fewer), ids are -1 and
        scores NaN.  ``modality`` picks the image or caption embeddings.
        """
        if modality not in MODALITIES:
            raise UserError(f"unknown modality {modality!r}: use image or text")
        if modality not in self.modalities:
            raise UserError(f"index {self.folder} has no {modality} index (it has {', '.join(self.modalities)}); "
                            f"build it from a source with captions to search captions")
        q = np.asarray(queries, dtype=np.float32)
        if q.ndim == 1:
            q = q[None]
        if q.ndim != 2:
            raise UserError(f"queries must be a [q, d] array, got shape {q.shape}")
        self.check_query(query_key, q.shape[1])
        if int(k) < 1:
            raise UserError(f"k must be >= 1, got {k}")
        k = int(k)
        q = np.ascontiguousarray(q)
        index = self._faiss_index(modality)
        rerank = bool(self._emb_files[modality]) and not _exact_distances(index)
        scores, ids = index.search(q, min(k * RERANK_FACTOR if rerank else k, self.n))
        ids = ids.astype(np.int64)
        if rerank:
            scores, ids = self._exact_scores(q, ids, modality)
            scores, ids = scores[:, :k], ids[:, :k]
        scores = np.where(ids >= 0, scores, np.nan).astype(np.float32)
        if ids.shape[1] < k:
            pad = k - ids.shape[1]
            ids = np.pad(ids, ((0, 0), (0, pad)), constant_values=-1)
            scores = np.pad(scores, ((0, 0), (0, pad)), constant_values=np.nan)
        return scores, ids

    def _exact_scores(self, q: np.ndarray, ids: np.ndarray, modality: str) -> tuple[np.ndarray, np.ndarray]:
        """Cosines of the candidates from the stored embeddings, re-sorted (best first)."""
        if modality not in self._shard_rows:
            self._shard_rows[modality] = ShardRows(self._emb_files[modality])
        return exact_rerank(q, ids, self._shard_rows[modality])

    def load_image(self, row_id: int) -> np.ndarray | None:
        """The indexed image of row ``row_id`` as HWC uint8 RGB, or None when it cannot be found.

        From the metadata's ``image_path`` (absolute, or relative to the index
        folder), a webdataset member (``tar_path`` + ``tar_member``), or the
        shapes world (``spec`` column, rendered with ``bench.world``).
        """
        from bench.features.images import ImageProblem, load_image, load_image_bytes

        row_id = int(row_id)
        if not 0 <= row_id < self.n:
            raise UserError(f"row {row_id} is outside index {self.folder} (0..{self.n - 1})")
        row = self.metadata().iloc[row_id]
        try:
            path = row.get("image_path")
            if isinstance(path, str) and path:
                p = Path(path).expanduser()
                p = p if p.is_absolute() else self.folder / p
                if p.is_file():
                    return load_image(p)[0]
            tar_path, member = row.get("tar_path"), row.get("tar_member")
            if isinstance(tar_path, str) and isinstance(member, str) and Path(tar_path).is_file():
                import tarfile  # random access to one member: the stdlib's job, not webdataset's (a stream)

                with tarfile.open(tar_path) as tar:
                    f = tar.extractfile(member)
                    if f is not None:
                        return load_image_bytes(f.read())[0]
            spec = row.get("spec")
            if isinstance(spec, str) and spec:
                from bench.world.corpus import render_row

                width = row.get("width")
                size = int(width) if width is not None and pd.notna(width) else None
                return np.asarray(render_row({"spec": spec, "width": size or 64}).convert("RGB"))
        except (ImageProblem, KeyError, OSError, ValueError) as e:
            log.warning("cannot load the image of index row %d (%s)", row_id, e)
        return None


# ---------------------------------------------------------------------- build

def _faiss_flat(embeddings: np.ndarray):
    import faiss

    index = faiss.IndexFlatIP(embeddings.shape[1])
    index.add(np.ascontiguousarray(embeddings, dtype=np.float32))
    return index


def write_faiss_index(embeddings: np.ndarray, folder: Path, name: str, index_type: str,
                      max_index_memory: str = "1G", progress: bool = False) -> str:
    """Write ``<folder>/<name>.index`` for ``embeddings`` ([n, d], L2-normalised); returns the faiss index key.

    ``flat``: exact ``IndexFlatIP``.  ``autofaiss``: ``autofaiss.build_index``
    picks and tunes an index under ``max_index_memory`` (it also writes
    ``<name>.json``, its infos, as ``clip-retrieval index`` does).
    """
    import faiss

    if index_type == "flat":
        faiss.write_index(_faiss_flat(embeddings), str(folder / f"{name}.index"))
        return "Flat"
    from autofaiss import build_index as autofaiss_build_index

    from audit.index.faiss_compat import accept_autofaiss_opq_keyword

    accept_autofaiss_opq_keyword()  # autofaiss picks OPQ keys for large sets
    # autofaiss sizes its training set by this; a quarter of RAM leaves room for
    # whatever else the machine does.
    available = f"{max(1, int(os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') / 4 / 2**30))}G"
    _, infos = autofaiss_build_index(
        embeddings=np.ascontiguousarray(embeddings, dtype=np.float32),
        index_path=str(folder / f"{name}.index"), index_infos_path=str(folder / f"{name}.json"),
        max_index_memory_usage=max_index_memory, current_memory_available=available, metric_type="ip",
        verbose=logging.INFO if progress else logging.ERROR,
    )
    if not (folder / f"{name}.index").is_file():
        raise UserError(f"autofaiss could not build an index of {len(embeddings)} vectors within "
                        f"{max_index_memory}; raise --max-index-memory or use --index-type flat")
    return str((infos or {}).get("index_key", "unknown"))


def check_memory(text: str) -> str:
    """Validate a memory budget like '1G' / '512M' with autofaiss' own parser."""
    from autofaiss.utils.cast import cast_memory_to_bytes

    try:
        cast_memory_to_bytes(str(text))
    except ValueError:
        raise UserError(f"'{text}' is not a memory size; use e.g. 512M, 1G or 4G") from None
    return str(text)


def _resolve_extractor(extractor, device: str = "cpu"):
    """An extractor object, or a ``--clip`` spec ('builtin', MODEL@TAG, clip:...) -> (extractor, spec or None)."""
    if isinstance(extractor, str):
        from bench.features import get_extractor
        from bench.score import clip_extractor_spec

        return get_extractor(clip_extractor_spec(extractor), device=device), extractor
    return extractor, getattr(extractor, "spec", None)


def _prepare_target(out: Path, overwrite: bool) -> None:
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out} is a file; pass a folder for the index")
    _check_writable_folder(out)
    if out.is_dir() and any(out.iterdir()):
        if not is_index_folder(out):
            raise UserError(f"--out {out} is a folder that is not an index and not empty; "
                            f"pick a new folder (nothing there is overwritten)")
        if not overwrite:
            raise UserError(f"index {out} already exists; pass --overwrite to replace it")


def _check_writable_folder(out: Path) -> None:
    """Refuse, before anything is embedded, an --out whose nearest existing folder cannot take a file
    (read-only mount, /proc or /sys, no permission) or that lies under a file."""
    ancestor = out.absolute()
    while not ancestor.exists() and ancestor != ancestor.parent:
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise UserError(f"cannot write the index to {out}: {ancestor} is a file, not a folder; pass another --out")
    try:
        with tempfile.TemporaryFile(dir=ancestor, prefix=".tmp-write-test-"):
            pass
    except OSError as exc:
        raise UserError(f"cannot write the index to {out}: {ancestor} is not writable ({exc.strerror or exc}); "
                        f"pass an --out folder on a writable disk") from None


def _normalised_float16(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return (x / np.where(norms > 0, norms, 1)).astype(np.float16)


def embed_source(src, extractor, batch_size: int = 256, progress: bool = True) -> dict[str, Any]:
    """Embed a ``Source`` (``audit.index.sources``) in batches.

    Returns ``image_emb`` (float16 [n, d], L2-normalised), ``text_emb`` (same, of
    the captions; None without captions), ``metadata`` (DataFrame, row i = image
    i), ``skipped`` [(where, reason)] for unreadable images, ``n_truncated``
    distinct captions cut at the CLIP context length.
    """
    from tqdm import tqdm

    img_parts: list[np.ndarray] = []
    text_parts: list[np.ndarray] = []
    rows: list[dict] = []
    positions: list[int | None] = []
    skipped: list[tuple[str, str]] = []
    n_truncated = 0
    batch: list = []
    # LAION-style captions repeat a lot ("", stock phrases, duplicated images), so each
    # distinct caption is embedded once per build.
    caption_rows: dict[str, int] = {}
    caption_parts: list[np.ndarray] = []

    def embed_captions(captions: list[str]) -> np.ndarray:
        nonlocal n_truncated
        new = [c for c in dict.fromkeys(captions) if c not in caption_rows]
        if new:
            emb, truncated = extractor.encode_text(new)
            n_truncated += int(np.sum(truncated))
            base = len(caption_rows)
            caption_rows.update((c, base + i) for i, c in enumerate(new))
            caption_parts.append(_normalised_float16(emb))
        table = np.concatenate(caption_parts) if len(caption_parts) > 1 else caption_parts[0]
        caption_parts[:] = [table]
        return table[[caption_rows[c] for c in captions]]

    with tqdm(total=src.total, unit="img", desc=f"index {src.label}", disable=not progress, dynamic_ncols=True) as bar:

        def flush() -> None:
            if batch:
                img_parts.append(_normalised_float16(extractor([item.image for item in batch])))
                if src.has_captions:
                    text_parts.append(embed_captions([str(item.metadata.get("caption", "")) for item in batch]))
                rows.extend(item.metadata for item in batch)
                positions.extend(item.row for item in batch)
                bar.update(len(batch))
                batch.clear()

        for item in src.items():
            if isinstance(item.image, Exception):
                where = item.metadata.get("image_path") or item.metadata.get("tar_member") or item.metadata.get("key")
                skipped.append((str(where), str(item.image)))
                bar.update(1)
                continue
            batch.append(item)
            if len(batch) >= batch_size:
                flush()
        flush()
    if skipped:
        log.warning("skipped %d unreadable image(s) of %s (first: %s: %s)", len(skipped), src.label, *skipped[0])
    if n_truncated:
        log.warning("%d distinct caption(s) were longer than the CLIP context and were truncated for text embeddings",
                    n_truncated)
    if not rows:
        raise UserError(f"no readable images in {src.label} ({len(skipped)} unreadable); nothing to index")
    if src.frame is not None:  # the source's own table keeps its column types (int32 stays int32)
        metadata = src.frame.iloc[positions].reset_index(drop=True)
    else:
        metadata = pd.DataFrame(rows)
    return {"image_emb": np.concatenate(img_parts), "text_emb": np.concatenate(text_parts) if text_parts else None,
            "metadata": metadata, "skipped": skipped, "n_truncated": n_truncated}


def write_index_folder(out, image_emb: np.ndarray, metadata: pd.DataFrame | None = None,
                       text_emb: np.ndarray | None = None, *, info: dict | None = None, index_type: str = "auto",
                       max_index_memory: str = "1G", overwrite: bool = False, progress: bool = False) -> ClipIndex:
    """Write embeddings (+ metadata) as an index folder at ``out``, atomically; the lower half of ``build_index``.

    ``image_emb`` / ``text_emb``: [n, d], L2-normalised here and stored float16.
    ``info``: extra ``t2i_index.json`` fields (``model_key`` above all).  The
    folder is assembled under a temporary name next to ``out`` and renamed into
    place, so an interrupted build leaves no half index.
    """
    if index_type not in INDEX_TYPES:
        raise UserError(f"unknown index type {index_type!r}: use one of {', '.join(INDEX_TYPES)}")
    check_memory(max_index_memory)
    out = Path(out).expanduser()
    _prepare_target(out, overwrite)
    image_emb = _normalised_float16(image_emb)
    text_emb = _normalised_float16(text_emb) if text_emb is not None else None
    n = len(image_emb)
    if n == 0:
        raise UserError("no embeddings to index (0 rows)")
    metadata = metadata if metadata is not None else pd.DataFrame({"key": [str(i) for i in range(n)]})
    if len(metadata) != n or (text_emb is not None and len(text_emb) != n):
        raise ValueError(f"metadata ({len(metadata)}) and text embeddings must have one row per image embedding ({n})")
    chosen = index_type if index_type != "auto" else ("flat" if n < FLAT_MAX_ROWS else "autofaiss")

    # Built next to the target (same file system), then renamed: never a half-written index at ``out``.
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{out.name}-", dir=out.parent))
    try:
        n_shards = (n + SHARD_ROWS - 1) // SHARD_ROWS
        width = len(str(n_shards - 1))  # zero-padded like clip-retrieval, so name order = row order
        for sub in (IMG_EMB, METADATA) + ((TEXT_EMB,) if text_emb is not None else ()):
            (tmp / sub).mkdir()
        for i, start in enumerate(range(0, n, SHARD_ROWS)):
            part = slice(start, start + SHARD_ROWS)
            num = str(i).zfill(width)
            np.save(tmp / IMG_EMB / f"{IMG_EMB}_{num}.npy", image_emb[part])
            if text_emb is not None:
                np.save(tmp / TEXT_EMB / f"{TEXT_EMB}_{num}.npy", text_emb[part])
            metadata.iloc[part].to_parquet(tmp / METADATA / f"{METADATA}_{num}.parquet", index=False)
        faiss_key = write_faiss_index(image_emb, tmp, "image", chosen, max_index_memory, progress)
        if text_emb is not None:
            write_faiss_index(text_emb, tmp, "text", chosen, max_index_memory, progress)
        record = {"format": INFO_FORMAT, "version": INFO_VERSION, "model_key": None, "dim": int(image_emb.shape[1]),
                  "embedding_dtype": "float16", "metric": "ip", "index_type": chosen, "faiss_index_key": faiss_key,
                  "max_index_memory": max_index_memory if chosen == "autofaiss" else None,
                  "n": n, "has_text": text_emb is not None, **(info or {})}
        (tmp / INFO_FILE).write_text(json.dumps(record, indent=2) + "\n")
        _move_into_place(tmp, out)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return ClipIndex.open(out)


def build_index(source: str, out, extractor, *, index_type="auto", max_index_memory="1G", batch_size=256,
                progress=True, overwrite=False, image_column=None, caption_column=None, device="cpu") -> ClipIndex:
    """Embed every image (and caption) of ``source`` with a CLIP and write an index folder at ``out``.

    ``source``: ``shapes-laion`` (the 100k corpus), ``shapes-laion:N`` (a
    deterministic N-row subset keeping every iconic duplicate group), an image
    folder, a .parquet/.csv/.tsv table (``image_column`` / ``caption_column``
    override the column guess), or webdataset .tar shard(s); see
    ``audit.index.sources``.  ``extractor``: a CLIP extractor (``bench.features``)
    or a ``--clip`` spec string ('builtin', MODEL@TAG; loaded on ``device``).
    ``index_type``: ``flat`` (exact IndexFlatIP), ``autofaiss`` (under
    ``max_index_memory``), ``auto`` = flat below 100k rows.

    Unreadable images are skipped, counted and recorded.  Writing is atomic
    (``write_index_folder``); an existing index is replaced only with
    ``overwrite=True``, any other non-empty folder is refused.  Bad arguments and
    sources are refused before the CLIP is loaded.
    """
    from audit.index.sources import open_source

    if index_type not in INDEX_TYPES:
        raise UserError(f"unknown index type {index_type!r}: use one of {', '.join(INDEX_TYPES)}")
    if int(batch_size) < 1:
        raise UserError(f"batch size must be >= 1, got {batch_size}")
    check_memory(max_index_memory)
    _prepare_target(Path(out).expanduser(), overwrite)
    started = time.perf_counter()
    src = open_source(source, image_column=image_column, caption_column=caption_column)
    extractor, clip_spec = _resolve_extractor(extractor, device)
    embedded = embed_source(src, extractor, int(batch_size), progress)
    skipped = embedded["skipped"]
    info = {"model_key": extractor.key, "clip": clip_spec, "preprocessing": getattr(extractor, "resize", None),
            "source": str(source), "source_kind": src.kind, "n_skipped": len(skipped),
            "skipped": [list(s) for s in skipped[:20]], "n_captions_truncated": embedded["n_truncated"],
            "embed_seconds": round(time.perf_counter() - started, 1)}
    return write_index_folder(out, embedded["image_emb"], embedded["metadata"], embedded["text_emb"], info=info,
                              index_type=index_type, max_index_memory=max_index_memory, overwrite=overwrite,
                              progress=progress)


def _move_into_place(tmp: Path, out: Path) -> None:
    """Rename the finished folder onto ``out``; an old index is moved aside first and deleted after."""
    old = None
    if out.is_dir() and any(out.iterdir()):
        old = out.with_name(f".tmp-{out.name}-old-{os.getpid()}")
        os.replace(out, old)
    elif out.is_dir():
        out.rmdir()
    os.replace(tmp, out)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
