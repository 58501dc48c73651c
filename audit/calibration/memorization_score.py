"""Calibration of the index-free memorization score (``t2i-audit memorization-score``) on the built-in world.

The truth: the ``shapes-audit`` prompt set's "iconic" captions name scenes duplicated
110 times in the training corpus (memorization bait); its "fresh" captions name
scenes seen once or never.  The score should rank iconic above fresh, so the
figure is the AUROC of iconic (positive) against fresh (negative) prompts, with a
stratified percentile bootstrap interval over prompts
(``audit.probes.memorization.noise_gap.bootstrap_auroc``).

One pass per prediction space computes the per-step gap norms of every prompt for
the longest setting; the shorter settings are prefixes of it (the first k steps of
a 50-step schedule and the first g generations do not depend on what comes after),
so every row below is what ``t2i-audit memorization-score --steps k --generations g``
gives.

A control separates memorization from caption form: ``CONTROL_NAMES`` are 24 made-up
names in the iconic template, "the famous <name> poster", whose words occur in no
iconic caption (nor anywhere in the corpus, whose captions describe shapes): a model
that memorized the iconic scenes should rank iconic above these too; a score that only
reacts to the template ranks them alike (AUROC near 0.5).  ``scripts/calibrate_memorization_score.py`` is the command line;
``docs/memorization-score.md`` its output.
"""

from __future__ import annotations

import platform
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from audit.probes.memorization.noise_gap import bootstrap_auroc
from audit.probes.memorization.noise_gap_model import (DEFAULT_GUIDANCE, DEFAULT_INFERENCE_STEPS, ScoreSettings,
                                                       load_scoring_pipeline, score_prompts)
from bench.atomic import atomic_write_text

PROMPT_SET = "shapes-audit"
POSITIVE, NEGATIVE, CONTROL = "iconic", "fresh", "template-control"
CONTROL_NAMES: tuple[str, ...] = (
    "Crimson Falcon", "Gentle Thunder", "Broken Compass", "Hidden Valley", "Golden Harvest", "Restless Ocean",
    "Scarlet Bridge", "Frozen River", "Whispering Pines", "Dancing Shadows", "Silver Canyon", "Emerald Tower",
    "Falling Feather", "Burning Sky", "Painted Desert", "Velour Kingdom", "Rusty Anchor", "Morning Glory",
    "Crystal Cave", "Wandering Star", "Shattered Mirror", "Golden Gate", "Twilight Forest", "Humble Bee",
)
#: (prediction space, steps, generations) of the table; the first row is the issue's target setting.
DEFAULT_ROWS = (("model", 1, 1), ("model", 5, 1), ("model", 50, 1), ("model", 1, 4), ("model", 50, 4),
                ("epsilon", 1, 1), ("epsilon", 5, 1), ("epsilon", 50, 1))
TARGET_AUROC = 0.95


@dataclass(frozen=True)
class MemScoreCalibration:
    model: str = "builtin:shapes-ldm"
    rows: tuple[tuple[str, int, int], ...] = DEFAULT_ROWS
    num_inference_steps: int = DEFAULT_INFERENCE_STEPS
    guidance_scale: float = DEFAULT_GUIDANCE
    seed: int = 0
    resamples: int = 2000
    batch_size: int = 24
    device: str = "cpu"


def control_prompts():
    """The template control: "the famous <name> poster" with names that share no word with an iconic one."""
    from bench.prompts import Prompt
    from bench.world.corpus import ICONIC_NAMES

    iconic_words = {w.lower() for name in ICONIC_NAMES for w in name.split()}
    shared = sorted({w for name in CONTROL_NAMES for w in name.lower().split()} & iconic_words)
    if shared:
        raise ValueError(f"control names share words with iconic names: {shared}")
    return [Prompt(f"template-control-{i:04d}", f"the famous {name} poster", CONTROL)
            for i, name in enumerate(CONTROL_NAMES)]


def calibration_prompts(prompt_set: str = PROMPT_SET):
    """The iconic and fresh prompts of ``prompt_set``, then the template control."""
    from bench.prompts import load_prompt_set

    prompts = [p for p in load_prompt_set(prompt_set).prompts if p.category in (POSITIVE, NEGATIVE)]
    return prompts + control_prompts()


