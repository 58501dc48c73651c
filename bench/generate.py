"""Batched, resumable, deterministic generation into a run directory.

Determinism: every image's noise comes from its own CPU ``torch.Generator``
seeded by ``rundir.image_seed(run seed, prompt id, sample index)``; the list of
generators is handed to the diffusers pipeline, which draws each image's initial
latents (and any ancestral-sampler noise) from its own generator.  So an image
does not depend on which other images share its batch, nor on the device.

Resume: batches are a fixed partition of the work (per guidance scale, in plan
order), so a resumed run recomputes an interrupted batch with exactly the same
companions and writes only the images that are missing.  PNGs are written
atomically, so a kill leaves whole files or none; an existing PNG that does not
decode (truncated or emptied by something else) counts as missing and is made
again, with a warning.  A damaged ``samples.parquet`` is rebuilt from the image
file names.
"""

from __future__ import annotations

import io
import logging
import re
import time
from dataclasses import dataclass
from pathlib import Path

from bench import contract as C
from bench import distributed, rundir, runlock
from bench.atomic import atomic_write_bytes, remove_stale_temp_files
from bench.errors import UserError
from bench.runspec import GUIDANCE_FORMULATIONS, RunSpec, cfg_scale

log = logging.getLogger("t2i_audit")


@dataclass(frozen=True)
class WorkItem:
    prompt_id: str
    prompt: str
    category: str
    sample_index: int
    guidance: float
    seed: int

    @property
    def relpath(self) -> str:
        return rundir.image_relpath(self.prompt_id, self.sample_index, self.guidance)


@dataclass(frozen=True)
class GenerateResult:
    run_dir: Path
    n_images: int
    n_generated: int
    seconds: float
    truncated_prompts: int


def build_plan(prompts, spec: RunSpec) -> list[WorkItem]:
    """All images of the run, ordered guidance -> prompt -> sample."""
    return [
        WorkItem(p.id, p.prompt, p.category, k, float(g), rundir.image_seed(spec.seed, p.id, k))
        for g in spec.guidance
        for p in prompts
        for k in range(spec.images_per_prompt)
    ]


def plan_batches(plan: list[WorkItem], batch_size: int) -> list[list[WorkItem]]:
    """Fixed chunks within each guidance scale (a pipeline call takes one scale)."""
    batches: list[list[WorkItem]] = []
    for g in dict.fromkeys(item.guidance for item in plan):
        group = [item for item in plan if item.guidance == g]
        batches += [group[i : i + batch_size] for i in range(0, len(group), batch_size)]
    return batches


def count_truncated(tokenizer, prompts: list[str]) -> set[str]:
    """Prompts longer than the text encoder's context (77 tokens for CLIP)."""
    limit = getattr(tokenizer, "model_max_length", None)
    if not limit or limit > 100_000:
        return set()
    ids = tokenizer(list(prompts), truncation=False).input_ids
    return {p for p, t in zip(prompts, ids) if len(t) > limit}


def default_image_size(pipe) -> tuple[int | None, int | None]:
    unet = getattr(pipe, "unet", None)
    factor = getattr(pipe, "vae_scale_factor", None)
    if unet is None or factor is None:
        return None, None
    side = unet.config.sample_size * factor
    return side, side


def png_bytes(image) -> bytes:
    buf = io.BytesIO()
    image.convert("RGB").save(buf, format="PNG")
    return buf.getvalue()


def run_batch(pipe, batch: list[WorkItem], spec: RunSpec, height: int | None, width: int | None) -> list:
    """One pipeline call for a batch of one guidance scale; each image gets its own CPU generator."""
    import torch

    kwargs = dict(
        prompt=[i.prompt for i in batch],
        num_inference_steps=spec.steps,
        guidance_scale=cfg_scale(batch[0].guidance, spec.guidance_formulation),
        generator=[torch.Generator("cpu").manual_seed(i.seed) for i in batch],
        output_type="pil",
    )
    if height:
        kwargs.update(height=height, width=width)
    if spec.negative_prompt:
        kwargs["negative_prompt"] = [spec.negative_prompt] * len(batch)
    with torch.inference_mode():
        return pipe(**kwargs).images


