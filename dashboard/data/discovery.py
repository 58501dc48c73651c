"""The runs under a runs root, newest first, and why a run looks incomplete.

A run directory is any sub-directory of the runs root that holds a
``manifest.json`` (``bench.contract.is_run_dir``).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pandas as pd

from bench import contract as C
from dashboard.data.reading import load_manifest


@dataclass(frozen=True)
class RunInfo:
    """What the run picker needs to know about one run, without reading images.

    ``complete`` is True only when the manifest says so *and* samples.parquet
    exists; ``error`` is set when the manifest itself cannot be read.
    """

    name: str
    path: Path
    created: str | None
    sort_key: float
    complete: bool
    error: str | None = None

    @property
    def label(self) -> str:
        """Text for the run picker, e.g. ``"demo (complete)"``."""
        if self.error:
            state = "unreadable"
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


def discover_runs(root: Path) -> list[RunInfo]:
    """List the runs under ``root``, newest first.

    A run is a direct sub-directory holding ``manifest.json``; other
    directories are ignored.  Runs are ordered by the manifest's ``created``
    time, falling back to the manifest file's mtime, then by name.  A missing
    root gives an empty list.
    """
    root = Path(root)
    if not root.is_dir():
        return []
    runs = []
    for child in root.iterdir():
        if not child.is_dir() or not C.is_run_dir(child):
            continue
        manifest, error = load_manifest(child)
        manifest = manifest or {}
        created = manifest.get("created") if isinstance(manifest.get("created"), str) else None
        stamp = _created_timestamp(created)
        if stamp is None:
            try:
                stamp = (child / C.MANIFEST).stat().st_mtime
            except OSError:
                stamp = 0.0
        complete = bool(manifest.get("complete") is True and C.SAMPLES_TABLE.path(child).is_file())
        runs.append(RunInfo(child.name, child, created, stamp, complete, error))
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
