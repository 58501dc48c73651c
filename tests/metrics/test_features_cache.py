"""Image reading (modes, 16-bit, corrupt files) and the feature cache, with a tiny numpy extractor."""

from __future__ import annotations

import shutil
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from bench.errors import UserError
from bench.features import extract_features, make_key
from bench.features.base import to_rgb_arrays
from bench.features.images import ImageProblem, load_image


class MeanColour:
    """Features = mean R, G, B: exact, so conversions can be checked by value."""

    name = "meancolour"
    dim = 3
    resize = "none"
    key = make_key("meancolour", "ab" * 8, "none", "float32")

    def __init__(self):
        self.calls = 0
        self.images_seen = 0

    def preprocess(self, images):
        return images

    def __call__(self, images):
        arrays = to_rgb_arrays(images)
        self.calls += 1
        self.images_seen += len(arrays)
        return np.array([a.reshape(-1, 3).mean(axis=0) for a in arrays], np.float32)


def write_png16(path: Path, arr: np.ndarray) -> None:
    """A 16-bit PNG (grey, RGB or RGBA) written by hand: PIL cannot write 16-bit RGB."""
    h, w = arr.shape[:2]
    channels = 1 if arr.ndim == 2 else arr.shape[2]
    raw = b"".join(b"\x00" + arr[y].astype(">u2").tobytes() for y in range(h))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", w, h, 16, {1: 0, 3: 2, 4: 6}[channels], 0, 0, 0)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")
    )