def generate(spec: RunSpec, progress: bool = True) -> GenerateResult:
    """Generate every missing image of ``spec`` into ``spec.out`` and finish the run directory.

    Launched as several processes (torchrun, accelerate launch: docs/scale.md), the fixed batches of
    the plan are split between them (``bench.distributed``): each rank writes its own images, and rank 0,
    which alone holds the run's lock (``bench.runlock``), writes the samples table and the manifest
    once every rank is done.  The images are those one process makes, byte for byte.
    """
    from bench.models.loader import pick_device

    try:  # every rank meets these refusals on its own: rank 0 prints them
        spec.validate()
        processes = distributed.setup(pick_device(spec.device))
    except UserError as exc:
        exc.quiet = getattr(exc, "quiet", False) or distributed.env_rank() != 0
        raise
    run_dir = Path(spec.out)
    with processes.quiet_logs():
        try:
            if processes.is_main:  # the other ranks never look at a run directory rank 0 may be creating
                rundir.check_not_foreign(run_dir)
                rundir.check_writable_target(run_dir)
            with runlock.run_lock(run_dir, "t2i-bench generate", enabled=processes.is_main):
                return _generate(spec, progress, processes)
        except UserError as exc:
            processes.fail(exc)  # before the ranks have met: all of them stop, the error is printed once
            raise


def _process_device(device: str, requested: str, processes: distributed.Processes) -> str:
    """Each rank of a multi-GPU run on its own GPU (cuda:<local rank>) unless a device was named."""
    if processes.multi and device.startswith("cuda") and requested in ("auto", "cuda") and processes.device:
        return processes.device
    return device


def _kill_hook(rank: int, written: int) -> None:
    """Tests only: T2I_AUDIT_TEST_KILL=<rank>:<n> SIGKILLs that rank after it wrote n images (a crash mid-run)."""
    import os
    import signal

    target = os.environ.get("T2I_AUDIT_TEST_KILL", "")
    if target and target == f"{rank}:{written}":
        os.kill(os.getpid(), signal.SIGKILL)


