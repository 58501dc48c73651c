"""Invisible Stable Diffusion watermarks: embed with invisible-watermark's encoder, decode them back."""

import numpy as np
import pytest
from imwatermark import WatermarkEncoder

from audit.probes.watermark.invisible import (KNOWN_MESSAGES, MIN_PIXELS, checkable, decode_invisible,
                                       embed_invisible)
from scipy import ndimage


@pytest.fixture(scope="module")
def photo() -> np.ndarray:
    """A 256 x 320 photo-like texture (seeded smooth noise, no saturated colours: dwtDct
    wraps around in uint8 near the ends of the U channel, and SD photos rarely go there)."""
    rng = np.random.default_rng(0)
    field = ndimage.gaussian_filter(rng.normal(size=(256, 320, 3)), sigma=(3, 3, 0))
    return np.clip(128 + field / field.std() * 30, 0, 255).astype(np.uint8)


def test_sd_v1_message_embedded_like_the_txt2img_script_is_detected(photo):
    # CompVis scripts/txt2img.py: set_watermark('bytes', b"StableDiffusionV1"), encode(BGR, 'dwtDct').
    encoder = WatermarkEncoder()
    encoder.set_watermark("bytes", "StableDiffusionV1".encode("utf-8"))
    marked = encoder.encode(np.ascontiguousarray(photo[:, :, ::-1]), "dwtDct")[:, :, ::-1]
    result = decode_invisible(np.ascontiguousarray(marked))
    assert result.checkable and result.detected
    assert result.message == "StableDiffusionV1" and result.bit_accuracy >= 0.85
    # invisible: the pixels hardly move
    assert np.abs(marked.astype(int) - photo.astype(int)).mean() < 3


@pytest.mark.parametrize("name", [name for name, _ in KNOWN_MESSAGES])
def test_each_known_message_round_trips(photo, name):
    result = decode_invisible(embed_invisible(photo, name))
    assert result.detected and result.message == name


def test_clean_images_are_not_detected(photo):
    rng = np.random.default_rng(1)
    noise = rng.integers(0, 256, (320, 288, 3), dtype=np.uint8)
    for img in (photo, noise, np.full((256, 256, 3), 200, np.uint8)):
        result = decode_invisible(img)
        assert result.checkable and not result.detected and result.message == ""


def test_sdxl_bits_are_diffusers_watermark_bits():
    from diffusers.pipelines.stable_diffusion_xl.watermark import WATERMARK_BITS

    assert list(dict(KNOWN_MESSAGES)["SDXL"]) == WATERMARK_BITS


def test_images_below_the_decoder_minimum_are_not_checkable(photo):
    assert MIN_PIXELS == 256 * 256
    assert checkable(256, 256) and not checkable(255, 256) and not checkable(64, 64)
    small = decode_invisible(photo[:200, :200])
    assert not small.checkable and not small.detected and np.isnan(small.bit_accuracy)
    # the library itself refuses such images: that is why they are reported, not decoded
    from imwatermark import WatermarkDecoder

    with pytest.raises(RuntimeError, match="too small"):
        WatermarkDecoder("bytes", 136).decode(np.ascontiguousarray(photo[:200, :200]), "dwtDct")
