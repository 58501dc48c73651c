"""Images of every mode given to `t2i-bench import`: stored as the right 8-bit RGB, and every conversion counted."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
from PIL import Image

from bench import contract as C
from bench.cli import main

RED = (255, 0, 0)


def _images(folder):
    """(file name, writer, expected top-left RGB, expected conversion note fragment)."""
    frames = [Image.new("RGB", (16, 16), c) for c in (RED, (0, 255, 0))]
    return [
        ("cmyk.jpg", lambda p: Image.new("CMYK", (16, 16), (0, 255, 255, 0)).save(p), RED, "CMYK -> RGB"),
        ("palette.png", lambda p: Image.new("RGB", (16, 16), RED).convert("P").save(p), RED, "P -> RGB"),
        ("gray_alpha.png", lambda p: Image.new("LA", (16, 16), (100, 50)).save(p), (100, 100, 100),
         "LA -> RGB (alpha dropped)"),
        ("bilevel.png", lambda p: Image.new("1", (16, 16), 1).save(p), (255, 255, 255), "1 -> RGB"),
        ("gray16.png", lambda p: Image.fromarray(np.full((16, 16), 40000, np.uint16)).save(p), (156, 156, 156),
         "16-bit scaled to 8-bit"),
        ("animated.gif", lambda p: frames[0].save(p, save_all=True, append_images=frames[1:], duration=50), RED,
         "animated (2 frames) -> first frame"),
        ("animated.webp", lambda p: frames[0].save(p, save_all=True, append_images=frames[1:], duration=50,
                                                   lossless=True), RED, "animated (2 frames) -> first frame"),
    ]


def test_every_image_mode_is_imported_as_the_right_rgb(tmp_path, capsys):
    folder = tmp_path / "imgs"
    folder.mkdir()
    cases = _images(folder)
    with open(tmp_path / "files.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["file", "prompt"])
        for name, write, _, _ in cases:
            write(folder / name)
            writer.writerow([name, f"a picture saved as {name}"])
    assert main(["import", str(folder), "--prompts", str(tmp_path / "files.csv"), "--model-name", "modes",
                 "--out", str(tmp_path / "run")]) == 0
    run = tmp_path / "run"
    samples = C.read_table(run, C.SAMPLES_TABLE).sort_values("prompt_id")
    assert len(samples) == len(cases)
    by_prompt = dict(zip(samples.prompt, samples.path))
    for name, _, expected, _ in cases:
        stored = Image.open(run / by_prompt[f"a picture saved as {name}"])
        assert stored.mode == "RGB", name
        assert tuple(np.asarray(stored)[0, 0]) == pytest.approx(expected, abs=2), name
    converted = json.loads((run / C.MANIFEST).read_text())["converted"]
    notes = " | ".join(f"{k} x{v}" for k, v in converted.items())
    for _, _, _, fragment in cases:
        assert fragment in notes, (fragment, notes)
    assert sum(converted.values()) == len(cases)
