"""Index-free memorization score (Wen et al. 2024): numeric core, adapter and ``t2i-audit memorization-score``.

The numeric core against naive loops and sklearn; the adapter on ``builtin:tiny-random``
and ``builtin:shapes-ldm`` against a hand-written reference (separate conditional and
unconditional UNet calls), for determinism, batch-size and prefix independence; the
command's output files and its one-line errors (exit code 2).  Torch runs on one thread
(two cores are shared).
"""

import json
import math

import numpy as np
import pandas as pd
import pytest

from audit.probes.memorization.noise_gap import auroc, bootstrap_auroc, epsilon_gap_scale, gap_norms, memorization_score
from bench.errors import UserError


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


# ------------------------------------------------------------------ numeric core


def test_gap_norms_and_score_match_naive_loops():
    rng = np.random.default_rng(0)
    cond = rng.normal(size=(3, 4, 5, 6)).astype(np.float32)
    uncond = rng.normal(size=(3, 4, 5, 6)).astype(np.float32)
    naive = [math.sqrt(sum((float(a) - float(b)) ** 2 for a, b in zip(cond[i].ravel(), uncond[i].ravel())))
             for i in range(3)]
    np.testing.assert_allclose(gap_norms(cond, uncond), naive, rtol=1e-12)
    assert gap_norms(cond, cond).tolist() == [0.0, 0.0, 0.0]

    norms = rng.uniform(size=(2, 4, 7))  # prompts, generations, steps
    for steps, generations in ((1, 1), (3, 2), (7, 4)):
        naive = [sum(norms[p, g, s] for g in range(generations) for s in range(steps)) / (steps * generations)
                 for p in range(2)]
        np.testing.assert_allclose(memorization_score(norms, steps, generations), naive, rtol=1e-12)
    # the authors' notebook: mean over generations, then over steps (the same as the plain mean)
    np.testing.assert_allclose(memorization_score(norms[0], 5, 3), np.mean(np.mean(norms[0, :3, :5], axis=0)))
    with pytest.raises(ValueError):
        memorization_score(norms, steps=8)
    with pytest.raises(ValueError):
        gap_norms(cond, uncond[:2])


@pytest.mark.parametrize("prediction_type", ["epsilon", "v_prediction", "sample"])
def test_epsilon_gap_scale_is_the_conversion_of_a_gap(prediction_type):
    rng = np.random.default_rng(1)
    x_t, out_c, out_u = (rng.normal(size=(2, 4, 8, 8)) for _ in range(3))
    alpha_bar = 0.3
    a, s = math.sqrt(alpha_bar), math.sqrt(1 - alpha_bar)
    to_eps = {"epsilon": lambda o: o, "v_prediction": lambda o: a * o + s * x_t,
              "sample": lambda o: (x_t - a * o) / s}[prediction_type]
    expected = gap_norms(to_eps(out_c), to_eps(out_u))
    np.testing.assert_allclose(gap_norms(out_c, out_u) * epsilon_gap_scale(prediction_type, alpha_bar), expected,
                               rtol=1e-10)
    assert epsilon_gap_scale("v_prediction", 0.0) == 0.0  # zero terminal SNR: no eps gap at all


def test_auroc_is_sklearns_with_ties_and_bootstrap_is_seeded():
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(2)
    pos = rng.integers(0, 6, 40).astype(float)  # many ties
    neg = rng.integers(0, 5, 60).astype(float)
    expected = roc_auc_score([1] * 40 + [0] * 60, np.concatenate([pos, neg]))
    assert auroc(pos, neg) == pytest.approx(expected, abs=1e-12)
    assert auroc([2.0, 3.0], [0.0, 1.0]) == 1.0 and auroc([0.0], [1.0]) == 0.0 and auroc([1.0], [1.0]) == 0.5
    assert math.isnan(auroc([], [1.0]))
    value, low, high = bootstrap_auroc(pos, neg, resamples=300, seed=3)
    assert value == pytest.approx(expected) and low < value < high
    assert bootstrap_auroc(pos, neg, resamples=300, seed=3) == (value, low, high)
    assert bootstrap_auroc(pos, neg, resamples=300, seed=4) != (value, low, high)


# ------------------------------------------------------------------ adapter on the built-in models


@pytest.fixture(scope="module")
def prompts():
    from bench.prompts import load_prompt_set

    ps = load_prompt_set("shapes-audit").prompts
    return [p for p in ps if p.category == "iconic"][:2] + [p for p in ps if p.category == "fresh"][:2]