def _generate(spec: RunSpec, progress: bool, processes: distributed.Processes) -> GenerateResult:
    import diffusers
    from tqdm.auto import tqdm

    from bench.models.loader import load_pipeline, pick_device, quiet_libraries, resolve_model, weights_sha256
    from bench.prompts import load_prompt_set

    run_dir = Path(spec.out)
    full_set = load_prompt_set(spec.prompts)
    prompt_set = full_set.subset(list(spec.categories) or None, spec.per_category)
    scheduler_name = spec.scheduler_class_name()
    device = _process_device(pick_device(spec.device), spec.device, processes)
    resolved = resolve_model(spec.model)
    pipe = load_pipeline(resolved, spec.dtype, device)
    if scheduler_name:
        pipe.scheduler = getattr(diffusers, scheduler_name).from_config(pipe.scheduler.config)
    default_h, default_w = default_image_size(pipe)
    height, width = spec.height or default_h, spec.width or default_w

    # Every setting that changes the pixels; batch size and the image list do not.
    identity = {
        "model": resolved.ref,
        "weights_sha256": weights_sha256(resolved),
        "pipeline_class": type(pipe).__name__,
        "scheduler": type(pipe.scheduler).__name__,
        "steps": spec.steps,
        "guidance_formulation": spec.guidance_formulation,
        "negative_prompt": spec.negative_prompt,
        "seed": spec.seed,
        "dtype": spec.dtype,
        "device_type": device.split(":")[0],
        "height": height,
        "width": width,
        "prompt_set": f"{prompt_set.name}@{prompt_set.version}#{prompt_set.sha256}",
    }
    rundir.check_same_identity(run_dir, identity)
    if processes.is_main:  # the other ranks write nothing before they have met rank 0 (processes.sync below)
        rundir.prepare_run_dir(run_dir)
        remove_stale_temp_files(run_dir / rundir.IMAGES)
        remove_stale_temp_files(run_dir)

    plan = build_plan(prompt_set.prompts, spec)
    with quiet_libraries():  # the tokenizer's "sequence is longer" warning: counted in one line below instead
        truncated = count_truncated(pipe.tokenizer, [p.prompt for p in prompt_set.prompts])
    if truncated:
        limit = pipe.tokenizer.model_max_length
        log.warning(
            "%d of %d prompts are longer than the text encoder's %d tokens and are truncated to it",
            len(truncated), len(prompt_set.prompts), limit,
        )

    old_manifest = rundir.read_manifest(run_dir) or {}
    manifest = {
        "run": run_dir.name,
        "created": old_manifest.get("created", rundir.now_iso()),
        "updated": rundir.now_iso(),
        "identity": identity,
        "model": {"ref": resolved.ref, "kind": resolved.kind, "path": str(resolved.path),
                  "weights_sha256": identity["weights_sha256"]},
        "pipeline_class": identity["pipeline_class"],
        "scheduler": identity["scheduler"],
        "scheduler_config": dict(pipe.scheduler.config),
        "steps": spec.steps,
        "guidance": sorted(set(old_manifest.get("guidance", [])) | set(spec.guidance)),
        "guidance_formulation": spec.guidance_formulation,
        "guidance_formula": GUIDANCE_FORMULATIONS[spec.guidance_formulation],
        "images_per_prompt": max(spec.images_per_prompt, old_manifest.get("images_per_prompt", 0)),
        "seed": spec.seed,
        "seeding": "per image: CPU torch.Generator seeded with sha256(f'{seed}/{prompt_id}/{sample_index}')[:8]",
        "negative_prompt": spec.negative_prompt,
        "dtype": spec.dtype,
        "device": device,
        "height": height,
        "width": width,
        "batch_size": spec.batch_size,
        "num_processes": processes.num_processes,
        "prompt_set": {"name": prompt_set.name, "version": prompt_set.version, "sha256": prompt_set.sha256,
                       "subset": prompt_set.selection, "source": prompt_set.source, "license": prompt_set.license,
                       "n_prompts": len(prompt_set.prompts)},
        "truncated_prompts": len(truncated),
        "packages": rundir.package_versions(),
        "git": rundir.git_state(),
        "complete": False,
    }
    if processes.is_main:
        rundir.write_json(run_dir / rundir.MANIFEST, manifest)

    # The samples table of earlier calls: a damaged one is rebuilt from the images, never a traceback.
    try:
        old_rows = rundir.read_samples(run_dir).to_dict("records")
    except C.ContractError as exc:
        old_rows = rows_from_images(run_dir, full_set, spec, width, height, pipe.tokenizer)
        log.warning("%s; rebuilt %s from the %d images in %s/", str(exc).rstrip(". "), C.SAMPLES, len(old_rows),
                    rundir.IMAGES)

    # Resume: an image that exists but does not decode (truncated, 0 bytes) is generated again.
    undecodable = find_undecodable([run_dir / i.relpath for i in plan if (run_dir / i.relpath).exists()])
    if undecodable:
        path, reason = next(iter(undecodable.items()))
        log.warning("%d existing image(s) do not decode (e.g. %s: %s); generating them again",
                    len(undecodable), Path(path).relative_to(run_dir).as_posix(), reason)

    def missing(item: WorkItem) -> bool:
        path = run_dir / item.relpath
        return not path.exists() or path in undecodable

    todo = [b for b in plan_batches(plan, spec.batch_size) if any(missing(i) for i in b)]
    n_missing = sum(missing(i) for b in todo for i in b)
    processes.sync()  # every rank is ready (or all stop with the first rank's error); rank 0 has prepared the run
    start = time.perf_counter()
    written = 0
    # Each rank takes its contiguous share of the fixed batches: the same batches one process would run.
    # quiet_libraries: the text encoder's per-batch truncation warnings are counted in one line instead.
    with processes.split(todo) as mine, quiet_libraries(), tqdm(
            total=sum(missing(i) for b in mine for i in b), unit="img",
            desc="generate" if not processes.multi else f"generate (rank 0's share, {processes.num_processes} ranks)",
            disable=not progress or not processes.is_main, dynamic_ncols=True) as bar:
        for batch in mine:
            images = run_batch(pipe, batch, spec, height, width)
            for item, image in zip(batch, images):
                if missing(item):
                    atomic_write_bytes(run_dir / item.relpath, png_bytes(image))
                    undecodable.pop(run_dir / item.relpath, None)
                    bar.update(1)
                    written += 1
                    _kill_hook(processes.rank, written)
    processes.wait()  # rank 0 writes the tables when every rank's images are on disk
    seconds = time.perf_counter() - start
    if not processes.is_main:
        return GenerateResult(run_dir, len(plan), n_missing, seconds, len(truncated))

    rows = {r["image_id"]: r for r in old_rows}
    for item in plan:
        rows[Path(item.relpath).stem] = sample_row(item, spec, width, height, item.prompt in truncated)
    rundir.write_samples(run_dir, list(rows.values()))
    complete = all((run_dir / r["path"]).exists() for r in rows.values())
    C.update_summary(run_dir, {
        "run": run_dir.name,
        "model": resolved.ref,
        "prompt_set": f"{prompt_set.name}@{prompt_set.version}",
        "n_images": len(rows),
        "n_prompts": len({r["prompt_id"] for r in rows.values()}),
        "guidance": manifest["guidance"],
        "truncated_prompts": len(truncated),
        "complete": complete,
    })
    manifest["complete"] = complete
    rundir.write_json(run_dir / rundir.MANIFEST, manifest)
    return GenerateResult(run_dir, len(rows), n_missing, seconds, len(truncated))


