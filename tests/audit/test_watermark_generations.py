"""The visible-watermark probe on generations: training images through the generator's VAE, the
threshold chosen on generations, the per-category figures, the shipped head and its document section."""

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from audit.calibration.watermark import (GENERATION_CATEGORIES, agreement_threshold, generation_markdown,
                                         rate_figures, split_figures, watermark_markdown)
from audit.probes.watermark.classifier import (DEFAULT_GENERATED, DEFAULT_VAE, SHIPPED_HEADS, ProbeConfig, WatermarkProbe,
                                               default_config, load_or_train_probe, make_training_examples,
                                               probe_cache_path, train_probe)
from audit.probes.watermark.cli import probe_vae
from audit.probes.watermark.vae import load_vae, roundtrip, roundtrip_examples, vae_digest
from bench.intervals import wilson
from bench.world import random_scene, render

REPO = Path(__file__).resolve().parents[2]
COMMITTED = REPO / "docs" / "audit-calibration" / "watermark-builtin-shapes-ldm.json"


# --------------------------------------------------------------------------- threshold and figures

def _brute_force_agreement(scores, truth, t):
    return int(((scores >= t) == truth).sum())


@pytest.mark.parametrize("seed", range(5))
def test_agreement_threshold_is_the_best_threshold(seed):
    """No threshold at all (any value in [0, 1]) agrees with the truth on more images."""
    rng = np.random.default_rng(seed)
    truth = rng.random(300) < 0.3
    scores = np.clip(np.where(truth, rng.normal(0.7, 0.15, 300), rng.normal(0.35, 0.15, 300)), 0, 1).round(3)
    t = agreement_threshold(scores, truth)
    best = _brute_force_agreement(scores, truth, t)
    grid = np.r_[np.linspace(0, 1, 2001), np.unique(scores)]
    assert best == max(_brute_force_agreement(scores, truth, g) for g in grid)
    assert scores.min() - 1e-3 <= t <= scores.max() + 1e-3


def test_agreement_threshold_separates_separable_scores_halfway():
    scores = np.array([0.1, 0.2, 0.3, 0.6, 0.7, 0.9])
    truth = np.array([0, 0, 0, 1, 1, 1], bool)
    assert agreement_threshold(scores, truth) == pytest.approx(0.45)
    # all clean: nothing may be flagged
    assert (scores >= agreement_threshold(scores, np.zeros(6, bool))).sum() == 0


def test_rate_figures_use_the_wilson_interval_and_signed_pp():
    truth = np.r_[np.ones(5, bool), np.zeros(95, bool)]
    flagged = np.r_[np.ones(12, bool), np.zeros(88, bool)]
    f = rate_figures(flagged, truth)
    assert (f["n"], f["truth_k"], f["probe_k"]) == (100, 5, 12)
    assert f["diff_pp"] == 7.0 and f["probe_rate"] == 0.12
    assert f["truth_ci"] == [round(x, 4) for x in wilson(5, 100)]
    assert f["probe_ci"][0] < 0.12 < f["probe_ci"][1]


def test_split_figures_by_category():
    rng = np.random.default_rng(0)
    cats = np.repeat(GENERATION_CATEGORIES, 40)
    truth = (cats == "stock_cue") & (rng.random(len(cats)) < 0.9)
    scores = np.where(truth, 0.8, 0.2) + rng.normal(0, 0.05, len(cats))
    table = pd.DataFrame({"category": cats, "truth": truth})
    f = split_figures(table, scores, 0.5)
    assert list(f["by_category"]) == list(GENERATION_CATEGORIES)
    assert f["auroc"] == 1.0 and f["agreement"] == 1.0 and f["max_abs_diff_pp"] == 0.0
    f = split_figures(table, scores, 0.0)  # everything flagged
    assert f["by_category"]["no_cue"]["diff_pp"] == 100.0 and f["max_abs_diff_pp"] == 100.0


# --------------------------------------------------------------------------- the VAE round trip

@pytest.fixture(scope="module")
def vae():
    return load_vae(DEFAULT_VAE)


