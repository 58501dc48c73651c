"""Fake run directories for the dashboard tests (the layout of DESIGN.md §3).

Every table is written through ``bench.contract.write_table`` and summary.json
through ``bench.contract.update_summary`` / ``record_audit`` with the real
probes' declared info, so the fixtures follow the writers' schema.

``make_runs_root(tmp)`` builds a root holding:

- ``demo``: a complete run, 6 tiny PNGs = 3 prompts x 1 sample x 2 guidance
  values, in 2 categories (``counting``: 4 images, ``spatial``: 2 images); one
  prompt is an XSS probe (``XSS_PROMPT``); scored: ``metrics.parquet``
  (``metrics_rows()``) and ``sweep.parquet`` (``sweep_rows()``), as
  ``t2i-bench score`` / ``t2i-bench sweep`` write them;
- ``half-done``: an interrupted run with a manifest only;
- ``notes``: a junk directory without a manifest (not a run).

``make_audited_runs_root(tmp)`` adds the audit outputs to ``demo``
(``add_memorization_audit``: planted copies ``COPIES``; ``add_watermark_audit``)
and ``plain``, an older complete run without audits.  ``serve_dashboard``
serves the real app for browser tests.
"""

from __future__ import annotations

import contextlib
import json
import math
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

import pandas as pd
from PIL import Image

from bench import contract as C

XSS_PROMPT = "<script>alert(1)</script> a *red* circle"
GUIDANCE = [1.0, 7.5]
PROMPTS = [  # (prompt_id, prompt, category, colour of the fake image)
    ("p000", "two blue squares", "counting", (40, 80, 220)),
    ("p001", "three green triangles", "counting", (40, 180, 60)),
    ("p002", XSS_PROMPT, "spatial", (220, 50, 50)),
]
N_IMAGES = len(PROMPTS) * len(GUIDANCE)
SHA = "ab12cd34ef56" + "0" * 52


def manifest(name: str, created: str, complete: bool = True) -> dict:
    """A manifest.json as ``t2i-bench generate`` writes it."""
    return {
        "run": name,
        "created": created,
        "model": {"ref": "builtin:shapes-ldm-tiny", "kind": "builtin", "weights_sha256": "f" * 64},
        "pipeline_class": "StableDiffusionPipeline",
        "scheduler": "DDIMScheduler",
        "steps": 20,
        "guidance": GUIDANCE,
        "guidance_formulation": "cfg: eps_u + w * (eps_c - eps_u)",
        "images_per_prompt": 1,
        "seed": 1234,
        "dtype": "float32",
        "device": "cpu",
        "height": 32,
        "width": 32,
        "prompt_set": {"name": "shapes-mini", "version": "1.0", "sha256": SHA, "subset": "all", "n_prompts": 3},
        "packages": {"diffusers": "0.0-test", "torch": "0.0-test"},
        "git": {"sha": "0123456789abcdef", "dirty": False},
        "complete": complete,
    }


FD = "FD_efficientnet-lite0"
# precision/recall carry their extractor (bench.contract naming rule); runs scored before it wrote the bare names.
PRECISION, RECALL = "precision_efficientnet-lite0", "recall_efficientnet-lite0"
# Headline values per guidance (NaN = all scales together): FD worsens and CLIP score improves with guidance.
HEADLINE = {
    FD: {math.nan: 80.0, 1.0: 95.5, 7.5: 120.25},
    "KID_efficientnet-lite0": {math.nan: 0.0123, 1.0: 0.015, 7.5: 0.021},
    PRECISION: {math.nan: 0.7, 1.0: 0.6, 7.5: 0.8},
    RECALL: {math.nan: 0.5, 1.0: 0.6, 7.5: 0.3},
    "CLIPScore": {math.nan: 27.0, 1.0: 24.0, 7.5: 30.0},
    "compositional_accuracy": {math.nan: 0.5, 1.0: 1 / 3, 7.5: 2 / 3},
}
# Per-category values (CLIP score and compositional accuracy have them).
PER_CATEGORY = {
    "CLIPScore": {"counting": {math.nan: 26.0, 1.0: 23.0, 7.5: 29.0}, "spatial": {math.nan: 29.0, 1.0: 26.0, 7.5: 32.0}},
    "compositional_accuracy": {"counting": {math.nan: 0.5, 1.0: 0.5, 7.5: 0.5}, "spatial": {math.nan: 0.5, 1.0: 0.0, 7.5: 1.0}},
}


def metrics_rows() -> pd.DataFrame:
    """A metrics.parquet table as ``t2i-bench score`` writes it (columns and dtypes)."""
    rows = []
    for metric, by_guidance in HEADLINE.items():
        for guidance, value in by_guidance.items():
            two_sample = metric.startswith(("FD_", "KID_", "precision_", "recall_"))
            rows.append({"metric": metric, "subset": "all", "guidance": guidance, "value": value, "n": 6 if math.isnan(guidance) else 3,
                         "n_ref": 6 if two_sample else None, "extractor": "efficientnet-lite0" if two_sample else None,
                         "reference": "runs/other" if two_sample else None})  # fmt: skip
        for category, by_g in PER_CATEGORY.get(metric, {}).items():
            for guidance, value in by_g.items():
                rows.append({"metric": metric, "subset": f"category={category}", "guidance": guidance, "value": value,
                             "n": 2, "n_ref": None, "extractor": None, "reference": None})  # fmt: skip
    df = pd.DataFrame(rows)
    df["std"] = [0.001 if m.startswith("KID_") else math.nan for m in df["metric"]]
    return C.coerce(df, C.METRICS_TABLE)


def legacy_metrics_rows() -> pd.DataFrame:
    """``metrics_rows`` as runs scored before the naming rule wrote it: bare "precision" / "recall"."""
    rows = metrics_rows()
    rows["metric"] = rows["metric"].replace({PRECISION: "precision", RECALL: "recall"})
    return rows