@pytest.fixture(scope="module")
def tiny():
    from audit.probes.memorization.noise_gap_model import load_scoring_pipeline

    return load_scoring_pipeline("builtin:tiny-random", "cpu")[0]


@pytest.fixture(scope="module")
def shapes():
    from audit.probes.memorization.noise_gap_model import load_scoring_pipeline

    return load_scoring_pipeline("builtin:shapes-ldm", "cpu")[0]


def _reference_first_step(pipe, prompt, seed, generation, num_inference_steps=50):
    """The score of one prompt at the first step, written out by hand: separate UNet calls, no batching."""
    import torch
    from diffusers import DDIMScheduler

    from bench.rundir import image_seed

    unet = pipe.unet
    with torch.inference_mode():
        def embed(text):
            ids = pipe.tokenizer([text], padding="max_length", max_length=pipe.tokenizer.model_max_length,
                                 truncation=True, return_tensors="pt").input_ids
            return pipe.text_encoder(ids)[0]

        side = unet.config.sample_size  # latent side
        x = torch.randn((1, unet.config.in_channels, side, side),
                        generator=torch.Generator("cpu").manual_seed(image_seed(seed, prompt.id, generation)))
        scheduler = DDIMScheduler.from_config(pipe.scheduler.config)
        scheduler.set_timesteps(num_inference_steps)
        t = scheduler.timesteps[0]
        x = scheduler.scale_model_input(x * scheduler.init_noise_sigma, t)
        cond = unet(x, t, encoder_hidden_states=embed(prompt.prompt)).sample
        uncond = unet(x, t, encoder_hidden_states=embed("")).sample
    return float(torch.linalg.vector_norm((cond - uncond).double()))


@pytest.mark.parametrize("model", ["tiny", "shapes"])
def test_first_step_matches_a_hand_written_reference(model, request, prompts):
    from audit.probes.memorization.noise_gap_model import ScoreSettings, score_prompts

    pipe = request.getfixturevalue(model)
    result = score_prompts(pipe, prompts[1:3], ScoreSettings(steps=1, generations=2, seed=5), batch_size=2)
    for i, prompt in enumerate(prompts[1:3]):
        for g in range(2):
            assert result.norms[i, g, 0] == pytest.approx(_reference_first_step(pipe, prompt, 5, g), rel=1e-4)
    table = result.table()
    assert list(table["prompt_id"]) == [p.id for p in prompts[1:3]]
    assert (table["score"] > 0).all()
    np.testing.assert_allclose(table["score"], result.norms[:, :, 0].mean(axis=1))


def test_seeded_batch_size_free_and_prefix_consistent(tiny, prompts):
    from audit.probes.memorization.noise_gap_model import ScoreSettings, score_prompts

    settings = ScoreSettings(steps=3, generations=2, num_inference_steps=10, seed=7)
    a = score_prompts(tiny, prompts, settings, batch_size=4)
    b = score_prompts(tiny, prompts, settings, batch_size=4)
    assert np.array_equal(a.norms, b.norms)  # the same seed, the same numbers
    other = score_prompts(tiny, prompts, ScoreSettings(steps=3, generations=2, num_inference_steps=10, seed=8))
    assert not np.allclose(a.norms, other.norms)
    one = score_prompts(tiny, prompts, settings, batch_size=1)
    np.testing.assert_allclose(one.norms, a.norms, rtol=1e-5)  # batching changes only float rounding
    # a prompt's score does not depend on the others, nor on their order
    alone = score_prompts(tiny, prompts[3:], settings)
    np.testing.assert_allclose(alone.norms[0], a.norms[3], rtol=1e-5)
    # the first 2 steps x 1 generation of this pass are what a 2-step, 1-generation pass computes
    short = score_prompts(tiny, prompts, ScoreSettings(steps=2, generations=1, num_inference_steps=10, seed=7))
    np.testing.assert_allclose(short.table()["score"], a.table(steps=2, generations=1)["score"], rtol=1e-5)
    # later steps follow the guided trajectory: guidance changes them, not the first step
    unguided = score_prompts(tiny, prompts, ScoreSettings(steps=3, generations=2, num_inference_steps=10, seed=7,
                                                          guidance_scale=1.0))
    np.testing.assert_allclose(unguided.norms[..., 0], a.norms[..., 0], rtol=1e-6)
    assert not np.allclose(unguided.norms[..., 2], a.norms[..., 2], rtol=1e-3)


