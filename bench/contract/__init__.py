"""The run directory's contract: every file name, table schema and metric name of ``runs/<run>/``.

This package is the one owner of the run directory (docs/DESIGN.md §3).  Every
writer (``bench``, ``audit``) and every reader (``dashboard``, the report, the
tests) names files, columns and metrics through it, so a change of the layout
is a change here and nowhere else.

It imports only the standard library, pandas and pyarrow (plus ``filelock``
for ``summary.json`` updates), so the dashboard can import it without torch.

    from bench import contract as C
    C.write_table(run, C.SAMPLES_TABLE, df)
    samples = C.read_table(run, C.SAMPLES_TABLE)
    C.update_summary(run, {"memorization": {...}})
"""

from bench.contract.files import (
    AUDIT_DIR,
    FEATURES_DIR,
    IMAGES_DIR,
    MANIFEST,
    COMPARE,
    COMPARE_PLOT,
    IMAGE_SCORES,
    METRICS,
    NEIGHBOURS_DIR,
    REMOTE_CACHE_DIR,
    REPORT_HTML,
    REPORT_MD,
    RUN_LOCK,
    RUN_LOCK_OWNER,
    SAMPLES,
    SUMMARY,
    SUMMARY_LOCK,
    SWEEP,
    SWEEP_PLOT,
    audit_table_file,
    is_run_dir,
)
from bench.contract.metric_names import (
    FEATURE_METRIC_BASES,
    INCEPTION_NAME,
    extractor_name,
    feature_metric_name,
    parse_metric_name,
    upgrade_metric_names,
)
from bench.contract.summary import AUDITS_KEY, modify_summary, read_summary, record_audit, update_summary
from bench.contract.tables import (
    BIAS_PROMPTS_TABLE,
    BIAS_TABLE,
    UNSAFE_TABLE,
    MEMORIZATION_PROMPTS_TABLE,
    MEMORIZATION_SCORE_TABLE,
    MEMORIZATION_TABLE,
    COMPARE_TABLE,
    IMAGE_SCORES_TABLE,
    METRICS_TABLE,
    SAMPLES_TABLE,
    SWEEP_TABLE,
    TABLES,
    ALL_SUBSET,
    CATEGORY_PREFIX,
    INTERVAL_SUFFIXES,
    WATERMARK_TABLE,
    ContractError,
    Table,
    audit_table,
    coerce,
    read_table,
    write_table,
)

__all__ = [
    "AUDIT_DIR", "COMPARE", "COMPARE_PLOT", "IMAGE_SCORES", "FEATURES_DIR", "IMAGES_DIR", "MANIFEST", "METRICS", "NEIGHBOURS_DIR", "REMOTE_CACHE_DIR",
    "REPORT_HTML", "REPORT_MD", "RUN_LOCK", "RUN_LOCK_OWNER", "SAMPLES", "SUMMARY", "SUMMARY_LOCK", "SWEEP", "SWEEP_PLOT",
    "audit_table_file", "is_run_dir",
    "FEATURE_METRIC_BASES", "INCEPTION_NAME", "extractor_name", "feature_metric_name", "parse_metric_name",
    "upgrade_metric_names",
    "AUDITS_KEY", "modify_summary", "read_summary", "record_audit", "update_summary",
    "BIAS_PROMPTS_TABLE", "BIAS_TABLE", "COMPARE_TABLE", "IMAGE_SCORES_TABLE", "UNSAFE_TABLE", "MEMORIZATION_PROMPTS_TABLE", "MEMORIZATION_SCORE_TABLE", "MEMORIZATION_TABLE", "METRICS_TABLE", "SAMPLES_TABLE", "SWEEP_TABLE", "TABLES",
    "WATERMARK_TABLE", "ALL_SUBSET", "CATEGORY_PREFIX", "INTERVAL_SUFFIXES", "ContractError", "Table", "audit_table", "coerce", "read_table", "write_table",
]  # fmt: skip
