"""Reading images for feature extraction: any PIL mode -> 8-bit RGB, bad files reported.

Conversions (each is counted and reported by ``extract_features``):

* ``RGB``: used as is.
* alpha (``RGBA``, ``LA``, ``PA``...): the alpha channel is dropped, as
  ``Image.convert("RGB")`` does in pytorch-fid and clean-fid, so the numbers match
  theirs.  Transparent pixels therefore show whatever colour they store.
* grayscale, palette, CMYK, YCbCr...: ``Image.convert("RGB")``.
* 16-bit grayscale (``I;16``, ``I``): scaled to 8 bit by keeping the high byte
  (v >> 8, as libpng's ``png_set_strip_16``).  Pillow's own ``convert("L")``
  *clips* these values at 255, which turns almost every pixel white.
* 16-bit RGB(A) PNG: Pillow already decodes these to 8 bit by keeping the high
  byte; we only detect and count them.
* 32-bit float (``F``) or integer images beyond 16 bit: refused (skipped with a
  reason), because their value range is unknown.

Truncated or corrupt files raise ``ImageProblem`` with a one-line reason;
``extract_features`` skips and records them instead of crashing.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


class ImageProblem(Exception):
    """An image that cannot be read or converted; the message is the reason."""


def _png_bit_depth(data: bytes) -> int | None:
    # IHDR is always the first chunk: 8-byte signature, 4 length, 4 type, 4 w, 4 h, then bit depth.
    if data[:8] == _PNG_SIGNATURE and len(data) > 24:
        return data[24]
    return None


def to_rgb(image: Image.Image, bit_depth: int | None = None) -> tuple[np.ndarray, str | None]:
    """Convert a loaded PIL image to a uint8 HWC RGB array.

    Returns (array, conversion) where ``conversion`` names what was done, or None
    when the image already was 8-bit RGB.  ``bit_depth`` is the PNG bit depth if
    known (to detect 16-bit RGB PNGs, which Pillow reports as plain "RGB").
    """
    mode = image.mode
    if mode == "RGB":
        note = "16-bit RGB -> 8-bit (high byte)" if bit_depth == 16 else None
        return np.asarray(image, dtype=np.uint8).copy(), note
    if mode in ("I;16", "I;16L", "I;16B", "I;16N", "I"):
        arr = np.asarray(image)
        if arr.size and (arr.min() < 0 or arr.max() > 65535):
            raise ImageProblem(f"{mode} image with values outside 0..65535 (unknown range)")
        gray = (arr.astype(np.uint32) >> 8).astype(np.uint8)
        return np.repeat(gray[:, :, None], 3, axis=2), f"{mode} -> RGB (16-bit scaled to 8-bit)"
    if mode == "F":
        raise ImageProblem("32-bit float image (unknown value range); save it as 8-bit RGB")
    has_alpha = "A" in mode or "a" in mode or (mode == "P" and "transparency" in image.info)
    rgb = np.asarray(image.convert("RGB"), dtype=np.uint8).copy()
    note = f"{mode} -> RGB" + (" (alpha dropped)" if has_alpha else "")
    if bit_depth == 16:
        note += " (16-bit -> 8-bit, high byte)"
    return rgb, note


def load_image(path: str | Path) -> tuple[np.ndarray, str | None]:
    """Read one image file -> (uint8 HWC RGB array, conversion or None); ``ImageProblem`` if unreadable."""
    try:
        data = Path(path).read_bytes()
    except OSError as e:
        raise ImageProblem(f"cannot read file: {e.strerror or e}") from e
    return load_image_bytes(data)


def load_image_bytes(data: bytes) -> tuple[np.ndarray, str | None]:
    """``load_image`` for bytes already in memory."""
    try:
        with Image.open(io.BytesIO(data)) as im:
            im.load()  # decode now: a truncated file fails here, not later
            rgb, note = to_rgb(im, _png_bit_depth(data))
            frames = getattr(im, "n_frames", 1)
            if frames > 1:  # an animated GIF/PNG/WebP: its first frame is the image (and the count says so)
                note = f"{note + '; ' if note else ''}animated ({frames} frames) -> first frame"
            return rgb, note
    except ImageProblem:
        raise
    except UnidentifiedImageError as e:
        raise ImageProblem("not a recognised image file (UnidentifiedImageError)") from e
    except Exception as e:  # PIL raises OSError, SyntaxError, ValueError, DecompressionBombError...
        reason = str(e).splitlines()[0] if str(e) else ""
        raise ImageProblem(f"{type(e).__name__}: {reason}".rstrip(": ")) from e
