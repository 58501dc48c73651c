"""``t2i-audit watermark RUN`` end to end on a tiny imported run, and its bad-input errors."""

import json

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from scipy import ndimage

from audit.probes.watermark.invisible import embed_invisible
from audit.probes.watermark.run import COLUMNS, audit_watermark
from audit.probes.watermark.classifier import ProbeConfig, WatermarkProbe, train_probe
from bench.errors import UserError
from bench.features import get_extractor
from bench.importer import import_images
from bench.models.evaluator_clip import DEFAULT_DIR
from bench.world import add_watermark, build_corpus, random_scene, render, render_row
from conftest import run_cli


@pytest.fixture(scope="module")
def extractor():
    return get_extractor(f"clip:local-dir:{DEFAULT_DIR}")


@pytest.fixture(scope="module")
def probe_file(tmp_path_factory, extractor):
    probe = train_probe(extractor, ProbeConfig(n_base=40, corpus_rows=1000), progress=False)
    return probe.save(tmp_path_factory.mktemp("probe") / "probe.safetensors")


def _photo(seed: int, size: int = 256) -> np.ndarray:
    rng = np.random.default_rng(seed)
    field = ndimage.gaussian_filter(rng.normal(size=(size, size, 3)), sigma=(3, 3, 0))
    return np.clip(128 + field / field.std() * 30, 0, 255).astype(np.uint8)


@pytest.fixture
def run(tmp_path):
    """8 renders (4 with the PIXSTOCK mark), a 256 px image with SD's invisible mark and a clean one,
    imported with t2i-bench import."""
    folder = tmp_path / "images"
    folder.mkdir()
    rng = np.random.default_rng(0)
    lines = []
    for i in range(8):
        img = render(random_scene(rng))
        if i % 2:
            img = add_watermark(img)
        img.save(folder / f"p{i}.png")
        lines.append({"id": f"p{i}", "prompt": f"scene {i}", "category": "marked" if i % 2 else "clean"})
    Image.fromarray(embed_invisible(_photo(1), "StableDiffusionV1")).save(folder / "big0.png")
    Image.fromarray(_photo(2)).save(folder / "big1.png")
    lines += [{"id": "big0", "prompt": "big sd", "category": "big"}, {"id": "big1", "prompt": "big clean", "category": "big"}]
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text("".join(json.dumps(x) + "\n" for x in lines))
    out = tmp_path / "run"
    import_images(str(folder), str(prompts), "test", str(out))
    return out


@pytest.fixture(scope="module")
def index_dir(tmp_path_factory, extractor):
    """A flat index of 40 shapes-laion rows (with pwatermark), made with the same CLIP."""
    from audit.index import write_index_folder

    corpus = build_corpus(1000, seed=0).iloc[:40].reset_index(drop=True)
    emb = extractor([np.asarray(render_row(r)) for _, r in corpus.iterrows()])
    out = tmp_path_factory.mktemp("index") / "idx"
    write_index_folder(out, emb, corpus, info={"model_key": extractor.key, "source": "test"})
    return out


def test_end_to_end_with_index(run, probe_file, index_dir, extractor):
    (run / "summary.json").write_text(json.dumps({**json.loads((run / "summary.json").read_text()),
                                                  "memorization": {"n_images": 1}}))
    result = audit_watermark(run, probe=str(probe_file), probe_features="clip", index=index_dir, k=3, progress=False)
    table = pd.read_parquet(run / "audit" / "watermark.parquet")
    assert list(table.columns) == COLUMNS and len(table) == 10
    assert table["visible_score"].between(0, 1).all()
    assert (table["visible"] == (table["visible_score"] >= result.probe.threshold)).all()

    # invisible: only the two 256 px images are checkable; the marked one is found
    by_id = table.set_index("prompt_id")
    assert by_id.loc["big0", "invisible"] and by_id.loc["big0", "invisible_message"] == "StableDiffusionV1"
    assert not by_id.loc["big1", "invisible"] and by_id.loc["big1", "invisible_message"] == ""
    assert by_id["invisible_checkable"].sum() == 2

    # neighbour pwatermark: the mean over the top-3 by cosine, recomputed by brute force
    meta = pd.read_parquet(next((index_dir / "metadata").glob("*.parquet")))
    emb = np.concatenate([np.load(p) for p in sorted((index_dir / "img_emb").glob("*.npy"))]).astype(np.float32)
    q = extractor([np.asarray(Image.open(run / p).convert("RGB")) for p in table["path"]])
    top = np.argsort(-(q @ emb.T), axis=1)[:, :3]
    expected = meta["pwatermark"].to_numpy()[top].mean(axis=1)
    np.testing.assert_allclose(table["neighbour_pwatermark"], expected, atol=1e-6)

    summary = json.loads((run / "summary.json").read_text())
    wm = summary["watermark"]
    assert summary["memorization"] == {"n_images": 1}  # other keys survive
    assert wm["n_images"] == 10 and wm["visible_rate"] == pytest.approx(table["visible"].mean())
    assert wm["threshold"] == result.probe.threshold and wm["probe"] == probe_file.name
    assert wm["invisible_rate"] == pytest.approx(0.5) and wm["n_skipped"] == 0
    assert wm["neighbour_pwatermark_mean"] == pytest.approx(expected.mean())
    assert not list((run / "audit").glob(".tmp-*"))