def sweep_rows() -> pd.DataFrame:
    """A sweep.parquet table as ``t2i-bench sweep`` writes it: one row per guidance, one column per headline metric."""
    table = {"guidance": GUIDANCE, "guidance_formulation": ["cfg"] * len(GUIDANCE)}
    for metric, by_guidance in HEADLINE.items():
        table[metric] = [by_guidance[g] for g in GUIDANCE]
    return pd.DataFrame(table)


def write_json(path: Path, data: dict) -> None:
    """Write ``data`` as pretty JSON."""
    path.write_text(json.dumps(data, indent=2), encoding="utf-8")


def make_complete_run(root: Path, name: str = "demo", created: str = "2025-01-02T10:00:00+00:00") -> Path:
    """A complete run with 6 PNGs, samples.parquet, manifest.json and summary.json."""
    run = root / name
    (run / "images").mkdir(parents=True)
    rows = []
    for prompt_id, prompt, category, colour in PROMPTS:
        for guidance in GUIDANCE:
            rel = f"images/{prompt_id}__s000__g{guidance:g}.png"
            shade = tuple(min(255, int(c * (0.6 + guidance / 20))) for c in colour)
            Image.new("RGB", (32, 32), shade).save(run / rel)
            rows.append(
                {
                    "image_id": f"{prompt_id}__s000__g{guidance:g}",
                    "prompt_id": prompt_id,
                    "prompt": prompt,
                    "category": category,
                    "sample_index": 0,
                    "seed": 1234567,
                    "guidance": guidance,
                    "cfg_scale": guidance,
                    "path": rel,
                    "width": 32,
                    "height": 32,
                    "truncated": False,
                }
            )
    C.write_table(run, C.SAMPLES_TABLE, C.coerce(pd.DataFrame(rows), C.SAMPLES_TABLE))
    C.write_table(run, C.METRICS_TABLE, metrics_rows())
    C.write_table(run, C.SWEEP_TABLE, sweep_rows())
    write_json(run / C.MANIFEST, manifest(name, created))
    C.update_summary(run, {"run": name, "model": "builtin:shapes-ldm-tiny", "prompt_set": "shapes-mini@1.0",
                           "n_images": N_IMAGES, "n_prompts": 3, "guidance": GUIDANCE, "truncated_prompts": 0,
                           "complete": True})  # fmt: skip
    C.update_summary(run, {"metrics": {("all" if math.isnan(g) else f"{g:g}"): {m: v[g] for m, v in HEADLINE.items()}
                                       for g in HEADLINE[FD]}})  # fmt: skip
    return run


def make_runs_root(tmp: Path) -> Path:
    """A runs root with a complete run, an interrupted run and a junk directory."""
    root = Path(tmp) / "runs"
    root.mkdir()
    make_complete_run(root, "demo", created="2025-01-02T10:00:00+00:00")
    half = root / "half-done"
    half.mkdir()
    write_json(half / C.MANIFEST, manifest("half-done", "2025-01-01T09:00:00+00:00", complete=False))
    (root / "notes").mkdir()
    (root / "notes" / "readme.txt").write_text("not a run\n")
    return root


# ------------------------------------------------------------- audit outputs
# audit/memorization.parquet, audit/memorization_prompts.parquet, audit/watermark.parquet and
# their summary.json keys, in the columns and dtypes of the audit contract (DESIGN.md §3, §5).

XSS_CAPTION = '<img src=x onerror="alert(2)"> the famous *red* poster'
INDEX = "shapes-laion:2000 (index/shapes-2k)"
METHOD = "clip-knn+tiled-l2"
THRESHOLD_COSINE, THRESHOLD_DISTANCE = 0.95, 0.1
N_NEIGHBOURS = 3
# The planted copies: generated image id -> rank of the neighbour it copies (others copy nothing).
# p001 at g=7.5 copies its rank-1 neighbour: the top-1 by CLIP cosine is a candidate the copy distance rejects.
COPIES = {"p000__s000__g1": 0, "p000__s000__g7.5": 0, "p001__s000__g7.5": 1}
UNSAVED_RANK = 2  # neighbours of this rank were not saved under audit/neighbours/ (neighbour_path "")
# Watermark audit: images the visible probe flags, and images with a decoded invisible message.
WATERMARK_THRESHOLD = 0.5
VISIBLE_SCORES = {"p000__s000__g1": 0.05, "p000__s000__g7.5": 0.12, "p001__s000__g1": 0.91,
                  "p001__s000__g7.5": 0.74, "p002__s000__g1": 0.2, "p002__s000__g7.5": 0.33}  # fmt: skip
INVISIBLE_MESSAGES = {"p002__s000__g7.5": "test"}
NOT_CHECKABLE = {"p000__s000__g1"}  # too small for the invisible-watermark decoder (invisible False, unchecked)
NEIGHBOUR_PWATERMARK = {"p001__s000__g1": 0.8, "p001__s000__g7.5": 0.6}  # others 0.1; p002 g=1: NaN (no index)


def _neighbour_scores(image_id: str, rank: int) -> tuple[float, float]:
    """(CLIP cosine, copy distance) of one neighbour: cosines fall with rank, a copy is close."""
    copy_rank = COPIES.get(image_id)
    cosine = (0.97 - 0.005 * rank) if copy_rank is not None else (0.90 - 0.02 * rank)
    distance = 0.05 if rank == copy_rank else 0.3 + 0.1 * rank
    return cosine, distance


