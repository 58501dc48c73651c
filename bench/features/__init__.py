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

from dataclasses import dataclass
from typing import Any, Callable

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
from bench.registry import Registry, load_object

@dataclass(frozen=True)
class ExtractorType:
    """An entry of ``EXTRACTORS``: how a spec of this kind is written, and the factory that builds it.

    ``factory(argument, **kwargs)`` gets the part of the spec after ``<name>:``
    ("" when there is none) and the keyword arguments of ``get_extractor``.
    It is a ``"module:function"`` string (imported on first use) or a callable.
    """

    usage: str
    factory: str | Callable[..., FeatureExtractor]
    argument: str = "none"  # "none", "optional" or "required"

    def build(self, kind: str, argument: str, **kwargs: Any) -> FeatureExtractor:
        if argument and self.argument == "none":
            raise UserError(f"feature extractor {kind!r} takes no ':' argument; write {self.usage}")
        if not argument and self.argument == "required":
            raise UserError(f"feature extractor {kind!r} needs an argument; write {self.usage}")
        factory = load_object(self.factory) if isinstance(self.factory, str) else self.factory
        return factory(argument, **kwargs)


def _inception(argument: str, **kwargs: Any) -> FeatureExtractor:
    from bench.features.inception import InceptionExtractor

    return InceptionExtractor(**kwargs)


def _efficientnet(argument: str, **kwargs: Any) -> FeatureExtractor:
    from bench.features.efficientnet import EfficientNetLite0Extractor

    return EfficientNetLite0Extractor(**kwargs)


def _dinov2(argument: str, **kwargs: Any) -> FeatureExtractor:
    from bench.features.dinov2 import DinoV2Extractor

    return DinoV2Extractor(argument or "vitl14", **kwargs)


def _clip(argument: str, **kwargs: Any) -> FeatureExtractor:
    from bench.features.clip import OpenClipExtractor

    if argument.startswith(("local-dir:", "hf-hub:")):
        return OpenClipExtractor(argument, **kwargs)
    model, _, pretrained = argument.partition("@")
    return OpenClipExtractor(model, pretrained or None, **kwargs)


#: Feature extractors by kind (the part of a spec before the first ':').  Plugins join through
#: the ``t2i_audit.extractors`` entry point group; an entry names an ``ExtractorType``.
EXTRACTORS: Registry[ExtractorType] = Registry("feature extractor", entry_point_group="t2i_audit.extractors")
EXTRACTORS.add("inception", ExtractorType("inception", _inception))  # Inception-v3 pool3 (FID); resize= kwarg
EXTRACTORS.add("clip", ExtractorType("clip:MODEL@TAG_OR_PATH or clip:local-dir:PATH", _clip, "required"))
EXTRACTORS.add("efficientnet-lite0", ExtractorType("efficientnet-lite0", _efficientnet))  # ImageNet, from its wheel
EXTRACTORS.add("dinov2", ExtractorType("dinov2[:vits14|vitb14|vitl14|vitg14]", _dinov2, "optional"))


def extractor_usages() -> list[str]:
    """How each registered extractor kind is written (for help texts and errors)."""
    return [EXTRACTORS.get(name).usage for name in EXTRACTORS.names()]


def check_extractor_spec(spec: str) -> str:
    """``spec`` when its kind is registered; else UserError with a suggestion.  Loads no model."""
    kind = spec.partition(":")[0]
    if kind not in EXTRACTORS:
        raise UserError(f"unknown feature extractor {spec!r}{EXTRACTORS.suggest(kind)}: use one of "
                        f"{', '.join(extractor_usages())}")
    return spec


def get_extractor(spec: str, **kwargs: Any) -> FeatureExtractor:
    """Build an extractor from a short spec ``<kind>[:<argument>]`` (kinds in ``EXTRACTORS``); kwargs go to it."""
    kind, _, rest = check_extractor_spec(spec).partition(":")
    return EXTRACTORS.get(kind).build(kind, rest, **kwargs)


__all__ = [
    "EXTRACTORS",
    "ExtractorType",
    "check_extractor_spec",
    "extractor_usages",
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
