"""Generator-like images of scene specs: the stand-in generator of ``--simulate``.

``simulate_image`` renders a prompt's scene (``bench.world.render``, 64 px)
with perturbations that mimic a generator; ``make_simulated_run`` writes
such images for a list of prompts and imports them as a run, so the audit
sees them exactly as it sees a real generator's.  Every image is a function
of its seed: the same seed gives the same pixels.

The constants below are choices of the simulation, not measurements: they
were set by hand (commit 38e6fe3, "calibration script") so that faithful
copies stay well inside the exact detector's position tolerance, loose copies
straddle it and variations fall far outside it; no fit to a generator's
images is recorded.  Each is written into the results JSON
(``simulation`` block) and the document, so the simulated figures say what
they were made with.
"""

from __future__ import annotations

import io
import math
import shutil
import zlib
from pathlib import Path

import numpy as np

from bench.atomic import atomic_write_bytes

#: How a simulated generation of an iconic caption behaves, with its share:
#: a faithful copy (sub-pixel jitter), a loose copy (about a pixel of jitter
#: per object: mostly inside the detector's 0.03 tolerance, some outside) or
#: a variation (the composition changed: one object moved, dropped, recoloured
#: or reshaped), i.e. not a copy.
ICONIC_BEHAVIOUR = {"copy": 0.5, "loose": 0.2, "variation": 0.3}
#: Per-object position jitter (sd, as a share of the side): 0.004 is 0.26 px at
#: the 64 px render size, 0.02 is 1.3 px (``bench.world.detect.compare_scenes``
#: accepts centres within 0.03 = 1.9 px).
JITTER = {"copy": 0.004, "loose": 0.02}
#: Behaviours that are copies of the training image (for the behaviour truth).
COPY_BEHAVIOURS = ("copy", "loose")
#: Generator noise on every simulated image: Gaussian blur radius (px),
#: per-channel colour offset (grey levels), per-pixel noise (grey levels).
BLUR_RANGE = (0.2, 0.6)
COLOUR_OFFSET_SD = 4.0
PIXEL_NOISE_SD = 3.0


def scene_of(prompt):
    """The ``SceneSpec`` a shapes-world prompt describes."""
    from bench.world import SceneSpec

    return SceneSpec.from_dict(prompt.to_dict()["spec"])


def _jitter(scene, rng: np.random.Generator, sd: float):
    from bench.world import ObjectSpec, SceneSpec

    objs = tuple(ObjectSpec(o.shape, o.colour, o.size,
                            float(np.clip(o.x + rng.normal(0, sd), 0, 1)),
                            float(np.clip(o.y + rng.normal(0, sd), 0, 1))) for o in scene.objects)
    return SceneSpec(objs, background=scene.background, watermark=scene.watermark)


def _vary(scene, rng: np.random.Generator):
    """Change the composition in one way a detector must see (not a copy)."""
    from dataclasses import replace

    from bench.world import COLOURS, SHAPES, SceneSpec

    objs = list(scene.objects)
    i = int(rng.integers(len(objs)))
    how = ("move", "drop", "recolour", "reshape")[int(rng.integers(4))]
    if how == "drop" and len(objs) > 1:
        del objs[i]
    elif how == "recolour":
        objs[i] = replace(objs[i], colour=str(rng.choice([c for c in COLOURS if c != objs[i].colour])))
    elif how == "reshape":
        objs[i] = replace(objs[i], shape=str(rng.choice([s for s in SHAPES if s != objs[i].shape])))
    else:  # move by 0.08-0.25 of the side (far beyond the 0.03 tolerance)
        how = "move"
        angle, r = rng.uniform(0, 2 * math.pi), rng.uniform(0.08, 0.25)
        objs[i] = replace(objs[i], x=float(np.clip(objs[i].x + r * math.cos(angle), 0.05, 0.95)),
                          y=float(np.clip(objs[i].y + r * math.sin(angle), 0.05, 0.95)))
    return SceneSpec(tuple(objs), background=scene.background, watermark=scene.watermark), how


def _generator_noise(img, rng: np.random.Generator) -> np.ndarray:
    from PIL import ImageFilter

    img = img.filter(ImageFilter.GaussianBlur(radius=float(rng.uniform(*BLUR_RANGE))))
    arr = np.asarray(img, dtype=np.float64)
    arr = arr + rng.normal(0, COLOUR_OFFSET_SD, size=3) + rng.normal(0, PIXEL_NOISE_SD, size=arr.shape)
    return np.clip(np.rint(arr), 0, 255).astype(np.uint8)


def simulate_image(scene, category: str, rng: np.random.Generator) -> tuple[np.ndarray, str]:
    """A stand-in for a generation of a prompt whose scene is ``scene``; returns (HWC uint8, behaviour).

    An ``iconic`` prompt draws its behaviour from ``ICONIC_BEHAVIOUR`` ("copy",
    "loose" or "variation:<how>"); any other category is a faithful render of
    its scene ("copy": its scene is in no training row)."""
    from bench.world import render

    if category == "iconic":
        names = list(ICONIC_BEHAVIOUR)
        kind = names[int(rng.choice(len(names), p=list(ICONIC_BEHAVIOUR.values())))]
    else:
        kind = "copy"  # a fresh prompt rendered faithfully: its scene is in no training row
    if kind == "variation":
        scene, how = _vary(scene, rng)
        kind = f"variation:{how}"
        scene = _jitter(scene, rng, JITTER["copy"])
    else:
        scene = _jitter(scene, rng, JITTER[kind])
    return _generator_noise(render(scene), rng), kind


def sample_rng(seed: int, prompt_id: str, sample: int) -> np.random.Generator:
    """The generator of one simulated image: a function of the run seed, the prompt and the sample."""
    return np.random.default_rng(zlib.crc32(f"{seed}/{prompt_id}/{sample}".encode()))


def make_simulated_run(out: Path, prompts, samples: int, seed: int, prompt_set: str) -> dict[str, str]:
    """Write simulated images and import them as a run (``t2i-bench import``); returns behaviour by image id.

    The images go to ``<out>-images/`` first.  They are a function of the seeds: an
    existing run with exactly these images is reused (and so are its cached
    features); anything else is rebuilt from scratch."""
    from PIL import Image

    from bench.importer import import_images

    out = Path(out)
    folder = out.parent / f"{out.name}-images"
    kinds, pngs = {}, {}
    for p in prompts:
        for k in range(samples):
            arr, kind = simulate_image(scene_of(p), p.category, sample_rng(seed, p.id, k))
            buf = io.BytesIO()
            Image.fromarray(arr).save(buf, format="PNG")
            pngs[f"{p.id}_{k}.png"] = buf.getvalue()
            kinds[f"{p.id}__s{k:03d}__gna"] = kind
    if _same_run(out, folder, kinds, pngs):
        return kinds
    shutil.rmtree(out, ignore_errors=True)
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    for name, data in pngs.items():
        atomic_write_bytes(folder / name, data)
    import_images(str(folder), prompt_set, "simulated-shapes-generator", str(out))
    return kinds


def _same_run(out: Path, folder: Path, kinds: dict, pngs: dict) -> bool:
    from bench import contract as C

    if not C.SAMPLES_TABLE.path(out).exists():
        return False
    try:
        image_ids = set(C.read_table(out, C.SAMPLES_TABLE).image_id)
    except C.ContractError:  # a damaged run is rebuilt
        return False
    return image_ids == set(kinds) and all(
        (folder / name).is_file() and (folder / name).read_bytes() == data for name, data in pngs.items())