def memorization_rows(run: Path) -> pd.DataFrame:
    """audit/memorization.parquet for a run made by ``make_complete_run``; saves the neighbour PNGs."""
    samples = C.read_table(run, C.SAMPLES_TABLE)
    (Path(run) / C.NEIGHBOURS_DIR).mkdir(parents=True, exist_ok=True)
    rows = []
    for i, sample in enumerate(samples.to_dict("records")):
        generated = Image.open(Path(run) / sample["path"]).convert("RGB")
        for rank in range(N_NEIGHBOURS):
            neighbour_id = 1000 + 10 * i + rank
            key = f"{neighbour_id:09d}"
            cosine, distance = _neighbour_scores(sample["image_id"], rank)
            is_copy = cosine >= THRESHOLD_COSINE and distance <= THRESHOLD_DISTANCE
            rel = ""
            if rank != UNSAVED_RANK:
                rel = f"{C.NEIGHBOURS_DIR}/{key}.png"
                image = generated if is_copy else Image.new("RGB", (32, 32), (200 - 60 * rank, 200, 40 + 60 * rank))
                image.save(Path(run) / rel)
            caption = XSS_CAPTION if (i, rank) == (0, 0) else f"the famous poster number {neighbour_id}"
            rows.append({
                "image_id": sample["image_id"], "prompt_id": sample["prompt_id"], "prompt": sample["prompt"],
                "category": sample["category"], "guidance": sample["guidance"], "path": sample["path"],
                "rank": rank, "neighbour_id": neighbour_id, "neighbour_key": key, "neighbour_caption": caption,
                "neighbour_path": rel, "clip_cosine": cosine, "copy_distance": distance, "is_copy": is_copy,
                "method": METHOD, "threshold_cosine": THRESHOLD_COSINE, "threshold_distance": THRESHOLD_DISTANCE,
            })  # fmt: skip
    return pd.DataFrame(rows).astype({"rank": "int64", "neighbour_id": "int64", "clip_cosine": "float64",
                                      "copy_distance": "float64", "is_copy": "bool"})  # fmt: skip


def expected_copy_rates() -> dict[str, tuple[int, int]]:
    """prompt_id -> (n_images, n_copies) from the planted ``COPIES`` (for tests)."""
    return {
        prompt_id: (len(GUIDANCE), sum(image_id.startswith(prompt_id + "__") for image_id in COPIES))
        for prompt_id, *_ in PROMPTS
    }


def memorization_summary() -> dict:
    """summary.json["memorization"] as the memorization writer records it (audit/probes/memorization/run.py)."""
    return {
        "n_images": N_IMAGES, "n_copies": len(COPIES), "copy_rate": len(COPIES) / N_IMAGES, "index": INDEX,
        "method": METHOD,
        "thresholds": {"clip_cosine": THRESHOLD_COSINE, "copy_distance": THRESHOLD_DISTANCE, "k": N_NEIGHBOURS},
    }  # fmt: skip


def add_memorization_audit(run: Path, with_summary: bool = True) -> pd.DataFrame:
    """Write the memorization audit files of ``run`` (and record the probe in summary.json); returns the hits."""
    from audit.probes.memorization import PROBE

    hits = memorization_rows(run)
    rates = pd.DataFrame(
        [{"prompt_id": pid, "prompt": prompt, "category": category, "n_images": n, "n_copies": c, "copy_rate": c / n}
         for (pid, prompt, category, _), (n, c) in zip(PROMPTS, expected_copy_rates().values())]  # fmt: skip
    ).astype({"n_images": "int64", "n_copies": "int64"})
    C.write_table(run, C.MEMORIZATION_TABLE, hits)
    C.write_table(run, C.MEMORIZATION_PROMPTS_TABLE, rates)
    if with_summary:
        C.record_audit(run, PROBE.declared(), memorization_summary())
    return hits


def watermark_rows(run: Path) -> pd.DataFrame:
    """audit/watermark.parquet for a run made by ``make_complete_run``."""
    samples = C.read_table(run, C.SAMPLES_TABLE)
    rows = []
    for sample in samples.to_dict("records"):
        image_id = sample["image_id"]
        pwatermark = math.nan if image_id == "p002__s000__g1" else NEIGHBOUR_PWATERMARK.get(image_id, 0.1)
        rows.append({
            "image_id": image_id, "prompt_id": sample["prompt_id"], "prompt": sample["prompt"],
            "category": sample["category"], "guidance": sample["guidance"], "path": sample["path"],
            "visible_score": VISIBLE_SCORES[image_id], "visible": VISIBLE_SCORES[image_id] >= WATERMARK_THRESHOLD,
            "neighbour_pwatermark": pwatermark, "invisible": image_id in INVISIBLE_MESSAGES,
            "invisible_message": INVISIBLE_MESSAGES.get(image_id, ""),
            "invisible_checkable": image_id not in NOT_CHECKABLE,
        })  # fmt: skip
    return pd.DataFrame(rows).astype({"visible_score": "float64", "visible": "bool", "invisible": "bool"})


def watermark_summary(table: pd.DataFrame) -> dict:
    """summary.json["watermark"] as the watermark writer records it (audit/probes/watermark/run.py)."""
    checkable = table["invisible_checkable"].astype(bool)
    return {
        "n_images": len(table), "visible_rate": float(table["visible"].mean()), "threshold": WATERMARK_THRESHOLD,
        "probe": "shapes-visible-watermark",
        "invisible_rate": float(table.loc[checkable, "invisible"].mean()),
        "neighbour_pwatermark_mean": float(table["neighbour_pwatermark"].mean()),
        "n_skipped": 0, "n_invisible_checkable": int(checkable.sum()),
    }  # fmt: skip


def add_watermark_audit(run: Path) -> pd.DataFrame:
    """Write audit/watermark.parquet of ``run`` and record the probe in summary.json; returns the table."""
    from audit.probes.watermark import PROBE

    table = watermark_rows(run)
    C.write_table(run, C.WATERMARK_TABLE, table)
    C.record_audit(run, PROBE.declared(), watermark_summary(table))
    return table


def make_audited_runs_root(tmp: Path) -> Path:
    """``make_runs_root`` plus both audits on ``demo``, and ``plain``: an older complete run without audits."""
    root = make_runs_root(tmp)
    add_memorization_audit(root / "demo")
    add_watermark_audit(root / "demo")
    make_complete_run(root, "plain", created="2024-12-31T10:00:00+00:00")
    return root


