"""The invisible watermarks that Stable Diffusion releases embed, read with invisible-watermark.

Stable Diffusion's reference scripts and diffusers' SDXL pipeline stamp every
image with an invisible-watermark (https://github.com/ShieldMnt/invisible-watermark)
``dwtDct`` message: a bit pattern hidden in the block DCT of the Haar-DWT
approximation of the U channel (YUV).  We decode each known message with
``imwatermark.WatermarkDecoder('bits', n).decode(bgr, 'dwtDct')`` and call it
present when at most ``MAX_BIT_ERROR_SHARE`` of its bits differ:

* "StableDiffusionV1" (136 bits): CompVis/stable-diffusion ``scripts/txt2img.py``
  (``WatermarkEncoder().set_watermark('bytes', b"StableDiffusionV1")``, SD 1.x);
* "SDV2" (32 bits): Stability-AI/stablediffusion ``scripts/txt2img.py`` (SD 2.x);
* SDXL's 48 bits ``0b101100111110110010010000011110111011000110011110``:
  diffusers ``pipelines/stable_diffusion_xl/watermark.py`` ``WATERMARK_BITS``
  (``StableDiffusionXLWatermarker``, copied there from Stability-AI/generative-models).

dwtDct is fragile: even straight after embedding, 10-20% of the bits of a
smooth image can come back wrong (measured 0.80-1.0 bit accuracy on smooth
random textures), hence the tolerance of 15%.  The chance that a clean image
decodes within it is sum_{k <= t} C(n, k) / 2^n (t = floor(0.15 n)) if its
bits were coin flips: 1e-5 for the 32-bit "SDV2", 3e-7 for SDXL's 48 bits,
far less for 136 bits.

Size: the decoder refuses images under 256 x 256 pixels (``r * c < 256 * 256``;
diffusers skips watermarking below 256 px too), so smaller images are reported
as not checkable instead of being counted as clean.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

#: invisible-watermark's own limit (imwatermark/watermark.py): rows * cols >= 256 * 256.
MIN_PIXELS = 256 * 256
MAX_BIT_ERROR_SHARE = 0.15
SDXL_WATERMARK_MESSAGE = 0b101100111110110010010000011110111011000110011110


def _bytes_bits(text: bytes) -> tuple[int, ...]:
    return tuple(int(b) for b in np.unpackbits(np.frombuffer(text, dtype=np.uint8)))


#: (name reported in invisible_message, bits), in the order they are tried.
KNOWN_MESSAGES: tuple[tuple[str, tuple[int, ...]], ...] = (
    ("StableDiffusionV1", _bytes_bits(b"StableDiffusionV1")),
    ("SDV2", _bytes_bits(b"SDV2")),
    ("SDXL", tuple(int(b) for b in bin(SDXL_WATERMARK_MESSAGE)[2:])),
)


@dataclass(frozen=True)
class InvisibleResult:
    """``checkable`` False: image too small for the decoder.  ``message``: the name of the
    detected message ("" if none); ``bit_accuracy``: share of its bits that matched."""

    checkable: bool
    detected: bool
    message: str
    bit_accuracy: float


def checkable(width: int, height: int) -> bool:
    return width * height >= MIN_PIXELS


def decode_invisible(rgb: np.ndarray) -> InvisibleResult:
    """Look for each of ``KNOWN_MESSAGES`` in an HWC uint8 RGB image."""
    from imwatermark import WatermarkDecoder

    rgb = np.asarray(rgb)
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        raise ValueError(f"expected an HWC uint8 RGB image, got {rgb.dtype} {rgb.shape}")
    h, w = rgb.shape[:2]
    if not checkable(w, h):
        return InvisibleResult(False, False, "", float("nan"))
    bgr = np.ascontiguousarray(rgb[:, :, ::-1])  # the encoders were given OpenCV's BGR order
    best = ("", 0.0)
    for name, bits in KNOWN_MESSAGES:
        decoded = WatermarkDecoder("bits", len(bits)).decode(bgr, "dwtDct")
        accuracy = float(np.mean(np.asarray(decoded, dtype=int) == np.asarray(bits)))
        if accuracy >= 1.0 - MAX_BIT_ERROR_SHARE:
            return InvisibleResult(True, True, name, accuracy)
        if accuracy > best[1]:
            best = (name, accuracy)
    return InvisibleResult(True, False, "", best[1])


def embed_invisible(rgb: np.ndarray, message: str = "StableDiffusionV1") -> np.ndarray:
    """Embed one of ``KNOWN_MESSAGES`` as the SD scripts do (for tests and calibration)."""
    from imwatermark import WatermarkEncoder

    bits = dict(KNOWN_MESSAGES)[message]
    encoder = WatermarkEncoder()
    encoder.set_watermark("bits", list(bits))
    bgr = encoder.encode(np.ascontiguousarray(np.asarray(rgb)[:, :, ::-1]), "dwtDct")
    return np.ascontiguousarray(bgr[:, :, ::-1])
