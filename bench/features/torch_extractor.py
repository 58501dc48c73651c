"""Shared plumbing of the torch-based extractors: device, dtype, batching to numpy."""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import torch

from bench.errors import UserError
from bench.features.base import make_key, to_rgb_arrays

DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


class TorchExtractor:
    """Base class: subclasses set ``name``, ``dim``, ``resize``, ``weights_sha256``
    and ``model`` and implement ``preprocess`` and ``forward``."""

    name: str
    dim: int
    resize: str
    weights_sha256: str
    model: torch.nn.Module

    def __init__(self, device: str = "cpu", dtype: str = "float32"):
        if dtype not in DTYPES:
            raise UserError(f"unknown dtype {dtype!r}: use one of {', '.join(DTYPES)}")
        self.device = device
        self.dtype = dtype

    @property
    def key(self) -> str:
        return make_key(self.name, self.weights_sha256, self.resize, self.dtype)

    def _place(self, model: torch.nn.Module) -> torch.nn.Module:
        return model.eval().requires_grad_(False).to(self.device, DTYPES[self.dtype])

    def preprocess(self, images: Sequence[np.ndarray]) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def __call__(self, images: Any) -> np.ndarray:
        arrays = to_rgb_arrays(images)
        if not arrays:
            return np.zeros((0, self.dim), np.float32)
        x = self.preprocess(arrays).to(self.device, DTYPES[self.dtype])
        with torch.inference_mode():
            y = self.forward(x)
        return y.float().cpu().numpy()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.key})"


def hwc_float_to_nchw(images: Sequence[np.ndarray]) -> torch.Tensor:
    """Stack float32 HWC images into an NCHW tensor."""
    return torch.from_numpy(np.stack(images).transpose(0, 3, 1, 2).copy())
