"""Readers for what a CLIP index can be built from: one image (or problem) + its metadata at a time.

``open_source(spec)`` understands

* ``shapes-laion`` / ``shapes-laion:N``: the built-in LAION-style corpus
  (``bench.world.corpus``); images are rendered from each row's ``spec``, all
  corpus columns become index metadata;
* a folder of images (recursively), with an optional caption in a ``.txt`` file
  of the same name next to each image (clip-retrieval's ``files`` input format);
* a ``.parquet`` / ``.csv`` / ``.tsv`` table with an image-path column and a
  caption column (paths relative to the table's folder); every other column is
  kept as metadata;
* webdataset ``.tar`` shards (one file, a folder of them, or a glob): each
  sample's image member, its ``.txt`` caption and its ``.json`` fields, read
  with the ``webdataset`` library (as clip-retrieval's ``webdataset`` input).

A source yields ``Item(metadata, image)`` in a fixed order, where ``image`` is a
uint8 HWC RGB array or an ``ImageProblem`` (unreadable images are counted and
skipped by the builder, not fatal).  Metadata always has ``caption`` when the
source has captions, and what ``ClipIndex.load_image`` needs to show the image
again: ``image_path``, ``tar_path`` + ``tar_member``, or ``spec``.
"""

from __future__ import annotations

import functools
import glob
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
import pandas as pd

from bench.errors import UserError
from bench.features.images import ImageProblem, load_image, load_image_bytes

SHAPES_LAION = "shapes-laion"
#: The full corpus that ``shapes-laion`` names (docs/DESIGN.md §2).
SHAPES_LAION_ROWS = 100_000
SHAPES_LAION_SEED = 0
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".gif", ".tif", ".tiff")
TABLE_SUFFIXES = (".parquet", ".csv", ".tsv")
#: Column names accepted for the image path and the caption, in order of preference
#: (clip-retrieval's names first, then common alternatives).
IMAGE_COLUMNS = ("image_path", "path", "file", "filepath", "filename", "image")
CAPTION_COLUMNS = ("caption", "text", "prompt", "TEXT", "alt")


@dataclass(frozen=True)
class Item:
    """One entry of a source: its metadata row and its image (or why it is unreadable).

    ``row`` is the entry's position in ``Source.frame`` for table-like sources
    (so the index metadata keeps the table's column types), else None."""

    metadata: dict[str, Any]
    image: np.ndarray | ImageProblem
    row: int | None = None


@dataclass
class Source:
    """A readable index source.  ``items()`` streams; ``total`` is None when unknown up front."""

    kind: str  # "shapes-laion", "folder", "table", "webdataset"
    label: str
    has_captions: bool
    total: int | None
    items: Callable[[], Iterator[Item]]
    frame: pd.DataFrame | None = None  # all metadata up front, when the source is a table


def _read(loader: Callable[[], tuple[np.ndarray, Any]]) -> np.ndarray | ImageProblem:
    try:
        return loader()[0]
    except ImageProblem as problem:
        return problem


# --------------------------------------------------------------------------- shapes-laion

@functools.lru_cache(maxsize=1)
def _full_corpus() -> pd.DataFrame:
    from bench.world.corpus import build_corpus

    return build_corpus(SHAPES_LAION_ROWS, seed=SHAPES_LAION_SEED)


