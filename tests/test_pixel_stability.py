"""Pixel stability: one fixed-seed image per built-in model against committed values.

Like diffusers' own pipeline tests, each case generates one image and compares a
3x3 corner slice (bottom-right, all three channels) of the decoded float output
(``output_type="np"``, values in [0, 1]) against literals recorded here, with
tolerance 1e-3.  The image is made the way ``t2i-bench generate`` makes it:
``resolve_model`` -> ``load_pipeline`` -> ``build_plan`` (per-image seed) ->
``run_batch`` (the same pipeline call), at the ``generate`` defaults (20 steps,
guidance 7.5, seed 0, float32, the model's own scheduler and size) on the CPU.

A failure means the pixels moved: most often a torch/diffusers/transformers upgrade
(kernels, schedulers, and for ``builtin:tiny-random`` also the random weight
initialisation it is built from), otherwise a change to the built-in weights or to
the generation path.  Check that the change is expected, then paste the slice the
failure message prints.

Values recorded with torch 2.14.1+cu130, diffusers 0.42.1, transformers 5.24.0,
numpy 1.26.4 on x86_64 CPU (2 threads).
"""

from __future__ import annotations

import numpy as np
import pytest

from bench.generate import build_plan, default_image_size, run_batch
from bench.models.loader import load_pipeline, pick_device, resolve_model
from bench.prompts import Prompt
from bench.runspec import RunSpec

TOLERANCE = 1e-3
PROMPT = Prompt("pixel-0000", "a red circle to the left of a blue square", "stability")

# image[-3:, -3:, :] of the first (only) image; rows, then columns, then RGB.
EXPECTED = {
    "builtin:tiny-random": [
        [[0.696896, 0.370030, 0.489316], [0.609607, 0.329374, 0.499086], [0.543124, 0.384864, 0.480806]],
        [[0.582892, 0.440412, 0.520691], [0.516060, 0.396712, 0.468667], [0.510266, 0.443069, 0.469938]],
        [[0.633101, 0.532633, 0.555572], [0.593832, 0.528035, 0.544597], [0.549183, 0.514335, 0.476184]],
    ],
    # The corner is the shapes world's near-white background (values up to 1.0 are clipped).
    # Second version of the weights (issue 11: f4 VAE, 16x16 latents), recorded 2026-12-04.
    "builtin:shapes-ldm": [
        [[0.995905, 0.993507, 0.996077], [0.993788, 0.990676, 0.990885], [0.989897, 0.987674, 0.991345]],
        [[0.995006, 0.993651, 0.991847], [0.988339, 0.988822, 0.988226], [0.992856, 1.000000, 0.994006]],
        [[0.990958, 0.996048, 0.992646], [0.992918, 0.992305, 0.983160], [0.970795, 0.978402, 0.982732]],
    ],
}


class _FloatOutput:
    """The pipeline with ``output_type="np"``: run_batch's exact call, decoded floats instead of PIL."""

    def __init__(self, pipe):
        self.pipe = pipe

    def __call__(self, **kwargs):
        return self.pipe(**{**kwargs, "output_type": "np"})


def generate_one(model: str) -> np.ndarray:
    spec = RunSpec(out="unused", model=model, device="cpu").validate()
    pipe = load_pipeline(resolve_model(spec.model), spec.dtype, pick_device(spec.device))
    height, width = default_image_size(pipe)
    (item,) = build_plan([PROMPT], spec)
    (image,) = run_batch(_FloatOutput(pipe), [item], spec, height, width)
    return np.asarray(image, dtype=np.float64)


def _literal(a: np.ndarray) -> str:
    rows = ",\n".join(
        "        [" + ", ".join("[" + ", ".join(f"{v:.6f}" for v in px) + "]" for px in row) + "]" for row in a
    )
    return "[\n" + rows + ",\n    ]"


@pytest.mark.parametrize("model", list(EXPECTED))
def test_corner_slice_is_stable(model):
    image = generate_one(model)
    assert image.ndim == 3 and image.shape[2] == 3 and 0.0 <= image.min() and image.max() <= 1.0
    got = image[-3:, -3:, :]
    new = f"    {model!r}: {_literal(got)},"
    assert EXPECTED[model] is not None, f"no committed slice for {model}; record this one:\n{new}"
    diff = np.abs(got - np.asarray(EXPECTED[model])).max()
    assert diff < TOLERANCE, (
        f"{model}: the 3x3 corner slice moved by {diff:.2e} (tolerance {TOLERANCE:g}). "
        "A torch/diffusers upgrade (or a change to the built-in weights or the generation path) changed "
        "the pixels. If that is expected, update EXPECTED in tests/test_pixel_stability.py, and the "
        f"versions in its docstring, to:\n{new}"
    )
