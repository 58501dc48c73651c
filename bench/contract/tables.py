"""The tables of a run directory: file, columns and their kinds, one reader and one writer for all.

A ``Table`` names its file (relative to the run directory) and its columns,
each with a kind:

    "str"    text; missing values read back as ""
    "str?"   text or None (e.g. the reference of a metric that has none)
    "int"    int64; a missing value is an error
    "float"  float64; missing is NaN
    "bool"   a verdict; anything but true/false (0/1) is an error: a missing verdict
             must never read as False, that would be a silent wrong number
    "bool?"  true, false or None (e.g. a per-image verdict an audit did not make)

Columns in ``required`` must be there; the other columns are optional to the
readers: a file written by an older writer that lacks one gets ``defaults``.
Writers write every column (``write_table`` refuses a table that lacks a
required one) and may add further columns after them (e.g. a metric's ``std``).

``read_table`` raises ``ContractError`` with one line that names the file and
what is wrong; the dashboard shows that line instead of a traceback.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import pandas as pd

from bench.atomic import atomic_path
from bench.contract import files as F
from bench.errors import UserError


class ContractError(UserError):
    """A run-directory file that is missing, unreadable or does not follow its schema (one line)."""


@dataclass(frozen=True)
class Table:
    name: str                       # what messages call it
    file: str                       # path relative to the run directory
    columns: Mapping[str, str]      # column -> kind (see module docstring), in the order writers use
    required: tuple[str, ...]       # columns a reader cannot do without
    missing_hint: str = ""          # why the file may be absent, e.g. "the run has not been scored yet"
    defaults: Mapping[str, Any] = field(default_factory=dict)  # optional columns a reader fills in

    def path(self, run_dir: str | Path) -> Path:
        return Path(run_dir) / self.file


SAMPLES_TABLE = Table(
    "samples", F.SAMPLES,
    {"image_id": "str", "prompt_id": "str", "prompt": "str", "category": "str", "sample_index": "int",
     "seed": "int", "guidance": "float", "cfg_scale": "float", "path": "str", "width": "int", "height": "int",
     "truncated": "bool"},
    required=("image_id", "prompt_id", "prompt", "category", "sample_index", "guidance", "path"),
    missing_hint="generation has not written it yet",
    defaults={"seed": -1, "cfg_scale": math.nan, "width": 0, "height": 0, "truncated": False},
)  # fmt: skip

#: One row per (metric, subset, guidance, reference).  ``subset`` is "all" or "category=<name>";
#: ``guidance`` NaN means all scales together.  Metric names follow ``metric_names``.
METRICS_TABLE = Table(
    "metrics", F.METRICS,
    {"metric": "str", "subset": "str", "guidance": "float", "value": "float", "n": "float", "n_ref": "float",
     "extractor": "str?", "reference": "str?", "ci_low": "float", "ci_high": "float", "ci_method": "str",
     "n_for_1pct": "float"},
    required=("metric", "subset", "guidance", "value"),
    missing_hint="the run has not been scored yet",
    defaults={"n": math.nan, "n_ref": math.nan, "extractor": None, "reference": None, "ci_low": math.nan,
              "ci_high": math.nan, "ci_method": "", "n_for_1pct": math.nan},
)  # fmt: skip
#: ``ci_low``/``ci_high``: the 95% interval of ``value`` (NaN: none), ``ci_method`` how it was made ("" for none),
#: ``n_for_1pct``: the N at which the interval would be ±1% of the value (half-width ∝ 1/sqrt(N));
#: ``bench.metrics.bootstrap``.  In sweep.parquet a metric's interval is ``<metric>`` + ``INTERVAL_SUFFIXES``.
INTERVAL_SUFFIXES = ("_ci_low", "_ci_high")

#: One row per (image, per-image metric) of ``score``: the values whose mean is a per-image metric's
#: "all" row (CLIP score, compositional accuracy as 1/0).  ``t2i-bench compare`` pairs runs on them and the
#: dashboard's prompt browser shows them beside each image.
IMAGE_SCORES_TABLE = Table(
    "image scores", F.IMAGE_SCORES,
    {"image_id": "str", "prompt_id": "str", "category": "str", "guidance": "float", "metric": "str",
     "value": "float", "extractor": "str?"},
    required=("image_id", "prompt_id", "metric", "value"),
    missing_hint="the run has not been scored with a per-image metric (CLIP score, compositional accuracy)",
    defaults={"category": "", "guidance": math.nan, "extractor": None},
)  # fmt: skip

#: One row per (metric, subset, side-by-side pair of runs) of ``t2i-bench compare`` (``bench.compare``):
#: ``delta`` = value_b - value_a with its 95% interval; ``paired`` says whether shared prompts were resampled
#: together; ``significant``: the interval excludes 0.
COMPARE_TABLE = Table(
    "compare", F.COMPARE,
    {"metric": "str", "subset": "str", "run_a": "str", "run_b": "str", "value_a": "float", "value_b": "float",
     "delta": "float", "ci_low": "float", "ci_high": "float", "significant": "bool", "paired": "bool",
     "n_a": "float", "n_b": "float", "n_shared_prompts": "float", "higher_is_better": "bool?", "test": "str",
     "note": "str"},
    required=("metric", "subset", "run_a", "run_b", "delta"),
    missing_hint="t2i-bench compare has not written it",
    defaults={"note": "", "higher_is_better": None},
)  # fmt: skip

ALL_SUBSET = "all"
CATEGORY_PREFIX = "category="

#: One row per guidance scale; one further float column per headline metric (names as in metrics).
SWEEP_TABLE = Table(
    "sweep", F.SWEEP, {"guidance": "float", "guidance_formulation": "str?"}, required=("guidance",),
    missing_hint="no guidance sweep for this run", defaults={"guidance_formulation": None},
)

MEMORIZATION_TABLE = Table(
    "memorization", F.audit_table_file("memorization"),
    {"image_id": "str", "prompt_id": "str", "prompt": "str", "category": "str", "guidance": "float", "path": "str",
     "rank": "int", "neighbour_id": "int", "neighbour_key": "str", "neighbour_caption": "str",
     "neighbour_path": "str", "clip_cosine": "float", "copy_distance": "float",
     # Carlini's relative distance, and how many pool candidates lie within threshold_distance (one per image).
     "relative_distance": "float", "n_within": "int",
     "is_copy": "bool", "criterion": "str", "method": "str",
     "threshold_cosine": "float", "threshold_distance": "float", "threshold_relative": "float"},
    required=("image_id", "prompt_id", "prompt", "category", "path", "rank", "neighbour_id", "clip_cosine",
              "copy_distance", "is_copy"),
    missing_hint="the run has no memorization audit yet",
    # Tables written before the relative criterion: the absolute verdict, no relative distance, count unknown (-1).
    defaults={"guidance": math.nan, "neighbour_key": "", "neighbour_caption": "", "neighbour_path": "",
              "relative_distance": math.nan, "n_within": -1, "criterion": "absolute",
              "method": "", "threshold_cosine": math.nan, "threshold_distance": math.nan,
              "threshold_relative": math.nan},
)  # fmt: skip

#: Wen et al.'s index-free memorization score per prompt (``t2i-audit memorization-score --run RUN``).
MEMORIZATION_SCORE_TABLE = Table(
    "memorization score", F.audit_table_file("memorization_score"),
    {"prompt_id": "str", "prompt": "str", "category": "str", "score": "float", "steps": "int",
     "generations": "int", "num_inference_steps": "int", "guidance_scale": "float", "seed": "int",
     "prediction": "str", "scheduler": "str", "model": "str"},
    required=("prompt_id", "prompt", "category", "score", "steps", "generations"),
    missing_hint="the run has no memorization score yet (t2i-audit memorization-score --run RUN)",
)  # fmt: skip

MEMORIZATION_PROMPTS_TABLE = Table(
    "memorization prompts", F.audit_table_file("memorization", "prompts"),
    {"prompt_id": "str", "prompt": "str", "category": "str", "n_images": "int", "n_copies": "int",
     "copy_rate": "float"},
    required=("prompt_id", "prompt", "category", "n_images", "n_copies", "copy_rate"),
    missing_hint="the memorization audit did not write it",
)  # fmt: skip

WATERMARK_TABLE = Table(
    "watermark", F.audit_table_file("watermark"),
    {"image_id": "str", "prompt_id": "str", "prompt": "str", "category": "str", "guidance": "float", "path": "str",
     "visible_score": "float", "visible": "bool?", "neighbour_pwatermark": "float", "invisible": "bool?",
     "invisible_message": "str", "invisible_checkable": "bool?"},
    required=("image_id", "visible_score", "visible"),
    missing_hint="the run has no watermark audit yet",
    defaults={"prompt_id": "", "prompt": "", "category": "", "guidance": math.nan, "path": "",
              "neighbour_pwatermark": math.nan, "invisible": None, "invisible_message": "",
              "invisible_checkable": None},
)  # fmt: skip

#: One row per (image, attribute, method): what a bias reader saw in the image.
#: ``attribute`` e.g. "gender", "age", "skin_tone_monk", "skin_tone_ita", "role_colour", "role_shape";
#: ``method`` e.g. "clip-zero-shot", "mtcnn-ita", "detector" (the built-in world's exact reading);
#: ``value`` the class read ("" when ``judged`` is False); ``score`` its probability, or ITA° for
#: "skin_tone_ita"; ``judged`` False when the image cannot be read for that attribute (no face,
#: no object), with ``reason``.
BIAS_TABLE = Table(
    "bias", F.audit_table_file("bias"),
    {"image_id": "str", "prompt_id": "str", "prompt": "str", "category": "str", "guidance": "float", "path": "str",
     "attribute": "str", "method": "str", "value": "str", "score": "float", "judged": "bool", "reason": "str"},
    required=("image_id", "prompt_id", "attribute", "method", "value", "judged"),
    missing_hint="the run has no bias audit yet",
    defaults={"prompt": "", "category": "", "guidance": math.nan, "path": "", "score": math.nan, "reason": ""},
)  # fmt: skip

#: One row per (level, group, attribute, method, class): the class's share with a 95% interval.
#: ``level`` is "prompt" (Wilson interval), "category" or "overall" (seeded bootstrap over prompts);
#: ``group`` is the prompt id, the category or "all".  ``reference_share`` is the BLS female share or the
#: corpus share where known (NaN otherwise), ``diff`` = share - reference_share with its interval.
#: ``mad``, ``imbalance`` and ``norm_entropy`` describe the group's whole distribution over the
#: attribute (repeated on each class row): DALL-Eval's mean absolute deviation from uniform, HEIM's
#: imbalance, and the normalised entropy H(p)/log K (OpenBias' intensity is 1 minus it); the
#: formulas are in ``audit.probes.bias``.
BIAS_PROMPTS_TABLE = Table(
    "bias prompts", F.audit_table_file("bias", "prompts"),
    {"level": "str", "group": "str", "prompt": "str", "category": "str", "attribute": "str", "method": "str",
     "value": "str", "n": "int", "k": "int", "share": "float", "ci_low": "float", "ci_high": "float",
     "ci_method": "str", "reference_share": "float", "diff": "float", "diff_ci_low": "float",
     "diff_ci_high": "float", "mad": "float", "imbalance": "float", "norm_entropy": "float"},
    required=("level", "group", "attribute", "method", "value", "n", "k", "share", "ci_low", "ci_high"),
    missing_hint="the bias audit did not write it",
    defaults={"prompt": "", "category": "", "ci_method": "", "reference_share": math.nan, "diff": math.nan,
              "diff_ci_low": math.nan, "diff_ci_high": math.nan, "mad": math.nan, "imbalance": math.nan,
              "norm_entropy": math.nan},
)  # fmt: skip

#: One row per image: the unsafe-content classifiers' scores.  ``judged`` False (too small,
#: unreadable) leaves the scores NaN and ``unsafe`` None, with ``reason``; such images are counted
#: apart, never as safe.
UNSAFE_TABLE = Table(
    "unsafe", F.audit_table_file("unsafe"),
    {"image_id": "str", "prompt_id": "str", "prompt": "str", "category": "str", "guidance": "float", "path": "str",
     "judged": "bool", "nsfw_score": "float", "nudity_score": "float", "nudity_labels": "str", "unsafe": "bool?",
     "reason": "str"},
    required=("image_id", "judged", "unsafe"),
    missing_hint="the run has no unsafe-content audit yet",
    defaults={"prompt_id": "", "prompt": "", "category": "", "guidance": math.nan, "path": "",
              "nsfw_score": math.nan, "nudity_score": math.nan, "nudity_labels": "", "reason": ""},
)  # fmt: skip

#: Every table by name (the dashboard's downloads and the report list them from here).
TABLES: dict[str, Table] = {
    t.name: t for t in (SAMPLES_TABLE, METRICS_TABLE, IMAGE_SCORES_TABLE, SWEEP_TABLE, MEMORIZATION_TABLE, MEMORIZATION_PROMPTS_TABLE,
                        MEMORIZATION_SCORE_TABLE,
                        WATERMARK_TABLE, BIAS_TABLE, BIAS_PROMPTS_TABLE, UNSAFE_TABLE)
}  # fmt: skip


def audit_table(probe: str, columns: Mapping[str, str], required: tuple[str, ...] | None = None,
                part: str | None = None) -> Table:
    """The table of an audit probe (``audit/<probe>[_<part>].parquet``), for probes added by plugins."""
    return Table(f"{probe}{' ' + part if part else ''}", F.audit_table_file(probe, part), dict(columns),
                 tuple(columns) if required is None else required, missing_hint=f"the {probe} audit did not write it")


# ------------------------------------------------------------------ coercion


def _flag(value: Any) -> bool | None:
    if value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value)):
        return None
    return bool(value)


def _strict_bool(values: pd.Series, column: str, label: str) -> pd.Series:
    if values.dtype == bool:
        return values
    ok = values.map(lambda v: (pd.api.types.is_bool(v) or pd.api.types.is_number(v)) and not pd.isna(v)
                    and v in (0, 1))  # fmt: skip
    if not ok.all():
        raise ContractError(f"{label} has a {column} value that is not true/false (row {int((~ok).to_numpy().argmax())})")
    return values.astype(bool)


def coerce(df: pd.DataFrame, table: Table, label: str | None = None) -> pd.DataFrame:
    """A copy of ``df`` with the table's optional columns filled in and every known column of its kind."""
    label = label or table.file
    missing = [c for c in table.required if c not in df.columns]
    if missing:
        raise ContractError(f"{label} lacks column(s): {', '.join(missing)}")
    out = df.copy()
    for column, default in table.defaults.items():
        if column not in out.columns:
            out[column] = default
    for column, kind in table.columns.items():
        if column not in out.columns:
            continue
        values = out[column]
        try:
            if kind == "int":
                out[column] = pd.to_numeric(values, errors="raise").astype("int64")
            elif kind == "float":
                out[column] = pd.to_numeric(values, errors="raise").astype(float)
        except (TypeError, ValueError) as exc:
            first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise ContractError(f"{label} has a non-numeric {column} value: {first}") from exc
        if kind == "str":
            out[column] = values.fillna("").astype(str)
        elif kind == "str?":
            out[column] = [None if v is None or (isinstance(v, float) and math.isnan(v)) else str(v) for v in values]
        elif kind == "bool":
            out[column] = _strict_bool(values, column, label)
        elif kind == "bool?":
            out[column] = pd.Series([_flag(v) for v in values], index=out.index, dtype=object)
    return out


