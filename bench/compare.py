"""``t2i-bench compare``: differences between runs, each with a 95% interval that says what is significant.

A *side* is a run, optionally cut to one guidance scale (``RUN@7.5``).  The first side is the baseline A;
every other side B is compared with it: ``delta = value_B - value_A``.

**Per-image metrics** (CLIP score, compositional accuracy; ``image_scores.parquet``).  When the sides share
prompts (same prompt ids: two models on one prompt set, two guidance scales of one run, two seeds), the
difference is resampled *paired*: a percentile bootstrap over the shared prompts, each resample drawing
prompt counts c_p (multinomial(P, 1/P)) used by both sides, images nested in prompts:

    delta* = Σ_p c_p S^B_p / Σ_p c_p n^B_p  -  Σ_p c_p S^A_p / Σ_p c_p n^A_p

(S_p: the sum of a prompt's per-image values on a side, n_p: its images).  Pairing removes the
prompt-to-prompt variance both sides share, so a real difference is found with far fewer prompts.  With no
shared prompt, each side is resampled on its own prompts (unpaired) and the note says so.  The difference
is *significant at 95%* when the percentile interval [q_0.025, q_0.975] of delta* excludes 0 (the bootstrap
test of Efron & Tibshirani 1993, ch. 16).  Paired rows use the shared prompts only.

**Set metrics** (FD/FID, KID, CMMD, precision/recall; ``set_metrics=True``): the same prompt counts
weight each side's generated rows, the reference is held fixed, and each resample is computed exactly from
the features cached by ``score`` (``bench.metrics.*_resamples``: nothing is embedded again).  Refused in
one line: a different extractor, a different FID resize mode, a different reference.

Runs whose guidance formulations differ are labelled and plotted on the diffusers CFG scale
(``cfg_scale``), and a note says so.  Numbers only (numpy, pandas), so the dashboard may import it.
"""

from __future__ import annotations

import json
import math
import warnings
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import pandas as pd

from bench import contract as C
from bench.errors import UserError
from bench.metrics.base import MetricWarning
from bench.metrics.bootstrap import LEVEL, counts_of, percentile_interval, resample_indices

#: Resamples for FD's paired difference when N > d: each costs two d x d eigendecompositions
#: (the cap ``bench.metrics.fid.FD_RESAMPLES_LARGE_N`` uses for FD's own interval).
FD_RESAMPLES_CAP = 200


@dataclass(frozen=True)
class Side:
    """A run, or one guidance scale of it."""

    run: Path
    guidance: float | None = None

    @property
    def label(self) -> str:
        return self.run.name if self.guidance is None else f"{self.run.name}@{self.guidance:g}"


def parse_side(text: str) -> Side:
    """``RUN`` or ``RUN@GUIDANCE`` (a path that exists as written is always a run, even with an ``@``)."""
    path = Path(text)
    if path.exists() or "@" not in text:
        return Side(path)
    run, _, scale = text.rpartition("@")
    try:
        guidance = float(scale)
    except ValueError:
        raise UserError(f"'{text}': the guidance after '@' must be a number, e.g. {run}@7.5") from None
    if not math.isfinite(guidance):
        raise UserError(f"'{text}': the guidance after '@' must be a finite number, e.g. {run}@7.5")
    return Side(Path(run), guidance)


@dataclass
class CompareResult:
    """``table``: COMPARE_TABLE rows (every metric, overall and per category); ``notes``: one line each."""

    table: pd.DataFrame
    notes: list[str] = field(default_factory=list)
    labels: list[str] = field(default_factory=list)


# ----------------------------------------------------------------------------- the numeric core