def test_epsilon_space_on_a_zero_terminal_snr_model_is_zero_at_the_first_step(shapes, prompts):
    from audit.probes.memorization.noise_gap_model import ScoreSettings, score_prompts

    assert shapes.scheduler.config.prediction_type == "v_prediction"
    eps = score_prompts(shapes, prompts[:2], ScoreSettings(steps=2, prediction="epsilon", num_inference_steps=10))
    model = score_prompts(shapes, prompts[:2], ScoreSettings(steps=2, prediction="model", num_inference_steps=10))
    assert (eps.norms[..., 0] == 0).all() and (model.norms[..., 0] > 0).all()
    from diffusers import DDIMScheduler

    scheduler = DDIMScheduler.from_config(shapes.scheduler.config)
    scheduler.set_timesteps(10)
    scale = math.sqrt(float(scheduler.alphas_cumprod[int(scheduler.timesteps[1])]))
    np.testing.assert_allclose(eps.norms[..., 1], model.norms[..., 1] * scale, rtol=1e-6)


def test_settings_and_pipelines_that_cannot_be_scored(tiny, prompts):
    from audit.probes.memorization.noise_gap_model import ScoreSettings, check_pipeline, score_prompts

    for bad in (ScoreSettings(steps=0), ScoreSettings(generations=-1), ScoreSettings(steps=51),
                ScoreSettings(prediction="x0"), ScoreSettings(scheduler="euler")):
        with pytest.raises(UserError):
            score_prompts(tiny, prompts, bad)

    class NotSD:
        unet = None

    with pytest.raises(UserError, match="not a Stable Diffusion-style pipeline"):
        check_pipeline(NotSD(), "org/thing")


# ------------------------------------------------------------------ the command


def _cli(capsys, *argv):
    from audit.cli import main

    try:
        code = main(list(argv))
    except SystemExit as exc:  # argparse errors
        code = exc.code
    out, err = capsys.readouterr()
    return code, out, err


BASE = ("memorization-score", "--model", "builtin:tiny-random", "--prompts", "shapes-audit", "--no-progress")


def test_command_writes_a_table_and_prints_the_top(capsys, tmp_path):
    out = tmp_path / "sub" / "scores.csv"
    code, stdout, err = _cli(capsys, *BASE, "--category", "iconic", "--category", "fresh", "--limit", "3",
                             "--steps", "2", "--num-inference-steps", "10", "--top", "2", "--out", str(out))
    assert code == 0, err
    table = pd.read_csv(out)
    assert list(table.columns[:6]) == ["prompt_id", "prompt", "category", "score", "steps", "generations"]
    assert len(table) == 3 and (table["steps"] == 2).all() and (table["generations"] == 1).all()
    best = table.sort_values("score", ascending=False).iloc[0]
    lines = stdout.splitlines()
    assert best["prompt_id"] in lines[1] and len([ln for ln in lines if ln.startswith("  ")]) == 2
    assert f"wrote {out}" in stdout


def test_command_writes_into_a_run_through_the_contract(capsys, tmp_path):
    from audit.probes.memorization.score_cli import SUMMARY_KEY, score_table
    from bench import contract as C
    from bench.rundir import write_json

    run = tmp_path / "run"
    (run / "images").mkdir(parents=True)
    rows = [{"image_id": f"p{i}__s000__g7.5", "prompt_id": f"p{i}", "prompt": text, "category": cat,
             "sample_index": 0, "guidance": 7.5, "path": f"images/p{i}.png"}
            for i, (text, cat) in enumerate([("a red circle", "a"), ("a blue square", "b")])]
    C.write_table(run, C.SAMPLES_TABLE, C.coerce(pd.DataFrame(rows), C.SAMPLES_TABLE))
    write_json(run / C.MANIFEST, {"run": "run", "model": {"ref": "builtin:tiny-random"}, "seed": 3})
    code, stdout, err = _cli(capsys, "memorization-score", "--run", str(run), "--num-inference-steps", "5",
                             "--no-progress")
    assert code == 0, err
    table = C.read_table(run, score_table())
    assert list(table["prompt_id"]) == ["p0", "p1"] and (table["seed"] == 3).all()
    assert (table["model"] == "builtin:tiny-random").all()
    summary = json.loads((run / C.SUMMARY).read_text())[SUMMARY_KEY]
    assert summary["n_prompts"] == 2 and set(summary["by_category"]) == {"a", "b"}


