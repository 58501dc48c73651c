#!/usr/bin/env python
"""Validate the exact detector on real generations (issue 11: the judge, validated on generations first).

    python scripts/validate_detector.py [--save NAME] [--baseline NAME]

Generates one image per prompt of the ``shapes`` prompt set with ``builtin:shapes-ldm`` (default: all 344
prompts, seed 0, guidance 7.5, 20 steps; image k gets ``torch.Generator().manual_seed(seed + k)``, as in
``scripts/make_model_card.py``), cached as PNGs under ``build/detector-validation/images/`` (keyed by the
weights' digest and the settings) so later runs only read them.  Each image is then read twice:

* by the exact detector (``bench.world.detect_objects``, and ``check`` for the prompt's verdict);
* by a much simpler, independent reading written here (``simple_reading``): Pillow's own HSV conversion,
  per palette colour a mask of pixels with chroma >= ``SIMPLE_MIN_CHROMA`` whose hue lies in that colour's
  hue sector (halfway to the neighbouring palette hues), 8-connected blobs of at least ``SIMPLE_MIN_AREA``
  of the image.  It knows nothing of shapes; it says which colours are present, how many blobs of each,
  and whether the image is empty.

Agreement is measured at three levels (empty vs non-empty; the set of colours; the count per colour, i.e.
the multiset of colours) with Wilson 95% intervals; the detector's "no object" count is printed beside the
simple reading's empty count, with the detector's per-category accuracy (``check(...)["correct"]``).
Every disagreement (count per colour) goes on a contact sheet, ``docs/detector-on-generations.png``.

``--save NAME`` keeps the readings in ``build/detector-validation/NAME.json``; ``--baseline NAME`` prints
the figures of a saved run beside this one (before/after a change to the detector).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import textwrap
import time
from collections import Counter, defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # runnable from a checkout without installing
    sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
from PIL import Image, ImageDraw, ImageFont  # noqa: E402
from scipy import ndimage  # noqa: E402

from bench.errors import UserError  # noqa: E402
from bench.intervals import wilson  # noqa: E402
from bench.world.vocab import COLOURS, colour_hue  # noqa: E402

BUILD = ROOT / "build" / "detector-validation"
SHEET = ROOT / "docs" / "detector-on-generations.png"

# ------------------------------------------------------------------ the simple, independent reading

#: Chroma (max - min channel, 0..255) a pixel needs to count as coloured.  Every palette colour has
#: chroma >= 150 (bench/world/vocab.py), so this keeps pixels that are >= 40% object (the detector's
#: own mask uses 30% and its components 24).  On the 344 generations of docs/detector-on-generations.md
#: the background away from objects has chroma <= 14 (99.9th percentile; max 23); agreement with the
#: detector moves by at most 8 of 344 for 40 or 80 instead (table in that doc).
SIMPLE_MIN_CHROMA = 60
#: Smallest blob, as a share of the image (16 px at 64x64).  The smallest object the world draws (a
#: small star, box side 0.20) covers ~0.016 of the image, four times this; specks below it are noise.
#: 0.0025 or 0.006 instead move agreement by at most 2 of 344 (same doc).
SIMPLE_MIN_AREA = 0.004


def _hue_sectors() -> dict[str, tuple[float, float]]:
    """Each palette colour's hue sector in degrees: halfway to its neighbours on the hue circle."""
    hues = sorted((colour_hue(c), c) for c in COLOURS)
    sectors = {}
    for i, (h, name) in enumerate(hues):
        prev_h = hues[i - 1][0] - (360.0 if i == 0 else 0.0)
        next_h = hues[(i + 1) % len(hues)][0] + (360.0 if i == len(hues) - 1 else 0.0)
        sectors[name] = ((h + prev_h) / 2.0, (h + next_h) / 2.0)
    return sectors


HUE_SECTORS = _hue_sectors()


def simple_reading(image: Image.Image) -> Counter:
    """Number of blobs per palette colour (an empty Counter: nothing coloured).

    A blob is an 8-connected group of coloured pixels (any hue) of at least ``SIMPLE_MIN_AREA``; its
    colour is the palette colour whose hue sector holds most of its pixels."""
    hsv = np.asarray(image.convert("RGB").convert("HSV"), dtype=np.float64)
    hue = hsv[..., 0] * (360.0 / 256.0)
    chroma = hsv[..., 1] * hsv[..., 2] / 255.0  # S = chroma / max, V = max
    labels, n = ndimage.label(chroma >= SIMPLE_MIN_CHROMA, structure=np.ones((3, 3), bool))
    sizes = np.bincount(labels.ravel(), minlength=n + 1)
    blobs: Counter = Counter()
    for k in np.flatnonzero(sizes[1:] >= SIMPLE_MIN_AREA * hue.size) + 1:
        h = hue[labels == k]
        pixels = {name: int((((h - lo) % 360.0) < (hi - lo)).sum()) for name, (lo, hi) in HUE_SECTORS.items()}
        blobs[max(pixels, key=pixels.get)] += 1
    return blobs


