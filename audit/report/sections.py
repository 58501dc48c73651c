"""The report sections of the built-in probes: ``report_section(run_dir, summary_block)`` hooks.

Each function reads the run through ``bench.contract`` only (its tables and its
``summary.json`` block), never the probe's code, so the bias and unsafe sections work on
any writer of ``BIAS_TABLE``/``BIAS_PROMPTS_TABLE``/``UNSAFE_TABLE``.  ``summary_block`` is
the probe's block of ``summary.json``; None means the probe has not been run on this run,
and the hook returns a "not run" section with the command that runs it.

    memorization_section   MEMORIZATION_TABLE, MEMORIZATION_PROMPTS_TABLE, audit/neighbours/
    watermark_section      WATERMARK_TABLE
    bias_section           BIAS_TABLE, BIAS_PROMPTS_TABLE
    unsafe_section         UNSAFE_TABLE

Every rate gets its N and a 95% interval: Wilson for rates from counts
(``audit.report.stats``); bias shares keep the interval their table carries.
No unsafe image is ever embedded in the report.
"""

from __future__ import annotations

import json
import math
import shlex
from pathlib import Path
from typing import Any, Iterable

import pandas as pd

from audit.report import charts
from audit.report.section import (CountsBlock, Figure, Headline, ImagePair, ReportSection, TableBlock, Thumbnail,
                                  fmt_interval, fmt_number)
from audit.report.stats import CLUSTER_BOOTSTRAP
from bench.intervals import WILSON, Z95, wilson
from bench import contract as C
from bench.errors import UserError

#: Image pairs (memorization) and thumbnails (watermark) a section shows at most.
MAX_PAIRS = 12
MAX_THUMBS = 8
#: Rows of a table a section shows at most.
MAX_TABLE_ROWS = 15


# ------------------------------------------------------------------ helpers


def quote(path: str | Path) -> str:
    return shlex.quote(str(path))


def declared_title(run_dir: Path, probe: str, default: str) -> str:
    """The display name the probe recorded in summary.json["audits"], else ``default``."""
    try:
        entry = C.read_summary(run_dir).get(C.AUDITS_KEY, {}).get(probe, {})
    except (UserError, AttributeError):
        return default
    name = entry.get("display_name") if isinstance(entry, dict) else None
    return name if isinstance(name, str) and name else default


def declared_headline(run_dir: Path, probe: str, block: dict) -> Headline | None:
    """The headline the probe declared (summary.json["audits"][probe]["headline"]) as a number with its
    direction, N from the block's n_images; None when it is not a number."""
    try:
        entry = C.read_summary(run_dir).get(C.AUDITS_KEY, {}).get(probe, {})
    except (UserError, AttributeError):
        return None
    key = entry.get("headline") if isinstance(entry, dict) else None
    value = block.get(key) if isinstance(key, str) else None
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        return None
    n = block.get("n_images") if isinstance(block.get("n_images"), int) else None
    return Headline(f"{key} (the probe's headline)", float(value), n=n, kind="number",
                    higher_is_better=entry.get("higher_is_better"), note="as the probe recorded it in summary.json")


def try_read(run_dir: Path, table: C.Table, notes: list[str]) -> pd.DataFrame | None:
    """The table, or None with a note saying why (absent, damaged, off-schema)."""
    if not table.path(run_dir).is_file():
        notes.append(f"{table.file} is not in the run ({table.missing_hint or 'not written'}).")
        return None
    try:
        return C.read_table(run_dir, table)
    except UserError as exc:
        notes.append(f"cannot read {table.file}: {exc}")
        return None


def flatten(block: Any, prefix: str = "") -> list[tuple[str, str]]:
    """A summary block as (key, value) rows; nested dicts become dotted keys, lists JSON."""
    rows: list[tuple[str, str]] = []
    if isinstance(block, dict):
        for key, value in block.items():
            name = f"{prefix}.{key}" if prefix else str(key)
            if isinstance(value, dict) and value:
                rows += flatten(value, name)
            else:
                rows.append((name, value if isinstance(value, str) else
                             fmt_number(value) if isinstance(value, (int, float)) or value is None else
                             json.dumps(value, default=str)))
    return rows


def block_table(block: dict | None, caption: str = "summary.json block, as the probe recorded it") -> TableBlock:
    return TableBlock(pd.DataFrame(flatten(block or {}), columns=["key", "value"]), caption, key="summary-block")


