"""LAION's own watermark detector as the visible-watermark probe: ``--probe-file watermark_model_v1.pt``.

LAION-5B's ``pwatermark`` comes from LAION-5B-WatermarkDetection: timm
``efficientnet_b3a`` (in timm 1.x ``efficientnet_b3``: the same layers and
tensor names) whose classifier is replaced by an MLP 1536 -> 625 -> ReLU ->
Dropout(0.3) -> 256 -> ReLU -> 2, applied to the image resized to 256 x 256 and
normalised with the ImageNet mean and std; ``pwatermark`` is the softmax of
class 0.  Its released weights are ``watermark_model_v1.pt``, a pickled torch
state dict.

Here the network's two logits are the "features" (``LaionWatermarkExtractor``,
cached per run as any extractor's) and the probe head is fixed: ``weight = [1, -1]``,
``bias = 0``, so ``sigmoid(l0 - l1)`` is exactly LAION's softmax of class 0,
flagged at LAION's own 0.5 (``LAION_THRESHOLD``: the cut-off of LAION's example
code, not a value measured here).

Loading a pickle can run arbitrary code, so a ``.pt`` file is refused unless
the user passes ``allow_pickle`` (``--allow-pickle``).  With it, the file is
read once with ``torch.load(weights_only=True)`` (plain tensors only), checked
against the architecture, and written as ``<file>.safetensors`` next to it (or,
where that folder is not writable, in the user cache under
``laion-watermark/``), with the sha256 of the ``.pt`` in its metadata.  Every
later use loads that safetensors file, without the flag.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Sequence

import numpy as np

from bench.errors import UserError

log = logging.getLogger("t2i_audit")

NAME = "laion-watermark-efficientnet-b3"
TIMM_ARCH = "efficientnet_b3"
SIZE = 256
MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)
#: LAION's example code flags pwatermark >= 0.5 (their cut-off, not measured here).
LAION_THRESHOLD = 0.5
PICKLE_SUFFIXES = (".pt", ".pth", ".bin", ".ckpt")


def build_model():
    """The detector's architecture with random weights (timm, no download)."""
    import timm
    import torch.nn as nn

    model = timm.create_model(TIMM_ARCH, pretrained=False, num_classes=2)
    model.classifier = nn.Sequential(
        nn.Linear(1536, 625), nn.ReLU(), nn.Dropout(p=0.3), nn.Linear(625, 256), nn.ReLU(), nn.Linear(256, 2))
    return model.eval()


def _check_state(state: dict, source: Path) -> dict:
    """``state`` as plain contiguous tensors when it fits the architecture exactly, else a UserError."""
    import torch

    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise UserError(f"{source} is not a state dict of tensors; expected LAION's watermark_model_v1.pt")
    state = {k.removeprefix("module."): v for k, v in state.items()}
    want = build_model().state_dict()
    missing, extra = sorted(set(want) - set(state)), sorted(set(state) - set(want))
    if missing or extra:
        what = f"missing {missing[0]}" if missing else f"unexpected {extra[0]}"
        raise UserError(f"{source} does not fit LAION's watermark detector ({TIMM_ARCH} + 2-class MLP head): {what} "
                        f"({len(missing)} missing, {len(extra)} unexpected tensors)")
    for k, v in want.items():
        if tuple(state[k].shape) != tuple(v.shape):
            raise UserError(f"{source} does not fit LAION's watermark detector: {k} has shape "
                            f"{tuple(state[k].shape)}, expected {tuple(v.shape)}")
    return {k: state[k].detach().to(torch.float32 if v.is_floating_point() else v.dtype).contiguous()
            for k, v in want.items()}


def converted_paths(pt: Path) -> list[Path]:
    """Where the safetensors copy of ``pt`` is looked for and written: next to it, then the user cache."""
    from bench.cache import cache_dir, cached_sha256_file

    return [pt.with_name(pt.name + ".safetensors"),
            cache_dir() / "laion-watermark" / f"{cached_sha256_file(pt)[:16]}.safetensors"]


def _converted(path: Path, pt_sha: str) -> bool:
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            return (f.metadata() or {}).get("source_sha256") == pt_sha
    except Exception:  # unreadable or foreign: convert again
        return False