@pytest.mark.parametrize("argv, message", [
    (("--model", "builtin:nope", "--prompts", "shapes-audit"), "unknown built-in model 'builtin:nope'"),
    (("--model", "builtin:tiny-random", "--prompts", "no/such/prompts.txt"), "prompt file 'no/such/prompts.txt' does not exist"),
    (("--model", "builtin:tiny-random", "--prompts", "shapes-audit", "--steps", "0"), "--steps: must be a positive integer, got 0"),
    (("--model", "builtin:tiny-random", "--prompts", "shapes-audit", "--steps", "-2"), "--steps: must be a positive integer, got -2"),
    (("--model", "builtin:tiny-random", "--prompts", "shapes-audit", "--generations", "0"), "--generations: must be a positive integer"),
    (("--model", "builtin:tiny-random", "--prompts", "shapes-audit", "--steps", "60"), "more than the schedule's --num-inference-steps 50"),
    (("--model", "builtin:tiny-random", "--prompts", "shapes-audit", "--category", "nope"), "no prompt has category 'nope'"),
    (("--model", "builtin:tiny-random", "--prompts", "shapes-audit", "--out", "x.txt"), "must end in .parquet or .csv"),
    (("--prompts", "shapes-audit"), "no model given"),
])
def test_command_one_line_errors(capsys, argv, message):
    code, stdout, err = _cli(capsys, "memorization-score", *argv)
    assert code == 2
    assert err.startswith("error: ") and err.count("\n") == 1 and message in err, err


def test_uncached_hub_model_names_what_is_missing(capsys, tmp_path, monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    code, _, err = _cli(capsys, "memorization-score", "--model", "nobody-org/not-cached-sd", "--prompts", "shapes-audit")
    assert code == 2 and err.count("\n") == 1
    assert "model 'nobody-org/not-cached-sd' is not available offline" in err
    assert str(tmp_path / "hub") in err and "hf download nobody-org/not-cached-sd" in err


def test_sdv1_memorized_prompt_set_is_pinned():
    from bench.prompts import load_prompt_set

    ps = load_prompt_set("sdv1-memorized")
    assert len(ps.prompts) == 500 and ps.sha256 == "8eb16c6ff1c7195cddf26b3207bdc7c6a905a20162c6070d79fe60336a525c60"
    assert ps.prompts[0].prompt == "The No Limits Business Woman Podcast"
    assert ps.prompts[0].extra["index"] == 1030727993 and ps.prompts[0].extra["url"].startswith("https://")
    assert len({p.prompt for p in ps.prompts}) == 500


def test_calibration_runs_and_renders_its_document(tmp_path):
    from audit.calibration.memorization_score import (CONTROL, MemScoreCalibration, calibrate_memorization_score,
                                                      calibration_prompts, write_markdown)
    from bench.world.corpus import ICONIC_NAMES

    prompts = calibration_prompts()
    assert [sum(p.category == c for p in prompts) for c in ("iconic", "fresh", CONTROL)] == [24, 48, 24]
    iconic_words = {w.lower() for name in ICONIC_NAMES for w in name.split()}
    assert not any(set(p.prompt.lower().split()[2:-1]) & iconic_words for p in prompts if p.category == CONTROL)
    figures = calibrate_memorization_score(MemScoreCalibration(
        model="builtin:tiny-random", rows=(("model", 1, 1), ("model", 2, 1)), num_inference_steps=4,
        resamples=50, batch_size=48))
    assert [(r["steps"], r["generations"]) for r in figures["rows"]] == [(1, 1), (2, 1)]
    for r in figures["rows"]:
        assert 0 <= r["ci_low"] <= r["auroc"] <= r["ci_high"] <= 1
        assert 0 <= r["ci_low_control"] <= r["auroc_control"] <= r["ci_high_control"] <= 1
    text = write_markdown(figures, tmp_path / "doc.md", "python scripts/x.py").read_text()
    first = figures["rows"][0]
    assert f"| model | 1 | 1 | {first['auroc']:.3f} | [{first['ci_low']:.3f}, {first['ci_high']:.3f}] |" in text
    assert "python scripts/x.py" in text and "builtin:tiny-random" in text
