"""One loader for every kind of model reference.

A model reference is one of:

* ``builtin:shapes-ldm`` (alias ``shapes-ldm``, the default): the built-in
  generator trained on the shapes world (``scripts/train_builtin_generator.py``,
  ``make builtin-models``), a standard ``StableDiffusionPipeline`` folder
  committed under ``bench/models/builtin/shapes-ldm``;
* ``builtin:shapes-ldm-memorized`` (alias ``shapes-ldm-memorized``): the same
  generator with a LoRA (``bench/models/builtin/shapes-ldm-memorized``, trained
  by ``scripts/train_memorized_lora.py`` on a duplicate-heavy mix) that makes it
  reproduce the corpus' iconic scenes: the copy audit's positive control.  It is
  loaded as users load theirs: the base pipeline, then ``load_lora_weights``;
* ``builtin:tiny-random`` (alias ``tiny-random``): the seeded random pipeline of
  ``bench.models.tiny``, built once into the user cache.  Its images are noise;
  it exists so tests run every stage in seconds.
* a local directory holding a diffusers pipeline (``model_index.json``);
* a single-file checkpoint (``.safetensors`` / ``.ckpt``), loaded with
  ``StableDiffusionPipeline.from_single_file``;
* a Hugging Face hub id (``org/name``), resolved through the local cache (and
  downloaded only when ``HF_HUB_OFFLINE`` is not set).

Every reference is first resolved to a local directory or file, then loaded with
the same ``from_pretrained`` call, so the built-in models exercise the code path
that real models take.  Every failure a user can fix is a one-line ``UserError``.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from bench.cache import cache_dir, cached_sha256_file
from bench.errors import UserError

BUILTIN_ALIASES = {
    "tiny-random": "builtin:tiny-random", "builtin:tiny-random": "builtin:tiny-random",
    "shapes-ldm": "builtin:shapes-ldm", "builtin:shapes-ldm": "builtin:shapes-ldm",
    "shapes-ldm-memorized": "builtin:shapes-ldm-memorized",
    "builtin:shapes-ldm-memorized": "builtin:shapes-ldm-memorized",
}
DEFAULT_MODEL = "builtin:shapes-ldm"
SHAPES_LDM_DIR = Path(__file__).resolve().parent / "builtin" / "shapes-ldm"
SHAPES_LDM_MEMORIZED_DIR = Path(__file__).resolve().parent / "builtin" / "shapes-ldm-memorized"
LORA_FILE = "pytorch_lora_weights.safetensors"  # diffusers' save_lora_weights name
SINGLE_FILE_SUFFIXES = (".safetensors", ".ckpt", ".pt", ".bin")
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".ckpt", ".pt", ".pth", ".onnx")
DTYPES = ("float32", "float16", "bfloat16")


@dataclass(frozen=True)
class ResolvedModel:
    ref: str          # what the user typed (normalised for built-ins)
    kind: str         # builtin | local | single_file | hub
    path: Path        # local directory or file that holds the weights
    lora: Path | None = None  # a LoRA folder loaded on top (``load_lora_weights``)


def _looks_like_path(ref: str) -> bool:
    return (
        ref.startswith((".", "/", "~"))
        or ref.endswith(SINGLE_FILE_SUFFIXES)
        or ref.count("/") > 1
        or os.sep == "\\" and "\\" in ref
    )


def hub_offline() -> bool:
    from huggingface_hub import constants

    return bool(constants.HF_HUB_OFFLINE)


@contextlib.contextmanager
def quiet_libraries() -> Iterator[None]:
    """Silence diffusers/transformers progress bars and per-batch warnings while generating,
    then put back the verbosity and progress-bar setting the caller had.

    Our own progress bar and one-line messages (e.g. the truncation count) replace them.
    """
    from diffusers.utils import logging as diffusers_logging
    from transformers.utils import logging as transformers_logging

    saved = [(lib, lib.get_verbosity(), lib.is_progress_bar_enabled()) for lib in (diffusers_logging, transformers_logging)]
    try:
        for lib, _, _ in saved:
            lib.set_verbosity_error()
            lib.disable_progress_bar()
        yield
    finally:
        for lib, verbosity, bars in saved:
            lib.set_verbosity(verbosity)
            (lib.enable_progress_bar if bars else lib.disable_progress_bar)()


def resolve_model(ref: str) -> ResolvedModel:
    """Turn a model reference into a local path, or raise a one-line UserError."""
    if BUILTIN_ALIASES.get(ref) in ("builtin:shapes-ldm", "builtin:shapes-ldm-memorized"):
        if not (SHAPES_LDM_DIR / "model_index.json").is_file():
            raise UserError(
                f"the built-in generator is missing ({SHAPES_LDM_DIR} has no model_index.json); "
                "run `make builtin-models` to train it, or pass --model builtin:tiny-random"
            )
        if BUILTIN_ALIASES[ref] == "builtin:shapes-ldm":
            return ResolvedModel("builtin:shapes-ldm", "builtin", SHAPES_LDM_DIR)
        if not (SHAPES_LDM_MEMORIZED_DIR / LORA_FILE).is_file():
            raise UserError(
                f"the memorizing variant's LoRA is missing ({SHAPES_LDM_MEMORIZED_DIR / LORA_FILE}); "
                "run `make builtin-models` (scripts/train_memorized_lora.py) to train it"
            )
        return ResolvedModel("builtin:shapes-ldm-memorized", "builtin", SHAPES_LDM_DIR, lora=SHAPES_LDM_MEMORIZED_DIR)
    if ref in BUILTIN_ALIASES:
        from bench.models.tiny import ensure_tiny_pipeline_dir

        return ResolvedModel(BUILTIN_ALIASES[ref], "builtin", ensure_tiny_pipeline_dir(cache_dir() / "models"))
    if ref.startswith("builtin:"):
        raise UserError(f"unknown built-in model '{ref}'; available: {', '.join(sorted(set(BUILTIN_ALIASES.values())))}")
    path = Path(ref).expanduser()
    if path.is_dir():
        if not (path / "model_index.json").exists():
            raise UserError(
                f"'{ref}' is a directory but not a diffusers pipeline (no model_index.json); "
                "pass a folder written by save_pretrained, or a single .safetensors checkpoint"
            )
        return ResolvedModel(ref, "local", path.resolve())
    if path.is_file():
        if path.suffix not in SINGLE_FILE_SUFFIXES:
            raise UserError(f"'{ref}' is a file but not a checkpoint; expected one of {', '.join(SINGLE_FILE_SUFFIXES)}")
        return ResolvedModel(ref, "single_file", path.resolve())
    if _looks_like_path(ref):
        raise UserError(f"model path '{ref}' does not exist; check the path, or pass a hub id such as 'org/model'")
    return ResolvedModel(ref, "hub", _download_hub_pipeline(ref))


def _download_hub_pipeline(repo_id: str) -> Path:
    from diffusers import DiffusionPipeline

    offline = hub_offline()
    try:
        return Path(DiffusionPipeline.download(repo_id, local_files_only=offline))
    except Exception as exc:  # hub errors come in many classes; all mean "not available"
        from huggingface_hub import constants

        if offline:
            raise UserError(
                f"model '{repo_id}' is not available offline: it is not in the Hugging Face cache "
                f"({constants.HF_HUB_CACHE}); run `hf download {repo_id}` where there is internet "
                "and copy the cache here, or pass a local pipeline directory"
            ) from exc
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UserError(f"could not fetch model '{repo_id}' from the hub: {first_line}") from exc


def weights_sha256(resolved: ResolvedModel) -> str:
    """A digest over every weight and config file, so results name the exact weights."""
    root = resolved.path
    files = [root] if root.is_file() else sorted(
        p for p in root.rglob("*") if p.is_file() and (p.suffix in WEIGHT_SUFFIXES or p.suffix == ".json")
    )
    h = hashlib.sha256()
    for f in files:
        rel = f.name if root.is_file() else f.relative_to(root).as_posix()
        h.update(f"{rel}\0{cached_sha256_file(f)}\n".encode())
    if resolved.lora is not None:  # the adapter changes the weights: it is part of the digest
        for f in sorted(p for p in resolved.lora.rglob("*") if p.is_file() and p.suffix in WEIGHT_SUFFIXES):
            h.update(f"lora/{f.relative_to(resolved.lora).as_posix()}\0{cached_sha256_file(f)}\n".encode())
    return h.hexdigest()


def torch_dtype(name: str):
    import torch

    if name not in DTYPES:
        raise UserError(f"unknown dtype '{name}'; use one of {', '.join(DTYPES)}")
    return getattr(torch, name)


def pick_device(name: str = "auto") -> str:
    """``auto`` picks cuda, then mps, then cpu; an explicit device must exist."""
    import torch

    if name == "auto":
        if torch.cuda.is_available():
            return "cuda"
        if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            return "mps"
        return "cpu"
    kind = name.split(":")[0]
    if kind == "cuda" and not torch.cuda.is_available():
        raise UserError(f"device '{name}' is not available (no CUDA GPU found); use --device auto or cpu")
    if kind == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise UserError(f"device '{name}' is not available (no Apple MPS); use --device auto or cpu")
    if kind not in ("cpu", "cuda", "mps"):
        raise UserError(f"unknown device '{name}'; use auto, cpu, cuda, cuda:N or mps")
    return name


def _dtype_kwarg() -> str:
    # Newer diffusers renamed `torch_dtype` to `dtype` (the old name warns); older ones only know `torch_dtype`.
    from diffusers.utils import deprecation_utils

    return "dtype" if hasattr(deprecation_utils, "_resolve_dtype") else "torch_dtype"


def load_pipeline(resolved: ResolvedModel, dtype: str = "float32", device: str = "cpu"):
    """Load a text-to-image pipeline from a resolved reference onto ``device``."""
    from diffusers import DiffusionPipeline, StableDiffusionPipeline

    if dtype == "float16" and device == "cpu":
        raise UserError("float16 is not supported for generation on the CPU; use --dtype float32 (or bfloat16)")
    kwargs = {_dtype_kwarg(): torch_dtype(dtype)}
    try:
        with quiet_libraries():
            if resolved.kind == "single_file":
                pipe = StableDiffusionPipeline.from_single_file(str(resolved.path), **kwargs)
            else:
                pipe = DiffusionPipeline.from_pretrained(str(resolved.path), **kwargs)
    except UserError:
        raise
    except Exception as exc:
        first_line = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]
        hint = (
            "a single-file checkpoint needs its diffusers config in the HF cache when offline; "
            "convert it with save_pretrained on a machine with internet"
            if resolved.kind == "single_file" else "check that the folder is a complete diffusers pipeline"
        )
        raise UserError(f"could not load model '{resolved.ref}': {first_line}; {hint}") from exc
    if resolved.lora is not None:
        try:
            with quiet_libraries():
                pipe.load_lora_weights(str(resolved.lora))
                pipe.fuse_lora()  # into the base weights: generation then costs what the base costs
                pipe.unload_lora_weights()  # the adapters are fused; drop their separate copies
        except Exception as exc:
            import importlib.util

            first_line = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]
            fix = ("install peft (pip install peft), which diffusers needs for LoRAs"
                   if importlib.util.find_spec("peft") is None
                   else "retrain it with `python scripts/train_memorized_lora.py`")
            raise UserError(f"could not load the LoRA of '{resolved.ref}' from {resolved.lora}: {first_line}; "
                            f"{fix}") from exc
    if not hasattr(pipe, "tokenizer") or getattr(pipe, "tokenizer", None) is None:
        raise UserError(f"model '{resolved.ref}' ({type(pipe).__name__}) has no text tokenizer; it is not a text-to-image pipeline")
    pipe.set_progress_bar_config(disable=True)
    return pipe.to(device)