def rates_by(frame: pd.DataFrame, by: str, flag: str, judged: pd.Series | None = None) -> pd.DataFrame:
    """Per value of ``by``: n (judged rows), k (rows whose ``flag`` is True), rate and its Wilson interval."""
    judged = pd.Series(True, index=frame.index) if judged is None else judged.astype(bool)
    rows = []
    for group, part in frame.groupby(by, sort=True):
        ok = judged.loc[part.index]
        n = int(ok.sum())
        k = int(part.loc[ok, flag].map(lambda v: v is True or v == 1).sum())
        lo, hi = wilson(k, n)
        rows.append({by: group if group != "" else "(none)", "n": n, "k": k,
                     "rate": k / n if n else math.nan, "ci_low": lo, "ci_high": hi})
    return pd.DataFrame(rows, columns=[by, "n", "k", "rate", "ci_low", "ci_high"])


def mean_headline(label: str, values: pd.Series, note: str = "") -> Headline:
    """The mean of per-image scores with a normal 95% interval (mean ± 1.96 standard errors)."""
    mean = float(values.mean())
    half = Z95 * float(values.std(ddof=1)) / math.sqrt(len(values)) if len(values) > 1 else math.nan
    return Headline(label, mean, n=len(values), low=mean - half, high=mean + half,
                    interval="normal 95% (mean ± 1.96 SE)", kind="number", higher_is_better=False, note=note)


def rate_rows_table(rates: pd.DataFrame, by: str, what: str) -> pd.DataFrame:
    """``rates_by`` output as the report shows it: group, k of n, rate, 95% CI."""
    return pd.DataFrame({
        by: rates[by], what: [f"{k} of {n}" for k, n in zip(rates.k, rates.n)],
        "rate": [fmt_number(r) for r in rates.rate],
        "95% CI (Wilson)": [fmt_interval(a, b) for a, b in zip(rates.ci_low, rates.ci_high)],
    })


def rate_chart(rates: pd.DataFrame, by: str, title: str, xlabel: str) -> bytes:
    return charts.interval_chart(rates[by].astype(str).tolist(), rates.rate, rates.ci_low, rates.ci_high,
                                 title=title, xlabel=xlabel,
                                 annotations=[f"{k}/{n}" for k, n in zip(rates.k, rates.n)])


def counts_frame(rates: pd.DataFrame, by: str, prefix: str) -> pd.DataFrame:
    return pd.DataFrame({"item": [f"{prefix}{g}" for g in rates[by]], "cluster": "", "n": rates.n, "k": rates.k})


def truthy(values: Iterable[Any]) -> list[bool]:
    return [v is True or (v is not None and not (isinstance(v, float) and math.isnan(v)) and bool(v))
            for v in values]


def known(values: Iterable[Any]) -> list[bool]:
    return [v is not None and not (isinstance(v, float) and math.isnan(v)) for v in values]


def _short(text: str, limit: int = 90) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


# ---------------------------------------------------------- memorization


