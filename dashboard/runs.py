"""Reading run directories for the dashboard: pure functions, no Streamlit.

A run directory is any sub-directory of the runs root that holds a
``manifest.json`` (see docs/DESIGN.md §3 for the contract).  Runs may be
incomplete or damaged, so the loaders here never raise on bad files: they
return ``(value, error)`` pairs where ``error`` is a one-line message for the
UI (or ``None`` when all went well).

This module must stay light: it imports pandas and the standard library only
(never torch, never ``bench``), so the dashboard starts fast anywhere.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterable, Sequence

import pandas as pd

MANIFEST = "manifest.json"
SUMMARY = "summary.json"
SAMPLES = "samples.parquet"

# Columns the dashboard needs from samples.parquet (the contract has more).
REQUIRED_SAMPLE_COLUMNS = ("image_id", "prompt_id", "prompt", "category", "sample_index", "guidance", "path")

MISSING = "—"  # shown for a manifest field that is absent


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


# ---------------------------------------------------------------- loading


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
    return load_json(Path(run_dir) / MANIFEST)


def load_summary(run_dir: Path) -> tuple[dict | None, str | None]:
    """Load ``<run_dir>/summary.json``."""
    return load_json(Path(run_dir) / SUMMARY)


def load_samples(run_dir: Path) -> tuple[pd.DataFrame | None, str | None]:
    """Load ``samples.parquet`` and add ``abs_path`` and ``exists`` columns.

    ``abs_path`` is the image's absolute path (the contract stores paths
    relative to the run dir); ``exists`` says whether that file is on disk, so
    a partly written run can be shown as such.
    """
    run_dir = Path(run_dir)
    path = run_dir / SAMPLES
    if not path.is_file():
        return None, f"{SAMPLES} is missing (generation has not written it yet)"
    try:
        df = pd.read_parquet(path)
    except Exception as exc:  # pyarrow raises several types for damaged files
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        return None, f"{SAMPLES} cannot be read: {first_line}"
    missing = [c for c in REQUIRED_SAMPLE_COLUMNS if c not in df.columns]
    if missing:
        return None, f"{SAMPLES} lacks column(s): {', '.join(missing)}"
    df = df.copy()
    resolved = [_resolve_image(run_dir, p) for p in df["path"]]
    df["abs_path"] = [str(p) if p else "" for p in resolved]
    df["exists"] = [bool(p) and p.is_file() for p in resolved]
    return df.reset_index(drop=True), None


def _resolve_image(run_dir: Path, rel: Any) -> Path | None:
    """Absolute path of an image listed in samples.parquet, or None if it is unusable.

    Paths are relative to the run dir; one that escapes it (``../..``, an
    absolute path elsewhere) is refused so the dashboard serves run files only.
    """
    if not isinstance(rel, str) or not rel:
        return None
    base = run_dir.resolve()
    path = (base / rel).resolve()
    return path if path.is_relative_to(base) else None


# -------------------------------------------------------------- discovery


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
        manifest_path = child / MANIFEST
        if not child.is_dir() or not manifest_path.is_file():
            continue
        manifest, error = load_manifest(child)
        manifest = manifest or {}
        created = manifest.get("created") if isinstance(manifest.get("created"), str) else None
        stamp = _created_timestamp(created)
        if stamp is None:
            try:
                stamp = manifest_path.stat().st_mtime
            except OSError:
                stamp = 0.0
        complete = bool(manifest.get("complete") is True and (child / SAMPLES).is_file())
        runs.append(RunInfo(child.name, child, created, stamp, complete, error))
    runs.sort(key=lambda r: r.name)  # stable tie-break by name ...
    runs.sort(key=lambda r: r.sort_key, reverse=True)  # ... then newest first
    return runs


def run_problems(manifest: dict | None, samples: pd.DataFrame | None, samples_error: str | None) -> list[str]:
    """One-line notes on why a run is incomplete (empty list when it looks whole)."""
    problems = []
    if manifest is not None and manifest.get("complete") is not True:
        problems.append("the manifest does not mark this run complete (generation may be running or was interrupted)")
    if samples_error:
        problems.append(samples_error)
    if samples is not None:
        n_missing = int((~samples["exists"]).sum())
        if n_missing:
            problems.append(f"{n_missing} of {len(samples)} images listed in {SAMPLES} are missing on disk")
        expected = expected_image_count(manifest)
        if expected is not None and len(samples) < expected:
            problems.append(f"{SAMPLES} lists {len(samples)} of the {expected} images the manifest expects")
    return problems


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


# ------------------------------------------------------------- filtering


def categories(samples: pd.DataFrame) -> list[str]:
    """Sorted distinct categories in the samples."""
    return sorted(str(c) for c in samples["category"].dropna().unique())


def guidance_values(samples: pd.DataFrame) -> list[float]:
    """Sorted distinct guidance scales in the samples."""
    return sorted(float(g) for g in samples["guidance"].dropna().unique())


def filter_samples(
    samples: pd.DataFrame,
    categories: Iterable[str] | None = None,
    guidance: Iterable[float] | None = None,
) -> pd.DataFrame:
    """Rows matching the chosen categories and guidance values.

    ``None`` or an empty selection means "no filter" on that column.  Rows
    keep a stable order: prompt id, guidance, sample index.
    """
    mask = pd.Series(True, index=samples.index)
    cats = list(categories or [])
    if cats:
        mask &= samples["category"].astype(str).isin(cats)
    scales = [float(g) for g in (guidance or [])]
    if scales:
        mask &= samples["guidance"].astype(float).apply(lambda g: any(math.isclose(g, s) for s in scales))
    out = samples[mask]
    return out.sort_values(["prompt_id", "guidance", "sample_index"], kind="stable").reset_index(drop=True)


def page_count(n_items: int, per_page: int) -> int:
    """Number of pages needed for ``n_items`` (at least 1, so a page input always works)."""
    return max(1, math.ceil(n_items / per_page))


def page_slice(samples: pd.DataFrame, page: int, per_page: int) -> pd.DataFrame:
    """Rows on 1-based ``page``; out-of-range pages are clamped."""
    page = min(max(1, int(page)), page_count(len(samples), per_page))
    start = (page - 1) * per_page
    return samples.iloc[start : start + per_page]


# -------------------------------------------------------------- rendering


_MARKDOWN_SPECIAL = re.compile(r"([\\`*_{}\[\]()#+\-.!|<>$~:&^=\"'])")


def escape_markdown(text: Any) -> str:
    """Backslash-escape Markdown/HTML punctuation so user text shows literally.

    Streamlit renders captions and table cells as Markdown (with LaTeX ``$``
    and ``:color[...]`` directives); prompts are user text, so every special
    character is escaped.  Newlines become spaces.
    """
    text = " ".join(str(text).split())
    return _MARKDOWN_SPECIAL.sub(r"\\\1", text)


def truncate(text: Any, limit: int = 80) -> str:
    """``text`` cut to ``limit`` characters with an ellipsis."""
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def caption_text(row: Any, limit: int = 80) -> str:
    """Plain-text caption for one sample: prompt (truncated), category, guidance, sample."""
    return (
        f"{truncate(row['prompt'], limit)} · {row['category']} · "
        f"g={float(row['guidance']):g} · sample {int(row['sample_index'])}"
    )


def _get(mapping: Any, *keys: str) -> Any:
    """Nested ``mapping[k1][k2]...`` or None when any level is missing."""
    for key in keys:
        if not isinstance(mapping, dict) or key not in mapping:
            return None
        mapping = mapping[key]
    return mapping


def _show(value: Any) -> str:
    """A manifest value as short text (lists joined, missing as a dash)."""
    if value is None or value == "":
        return MISSING
    if isinstance(value, (list, tuple)):
        return ", ".join(f"{v:g}" if isinstance(v, float) else str(v) for v in value) or MISSING
    return str(value)


def manifest_facts(manifest: dict, n_images: int | None) -> list[tuple[str, str]]:
    """The headline (label, value) pairs shown above the image grid."""
    sha = _get(manifest, "prompt_set", "sha256")
    prompt_set = " ".join(
        part
        for part in (
            _show(_get(manifest, "prompt_set", "name")),
            f"v{_get(manifest, 'prompt_set', 'version')}" if _get(manifest, "prompt_set", "version") else "",
            f"(sha256 {str(sha)[:12]})" if sha else "",
        )
        if part
    )
    subset = _get(manifest, "prompt_set", "subset")
    if subset:
        prompt_set += f", subset {subset}"
    size = (
        f"{manifest['width']}×{manifest['height']}"
        if manifest.get("width") and manifest.get("height")
        else MISSING
    )
    return [
        ("Model", _show(_get(manifest, "model", "ref"))),
        ("Model kind", _show(_get(manifest, "model", "kind"))),
        ("Pipeline", _show(manifest.get("pipeline_class"))),
        ("Scheduler", _show(manifest.get("scheduler"))),
        ("Steps", _show(manifest.get("steps"))),
        ("Guidance", _show(manifest.get("guidance"))),
        ("Guidance formulation", _show(manifest.get("guidance_formulation"))),
        ("Seed", _show(manifest.get("seed"))),
        ("Dtype", _show(manifest.get("dtype"))),
        ("Device", _show(manifest.get("device"))),
        ("Size", size),
        ("Prompt set", prompt_set),
        ("Images", MISSING if n_images is None else str(n_images)),
        ("Created", _show(manifest.get("created"))),
    ]


def fact_table(facts: Sequence[tuple[str, str]]) -> pd.DataFrame:
    """Facts as a one-column DataFrame indexed by label, Markdown-escaped for ``st.table``."""
    return pd.DataFrame(
        {"Value": [escape_markdown(v) for _, v in facts]},
        index=pd.Index([label for label, _ in facts], name=""),
    )
