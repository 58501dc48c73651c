"""Fake run directories for the dashboard tests (the layout of DESIGN.md §3).

``make_runs_root(tmp)`` builds a root holding:

- ``demo``: a complete run, 6 tiny PNGs = 3 prompts x 1 sample x 2 guidance
  values, in 2 categories (``counting``: 4 images, ``spatial``: 2 images); one
  prompt is an XSS probe (``XSS_PROMPT``);
- ``half-done``: an interrupted run with a manifest only;
- ``notes``: a junk directory without a manifest (not a run).
"""

from __future__ import annotations

import json
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
    write_json(run / "manifest.json", manifest(name, created))
    write_json(
        run / "summary.json",
        {"run": name, "model": "builtin:shapes-ldm-tiny", "n_images": N_IMAGES, "n_prompts": 3,
         "guidance": GUIDANCE, "complete": True},
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