def shapes_laion_rows(n: int | None = None) -> pd.DataFrame:
    """The shapes-laion corpus (``n=None``) or a deterministic ``n``-row subset of it.

    The subset keeps every one of the 24 iconic duplicate groups, each with
    ``max(2, round(110 * n / 100_000))`` copies (the corpus's own copies-per-row
    rate, at least two so a copy still has a twin), and fills the rest with a
    seeded random choice of the other rows.  Rows stay in corpus order and keep
    their corpus ``key``, so a subset row can be found in the full corpus.
    """
    from bench.world.corpus import ICONIC_COPIES_PER_100K, ICONIC_GROUPS

    if n is None or n >= SHAPES_LAION_ROWS:
        return _full_corpus()
    copies = max(2, round(ICONIC_COPIES_PER_100K * n / SHAPES_LAION_ROWS))
    if n < ICONIC_GROUPS * copies:  # checked before the (seconds-long) corpus build
        raise UserError(f"shapes-laion:{n} is too small to keep 2 copies of each of the {ICONIC_GROUPS} iconic "
                        f"images; use shapes-laion:N with N >= {ICONIC_GROUPS * 2}")
    corpus = _full_corpus()
    group = corpus["dup_group"].to_numpy()
    iconic = np.concatenate([np.flatnonzero(group == g)[:copies] for g in range(ICONIC_GROUPS)])
    others = np.flatnonzero(group < 0)
    rng = np.random.default_rng(SHAPES_LAION_SEED)
    chosen = rng.choice(others, size=n - len(iconic), replace=False)
    rows = np.sort(np.concatenate([iconic, chosen]))
    subset = corpus.iloc[rows].reset_index(drop=True)
    subset.attrs["corpus"] = {**corpus.attrs.get("corpus", {}), "subset_of": len(corpus), "n": int(n)}
    return subset


def _shapes_source(spec: str) -> Source:
    from bench.world.corpus import render_row

    _, _, count = spec.partition(":")
    if count:
        try:
            n = int(count.replace("_", ""))
        except ValueError:
            raise UserError(f"'{spec}' is not shapes-laion:N with a whole number N (e.g. shapes-laion:20000)") from None
        if n < 1:
            raise UserError(f"'{spec}' asks for {n} rows; use shapes-laion:N with N >= 1")
    else:
        n = None
    rows = shapes_laion_rows(n)

    def items() -> Iterator[Item]:
        for i, row in enumerate(rows.to_dict("records")):
            yield Item(row, np.asarray(render_row(row).convert("RGB")), i)

    return Source("shapes-laion", spec, True, len(rows), items, rows)


# --------------------------------------------------------------------------- folder

def _folder_source(folder: Path) -> Source:
    paths = sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if not paths:
        raise UserError(f"image folder {folder} has no images ({', '.join(IMAGE_SUFFIXES)}); "
                        f"point at a folder of images, a table, webdataset shards or shapes-laion")
    has_captions = any(p.with_suffix(".txt").is_file() for p in paths)

    def items() -> Iterator[Item]:
        for p in paths:
            meta: dict[str, Any] = {"key": p.relative_to(folder).with_suffix("").as_posix(),
                                    "image_path": str(p.resolve())}
            if has_captions:
                txt = p.with_suffix(".txt")
                meta["caption"] = txt.read_text(encoding="utf-8", errors="replace").strip() if txt.is_file() else ""
            yield Item(meta, _read(lambda: load_image(p)))

    return Source("folder", str(folder), has_captions, len(paths), items)


# --------------------------------------------------------------------------- table

def _pick_column(columns, wanted: str | None, candidates, what: str, table: Path, flag: str) -> str:
    if wanted is not None:
        if wanted not in columns:
            raise UserError(f"{table} has no column '{wanted}' for the {what} (columns: {', '.join(map(str, columns))})")
        return wanted
    for name in candidates:
        if name in columns:
            return name
    raise UserError(f"{table} has no {what} column (looked for {', '.join(candidates)}; it has "
                    f"{', '.join(map(str, columns)) or 'none'}); rename one or pass {flag} NAME")


def _table_source(table: Path, image_column: str | None, caption_column: str | None) -> Source:
    try:
        if table.suffix == ".parquet":
            df = pd.read_parquet(table)
        else:
            df = pd.read_csv(table, sep="\t" if table.suffix == ".tsv" else ",", keep_default_na=False)
    except (OSError, ValueError, pd.errors.ParserError) as e:
        raise UserError(f"cannot read table {table} ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}); "
                        f"pass a valid .parquet/.csv/.tsv") from e
    columns = [str(c) for c in df.columns]
    df.columns = columns
    img_col = _pick_column(columns, image_column, IMAGE_COLUMNS, "image path", table, "--image-column")
    cap_col = _pick_column(columns, caption_column, CAPTION_COLUMNS, "caption", table, "--caption-column")
    if df.empty:
        raise UserError(f"table {table} has no rows, so there are no images to index")
    root = table.resolve().parent
    # Our metadata uses clip-retrieval's column names for path and caption.
    df = df.rename(columns={img_col: "image_path", cap_col: "caption"})
    df["caption"] = df["caption"].fillna("").astype(str)
    paths = [Path(str(p)).expanduser() for p in df["image_path"]]
    df["image_path"] = [str(p if p.is_absolute() else root / p) for p in paths]

    def items() -> Iterator[Item]:
        for i, row in enumerate(df.to_dict("records")):
            yield Item(row, _read(lambda: load_image(row["image_path"])), i)

    return Source("table", str(table), True, len(df), items, df)


