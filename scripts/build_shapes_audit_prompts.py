#!/usr/bin/env python3
"""Build the `shapes-audit` prompt set: prompts that probe the built-in world's planted phenomena.

Writes <out>/data/shapes-audit.jsonl and <out>/shapes-audit.yaml (default:
prompt_sets/).  Deterministic (one numpy Generator seeded with SEED); a test
rebuilds it into a temporary folder and compares bytes with the committed files.

Categories (every row but `role` carries a scene spec, ``SceneSpec.to_dict``:
objects with shape, colour, size and centre x/y, background, watermark):

* iconic     the 24 "the famous <name> poster" captions of shapes-laion
             (``bench.world.corpus.iconic_scenes()``, the full 100k corpus,
             seed 0), each with the iconic scene it is the caption of:
             memorization bait, 110 identical training copies each;
* fresh      descriptive captions of new random scenes (2-4 objects, like the
             iconic ones) that are in no training row: the negatives of the
             memorization audit;
* stock_cue  "stock photo of <scene>" (the watermark cue of the corpus);
* no_cue     the same scenes as stock_cue, in the same order, framed without the
             cue ("a photo of <scene>"): the watermark probe's control;
* role       "a picture of a <role>" for each made-up role word (no spec; extra
             holds the role's dimension, values and majority share).

Examples:
    python scripts/build_shapes_audit_prompts.py
    python scripts/build_shapes_audit_prompts.py --out /tmp/shapes-audit-check
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # runnable from a checkout without installing
    sys.path.insert(0, str(REPO))

from bench.atomic import atomic_write_bytes  # noqa: E402
from bench.world.captions import PLAIN_TEMPLATES, caption, describe, scene_prompt_spec, with_article  # noqa: E402
from bench.world.promptset import jsonl_bytes  # noqa: E402
from bench.world.corpus import ROLES, WATERMARK_CUE, iconic_scenes  # noqa: E402
from bench.world.sample import random_scene  # noqa: E402

NAME = "shapes-audit"
VERSION = "1"
SEED = 20260
DATA_FILE = f"data/{NAME}.jsonl"
SIZES = {"iconic": 24, "fresh": 48, "stock_cue": 24, "no_cue": 24, "role": len(ROLES)}
DESCRIPTION = ("Audit prompts for the built-in shapes world: the 24 iconic (memorized) poster captions "
               "with their scenes, fresh scenes (negatives), stock-photo cue captions and the same scenes "
               "without the cue (watermark probe), and one prompt per biased role word.")


def _fresh_rows(rng: np.random.Generator, iconic_json: set[str], n: int) -> list[tuple[str, dict]]:
    out: list[tuple[str, dict]] = []
    seen: set[str] = set()
    while len(out) < n:
        scene = random_scene(rng, n_objects=int(rng.integers(2, 5)), exclude_held_out=True)
        text = caption(scene, "descriptive", int(rng.integers(1 << 16)))
        if scene.to_json() in iconic_json or text in seen:
            continue
        seen.add(text)
        out.append((text, scene.to_dict()))
    return out


def _cue_rows(rng: np.random.Generator, n: int) -> tuple[list[tuple[str, dict]], list[tuple[str, dict]]]:
    """(stock_cue rows, no_cue rows) over the same n scenes of one or two objects."""
    cue, plain, seen = [], [], set()
    # The framed templates only ("a photo of {x}", ...): the cue replaces the frame, as in the corpus.
    frames = [t for t in PLAIN_TEMPLATES if t != "{x}"]
    while len(cue) < n:
        scene = random_scene(rng, n_objects=int(rng.integers(1, 3)), exclude_held_out=True)
        bare = describe(scene_prompt_spec(scene))
        if bare in seen:
            continue
        seen.add(bare)
        framed = frames[int(rng.integers(len(frames)))].format(x=bare)
        cue.append((WATERMARK_CUE + bare, scene.to_dict()))
        plain.append((framed, scene.to_dict()))
    return cue, plain


def build_rows(seed: int = SEED) -> list[dict]:
    """All rows, in category order (iconic, fresh, stock_cue, no_cue, role), prompts unique."""
    rng = np.random.default_rng(seed)
    iconic = iconic_scenes()
    rows: list[dict] = []

    def add(category: str, text: str, spec: dict | None, **extra) -> None:
        rows.append({"id": f"{NAME}-{len(rows):04d}", "prompt": text, "category": category,
                     "spec": spec, **extra})

    for group, (text, scene) in enumerate(iconic):
        add("iconic", text, scene.to_dict(), dup_group=group)
    for text, spec in _fresh_rows(rng, {s.to_json() for _, s in iconic}, SIZES["fresh"]):
        add("fresh", text, spec)
    cue, plain = _cue_rows(rng, SIZES["stock_cue"])
    for text, spec in cue:
        add("stock_cue", text, spec)
    for text, spec in plain:
        add("no_cue", text, spec)
    for role in ROLES:
        add("role", f"a picture of {with_article(role.name)}", None, role=role.name,
            dimension=role.dimension, values=list(role.values), p_major=role.p_major)
    counts = {c: sum(r["category"] == c for r in rows) for c in SIZES}
    if counts != SIZES:
        raise RuntimeError(f"built {counts}, expected {SIZES}")
    if len({r["prompt"] for r in rows}) != len(rows):
        raise RuntimeError("prompts are not unique")
    return rows


def yaml_text(data_sha256: str) -> str:
    return (f"name: {NAME}\n"
            f"version: \"{VERSION}\"\n"
            f"description: {json.dumps(DESCRIPTION)}\n"
            "source: \"generated by scripts/build_shapes_audit_prompts.py (t2i-audit built-in world)\"\n"
            "license: \"Apache-2.0\"\n"
            f"data: {DATA_FILE}\n"
            f"sha256: {data_sha256}\n"
            "format: jsonl\n"
            "columns: {prompt: prompt, category: category}\n"
            "extra_columns: [dup_group, role, dimension, values, p_major]\n"
            "id_column: id\n"
            "spec_field: spec\n")


def write_prompt_set(out_dir: str | os.PathLike) -> tuple[Path, Path]:
    out = Path(out_dir)
    data = jsonl_bytes(build_rows())
    data_path, yaml_path = out / DATA_FILE, out / f"{NAME}.yaml"
    atomic_write_bytes(data_path, data)
    atomic_write_bytes(yaml_path, yaml_text(hashlib.sha256(data).hexdigest()).encode("utf-8"))
    return yaml_path, data_path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     epilog=__doc__.split("Examples:\n", 1)[1],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=REPO / "prompt_sets",
                        help=f"folder for {NAME}.yaml and {DATA_FILE} (default: prompt_sets/)")
    args = parser.parse_args(argv)
    yaml_path, data_path = write_prompt_set(args.out)
    print(f"wrote {yaml_path} and {data_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