@pytest.fixture
def image_dir(tmp_path) -> Path:
    d = tmp_path / "images"
    d.mkdir()
    Image.new("RGB", (8, 6), (10, 20, 30)).save(d / "rgb.png")
    Image.new("RGBA", (5, 5), (200, 100, 50, 0)).save(d / "rgba.png")  # fully transparent
    Image.new("L", (7, 3), 77).save(d / "gray.png")
    Image.new("RGB", (9, 9), (1, 2, 3)).convert("P").save(d / "palette.png")
    Image.fromarray(np.full((4, 4), 32896, np.uint16)).save(d / "gray16.png")  # 32896 = 128 * 257
    write_png16(d / "rgb16.png", np.full((3, 3, 3), [65535, 257 * 100, 0], np.uint16))
    Image.new("RGB", (30, 20), (5, 5, 5)).save(d / "big.jpg", quality=95)
    noise = np.random.default_rng(0).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    Image.fromarray(noise).save(d / "noise.png")
    good = (d / "noise.png").read_bytes()
    (d / "truncated.png").write_bytes(good[: len(good) * 2 // 3])
    (d / "not_an_image.png").write_text("hello")
    return d


def test_load_image_modes(image_dir):
    arr, note = load_image(image_dir / "rgb.png")
    assert note is None and arr.shape == (6, 8, 3) and arr.dtype == np.uint8
    arr, note = load_image(image_dir / "rgba.png")
    assert "alpha dropped" in note and (arr == [200, 100, 50]).all()  # as Image.convert("RGB")
    arr, note = load_image(image_dir / "gray.png")
    assert note == "L -> RGB" and (arr == 77).all()
    # 16-bit grey is scaled (high byte), not clipped to 255 as Image.convert("L") would.
    assert np.asarray(Image.open(image_dir / "gray16.png").convert("L")).max() == 255
    arr, note = load_image(image_dir / "gray16.png")
    assert "16-bit" in note and (arr == 128).all()
    arr, note = load_image(image_dir / "rgb16.png")
    assert "16-bit" in note and (arr == [255, 100, 0]).all()
    with pytest.raises(ImageProblem, match="truncated"):
        load_image(image_dir / "truncated.png")
    with pytest.raises(ImageProblem, match="UnidentifiedImageError"):
        load_image(image_dir / "not_an_image.png")


def test_extract_features_converts_skips_and_caches(image_dir, tmp_path):
    paths = sorted(image_dir.iterdir())
    ext = MeanColour()
    cache = tmp_path / "features"
    fs = extract_features(paths, ext, cache, batch_size=3, progress=False)
    assert {p for p, _ in fs.skipped} == {"truncated.png", "not_an_image.png"}
    assert all(reason for _, reason in fs.skipped)
    assert fs.n == 8 and fs.features.dtype == np.float32 and fs.extractor == ext.key
    assert sum(fs.converted.values()) == 5  # rgba, gray, palette, gray16, rgb16
    row = dict(zip(fs.paths, fs.features))
    np.testing.assert_array_equal(row["gray16.png"], [128, 128, 128])
    np.testing.assert_array_equal(row["rgb16.png"], [255, 100, 0])
    assert list(fs.paths) == [p.name for p in paths if p.name not in ("truncated.png", "not_an_image.png")]
    # Cache files named by key and image-set hash; nothing temporary left behind.
    assert Path(fs.cache_file).name.startswith(ext.key + "__") and Path(fs.cache_file).with_suffix(".json").is_file()
    assert not [p for p in cache.iterdir() if p.name.startswith(".tmp-")]

    calls = ext.calls
    again = extract_features(list(reversed(paths)), ext, cache, batch_size=2, progress=False)
    assert again.from_cache and ext.calls == calls  # nothing decoded or embedded
    assert list(again.paths) == list(reversed(fs.paths))  # rows follow the caller's order
    np.testing.assert_array_equal(again.features, fs.features[::-1])
    assert again.skipped == fs.skipped and again.converted == fs.converted


def test_image_set_hash_follows_content_not_location(image_dir, tmp_path):
    ext = MeanColour()
    cache = tmp_path / "features"
    first = extract_features(sorted(image_dir.glob("*.png")), ext, cache, progress=False)
    moved = tmp_path / "elsewhere" / "images"
    shutil.copytree(image_dir, moved)
    same = extract_features(sorted(moved.glob("*.png")), ext, cache, progress=False)
    assert same.from_cache and same.cache_file == first.cache_file
    Image.new("RGB", (8, 6), (11, 20, 30)).save(moved / "rgb.png")  # one pixel value changed
    changed = extract_features(sorted(moved.glob("*.png")), ext, cache, progress=False)
    assert not changed.from_cache and changed.cache_file != first.cache_file


def test_batch_size_does_not_change_rows(image_dir):
    paths = sorted(image_dir.iterdir())
    a = extract_features(paths, MeanColour(), None, batch_size=1, progress=False)
    b = extract_features(paths, MeanColour(), None, batch_size=7, progress=False)
    np.testing.assert_array_equal(a.features, b.features)
    assert a.cache_file is None


def test_extract_features_bad_input(tmp_path):
    with pytest.raises(UserError, match="no images"):
        extract_features([], MeanColour(), tmp_path)
    Image.new("RGB", (4, 4)).save(tmp_path / "a.png")
    with pytest.raises(UserError, match="batch size"):
        extract_features([tmp_path / "a.png"], MeanColour(), tmp_path, batch_size=0)
    with pytest.raises(UserError, match="not under the root folder"):
        extract_features([tmp_path / "a.png"], MeanColour(), tmp_path, root=tmp_path / "sub")


@pytest.mark.parametrize("damage", ["truncate", "alter"])
def test_damaged_cache_is_detected_reported_and_rebuilt(tmp_path, caplog, damage):
    """The sidecar holds the npy's sha256: a truncated or altered cache is never used, it is rebuilt."""
    import logging

    from bench.features import get_extractor
    from bench.features.cache import extract_features

    folder = tmp_path / "imgs"
    folder.mkdir()
    for i in range(4):
        Image.new("RGB", (24, 24), (60 * i, 20, 200 - 40 * i)).save(folder / f"{i}.png")
    paths = sorted(folder.glob("*.png"))
    extractor = get_extractor("efficientnet-lite0")
    first = extract_features(paths, extractor, tmp_path / "cache", progress=False)
    npy = Path(first.cache_file)
    data = npy.read_bytes()
    if damage == "truncate":
        npy.write_bytes(data[: len(data) - 64])
    else:  # same length, one feature changed: np.load alone cannot notice
        altered = bytearray(data)
        altered[-3] ^= 0xFF
        npy.write_bytes(bytes(altered))
    with caplog.at_level(logging.WARNING, logger="t2i_audit"):
        again = extract_features(paths, extractor, tmp_path / "cache", progress=False)
    assert not again.from_cache
    assert any("damaged" in r.message or "unreadable" in r.message or "inconsistent" in r.message
               for r in caplog.records), [r.message for r in caplog.records]
    np.testing.assert_array_equal(again.features, first.features)
    assert npy.read_bytes() == data  # rebuilt to the same bytes
    assert extract_features(paths, extractor, tmp_path / "cache", progress=False).from_cache