@dataclass(frozen=True)
class PromptSums:
    """A side's per-image values summed per prompt: ``sums[p]``, ``sizes[p]`` for prompt ``prompts[p]``."""

    prompts: tuple
    sums: np.ndarray
    sizes: np.ndarray

    @classmethod
    def of(cls, values: Sequence[float], prompts: Sequence) -> "PromptSums":
        frame = pd.DataFrame({"p": list(prompts), "v": np.asarray(values, np.float64)})
        g = frame.groupby("p", sort=True)["v"]
        return cls(tuple(g.sum().index), g.sum().to_numpy(np.float64), g.size().to_numpy(np.float64))

    def restrict(self, prompts: Sequence) -> "PromptSums":
        pos = {p: i for i, p in enumerate(self.prompts)}
        idx = np.array([pos[p] for p in prompts], dtype=np.int64)
        return PromptSums(tuple(prompts), self.sums[idx], self.sizes[idx])

    @property
    def mean(self) -> float:
        return float(self.sums.sum() / self.sizes.sum())


def paired_delta_resamples(a: PromptSums, b: PromptSums, rng: np.random.Generator, resamples: int) -> np.ndarray:
    """delta* of each paired resample of the prompts ``a`` and ``b`` share (both restricted to them first)."""
    if a.prompts != b.prompts:
        raise ValueError("paired resampling needs both sides restricted to the same prompts")
    c = counts_of(resample_indices(rng, len(a.prompts), resamples), len(a.prompts))
    return (c @ b.sums) / (c @ b.sizes) - (c @ a.sums) / (c @ a.sizes)


def unpaired_delta_resamples(a: PromptSums, b: PromptSums, rng: np.random.Generator, resamples: int) -> np.ndarray:
    """delta* when the sides share no prompts: each side's prompts resampled on their own."""
    ca = counts_of(resample_indices(rng, len(a.prompts), resamples), len(a.prompts))
    cb = counts_of(resample_indices(rng, len(b.prompts), resamples), len(b.prompts))
    return (cb @ b.sums) / (cb @ b.sizes) - (ca @ a.sums) / (ca @ a.sizes)


def delta_interval(a: PromptSums, b: PromptSums, rng: np.random.Generator, resamples: int) -> dict:
    """The difference b - a with its 95% interval: paired over shared prompts when there are any."""
    shared = sorted(set(a.prompts) & set(b.prompts), key=str)
    paired = len(shared) > 0
    if paired:
        a, b = a.restrict(shared), b.restrict(shared)
        stats = paired_delta_resamples(a, b, rng, resamples)
    else:
        stats = unpaired_delta_resamples(a, b, rng, resamples)
    lo, hi = percentile_interval(stats)
    return {"value_a": a.mean, "value_b": b.mean, "delta": b.mean - a.mean, "ci_low": lo, "ci_high": hi,
            "paired": paired, "n_a": float(a.sizes.sum()), "n_b": float(b.sizes.sum()),
            "n_shared_prompts": float(len(shared))}


def significant(ci_low: float, ci_high: float) -> bool:
    """The 95% interval of a difference excludes 0."""
    return bool(math.isfinite(ci_low) and math.isfinite(ci_high) and (ci_low > 0 or ci_high < 0))


def describe_test(paired: bool, resamples: int, seed: int, n_prompts: int | None = None, what: str = "prompts") -> str:
    kind = f"paired percentile bootstrap over {n_prompts} shared {what}" if paired else \
        "unpaired percentile bootstrap over each run's prompts"
    return f"{kind} ({resamples} resamples, seed {seed}); significant when the {LEVEL:.0%} interval excludes 0"


# ----------------------------------------------------------------------------- reading the sides


@dataclass
class _Loaded:
    side: Side
    label: str
    manifest: dict
    samples: pd.DataFrame
    image_scores: pd.DataFrame | None
    metrics: pd.DataFrame | None