def test_without_index_and_with_a_corrupt_image(run, probe_file):
    (run / "images" / "p3__s000__gna.png").write_bytes(b"\x89PNG\r\n\x1a\nbroken")
    result = audit_watermark(run, probe=str(probe_file), probe_features="clip", progress=False)
    assert len(result.table) == 9 and result.summary["n_skipped"] == 1
    assert "p3" not in set(result.table["prompt_id"])
    assert result.table["neighbour_pwatermark"].isna().all()
    assert result.summary["neighbour_pwatermark_mean"] is None


def test_cli_writes_outputs_and_refuses_bad_input(run, probe_file, tmp_path):
    ok = run_cli("-m", "audit.cli", "watermark", str(run), "--probe", str(probe_file), "--probe-features", "clip",
                 "--no-progress")
    assert ok.returncode == 0, ok.stderr
    assert "visible watermark:" in ok.stdout and (run / "audit" / "watermark.parquet").exists()

    # a probe made for another extractor
    other = WatermarkProbe.load(probe_file)
    other = WatermarkProbe(other.weight, other.bias, other.threshold, "clip-ViT-B-32__w0123__x__float32", other.info)
    bad = other.save(tmp_path / "other.safetensors")
    before = (run / "audit" / "watermark.parquet").read_bytes()
    res = run_cli("-m", "audit.cli", "watermark", str(run), "--probe", str(bad), "--probe-features", "clip",
                  "--no-progress")
    assert res.returncode == 2 and res.stderr.startswith("error: ") and "Traceback" not in res.stderr
    assert "trained for extractor" in res.stderr
    assert (run / "audit" / "watermark.parquet").read_bytes() == before  # nothing lost

    # a run with no images
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "manifest.json").write_text("{}")
    res = run_cli("-m", "audit.cli", "watermark", str(empty), "--probe", str(probe_file), "--probe-features", "clip")
    assert res.returncode == 2 and "has no images" in res.stderr and "Traceback" not in res.stderr
    res = run_cli("-m", "audit.cli", "watermark", str(tmp_path / "nowhere"))
    assert res.returncode == 2 and "does not exist" in res.stderr


def test_every_image_unreadable_is_a_user_error(run, probe_file):
    for p in (run / "images").glob("*.png"):
        p.write_bytes(b"junk")
    with pytest.raises(UserError, match="could be read"):
        audit_watermark(run, probe=str(probe_file), probe_features="clip", progress=False)


def test_default_probe_features_are_efficientnet_and_find_the_planted_mark(run, tmp_path):
    """The default probe reads EfficientNet-Lite0 features; trained on synthetic overlays only
    (a few dozen base images, crisp like this run's renders: no VAE round trip), it still ranks
    every PIXSTOCK-marked render above every clean one.  A probe for the CLIP is refused with
    these features."""
    effnet = get_extractor("efficientnet-lite0")
    probe = train_probe(effnet, ProbeConfig(n_base=40, corpus_rows=1000, vae=""), progress=False)
    path = probe.save(tmp_path / "effnet-probe.safetensors")
    result = audit_watermark(run, probe=str(path), progress=False)
    assert result.summary["extractor"] == effnet.key and result.summary["clip"] is None  # no index: no CLIP
    renders = result.table[result.table["category"].isin(["marked", "clean"])]
    marked = renders.loc[renders["category"] == "marked", "visible_score"]
    clean = renders.loc[renders["category"] == "clean", "visible_score"]
    assert len(marked) == 4 and len(clean) == 4
    assert marked.min() > clean.max()
    with pytest.raises(UserError, match="trained for extractor"):
        audit_watermark(run, probe=str(path), probe_features="clip", progress=False)
