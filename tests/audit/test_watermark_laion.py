"""LAION's watermark detector as the probe (``--probe-file FILE.pt``): the pickle is refused without
``--allow-pickle``, converted to safetensors once with it, and then loaded from safetensors.

The real ``watermark_model_v1.pt`` cannot be downloaded here; a randomly initialised network of the same
architecture, saved the same way (a pickled state dict), takes the same code path."""

import json

import numpy as np
import pytest
import torch
from safetensors import safe_open

from audit.probes.watermark.laion import (LAION_THRESHOLD, NAME, build_model, converted_paths, is_laion_file,
                                          laion_probe, to_safetensors)
from bench.errors import UserError
from bench.world import random_scene, render
from conftest import run_cli


@pytest.fixture(autouse=True)
def own_cache(tmp_path, monkeypatch):
    """A cache of this test's own: a copy converted by another test (same bytes, same sha) would be found."""
    monkeypatch.setenv("T2I_AUDIT_CACHE", str(tmp_path / "cache"))


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return build_model()


@pytest.fixture
def pt_file(tmp_path, model):
    path = tmp_path / "weights" / "watermark_model_v1.pt"
    path.parent.mkdir()
    torch.save(model.state_dict(), path)
    return path


def test_the_pickle_is_refused_without_the_flag(pt_file):
    with pytest.raises(UserError, match="pickled torch file.*--allow-pickle"):
        to_safetensors(pt_file)
    assert sorted(p.name for p in pt_file.parent.iterdir()) == ["watermark_model_v1.pt"]  # nothing written


def test_converted_once_then_loaded_from_safetensors(pt_file, model, monkeypatch):
    out = to_safetensors(pt_file, allow_pickle=True)
    assert out == pt_file.with_name("watermark_model_v1.pt.safetensors") and out.is_file()
    with safe_open(str(out), framework="pt") as f:
        meta = f.metadata()
        assert meta["architecture"] == NAME and meta["source_sha256"] and set(f.keys()) == set(model.state_dict())
    assert is_laion_file(out) and is_laion_file(pt_file)

    # later uses: no flag needed and the pickle is never read again
    def no_pickle(*a, **k):
        raise AssertionError("torch.load called on the pickle again")

    monkeypatch.setattr(torch, "load", no_pickle)
    assert to_safetensors(pt_file) == out
    extractor, probe, weights = laion_probe(pt_file)
    assert weights == out and probe.threshold == LAION_THRESHOLD and probe.extractor_key == extractor.key
    assert extractor.key.startswith(NAME)

    # the probe's score is LAION's pwatermark: the softmax of class 0 of the same network
    rng = np.random.default_rng(0)
    images = [np.asarray(render(random_scene(rng))) for _ in range(3)]
    logits = extractor(images)
    assert logits.shape == (3, 2)
    expected = torch.softmax(torch.from_numpy(logits), dim=1)[:, 0].numpy()
    np.testing.assert_allclose(probe.scores(logits), expected, rtol=1e-5)
    from PIL import Image

    x = np.stack([np.asarray(Image.fromarray(im).resize((256, 256), Image.BILINEAR), np.float32) / 255 for im in images])
    x = (x - np.array([0.485, 0.456, 0.406], np.float32)) / np.array([0.229, 0.224, 0.225], np.float32)
    with torch.inference_mode():
        direct = model.eval()(torch.from_numpy(x.transpose(0, 3, 1, 2).copy())).numpy()
    np.testing.assert_allclose(logits, direct, rtol=1e-4, atol=1e-4)


def test_a_changed_pickle_is_converted_again(pt_file, model):
    first = to_safetensors(pt_file, allow_pickle=True)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    state["classifier.5.bias"] += 1.0
    torch.save(state, pt_file)
    with pytest.raises(UserError, match="pickled"):  # the copy belongs to the old file
        to_safetensors(pt_file)
    again = to_safetensors(pt_file, allow_pickle=True)
    with safe_open(str(again), framework="pt") as f:
        assert torch.equal(f.get_tensor("classifier.5.bias"), state["classifier.5.bias"])
    assert again == first


def test_the_cache_is_used_when_the_folder_is_not_writable(pt_file, monkeypatch):
    from audit.probes.watermark import laion

    blocked = pt_file.parent / "blocked"
    blocked.write_text("a file, so no folder can be made here")
    cache_target = converted_paths(pt_file)[1]
    monkeypatch.setattr(laion, "converted_paths", lambda pt: [blocked / "x.safetensors", cache_target])
    assert to_safetensors(pt_file, allow_pickle=True) == cache_target and cache_target.is_file()


def test_other_architectures_and_bad_files_are_refused(tmp_path):
    bad = tmp_path / "other.pt"
    torch.save({"fc.weight": torch.zeros(2, 4)}, bad)
    with pytest.raises(UserError, match="does not fit LAION's watermark detector"):
        to_safetensors(bad, allow_pickle=True)
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a pickle")
    with pytest.raises(UserError, match="could not read"):
        to_safetensors(junk, allow_pickle=True)
    with pytest.raises(UserError, match="does not exist"):
        to_safetensors(tmp_path / "missing.pt")
    other = tmp_path / "x.onnx"
    other.write_bytes(b"x")
    with pytest.raises(UserError, match="neither"):
        to_safetensors(other)


@pytest.mark.slow
def test_cli_refuses_then_converts_and_audits(pt_file, tmp_path):
    from bench.importer import import_images

    folder = tmp_path / "images"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(3):
        render(random_scene(rng)).save(folder / f"p{i}.png")
    (tmp_path / "prompts.jsonl").write_text("".join(json.dumps({"id": f"p{i}", "prompt": "a scene"}) + "\n"
                                                    for i in range(3)))
    run = tmp_path / "run"
    import_images(str(folder), str(tmp_path / "prompts.jsonl"), "test", str(run))
    base = ["-m", "audit.cli", "watermark", str(run), "--probe-file", str(pt_file), "--no-progress", "--no-invisible"]
    res = run_cli(*base)
    assert res.returncode == 2 and res.stderr.startswith("error: ") and res.stderr.count("\n") == 1
    assert "--allow-pickle" in res.stderr and not (run / "audit" / "watermark.parquet").exists()
    res = run_cli(*base, "--allow-pickle")
    assert res.returncode == 0, res.stderr
    assert "watermark_model_v1.pt.safetensors" in res.stdout and (run / "audit" / "watermark.parquet").exists()
    summary = json.loads((run / "summary.json").read_text())["watermark"]
    assert summary["extractor"].startswith(NAME) and summary["threshold"] == LAION_THRESHOLD
    res = run_cli(*base)  # converted: no flag needed now
    assert res.returncode == 0, res.stderr
    res = run_cli(*base, "--probe", str(pt_file))
    assert res.returncode == 2 and "not both" in res.stderr
