"""``summary.json``: the headline numbers of a run, one top-level key per writer.

``t2i-bench generate`` writes the run's counts, ``t2i-bench score`` the key
``metrics``, each audit probe its own key (e.g. ``memorization``), and
``record_audit`` also lists the probe under ``audits`` with the facts the
dashboard and the report need to show it (display name, table, headline).

Updates are read-modify-write under a file lock (``filelock``), so two
processes writing different keys at once both keep their key; the write
itself is atomic, so a reader (which never takes the lock) sees the old file
or the new one, never half of one.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable, Mapping

from bench.atomic import atomic_write_text
from bench.contract import files as F
from bench.errors import UserError

#: How long a writer waits for another writer's update (they take milliseconds).
LOCK_TIMEOUT_S = 60.0
AUDITS_KEY = "audits"


def read_summary(run_dir: str | Path) -> dict:
    """``summary.json`` as a dict ({} when absent); UserError when it is not a JSON object."""
    path = Path(run_dir) / F.SUMMARY
    if not path.exists():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:
        raise UserError(f"{path} is not valid JSON ({exc}); restore it or delete it") from exc
    if not isinstance(data, dict):
        raise UserError(f"{path} is not a JSON object; restore it or delete it")
    return data


def modify_summary(run_dir: str | Path, change: Callable[[dict], None]) -> dict:
    """Apply ``change`` (which edits the dict in place) to ``summary.json`` under its lock; returns the result."""
    from filelock import FileLock, Timeout

    run_dir = Path(run_dir)
    try:
        with FileLock(run_dir / F.SUMMARY_LOCK, timeout=LOCK_TIMEOUT_S):
            summary = read_summary(run_dir)
            change(summary)
            atomic_write_text(run_dir / F.SUMMARY, json.dumps(summary, indent=2, default=str) + "\n")
    except Timeout as exc:
        raise UserError(f"{run_dir / F.SUMMARY} stayed locked for {LOCK_TIMEOUT_S:g} s by another process; "
                        f"retry when it has finished") from exc
    return summary


def update_summary(run_dir: str | Path, updates: Mapping[str, Any]) -> dict:
    """Set the top-level keys ``updates`` of ``summary.json``; the keys other stages wrote are kept."""
    return modify_summary(run_dir, lambda summary: summary.update(updates))


def record_audit(run_dir: str | Path, probe: Mapping[str, Any], block: Mapping[str, Any]) -> dict:
    """Write an audit probe's summary ``block`` under its ``summary_key`` and list the probe under "audits".

    ``probe`` holds what a reader needs to show the audit without importing it:
    name, display_name, summary_key, headline (a key of ``block``),
    higher_is_better, table (file), page (dashboard url path).
    """
    def change(summary: dict) -> None:
        summary[probe["summary_key"]] = dict(block)
        audits = summary.get(AUDITS_KEY)
        summary[AUDITS_KEY] = {**(audits if isinstance(audits, dict) else {}), probe["name"]: dict(probe)}

    return modify_summary(run_dir, change)
