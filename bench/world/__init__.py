"""The built-in shapes world (docs/DESIGN.md §2): a world with known answers.

* ``vocab``     - SHAPES, COLOURS (name -> RGB), SIZES, RELATIONS, BACKGROUNDS,
  HELD_OUT_PAIRS and the relation rule.
* ``spec``      - frozen ``ObjectSpec`` / ``SceneSpec`` with to_dict/from_dict.
* ``sample``    - seeded non-overlapping placement, random scenes,
  ``scene_for_prompt_spec``.
* ``render``    - ``render(spec, size=64)``, the PIXSTOCK watermark.
* ``captions``  - the caption grammar (colours, counting, position, binding,
  size, misspellings, descriptive).
* ``detect``    - the exact detector ``detect`` and the judge ``check``.
* ``corpus``    - shapes-laion, the LAION-style corpus with planted phenomena.
* ``promptset`` - the ``shapes`` prompt set.

Pure numpy + Pillow + scipy (+ pandas/pyarrow for the corpus); no torch.
The corpus and prompt-set functions are imported on first use, so that
``import bench.world`` does not pull in pandas.
"""

from __future__ import annotations

from typing import Any

from bench.world.captions import caption, caption_for_spec, misspell, scene_prompt_spec
from bench.world.detect import (check, compare_scenes, detect, detect_objects, detect_watermark,
                                score_objects, validate_prompt_spec)
from bench.world.render import add_watermark, render
from bench.world.sample import (PlacementError, place_objects, random_scene, scene_for_prompt_spec,
                                scene_from_objects)
from bench.world.spec import ObjectSpec, SceneSpec
from bench.world.vocab import (BACKGROUNDS, COLOURS, HELD_OUT_PAIRS, RELATIONS, SHAPES, SIZES,
                               relation_between)

_LAZY = {
    "build_corpus": "bench.world.corpus",
    "render_row": "bench.world.corpus",
    "write_corpus": "bench.world.corpus",
    "load_corpus": "bench.world.corpus",
    "corpus_summary": "bench.world.corpus",
    "ROLES": "bench.world.corpus",
    "build_prompt_rows": "bench.world.promptset",
    "write_prompt_set": "bench.world.promptset",
}

__all__ = [
    "SHAPES", "COLOURS", "SIZES", "RELATIONS", "BACKGROUNDS", "HELD_OUT_PAIRS", "relation_between",
    "ObjectSpec", "SceneSpec", "render", "add_watermark",
    "random_scene", "scene_from_objects", "place_objects", "scene_for_prompt_spec", "PlacementError",
    "caption", "caption_for_spec", "misspell", "scene_prompt_spec",
    "detect", "detect_objects", "detect_watermark", "check", "score_objects",
    "validate_prompt_spec", "compare_scenes",
    *_LAZY,
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'bench.world' has no attribute {name!r}")
