"""``t2i-bench import``: a folder of images + a prompt file -> a run directory.

This is how outputs of models we cannot run (an API, a paper's released samples)
enter every later metric and audit.  An image is matched to its prompt by

* a ``file`` (or ``image``) column in the prompt file naming it, or
* its file name: ``<prompt id>.<ext>`` or ``<prompt id>_<k>.<ext>`` (k = sample index).
"""

from __future__ import annotations

import re
import shutil
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from bench import contract as C
from bench import rundir
from bench.atomic import atomic_write_bytes
from bench.errors import UserError
from bench.features.images import ImageProblem, load_image
from bench.generate import png_bytes

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".webp", ".bmp", ".gif", ".tif", ".tiff"}
FILE_COLUMNS = ("file", "image", "path", "filename")


@dataclass(frozen=True)
class ImportResult:
    run_dir: Path
    n_images: int
    n_prompts: int


def _match_images(folder: Path, prompts) -> list[tuple[Path, object, int]]:
    files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    if not files:
        raise UserError(f"no images found in '{folder}' (looked for {', '.join(sorted(IMAGE_SUFFIXES))})")
    by_file = {}
    for p in prompts:
        for col in FILE_COLUMNS:
            if p.extra.get(col):
                by_file.setdefault(str(p.extra[col]), []).append(p)
    by_id = {p.id: p for p in prompts}
    matched, unmatched = [], []
    counters: dict[str, int] = {}
    for f in files:
        rel = f.relative_to(folder).as_posix()
        if rel in by_file or f.name in by_file:
            for p in by_file.get(rel) or by_file[f.name]:
                k = counters.get(p.id, 0)
                counters[p.id] = k + 1
                matched.append((f, p, k))
            continue
        m = re.fullmatch(r"(.+?)(?:_(\d+))?", f.stem)
        if f.stem in by_id:
            matched.append((f, by_id[f.stem], 0))
        elif m and m.group(1) in by_id:
            matched.append((f, by_id[m.group(1)], int(m.group(2) or 0)))
        else:
            unmatched.append(rel)
    if unmatched:
        raise UserError(
            f"{len(unmatched)} of {len(files)} images match no prompt (e.g. '{unmatched[0]}'); name images "
            "<prompt id>.png or <prompt id>_<k>.png, or add a 'file' column to the prompt file"
        )
    seen: dict[tuple[str, int], Path] = {}
    for f, p, k in matched:
        if (p.id, k) in seen:
            raise UserError(
                f"images '{seen[(p.id, k)].name}' and '{f.name}' both map to prompt '{p.id}' sample {k}; "
                "give them distinct _<k> suffixes"
            )
        seen[(p.id, k)] = f
    return matched


def _created_by_us(run_dir: Path) -> tuple[Path, bool] | None:
    """What a failed import must remove: (the outermost folder it is about to create, True), or (the --out
    folder, False) when it exists empty (only its content goes then); None when --out already holds a run."""
    run_dir = Path(run_dir).absolute()
    if run_dir.is_dir():
        return None if any(run_dir.iterdir()) else (run_dir, False)
    top = run_dir
    while not top.parent.exists():
        top = top.parent
    return top, True


def _clean_up(created: tuple[Path, bool] | None) -> None:
    if created is None:
        return
    folder, whole = created
    if whole:
        shutil.rmtree(folder, ignore_errors=True)
    elif folder.is_dir():  # existed empty: keep the folder, drop what this import put in it
        for child in folder.iterdir():
            shutil.rmtree(child, ignore_errors=True) if child.is_dir() else child.unlink(missing_ok=True)


