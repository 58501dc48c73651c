"""The runs under a runs root, newest first, and why a run looks incomplete or damaged.

A run directory is any sub-directory of the runs root that holds a
``manifest.json`` (``bench.contract.is_run_dir``) and whose resolved path lies
inside the resolved root (a symlink pointing elsewhere is not listed).  A run
is *damaged* when its manifest or its samples.parquet cannot be read; the
default run (``default_run``) is the newest complete, readable one.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from functools import lru_cache
from pathlib import Path
from typing import Any

import pandas as pd

from bench import contract as C
from dashboard.data.reading import file_stamp, load_manifest, read_table
from dashboard.data.text import truncate

DAMAGE_LABEL_LIMIT = 70  # characters of the damage reason shown in the run picker


@dataclass(frozen=True)
class RunInfo:
    """What the run picker needs to know about one run, without reading images.

    ``complete`` is True only when the manifest says so *and* samples.parquet
    exists and reads; ``error`` is set when the manifest itself cannot be read,
    ``damage`` (one line) whenever the run is damaged (manifest or samples.parquet
    unreadable).
    """

    name: str
    path: Path
    created: str | None
    sort_key: float
    complete: bool
    error: str | None = None
    damage: str | None = None

    @property
    def label(self) -> str:
        """Text for the run picker, e.g. ``"demo (complete)"``, ``"x (damaged: manifest.json is not valid JSON …)"``."""
        if self.damage:
            state = f"damaged: {truncate(self.damage, DAMAGE_LABEL_LIMIT)}"
        else:
            state = "complete" if self.complete else "incomplete"
        return f"{self.name} ({state})"


def _created_timestamp(created: Any) -> float | None:
    """Parse the manifest's ISO ``created`` time to a POSIX timestamp, or None."""
    if not isinstance(created, str) or not created:
        return None
    try:
        moment = datetime.fromisoformat(created.replace("Z", "+00:00"))
    except ValueError:
        return None
    if moment.tzinfo is None:  # naive times are taken as UTC
        moment = moment.replace(tzinfo=timezone.utc)
    return moment.timestamp()


@lru_cache(maxsize=512)
def _samples_damage(samples_path: str, stamp: tuple[int, int]) -> str | None:
    """Why an existing samples.parquet cannot be read (None when it reads), cached per file stamp."""
    _, error = read_table(Path(samples_path).parent, C.SAMPLES_TABLE)
    return error


def samples_damage(run_dir: Path) -> str | None:
    """One line on why ``run_dir``'s samples.parquet cannot be read; None when it reads or is absent."""
    path = C.SAMPLES_TABLE.path(run_dir)
    if not path.is_file():
        return None
    return _samples_damage(str(path), file_stamp(path))


def inside_root(child: Path, root: Path) -> bool:
    """Whether ``child``, symlinks resolved, lies inside ``root`` (resolved)."""
    try:
        return Path(child).resolve().is_relative_to(Path(root).resolve())
    except (OSError, RuntimeError):  # a symlink loop
        return False


def live_stamp(run_dir: Path) -> tuple:
    """What changes while a run is being written: the stamps of its manifest, samples.parquet and images/.

    Cheap (three ``stat`` calls); the dashboard polls it for incomplete runs.
    """
    run_dir = Path(run_dir)
    return (file_stamp(run_dir / C.MANIFEST), file_stamp(C.SAMPLES_TABLE.path(run_dir)), file_stamp(run_dir / "images"))


def default_run(runs: list[RunInfo]) -> RunInfo | None:
    """The run to land on: the newest complete, readable run, else the newest undamaged, else the newest."""
    return (next((r for r in runs if r.complete and not r.damage), None)
            or next((r for r in runs if not r.damage), None)
            or (runs[0] if runs else None))  # fmt: skip


def discover_runs(root: Path) -> list[RunInfo]:
    """List the runs under ``root``, newest first.

    A run is a direct sub-directory holding ``manifest.json`` whose resolved
    path is inside the resolved root (a symlink to a directory elsewhere is
    refused); other directories are ignored.  Runs are ordered by the
    manifest's ``created`` time, falling back to the manifest file's mtime,
    then by name.  A missing root gives an empty list.
    """
    root = Path(root)
    if not root.is_dir():
        return []
    runs = []
    for child in root.iterdir():
        if not child.is_dir() or not C.is_run_dir(child) or not inside_root(child, root):
            continue
        manifest, error = load_manifest(child)
        damage = error or samples_damage(child)
        manifest = manifest or {}
        created = manifest.get("created") if isinstance(manifest.get("created"), str) else None
        stamp = _created_timestamp(created)
        if stamp is None:
            try:
                stamp = (child / C.MANIFEST).stat().st_mtime
            except OSError:
                stamp = 0.0
        complete = bool(manifest.get("complete") is True and C.SAMPLES_TABLE.path(child).is_file() and not damage)
        runs.append(RunInfo(child.name, child, created, stamp, complete, error, damage))
    runs.sort(key=lambda r: r.name)  # stable tie-break by name ...
    runs.sort(key=lambda r: r.sort_key, reverse=True)  # ... then newest first
    return runs


def expected_image_count(manifest: dict | None) -> int | None:
    """Images the manifest promises: prompts × images per prompt × guidance values."""
    if not manifest:
        return None
    try:
        n_prompts = int(manifest["prompt_set"]["n_prompts"])
        per_prompt = int(manifest["images_per_prompt"])
        n_guidance = len(manifest["guidance"])
    except (KeyError, TypeError, ValueError):
        return None
    return n_prompts * per_prompt * max(n_guidance, 1)


def run_problems(manifest: dict | None, samples: pd.DataFrame | None, samples_error: str | None) -> list[str]:
    """One-line notes on why a run is incomplete (empty list when it looks whole).

    ``samples`` is what ``samples.load_samples`` returns (with its ``exists`` column).
    """
    problems = []
    if manifest is not None and manifest.get("complete") is not True:
        problems.append("the manifest does not mark this run complete (generation may be running or was interrupted)")
    if samples_error:
        problems.append(samples_error)
    if samples is not None:
        n_missing = int((~samples["exists"]).sum())
        if n_missing:
            problems.append(f"{n_missing} of {len(samples)} images listed in {C.SAMPLES} are missing on disk")
        expected = expected_image_count(manifest)
        if expected is not None and len(samples) < expected:
            problems.append(f"{C.SAMPLES} lists {len(samples)} of the {expected} images the manifest expects")
    return problems
