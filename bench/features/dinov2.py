"""DINOv2 CLS features (FD_DINOv2, Stein et al. 2023), only from weights already on disk.

Uses the torch hub layout that ``torch.hub.load("facebookresearch/dinov2", ...)``
leaves behind, without any download:

* code:    ``<torch.hub.get_dir()>/facebookresearch_dinov2_main/`` (hubconf.py)
* weights: ``<torch.hub.get_dir()>/checkpoints/dinov2_<arch>_pretrain.pth``

Either can be given explicitly (``repo_dir=``, ``weights=``).  Preprocessing as in
dgm-eval (Stein et al.): PIL bicubic with antialias, in float, to 224x224, ImageNet
mean/std; the feature is the normalised CLS token.  Not exercised with real
weights in the test suite (they are not available offline).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from bench.cache import cached_sha256_file
from bench.errors import UserError
from bench.features.base import resize_float
from bench.features.torch_extractor import TorchExtractor, hwc_float_to_nchw

ARCHS = {"vits14": 384, "vitb14": 768, "vitl14": 1024, "vitg14": 1536}
SIZE = 224
_MEAN = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1) * 255
_STD = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1) * 255


def locate(
    arch: str, repo_dir: str | os.PathLike | None = None, weights: str | os.PathLike | None = None
) -> tuple[Path, Path]:
    """(hub repo dir, weight file) for ``arch``, or a UserError naming what is missing."""
    if arch not in ARCHS:
        raise UserError(f"unknown DINOv2 model {arch!r}: use one of {', '.join(ARCHS)}")
    hub = Path(torch.hub.get_dir())
    repo = Path(repo_dir) if repo_dir else hub / "facebookresearch_dinov2_main"
    ckpt = Path(weights) if weights else hub / "checkpoints" / f"dinov2_{arch}_pretrain.pth"
    missing = [
        str(p) for p, ok in ((repo / "hubconf.py", (repo / "hubconf.py").is_file()), (ckpt, ckpt.is_file())) if not ok
    ]
    if missing:
        raise UserError(
            f"DINOv2 {arch} is not available offline (missing {' and '.join(missing)}): run "
            f"torch.hub.load('facebookresearch/dinov2', 'dinov2_{arch}') once online, or pass repo_dir= and weights="
        )
    return repo, ckpt


class DinoV2Extractor(TorchExtractor):
    resize = "clean-bicubic-224"

    def __init__(
        self,
        arch: str = "vitl14",
        repo_dir: str | os.PathLike | None = None,
        weights: str | os.PathLike | None = None,
        device: str = "cpu",
        dtype: str = "float32",
    ):
        super().__init__(device, dtype)
        repo, ckpt = locate(arch, repo_dir, weights)
        self.name = f"dinov2-{arch}"
        self.dim = ARCHS[arch]
        self.weights_sha256 = cached_sha256_file(ckpt)
        model = torch.hub.load(str(repo), f"dinov2_{arch}", source="local", pretrained=False)
        model.load_state_dict(torch.load(ckpt, map_location="cpu", weights_only=True))
        self.model = self._place(model)

    def preprocess(self, images: Sequence[np.ndarray]) -> torch.Tensor:
        x = hwc_float_to_nchw([resize_float(im, (SIZE, SIZE)) for im in images])
        return (x - _MEAN) / _STD

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)
