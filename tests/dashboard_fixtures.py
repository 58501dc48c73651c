"""Fake run directories for the dashboard tests (the layout of DESIGN.md §3).

``make_runs_root(tmp)`` builds a root holding:

- ``demo``: a complete run, 6 tiny PNGs = 3 prompts x 1 sample x 2 guidance
  values, in 2 categories (``counting``: 4 images, ``spatial``: 2 images); one
  prompt is an XSS probe (``XSS_PROMPT``); scored: ``metrics.parquet``
  (``metrics_rows()``) and ``sweep.parquet`` (``sweep_rows()``), as
  ``t2i-bench score`` / ``t2i-bench sweep`` write them;
- ``half-done``: an interrupted run with a manifest only;
- ``notes``: a junk directory without a manifest (not a run).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pandas as pd
from PIL import Image

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
# Headline values per guidance (NaN = all scales together): FD worsens and CLIP score improves with guidance.
HEADLINE = {
    FD: {math.nan: 80.0, 1.0: 95.5, 7.5: 120.25},
    "KID_efficientnet-lite0": {math.nan: 0.0123, 1.0: 0.015, 7.5: 0.021},
    "precision": {math.nan: 0.7, 1.0: 0.6, 7.5: 0.8},
    "recall": {math.nan: 0.5, 1.0: 0.6, 7.5: 0.3},
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
            two_sample = metric.startswith(("FD_", "KID_")) or metric in ("precision", "recall")
            rows.append({"metric": metric, "subset": "all", "guidance": guidance, "value": value, "n": 6 if math.isnan(guidance) else 3,
                         "n_ref": 6 if two_sample else None, "extractor": "efficientnet-lite0" if two_sample else None,
                         "reference": "runs/other" if two_sample else None})  # fmt: skip
        for category, by_g in PER_CATEGORY.get(metric, {}).items():
            for guidance, value in by_g.items():
                rows.append({"metric": metric, "subset": f"category={category}", "guidance": guidance, "value": value,
                             "n": 2, "n_ref": None, "extractor": None, "reference": None})  # fmt: skip
    df = pd.DataFrame(rows)
    df["std"] = [0.001 if m.startswith("KID_") else math.nan for m in df["metric"]]
    return df.astype({"guidance": "float64", "value": "float64", "n_ref": "float64"})


def sweep_rows() -> pd.DataFrame:
    """A sweep.parquet table: one row per guidance, one column per headline metric."""
    table = {"guidance": GUIDANCE}
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
                    "path": rel,
                    "width": 32,
                    "height": 32,
                }
            )
    samples = pd.DataFrame(rows).astype({"seed": "int64", "guidance": "float64"})
    samples.to_parquet(run / "samples.parquet", index=False)
    metrics_rows().to_parquet(run / "metrics.parquet", index=False)
    sweep_rows().to_parquet(run / "sweep.parquet", index=False)
    write_json(run / "manifest.json", manifest(name, created))
    write_json(
        run / "summary.json",
        {"run": name, "model": "builtin:shapes-ldm-tiny", "n_images": N_IMAGES, "n_prompts": 3,
         "guidance": GUIDANCE, "complete": True,
         "metrics": {("all" if math.isnan(g) else f"{g:g}"): {m: v[g] for m, v in HEADLINE.items()}
                     for g in HEADLINE[FD]}},
    )  # fmt: skip
    return run


def make_runs_root(tmp: Path) -> Path:
    """A runs root with a complete run, an interrupted run and a junk directory."""
    root = Path(tmp) / "runs"
    root.mkdir()
    make_complete_run(root, "demo", created="2025-01-02T10:00:00+00:00")
    half = root / "half-done"
    half.mkdir()
    write_json(half / "manifest.json", manifest("half-done", "2025-01-01T09:00:00+00:00", complete=False))
    (root / "notes").mkdir()
    (root / "notes" / "readme.txt").write_text("not a run\n")
    return root
