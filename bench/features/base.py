"""What every feature extractor provides, the feature-set container, and shared resizing.

No torch import here: ``bench.metrics`` (which the dashboard may import for metric
metadata) reads extractor keys through this module.

Extractor key
    ``<model>__w<weights sha256[:16]>__<resize>__<dtype>``, e.g.
    ``inception-v3-pool3__w6726825d1a2b3c4d__clean-bicubic-299__float32``.  It names
    every setting that changes the numbers, so it is used in cache file names and
    recorded in reference statistics; two feature sets are comparable only when their
    keys are equal.  The first field (``key_name``) is the short name used in metric
    names ("FD_<name>").
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Mapping, Protocol, Sequence, runtime_checkable

import numpy as np
from PIL import Image

from bench.contract.metric_names import INCEPTION_NAME, extractor_name  # noqa: E402  (the naming rule's owner)

_UNSAFE = re.compile(r"[^A-Za-z0-9._+-]+")


def _safe(part: str) -> str:
    """A key field that is safe in a file name and cannot fake the '__' separator."""
    # No "_" at either end either: "name_" + "__" would read back as "name" + "___...".
    return re.sub(r"_{2,}", "_", _UNSAFE.sub("-", part)).strip("-_") or "x"


def make_key(model: str, weights_sha256: str, resize: str, dtype: str) -> str:
    """The extractor key (see module docstring)."""
    return "__".join([_safe(model), "w" + weights_sha256[:16], _safe(resize), _safe(dtype)])


def key_name(key: str) -> str:
    """The model field of an extractor key: ``inception-v3-pool3__w...`` -> ``inception-v3-pool3``."""
    return extractor_name(key) or ""


def key_resize(key: str) -> str | None:
    """The resize field of an extractor key, or None when the key has no such field."""
    parts = key.split("__")
    return parts[2] if len(parts) >= 4 else None


@runtime_checkable
class FeatureExtractor(Protocol):
    """An image embedding model with a fixed preprocessing.

    ``key``         names model, weights hash, resize mode and dtype (``make_key``).
    ``name``        the model field of the key, used in metric names.
    ``dim``         feature dimension d.
    ``resize``      a short description of the resize mode (also in the key).
    ``preprocess``  RGB uint8 images (HWC arrays) -> model input tensor.
    ``__call__``    images (uint8 NHWC array, list of HWC uint8 arrays, or PIL images)
                    -> float32 array [N, d].
    """

    key: str
    name: str
    dim: int
    resize: str

    def preprocess(self, images: Sequence[np.ndarray]) -> Any: ...

    def __call__(self, images: Any) -> np.ndarray: ...


@dataclass(frozen=True)
class FeatureSet:
    """Features of a set of images, with the extractor key that made them.

    ``features`` rows follow ``paths`` (relative paths; empty when the features did
    not come from files).  ``skipped`` lists (path, reason) of unreadable images;
    ``converted`` counts images converted to 8-bit RGB, by conversion.
    """

    features: np.ndarray
    extractor: str
    paths: tuple[str, ...] = ()
    skipped: tuple[tuple[str, str], ...] = ()
    converted: Mapping[str, int] = field(default_factory=dict)
    cache_file: str | None = None
    from_cache: bool = False

    @property
    def name(self) -> str:
        return key_name(self.extractor)

    @property
    def n(self) -> int:
        return int(self.features.shape[0])

    def __len__(self) -> int:
        return self.n


def to_rgb_arrays(images: Any) -> list[np.ndarray]:
    """uint8 NHWC array, or a list of HWC uint8 arrays / PIL images -> list of HWC uint8 RGB arrays.

    PIL images in other modes are converted with ``bench.features.images.to_rgb``
    (16-bit scaled, alpha dropped), so direct calls agree with ``extract_features``.
    """
    from bench.features.images import to_rgb

    if isinstance(images, np.ndarray):
        if images.ndim == 3:
            images = images[None]
        if images.ndim != 4 or images.shape[-1] != 3 or images.dtype != np.uint8:
            raise ValueError(f"expected uint8 NHWC RGB images, got {images.dtype} {images.shape}")
        return list(images)
    out = []
    for im in images:
        if isinstance(im, Image.Image):
            out.append(to_rgb(im)[0])
        else:
            arr = np.asarray(im)
            if arr.dtype != np.uint8 or arr.ndim != 3 or arr.shape[-1] != 3:
                raise ValueError(f"expected HWC uint8 RGB arrays, got {arr.dtype} {arr.shape}")
            out.append(arr)
    return out


def resize_float(image: np.ndarray, size: tuple[int, int], resample: int = Image.BICUBIC) -> np.ndarray:
    """Resize one uint8 HWC RGB image to ``size`` (width, height) as clean-fid does.

    Each channel is resized by PIL in 32-bit float (mode "F"), so the filter is
    antialiased when downsampling (PIL widens the kernel by the scale factor) and
    nothing is quantised to 8 bit after resizing; values are clipped to [0, 255].
    This is ``cleanfid.resize.make_resizer("PIL", False, "bicubic", size)``
    (Parmar et al. 2022, "On Aliased Resizing and Surprising Subtleties in GAN
    Evaluation"): torch's bilinear ``interpolate`` without antialias, as used by
    pytorch-fid, aliases when downsampling and shifts FID.
    Returns float32 HWC in [0, 255].
    """
    channels = [
        np.asarray(Image.fromarray(image[:, :, c].astype(np.float32)).resize(size, resample=resample)) for c in range(3)
    ]
    return np.stack(channels, axis=2).clip(0, 255).astype(np.float32)