# ------------------------------------------------------------------ generations


def load_prompts(name: str, limit: int | None):
    from bench.prompts import load_prompt_set

    prompts = [p for p in load_prompt_set(name) if p.spec is not None]
    if not prompts:
        raise UserError(f"prompt set '{name}' has no prompts with a spec; use the 'shapes' prompt set")
    return prompts[:limit] if limit else prompts


def generations(model: str, prompts, guidance: float, steps: int, seed: int, batch: int) -> tuple[list, Path]:
    """One image per prompt, read from the cache or generated (and cached) in batches."""
    from bench.models.loader import load_pipeline, resolve_model, weights_sha256

    resolved = resolve_model(model)
    key = f"{resolved.ref.replace(':', '-').replace('/', '-')}-{weights_sha256(resolved)[:12]}-g{guidance:g}-s{steps}-seed{seed}"
    folder = BUILD / "images" / key
    paths = [folder / f"{k:04d}-{p.id}.png" for k, p in enumerate(prompts)]
    todo = [k for k, path in enumerate(paths) if not path.is_file()]
    if todo:
        import torch

        print(f"generating {len(todo)} of {len(paths)} images into {folder.relative_to(ROOT)} ...", flush=True)
        pipe = load_pipeline(resolved)
        folder.mkdir(parents=True, exist_ok=True)
        t0 = time.time()
        for s in range(0, len(todo), batch):
            ks = todo[s:s + batch]
            gens = [torch.Generator().manual_seed(seed + k) for k in ks]
            out = pipe([prompts[k].prompt for k in ks], num_inference_steps=steps, guidance_scale=guidance,
                       generator=gens).images
            for k, im in zip(ks, out):
                tmp = paths[k].with_suffix(".tmp.png")
                im.save(tmp)
                tmp.replace(paths[k])  # a killed run leaves no half-written image behind
            print(f"  {s + len(ks)}/{len(todo)} ({time.time() - t0:.0f} s)", flush=True)
    return [Image.open(p).convert("RGB") for p in paths], folder


# ------------------------------------------------------------------ measuring


def describe(counts: Counter) -> str:
    return ", ".join(f"{n} {c}" for c, n in sorted(counts.items())) or "nothing"


def read_all(prompts, images) -> list[dict]:
    from bench.world import check

    rows = []
    for p, im in zip(prompts, images):
        verdict = check(p.spec, im)
        det = [(o["shape"], o["colour"]) for o in verdict["detected"]]
        rows.append({"id": p.id, "prompt": p.prompt, "category": p.category, "correct": bool(verdict["correct"]),
                     "detector": det, "simple": dict(simple_reading(im))})
    return rows


def summarise(rows: list[dict]) -> dict:
    n = len(rows)
    det = [Counter(c for _, c in r["detector"]) for r in rows]
    simple = [Counter(r["simple"]) for r in rows]
    agree = {
        "empty vs non-empty": sum((not d) == (not s) for d, s in zip(det, simple)),
        "set of colours": sum(set(d) == set(s) for d, s in zip(det, simple)),
        "count per colour": sum(d == s for d, s in zip(det, simple)),
    }
    by_cat: dict[str, list[bool]] = defaultdict(list)
    for r in rows:
        by_cat[r["category"]].append(r["correct"])
    return {"n": n, "agree": agree,
            "disagreements": [i for i, (d, s) in enumerate(zip(det, simple)) if d != s],
            "detector_empty": sum(not d for d in det), "simple_empty": sum(not s for s in simple),
            "accuracy": {c: (sum(v), len(v)) for c, v in by_cat.items()}
            | {"all": (sum(r["correct"] for r in rows), n)}}


def print_summary(s: dict, base: dict | None) -> None:
    def rate(k: int, n: int) -> str:
        lo, hi = wilson(k, n)
        return f"{k}/{n} = {k / n:.3f} [{lo:.3f}, {hi:.3f}]"

    cols = ["before", "after"] if base else ["value"]
    print(f"\n| agreement (Wilson 95%) | {' | '.join(cols)} |\n|---|{'---|' * len(cols)}")
    for level in s["agree"]:
        vals = ([rate(base["agree"][level], base["n"])] if base else []) + [rate(s["agree"][level], s["n"])]
        print(f"| {level} | {' | '.join(vals)} |")
    vals = ([str(len(base["disagreements"]))] if base else []) + [str(len(s["disagreements"]))]
    print(f"| disagreements (count per colour) | {' | '.join(vals)} |")
    for key, what in (("detector_empty", "detector 'no object'"), ("simple_empty", "simple reading empty")):
        vals = ([str(base[key])] if base else []) + [str(s[key])]
        print(f"| {what} | {' | '.join(vals)} |")
    print(f"\n| category | N | detector accuracy{' before | after' if base else ''} |\n|---|---|---|"
          + ("---|" if base else ""))
    for cat, (k, n) in s["accuracy"].items():
        vals = ([f"{base['accuracy'][cat][0] / n:.3f}"] if base and cat in base["accuracy"] else []) + [f"{k / n:.3f}"]
        print(f"| {cat} | {n} | {' | '.join(vals)} |")