def _load(side: Side) -> _Loaded:
    run = side.run
    if not run.exists():
        raise UserError(f"run '{run}' does not exist: pass run directories written by t2i-bench generate")
    if not C.is_run_dir(run):
        raise UserError(f"'{run}' is not a run directory (no {C.MANIFEST}): pass the folder t2i-bench generate wrote")
    try:
        manifest = json.loads((run / C.MANIFEST).read_text())
    except (OSError, ValueError) as exc:
        raise UserError(f"run '{run}': {C.MANIFEST} cannot be read ({exc}): regenerate the run") from None
    samples = C.read_table(run, C.SAMPLES_TABLE)
    scores = C.read_table(run, C.IMAGE_SCORES_TABLE) if C.IMAGE_SCORES_TABLE.path(run).is_file() else None
    metrics = C.read_table(run, C.METRICS_TABLE) if C.METRICS_TABLE.path(run).is_file() else None
    if metrics is not None:
        metrics = C.upgrade_metric_names(metrics)
    if side.guidance is not None:
        scales = sorted(set(samples.guidance.dropna().tolist()))
        if not any(math.isclose(g, side.guidance) for g in scales):
            listed = ", ".join(f"{g:g}" for g in scales) or "none"
            raise UserError(f"run '{run.name}' has no images at guidance {side.guidance:g} (it has: {listed}): "
                            f"pick one of them, e.g. {run.name}@{scales[0]:g}" if scales else
                            f"run '{run.name}' has no guidance scales: compare it whole, without '@'")
        keep = np.isclose(samples.guidance.to_numpy(float), side.guidance)
        samples = samples[keep].reset_index(drop=True)
        if scores is not None:
            scores = scores[scores.image_id.isin(set(samples.image_id))]
    if scores is None and metrics is None:
        raise UserError(f"run '{run.name}' has not been scored: run t2i-bench score {run} first")
    return _Loaded(side, side.label, manifest, samples, scores, metrics)


def _formulation(loaded: _Loaded) -> str:
    return loaded.manifest.get("guidance_formulation") or "cfg"


def _higher_is_better(metric: str) -> bool | None:
    from bench.metrics import metric_info

    try:
        return bool(metric_info(metric).higher_is_better)
    except KeyError:  # a plugin's metric without metadata: no direction
        return None


# ----------------------------------------------------------------------------- per-image metrics


def _check_same_extractor(metric: str, a: _Loaded, b: _Loaded) -> None:
    ea = set(a.image_scores.loc[a.image_scores.metric == metric, "extractor"].dropna())
    eb = set(b.image_scores.loc[b.image_scores.metric == metric, "extractor"].dropna())
    if ea and eb and ea != eb:
        raise UserError(f"{metric}: {a.label} was scored with {sorted(ea)[0]} and {b.label} with {sorted(eb)[0]}; "
                        f"score both with the same model, or leave it out with --metrics")


def _per_image_rows(a: _Loaded, b: _Loaded, metrics: Sequence[str] | None, resamples: int, seed: int) -> list[dict]:
    if a.image_scores is None or b.image_scores is None:
        return []
    shared = sorted(set(a.image_scores.metric) & set(b.image_scores.metric))
    if metrics is not None:
        shared = [m for m in shared if m in metrics]
    rows = []
    for metric in shared:
        _check_same_extractor(metric, a, b)
        sa = a.image_scores[a.image_scores.metric == metric]
        sb = b.image_scores[b.image_scores.metric == metric]
        subsets = [(C.ALL_SUBSET, sa, sb)]
        for category in sorted(set(sa.category) & set(sb.category)):
            subsets.append((f"{C.CATEGORY_PREFIX}{category}", sa[sa.category == category],
                            sb[sb.category == category]))
        for subset, va, vb in subsets:
            if len(va) == 0 or len(vb) == 0:
                continue
            rng = np.random.default_rng([seed, zlib.crc32(f"{metric}/{subset}".encode())])
            row = delta_interval(PromptSums.of(va.value, va.prompt_id), PromptSums.of(vb.value, vb.prompt_id),
                                 rng, resamples)
            row.update(metric=metric, subset=subset,
                       test=describe_test(row["paired"], resamples, seed, int(row["n_shared_prompts"])))
            rows.append(row)
    return rows


# ----------------------------------------------------------------------------- set metrics


