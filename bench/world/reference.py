"""Reference images for the built-in world: exact renders of each prompt's spec.

In the shapes world the "real" images a generator should match are renders of
scenes that satisfy its prompts, so FD/KID/precision/recall of a run are taken
against ``render_reference(...)`` of the same prompt set.
"""

from __future__ import annotations

import zlib
from pathlib import Path

from bench.atomic import atomic_write_bytes
from bench.errors import UserError


def render_reference(prompt_set, out: str | Path, images_per_prompt: int = 4, seed: int = 0, size: int = 64) -> int:
    """Write ``<out>/<prompt id>_<k>.png`` for every prompt with a spec; returns how many."""
    import io

    from bench.world.render import render
    from bench.world.sample import scene_for_prompt_spec

    out = Path(out)
    prompts = [p for p in prompt_set.prompts if p.spec is not None]
    if not prompts:
        raise UserError(f"prompt set '{prompt_set.name}' has no specs to render; use the 'shapes' prompt set")
    count = 0
    for p in prompts:
        for k in range(images_per_prompt):
            target = out / f"{p.id}_{k}.png"
            if target.exists():
                count += 1
                continue
            # A per-image seed from (seed, prompt id, k): stable whatever else is rendered.
            scene = scene_for_prompt_spec(p.spec, seed=zlib.crc32(f"{seed}/{p.id}/{k}".encode()))
            buf = io.BytesIO()
            render(scene, size=size).save(buf, format="PNG")
            atomic_write_bytes(target, buf.getvalue())
            count += 1
    return count
