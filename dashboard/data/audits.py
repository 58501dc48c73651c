"""Every audit a run recorded (the Audits page), whatever probe made it.

Each probe lists itself in ``summary.json["audits"]`` (``bench.contract.record_audit``)
with what a reader needs to show it without importing it::

    {"name", "display_name", "description", "higher_is_better", "headline",
     "page", "summary_key", "table"}

so a probe added by a plugin shows here with no edit of the dashboard: its
headline (``summary[summary_key][headline]``), its summary block and its table
(``table``, a file of the run; a known contract table is typed by its schema,
any other parquet file is shown as it is).  A probe's further tables
(``audit/<name>_<part>.parquet``, ``bench.contract.audit_table_file``) are
found next to it; tables under ``audit/`` that no recorded probe claims (a run
audited before probes were recorded) are listed too.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

import pandas as pd

from bench import contract as C
from dashboard.data.reading import read_table, resolve_image

#: Contract tables by file: a probe's declared table that is one of them is read with its schema.
_KNOWN_TABLES = {table.file: table for table in C.TABLES.values()}


@dataclass(frozen=True)
class Audit:
    """One audit of a run as ``summary.json["audits"]`` records it, with its summary block.

    ``recorded`` is False for a table under ``audit/`` that summary.json does not list.
    """

    name: str
    display_name: str
    description: str = ""
    higher_is_better: bool | None = None
    headline: str = ""
    page: str = ""
    summary_key: str = ""
    table: str = ""
    block: dict | None = None
    recorded: bool = True
    parts: tuple[str, ...] = field(default=())  # further tables of the probe that are in the run

    @property
    def headline_value(self) -> Any:
        """``summary[summary_key][headline]``, or None when the block or the key is absent."""
        if not self.headline or not isinstance(self.block, dict):
            return None
        return self.block.get(self.headline)


def _declared_table(name: str) -> str:
    try:
        return C.audit_table_file(name)
    except ValueError:
        return ""


def probe_block(summary: dict | None, probe: str) -> dict | None:
    """The summary block of ``probe``: under the ``summary_key`` it recorded in "audits", else under its name."""
    if not isinstance(summary, dict):
        return None
    entry = summary.get(C.AUDITS_KEY, {})
    entry = entry.get(probe) if isinstance(entry, dict) else None
    key = entry.get("summary_key") if isinstance(entry, dict) and isinstance(entry.get("summary_key"), str) else probe
    block = summary.get(key or probe)
    return block if isinstance(block, dict) else None


def _text(value: Any, default: str = "") -> str:
    return value if isinstance(value, str) and value else default


def list_audits(summary: dict | None) -> tuple[list[Audit], list[str]]:
    """The audits ``summary.json["audits"]`` lists, in the order recorded, and one-line problems.

    An entry that is not a JSON object is left out with a problem; missing
    fields get neutral values (the table defaults to ``audit/<name>.parquet``).
    """
    if not isinstance(summary, dict) or summary.get(C.AUDITS_KEY) is None:
        return [], []
    listed = summary[C.AUDITS_KEY]
    if not isinstance(listed, dict):
        return [], [f'{C.SUMMARY} has an "{C.AUDITS_KEY}" entry that is not a JSON object; re-run the audits']
    audits, problems = [], []
    for key, entry in listed.items():
        if not isinstance(entry, dict):
            problems.append(f'{C.SUMMARY} lists audit {key!r} in "{C.AUDITS_KEY}" without its details; '
                            f"re-run that audit")  # fmt: skip
            continue
        name = _text(entry.get("name"), str(key))
        summary_key = _text(entry.get("summary_key"), name)
        block = summary.get(summary_key)
        higher = entry.get("higher_is_better")
        audits.append(Audit(
            name=name, display_name=_text(entry.get("display_name"), name),
            description=_text(entry.get("description")),
            higher_is_better=higher if isinstance(higher, bool) else None,
            headline=_text(entry.get("headline")), page=_text(entry.get("page")), summary_key=summary_key,
            table=_text(entry.get("table"), _declared_table(name)),
            block=block if isinstance(block, dict) else None,
        ))  # fmt: skip
    return audits, problems


def _parquet_files(run_dir: Path) -> list[str]:
    """The parquet files under ``audit/`` (relative names, sorted)."""
    folder = Path(run_dir) / C.AUDIT_DIR
    if not folder.is_dir():
        return []
    return sorted(f"{C.AUDIT_DIR}/{p.name}" for p in folder.glob("*.parquet") if p.is_file())


def with_tables(run_dir: Path, audits: Iterable[Audit]) -> list[Audit]:
    """``audits`` with their further tables (``parts``) found in the run, then an unrecorded
    ``Audit`` for each table under ``audit/`` that no recorded probe claims."""
    audits = list(audits)
    files = _parquet_files(run_dir)
    declared = {a.table for a in audits}
    claimed = set(declared)
    out = []
    for audit in audits:
        prefix = f"{C.AUDIT_DIR}/{audit.name}_"
        parts = tuple(f for f in files if f.startswith(prefix) and f not in declared)
        claimed.update(parts)
        out.append(Audit(**{**audit.__dict__, "parts": parts}))
    for file in files:
        if file not in claimed:
            stem = Path(file).stem
            out.append(Audit(name=stem, display_name=stem, table=file, recorded=False))
    return out


def table_spec(file: str, name: str | None = None) -> C.Table:
    """The contract's ``Table`` for a known file, else a schema-free one (read as it is)."""
    if file in _KNOWN_TABLES:
        return _KNOWN_TABLES[file]
    name = name or Path(file).stem
    return C.Table(name, file, {}, (), missing_hint=f"the {name} audit did not write it")


def load_audit_table(run_dir: Path, file: str, name: str | None = None) -> tuple[pd.DataFrame | None, str | None]:
    """A probe's table by the file it declared; ``(df, None)`` or ``(None, error)``.

    The file must be a parquet file inside the run directory (the name comes
    from summary.json, which is never trusted to point elsewhere).
    """
    if not file:
        return None, f"the {name or 'audit'} audit declares no table"
    if resolve_image(run_dir, file) is None:
        return None, f"{file} is outside the run directory; the dashboard shows run files only"
    if not file.endswith(".parquet"):
        return None, f"{file} is not a parquet table; the dashboard shows parquet tables only"
    return read_table(run_dir, table_spec(file, name))