def to_safetensors(pt: str | os.PathLike, allow_pickle: bool = False) -> Path:
    """The safetensors form of LAION detector weights ``pt``: the file itself when it is one, else its
    converted copy (made now, from the pickle, only with ``allow_pickle``)."""
    from bench.cache import cached_sha256_file

    pt = Path(pt)
    if not pt.is_file():
        raise UserError(f"probe file {pt} does not exist; pass LAION's watermark_model_v1.pt or its .safetensors")
    if pt.suffix == ".safetensors":
        return pt
    if pt.suffix not in PICKLE_SUFFIXES:
        raise UserError(f"probe file {pt} is neither a torch file ({', '.join(PICKLE_SUFFIXES)}) nor .safetensors")
    sha = cached_sha256_file(pt)
    for candidate in converted_paths(pt):
        if candidate.is_file() and _converted(candidate, sha):
            return candidate
    if not allow_pickle:
        raise UserError(f"{pt} is a pickled torch file, and loading a pickle can run code hidden in it; if you "
                        "trust it, pass --allow-pickle once to convert it to safetensors (later runs load that)")
    import torch
    from safetensors.torch import save_file

    try:
        state = torch.load(pt, map_location="cpu", weights_only=True)
    except Exception as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
        raise UserError(f"could not read {pt} as plain tensors: {first}") from exc
    state = _check_state(state, pt)
    from bench.atomic import atomic_path

    for target in converted_paths(pt):
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            with atomic_path(target) as tmp:
                save_file(state, str(tmp), metadata={"source": pt.name, "source_sha256": sha, "architecture": NAME})
        except OSError as e:
            log.warning("could not write %s (%s); trying the next place", target, e.strerror or e)
            continue
        log.info("converted %s to %s", pt, target)
        return target
    raise UserError(f"could not write the safetensors copy of {pt} next to it or in the cache")


def is_laion_file(path: str | os.PathLike) -> bool:
    """A torch pickle, or a safetensors file converted by ``to_safetensors`` (tagged with the architecture)."""
    path = Path(path)
    if path.suffix in PICKLE_SUFFIXES:
        return True
    if path.suffix != ".safetensors" or not path.is_file():
        return False
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            return (f.metadata() or {}).get("architecture") == NAME
    except Exception:
        return False


class LaionWatermarkExtractor:
    """The detector's two logits per image (``dim`` 2), as a feature extractor for ``extract_features``."""

    name = NAME
    dim = 2
    resize = "pil-bilinear-256"

    def __init__(self, weights: str | os.PathLike, device: str = "cpu", dtype: str = "float32"):
        from safetensors.torch import load_file

        from bench.cache import cached_sha256_file

        weights = Path(weights)
        try:
            state = load_file(str(weights))
        except Exception as exc:
            raise UserError(f"probe file {weights} is not readable safetensors ({type(exc).__name__})") from exc
        model = build_model()
        model.load_state_dict(_check_state(state, weights), strict=True)
        self.device, self.dtype = device, dtype
        self.model = model.requires_grad_(False).to(device)
        self.weights_sha256 = cached_sha256_file(weights)

    @property
    def key(self) -> str:
        from bench.features.base import make_key

        return make_key(self.name, self.weights_sha256, self.resize, self.dtype)

    def __call__(self, images: Sequence[np.ndarray]) -> np.ndarray:
        import torch
        from PIL import Image

        from bench.features.base import to_rgb_arrays

        arrays = to_rgb_arrays(images)
        if not arrays:
            return np.zeros((0, 2), np.float32)
        x = np.stack([np.asarray(Image.fromarray(a).resize((SIZE, SIZE), Image.BILINEAR), np.float32) / 255.0
                      for a in arrays])
        x = (x - np.asarray(MEAN, np.float32)) / np.asarray(STD, np.float32)
        with torch.inference_mode():
            y = self.model(torch.from_numpy(x.transpose(0, 3, 1, 2).copy()).to(self.device))
        return y.float().cpu().numpy()


def laion_probe(path: str | os.PathLike, allow_pickle: bool = False):
    """(extractor, probe, safetensors path) of LAION's detector in ``path`` (.pt or converted .safetensors)."""
    from audit.probes.watermark.classifier import WatermarkProbe

    weights = to_safetensors(path, allow_pickle)
    extractor = LaionWatermarkExtractor(weights)
    probe = WatermarkProbe(np.array([1.0, -1.0], np.float32), 0.0, LAION_THRESHOLD, extractor.key,
                           {"source": str(path), "kind": "laion-watermark-detector",
                            "threshold_source": "LAION's example code (pwatermark >= 0.5); not measured here"})
    return extractor, probe, weights