@contextlib.contextmanager
def serve_dashboard(root: Path, log_path: Path, timeout: float = 60):
    """Serve the real app (``t2i-dashboard``'s command) for ``root`` on a free port; yields the URL.

    Raises RuntimeError with the log's tail when Streamlit exits or does not
    answer /_stcore/health within ``timeout`` s; always stops the server.
    """
    from dashboard.cli import streamlit_command

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    with open(log_path, "w") as log:
        process = subprocess.Popen(
            streamlit_command(root, "127.0.0.1", port), cwd=Path(log_path).parent, stdout=log, stderr=subprocess.STDOUT
        )
        try:
            deadline = time.monotonic() + timeout
            while True:
                if process.poll() is not None:
                    raise RuntimeError(f"streamlit exited with {process.returncode}:\n{_tail(log_path)}")
                try:
                    with urllib.request.urlopen(url + "/_stcore/health", timeout=2) as response:
                        if response.status == 200:
                            break
                except OSError:
                    pass
                if time.monotonic() > deadline:
                    raise RuntimeError(f"streamlit did not answer within {timeout:g} s:\n{_tail(log_path)}")
                time.sleep(0.3)
            yield url
        finally:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def _tail(path: Path, n: int = 3000) -> str:
    return Path(path).read_text(errors="replace")[-n:]


# ------------------------------------------------------------- bias, unsafe, report
# audit/bias.parquet, audit/bias_prompts.parquet, audit/unsafe.parquet, report.html and their summary.json
# keys, in the columns of the contract (bench/contract/tables.py).  The probes are recorded with declared
# dicts shaped like ProbeInfo.declared(), so these helpers need no audit.probes.bias / unsafe.

#: What the readers saw per (attribute, method): image id -> (class, score, reason); class "" = not judged.
BIAS_READINGS = {
    ("gender", "clip-zero-shot"): {
        "p000__s000__g1": ("female", 0.91, ""), "p000__s000__g7.5": ("female", 0.88, ""),
        "p001__s000__g1": ("male", 0.77, ""), "p001__s000__g7.5": ("", math.nan, "no face found"),
        "p002__s000__g1": ("male", 0.8, ""), "p002__s000__g7.5": ("female", 0.6, ""),
    },
    ("role_colour", "detector"): {  # the built-in world's exact reading: no score
        "p000__s000__g1": ("blue", math.nan, ""), "p000__s000__g7.5": ("blue", math.nan, ""),
        "p001__s000__g1": ("green", math.nan, ""), "p001__s000__g7.5": ("green", math.nan, ""),
        "p002__s000__g1": ("red", math.nan, ""), "p002__s000__g7.5": ("blue", math.nan, ""),
    },
}  # fmt: skip
#: Reference shares (BLS / corpus) per (prompt id, attribute, class); unknown elsewhere.
BIAS_REFERENCE = {("p000", "gender", "female"): 0.3}
BIAS_CI_METHOD = "Wilson score 95%"
GENDER = ("gender", "clip-zero-shot")
BIAS_WARNING = "images of 2 guidance scales are pooled per prompt; <b>check</b> the *groups*"
BIAS_PROBE = {"name": "bias", "display_name": "Demographic and role bias",
              "description": "who the model draws for each profession or role, with 95% intervals",
              "higher_is_better": False, "headline": "imbalance", "page": "bias", "summary_key": "bias",
              "table": C.BIAS_TABLE.file}  # fmt: skip
#: Unsafe verdicts per image: None = not judged (UNSAFE_REASON).
UNSAFE_VERDICTS = {"p000__s000__g1": None, "p000__s000__g7.5": False, "p001__s000__g1": False,
                   "p001__s000__g7.5": True, "p002__s000__g1": True, "p002__s000__g7.5": True}  # fmt: skip
UNSAFE_REASON = "image smaller than the classifier's 224 px input"
UNSAFE_PROBE = {"name": "unsafe", "display_name": "Unsafe content (NSFW, nudity)",
                "description": "share of images the NSFW and nudity classifiers flag", "higher_is_better": False,
                "headline": "unsafe_rate", "page": "bias", "summary_key": "unsafe", "table": C.UNSAFE_TABLE.file}  # fmt: skip
REPORT_TITLE = "Societal-risk report · demo"


def wilson_scipy(k: int, n: int) -> tuple[float, float]:
    """The Wilson score 95% interval as scipy computes it (the reference for the dashboard's)."""
    from scipy.stats import binomtest

    interval = binomtest(k, n).proportion_ci(confidence_level=0.95, method="wilson")
    return float(interval.low), float(interval.high)


def bias_rows(run: Path) -> pd.DataFrame:
    """audit/bias.parquet for a run made by ``make_complete_run``: one row per (image, attribute, method)."""
    samples = C.read_table(run, C.SAMPLES_TABLE)
    rows = []
    for (attribute, method), readings in BIAS_READINGS.items():
        for sample in samples.to_dict("records"):
            value, score, reason = readings[sample["image_id"]]
            rows.append({
                "image_id": sample["image_id"], "prompt_id": sample["prompt_id"], "prompt": sample["prompt"],
                "category": sample["category"], "guidance": sample["guidance"], "path": sample["path"],
                "attribute": attribute, "method": method, "value": value, "score": score, "judged": value != "",
                "reason": reason,
            })  # fmt: skip
    return pd.DataFrame(rows)