# --------------------------------------------------------------------------- webdataset

def _webdataset_shards(spec: str) -> list[Path]:
    path = Path(spec).expanduser()
    if path.is_dir():
        shards = sorted(path.glob("*.tar"))
    elif any(ch in spec for ch in "*?["):
        shards = sorted(Path(p) for p in glob.glob(str(path)))
    else:
        shards = [path]
    if not shards:
        raise UserError(f"no webdataset .tar shards at {spec}; pass a .tar file, a folder of them or a glob")
    return [s.resolve() for s in shards]


def _webdataset_source(spec: str) -> Source:
    import webdataset as wds

    shards = _webdataset_shards(spec)

    def items() -> Iterator[Item]:
        n_images = 0
        # No decoding here: members come as bytes and are decoded by bench's image
        # reader, so a corrupt member is one skipped image, not a failed build.
        dataset = wds.WebDataset([str(s) for s in shards], shardshuffle=False, empty_check=False)
        try:
            for sample in dataset:
                ext = next((e for e in sample if not e.startswith("__") and "." + e.lower() in IMAGE_SUFFIXES), None)
                if ext is None:
                    continue
                n_images += 1
                meta: dict[str, Any] = {"key": sample["__key__"], "tar_path": str(Path(sample["__url__"]).resolve()),
                                        "tar_member": f"{sample['__key__']}.{ext}"}
                if "json" in sample:
                    try:
                        extra = json.loads(sample["json"])
                        meta.update({k: v for k, v in extra.items() if k not in meta and not isinstance(v, (dict, list))})
                    except (ValueError, AttributeError):
                        pass  # unreadable json sidecar: the image is still indexed
                caption = sample.get("txt", meta.get("caption", ""))
                meta["caption"] = caption.decode("utf-8", "replace") if isinstance(caption, bytes) else str(caption)
                yield Item(meta, _read(lambda: load_image_bytes(sample[ext])))
        except (OSError, ValueError) as e:
            raise UserError(f"cannot read webdataset shards {spec} ({type(e).__name__}: "
                            f"{str(e).splitlines()[0] if str(e) else ''}); check the .tar files") from e
        if n_images == 0:
            raise UserError(f"webdataset shards {spec} hold no image members ({', '.join(IMAGE_SUFFIXES)})")

    return Source("webdataset", spec, True, None, items)


# --------------------------------------------------------------------------- dispatch

def open_source(spec: str, *, image_column: str | None = None, caption_column: str | None = None) -> Source:
    """The ``Source`` named by ``spec`` (see the module docstring)."""
    spec = str(spec)
    if spec == SHAPES_LAION or spec.startswith(SHAPES_LAION + ":"):
        return _shapes_source(spec)
    path = Path(spec).expanduser()
    if path.suffix.lower() == ".tar" or (path.is_dir() and any(path.glob("*.tar")) and not any(
            p.suffix.lower() in IMAGE_SUFFIXES for p in path.iterdir())):
        return _webdataset_source(spec)
    if not path.exists():
        raise UserError(f"index source '{spec}' does not exist; pass an image folder, a .parquet/.csv table, "
                        f"webdataset .tar shards, or shapes-laion[:N]")
    if path.is_dir():
        return _folder_source(path)
    if path.suffix.lower() in TABLE_SUFFIXES:
        return _table_source(path, image_column, caption_column)
    raise UserError(f"don't know how to index '{spec}': pass an image folder, a .parquet/.csv/.tsv table, "
                    f"webdataset .tar shards, or shapes-laion[:N]")