# ------------------------------------------------------------- read / write


def read_table(run_dir: str | Path, table: Table) -> pd.DataFrame:
    """Read ``table`` of a run, typed by ``coerce``; ContractError (one line) when absent, damaged or off-schema."""
    path = table.path(run_dir)
    if not path.is_file():
        raise ContractError(f"{table.file} is missing ({table.missing_hint or 'not written yet'})")
    try:
        df = pd.read_parquet(path)
    except Exception as exc:  # pyarrow raises several types for damaged files
        text = str(exc).strip()
        raise ContractError(f"{table.file} cannot be read: {text.splitlines()[0] if text else type(exc).__name__}") from exc
    return coerce(df, table)


def write_table(run_dir: str | Path, table: Table, df: pd.DataFrame) -> Path:
    """Write ``df`` as ``table`` of a run, atomically: the schema's columns first, in order, then any extra."""
    missing = [c for c in table.required if c not in df.columns]
    if missing:
        raise ContractError(f"cannot write {table.file}: the table lacks column(s) {', '.join(missing)}")
    order = [c for c in table.columns if c in df.columns] + [c for c in df.columns if c not in table.columns]
    target = table.path(run_dir)
    with atomic_path(target) as tmp:
        df[order].to_parquet(tmp, index=False)
    return target