def test_vae_roundtrip_keeps_sizes_order_and_labels(vae):
    rng = np.random.default_rng(0)
    images = [np.asarray(render(random_scene(rng))) for _ in range(5)]
    odd = np.asarray(render(random_scene(rng)))[:60, :62]  # not a multiple of 8: padded, cropped back
    examples = [(im, i % 2, i) for i, im in enumerate(images)] + [(odd, 1, 9)]
    out = list(roundtrip_examples(iter(examples), vae, batch_size=2))
    assert [(o[1], o[2]) for o in out] == [(e[1], e[2]) for e in examples]
    assert [o[0].shape for o in out] == [e[0].shape for e in examples] and all(o[0].dtype == np.uint8 for o in out)
    # the generator's texture: close to the input, but not the input
    diff = np.abs(out[0][0].astype(int) - images[0].astype(int))
    assert 0 < diff.mean() < 40
    # deterministic (the latent mean), and batching does not change an image
    # (up to the last bit: another batch shape may round differently, docs/PITFALLS.md "Batch shape")
    alone = roundtrip([images[0]], vae)[0].astype(int)
    changed = np.abs(alone - out[0][0].astype(int))
    assert changed.max() <= 1 and (changed > 0).mean() < 0.001


def test_vae_is_part_of_the_config_digest_and_recorded():
    with_vae, without = ProbeConfig(), ProbeConfig(vae="")
    assert with_vae.vae == DEFAULT_VAE == "builtin:shapes-ldm"
    d = with_vae.to_dict()
    assert d["vae"] == DEFAULT_VAE and d["vae_sha256"] == vae_digest(DEFAULT_VAE) and len(d["vae_sha256"]) == 16
    assert "vae_sha256" not in without.to_dict()
    assert with_vae.digest() != without.digest()
    assert ProbeConfig(vae="builtin:tiny-random").digest() != with_vae.digest()


def test_training_passes_every_image_through_the_vae(monkeypatch):
    """train_probe embeds the round-tripped images: the clean and the marked twin alike."""
    from audit.probes.watermark import classifier

    seen = []

    class Spy:
        key, dim = "spy", 3

        def __call__(self, batch):
            seen.extend(batch)
            return np.array([[im.mean(), im.std(), im[..., 0].mean()] for im in batch], np.float32)

    config = ProbeConfig(n_base=12, corpus_rows=1000, max_blur=0.0)
    probe = classifier.train_probe(Spy(), config, progress=False)
    plain = [im for im, _, _ in make_training_examples(config)]
    assert len(seen) == len(plain) == 24
    trips = roundtrip(plain[:4], load_vae(DEFAULT_VAE))
    for got, want in zip(seen[:4], trips):
        np.testing.assert_array_equal(got, want)
    assert probe.info["config"]["vae"] == DEFAULT_VAE and probe.info["training"]["seconds"] >= 0
    # without the VAE the images are the renders themselves
    seen.clear()
    classifier.train_probe(Spy(), ProbeConfig(n_base=12, corpus_rows=1000, max_blur=0.0, vae=""), progress=False)
    np.testing.assert_array_equal(seen[0], plain[0])


def test_training_captions_are_seeded_train_rows_half_marked():
    from audit.probes.watermark.generated import training_captions
    from bench.world import build_corpus

    caps = training_captions(40, 1000, seed=0)
    assert caps == training_captions(40, 1000, seed=0) and caps != training_captions(40, 1000, seed=1)
    assert sum(c["category"] == "marked" for c in caps) == 20 and len({c["id"] for c in caps}) == 40
    corpus = build_corpus(1000, seed=0)
    train = corpus[corpus["split"] == "train"]
    assert {c["prompt"] for c in caps} <= set(train["caption"])
    assert {c["prompt"] for c in caps if c["category"] == "marked"} <= set(train.loc[train["has_watermark"], "caption"])


def test_generated_examples_are_labelled_by_the_exact_detector(tmp_path, monkeypatch):
    """The training generations: one image per caption from the model, labelled by detect_watermark; resumed."""
    from audit.probes.watermark import generated
    from bench.world import detect_watermark
    from bench.world.detect import WATERMARK_THRESHOLD

    monkeypatch.setattr(generated, "GENERATED_STEPS", 2)
    run = generated.generated_run("builtin:tiny-random", 4, 1000, 0, progress=False, cache_root=tmp_path)
    monkeypatch.setattr(generated, "generated_run", lambda *a, **k: run)
    out = list(generated.generated_examples("builtin:tiny-random", 4, 1000, 0, first_group=100, progress=False))
    assert [g for _, _, g in out] == [100, 101, 102, 103]
    assert [lab for _, lab, _ in out] == [int(detect_watermark(im) >= WATERMARK_THRESHOLD) for im, _, _ in out]
    assert (run / "manifest.json").is_file() and (run.parent / "prompts.jsonl").is_file()