def sample_row(item: WorkItem, spec: RunSpec, width, height, truncated: bool) -> dict:
    """The samples.parquet row of one image."""
    return {
        "image_id": Path(item.relpath).stem, "prompt_id": item.prompt_id, "prompt": item.prompt,
        "category": item.category, "sample_index": item.sample_index, "seed": item.seed,
        "guidance": item.guidance, "cfg_scale": cfg_scale(item.guidance, spec.guidance_formulation),
        "path": item.relpath, "width": width, "height": height, "truncated": truncated,
    }


def find_undecodable(paths: list[Path]) -> dict[Path, str]:
    """The images among ``paths`` that do not decode (truncated, empty, not an image), with the reason.

    Every pixel is decoded: a truncated PNG opens fine and fails only in ``load()``.
    """
    from PIL import Image

    bad = {}
    for path in paths:
        try:
            with Image.open(path) as im:
                im.load()
        except Exception as exc:  # PIL raises OSError, SyntaxError, ValueError, UnidentifiedImageError...
            bad[path] = (str(exc).splitlines() or [type(exc).__name__])[0] or type(exc).__name__
    return bad


_IMAGE_NAME = re.compile(r"(?P<prompt>.+)__s(?P<sample>\d+)__g(?P<guidance>[^_]+)")


def rows_from_images(run_dir: Path, prompt_set, spec: RunSpec, width, height, tokenizer) -> list[dict]:
    """samples.parquet rows rebuilt from the file names in images/ (``rundir.image_id``), for a damaged table.

    Only images of this run's prompt set (every prompt of it, not only this call's subset) are listed;
    the run's identity (checked before) guarantees the seed, formulation and size are the ones they were made with.
    """
    from bench.models.loader import quiet_libraries

    by_id = {p.id: p for p in prompt_set.prompts}
    items = []
    for path in sorted((run_dir / rundir.IMAGES).glob("*.png")):
        m = _IMAGE_NAME.fullmatch(path.stem)
        if not m or m["prompt"] not in by_id:
            continue
        try:
            guidance = float(m["guidance"])
        except ValueError:
            continue
        p, k = by_id[m["prompt"]], int(m["sample"])
        item = WorkItem(p.id, p.prompt, p.category, k, guidance, rundir.image_seed(spec.seed, p.id, k))
        if item.relpath == f"{rundir.IMAGES}/{path.name}":
            items.append(item)
    with quiet_libraries():
        truncated = count_truncated(tokenizer, list(dict.fromkeys(i.prompt for i in items))) if items else set()
    return [sample_row(i, spec, width, height, i.prompt in truncated) for i in items]