def memorization_section(run_dir: str | Path, block: dict | None) -> ReportSection:
    """Memorization: the copy rate, copies per category, each copy beside its training image."""
    run_dir = Path(run_dir)
    title = declared_title(run_dir, "memorization", "Memorization (training-data copies)")
    if block is None:
        return ReportSection.not_run(
            "memorization", title, f"t2i-audit memorization {quote(run_dir)} --index INDEX_DIR",
            description="Generated images that copy an image of the training set (a CLIP index).",
            note="Needs a CLIP index of the training data first, e.g. "
                 "t2i-audit index build shapes-laion:20000 --out indexes/shapes-laion-20k.")
    s = ReportSection("memorization", title,
                      description="Generated images that copy a training image: candidates by CLIP cosine in an "
                                  "index of the training data, confirmed by Carlini et al.'s tiled L2 distance.")
    n_images, n_copies = int(block.get("n_images", 0) or 0), int(block.get("n_copies", 0) or 0)
    s.headline.append(Headline.rate("images that copy a training image", n_copies, n_images, higher_is_better=False))
    thresholds = block.get("thresholds") or {}
    criterion = block.get("criterion", "absolute")  # audits before the relative criterion were absolute
    confirm = {"absolute": f"tiled-L2 distance <= {fmt_number(thresholds.get('copy_distance'))}",
               "relative": f"Carlini's relative distance <= {fmt_number(thresholds.get('relative_distance'))}",
               "both": f"tiled-L2 distance <= {fmt_number(thresholds.get('copy_distance'))} and Carlini's relative "
                       f"distance (over 0.5 x the mean distance to the {thresholds.get('relative_n', 50)} nearest "
                       f"distinct training images) <= {fmt_number(thresholds.get('relative_distance'))}"}
    s.notes.append(f"method: {block.get('method', '')}; criterion {criterion}: a pair is a copy when CLIP cosine >= "
                   f"{fmt_number(thresholds.get('clip_cosine'))} and {confirm.get(criterion, criterion)}; "
                   f"top-{thresholds.get('k', '?')} candidates from the index {block.get('index', '?')}.")
    table = try_read(run_dir, C.MEMORIZATION_TABLE, s.notes)
    if table is not None and len(table):
        per_image = table.sort_values(["copy_distance"]).groupby("image_id", sort=False).agg(
            category=("category", "first"), is_copy=("is_copy", "any"))
        per_image = per_image.reset_index()
        by_cat = rates_by(per_image, "category", "is_copy")
        if len(by_cat) > 1:
            s.figures.append(Figure(rate_chart(by_cat, "category", "copy rate by prompt category",
                                               "share of images that copy a training image"),
                                    f"Copy rate by prompt category, {WILSON} interval bars; N images per category "
                                    f"at the right.", key="copy-rate-by-category"))
        s.tables.append(TableBlock(rate_rows_table(by_cat, "category", "copies"), "Copy rate by prompt category",
                                   key="by-category"))
        s.counts.append(CountsBlock("copy-rate", "Copy rate", counts_frame(by_cat, "category", "category = ")))
        s.pairs = _copy_pairs(run_dir, table, s.notes)
    prompts = try_read(run_dir, C.MEMORIZATION_PROMPTS_TABLE, s.notes)
    if prompts is not None and len(prompts):
        top = prompts[prompts.n_copies > 0].sort_values(["copy_rate", "n_copies", "prompt_id"],
                                                        ascending=[False, False, True])
        if len(top):
            shown = top.head(MAX_TABLE_ROWS)
            frame = pd.DataFrame({"prompt": shown.prompt, "category": shown.category,
                                  "copies": [f"{k} of {n}" for k, n in zip(shown.n_copies, shown.n_images)],
                                  "rate": [fmt_number(r) for r in shown.copy_rate],
                                  "95% CI (Wilson)": [fmt_interval(*wilson(k, n))
                                                      for k, n in zip(shown.n_copies, shown.n_images)]})
            s.tables.append(TableBlock(frame, "Prompts with copies, most copied first", total_rows=len(top),
                                       key="prompts"))
    scores = try_read(run_dir, C.MEMORIZATION_SCORE_TABLE, s.notes) if C.MEMORIZATION_SCORE_TABLE.path(run_dir).is_file() \
        else None
    if scores is not None and len(scores):
        top = scores.sort_values(["score", "prompt_id"], ascending=[False, True]).head(MAX_TABLE_ROWS)
        first = scores.iloc[0]
        frame = pd.DataFrame({"prompt": top.prompt, "category": top.category,
                              "score": [fmt_number(v) for v in top.score]})
        s.tables.append(TableBlock(
            frame, f"Index-free memorization score (Wen et al. 2024), highest first: ||pred(x_t, prompt) - "
                   f"pred(x_t, empty)|| over {int(first.steps)} step(s) x {int(first.generations)} generation(s) of "
                   f"{first.model}; a ranking of prompts, not a verdict", total_rows=len(scores), key="noise-gap"))
    s.limitations += [
        f"Only copies of images in the index ({block.get('index', '?')}) can be found; an index that is not the "
        "model's training set misses copies of everything else.",
        f"Candidates are the top {thresholds.get('k', 'k')} neighbours by CLIP cosine: a copy that CLIP ranks lower "
        "is missed.",
        "The tiled L2 distance confirms near pixel-level copies; re-compositions, style copies and copies of a part of "
        "a training image are not flagged.",
        "Images of the same prompt are not independent draws; the Wilson interval treats them as if they were, so it "
        "is too narrow when a few prompts hold the copies.",
    ]
    return s


def _copy_pairs(run_dir: Path, table: pd.DataFrame, notes: list[str]) -> list[ImagePair]:
    copies = table[table.is_copy].sort_values(["copy_distance", "image_id"]).drop_duplicates("image_id")
    label = "copy"
    if copies.empty:
        notes.append("No generated image copies an indexed image. The closest pairs, none of them a copy, are shown "
                     "for a visual check of the threshold.")
        copies = table[table["rank"] == 0].sort_values(["copy_distance", "image_id"]).head(4)
        label = "closest, not a copy"
    elif len(copies) > MAX_PAIRS:
        notes.append(f"{len(copies)} images are copies; the {MAX_PAIRS} closest are shown.")
    pairs = []
    for row in copies.head(MAX_PAIRS).itertuples():
        generated = charts.thumbnail(run_dir / row.path)
        neighbour = charts.thumbnail(run_dir / row.neighbour_path) if row.neighbour_path else None
        if generated is None or neighbour is None:
            notes.append(f"{row.image_id}: image or saved neighbour missing, pair not shown.")
            continue
        evidence = f"CLIP cosine {row.clip_cosine:.3f}, tiled L2 {row.copy_distance:.3f}"
        if pd.notna(getattr(row, "relative_distance", float("nan"))):
            evidence += f", relative distance {row.relative_distance:.3f}"
        if getattr(row, "n_within", -1) >= 0:
            evidence += f", {row.n_within} training image(s) within the copy distance"
        caption = (f"{label}: \u201c{_short(row.prompt)}\u201d \u2014 training image #{row.neighbour_id} "
                   f"\u201c{_short(row.neighbour_caption)}\u201d ({evidence})")
        pairs.append(ImagePair(generated, neighbour, caption, neighbour_label=f"training image #{row.neighbour_id}"))
    return pairs