def _cached_features(cache_dir: Path, key: str, wanted: Sequence[str]) -> np.ndarray | None:
    """Rows of ``wanted`` (paths relative to the cache's root) from a cache entry of extractor ``key``."""
    if not cache_dir.is_dir():
        return None
    for meta_path in sorted(cache_dir.glob("*.json")):
        try:
            meta = json.loads(meta_path.read_text())
        except (OSError, ValueError):
            continue
        if meta.get("extractor") != key:
            continue
        row_of = {p: i for i, p in enumerate(meta.get("paths", []))}
        if not all(p in row_of for p in wanted):
            continue
        npy = meta_path.with_suffix(".npy")
        try:
            feats = np.load(npy, allow_pickle=False)
        except (OSError, ValueError):
            continue
        if feats.shape[0] != len(row_of):
            continue
        return feats[[row_of[p] for p in wanted]].astype(np.float64)
    return None


def _reference(label: str, key: str, base: str):
    """The reference of a score (by its label in metrics.parquet): features, GaussianStats, or None if not cached."""
    from bench.metrics.fid import GaussianStats

    if label.startswith("run:"):
        ref_run = Path(label[len("run:"):])
        if not C.is_run_dir(ref_run):
            return None
        paths = C.read_table(ref_run, C.SAMPLES_TABLE).path.tolist()
        return _cached_features(ref_run / C.FEATURES_DIR, key, paths)
    path = Path(label)
    if path.suffix == ".npz" and path.is_file():
        return GaussianStats.load_npz(path) if base == "FD" else None
    if path.is_dir():
        from bench.cache import cache_dir

        images = sorted(p.resolve().relative_to(path.resolve()).as_posix() for p in path.rglob("*")
                        if p.suffix.lower() in {".png", ".jpg", ".jpeg", ".webp", ".bmp"})
        return _cached_features(cache_dir() / "features", key, images)
    return None


def _set_resampler(base: str, options: dict) -> Callable | None:
    from bench.metrics.cmmd import cmmd_resamples
    from bench.metrics.fid import GaussianStats, fd_resamples
    from bench.metrics.kid import kid_resamples
    from bench.metrics.precision_recall import pr_resamples

    def fd(x, ref, counts):
        stats = ref if isinstance(ref, GaussianStats) else GaussianStats.from_features(ref)
        return fd_resamples(x, stats, counts)

    k = int(options.get("pr_k", 3))
    return {"FD": fd, "KID": kid_resamples, "CMMD": cmmd_resamples,
            "precision": lambda x, r, c: pr_resamples(x, r, c, k)[0],
            "recall": lambda x, r, c: pr_resamples(x, r, c, k)[1]}.get(base)


def _metric_rows_at(loaded: _Loaded, metric: str) -> pd.DataFrame | None:
    """The side's overall rows of ``metric`` at its guidance: one per reference it was scored against."""
    m = loaded.metrics
    if m is None:
        return None
    rows = m[(m.metric == metric) & (m.subset == C.ALL_SUBSET)]
    g = loaded.side.guidance
    rows = rows[rows.guidance.isna()] if g is None else rows[np.isclose(rows.guidance.to_numpy(float), g)]
    if g is not None and len(rows) == 0 and len(set(loaded.samples.guidance.dropna())) <= 1:
        rows = m[(m.metric == metric) & (m.subset == C.ALL_SUBSET) & m.guidance.isna()]  # one scale: the "all" row
    return None if len(rows) == 0 else rows


