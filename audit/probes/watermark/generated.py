"""Generations of the built-in world's generator as probe training examples (``ProbeConfig.generated``).

Synthetic overlays on renders, even round-tripped through the generator's VAE,
do not look like what the generator makes: its shapes are soft blobs, its
backgrounds carry smudges, and the stock-photo band it learned from its
training data comes out blurred and partial.  A probe trained on overlays
alone ranks generations by "how generated" as much as by the mark
(docs/audit-calibration.md).  In the shapes world the exact answer for any
image is known (``bench.world.detect_watermark``), so the probe can also learn
from the generator's own images, as the "planted" option lets it learn from
the corpus' own mark:

* prompts: captions of shapes-laion ``train`` rows (never the ``shapes-audit``
  prompt set the calibration measures on, though the corpus' iconic poster
  captions are among its rows), half of them from rows carrying the corpus'
  watermark (whose captions carry the stock-photo cue), half from clean rows,
  a seeded choice;
* images: one per caption from ``model`` at ``GENERATED_STEPS`` steps and
  guidance ``GENERATED_GUIDANCE``, run seed ``GENERATED_SEED`` (the
  calibration uses run seeds 1 and 2, ``audit.calibration.config.SPLIT_SEEDS``),
  generated once into the user cache (``watermark-generated/``) and resumed;
* labels: ``detect_watermark(image) >= WATERMARK_THRESHOLD``.

Only for the shapes world: elsewhere nothing labels a generation.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Iterator

import numpy as np

from bench.errors import UserError

log = logging.getLogger("t2i_audit")

#: Run seed of the training generations (not a calibration split seed: those are 1 and 2).
GENERATED_SEED = 0
GENERATED_STEPS = 20
GENERATED_GUIDANCE = 7.5
#: Share of the captions taken from watermarked train rows.
MARKED_SHARE = 0.5


def training_captions(n: int, corpus_rows: int, seed: int) -> list[dict]:
    """``n`` shapes-laion train-row captions (``MARKED_SHARE`` of them from watermarked rows), seeded."""
    from bench.world import build_corpus

    corpus = build_corpus(corpus_rows, seed=0)
    train = corpus[corpus["split"] == "train"]
    marked, clean = train[train["has_watermark"]], train[~train["has_watermark"]]
    n_marked = int(round(MARKED_SHARE * n))
    if len(marked) < n_marked or len(clean) < n - n_marked:
        raise UserError(f"shapes-laion with {corpus_rows} rows has too few train rows for {n} generated examples; "
                        "lower the number of generated examples")
    rng = np.random.default_rng([seed, 11])
    rows = [marked.iloc[i] for i in np.sort(rng.choice(len(marked), n_marked, replace=False))]
    rows += [clean.iloc[i] for i in np.sort(rng.choice(len(clean), n - n_marked, replace=False))]
    return [{"id": f"gen{i:05d}", "prompt": str(r["caption"]), "category": "marked" if r["has_watermark"] else "clean"}
            for i, r in enumerate(rows)]


def generated_run(model: str, n: int, corpus_rows: int, seed: int, progress: bool = True,
                  cache_root: str | Path | None = None) -> Path:
    """Generate (or resume) the training generations; returns the run directory."""
    from bench.cache import cache_dir
    from bench.generate import generate
    from bench.runspec import RunSpec

    from audit.probes.watermark.vae import model_digest

    root = Path(cache_root) if cache_root is not None else cache_dir() / "watermark-generated"
    folder = root / f"{model.replace(':', '-').replace('/', '_')}__{model_digest(model)}__n{n}__r{corpus_rows}__s{seed}"
    folder.mkdir(parents=True, exist_ok=True)
    prompts = folder / "prompts.jsonl"
    if not prompts.is_file():
        from bench.atomic import atomic_write_text

        atomic_write_text(prompts, "".join(json.dumps(c) + "\n" for c in training_captions(n, corpus_rows, seed)))
    run = folder / "run"
    log.info("watermark probe: %d training generations of %s in %s", n, model, run)
    generate(RunSpec(out=str(run), model=model, prompts=str(prompts), images_per_prompt=1, steps=GENERATED_STEPS,
                     guidance=(GENERATED_GUIDANCE,), seed=GENERATED_SEED, batch_size=16), progress=progress)
    return run


def generated_examples(model: str, n: int, corpus_rows: int, seed: int, first_group: int,
                       progress: bool = True) -> Iterator[tuple[np.ndarray, int, int]]:
    """(image, label by the exact detector, group) of the training generations; groups from ``first_group``."""
    from PIL import Image

    from audit.probes.base import load_run_samples
    from bench.world import detect_watermark
    from bench.world.detect import WATERMARK_THRESHOLD

    run = generated_run(model, n, corpus_rows, seed, progress)
    for i, rel in enumerate(load_run_samples(run)["path"]):
        image = np.asarray(Image.open(run / rel).convert("RGB"))
        yield image, int(detect_watermark(image) >= WATERMARK_THRESHOLD), first_group + i