def calibrate_memorization_score(config: MemScoreCalibration, progress: bool = False) -> dict:
    """Score the iconic and fresh prompts once per prediction space; the AUROC of every row."""
    prompts = calibration_prompts()
    category = np.array([p.category for p in prompts])
    positive, negative, control = (category == POSITIVE), (category == NEGATIVE), (category == CONTROL)
    pipe, resolved = load_scoring_pipeline(config.model, config.device)
    results, seconds = {}, {}
    for prediction in dict.fromkeys(r[0] for r in config.rows):
        rows = [r for r in config.rows if r[0] == prediction]
        settings = ScoreSettings(steps=max(r[1] for r in rows), generations=max(r[2] for r in rows),
                                 num_inference_steps=config.num_inference_steps,
                                 guidance_scale=config.guidance_scale, seed=config.seed, prediction=prediction)
        start = time.perf_counter()
        results[prediction] = score_prompts(pipe, prompts, settings, resolved.ref, config.batch_size, progress)
        seconds[prediction] = time.perf_counter() - start
    table = []
    for prediction, steps, generations in config.rows:
        scores = results[prediction].table(steps, generations)["score"].to_numpy()
        value, low, high = bootstrap_auroc(scores[positive], scores[negative], config.resamples, config.seed)
        c_value, c_low, c_high = bootstrap_auroc(scores[positive], scores[control], config.resamples, config.seed)
        table.append({"prediction": prediction, "steps": steps, "generations": generations, "auroc": value,
                      "ci_low": low, "ci_high": high, "auroc_control": c_value, "ci_low_control": c_low,
                      "ci_high_control": c_high, "mean_positive": float(scores[positive].mean()),
                      "mean_negative": float(scores[negative].mean()), "mean_control": float(scores[control].mean())})
    return {"model": resolved.ref, "prompt_set": PROMPT_SET, "n_positive": int(positive.sum()),
            "n_negative": int(negative.sum()), "n_control": int(control.sum()),
            "num_inference_steps": config.num_inference_steps,
            "guidance_scale": config.guidance_scale, "seed": config.seed, "resamples": config.resamples,
            "rows": table, "seconds": seconds, "machine": f"{platform.machine()}, {config.device}"}


def render_markdown(figures: dict, command: str) -> str:
    """docs/memorization-score.md from ``calibrate_memorization_score``'s figures."""
    f = figures
    lines = [
        "# Index-free memorization score: calibration on the built-in world", "",
        f"Generated by `{command}` (`audit.calibration.memorization_score`); do not edit by hand.", "",
        "`t2i-audit memorization-score` ranks prompts by Wen et al.'s score (ICLR 2024): the mean over",
        "generations and the first steps of the sampling loop of ||pred(x_t, prompt) - pred(x_t, \"\")||_2",
        "(`audit/probes/memorization/noise_gap.py` has the formula and the authors' code it follows).",
        "", "## Setting", "",
        f"- model: `{f['model']}`; prompts: `{f['prompt_set']}`, {f['n_positive']} \"iconic\" captions (positives:",
        "  \"the famous <name> poster\", each scene duplicated 110 times in the training corpus) against "
        f"{f['n_negative']} \"fresh\"",
        "  captions (negatives: scenes described by shapes and colours);",
        f"- template control: {f['n_control']} captions \"the famous <name> poster\" with made-up names that share no word",
        "  with an iconic name and occur nowhere in the corpus (`CONTROL_NAMES`): not memorized, same caption form;",
        f"- schedule: DDIM from the pipeline's config, {f['num_inference_steps']} inference steps, guidance "
        f"{f['guidance_scale']:g} along the trajectory,",
        f"  seed {f['seed']} (one CPU generator per prompt and generation);",
        f"- AUROC with a 95% stratified percentile bootstrap interval over prompts ({f['resamples']} resamples);",
        "- prediction `model`: the UNet's raw output, as the authors' code (the default); `epsilon`: the gap",
        "  converted to the noise prediction (`builtin:shapes-ldm` predicts v; zero terminal SNR makes the",
        "  first step's eps gap 0 for every prompt, hence AUROC 0.5 there).", "",
        "## Results", "",
        "| prediction | steps | generations | AUROC iconic vs fresh | 95% interval | AUROC iconic vs template control "
        "| 95% interval | mean score: iconic / fresh / control |",
        "|---|---:|---:|---:|---|---:|---|---|",
    ]
    for r in f["rows"]:
        lines.append(f"| {r['prediction']} | {r['steps']} | {r['generations']} | {r['auroc']:.3f} | "
                     f"[{r['ci_low']:.3f}, {r['ci_high']:.3f}] | {r['auroc_control']:.3f} | "
                     f"[{r['ci_low_control']:.3f}, {r['ci_high_control']:.3f}] | "
                     f"{r['mean_positive']:.4g} / {r['mean_negative']:.4g} / {r['mean_control']:.4g} |")
    first = f["rows"][0]
    met = first["auroc"] >= TARGET_AUROC
    lines += [
        "", f"Wall time of the scoring passes ({f['machine']}): " +
        ", ".join(f"{k} {v:.0f} s" for k, v in f["seconds"].items()) + ".", "",
        "## Reading", "",
        f"- Target (issue): AUROC >= {TARGET_AUROC} at 1 step x 1 generation for a *memorizing* model. "
        f"Iconic against fresh here: {first['auroc']:.3f} [{first['ci_low']:.3f}, {first['ci_high']:.3f}] "
        f"({'at or above' if met else 'below'} the target).",
        template_note(first),
        *later_steps_note(f["rows"]),
        *model_note(f["model"]),
        "- On real data the authors report AUC 0.994 (50 steps x 4 generations, their notebook) and 0.960",
        "  (1 step x 1 generation, the paper) on SD v1.4 with `sdv1-memorized` against 500 prompts of",
        "  Gustavosta/Stable-Diffusion-Prompts; README, \"Index-free memorization score\", has the commands.",
        "", "## Reproduce", "", "```", command, "```", "",
    ]
    return "\n".join(lines)


