"""Inception-v3 pool3 features (FID, KID) and logits (Inception Score).

The network is the TensorFlow FID Inception (graph ``inception-2015-12-05``) as
ported by pytorch-fid (``pt_inception-2015-12-05-6726825d.pth``); torch-fidelity
ships the same weights as ``weights-inception-2015-12-05-6726825d.pth``.  The
layers are torch-fidelity's ``FeatureExtractorInceptionV3`` (what torchmetrics'
FID/KID/IS use), loaded from a local file only; nothing is downloaded.

Resize modes (recorded in the extractor key):

* ``clean`` (default): clean-fid's resize, PIL bicubic with antialias in float to
  299x299 (``bench.features.base.resize_float``), then (x - 128) / 128.
* ``tf1-bilinear``: torch-fidelity/torchmetrics' default, a bilinear resize
  that reproduces TensorFlow 1's (no antialias), then (x - 128) / 128; this is
  the original TTUR FID protocol.

The two give different FIDs on the same images (Parmar et al. 2022): compare
numbers only within one mode.  Logits for the Inception Score are
``pool3 @ fc.weight.T`` without the bias, as in the original Inception Score code
(Salimans et al. 2016) and torch-fidelity's ``logits_unbiased``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from bench.cache import cached_sha256_file
from bench.errors import UserError
from bench.features.base import INCEPTION_NAME, resize_float
from bench.features.torch_extractor import TorchExtractor, hwc_float_to_nchw

WEIGHTS_FILE = "pt_inception-2015-12-05-6726825d.pth"
WEIGHTS_URL = "https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/" + WEIGHTS_FILE
#: torch-fidelity's copy of the same weights, accepted too.
ALT_WEIGHTS_FILE = "weights-inception-2015-12-05-6726825d.pth"
ENV_VAR = "T2I_AUDIT_INCEPTION_WEIGHTS"
RESIZE_MODES = ("clean", "tf1-bilinear")
SIZE = 299

_LAYERS = (
    "Conv2d_1a_3x3",
    "Conv2d_2a_3x3",
    "Conv2d_2b_3x3",
    "MaxPool_1",
    "Conv2d_3b_1x1",
    "Conv2d_4a_3x3",
    "MaxPool_2",
    "Mixed_5b",
    "Mixed_5c",
    "Mixed_5d",
    "Mixed_6a",
    "Mixed_6b",
    "Mixed_6c",
    "Mixed_6d",
    "Mixed_6e",
    "Mixed_7a",
    "Mixed_7b",
    "Mixed_7c",
    "AvgPool",
)


def find_weights(path: str | os.PathLike | None = None) -> Path:
    """The Inception weight file: ``path``, else $T2I_AUDIT_INCEPTION_WEIGHTS, else the torch hub cache."""
    if path is None:
        path = os.environ.get(ENV_VAR) or None
    if path is not None:
        p = Path(path).expanduser()
        if not p.is_file():
            raise UserError(f"Inception weights not found at {p}: download {WEIGHTS_URL} and pass its path")
        return p
    checkpoints = Path(torch.hub.get_dir()) / "checkpoints"
    for name in (WEIGHTS_FILE, ALT_WEIGHTS_FILE):
        if (checkpoints / name).is_file():
            return checkpoints / name
    raise UserError(
        f"Inception FID weights {WEIGHTS_FILE} not found offline: download {WEIGHTS_URL} into {checkpoints} "
        f"(torch.hub.get_dir()/checkpoints), or pass --inception-weights PATH (or set {ENV_VAR})"
    )


class InceptionExtractor(TorchExtractor):
    """Inception-v3 pool3 features (2048-d), as used by FID and KID."""

    name = INCEPTION_NAME
    dim = 2048

    def __init__(
        self,
        weights: str | os.PathLike | None = None,
        resize: str = "clean",
        device: str = "cpu",
        dtype: str = "float32",
    ):
        super().__init__(device, dtype)
        if resize not in RESIZE_MODES:
            raise UserError(f"unknown Inception resize mode {resize!r}: use one of {', '.join(RESIZE_MODES)}")
        self.resize_mode = resize
        self.resize = {"clean": "clean-bicubic-299", "tf1-bilinear": "tf1-bilinear-299"}[resize]
        self.weights_path = find_weights(weights)
        self.weights_sha256 = cached_sha256_file(self.weights_path)
        from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3

        try:
            # torch-fidelity unpickles the file with weights_only=False; refuse anything but tensors first.
            torch.load(self.weights_path, map_location="cpu", weights_only=True)
            net = FeatureExtractorInceptionV3(
                "inception-v3-compat", ["2048"], feature_extractor_weights_path=str(self.weights_path)
            )
        except Exception as e:  # a wrong or damaged file: unpickling and load_state_dict errors vary
            first = str(e).splitlines()[0] if str(e) else type(e).__name__
            raise UserError(f"cannot load Inception weights {self.weights_path} ({first}): use {WEIGHTS_URL}") from e
        self.model = self._place(net)

    def preprocess(self, images: Sequence[np.ndarray]) -> torch.Tensor:
        """uint8 HWC images -> float NCHW 299x299 in [0, 255] (not yet normalised)."""
        if self.resize_mode == "clean":
            return hwc_float_to_nchw([resize_float(im, (SIZE, SIZE)) for im in images])
        from torch_fidelity.interpolate_compat_tensorflow import interpolate_bilinear_2d_like_tensorflow1x

        # One image at a time: images may differ in size, and each is resized independently anyway.
        out = []
        for im in images:
            x = torch.from_numpy(np.ascontiguousarray(im)).permute(2, 0, 1)[None].to(torch.float32)
            out.append(interpolate_bilinear_2d_like_tensorflow1x(x, size=(SIZE, SIZE), align_corners=False))
        return torch.cat(out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # The same layers and normalisation as FeatureExtractorInceptionV3.forward after its resize.
        x = (x - 128) / 128
        for name in _LAYERS:
            x = getattr(self.model, name)(x)
        return torch.flatten(x, 1)

    def logits(self, pool3: np.ndarray) -> np.ndarray:
        """Unbiased logits [N, 1008] = pool3 @ fc.weight.T (Inception Score input)."""
        w = self.model.fc.weight.detach().to("cpu", torch.float32)
        with torch.inference_mode():
            return torch.from_numpy(np.ascontiguousarray(pool3, dtype=np.float32)).mm(w.T).numpy()
