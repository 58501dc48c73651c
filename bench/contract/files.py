"""The names of the files and folders of ``runs/<run>/`` (docs/DESIGN.md §3).

```
runs/<run>/manifest.json                 settings, provenance, completeness   (t2i-bench generate / import)
runs/<run>/images/<image_id>.png         the images
runs/<run>/samples.parquet               one row per image                    (SAMPLES_TABLE)
runs/<run>/features/                     cached features, one .npy per extractor
runs/<run>/metrics.parquet               one row per metric, subset, guidance (METRICS_TABLE; t2i-bench score)
runs/<run>/sweep.parquet, sweep.png      one row per guidance                 (SWEEP_TABLE; t2i-bench sweep)
runs/<run>/audit/<probe>.parquet         one table per audit probe            (audit_table(probe))
runs/<run>/audit/<probe>_<part>.parquet  a probe's further tables, e.g. memorization_prompts
runs/<run>/audit/neighbours/             retrieved training images (memorization)
runs/<run>/report.html, report.md        the societal-risk report
runs/<run>/summary.json                  headline numbers; one key per writer (update_summary)
runs/<run>/.run.lock, .run.lock.pid      the writers' lock and its holder's PID (generate, score)
```
"""

from __future__ import annotations

from pathlib import Path

MANIFEST = "manifest.json"
SAMPLES = "samples.parquet"
SUMMARY = "summary.json"
#: The lock file that serialises read-modify-write updates of summary.json.
SUMMARY_LOCK = ".summary.json.lock"
#: The writers' lock of a run: one ``generate`` or ``score`` at a time (``bench.runlock``); readers never take it.
RUN_LOCK = ".run.lock"
#: Beside it, who holds it: {"pid", "host", "command", "since"} as JSON (the refusal names the PID).
RUN_LOCK_OWNER = ".run.lock.pid"
IMAGES_DIR = "images"
FEATURES_DIR = "features"
METRICS = "metrics.parquet"
IMAGE_SCORES = "image_scores.parquet"
COMPARE = "compare.parquet"
COMPARE_PLOT = "compare.png"
SWEEP = "sweep.parquet"
SWEEP_PLOT = "sweep.png"
AUDIT_DIR = "audit"
NEIGHBOURS_DIR = f"{AUDIT_DIR}/neighbours"
REMOTE_CACHE_DIR = f"{AUDIT_DIR}/remote-cache"
REPORT_HTML = "report.html"
REPORT_MD = "report.md"


def audit_table_file(probe: str, part: str | None = None) -> str:
    """``audit/<probe>.parquet``, or ``audit/<probe>_<part>.parquet`` for a probe's further table."""
    if not probe or "/" in probe or probe.startswith("."):
        raise ValueError(f"invalid probe name {probe!r}")
    return f"{AUDIT_DIR}/{probe}{'_' + part if part else ''}.parquet"


def is_run_dir(path: str | Path) -> bool:
    """A run directory is a folder holding a manifest."""
    return (Path(path) / MANIFEST).is_file()