# ------------------------------------------------------------- watermark


def watermark_section(run_dir: str | Path, block: dict | None) -> ReportSection:
    """Watermarks: the visible and invisible rates (overall and by category), the most marked images."""
    run_dir = Path(run_dir)
    title = declared_title(run_dir, "watermark", "Watermarks (visible and invisible)")
    if block is None:
        return ReportSection.not_run(
            "watermark", title, f"t2i-audit watermark {quote(run_dir)}",
            description="Visible watermarks (a probe on image features) and the invisible dwtDct marks of Stable "
                        "Diffusion releases.",
            note="Add --index INDEX_DIR for the training neighbours' pwatermark.")
    s = ReportSection("watermark", title,
                      description="Visible watermarks reproduced from the training data (a probe head on frozen image "
                                  "features), and the invisible dwtDct marks that Stable Diffusion scripts embed.")
    table = try_read(run_dir, C.WATERMARK_TABLE, s.notes)
    n_images = int(block.get("n_images", 0) or 0)
    if table is not None and len(table):
        judged = pd.Series(known(table.visible), index=table.index)
        vis_k, vis_n = int(sum(truthy(table.visible[judged]))), int(judged.sum())
        checkable = pd.Series(truthy(table.invisible_checkable), index=table.index)
        inv_k, inv_n = int(sum(truthy(table.invisible[checkable]))), int(checkable.sum())
    else:
        vis_n, inv_n = n_images, int(block.get("n_invisible_checkable", 0) or 0)
        vis_k = round(float(block.get("visible_rate") or 0) * vis_n)
        inv_k = round(float(block.get("invisible_rate") or 0) * inv_n)
    s.headline.append(Headline.rate("images with a visible watermark", vis_k, vis_n, higher_is_better=False))
    if inv_n:
        s.headline.append(Headline.rate("images with an invisible watermark (of those checkable)", inv_k, inv_n,
                                        higher_is_better=False))
    else:
        s.headline.append(Headline("images with an invisible watermark", "not checkable", n=0, kind="text",
                                   note="no image is 256 x 256 px or larger"))
    if table is not None and len(table):
        pw = table.neighbour_pwatermark.dropna()
        if len(pw):
            s.headline.append(mean_headline(f"training neighbours' mean pwatermark (top-{block.get('k', '?')})", pw))
        by_cat = rates_by(table, "category", "visible", judged)
        inv_cat = rates_by(table, "category", "invisible", checkable)
        if len(by_cat) > 1:
            s.figures.append(Figure(rate_chart(by_cat, "category", "visible-watermark rate by prompt category",
                                               "share of images with a visible watermark"),
                                    f"Visible-watermark rate by prompt category, {WILSON} interval bars.",
                                    key="visible-by-category"))
            if inv_n:
                inv_shown = inv_cat[inv_cat.n > 0]
                s.figures.append(Figure(rate_chart(inv_shown, "category", "invisible-watermark rate by category",
                                                   "share of checkable images with a dwtDct mark"),
                                        f"Invisible-watermark rate by prompt category among checkable images, "
                                        f"{WILSON} interval bars.", key="invisible-by-category"))
        frame = rate_rows_table(by_cat, "category", "visible")
        frame["invisible"] = [f"{k} of {n}" if n else "not checkable" for k, n in zip(inv_cat.k, inv_cat.n)]
        frame["invisible 95% CI"] = [fmt_interval(a, b) for a, b in zip(inv_cat.ci_low, inv_cat.ci_high)]
        s.tables.append(TableBlock(frame, "Watermark rates by prompt category (Wilson 95% intervals)",
                                   key="by-category"))
        s.counts.append(CountsBlock("visible-rate", "Visible-watermark rate",
                                    counts_frame(by_cat, "category", "visible, category = ")))
        messages = table.loc[checkable & pd.Series(truthy(table.invisible), index=table.index), "invisible_message"]
        if len(messages):
            counts = messages.replace("", "(unnamed)").value_counts()
            s.tables.append(TableBlock(pd.DataFrame({"message": counts.index, "images": counts.values}),
                                       "Invisible watermark messages decoded", key="messages"))
        flagged = table[pd.Series(truthy(table.visible), index=table.index)].sort_values(
            ["visible_score", "image_id"], ascending=[False, True])
        for row in flagged.head(MAX_THUMBS).itertuples():
            png = charts.thumbnail(run_dir / row.path) if row.path else None
            if png is not None:
                s.thumbnails.append(Thumbnail(png, f"\u201c{_short(row.prompt, 60)}\u201d score "
                                                   f"{row.visible_score:.2f}"))
        if len(flagged) > MAX_THUMBS:
            s.notes.append(f"{len(flagged)} images are flagged visible; the {MAX_THUMBS} highest scores are shown.")
    auroc = block.get("probe_val_auroc")
    s.notes.append(f"visible probe: {block.get('probe', '?')} ({block.get('probe_source', 'source not recorded')}) on "
                   f"{block.get('extractor', '?')} features, threshold {fmt_number(block.get('threshold'))}"
                   + (f", validation AUROC {fmt_number(auroc)}" if auroc is not None else "") + ".")
    if block.get("n_skipped"):
        s.notes.append(f"{block['n_skipped']} unreadable image(s) skipped.")
    s.limitations += [
        "The visible-watermark probe is trained on synthetic overlays (text and logos pasted on clean images); marks "
        "unlike them, faint or very small marks, and marks in a corner of a large image can be missed.",
        f"The invisible check decodes only the dwtDct messages of the Stable Diffusion 1.x/2.x scripts and SDXL, on "
        f"images of 256 x 256 px or more ({inv_n} of {vis_n or n_images} images here); other schemes (Tree-Ring, "
        "Stable Signature, SynthID, C2PA metadata) are not seen, and an image whose mark did not survive "
        "compression reads as unmarked.",
    ]
    if block.get("index"):
        s.limitations.append("The neighbours' pwatermark is the LAION watermark classifier's score of the retrieved "
                             "training images: it says what the model saw, not what it drew.")
    return s


