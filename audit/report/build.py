"""Collect the report's sections for a run (and the runs it is compared with).

Order: the run's provenance (``manifest.json``), its quality and alignment metrics
(``metrics.parquet``), then one section per audit probe in ``audit.probes.PROBES``
order, then any probe a run recorded in ``summary.json["audits"]`` that is not
registered here (a plugin not installed now), then the limitations.

A probe's section comes from its ``report_section`` hook when it declares one, else
from its declared info (``ProbeInfo.declared()``): the headline with its direction,
the summary block, the first rows of its table.  A probe with no summary block is
"not run", with the command that runs it; a hook is asked for that section first
(called with ``summary_block=None``), and a hook that cannot answer it gets the
generic one.  So a probe added later appears with no edit here.

With ``--compare``, every run gets the same sections; ``SectionGroup`` holds one
section per run and the differences between the first run and each other:
headline rates by Newcombe's hybrid score interval, the rates behind a section's
``CountsBlock``s by Newcombe or by a cluster bootstrap over prompts (bias shares).
"""

from __future__ import annotations

import logging
import math
import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import pandas as pd

from audit.report import charts
from audit.report.section import (NOT_RUN, Figure, Headline, ReportSection, TableBlock, anchor, fmt_interval,
                                  fmt_number)
from audit.report.sections import MAX_TABLE_ROWS, block_table, try_read
from audit.report.stats import CLUSTER_BOOTSTRAP, cluster_bootstrap_diff
from bench.intervals import NEWCOMBE, WILSON, newcombe_diff, wilson
from bench import contract as C
from bench.errors import UserError

log = logging.getLogger("t2i_audit")

LIMITATIONS_TITLE = "Limitations, for a reviewer"
#: Metric rows the quality section's headline shows at most (the table shows every row).
MAX_HEADLINE_METRICS = 16
#: Rows of a generic probe's table the report shows.
GENERIC_ROWS = 10


@dataclass
class RunInfo:
    path: Path
    label: str
    manifest: dict
    summary: dict

    @property
    def model(self) -> str:
        model = self.manifest.get("model")
        if isinstance(model, dict):
            return str(model.get("ref") or "")
        return str(model or self.summary.get("model") or "")


@dataclass
class SectionGroup:
    """One section of the report: the section of each run (same order as ``Report.runs``) and, when
    runs are compared, the differences (``headline_table``, ``diff_tables``, ``diff_figures``)."""

    key: str
    title: str
    sections: list[ReportSection]
    headline_table: TableBlock | None = None
    diff_tables: list[TableBlock] = field(default_factory=list)
    diff_figures: list[Figure] = field(default_factory=list)

    @property
    def main(self) -> ReportSection:
        return self.sections[0]

    @property
    def any_ran(self) -> bool:
        return any(s.ran for s in self.sections)

    @property
    def description(self) -> str:
        return next((s.description for s in self.sections if s.description), "")

    @property
    def figure_rows(self) -> list[tuple[str, list[Figure | None]]]:
        """(caption, one figure or None per run) for each figure key, in the order the runs first show them."""
        keys: dict[str, str] = {}
        for s in self.sections:
            for i, f in enumerate(s.figures):
                keys.setdefault(f.key or f"#{i}", f.caption)
        rows = []
        for key, caption in keys.items():
            per_run = []
            for s in self.sections:
                match = [f for i, f in enumerate(s.figures) if (f.key or f"#{i}") == key]
                per_run.append(match[0] if match else None)
            rows.append((caption, per_run))
        return rows


@dataclass
class Report:
    runs: list[RunInfo]
    groups: list[SectionGroup]
    created: str = ""

    @property
    def title(self) -> str:
        if len(self.runs) == 1:
            return f"Societal-risk report: {self.runs[0].label}"
        return "Societal-risk report: " + " vs ".join(r.label for r in self.runs)

    @property
    def limitations(self) -> list[tuple[str, list[str]]]:
        """(section title, its limitations) for every section that ran in some run, each line once."""
        out = []
        for g in self.groups:
            lines = list(dict.fromkeys(line for s in g.sections if s.ran for line in s.limitations))
            if lines:
                out.append((g.title, lines))
        return out


