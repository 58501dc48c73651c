"""Index-free memorization score: the numeric core (numpy only, no model).

Wen, Liu, Chen and Lyu, "Detecting, Explaining, and Mitigating Memorization in
Diffusion Models", ICLR 2024 (https://openreview.net/forum?id=84n3UwkH7b).
A memorized prompt makes the text-conditional prediction differ strongly from
the unconditional one at the same noisy latent.  For a prompt ``c``, generations
``g = 1..G`` (each its own initial noise) and the first ``S`` steps ``t_1..t_S``
of the sampling loop::

    d(c) = 1/(G*S) * sum_g sum_{s<=S} || eps_theta(x_{t_s}^g, c) - eps_theta(x_{t_s}^g, "") ||_2

where ``||.||_2`` is the L2 norm over the whole latent tensor (channels x height x
width, not divided by its size) and ``""`` is the empty-prompt embedding of
classifier-free guidance.  Higher = more likely memorized; the score ranks prompts,
it has no universal threshold.

What this follows, exactly: the authors' code, github.com/YuxinWenRick/diffusion_memorization
(HEAD c8fe471d80b62213bdc8a384543ff44b44c62020):

* ``local_sd_pipeline.py`` (``track_noise_norm=True``, ``lp=2``): inside the ordinary
  CFG sampling loop (DDIM, 50 steps, guidance 7.5, the latents follow the *guided*
  trajectory), ``noise_pred_text = noise_pred_text - noise_pred_uncond`` and per
  generation ``text_noise_norm.append(noise_pred_text[j].norm(p=2))``: the raw UNet
  outputs, one norm per generation and step, no normalisation;
* ``examples/det_mem_viz.ipynb``: ``curr_data[:num_gens, start:end]``, mean over
  generations, then mean over steps (= the plain mean above), ranked by
  ``metrics.roc_curve``: AUC 0.994 with 50 steps x 4 generations on SD v1.4 (500
  memorized prompts of ``examples/sdv1_500_memorized.jsonl`` against 500 of
  Gustavosta/Stable-Diffusion-Prompts).  The paper reports AUC 0.960 with the first
  step only and one generation.  ``steps`` counts the first steps *of the
  ``num_inference_steps``-step schedule* (``start=0, end=S`` in the notebook), so
  one step at 50 inference steps is the step at t = 981, not a 1-step schedule.

Prediction space: the authors take the UNet's output as it is.  For an
epsilon-prediction model (SD v1.x) that is eps_theta.  For a v-prediction model
the raw gap is a v gap; at a fixed x_t, ``eps = sqrt(abar_t) * v + sqrt(1 - abar_t) * x_t``,
so the eps gap is ``sqrt(abar_t)`` times the v gap (``epsilon_gap_scale``), the same
factor for every prompt at a step: a one-step ranking does not change, a mean over
steps weighs steps differently.  With zero terminal SNR (``builtin:shapes-ldm``:
trailing spacing, abar = 0 at t = 999) the eps gap of the first step is exactly 0 for
every prompt, so ``prediction="model"`` (the authors') is the default.

Functions: ``gap_norms`` (one norm per sample), ``epsilon_gap_scale``,
``memorization_score`` (the mean), ``auroc`` (Mann-Whitney form, ties count 1/2)
and ``bootstrap_auroc`` (a stratified percentile interval over prompts).
"""

from __future__ import annotations

import math

import numpy as np

PREDICTIONS = ("model", "epsilon")


def gap_norms(cond, uncond) -> np.ndarray:
    """``||cond[i] - uncond[i]||_2`` over every axis but the first, in float64; one value per sample.

    ``cond`` and ``uncond`` are (batch, ...) arrays of the conditional and unconditional
    predictions at the same latents."""
    c = np.asarray(cond, dtype=np.float64)
    u = np.asarray(uncond, dtype=np.float64)
    if c.shape != u.shape:
        raise ValueError(f"conditional and unconditional predictions differ in shape: {c.shape} vs {u.shape}")
    if c.ndim < 1 or c.shape[0] == 0:
        raise ValueError("gap_norms needs a batch of at least one prediction")
    diff = (c - u).reshape(c.shape[0], -1)
    return np.sqrt(np.einsum("ij,ij->i", diff, diff))