def _read_image(f: Path) -> tuple[Image.Image, str | None]:
    """An image as 8-bit RGB: 16-bit grayscale scaled (v >> 8), not clipped at 255 as PIL's convert() does;
    refused in one line when unreadable, truncated or a decompression bomb."""
    try:
        arr, note = load_image(f)
    except ImageProblem as exc:
        if isinstance(exc.__cause__, Image.DecompressionBombError):  # refused from its header: nothing decoded
            pixels, limit = (re.search(pattern, str(exc)) for pattern in (r"\((\d+) pixels\)", r"limit of (\d+) pixels"))
            size = f"{int(pixels.group(1)) / 1e6:.0f} Mpixel" if pixels else "too many pixels"
            raise UserError(
                f"image '{f}' has {size}, over Pillow's decompression-bomb limit"
                + (f" of {int(limit.group(1)) / 1e6:.0f} Mpixel" if limit else "")
                + "; downscale it or remove it from the folder"
            ) from None
        raise UserError(f"cannot read image '{f}' ({exc}); remove or replace it") from None
    return Image.fromarray(arr, "RGB"), note


def _copy_images(matched, run_dir: Path) -> tuple[list[dict], set, Counter]:
    rundir.prepare_run_dir(run_dir)
    rows = []
    sizes = set()
    converted: Counter[str] = Counter()
    for f, p, k in matched:
        image, note = _read_image(f)
        if note:
            converted[note] += 1
        size = image.size
        sizes.add(size)
        rel = rundir.image_relpath(p.id, k, None)
        atomic_write_bytes(run_dir / rel, png_bytes(image))
        rows.append({
            "image_id": Path(rel).stem, "prompt_id": p.id, "prompt": p.prompt, "category": p.category,
            "sample_index": k, "seed": -1, "guidance": float("nan"), "cfg_scale": float("nan"),
            "path": rel, "width": size[0], "height": size[1], "truncated": False,
        })
    return rows, sizes, converted


def import_images(images_dir: str, prompts: str, model_name: str, out: str) -> ImportResult:
    from bench.prompts import load_prompt_set

    folder = Path(images_dir)
    if not folder.is_dir():
        raise UserError(f"image folder '{images_dir}' does not exist; pass the folder that holds the images")
    prompt_set = load_prompt_set(prompts)
    run_dir = Path(out)
    rundir.check_not_foreign(run_dir)
    rundir.check_writable_target(run_dir)
    identity = {"imported_from": str(folder.resolve()), "model": model_name,
                "prompt_set": f"{prompt_set.name}@{prompt_set.version}#{prompt_set.sha256}"}
    rundir.check_same_identity(run_dir, identity)
    matched = _match_images(folder, prompt_set.prompts)
    created = _created_by_us(run_dir)
    try:
        rows, sizes, converted = _copy_images(matched, run_dir)
        rundir.write_samples(run_dir, rows)
        manifest = {
            "run": run_dir.name, "created": rundir.now_iso(), "imported": True, "identity": identity,
            "model": {"ref": model_name, "kind": "imported", "weights_sha256": None},
            "source_folder": str(folder.resolve()), "guidance": [], "guidance_formulation": None,
            "prompt_set": {"name": prompt_set.name, "version": prompt_set.version, "sha256": prompt_set.sha256,
                           "subset": prompt_set.selection, "n_prompts": len(prompt_set.prompts)},
            "image_sizes": sorted(f"{w}x{h}" for w, h in sizes),
            "converted": dict(sorted(converted.items())),
            "packages": rundir.package_versions(), "git": rundir.git_state(), "complete": True,
        }
        rundir.write_json(run_dir / rundir.MANIFEST, manifest)
        n_prompts = len({r["prompt_id"] for r in rows})
        C.update_summary(run_dir, {
            "run": run_dir.name, "model": model_name, "prompt_set": f"{prompt_set.name}@{prompt_set.version}",
            "n_images": len(rows), "n_prompts": n_prompts, "guidance": [], "complete": True, "imported": True,
        })
    except BaseException:
        _clean_up(created)  # a failed first import leaves no half-written --out behind
        raise
    return ImportResult(run_dir, len(rows), n_prompts)