def bias_share_rows(readings: pd.DataFrame) -> pd.DataFrame:
    """audit/bias_prompts.parquet from ``bias_rows``: every class of the attribute in every group (k may be 0),
    at the levels prompt / category / overall, with Wilson intervals (scipy) and ``BIAS_REFERENCE``."""
    rows = []
    for (attribute, method), of_attribute in readings.groupby(["attribute", "method"], sort=True):
        judged = of_attribute[of_attribute["judged"]]
        values = sorted(judged["value"].unique())
        for level, key in (("prompt", "prompt_id"), ("category", "category"), ("overall", None)):
            groups = judged.groupby(key, sort=True) if key else [("all", judged)]
            for group, members in groups:
                n = len(members)
                shares = [int((members["value"] == v).sum()) / n for v in values]
                entropy = -sum(p * math.log(p) for p in shares if p > 0)
                for value, share in zip(values, shares):
                    k = int((members["value"] == value).sum())
                    low, high = wilson_scipy(k, n)
                    reference = BIAS_REFERENCE.get((group, attribute, value), math.nan) if level == "prompt" else math.nan
                    rows.append({
                        "level": level, "group": group,
                        "prompt": members["prompt"].iloc[0] if level == "prompt" else "",
                        "category": members["category"].iloc[0] if level != "overall" else "",
                        "attribute": attribute, "method": method, "value": value, "n": n, "k": k, "share": share,
                        "ci_low": low, "ci_high": high, "ci_method": BIAS_CI_METHOD, "reference_share": reference,
                        "diff": share - reference, "diff_ci_low": low - reference, "diff_ci_high": high - reference,
                        "mad": sum(abs(p - 1 / len(values)) for p in shares) / len(values),
                        "imbalance": max(shares) - min(shares), "norm_entropy": entropy / math.log(len(values)),
                    })  # fmt: skip
    return pd.DataFrame(rows).astype({"n": "int64", "k": "int64"})


def bias_summary(shares: pd.DataFrame) -> dict:
    """summary.json["bias"] in the shape the bias writer records (audit/probes/bias/run.py), its headline the
    overall imbalance of gender by CLIP with an interval (here a made-up one), and a warning."""
    overall = shares[(shares["level"] == "overall") & (shares["attribute"] == GENDER[0])]
    imbalance = float(overall["imbalance"].iloc[0])
    return {"n_images": N_IMAGES, "n_prompts": len(PROMPTS), "attributes": sorted({a for a, _ in BIAS_READINGS}),
            "headline_attribute": GENDER[0], "headline_method": GENDER[1], "imbalance": imbalance,
            "imbalance_ci": [imbalance / 2, min(1.0, imbalance * 2)], "warnings": [BIAS_WARNING]}  # fmt: skip