def test_generated_examples_need_the_shapes_world(tmp_path):
    from bench.errors import UserError

    with pytest.raises(UserError, match="exact watermark detector"):
        train_probe(object(), ProbeConfig(source=str(tmp_path), generated=10), progress=False)
    assert default_config().generated == DEFAULT_GENERATED and ProbeConfig().generated == 0
    assert "generator" not in ProbeConfig().to_dict() and default_config().to_dict()["generator"] == DEFAULT_VAE
    with pytest.raises(UserError, match="at least 10 base images"):  # neither synthetic pairs nor generations
        train_probe(object(), default_config(generated=0), progress=False)


def test_a_model_that_does_not_exist_is_a_user_error():
    from bench.errors import UserError

    with pytest.raises(UserError, match="does not exist"):
        load_vae("./no/such/model")


def test_cli_probe_settings(monkeypatch):
    """``t2i-audit watermark`` trains (or loads) the shipped head's settings unless told otherwise."""
    from audit.probes.watermark import cli, run

    seen = {}

    def fake_audit(run_dir, **kw):
        seen.update(kw)
        raise RuntimeError("stop")

    monkeypatch.setattr(run, "audit_watermark", fake_audit)
    for options, want in (({}, default_config()),
                          ({"probe_images": "photos"}, ProbeConfig(source="photos", vae="")),
                          ({"probe_images": "photos", "probe_vae": "org/model"}, ProbeConfig(source="photos", vae="org/model")),
                          ({"probe_n": 500}, default_config(n_base=500, vae=DEFAULT_VAE)),
                          ({"probe_n": 500, "probe_generated": 0, "probe_vae": "none"},
                           default_config(n_base=500, generated=0, vae=""))):
        with pytest.raises(RuntimeError):
            cli.run_probe(Path("run"), options)
        assert seen["config"] == want


def test_probe_vae_option():
    assert probe_vae(None, None) == DEFAULT_VAE
    assert probe_vae(None, "photos/") == ""
    assert probe_vae("none", None) == "" and probe_vae("None", "photos/") == ""
    assert probe_vae("org/model", "photos/") == "org/model"


# --------------------------------------------------------------------------- the shipped head

def test_the_shipped_default_head_was_calibrated_on_generations(tmp_path):
    """One head ships for the default features; its settings are the default ProbeConfig (with the VAE),
    its threshold is the one measured on generations of the calibration seed, and it says so."""
    from audit.calibration.config import SPLIT_SEEDS
    from audit.probes.watermark.run import DEFAULT_PROBE_FEATURES
    from bench.features import get_extractor

    heads = sorted(SHIPPED_HEADS.glob("*.safetensors"))
    assert len(heads) == 1 and heads[0].with_suffix(".json").is_file()
    effnet = get_extractor(DEFAULT_PROBE_FEATURES)
    assert heads[0] == probe_cache_path(effnet.key, default_config(), SHIPPED_HEADS)
    probe, how, _ = load_or_train_probe(effnet, default_config(), cache_root=tmp_path, progress=False)
    assert how == "shipped" and not any(tmp_path.iterdir())
    assert probe.info["config"] == default_config().to_dict()  # the recipe, with the generator's weights digest
    assert probe.info["config"]["generated"] == DEFAULT_GENERATED == probe.info["training"]["n_generated"]
    assert 0 < probe.info["training"]["n_generated_marked"] < DEFAULT_GENERATED and probe.info["training"]["seconds"] > 0
    cal = probe.info["calibration"]
    assert cal["threshold"] == round(probe.threshold, 6) and cal["seeds"] == SPLIT_SEEDS
    assert f"seed {SPLIT_SEEDS['calibration']}" in probe.info["threshold_source"]
    assert set(cal["evaluation"]["by_category"]) == set(GENERATION_CATEGORIES)
    assert probe.info["training"]["val_threshold"] != probe.threshold  # not the synthetic Youden threshold
    # the committed calibration measured this very head
    committed = json.loads(COMMITTED.read_text())
    assert committed["probes"][committed["default"]]["file"] == heads[0].name
    assert committed["generations"]["threshold"] == cal["threshold"]


