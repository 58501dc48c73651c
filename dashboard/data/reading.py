"""The readers the other data modules share: ``(value, error)`` pairs instead of exceptions.

``read_table`` is ``bench.contract.read_table`` (file name, schema, coercion by
kind, optional columns filled in) with its one-line ``ContractError`` turned
into the error half of the pair.  JSON files (manifest, summary) are read here
too, with messages that name the file and the problem.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd

from bench import contract as C


def file_stamp(path: Path) -> tuple[int, int]:
    """``(mtime_ns, size)`` of ``path``, (0, 0) when absent: the cache key of what was read from it."""
    try:
        stat = Path(path).stat()
    except OSError:
        return 0, 0
    return stat.st_mtime_ns, stat.st_size


def load_json(path: Path) -> tuple[dict | None, str | None]:
    """Read a JSON object from ``path``; return ``(data, None)`` or ``(None, error)``."""
    path = Path(path)
    if not path.is_file():
        return None, f"{path.name} is missing"
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        return None, f"{path.name} cannot be read: {exc}"
    except json.JSONDecodeError as exc:
        return None, f"{path.name} is not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg})"
    if not isinstance(data, dict):
        return None, f"{path.name} is not a JSON object (found {type(data).__name__})"
    return data, None


def load_manifest(run_dir: Path) -> tuple[dict | None, str | None]:
    """Load ``<run_dir>/manifest.json``."""
    return load_json(Path(run_dir) / C.MANIFEST)


def load_summary(run_dir: Path) -> tuple[dict | None, str | None]:
    """Load ``<run_dir>/summary.json``."""
    return load_json(Path(run_dir) / C.SUMMARY)


def read_table(run_dir: Path, table: C.Table) -> tuple[pd.DataFrame | None, str | None]:
    """``bench.contract.read_table`` as ``(df, None)``, or ``(None, error)`` with the contract's one line."""
    try:
        return C.read_table(run_dir, table), None
    except C.ContractError as exc:
        return None, str(exc)


def resolve_image(run_dir: Path, rel: Any) -> Path | None:
    """Absolute path of a file the run lists (relative to the run dir), or None if it is unusable.

    For image paths in tables and file names in summary.json alike: a path that
    escapes the run directory (``../..``, an absolute path elsewhere) is
    refused so the dashboard serves run files only.
    """
    if not isinstance(rel, str) or not rel:
        return None
    base = Path(run_dir).resolve()
    path = (base / rel).resolve()
    return path if path.is_relative_to(base) else None


def add_image_paths(df: pd.DataFrame, run_dir: Path, column: str = "path", prefix: str = "") -> pd.DataFrame:
    """Add ``<prefix>abs_path`` (absolute path, "" when unusable) and ``<prefix>exists`` for ``column``, in place."""
    resolved = [resolve_image(run_dir, p) for p in df[column]]
    df[f"{prefix}abs_path"] = [str(p) if p else "" for p in resolved]
    df[f"{prefix}exists"] = [bool(p) and p.is_file() for p in resolved]
    return df



def missing_image_reason(rel: Any, abs_path: str) -> str:
    """Why a listed image is not shown: refused (its path leaves the run directory) or not on disk.

    ``abs_path`` is what ``add_image_paths`` wrote: "" when ``resolve_image`` refused ``rel``.
    """
    if isinstance(rel, str) and rel and not abs_path:
        return "Image refused (its path lies outside the run directory)"
    return "Image not on disk"