def _set_metric_rows(a: _Loaded, b: _Loaded, metrics: Sequence[str] | None, resamples: int, seed: int,
                     notes: list[str]) -> list[dict]:
    from bench.contract import parse_metric_name
    from bench.features.base import key_name, key_resize

    if a.metrics is None or b.metrics is None:
        return []
    names = sorted(set(a.metrics[a.metrics.reference.notna()].metric) & set(b.metrics[b.metrics.reference.notna()].metric))
    if metrics is not None:
        names = [m for m in names if m in metrics]
    rows = []
    for metric in names:
        base, _ = parse_metric_name(metric)
        rows_a, rows_b = _metric_rows_at(a, metric), _metric_rows_at(b, metric)
        resampler = _set_resampler(base, {})
        if rows_a is None or rows_b is None or resampler is None:
            continue
        # A run scored against several references keeps one row per reference: compare on one both share.
        both = sorted(set(rows_a.reference) & set(rows_b.reference))
        ra = rows_a[rows_a.reference == both[0]].iloc[0] if both else rows_a.iloc[0]
        rb = rows_b[rows_b.reference == both[0]].iloc[0] if both else rows_b.iloc[0]
        if len(both) > 1:
            notes.append(f"{metric}: compared against the reference {both[0]} (both runs were also scored against "
                         f"{', '.join(both[1:])})")
        ka, kb = ra.extractor, rb.extractor
        if ka != kb:
            if ka and kb and key_name(ka) == key_name(kb) and key_resize(ka) != key_resize(kb):
                raise UserError(f"{metric}: {a.label} resized images with {key_resize(ka)} and {b.label} with "
                                f"{key_resize(kb)}; FID depends on it: rescore one run with the other's resize mode")
            raise UserError(f"{metric}: {a.label} used {ka} and {b.label} used {kb}: rescore with one extractor, "
                            f"or leave it out with --metrics")
        if not both:
            raise UserError(f"{metric}: {a.label} was scored against {ra.reference} and {b.label} against "
                            f"{rb.reference}: rescore both against one reference, or leave it out with --metrics")
        reference = _reference(str(ra.reference), ka, base)
        xa = _cached_features(a.side.run / C.FEATURES_DIR, ka, a.samples.path.tolist())
        xb = _cached_features(b.side.run / C.FEATURES_DIR, ka, b.samples.path.tolist())
        if reference is None or xa is None or xb is None:
            notes.append(f"{metric}: left out, its features are not cached (run t2i-bench score on both runs "
                         f"with the same reference)")
            continue
        pa, pb = a.samples.prompt_id.to_numpy(), b.samples.prompt_id.to_numpy()
        shared = sorted(set(pa) & set(pb), key=str)
        n_b = resamples if not (base == "FD" and xa.shape[0] > xa.shape[1]) else min(resamples, FD_RESAMPLES_CAP)
        rng = np.random.default_rng([seed, zlib.crc32(f"set/{metric}".encode())])
        if shared:
            keep_a, keep_b = np.isin(pa, shared), np.isin(pb, shared)
            xa, xb, pa, pb = xa[keep_a], xb[keep_b], pa[keep_a], pb[keep_b]
            pos = {p: i for i, p in enumerate(shared)}
            prompt_counts = counts_of(resample_indices(rng, len(shared), n_b), len(shared))
            ca = prompt_counts[:, [pos[p] for p in pa]]
            cb = prompt_counts[:, [pos[p] for p in pb]]
        else:
            ca = counts_of(resample_indices(rng, len(xa), n_b), len(xa))
            cb = counts_of(resample_indices(rng, len(xb), n_b), len(xb))
        with warnings.catch_warnings(record=True) as caught:  # e.g. N <= d for FD: one note, not a warning dump
            warnings.simplefilter("always", MetricWarning)
            value_a = float(resampler(xa, reference, np.ones((1, len(xa))))[0])
            value_b = float(resampler(xb, reference, np.ones((1, len(xb))))[0])
            stats = resampler(xb, reference, cb) - resampler(xa, reference, ca)
        notes += list(dict.fromkeys(f"{metric}: {w.message}" for w in caught
                                    if issubclass(w.category, MetricWarning)))
        lo, hi = percentile_interval(stats)
        rows.append({"metric": metric, "subset": C.ALL_SUBSET, "value_a": value_a, "value_b": value_b,
                     "delta": value_b - value_a, "ci_low": lo, "ci_high": hi, "paired": bool(shared),
                     "n_a": float(len(xa)), "n_b": float(len(xb)), "n_shared_prompts": float(len(shared)),
                     "test": describe_test(bool(shared), n_b, seed, len(shared)) + "; reference fixed"})
    return rows


# ----------------------------------------------------------------------------- compare