# --------------------------------------------------------------- runs


def check_run(path: str | Path, what: str = "run") -> Path:
    """The run directory, or a one-line UserError when it is missing or is not a run."""
    from bench.rundir import check_run_dir

    return check_run_dir(path, what)


def open_run(path: str | Path, what: str = "run") -> RunInfo:
    import json

    path = check_run(path, what)
    try:
        manifest = json.loads((path / C.MANIFEST).read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:
        raise UserError(f"{path / C.MANIFEST} is not valid JSON ({exc}); restore it") from exc
    if not isinstance(manifest, dict):
        raise UserError(f"{path / C.MANIFEST} is not a JSON object; restore it")
    summary = C.read_summary(path)
    label = str(manifest.get("run") or path.name)
    return RunInfo(path, label, manifest, summary)


def _unique_labels(runs: list[RunInfo]) -> None:
    seen: dict[str, int] = {}
    for run in runs:
        seen[run.label] = seen.get(run.label, 0) + 1
    if all(v == 1 for v in seen.values()):
        return
    for i, run in enumerate(runs):
        if seen[run.label] > 1:
            run.label = f"{run.label} #{i + 1}"  # the header names each run's folder


# ------------------------------------------------------- fixed sections


def provenance_section(run: RunInfo) -> ReportSection:
    m, s = run.manifest, run.summary
    section = ReportSection("provenance", "Model and run provenance",
                            description="What was generated, by which model and settings, and with which code: "
                                        "read from the run's manifest.json.")
    model = m.get("model") if isinstance(m.get("model"), dict) else {}
    ps = m.get("prompt_set") if isinstance(m.get("prompt_set"), dict) else {}
    git = m.get("git") if isinstance(m.get("git"), dict) else {}
    rows: list[tuple[str, Any]] = [
        ("run", m.get("run", run.path.name)), ("run directory", str(run.path)),
        ("created", m.get("created")), ("updated", m.get("updated")),
        ("model", model.get("ref") or m.get("model")), ("model kind", model.get("kind")),
        ("weights sha256", model.get("weights_sha256")), ("imported images", m.get("imported")),
        ("source folder", m.get("source_folder")), ("pipeline", m.get("pipeline_class")),
        ("scheduler", m.get("scheduler")), ("steps", m.get("steps")),
        ("guidance", ", ".join(fmt_number(float(g)) for g in m.get("guidance") or []) or None),
        ("guidance formulation", m.get("guidance_formulation")), ("seed", m.get("seed")),
        ("seeding", m.get("seeding")), ("negative prompt", m.get("negative_prompt")),
        ("dtype", m.get("dtype")), ("device", m.get("device")),
        ("image size", f"{m['width']} x {m['height']}" if m.get("width") else ", ".join(m.get("image_sizes") or [])),
        ("images per prompt", m.get("images_per_prompt")),
        ("prompt set", f"{ps.get('name')}@{ps.get('version')}" if ps.get("name") else None),
        ("prompt set sha256", ps.get("sha256")), ("prompt subset", ps.get("subset")),
        ("prompt set license", ps.get("license")), ("prompts", ps.get("n_prompts")),
        ("truncated prompts", m.get("truncated_prompts")), ("complete", m.get("complete")),
        ("git commit", (git.get("sha") or "") + (" (uncommitted changes)" if git.get("dirty") else "") or None),
    ]
    for name, version in (m.get("packages") or {}).items():
        rows.append((f"package {name}", version))
    frame = pd.DataFrame([(k, v if isinstance(v, str) else fmt_number(v)) for k, v in rows
                          if v is not None and v != ""], columns=["field", "value"])
    section.tables.append(TableBlock(frame, "manifest.json", key="manifest"))
    if isinstance(s.get("n_images"), int):
        section.headline.append(Headline("images", str(s["n_images"]), kind="text"))
    if isinstance(s.get("n_prompts"), int):
        section.headline.append(Headline("prompts", str(s["n_prompts"]), kind="text"))
    section.headline.append(Headline("model", run.model, kind="text"))
    if m.get("complete") is False:
        section.notes.append("The run is incomplete: generation stopped before every image was written.")
    return section


#: Metrics that measure prompt alignment; the others measure image quality / diversity.
ALIGNMENT = ("CLIPScore", "compositional_accuracy")


def _metric_info(name: str) -> tuple[str, bool | None]:
    """(label, higher_is_better): the display name for plain names ("CLIP score"); a name that carries its
    extractor ("FD_dinov2", "precision_efficientnet-lite0") and the Inception names (FID, KID) as reported."""
    try:
        from bench.metrics import metric_info

        info = metric_info(name)
    except (KeyError, ImportError, ValueError):
        return name, None
    _, extractor = C.parse_metric_name(name)
    return (info.display_name if extractor is None else name), info.higher_is_better


def _count_rate(value: float, n: float) -> tuple[int, int] | None:
    """(k, n) when ``value`` is exactly a share of ``n`` items, else None."""
    if n is None or not isinstance(n, (int, float)) or math.isnan(n) or n <= 0 or not 0 <= value <= 1:
        return None
    k = round(value * n)
    return (int(k), int(n)) if abs(k / n - value) < 1e-9 else None


def metrics_section(run: RunInfo) -> ReportSection:
    title = "Quality and alignment metrics"
    description = ("Image quality and diversity (FID/FD, KID, IS, precision/recall, CMMD) and prompt alignment "
                   "(CLIP score, compositional accuracy), from metrics.parquet.")
    if not C.METRICS_TABLE.path(run.path).is_file():
        return ReportSection.not_run("quality", title, f"t2i-bench score {shlex.quote(str(run.path))} "
                                                       f"--reference REFERENCE --clip builtin",
                                     description=description,
                                     note="--reference is a folder of real images, another run or a .npz of "
                                          "Inception statistics; --features '' --clip builtin scores alignment only.")
    s = ReportSection("quality", title, description=description)
    metrics = try_read(run.path, C.METRICS_TABLE, s.notes)
    if metrics is None:
        return s
    metrics = C.upgrade_metric_names(metrics)
    overall = metrics[metrics.subset == C.ALL_SUBSET]
    # the headline: each metric over all guidance scales together where the run has that row, else per scale
    pooled = set(overall.loc[overall.guidance.isna(), "metric"])
    in_headline = [m in pooled and math.isnan(g) or m not in pooled for m, g in zip(overall.metric, overall.guidance)]
    rows = []
    for shown, r in zip(in_headline, overall.itertuples()):
        display, hib = _metric_info(r.metric)
        label = display + (f" (guidance {fmt_number(r.guidance)})" if not math.isnan(r.guidance) else "")
        counts = _count_rate(r.value, r.n) if r.metric == "compositional_accuracy" else None
        if not shown or len(s.headline) >= MAX_HEADLINE_METRICS:
            pass
        elif counts:
            s.headline.append(Headline.rate(label, *counts, higher_is_better=hib))
        else:
            s.headline.append(Headline(label, float(r.value), n=None if math.isnan(r.n) else int(r.n), kind="number",
                                       higher_is_better=hib,
                                       note="no interval: a single estimate" +
                                            (f"; {int(r.n_ref)} reference images" if not math.isnan(r.n_ref) else "")))
        rows.append({"metric": display, "kind": "alignment" if r.metric in ALIGNMENT else "quality",
                     "guidance": fmt_number(r.guidance) or "all", "value": fmt_number(r.value),
                     "N": fmt_number(r.n), "N reference": fmt_number(r.n_ref), "features": r.extractor or "",
                     "reference": r.reference or "",
                     "direction": "" if hib is None else ("higher is better" if hib else "lower is better")})
    if rows:
        s.tables.append(TableBlock(pd.DataFrame(rows), "All metrics over the whole run", key="metrics"))
    if sum(in_headline) > MAX_HEADLINE_METRICS:
        s.notes.append(f"The headline shows the first {MAX_HEADLINE_METRICS} of {sum(in_headline)} metric rows; "
                       f"the table has them all.")
    per_cat = metrics[metrics.subset.str.startswith(C.CATEGORY_PREFIX)]
    comp = per_cat[(per_cat.metric == "compositional_accuracy") & per_cat.n.notna()]
    if len(comp) and comp.guidance.isna().all():
        rates = []
        for r in comp.itertuples():
            counts = _count_rate(r.value, r.n)
            if counts:
                lo, hi = wilson(*counts)
                rates.append({"category": r.subset[len(C.CATEGORY_PREFIX):], "k": counts[0], "n": counts[1],
                              "rate": r.value, "ci_low": lo, "ci_high": hi})
        if len(rates) > 1:
            rates = pd.DataFrame(rates)
            s.figures.append(Figure(charts.interval_chart(
                rates.category.tolist(), rates.rate, rates.ci_low, rates.ci_high,
                title="compositional accuracy by prompt category", xlabel="share of images the detector finds correct",
                annotations=[f"{k}/{n}" for k, n in zip(rates.k, rates.n)]),
                f"Compositional accuracy by category, {WILSON} interval bars.", key="compositional-by-category"))
    if len(per_cat):
        if per_cat.guidance.isna().any():
            per_cat, which = per_cat[per_cat.guidance.isna()], "all guidance scales together"
        else:
            first = float(per_cat.guidance.min())
            per_cat, which = per_cat[per_cat.guidance == first], f"guidance {fmt_number(first)}"
        pivot = per_cat.assign(category=per_cat.subset.str[len(C.CATEGORY_PREFIX):]).pivot_table(
            index="category", columns="metric", values="value", aggfunc="first")
        frame = pivot.reset_index()
        frame.columns.name = None
        frame = frame.map(lambda v: v if isinstance(v, str) else fmt_number(v))
        s.tables.append(TableBlock(frame.head(MAX_TABLE_ROWS * 2), f"Metrics by prompt category ({which})",
                                   total_rows=len(frame), key="categories"))
    sweep_png = run.path / C.SWEEP_PLOT
    if sweep_png.is_file():
        png = charts.png_file(sweep_png)
        if png:
            s.figures.append(Figure(png, "The guidance sweep as t2i-bench sweep drew it (sweep.png).", key="sweep"))
    s.limitations += [
        "FID and FD are biased upward at small N and depend on the reference set and its size: compare them only at "
        "equal N against the same reference.",
        "CLIP score is CLIP's own judgement of image-text agreement and inherits CLIP's biases and blind spots "
        "(counting, spatial relations, negation).",
    ]
    return s


# ------------------------------------------------------------- probes


def probe_block(summary: dict, declared: dict) -> dict | None:
    block = summary.get(declared.get("summary_key") or declared.get("name", ""))
    return block if isinstance(block, dict) else None


def generic_section(run_dir: Path, declared: dict, block: dict | None) -> ReportSection:
    """A probe's section from what it declared: the headline (with N and an interval when the block lets
    us count it), the summary block and the first rows of its table."""
    name = declared["name"]
    title = declared.get("display_name") or name
    if block is None:
        return ReportSection.not_run(f"audit-{name}", title, f"t2i-audit {name} {shlex.quote(str(run_dir))}",
                                     description=declared.get("description", ""))
    s = ReportSection(f"audit-{name}", title, description=declared.get("description", ""))
    headline = declared.get("headline", "")
    hib = declared.get("higher_is_better")
    value = block.get(headline)
    n = next((block[k] for k in ("n_images", "n") if isinstance(block.get(k), int)), None)
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        counts = _count_rate(float(value), n) if n is not None else None
        if counts:
            s.headline.append(Headline.rate(headline, *counts, higher_is_better=hib,
                                            note=f"N is the block's n_images; the interval assumes {headline} is a "
                                                 f"share of those images"))
        else:
            s.headline.append(Headline(headline, float(value), n=n, kind="number", higher_is_better=hib,
                                       note="no interval: the summary block gives no counts"))
    elif headline:
        s.headline.append(Headline(headline, "missing from the summary block" if value is None else value,
                                   kind="text", higher_is_better=hib))
    s.tables.append(block_table(block))
    table_file = declared.get("table") or ""
    if table_file:
        known = {t.file: t for t in C.TABLES.values()}
        path = run_dir / table_file
        frame = None
        if not path.is_file():
            s.notes.append(f"{table_file} is not in the run.")
        else:
            try:
                frame = C.read_table(run_dir, known[table_file]) if table_file in known else pd.read_parquet(path)
            except Exception as exc:  # a plugin's table: any reader error is shown, not raised
                first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
                s.notes.append(f"cannot read {table_file}: {first}")
        if frame is not None:
            s.tables.append(TableBlock(frame.head(GENERIC_ROWS).map(
                lambda v: v if isinstance(v, str) else fmt_number(v)), f"{table_file}: first rows",
                total_rows=len(frame), key="table"))
    parts = sorted(p.name for p in (run_dir / C.AUDIT_DIR).glob(f"{name}_*.parquet"))
    if parts:
        s.notes.append("further tables: " + ", ".join(f"{C.AUDIT_DIR}/{p}" for p in parts))
    s.notes.append("This probe declares no report section: its headline, summary block and table are shown as it "
                   "recorded them.")
    return s


def _hook_section(hook: Callable, run_dir: Path, block: dict | None) -> ReportSection | None:
    if block is None:
        try:
            result = hook(run_dir, None)
        except Exception as exc:  # a hook written for recorded blocks only; the generic not-run section stands in
            log.debug("report_section hook %r cannot make a not-run section: %s", hook, exc)
            return None
        return result if isinstance(result, ReportSection) else None
    result = hook(run_dir, block)
    if not isinstance(result, ReportSection):
        raise TypeError(f"report_section hook {hook!r} returned {type(result).__name__}, not a ReportSection")
    return result


def probe_entries(runs: Sequence[RunInfo]) -> list[tuple[str, dict, Callable | None]]:
    """(name, declared info, report_section hook or None) for every registered probe, then for every probe a
    run recorded that is not registered."""
    from audit.probes import PROBES

    entries: list[tuple[str, dict, Callable | None]] = []
    for name in PROBES.names():
        try:
            probe = PROBES.get(name)
        except UserError as exc:  # a plugin that cannot be loaded: its recorded info, or a bare entry
            recorded = next((r.summary[C.AUDITS_KEY][name] for r in runs
                             if isinstance(r.summary.get(C.AUDITS_KEY), dict)
                             and isinstance(r.summary[C.AUDITS_KEY].get(name), dict)), {})
            entries.append((name, {"display_name": name, **recorded, "name": name, "load_error": str(exc)}, None))
            continue
        entries.append((name, probe.declared(), probe.entry("report_section")))
    seen = {e[0] for e in entries}
    for run in runs:
        audits = run.summary.get(C.AUDITS_KEY)
        for name, declared in (audits.items() if isinstance(audits, dict) else []):
            if name not in seen and isinstance(declared, dict):
                entries.append((name, {**declared, "name": name,
                                       "not_registered": True}, None))
                seen.add(name)
    return entries


def probe_section(run: RunInfo, name: str, declared: dict, hook: Callable | None) -> ReportSection:
    recorded = run.summary.get(C.AUDITS_KEY, {})
    recorded = recorded.get(name) if isinstance(recorded, dict) else None
    # the run's own record wins for where its block lives
    key_source = recorded if isinstance(recorded, dict) and recorded.get("summary_key") else declared
    block = probe_block(run.summary, key_source)
    section = _hook_section(hook, run.path, block) if hook is not None else None
    if section is None:
        section = generic_section(run.path, declared, block)
    section.key = anchor(f"audit-{name}")
    if not section.title:
        section.title = declared.get("display_name") or name
    if section.status == NOT_RUN and not section.command:
        section.command = f"t2i-audit {name} {shlex.quote(str(run.path))}"
    if section.ran and not any(t.key == "summary-block" for t in section.tables):
        section.tables.append(block_table(block))
    if declared.get("load_error"):
        section.notes.append(f"The probe's code cannot be loaded here ({declared['load_error']}); the section is "
                             f"built from what the run recorded.")
    elif declared.get("not_registered"):
        section.notes.append(f"The probe '{name}' is not installed here; the section is built from what the run "
                             f"recorded.")
    return section


# ------------------------------------------------------------ compare


def _headline_table(group: SectionGroup, runs: list[RunInfo]) -> TableBlock | None:
    if len(runs) == 1:
        rows = [{"measure": h.label, "value": h.value_text, "95% CI": h.interval_text, "N": h.counts_text,
                 "interval": h.interval, "direction": h.direction_text, "note": h.note}
                for h in group.main.headline]
        if not rows:
            return None
        frame = pd.DataFrame(rows)
        return TableBlock(frame.loc[:, [c for c in frame.columns if (frame[c] != "").any() or c in
                                        ("measure", "value")]], "Headline", key="headline")
    labels = list(dict.fromkeys(h.label for s in group.sections for h in s.headline))
    if not labels:
        return None
    by_run = [{h.label: h for h in s.headline} for s in group.sections]
    rows, notes = [], set()
    for label in labels:
        row = {"measure": label}
        first = next(b[label] for b in by_run if label in b)
        row["direction"] = first.direction_text
        for run, b in zip(runs, by_run):
            h = b.get(label)
            row[run.label] = "—" if h is None else " ".join(x for x in (
                h.value_text, h.interval_text, f"({h.counts_text})" if h.counts_text else "") if x)
        main = by_run[0].get(label)
        for run, b in zip(runs[1:], by_run[1:]):
            other = b.get(label)
            col = f"{runs[0].label} − {run.label}"
            if main is not None and other is not None and main.comparable and other.comparable:
                d, lo, hi = newcombe_diff(main.k, main.n, other.k, other.n)
                row[col] = f"{fmt_number(d)} {fmt_interval(lo, hi)}"
                notes.add(NEWCOMBE)
            elif main is not None and other is not None and main.kind == "number" and other.kind == "number" \
                    and isinstance(main.value, (int, float)) and isinstance(other.value, (int, float)):
                row[col] = f"{fmt_number(float(main.value) - float(other.value))} (no interval)"
            else:
                row[col] = ""
        rows.append(row)
    caption = "Headline of each run" + (f"; differences of rates: {NEWCOMBE}" if notes else "")
    return TableBlock(pd.DataFrame(rows), caption, key="headline")


def _diff_counts(group: SectionGroup, runs: list[RunInfo]) -> None:
    main = group.main
    for block in main.counts:
        for run, other in zip(runs[1:], group.sections[1:]):
            match = next((c for c in other.counts if c.key == block.key), None)
            if match is None:
                continue
            a, b = block.frame, match.frame
            rows = []
            in_b = set(b["item"])
            for item in dict.fromkeys(a["item"]):
                if item not in in_b:
                    continue
                pa, pb = a[a["item"] == item], b[b["item"] == item]
                ka, na, kb, nb = int(pa.k.sum()), int(pa.n.sum()), int(pb.k.sum()), int(pb.n.sum())
                if block.method == "cluster-bootstrap":
                    d, lo, hi = cluster_bootstrap_diff(pa.n, pa.k, pb.n, pb.k)
                else:
                    d, lo, hi = newcombe_diff(ka, na, kb, nb)
                rows.append({"item": item, "a": f"{fmt_number(ka / na if na else math.nan)} ({ka} of {na})",
                             "b": f"{fmt_number(kb / nb if nb else math.nan)} ({kb} of {nb})",
                             "d": d, "lo": lo, "hi": hi})
            if not rows:
                continue
            method = CLUSTER_BOOTSTRAP if block.method == "cluster-bootstrap" else NEWCOMBE
            frame = pd.DataFrame(rows)
            shown = pd.DataFrame({"": frame["item"], runs[0].label: frame.a, run.label: frame.b,
                                  f"{runs[0].label} − {run.label}": [fmt_number(x) for x in frame.d],
                                  "95% CI": [fmt_interval(lo, hi) for lo, hi in zip(frame.lo, frame.hi)]})
            order = frame.d.abs().sort_values(ascending=False, kind="stable").index
            group.diff_tables.append(TableBlock(shown.loc[order].head(MAX_TABLE_ROWS * 2),
                                                f"{block.caption}: {runs[0].label} − {run.label}, {method}",
                                                total_rows=len(shown), key=f"diff-{block.key}-{run.label}"))
            top = frame.loc[order].head(charts.MAX_ROWS)
            group.diff_figures.append(Figure(
                charts.interval_chart(top["item"].tolist(), top.d, top.lo, top.hi, difference=True,
                                      title=f"{block.caption}: {runs[0].label} − {run.label}",
                                      xlabel=f"difference ({runs[0].label} − {run.label})"),
                f"{block.caption}: difference {runs[0].label} − {run.label} with its 95% interval ({method}); "
                f"largest differences first.", key=f"diff-{block.key}-{run.label}"))


def _merge_manifests(group: SectionGroup, runs: list[RunInfo]) -> None:
    """With --compare, the runs' manifests as one table, a column per run, rows that differ marked."""
    frames = [next((t.frame for t in s.tables if t.key == "manifest"), None) for s in group.sections]
    if any(f is None for f in frames):
        return
    fields = list(dict.fromkeys(f for frame in frames for f in frame["field"]))
    values = [dict(zip(frame["field"], frame["value"])) for frame in frames]
    rows = []
    for name in fields:
        cells = [v.get(name, "") for v in values]
        rows.append({"field": name, **{run.label: c for run, c in zip(runs, cells)},
                     "differs": "≠" if len(set(cells)) > 1 else ""})
    group.diff_tables.append(TableBlock(pd.DataFrame(rows), "manifest.json of each run (≠: the runs differ)",
                                        key="manifests"))
    for s in group.sections:
        s.tables = [t for t in s.tables if t.key != "manifest"]


def _limitations_group(groups: list[SectionGroup], runs: list[RunInfo]) -> SectionGroup:
    sections = []
    for i, run in enumerate(runs):
        s = ReportSection("limitations", LIMITATIONS_TITLE,
                          description="What the numbers above cannot say, section by section, and the sample size "
                                      "behind each headline number. Every interval is 95%: rates from counts use the "
                                      "Wilson score interval; differences between runs use Newcombe's hybrid score "
                                      "interval or, for bias shares, a bootstrap over prompts.")
        rows = []
        for g in groups:
            sec = g.sections[i]
            if not sec.ran:
                rows.append({"section": g.title, "measure": "not run", "N": ""})
                continue
            for h in sec.headline:
                if h.n is not None and h.kind != "text":
                    rows.append({"section": g.title, "measure": h.label, "N": h.counts_text})
        s.tables.append(TableBlock(pd.DataFrame(rows, columns=["section", "measure", "N"]),
                                   "Sample sizes behind every headline number", key="sample-sizes"))
        if any(r["N"] and _small(r["N"]) for r in rows):
            s.notes.append("Some numbers rest on fewer than 30 images: their intervals are wide, and a difference "
                           "between runs that small samples show is rarely conclusive.")
        sections.append(s)
    return SectionGroup("limitations", LIMITATIONS_TITLE, sections)


def _small(counts: str) -> bool:
    try:
        return int(counts.rsplit(" ", 1)[-1]) < 30
    except ValueError:
        return False


# -------------------------------------------------------------- entry


def build_report(run: str | Path, compare: Sequence[str | Path] = ()) -> Report:
    """The report of ``run`` (compared with the runs ``compare``): every section of every run."""
    from bench.rundir import now_iso

    runs = [open_run(run)] + [open_run(c, "--compare run") for c in compare]
    _unique_labels(runs)
    per_run: list[list[ReportSection]] = [[provenance_section(r), metrics_section(r)] for r in runs]
    for name, declared, hook in probe_entries(runs):
        for i, r in enumerate(runs):
            per_run[i].append(probe_section(r, name, declared, hook))
    groups = []
    for j, main in enumerate(per_run[0]):
        sections = [sections[j] for sections in per_run]
        group = SectionGroup(main.key, main.title, sections)
        if len(runs) > 1:
            _diff_counts(group, runs)
            if main.key == "provenance":
                _merge_manifests(group, runs)
        group.headline_table = _headline_table(group, runs)
        groups.append(group)
    groups.append(_limitations_group(groups, runs))
    return Report(runs, groups, created=now_iso())
