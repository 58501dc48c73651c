"""Frozen, JSON-able scene specs: the machine-readable truth behind every image.

A scene is a tuple of objects on a background, optionally with the stock-photo
watermark.  Object centres are the centres of their bounding boxes, as
fractions of the image side (x to the right, y downwards), so the same spec
renders the same scene at any resolution.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from bench.errors import UserError
from bench.world.vocab import BACKGROUNDS, COLOURS, SHAPES, SIZES


@dataclass(frozen=True)
class ObjectSpec:
    """One coloured shape: ``shape`` in SHAPES, ``colour`` in COLOURS,
    ``size`` in SIZES, bounding-box centre ``(x, y)`` in [0, 1]."""

    shape: str
    colour: str
    size: str
    x: float
    y: float

    def __post_init__(self) -> None:
        if self.shape not in SHAPES:
            raise UserError(f"unknown shape {self.shape!r}; expected one of {', '.join(SHAPES)}")
        if self.colour not in COLOURS:
            raise UserError(f"unknown colour {self.colour!r}; expected one of {', '.join(COLOURS)}")
        if self.size not in SIZES:
            raise UserError(f"unknown size {self.size!r}; expected one of {', '.join(SIZES)}")
        for name in ("x", "y"):
            v = getattr(self, name)
            if not isinstance(v, (int, float)) or not 0.0 <= v <= 1.0:
                raise UserError(f"object {name}={v!r} must be a number in [0, 1]")

    def to_dict(self) -> dict[str, Any]:
        return {"shape": self.shape, "colour": self.colour, "size": self.size,
                "x": float(self.x), "y": float(self.y)}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "ObjectSpec":
        try:
            return cls(shape=d["shape"], colour=d["colour"], size=d["size"],
                       x=float(d["x"]), y=float(d["y"]))
        except KeyError as e:
            raise UserError(f"object spec is missing field {e.args[0]!r}: {d!r}") from None


@dataclass(frozen=True)
class SceneSpec:
    """A scene: ``objects`` on a neutral ``background`` (one of BACKGROUNDS),
    with the visible stock-photo watermark if ``watermark``."""

    objects: tuple[ObjectSpec, ...]
    background: str = "white"
    watermark: bool = False

    def __post_init__(self) -> None:
        # Accept a list for convenience but store a tuple, so specs stay hashable.
        if not isinstance(self.objects, tuple):
            object.__setattr__(self, "objects", tuple(self.objects))
        if self.background not in BACKGROUNDS:
            raise UserError(f"unknown background {self.background!r}; "
                            f"expected one of {', '.join(BACKGROUNDS)}")

    def to_dict(self) -> dict[str, Any]:
        return {"objects": [o.to_dict() for o in self.objects],
                "background": self.background,
                "watermark": bool(self.watermark)}

    def to_json(self) -> str:
        """Canonical compact JSON (sorted keys): equal specs give equal strings."""
        return json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "SceneSpec":
        if not isinstance(d, dict) or "objects" not in d:
            raise UserError("scene spec must be an object with an 'objects' list")
        return cls(objects=tuple(ObjectSpec.from_dict(o) for o in d["objects"]),
                   background=d.get("background", "white"),
                   watermark=bool(d.get("watermark", False)))

    @classmethod
    def from_json(cls, text: str) -> "SceneSpec":
        return cls.from_dict(json.loads(text))