def compare_runs(sides: Sequence[Side], resamples: int = 1000, seed: int = 0, set_metrics: bool = True,
                 metrics: Sequence[str] | None = None) -> CompareResult:
    """Every metric of every side B against the first side A (``delta = B - A``), with paired intervals."""
    if len(sides) < 2:
        raise UserError("compare needs at least two runs (RUN_A RUN_B [RUN ...]; RUN@GUIDANCE picks one scale)")
    if resamples < 100:
        raise UserError(f"--resamples must be at least 100 for a 95% interval, got {resamples}")
    loaded = [_load(s) for s in sides]
    labels = [x.label for x in loaded]
    if len(set(labels)) < len(labels):
        if len(set(sides)) < len(sides):
            raise UserError(f"the runs to compare must differ, got {', '.join(labels)}")
        raise UserError(f"two runs are named alike ({', '.join(labels)}): rename one folder, since tables and "
                        f"plots label runs by their folder name")
    notes: list[str] = []
    formulations = {_formulation(x) for x in loaded}
    if len(formulations) > 1:
        notes.append(f"the runs use different guidance formulations ({', '.join(sorted(formulations))}); guidance "
                     f"is compared on the diffusers CFG scale (cfg_scale = w + 1 for ho-salimans)")
    base = loaded[0]
    rows = []
    for other in loaded[1:]:
        pair = _per_image_rows(base, other, metrics, resamples, seed)
        if set_metrics:
            pair += _set_metric_rows(base, other, metrics, resamples, seed, notes)
        if not pair:
            notes.append(f"{base.label} and {other.label} share no metric to compare: score both with the same "
                         f"options (--clip, --features, --reference)")
        if pair and not any(r["paired"] for r in pair):
            notes.append(f"{base.label} and {other.label} share no prompt: the intervals are unpaired (wider)")
        for r in pair:
            r.update(run_a=base.label, run_b=other.label, higher_is_better=_higher_is_better(r["metric"]),
                     significant=significant(r["ci_low"], r["ci_high"]), note="")
        rows += pair
    if not rows:
        raise UserError("nothing to compare: " + (notes[-1] if notes else "the runs share no scored metric"))
    table = C.coerce(pd.DataFrame(rows), C.COMPARE_TABLE)
    order = table.subset.ne(C.ALL_SUBSET).astype(int)
    side_order = table.run_b.map({label: i for i, label in enumerate(labels)})
    table = (table.assign(_s=side_order, _o=order, _d=-table.delta.abs())
             .sort_values(["_s", "metric", "_o", "_d"], kind="stable")
             .drop(columns=["_s", "_o", "_d"]).reset_index(drop=True))
    return CompareResult(table, notes, labels)


def verdict(row: pd.Series) -> str:
    """"B better"/"B worse"/"not significant" (or "higher"/"lower" when the metric has no direction)."""
    if not row.significant:
        return "not significant"
    up = row.delta > 0
    if row.higher_is_better is None or pd.isna(row.higher_is_better):
        return "higher" if up else "lower"
    return "B better" if up == bool(row.higher_is_better) else "B worse"


def format_table(result: CompareResult, categories: bool = True) -> str:
    """The printed comparison: one line per metric (and per category, largest difference first)."""
    lines = []
    t = result.table
    for run_b, pair in t.groupby("run_b", sort=False):
        run_a = pair.run_a.iloc[0]
        lines.append(f"{run_b} vs {run_a} (delta = B - A, 95% interval)")
        shown = pair if categories else pair[pair.subset == C.ALL_SUBSET]
        width = max(len(f"{r.metric} [{r.subset}]") for r in shown.itertuples())
        for r in shown.itertuples():
            name = r.metric if r.subset == C.ALL_SUBSET else f"  {r.subset.removeprefix(C.CATEGORY_PREFIX)}"
            lines.append(f"  {name:<{width}}  A {r.value_a:.4g}  B {r.value_b:.4g}  delta {r.delta:+.4g} "
                         f"[{r.ci_low:+.4g}, {r.ci_high:+.4g}]  {verdict(pd.Series(r._asdict()))}"
                         f"{'' if r.paired else '  (unpaired)'}")
        tests = sorted(set(pair[pair.subset == C.ALL_SUBSET].test))  # per-category rows: the same test, fewer prompts
        lines += [f"  test: {t_}" for t_ in tests]
    lines += [f"note: {n}" for n in result.notes]
    return "\n".join(lines)
