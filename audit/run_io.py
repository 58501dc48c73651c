"""Reading a run directory for an audit, and writing an audit's key of ``summary.json``.

Shared by every audit (memorization, watermark): each reads the run's
``samples.parquet`` and owns one key of ``summary.json``.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from bench import rundir
from bench.errors import UserError


def load_run_samples(run: Path) -> pd.DataFrame:
    """The run's ``samples.parquet``, or a one-line UserError when there is no run or no image."""
    run = Path(run)
    if not run.is_dir():
        raise UserError(f"run directory '{run}' does not exist; pass a folder made by t2i-bench generate or import")
    if not (run / rundir.MANIFEST).exists():
        raise UserError(f"'{run}' is not a run directory (no {rundir.MANIFEST}); pass the folder t2i-bench generate wrote")
    samples = rundir.read_samples(run)
    if samples.empty:
        raise UserError(f"run '{run}' has no images in samples.parquet; generate or import images first")
    return samples.reset_index(drop=True)


def update_summary(run: Path, key: str, value: dict) -> None:
    """Read-modify-write of one key of ``summary.json``, atomically; the other keys are kept."""
    path = Path(run) / rundir.SUMMARY
    summary = {}
    if path.exists():
        try:
            summary = json.loads(path.read_text())
        except ValueError as exc:
            raise UserError(f"{path} is not valid JSON ({exc}); restore it or delete it") from exc
    summary[key] = value
    rundir.write_json(path, summary)