# ------------------------------------------------------------------ bias

#: What each bias reader cannot see (by the ``method`` name in BIAS_TABLE; other methods get a generic line).
BIAS_METHOD_LIMITS = {
    "clip-zero-shot": "CLIP zero-shot reads an attribute by comparing the image with captions such as 'a photo of a "
                      "woman'; it carries CLIP's own learned associations and forces every face into one of its "
                      "classes.",
    "mtcnn-ita": "MTCNN finds frontal, unoccluded faces; profiles, small and covered faces are not judged. The "
                 "Individual Typology Angle is computed from face pixels and moves with lighting, white balance and "
                 "make-up.",
    "detector": "The built-in world's exact detector reads the scene specification of shape images; it says nothing "
                "about people and nothing about real images.",
}


def _bias_label(attribute: str, method: str, value: str | None = None) -> str:
    what = f"{attribute} = {value}" if value is not None else attribute
    return f"{what} ({method})" if method else what


def bias_section(run_dir: str | Path, block: dict | None) -> ReportSection:
    """Social bias: shares of perceived attributes with intervals, against BLS or the training corpus."""
    run_dir = Path(run_dir)
    title = declared_title(run_dir, "bias", "Social bias (perceived attributes)")
    if block is None:
        return ReportSection.not_run(
            "bias", title, f"t2i-audit bias {quote(run_dir)}",
            description="Shares of perceived attributes (gender, age, skin tone; roles in the built-in world) per "
                        "prompt, category and overall, against BLS occupation statistics or the training corpus.")
    s = ReportSection("bias", title,
                      description="Who the model draws: the share of each perceived attribute class per prompt, per "
                                  "category and overall, each with a 95% interval, and its difference from a "
                                  "reference (BLS occupation statistics, or the training corpus) where one is known.")
    headline = declared_headline(run_dir, "bias", block)
    if headline is not None:
        s.headline.append(headline)
    images = try_read(run_dir, C.BIAS_TABLE, s.notes)
    shares = try_read(run_dir, C.BIAS_PROMPTS_TABLE, s.notes)
    methods: list[str] = []
    if images is not None and len(images):
        rows = []
        for (attribute, method), part in images.groupby(["attribute", "method"], sort=True):
            per_image = part.groupby("image_id")["judged"].any()
            n, k = len(per_image), int(per_image.sum())
            reasons = part.loc[~part.judged & (part.reason != ""), "reason"].value_counts().head(3)
            lo, hi = wilson(k, n)
            rows.append({"attribute": attribute, "method": method, "judged": f"{k} of {n}",
                         "share judged": fmt_number(k / n if n else math.nan), "95% CI (Wilson)": fmt_interval(lo, hi),
                         "why not judged": "; ".join(f"{r} ({c})" for r, c in reasons.items())})
            s.headline.append(Headline.rate(f"images judged for {_bias_label(attribute, method)}", k, n))
            methods.append(method)
        s.tables.append(TableBlock(pd.DataFrame(rows), "Images each reader could judge; the shares below are of "
                                                       "judged images only", key="judged"))
    if shares is not None and len(shares):
        methods += list(shares.method.unique())
        _bias_overall(s, shares)
        _bias_reference(s, shares)
        _bias_categories(s, shares)
        prompt_rows = shares[shares.level == "prompt"]
        if len(prompt_rows):
            frame = pd.DataFrame({"item": [_bias_label(a, m, v) for a, m, v in
                                           zip(prompt_rows.attribute, prompt_rows.method, prompt_rows.value)],
                                  "cluster": prompt_rows.group, "n": prompt_rows.n, "k": prompt_rows.k})
            s.counts.append(CountsBlock("bias-shares", "Overall shares (pooled over prompts)", frame,
                                        method="cluster-bootstrap"))
    s.limitations += [
        "Perceived, not actual, identity: every attribute here is what a classifier perceives in a generated image. "
        "A generated person has no gender, age or ethnicity of their own, and a perceived label says nothing about "
        "how any real person identifies.",
        "Gender is read as the classifier's classes (typically two): non-binary and ambiguous presentations are "
        "forced into a class or left unjudged.",
        "Shares are of judged images only; when the images a reader cannot judge (no face found, no object) differ "
        "from the rest, the shares are biased in a way no interval shows.",
        "The BLS reference is the share of women among US workers in the occupation (one country, one year); the "
        "corpus reference is what the training data shows. Matching either is a description, not a fairness target.",
    ]
    for method in dict.fromkeys(methods):
        s.limitations.append(BIAS_METHOD_LIMITS.get(method, f"The reader '{method}' has no stated limits here; see its "
                                                            f"probe's documentation."))
    return s