def contact_sheet(rows: list[dict], images: list, picked: list[int], out: Path, cap: int) -> None:
    """Every disagreement (up to ``cap``): the image upscaled, its prompt and both readings under it."""
    shown = picked[:cap]
    tile = 128 if len(shown) <= 80 else 96
    per_row = 10 if tile == 96 else 8
    font = ImageFont.load_default(size=10)
    wrap = tile // 6
    captions = []
    for i in shown:
        r = rows[i]
        det = ", ".join(f"{c} {s}" for s, c in r["detector"]) or "no object"
        lines = (textwrap.wrap(f"{r['id'][-4:]} {r['category']}: {r['prompt']}", wrap)[:5]
                 + textwrap.wrap(f"D: {det}", wrap)[:4] + textwrap.wrap(f"S: {describe(Counter(r['simple']))}", wrap)[:3])
        captions.append(lines)
    cap_h = 11 * max((len(c) for c in captions), default=1) + 4
    n_rows = max(1, -(-len(shown) // per_row))
    footer = 14 if len(picked) > len(shown) else 0
    sheet = Image.new("RGB", (per_row * (tile + 4), n_rows * (tile + cap_h + 4) + footer), "white")
    draw = ImageDraw.Draw(sheet)
    for j, (i, lines) in enumerate(zip(shown, captions)):
        x, y = (j % per_row) * (tile + 4) + 2, (j // per_row) * (tile + cap_h + 4) + 2
        sheet.paste(images[i].resize((tile, tile), Image.NEAREST), (x, y))
        for li, line in enumerate(lines):
            draw.text((x, y + tile + 2 + 11 * li), line, fill="black", font=font)
    if footer:
        draw.text((4, sheet.height - footer + 1), f"{len(picked) - len(shown)} more disagreements left out "
                  f"(cap {cap})", fill="red", font=font)
    if not shown:
        draw.text((4, 4), "no disagreements", fill="black", font=font)
    out.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(out, optimize=True)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="builtin:shapes-ldm")
    ap.add_argument("--prompts", default="shapes", help="a prompt set whose prompts carry specs")
    ap.add_argument("--limit", type=int, default=0, help="first N prompts only (0 = all)")
    ap.add_argument("--guidance", type=float, default=7.5)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--sheet", default=str(SHEET), help="contact sheet of the disagreements (PNG)")
    ap.add_argument("--cap", type=int, default=120, help="at most this many tiles on the sheet")
    ap.add_argument("--save", default="last", help="keep the readings as build/detector-validation/NAME.json")
    ap.add_argument("--baseline", default=None, help="a saved NAME to print beside this run (before/after)")
    args = ap.parse_args(argv)
    try:
        if args.limit < 0 or args.steps < 1 or args.batch < 1 or args.threads < 1 or args.cap < 0:
            raise UserError("--limit and --cap must be >= 0; --steps, --batch and --threads >= 1")
        for name in (args.save, args.baseline or "x"):
            if not re.fullmatch(r"[A-Za-z0-9_.-]+", name) or name.startswith("."):
                raise UserError(f"--save/--baseline take a plain name (letters, digits, _ . -), got {name!r}")
        base = None
        if args.baseline:
            path = BUILD / f"{args.baseline}.json"
            if not path.is_file():
                raise UserError(f"no saved readings '{args.baseline}' ({path} does not exist); run with --save first")
            base = json.loads(path.read_text())
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        import torch

        torch.set_num_threads(args.threads)
        prompts = load_prompts(args.prompts, args.limit or None)
        if base is not None and [r["id"] for r in base["rows"]] != [p.id for p in prompts]:
            raise UserError(f"baseline '{args.baseline}' was measured on other prompts; rerun it with the same options")
        images, folder = generations(args.model, prompts, args.guidance, args.steps, args.seed, args.batch)
        rows = read_all(prompts, images)
        s = summarise(rows)
        print(f"{len(rows)} generations of {args.model} ({args.prompts}, guidance {args.guidance:g}, "
              f"{args.steps} steps, seed {args.seed}) in {folder.relative_to(ROOT)}")
        print_summary(s, base["summary"] if base else None)
        contact_sheet(rows, images, s["disagreements"], Path(args.sheet), args.cap)
        print(f"\ncontact sheet of {min(len(s['disagreements']), args.cap)} of {len(s['disagreements'])} "
              f"disagreements: {args.sheet}")
        BUILD.mkdir(parents=True, exist_ok=True)
        (BUILD / f"{args.save}.json").write_text(json.dumps({"summary": s, "rows": rows}, indent=1))
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    except OSError as exc:  # e.g. an unwritable --sheet or build folder
        print(f"error: {exc.strerror or exc}: {exc.filename or ''}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
