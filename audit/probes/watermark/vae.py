"""Training images through a generator's own VAE: encode, then decode.

A probe trained on crisp renders (or photos) learns, besides the mark, what
"not generated" looks like, and then calls every generation marked: on
``builtin:shapes-ldm`` generations the renders-only probe flagged 0.58-0.94 of
the images of prompts whose exact watermark rate is 0.03 (docs/audit-calibration.md).
A latent diffusion model's images all leave through its VAE decoder, so
round-tripping every training image, the clean one and its marked twin alike,
through that VAE gives both classes the generator's texture, and the only
difference left to learn is the mark.

``load_vae(ref)`` loads the VAE of any model reference ``bench.models.loader``
accepts (the ``vae`` folder of a diffusers pipeline directly, else the whole
pipeline's ``.vae``); ``vae_digest(ref)`` names its exact weights (part of the
probe's cache digest); ``roundtrip(images, vae)`` is the round trip of a batch
(the latent distribution's mean, so it is deterministic);
``roundtrip_examples`` applies it to the probe's (image, label, group) stream.
"""

from __future__ import annotations

import hashlib
from functools import lru_cache
from typing import Iterable, Iterator

import numpy as np

from bench.errors import UserError

#: Images per VAE call.
VAE_BATCH = 64


def _vae_folder(ref: str):
    """(resolved model, the pipeline's ``vae`` folder or None)."""
    from bench.models.loader import resolve_model

    resolved = resolve_model(ref)
    folder = resolved.path / "vae" if resolved.path.is_dir() else None
    return resolved, folder if folder is not None and (folder / "config.json").is_file() else None


@lru_cache(maxsize=8)
def vae_digest(ref: str) -> str:
    """16 hex digits of sha256 over the VAE's weight and config files (the whole model's for a
    single-file checkpoint, whose VAE is not a separate file)."""
    from bench.cache import cached_sha256_file
    from bench.models.loader import WEIGHT_SUFFIXES, weights_sha256

    resolved, folder = _vae_folder(ref)
    if folder is None:
        return weights_sha256(resolved)[:16]
    h = hashlib.sha256()
    for f in sorted(p for p in folder.rglob("*") if p.is_file() and (p.suffix in WEIGHT_SUFFIXES or p.suffix == ".json")):
        h.update(f"{f.relative_to(folder).as_posix()}\0{cached_sha256_file(f)}\n".encode())
    return h.hexdigest()[:16]


@lru_cache(maxsize=8)
def model_digest(ref: str) -> str:
    """16 hex digits of ``bench.models.loader.weights_sha256`` of model ``ref`` (every weight and config file)."""
    from bench.models.loader import resolve_model, weights_sha256

    return weights_sha256(resolve_model(ref))[:16]


@lru_cache(maxsize=2)
def load_vae(ref: str):
    """The VAE (float32, CPU, eval mode) of model ``ref``; a one-line UserError when it has none."""
    from bench.models.loader import load_pipeline, quiet_libraries

    resolved, folder = _vae_folder(ref)
    if folder is not None:
        from diffusers import AutoencoderKL

        try:
            with quiet_libraries():
                vae = AutoencoderKL.from_pretrained(str(folder))
        except Exception as exc:
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
            raise UserError(f"could not load the VAE of '{ref}' ({folder}): {first}") from exc
    else:
        vae = getattr(load_pipeline(resolved), "vae", None)
        if vae is None:
            raise UserError(f"model '{ref}' has no VAE to round-trip the probe's training images through; "
                            "pass --probe-vae none")
    return vae.float().eval()


def roundtrip(images: list[np.ndarray], vae) -> list[np.ndarray]:
    """Encode and decode same-sized HWC uint8 images; sides that are not a multiple of 8 are
    edge-padded for the VAE and cropped back."""
    import torch

    h, w = images[0].shape[:2]
    ph, pw = -h % 8, -w % 8
    batch = np.stack([np.pad(im, ((0, ph), (0, pw), (0, 0)), mode="edge") if ph or pw else im for im in images])
    x = torch.from_numpy(batch).permute(0, 3, 1, 2).float().div(127.5).sub(1.0)
    with torch.inference_mode():
        out = vae.decode(vae.encode(x).latent_dist.mode()).sample
    out = out.clamp(-1, 1).add(1).mul(127.5).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()
    return [np.ascontiguousarray(o[:h, :w]) for o in out]


def roundtrip_examples(examples: Iterable[tuple[np.ndarray, int, int]], vae,
                       batch_size: int = VAE_BATCH) -> Iterator[tuple[np.ndarray, int, int]]:
    """The (image, label, group) stream with every image round-tripped, order kept; consecutive
    images of one size share a VAE call."""
    pending: list[tuple[np.ndarray, int, int]] = []

    def flush():
        out = roundtrip([p[0] for p in pending], vae)
        done = [(o, label, group) for o, (_, label, group) in zip(out, pending)]
        pending.clear()
        return done

    for image, label, group in examples:
        image = np.asarray(image)
        if image.ndim != 3 or image.shape[2] != 3:
            raise UserError(f"probe training image has shape {image.shape}; expected an RGB image")
        if pending and (len(pending) == batch_size or pending[0][0].shape != image.shape):
            yield from flush()
        pending.append((image, label, group))
    if pending:
        yield from flush()
