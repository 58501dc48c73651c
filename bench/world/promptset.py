"""The ``shapes`` prompt set: compositional prompts with machine-readable specs.

``build_prompt_rows()`` returns the rows of ``prompt_sets/data/shapes.jsonl``
(deterministic: one numpy Generator seeded with ``PROMPT_SET_SEED``);
``write_prompt_set(dir)`` writes the jsonl and its ``shapes.yaml`` descriptor
(with the data file's sha256).  ``scripts/build_shapes_prompts.py`` is the
command-line wrapper; a test rebuilds into a temporary folder and compares
bytes with the committed files.

Each row is ``{"id": "shapes-0000", "prompt": ..., "category": ..., "spec": {...}}``
where ``spec`` is a prompt spec judged by ``bench.world.detect.check``.
Categories (and sizes): see ``CATEGORY_SIZES``.  Only ``held_out`` prompts
mention a ``HELD_OUT_PAIRS`` combination.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any, Callable

import numpy as np

from bench.world.captions import caption_for_spec, colour_caption
from bench.world.sample import allowed_pairs
from bench.world.vocab import BACKGROUNDS, HELD_OUT_PAIRS, RELATIONS, SIZES

PROMPT_SET_NAME = "shapes"
PROMPT_SET_VERSION = "1"
PROMPT_SET_SEED = 0
DATA_FILE = "data/shapes.jsonl"

CATEGORY_SIZES: dict[str, int] = {
    "single_object": 40,   # "a red circle"
    "colors": 40,          # "a circle coloured red"
    "counting": 48,        # "three blue squares", "two stars"
    "position": 48,        # "a red circle to the left of a green star"
    "binding": 40,         # "a red circle and a blue square"
    "size": 40,            # "a small yellow triangle", "a large red circle and a small blue star"
    "misspellings": 32,    # "a red cirle"
    "held_out": 24,        # HELD_OUT_PAIRS: 6 prompts per pair
    "descriptive": 32,     # "a picture showing a single large green star on a white background"
}

DESCRIPTION = ("Compositional prompts for the built-in shapes world: single objects, colours, "
               "counting, position, attribute binding, size, misspellings, held-out colour-shape "
               "combinations and long descriptions, each with a spec judged by "
               "bench.world.detect.check.")

_PAIRS = allowed_pairs(True)
_SIZE_NAMES = tuple(SIZES)


def _group(shape: str | None, colour: str | None, count: int = 1, size: str | None = None) -> dict:
    return {"shape": shape, "colour": colour, "count": count, "size": size}


def _spec(groups: list[dict], relation: dict | None = None, background: str | None = None) -> dict:
    spec: dict[str, Any] = {"objects": groups, "relation": relation}
    if background is not None:
        spec["background"] = background
    return spec


def _pick(rng: np.random.Generator, seq):
    return seq[int(rng.integers(len(seq)))]


def _two_pairs(rng, differ_both: bool, pairs=_PAIRS):
    while True:
        (c1, s1), (c2, s2) = _pick(rng, pairs), _pick(rng, pairs)
        if (c1, s1) != (c2, s2) and (not differ_both or (c1 != c2 and s1 != s2)):
            return (c1, s1), (c2, s2)


def _single_object(rng, i):
    c, s = _pick(rng, _PAIRS)
    spec = _spec([_group(s, c)])
    return caption_for_spec(spec, "single", i), spec


def _colors(rng, i):
    c, s = _pick(rng, _PAIRS)
    return colour_caption(s, c, i), _spec([_group(s, c)])


def _counting(rng, i):
    c, s = _pick(rng, _PAIRS)
    k = int(rng.integers(2, 5))
    colour = None if rng.random() < 0.25 else c  # some prompts count shapes of any colour
    spec = _spec([_group(s, colour, k)])
    return caption_for_spec(spec, "counting", i), spec


def _position(rng, i):
    (c1, s1), (c2, s2) = _two_pairs(rng, differ_both=False)
    spec = _spec([_group(s1, c1), _group(s2, c2)], {"type": _pick(rng, RELATIONS), "a": 0, "b": 1})
    return caption_for_spec(spec, "position", i), spec


def _binding(rng, i):
    (c1, s1), (c2, s2) = _two_pairs(rng, differ_both=True)
    spec = _spec([_group(s1, c1), _group(s2, c2)])
    return caption_for_spec(spec, "binding", i), spec


def _size(rng, i):
    if rng.random() < 0.5:
        c, s = _pick(rng, _PAIRS)
        spec = _spec([_group(s, c, 1, _pick(rng, _SIZE_NAMES))])
    else:
        (c1, s1), (c2, s2) = _two_pairs(rng, differ_both=False)
        big_first = rng.random() < 0.5
        spec = _spec([_group(s1, c1, 1, "large" if big_first else "small"),
                      _group(s2, c2, 1, "small" if big_first else "large")])
    return caption_for_spec(spec, "size", i), spec


def _misspellings(rng, i):
    _, spec = _pick(rng, (_single_object, _binding, _counting))(rng, i)
    return caption_for_spec(spec, "misspelling", i), spec


def _descriptive(rng, i):
    n_groups = int(rng.integers(1, 4))
    groups, total = [], 0
    for c, s in [_pick(rng, _PAIRS) for _ in range(n_groups)]:
        if any(g["shape"] == s and g["colour"] == c for g in groups):
            continue
        count = 1 if total >= 3 or rng.random() < 0.7 else 2
        groups.append(_group(s, c, count, None))
        total += count
    for g in groups:  # large objects only in sparse scenes, so they always fit
        g["size"] = _pick(rng, _SIZE_NAMES) if total <= 2 else "small"
    spec = _spec(groups, background=_pick(rng, BACKGROUNDS))
    return caption_for_spec(spec, "descriptive", i), spec


def _held_out_rows(rng) -> list[tuple[str, dict]]:
    """Six prompts per held-out (colour, shape) pair, the pair always group 0."""
    out = []
    for c, s in HELD_OUT_PAIRS:
        # Partners share neither colour nor shape with the held-out pair.
        other = [p for p in _PAIRS if p[0] != c and p[1] != s]
        (pc, ps), (bc, bs) = _pick(rng, other), _pick(rng, other)
        specs = [
            (_spec([_group(s, c)]), "single", 0),
            (_spec([_group(s, c)]), "single", 1),
            (_spec([_group(s, c, 2)]), "counting", 0),
            (_spec([_group(s, c, 1, _pick(rng, _SIZE_NAMES))]), "size", 0),
            (_spec([_group(s, c), _group(ps, pc)], {"type": _pick(rng, RELATIONS), "a": 0, "b": 1}),
             "position", 0),
            (_spec([_group(s, c), _group(bs, bc)]), "binding", 0),
        ]
        out += [(caption_for_spec(spec, style, v), spec) for spec, style, v in specs]
    return out


_GENERATORS: dict[str, Callable] = {
    "single_object": _single_object, "colors": _colors, "counting": _counting,
    "position": _position, "binding": _binding, "size": _size,
    "misspellings": _misspellings, "descriptive": _descriptive,
}


def build_prompt_rows(seed: int = PROMPT_SET_SEED) -> list[dict[str, Any]]:
    """All rows of the prompt set, in category order, prompts unique."""
    rng = np.random.default_rng(seed)
    rows: list[dict[str, Any]] = []
    seen: set[str] = set()
    for category, n in CATEGORY_SIZES.items():
        if category == "held_out":
            items = _held_out_rows(rng)
        else:
            items, i = [], 0
            while len(items) < n:
                text, spec = _GENERATORS[category](rng, i)
                i += 1
                if text not in seen and text not in {t for t, _ in items}:
                    items.append((text, spec))
                if i > 100 * n:
                    raise RuntimeError(f"could not draw {n} distinct {category} prompts")
        if len(items) != n:
            raise RuntimeError(f"{category}: built {len(items)} prompts, expected {n}")
        for text, spec in items:
            seen.add(text)
            rows.append({"id": f"shapes-{len(rows):04d}", "prompt": text,
                         "category": category, "spec": spec})
    return rows


def jsonl_bytes(rows: list[dict[str, Any]]) -> bytes:
    return "".join(json.dumps(r) + "\n" for r in rows).encode("utf-8")


def yaml_text(data_sha256: str) -> str:
    """The prompt-set descriptor, in the format the prompt-set loader reads."""
    return (f"name: {PROMPT_SET_NAME}\n"
            f"version: \"{PROMPT_SET_VERSION}\"\n"
            f"description: {json.dumps(DESCRIPTION)}\n"
            "source: \"generated by scripts/build_shapes_prompts.py (t2i-audit built-in world)\"\n"
            "license: \"Apache-2.0\"\n"
            f"data: {DATA_FILE}\n"
            f"sha256: {data_sha256}\n"
            "format: jsonl\n"
            "columns: {prompt: prompt, category: category}\n"
            "id_column: id\n"
            "spec_field: spec\n")


def _atomic_write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def write_prompt_set(out_dir: str | os.PathLike) -> tuple[Path, Path]:
    """Write ``<out_dir>/data/shapes.jsonl`` and ``<out_dir>/shapes.yaml``."""
    out = Path(out_dir)
    data = jsonl_bytes(build_prompt_rows())
    data_path = out / DATA_FILE
    yaml_path = out / f"{PROMPT_SET_NAME}.yaml"
    _atomic_write(data_path, data)
    _atomic_write(yaml_path, yaml_text(hashlib.sha256(data).hexdigest()).encode("utf-8"))
    return yaml_path, data_path
