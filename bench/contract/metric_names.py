"""The metric-naming rule of ``metrics.parquet``, ``sweep.parquet`` and ``summary.json``.

Every metric computed on the features of an image extractor carries the
extractor's short name, so that two extractors in one run never share a name:

    FD on Inception-v3 pool3       -> "FID"   (the established name; Inception only)
    FD on any other extractor      -> "FD_<extractor>",        e.g. FD_dinov2-vitl14
    KID on Inception-v3 pool3      -> "KID"   (Kernel *Inception* Distance)
    KID on any other extractor     -> "KID_<extractor>"
    precision / recall             -> "precision_<extractor>", "recall_<extractor>", every extractor
                                       (e.g. precision_efficientnet-lite0, precision_inception-v3-pool3)

Metrics that are not per ``--features`` extractor keep plain names: ``IS``
(Inception by definition), ``CLIPScore`` and ``CMMD`` (one ``--clip`` per
score, recorded in the ``extractor`` column), ``compositional_accuracy``.

Runs scored before this rule wrote "precision" and "recall" with the
extractor only in the ``extractor`` column; ``upgrade_metric_names`` maps them.
"""

from __future__ import annotations

import pandas as pd

#: Short name of the Inception-v3 pool3 extractor; only its features give "FID" and plain "KID".
INCEPTION_NAME = "inception-v3-pool3"
#: Metrics computed per --features extractor, which carry the extractor in their name.
FEATURE_METRIC_BASES = ("FD", "KID", "precision", "recall")
#: Names that mean a base metric on Inception features.
_INCEPTION_ALIASES = {"FID": "FD", "KID": "KID"}
_LEGACY_UNSUFFIXED = ("precision", "recall")


def extractor_name(key: str | None) -> str | None:
    """The model field of an extractor key: ``inception-v3-pool3__w...__clean__float32`` -> ``inception-v3-pool3``."""
    if key is None or (isinstance(key, float) and key != key):
        return None
    return str(key).split("__", 1)[0] or None


def feature_metric_name(base: str, extractor: str | None) -> str:
    """The reported name of ``base`` (one of FEATURE_METRIC_BASES) on features of ``extractor`` (key or name).

    ``extractor`` None (plain arrays, no key) gives the bare base name ("FD", "precision").
    """
    if base not in FEATURE_METRIC_BASES:
        raise ValueError(f"{base!r} is not a per-extractor metric ({', '.join(FEATURE_METRIC_BASES)})")
    name = extractor_name(extractor)
    if name is None:
        return base
    if name == INCEPTION_NAME and base in ("FD", "KID"):
        return "FID" if base == "FD" else "KID"
    return f"{base}_{name}"


def parse_metric_name(metric: str) -> tuple[str, str | None]:
    """(base, extractor name or None) of a reported metric name; inverse of ``feature_metric_name``.

    ``"FID"`` -> ("FD", "inception-v3-pool3"); ``"precision_efficientnet-lite0"`` ->
    ("precision", "efficientnet-lite0"); a metric outside the rule -> (metric, None).
    """
    if metric in _INCEPTION_ALIASES:
        return _INCEPTION_ALIASES[metric], INCEPTION_NAME
    for base in FEATURE_METRIC_BASES:
        if metric.startswith(base + "_") and len(metric) > len(base) + 1:
            return base, metric[len(base) + 1 :]
    return metric, None


def upgrade_metric_names(metrics: pd.DataFrame) -> pd.DataFrame:
    """Rows of an old ``metrics.parquet`` renamed by the rule (a no-op on new tables).

    Old runs wrote "precision"/"recall" with the extractor key in the ``extractor``
    column only; they become "precision_<name>"/"recall_<name>".
    """
    if "metric" not in metrics.columns or "extractor" not in metrics.columns:
        return metrics
    old = metrics["metric"].isin(_LEGACY_UNSUFFIXED) & metrics["extractor"].notna()
    if not old.any():
        return metrics
    out = metrics.copy()
    out.loc[old, "metric"] = [feature_metric_name(m, e) for m, e in zip(out.loc[old, "metric"], out.loc[old, "extractor"])]
    return out
