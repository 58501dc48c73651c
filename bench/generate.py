"""Batched, resumable, deterministic generation into a run directory.

Determinism: every image's noise comes from its own CPU ``torch.Generator``
seeded by ``rundir.image_seed(run seed, prompt id, sample index)``; the list of
generators is handed to the diffusers pipeline, which draws each image's initial
latents (and any ancestral-sampler noise) from its own generator.  So an image
does not depend on which other images share its batch, nor on the device.

Resume: batches are a fixed partition of the work (per guidance scale, in plan
order), so a resumed run recomputes an interrupted batch with exactly the same
companions and writes only the images that are missing.  PNGs are written
atomically, so a kill leaves whole files or none.
"""

from __future__ import annotations

import io
import logging
import time
from dataclasses import dataclass
from pathlib import Path

from bench import contract as C
from bench import rundir
from bench.atomic import atomic_write_bytes, remove_stale_temp_files
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
    """Generate every missing image of ``spec`` into ``spec.out`` and finish the run directory."""
    import diffusers
    from tqdm.auto import tqdm

    from bench.models.loader import load_pipeline, pick_device, quiet_libraries, resolve_model, weights_sha256
    from bench.prompts import load_prompt_set

    spec.validate()
    run_dir = Path(spec.out)
    rundir.check_not_foreign(run_dir)
    rundir.check_writable_target(run_dir)
    prompt_set = load_prompt_set(spec.prompts).subset(list(spec.categories) or None, spec.per_category)
    scheduler_name = spec.scheduler_class_name()
    device = pick_device(spec.device)
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
        "prompt_set": {"name": prompt_set.name, "version": prompt_set.version, "sha256": prompt_set.sha256,
                       "subset": prompt_set.selection, "source": prompt_set.source, "license": prompt_set.license,
                       "n_prompts": len(prompt_set.prompts)},
        "truncated_prompts": len(truncated),
        "packages": rundir.package_versions(),
        "git": rundir.git_state(),
        "complete": False,
    }
    rundir.write_json(run_dir / rundir.MANIFEST, manifest)

    def missing(item: WorkItem) -> bool:
        return not (run_dir / item.relpath).exists()

    todo = [b for b in plan_batches(plan, spec.batch_size) if any(missing(i) for i in b)]
    n_missing = sum(missing(i) for b in todo for i in b)
    start = time.perf_counter()
    # quiet_libraries: the text encoder's per-batch truncation warnings are counted in one line instead.
    with quiet_libraries(), tqdm(total=n_missing, unit="img", desc="generate", disable=not progress,
                                 dynamic_ncols=True) as bar:
        for batch in todo:
            images = run_batch(pipe, batch, spec, height, width)
            for item, image in zip(batch, images):
                if missing(item):
                    atomic_write_bytes(run_dir / item.relpath, png_bytes(image))
                    bar.update(1)
    seconds = time.perf_counter() - start

    rows = {r["image_id"]: r for r in rundir.read_samples(run_dir).to_dict("records")}
    for item in plan:
        rows[Path(item.relpath).stem] = {
            "image_id": Path(item.relpath).stem, "prompt_id": item.prompt_id, "prompt": item.prompt,
            "category": item.category, "sample_index": item.sample_index, "seed": item.seed,
            "guidance": item.guidance, "cfg_scale": cfg_scale(item.guidance, spec.guidance_formulation),
            "path": item.relpath, "width": width, "height": height, "truncated": item.prompt in truncated,
        }
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