def test_a_head_for_other_features_is_refused_with_one_line(tmp_path):
    from bench.importer import import_images
    from conftest import run_cli

    folder = tmp_path / "images"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(2):
        render(random_scene(rng)).save(folder / f"p{i}.png")
    (tmp_path / "prompts.jsonl").write_text("".join(json.dumps({"id": f"p{i}", "prompt": "a scene"}) + "\n"
                                                    for i in range(2)))
    run = tmp_path / "run"
    import_images(str(folder), str(tmp_path / "prompts.jsonl"), "test", str(run))
    head = sorted(SHIPPED_HEADS.glob("*.safetensors"))[0]
    res = run_cli("-m", "audit.cli", "watermark", str(run), "--probe", str(head), "--probe-features", "clip",
                  "--no-progress", "--no-invisible")
    assert res.returncode == 2 and res.stderr.startswith("error: ") and res.stderr.count("\n") == 1
    assert "trained for extractor efficientnet-lite0" in res.stderr
    assert not (run / "audit" / "watermark.parquet").exists()


# --------------------------------------------------------------------------- the document

def test_markdown_shows_threshold_where_measured_and_intervals():
    r = json.loads(COMMITTED.read_text())
    g = r["generations"]
    text = watermark_markdown(r)
    assert f"Threshold **{g['threshold']:.4f}**" in text
    assert f"calibration seed ({g['seeds']['calibration']}" in text and f"Evaluation seed {g['seeds']['evaluation']}" in text
    for cat in GENERATION_CATEGORIES:
        c = g["splits"]["evaluation"]["by_category"][cat]
        assert f"| {cat} | {c['n']} | {c['truth_k'] / c['n']:.3f} [{c['truth_ci'][0]:.3f}, {c['truth_ci'][1]:.3f}] |" in text
    assert str(g["splits"]["evaluation"]["auroc"]) in text
    assert text == watermark_markdown(json.loads(COMMITTED.read_text()))  # deterministic
    # the committed document carries the committed result's section
    assert text in (REPO / "docs" / "audit-calibration.md").read_text()


def test_generation_markdown_reports_the_head_threshold_when_it_differs():
    r = json.loads(COMMITTED.read_text())
    g = dict(r["generations"])
    g["evaluation_at_probe_threshold"] = g["splits"]["evaluation"]
    g["probe_threshold"] = 0.123
    text = "\n".join(generation_markdown(g, r["probes"][r["default"]]))
    assert "head's own threshold 0.1230" in text


@pytest.mark.slow
def test_ship_script_trains_calibrates_and_writes_a_head(tmp_path):
    """scripts/train_watermark_head.py end to end with builtin:tiny-random: the head's threshold is the one
    that agrees most with the exact detector on the calibration seed's generations, and its JSON says so."""
    from audit.calibration.config import SPLIT_SEEDS
    from conftest import run_cli

    heads = tmp_path / "heads"
    res = run_cli(str(REPO / "scripts" / "train_watermark_head.py"), "--model", "builtin:tiny-random",
                  "--probe-n", "10", "--probe-generated", "0", "--samples", "1", "--steps", "2",
                  "--out", str(tmp_path / "out"), "--heads", str(heads), "--no-progress", timeout=1200)
    assert res.returncode == 0, res.stderr
    files = sorted(heads.glob("*.safetensors"))
    assert len(files) == 1 and files[0].with_suffix(".json").is_file() and f"wrote {files[0]}" in res.stdout
    probe = WatermarkProbe.load(files[0])
    cal = probe.info["calibration"]
    assert cal["model"] == "builtin:tiny-random" and cal["seeds"] == SPLIT_SEEDS and cal["threshold"] == round(probe.threshold, 6)
    assert probe.info["config"]["n_base"] == 10 and probe.info["config"]["vae"] == DEFAULT_VAE
    assert set(cal["evaluation"]["by_category"]) == set(GENERATION_CATEGORIES)
    assert all(c["n"] >= 24 for c in cal["evaluation"]["by_category"].values())
    assert "seed 1" in probe.info["threshold_source"]
    for split in ("calibration", "evaluation"):
        assert len(list((tmp_path / "out" / "watermark-builtin-tiny-random").glob(f"{split}-*"))) == len(GENERATION_CATEGORIES)