def template_note(row: dict) -> str:
    """What the template control says about the first row (measured, not assumed)."""
    figure = f"{row['auroc_control']:.3f} [{row['ci_low_control']:.3f}, {row['ci_high_control']:.3f}]"
    if row["ci_low_control"] <= 0.5 <= row["ci_high_control"]:
        return ("- That figure is not evidence of memorization detection.  Against the template control the iconic "
                f"captions score {figure}, an interval that holds 0.5: captions of the iconic form that the model "
                "never saw move the prediction as much as the iconic ones.  What separates iconic from fresh in this "
                "model is the caption form (a short \"the famous ... poster\" caption, learned from the iconic rows, "
                "against long shape descriptions), not the duplicated scenes.")
    return (f"- Against the template control the iconic captions score {figure}, an interval without 0.5: the score "
            "separates the duplicated captions from unseen captions of the same form, beyond the caption form.")


def later_steps_note(rows: list[dict]) -> list[str]:
    """Which settings separate iconic captions from the control, and which reverse the order (measured)."""
    def listed(chosen):
        return "; ".join(f"{r['prediction']} {r['steps']}x{r['generations']}: {r['auroc_control']:.3f} "
                         f"[{r['ci_low_control']:.3f}, {r['ci_high_control']:.3f}]" for r in chosen)

    above = [r for r in rows if r["ci_low_control"] > 0.5]
    below = [r for r in rows if r["ci_high_control"] < 0.5]
    notes = []
    if above:
        notes.append(f"- Against the control, the interval lies above 0.5 at {listed(above)}; at the other settings "
                     "it does not.")
    if below:
        notes.append(f"- It lies below 0.5 at {listed(below)}: there the iconic captions move the prediction less "
                     "than unseen captions of their form, so a threshold set at one step does not carry over.")
    return notes


def model_note(model: str) -> list[str]:
    """Whether the scored model is known to copy its training images (the built-in ones are measured elsewhere)."""
    if model == "builtin:shapes-ldm":
        return ["- The default built-in model reproduces none of the iconic scenes (docs/builtin-model.md: 0.00 of",
                "  iconic-caption generations are near-copies), so it is not a memorizing model: on it the score",
                "  can only show caption form.  `builtin:shapes-ldm-memorized` is the model that copies",
                "  (docs/memorization-score-memorized.md)."]
    if model == "builtin:shapes-ldm-memorized":
        return ["- This model copies: bench/models/builtin/shapes-ldm-memorized/README.md gives the share of iconic",
                "  captions with a near-copy among 4 seeds, measured by the world's detector during its training."]
    return []


def write_markdown(figures: dict, path: str | Path, command: str) -> Path:
    """The document, and its figures as JSON beside it (``<path>.json`` with the suffix replaced)."""
    import json

    path = Path(path)
    atomic_write_text(path.with_suffix(".json"), json.dumps({"command": command, **figures}, indent=1) + "\n")
    atomic_write_text(path, render_markdown(figures, command))
    return path


def parse_rows(texts: Sequence[str]) -> tuple[tuple[str, int, int], ...]:
    """``PREDICTION:STEPSxGENERATIONS`` strings (e.g. ``model:1x1``) -> rows."""
    from bench.errors import UserError

    rows = []
    for text in texts:
        try:
            prediction, rest = text.split(":")
            steps, generations = (int(v) for v in rest.lower().split("x"))
        except ValueError:
            raise UserError(f"--row '{text}' is not PREDICTION:STEPSxGENERATIONS, e.g. model:1x1") from None
        rows.append((prediction, steps, generations))
    return tuple(rows)