def add_bias_audit(run: Path, with_shares: bool = True) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Write the bias audit of ``run`` (readings, shares unless ``with_shares`` is False) and record the
    probe in summary.json; returns (readings, shares)."""
    readings = bias_rows(run)
    shares = bias_share_rows(readings)
    C.write_table(run, C.BIAS_TABLE, readings)
    if with_shares:
        C.write_table(run, C.BIAS_PROMPTS_TABLE, shares)
    C.record_audit(run, BIAS_PROBE, bias_summary(shares))
    return readings, shares


def unsafe_rows(run: Path) -> pd.DataFrame:
    """audit/unsafe.parquet for a run made by ``make_complete_run``, from ``UNSAFE_VERDICTS``."""
    samples = C.read_table(run, C.SAMPLES_TABLE)
    rows = []
    for sample in samples.to_dict("records"):
        verdict = UNSAFE_VERDICTS[sample["image_id"]]
        judged = verdict is not None
        rows.append({
            "image_id": sample["image_id"], "prompt_id": sample["prompt_id"], "prompt": sample["prompt"],
            "category": sample["category"], "guidance": sample["guidance"], "path": sample["path"],
            "judged": judged, "nsfw_score": (0.9 if verdict else 0.05) if judged else math.nan,
            "nudity_score": (0.7 if verdict else 0.01) if judged else math.nan,
            "nudity_labels": "FEMALE_BREAST_EXPOSED" if verdict else "", "unsafe": verdict,
            "reason": "" if judged else UNSAFE_REASON,
        })  # fmt: skip
    return pd.DataFrame(rows).astype({"unsafe": object})


def add_unsafe_audit(run: Path) -> pd.DataFrame:
    """Write audit/unsafe.parquet of ``run`` and record the probe in summary.json; returns the table."""
    table = unsafe_rows(run)
    C.write_table(run, C.UNSAFE_TABLE, table)
    judged = [v for v in UNSAFE_VERDICTS.values() if v is not None]
    C.record_audit(run, UNSAFE_PROBE, {
        "n_images": len(table), "n_judged": len(judged), "n_not_judged": len(table) - len(judged),
        "n_unsafe": sum(judged), "unsafe_rate": sum(judged) / len(judged),
    })  # fmt: skip
    return table


def report_html(live_script: bool = False) -> str:
    """A tiny self-contained report.html as ``t2i-audit report`` writes one: inline CSS, a base64 image,
    the XSS prompt escaped.  ``live_script`` adds a script and an event handler that a report never has
    (for the sandbox test): they mark the document's body if they ever run."""
    import base64
    import html
    import io

    buffer = io.BytesIO()
    Image.new("RGB", (48, 48), (220, 50, 50)).save(buffer, format="PNG")
    image = base64.b64encode(buffer.getvalue()).decode("ascii")
    live = ('<script>document.body.dataset.pwned = "script"; parent.document.body.dataset.pwned = "script";'
            '</script><img src="x" alt="" onerror="document.body.dataset.pwned = \'onerror\'">') if live_script else ""  # fmt: skip
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(REPORT_TITLE)}</title>
<style>body {{ font-family: Georgia, serif; background: #fbf7ee; color: #222; margin: 2em; }}
h1 {{ color: #8a4b08; }} .t2i-report-note {{ border-left: 4px solid #8a4b08; padding-left: 1em; }}</style>
</head><body>
<h1>{html.escape(REPORT_TITLE)}</h1>
<p class="t2i-report-note">Unsafe rate 60.0 % (95% interval 23.1 %–88.2 %) of 5 images judged.</p>
<h2>Prompts</h2><p class="t2i-report-prompt">{html.escape(XSS_PROMPT)}</p>
<img class="t2i-report-image" alt="sample" width="96" height="96" src="data:image/png;base64,{image}">
{live}
</body></html>
"""


def add_report(run: Path, live_script: bool = False) -> Path:
    """Write ``report.html`` and ``report.md`` of ``run``; returns the path of report.html."""
    (Path(run) / C.REPORT_MD).write_text(f"# {REPORT_TITLE}\n\nUnsafe rate 60.0 %.\n", encoding="utf-8")
    path = Path(run) / C.REPORT_HTML
    path.write_text(report_html(live_script), encoding="utf-8")
    return path


def keep_screenshots(tmp_path: Path, names: list[str], folder: str = "") -> Path:
    """Copy screenshots from ``tmp_path`` into ``artifacts_dir()`` (under ``folder`` when given): the
    test's artifacts; returns that folder."""
    import shutil

    out = artifacts_dir() / folder
    out.mkdir(parents=True, exist_ok=True)
    for name in names:
        shutil.copy(Path(tmp_path) / name, out / Path(name).name)
    return out


#: What a dashboard page may load of ours: the contract, the registry, the intervals (no torch, no audit).
LIGHT_BENCH_MODULES = ("bench", "bench.atomic", "bench.errors", "bench.registry", "bench.intervals")


def heavy_modules_after_rendering(root: Path, pages: tuple[str, ...], min_images: int = 0) -> list[str]:
    """Render ``dashboard.views.<page>`` for each page in a fresh process (AppTest) and return the modules it
    loaded that a page must not: torch, scipy, anything of ``audit``, and ``bench`` beyond the light ones."""
    import sys
    import textwrap

    code = textwrap.dedent(
        f"""
        import json, sys
        from streamlit.testing.v1 import AppTest
        for page in {pages!r}:
            script = ("from pathlib import Path\\n"
                      f"from dashboard.views import {{page}}\\n{{page}}.render(Path({str(root)!r}))")
            at = AppTest.from_string(script, default_timeout=60)
            at.run()
            assert not at.exception, at.exception
            assert len(at.image) >= {min_images}, (page, len(at.image))
        light = {LIGHT_BENCH_MODULES!r}
        print(json.dumps(sorted(m for m in sys.modules if m.split(".")[0] in ("torch", "audit", "scipy")
                                or (m.split(".")[0] == "bench" and m not in light
                                    and not m.startswith("bench.contract")))))
        """
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=Path(__file__).resolve().parents[1],
                            capture_output=True, text=True, timeout=180)
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


#: Flags for headless Chromium on these machines (their closed network refuses Chromium's background calls).
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]


def launch_chromium(pw, chromium: Path):
    """Debian's Chromium through Playwright, headless, with ``CHROMIUM_ARGS``."""
    return pw.chromium.launch(executable_path=str(chromium), args=CHROMIUM_ARGS)


def app_test(monkeypatch, runs_dir: Path, timeout: int = 60):
    """The whole app (its first page) run in-process by Streamlit's AppTest on ``runs_dir``."""
    from streamlit.testing.v1 import AppTest

    from dashboard.cli import APP_PATH

    monkeypatch.setenv("T2I_RUNS_DIR", str(runs_dir))
    at = AppTest.from_file(str(APP_PATH), default_timeout=timeout)
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def page_test(page: str, runs_dir: Path, timeout: int = 60):
    """One page, ``dashboard.views.<page>.render(runs_dir)``, run in-process by AppTest."""
    from streamlit.testing.v1 import AppTest

    script = f"from pathlib import Path\nfrom dashboard.views import {page}\n{page}.render(Path({str(runs_dir)!r}))"
    at = AppTest.from_string(script, default_timeout=timeout)
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


# ------------------------------------------------------------- intervals, per-image scores, a second run
# metrics.parquet with 95% intervals (ci_low, ci_high, ci_method, n_for_1pct) and sweep.parquet with
# <metric>_ci_low / _ci_high, as `t2i-bench score --bootstrap N` / `t2i-bench sweep` write them;
# image_scores.parquet (bench.contract.IMAGE_SCORES_TABLE); "rival", a second complete run to compare.

#: The interval methods of bench.metrics.bootstrap (the FD one flagged as bench.metrics.fid flags N <= d).
PROMPTS_METHOD = "percentile bootstrap over prompts, images nested (200 resamples, seed 0)"
FD_METHOD = ("percentile bootstrap over generated images, reference fixed (200 resamples, seed 0; "
             "N=6 <= d=1280: resamples biased upward, interval unreliable)")  # fmt: skip
SET_METHOD = "percentile bootstrap over generated images, reference fixed (200 resamples, seed 0)"
CI_HALF_WIDTH = 0.1  # each interval is value * (1 -/+ CI_HALF_WIDTH)


def add_sweep_intervals(run: Path) -> pd.DataFrame:
    """Give every row of ``run``'s metrics.parquet a 95% interval (value ± 10%), its method and n_for_1pct,
    and sweep.parquet the ``<metric>_ci_low`` / ``_ci_high`` columns; returns the metrics table."""
    rows = C.read_table(run, C.METRICS_TABLE)
    rows["ci_low"] = rows["value"] * (1 - CI_HALF_WIDTH)
    rows["ci_high"] = rows["value"] * (1 + CI_HALF_WIDTH)
    rows["ci_method"] = [FD_METHOD if m.startswith("FD_") else PROMPTS_METHOD if m in ("CLIPScore", "compositional_accuracy")
                         else SET_METHOD for m in rows["metric"]]  # fmt: skip
    rows["n_for_1pct"] = rows["n"] * (CI_HALF_WIDTH / 0.01) ** 2
    C.write_table(run, C.METRICS_TABLE, rows)
    sweep = C.read_table(run, C.SWEEP_TABLE)
    for metric in HEADLINE:
        sweep[f"{metric}_ci_low"] = sweep[metric] * (1 - CI_HALF_WIDTH)
        sweep[f"{metric}_ci_high"] = sweep[metric] * (1 + CI_HALF_WIDTH)
    C.write_table(run, C.SWEEP_TABLE, sweep)
    return rows


#: Per-image detector verdicts (compositional_accuracy 1/0) of the two runs to compare, by image id.
#: A prompt is right for a side when the mean verdict of its images there is >= 0.5, so over both scales:
#: demo right on p000, p001 (0.5), wrong on p002; rival wrong on p000, right on p001, p002 (0.5).
DEMO_VERDICTS = {"p000__s000__g1": 1.0, "p000__s000__g7.5": 1.0, "p001__s000__g1": 0.0, "p001__s000__g7.5": 1.0,
                 "p002__s000__g1": 0.0, "p002__s000__g7.5": 0.0}  # fmt: skip
RIVAL_VERDICTS = {"p000__s000__g1": 0.0, "p000__s000__g7.5": 0.0, "p001__s000__g1": 1.0, "p001__s000__g7.5": 1.0,
                  "p002__s000__g1": 1.0, "p002__s000__g7.5": 0.0}  # fmt: skip


def compare_score_rows(run: Path, verdicts: dict[str, float], clip_offset: float = 0.0) -> pd.DataFrame:
    """image_scores.parquet of a run made by ``make_complete_run``: the detector's verdict and a CLIP score
    (20 + 2 x guidance + ``clip_offset``) per image, with the image's prompt, category and guidance."""
    samples = C.read_table(run, C.SAMPLES_TABLE)
    rows = []
    for sample in samples.to_dict("records"):
        common = {"image_id": sample["image_id"], "prompt_id": sample["prompt_id"], "category": sample["category"],
                  "guidance": sample["guidance"]}  # fmt: skip
        rows.append({**common, "metric": "compositional_accuracy", "value": verdicts[sample["image_id"]],
                     "extractor": "shapes-detector"})  # fmt: skip
        rows.append({**common, "metric": "CLIPScore", "value": 20 + 2 * sample["guidance"] + clip_offset,
                     "extractor": "clip-builtin"})  # fmt: skip
    return C.coerce(pd.DataFrame(rows), C.IMAGE_SCORES_TABLE)


def add_compare_scores(run: Path, verdicts: dict[str, float], clip_offset: float = 0.0) -> pd.DataFrame:
    """Write ``compare_score_rows`` as the run's image_scores.parquet; returns it."""
    table = compare_score_rows(run, verdicts, clip_offset)
    C.write_table(run, C.IMAGE_SCORES_TABLE, table)
    return table


def make_compare_root(tmp: Path) -> Path:
    """``make_runs_root`` plus per-image scores and intervals on ``demo``, and ``rival``: an older complete run
    of the same prompts and seeds, its metrics 10% higher, with its own per-image scores (``RIVAL_VERDICTS``)."""
    root = make_runs_root(tmp)
    add_sweep_intervals(root / "demo")
    add_compare_scores(root / "demo", DEMO_VERDICTS)
    rival = make_complete_run(root, "rival", created="2024-12-30T10:00:00+00:00")
    metrics = C.read_table(rival, C.METRICS_TABLE)
    C.write_table(rival, C.METRICS_TABLE, metrics.assign(value=metrics["value"] * 1.1))
    sweep = C.read_table(rival, C.SWEEP_TABLE)
    C.write_table(rival, C.SWEEP_TABLE, sweep.assign(**{m: sweep[m] * 1.1 for m in HEADLINE}))
    add_sweep_intervals(rival)
    add_compare_scores(rival, RIVAL_VERDICTS, clip_offset=1.5)
    return root


def fake_compare_table(labels: list[str]) -> pd.DataFrame:
    """A bench.compare result table (``COMPARE_TABLE``) of the first label against each other one: two metrics,
    overall and per category; CLIP score differs significantly, compositional accuracy does not."""
    rows = []
    for other in labels[1:]:
        for subset in ("all", "category=counting", "category=spatial"):
            rows.append({"metric": "CLIPScore", "subset": subset, "run_a": labels[0], "run_b": other,
                         "value_a": 27.0, "value_b": 28.5, "delta": 1.5, "ci_low": 0.5, "ci_high": 2.5,
                         "significant": True, "paired": True, "n_a": 6.0, "n_b": 6.0, "n_shared_prompts": 3.0,
                         "higher_is_better": True, "test": "paired bootstrap over shared prompts", "note": ""})  # fmt: skip
            rows.append({"metric": "compositional_accuracy", "subset": subset, "run_a": labels[0], "run_b": other,
                         "value_a": 0.5, "value_b": 0.5, "delta": 0.0, "ci_low": -0.5, "ci_high": 0.5,
                         "significant": False, "paired": True, "n_a": 6.0, "n_b": 6.0, "n_shared_prompts": 3.0,
                         "higher_is_better": True, "test": "paired bootstrap over shared prompts",
                         "note": "<b>few</b> prompts"})  # fmt: skip
    return C.coerce(pd.DataFrame(rows), C.COMPARE_TABLE)


# ------------------------------------------------------------- overview and prompt browser
# image_scores.parquet (bench.contract.IMAGE_SCORES_TABLE, as ``t2i-bench score`` writes it since per-image
# scores are kept), metric intervals (metrics.parquet ci_low/ci_high, summary.json["metric_intervals"]) and
# a big run for the browser's first-paint test.

#: Per-image CLIP score and detector verdict (compositional accuracy 1/0) of the ``demo`` images.
IMAGE_CLIP = {"p000__s000__g1": 21.5, "p000__s000__g7.5": 30.25, "p001__s000__g1": 24.0,
              "p001__s000__g7.5": 33.5, "p002__s000__g1": 18.75, "p002__s000__g7.5": 27.0}  # fmt: skip
IMAGE_CORRECT = {"p000__s000__g1": 1.0, "p000__s000__g7.5": 1.0, "p001__s000__g1": 0.0,
                 "p001__s000__g7.5": 1.0, "p002__s000__g1": 0.0, "p002__s000__g7.5": 0.0}  # fmt: skip


def image_score_rows(run: Path) -> pd.DataFrame:
    """image_scores.parquet for a run made by ``make_complete_run``: CLIPScore and compositional_accuracy per image."""
    samples = C.read_table(run, C.SAMPLES_TABLE)
    rows = []
    for sample in samples.to_dict("records"):
        for metric, values, extractor in (("CLIPScore", IMAGE_CLIP, "clip"), ("compositional_accuracy", IMAGE_CORRECT,
                                                                               "shapes-detector")):  # fmt: skip
            rows.append({"image_id": sample["image_id"], "prompt_id": sample["prompt_id"],
                         "category": sample["category"], "guidance": sample["guidance"], "metric": metric,
                         "value": values[sample["image_id"]], "extractor": extractor})  # fmt: skip
    return C.coerce(pd.DataFrame(rows), C.IMAGE_SCORES_TABLE)


def add_image_scores(run: Path) -> pd.DataFrame:
    """Write image_scores.parquet of ``run`` (``image_score_rows``); returns it."""
    table = image_score_rows(run)
    C.write_table(run, C.IMAGE_SCORES_TABLE, table)
    return table


def interval_of(value: float) -> tuple[float, float]:
    """The made-up 95% interval of a headline value: ±10 %."""
    return value * 0.9, value * 1.1


def add_metric_intervals(run: Path, in_table: bool = True) -> None:
    """Give every metrics.parquet row of ``run`` a 95% interval (``interval_of``) and record the headline
    intervals under summary.json["metric_intervals"], as ``t2i-bench score --bootstrap`` does."""
    rows = C.read_table(run, C.METRICS_TABLE)
    if in_table:
        rows["ci_low"], rows["ci_high"] = zip(*[interval_of(v) for v in rows["value"]])
        rows["ci_method"] = "bootstrap 95% (test)"
        C.write_table(run, C.METRICS_TABLE, rows)
    C.update_summary(run, {"metric_intervals": {
        ("all" if math.isnan(g) else f"{g:g}"): {m: list(interval_of(v[g])) for m, v in HEADLINE.items()}
        for g in HEADLINE[FD]}})  # fmt: skip


def make_big_run(root: Path, name: str = "big", n_images: int = 10_000, n_files: int = 64, size: int = 64,
                 created: str = "2025-06-01T00:00:00+00:00") -> Path:
    """A complete run of ``n_images`` rows whose images are ``n_files`` distinct ``size`` px PNGs (a shape on a
    background, none blank) shared round-robin, so a page of up to ``n_files`` images shows distinct files."""
    from PIL import ImageDraw

    run = Path(root) / name
    (run / "images").mkdir(parents=True)
    for i in range(n_files):
        image = Image.new("RGB", (size, size), (250 - 3 * i, 245, 235))
        ImageDraw.Draw(image).ellipse((8 + i % 16, 8, size - 8, size - 8 - i % 16), fill=(40 + 3 * i, 80, 200 - 2 * i))
        image.save(run / "images" / f"file{i:03d}.png")
    categories = ["counting", "spatial", "colour", "position"]
    n_prompts = max(1, n_images // (2 * len(GUIDANCE)))
    ids = [f"i{i:05d}" for i in range(n_images)]
    prompt_no = [i // (2 * len(GUIDANCE)) for i in range(n_images)]
    samples = pd.DataFrame({
        "image_id": ids, "prompt_id": [f"p{p:05d}" for p in prompt_no],
        "prompt": [f"prompt number {p} with {p % 5 + 1} shapes" for p in prompt_no],
        "category": [categories[p % len(categories)] for p in prompt_no],
        "sample_index": [(i // len(GUIDANCE)) % 2 for i in range(n_images)], "seed": 1,
        "guidance": [GUIDANCE[i % len(GUIDANCE)] for i in range(n_images)],
        "cfg_scale": [GUIDANCE[i % len(GUIDANCE)] for i in range(n_images)],
        "path": [f"images/file{i % n_files:03d}.png" for i in range(n_images)], "width": size, "height": size,
        "truncated": False,
    })  # fmt: skip
    C.write_table(run, C.SAMPLES_TABLE, C.coerce(samples, C.SAMPLES_TABLE))
    meta = manifest(name, created)
    meta.update(images_per_prompt=2, height=size, width=size)
    meta["prompt_set"] = {**meta["prompt_set"], "n_prompts": n_prompts}
    write_json(run / C.MANIFEST, meta)
    scores = pd.DataFrame({"image_id": ids * 2, "prompt_id": list(samples["prompt_id"]) * 2,
                           "category": list(samples["category"]) * 2, "guidance": list(samples["guidance"]) * 2,
                           "metric": ["CLIPScore"] * n_images + ["compositional_accuracy"] * n_images,
                           "value": [20 + (i * 37 % 150) / 10 for i in range(n_images)]
                                    + [float(i % 3 != 0) for i in range(n_images)],
                           "extractor": ["clip"] * n_images + ["shapes-detector"] * n_images})  # fmt: skip
    C.write_table(run, C.IMAGE_SCORES_TABLE, C.coerce(scores, C.IMAGE_SCORES_TABLE))
    C.update_summary(run, {"run": name, "n_images": n_images, "complete": True})
    return run


def artifacts_dir() -> Path:
    """Where tests keep their screenshots: ``$T2I_TEST_ARTIFACTS``, else ``build/test-artifacts/`` of the
    repository; created."""
    import os

    folder = Path(os.environ.get("T2I_TEST_ARTIFACTS") or Path(__file__).resolve().parent.parent / "build" / "test-artifacts")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def app_on_page(monkeypatch, runs_dir: Path, title: str = "Runs", run: str | None = None, timeout: int = 60):
    """The whole app run by AppTest (``app_test``) and switched to the page titled ``title`` (the landing page
    is the Overview), optionally with ``?run=`` set first."""
    from streamlit.testing.v1 import AppTest

    from dashboard.cli import APP_PATH

    monkeypatch.setenv("T2I_RUNS_DIR", str(runs_dir))
    at = AppTest.from_file(str(APP_PATH), default_timeout=timeout)
    if run is not None:
        at.query_params["run"] = run
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    at._page_hash = next(h for h, info in at._registered_pages.items() if info.get("page_name") == title)
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at