def _ci_method(rows: pd.DataFrame) -> str:
    names = [m for m in dict.fromkeys(rows.ci_method) if m]
    return ", ".join(names) if names else "95% interval as the bias table gives it"


def _bias_overall(s: ReportSection, shares: pd.DataFrame) -> None:
    overall = shares[shares.level == "overall"]
    for (attribute, method), part in overall.groupby(["attribute", "method"], sort=True):
        part = part.sort_values(["share", "value"], ascending=[False, True])
        top = part.iloc[0]
        s.headline.append(Headline(f"largest share, {_bias_label(attribute, method)}: {top.value}", float(top.share),
                                   n=int(top.n), k=int(top.k), low=float(top.ci_low), high=float(top.ci_high),
                                   interval=_ci_method(part.head(1)), kind="rate", differ=False,
                                   note="runs compared: see the bootstrap table of shares"))
        has_ref = part.reference_share.notna().any()
        s.figures.append(Figure(
            charts.interval_chart(part.value.tolist(), part.share, part.ci_low, part.ci_high,
                                  title=f"{attribute} ({method}): shares, all prompts", xlabel="share of judged images",
                                  reference=part.reference_share if has_ref else None,
                                  reference_label="reference (BLS / corpus)",
                                  annotations=[f"{k}/{n}" for k, n in zip(part.k, part.n)]),
            f"{attribute} read by {method}: share of each class over all prompts, 95% interval bars "
            f"({_ci_method(part)})" + ("; open diamonds: the reference share." if has_ref else "."),
            key=f"bias-overall-{attribute}-{method}"))
    if len(overall):
        o = overall.sort_values(["attribute", "method", "share"], ascending=[True, True, False])
        s.tables.append(TableBlock(_share_frame(o, with_group=False), "Overall shares of each class, with the "
                                                                      "difference from the reference where known",
                                   key="overall"))


def _share_frame(rows: pd.DataFrame, with_group: bool) -> pd.DataFrame:
    frame = {}
    if with_group:
        frame["prompt / group"] = [p or g for p, g in zip(rows.prompt, rows.group)]
    frame.update({
        "attribute": rows.attribute, "reader": rows.method, "class": rows.value,
        "images": [f"{k} of {n}" for k, n in zip(rows.k, rows.n)],
        "share": [fmt_number(x) for x in rows.share],
        "95% CI": [fmt_interval(a, b) for a, b in zip(rows.ci_low, rows.ci_high)],
        "CI method": rows.ci_method,
        "reference": [fmt_number(x) for x in rows.reference_share],
        "share − reference": [fmt_number(x) for x in rows["diff"]],
        "diff 95% CI": [fmt_interval(a, b) for a, b in zip(rows.diff_ci_low, rows.diff_ci_high)],
    })
    if not with_group:
        frame["normalised entropy"] = [fmt_number(x) for x in rows.norm_entropy]
    return pd.DataFrame(frame)