def epsilon_gap_scale(prediction_type: str, alpha_bar: float) -> float:
    """The factor that turns the norm of a model-output gap into the norm of the eps gap at one step.

    At the same x_t the x_t terms cancel: eps-prediction 1; v-prediction ``sqrt(abar)``
    (eps = sqrt(abar) v + sqrt(1-abar) x_t); sample-prediction ``sqrt(abar / (1 - abar))``
    (eps = (x_t - sqrt(abar) x0) / sqrt(1-abar))."""
    if not 0.0 <= alpha_bar <= 1.0:
        raise ValueError(f"alpha_bar must be in [0, 1], got {alpha_bar}")
    if prediction_type == "epsilon":
        return 1.0
    if prediction_type == "v_prediction":
        return math.sqrt(alpha_bar)
    if prediction_type == "sample":
        return math.inf if alpha_bar == 1.0 else math.sqrt(alpha_bar / (1.0 - alpha_bar))
    raise ValueError(f"unknown prediction type {prediction_type!r}; expected epsilon, v_prediction or sample")


def memorization_score(norms, steps: int | None = None, generations: int | None = None) -> np.ndarray:
    """The score of each prompt from its per-step gap norms.

    ``norms`` is (prompts, generations, steps) (or (generations, steps) for one prompt);
    the score is the mean over the first ``generations`` generations and the first
    ``steps`` steps (all of them by default), as the authors' notebook takes
    ``[:num_gens, start:end]``.  Returns one float64 per prompt (a 0-d array for one prompt)."""
    x = np.asarray(norms, dtype=np.float64)
    if x.ndim not in (2, 3):
        raise ValueError(f"norms must be (prompts, generations, steps) or (generations, steps), got shape {x.shape}")
    steps = x.shape[-1] if steps is None else steps
    generations = x.shape[-2] if generations is None else generations
    if not 1 <= steps <= x.shape[-1]:
        raise ValueError(f"steps must be in 1..{x.shape[-1]}, got {steps}")
    if not 1 <= generations <= x.shape[-2]:
        raise ValueError(f"generations must be in 1..{x.shape[-2]}, got {generations}")
    return x[..., :generations, :steps].mean(axis=(-2, -1))


def auroc(positive, negative) -> float:
    """Area under the ROC curve of ``positive`` (memorized) against ``negative`` scores.

    The Mann-Whitney form: P(a positive outscores a negative), ties counted 1/2;
    equal to ``sklearn.metrics.roc_auc_score``.  NaN when a class is empty."""
    p = np.asarray(positive, dtype=np.float64).ravel()
    n = np.asarray(negative, dtype=np.float64).ravel()
    if p.size == 0 or n.size == 0:
        return float("nan")
    if np.isnan(p).any() or np.isnan(n).any():
        raise ValueError("auroc got a NaN score")
    n_sorted = np.sort(n)
    below = np.searchsorted(n_sorted, p, side="left")
    at_or_below = np.searchsorted(n_sorted, p, side="right")
    return float((below.sum() + 0.5 * (at_or_below - below).sum()) / (p.size * n.size))


def bootstrap_auroc(positive, negative, resamples: int = 2000, seed: int = 0,
                    level: float = 0.95) -> tuple[float, float, float]:
    """(AUROC, low, high): the percentile bootstrap interval over prompts.

    Each resample draws the positives and the negatives with replacement, each class
    keeping its size (stratified), so every resample has both classes."""
    p = np.asarray(positive, dtype=np.float64).ravel()
    n = np.asarray(negative, dtype=np.float64).ravel()
    value = auroc(p, n)
    if math.isnan(value) or resamples < 1:
        return value, float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    values = np.empty(resamples)
    for r in range(resamples):
        values[r] = auroc(p[rng.integers(0, p.size, p.size)], n[rng.integers(0, n.size, n.size)])
    tail = (1.0 - level) / 2.0
    low, high = np.quantile(values, [tail, 1.0 - tail])
    return value, float(low), float(high)