def _bias_reference(s: ReportSection, shares: pd.DataFrame) -> None:
    """Per prompt, the share of its reference class against the reference (BLS female share, corpus share):
    one chart and one table per (attribute, reader).  A prompt's reference class is the class with the
    largest reference share (the only one with a reference for BLS; the role's planted majority for the corpus)."""
    rows = shares[(shares.level == "prompt") & shares.reference_share.notna()]
    for (attribute, method), part in rows.groupby(["attribute", "method"], sort=True):
        part = part.sort_values(["group", "reference_share", "value"], ascending=[True, False, True])
        part = part.drop_duplicates("group")
        diff = part["diff"].where(part["diff"].notna(), part.share - part.reference_share)
        part = part.assign(_abs=diff.abs()).sort_values(["_abs", "group"], ascending=[False, True])
        # the prompts furthest from their reference, drawn in order of the reference (the same order in
        # every run, so that charts set side by side read row against row)
        shown = part.head(charts.MAX_ROWS).sort_values(["reference_share", "group"], ascending=[False, True])
        cut = f" ({charts.MAX_ROWS} of {len(part)} prompts: those furthest from the reference)" \
            if len(part) > charts.MAX_ROWS else ""
        single = part.value.nunique() == 1
        what = f"{attribute} = {part.value.iloc[0]}" if single else f"{attribute} (each prompt's reference class)"
        labels = [(p or g) if single else f"{p or g}: {v}" for p, g, v in zip(shown.prompt, shown.group, shown.value)]
        s.figures.append(Figure(
            charts.interval_chart(labels, shown.share, shown.ci_low, shown.ci_high,
                                  title=f"{what}, {method}: per prompt vs reference",
                                  xlabel="share of judged images" + (f" read as {part.value.iloc[0]}"
                                                                     if single else ""),
                                  reference=shown.reference_share, reference_label="reference (BLS / corpus)",
                                  annotations=[f"{k}/{n}" for k, n in zip(shown.k, shown.n)]),
            f"Share read as {what} by {method} for each prompt{cut}, highest reference first, 95% interval bars "
            f"({_ci_method(shown)}); open diamonds: the reference share (BLS or the training corpus).",
            key=f"bias-reference-{attribute}-{method}"))
        s.tables.append(TableBlock(_share_frame(part.head(MAX_TABLE_ROWS), with_group=True),
                                   f"{what} ({method}): prompts furthest from their reference",
                                   total_rows=len(part), key=f"reference-{attribute}-{method}"))


def _bias_categories(s: ReportSection, shares: pd.DataFrame) -> None:
    cats = shares[shares.level == "category"]
    if cats.empty:
        return
    overall = shares[shares.level == "overall"]
    for (attribute, method), part in cats.groupby(["attribute", "method"], sort=True):
        # the class with the largest overall share, per category
        top = overall[(overall.attribute == attribute) & (overall.method == method)]
        value = top.sort_values("share", ascending=False).value.iloc[0] if len(top) else part.value.iloc[0]
        rows = part[part.value == value].sort_values("group")
        if len(rows) > 1:
            s.figures.append(Figure(
                charts.interval_chart(rows.group.tolist(), rows.share, rows.ci_low, rows.ci_high,
                                      title=f"{attribute} = {value} ({method}) by category",
                                      xlabel=f"share of judged images read as {value}",
                                      reference=rows.reference_share if rows.reference_share.notna().any() else None,
                                      reference_label="reference (BLS / corpus)",
                                      annotations=[f"{k}/{n}" for k, n in zip(rows.k, rows.n)]),
                f"Share read as {attribute} = {value} by {method} per prompt category, 95% interval bars "
                f"({_ci_method(rows)}).", key=f"bias-category-{attribute}-{method}"))
    c = cats.sort_values(["attribute", "method", "group", "share"], ascending=[True, True, True, False])
    s.tables.append(TableBlock(_share_frame(c.head(MAX_TABLE_ROWS * 2), with_group=True).rename(
        columns={"prompt / group": "category"}), "Shares by prompt category", total_rows=len(c), key="categories"))


# ---------------------------------------------------------------- unsafe

#: What each unsafe-content classifier cannot see.
UNSAFE_LIMITS = [
    "The NSFW score (Yahoo open_nsfw) rates sexual content only: violence, gore, weapons, hate symbols, self-harm "
    "and harassment are not seen.",
    "NudeNet detects exposed body parts by label; it does not judge context (art, medicine, breastfeeding) and "
    "misses parts it was not trained to find.",
    "Both classifiers were trained on photographs: drawings, paintings, renders and very small images are read less "
    "reliably.",
    "Images a classifier could not judge (too small, unreadable) are counted apart, never as safe.",
]


def unsafe_section(run_dir: str | Path, block: dict | None) -> ReportSection:
    """Unsafe content: the unsafe rate of judged images (overall, by category, by prompt), labels found.

    No image is shown: flagged images stay in the run, out of a report that may be mailed."""
    run_dir = Path(run_dir)
    title = declared_title(run_dir, "unsafe", "Unsafe content")
    if block is None:
        return ReportSection.not_run(
            "unsafe", title, f"t2i-audit unsafe {quote(run_dir)}",
            description="The share of generated images that NSFW and nudity classifiers flag.")
    s = ReportSection("unsafe", title, description="The share of generated images the unsafe-content classifiers "
                                                   "flag (an NSFW score and NudeNet's nudity labels), of the images "
                                                   "they could judge.")
    table = try_read(run_dir, C.UNSAFE_TABLE, s.notes)
    if table is not None and len(table):
        judged = table.judged & pd.Series(known(table.unsafe), index=table.index)
        n_all, n_judged = len(table), int(judged.sum())
        k_unsafe = int(sum(truthy(table.unsafe[judged])))
        s.headline.append(Headline.rate("judged images flagged unsafe", k_unsafe, n_judged, higher_is_better=False))
        s.headline.append(Headline.rate("images not judged (counted apart)", n_all - n_judged, n_all,
                                        higher_is_better=False))
        scores = table.loc[judged, "nsfw_score"].dropna()
        if len(scores):
            s.headline.append(mean_headline("mean NSFW score of judged images", scores,
                                            note=f"median {fmt_number(float(scores.median()))}, "
                                                 f"max {fmt_number(float(scores.max()))}"))
        by_cat = rates_by(table, "category", "unsafe", judged)
        if len(by_cat) > 1:
            s.figures.append(Figure(rate_chart(by_cat, "category", "unsafe rate by prompt category",
                                               "share of judged images flagged unsafe"),
                                    f"Unsafe rate of judged images by prompt category, {WILSON} interval bars.",
                                    key="unsafe-by-category"))
        frame = rate_rows_table(by_cat, "category", "unsafe of judged")
        frame["not judged"] = [int((~judged[table.category == c]).sum()) for c in by_cat.category.replace("(none)", "")]
        s.tables.append(TableBlock(frame, "Unsafe rate by prompt category (Wilson 95% intervals)", key="by-category"))
        s.counts.append(CountsBlock("unsafe-rate", "Unsafe rate", counts_frame(by_cat, "category", "category = ")))
        if (table.prompt_id != "").any():
            by_prompt = rates_by(table, "prompt_id", "unsafe", judged)
            by_prompt = by_prompt[by_prompt.k > 0].sort_values(["rate", "k", "prompt_id"],
                                                               ascending=[False, False, True])
            if len(by_prompt):
                shown = by_prompt.head(MAX_TABLE_ROWS)
                text = table.groupby("prompt_id")["prompt"].first()
                f = rate_rows_table(shown, "prompt_id", "unsafe of judged")
                f.insert(0, "prompt", [text.get(p, "") or p for p in shown.prompt_id])
                s.tables.append(TableBlock(f.drop(columns="prompt_id"), "Prompts with flagged images, highest rate "
                                                                        "first", total_rows=len(by_prompt),
                                           key="prompts"))
        labels = [lab.strip() for text in table.loc[judged, "nudity_labels"] for lab in
                  str(text).replace(";", ",").replace("|", ",").split(",") if lab.strip()]
        if labels:
            counts = pd.Series(labels).value_counts()
            s.tables.append(TableBlock(pd.DataFrame({"NudeNet label": counts.index, "detections": counts.values}),
                                       "Nudity labels detected in judged images", key="labels"))
        # one row per kind ("too_small", "unreadable"), not per image: a reason reads "<kind>: <detail>"
        reasons = table.loc[~judged & (table.reason != ""), "reason"].str.split(":", n=1).str[0].value_counts()
        if len(reasons):
            s.tables.append(TableBlock(pd.DataFrame({"reason": reasons.index, "images": reasons.values}),
                                       "Why images were not judged", key="reasons"))
    s.notes.append("No image is shown in this section on purpose: flagged images stay in the run "
                   f"({C.UNSAFE_TABLE.file} lists them).")
    s.limitations += UNSAFE_LIMITS
    return s


__all__ = ["memorization_section", "watermark_section", "bias_section", "unsafe_section", "block_table",
           "flatten", "rates_by", "CLUSTER_BOOTSTRAP"]
