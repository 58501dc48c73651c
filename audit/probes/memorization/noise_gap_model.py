"""Index-free memorization score: the adapter that runs a diffusers Stable Diffusion-style pipeline.

The formula, the paper and the authors' code it follows are in
``audit.probes.memorization.noise_gap`` (the numeric core).  This module only
produces the conditional and unconditional predictions at the same latents, with
the pipeline's own components: its tokenizer and text encoder (``encode_prompt``,
the empty prompt as the unconditional input, as classifier-free guidance has it),
its UNet, and its scheduler (by default a DDIM copy of the pipeline's scheduler
config, as the authors do: ``DDIMScheduler.from_config(pipe.scheduler.config)``).

Each generation's initial noise comes from its own CPU generator seeded with
``bench.rundir.image_seed(seed, prompt_id, generation)``, the seed ``t2i-bench
generate`` gives image ``generation`` of that prompt: a prompt's score does not
depend on the other prompts, their order, or the batch size.
"""

from __future__ import annotations

import copy
import logging
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
import pandas as pd

from audit.probes.memorization.noise_gap import PREDICTIONS, epsilon_gap_scale, gap_norms, memorization_score
from bench import contract as C
from bench.errors import UserError

log = logging.getLogger(__name__)

SCHEDULERS = ("ddim", "pipeline")
DEFAULT_STEPS = 1
DEFAULT_GENERATIONS = 1
DEFAULT_INFERENCE_STEPS = 50
DEFAULT_GUIDANCE = 7.5
DEFAULT_BATCH_SIZE = 8

#: Columns of the per-prompt table (``--out`` file, or RUN/audit/memorization_score.parquet).
COLUMNS = dict(C.MEMORIZATION_SCORE_TABLE.columns)  # the run-directory contract names them


@dataclass(frozen=True)
class ScoreSettings:
    steps: int = DEFAULT_STEPS                          # the first steps of the schedule that are averaged
    generations: int = DEFAULT_GENERATIONS              # initial noises per prompt
    num_inference_steps: int = DEFAULT_INFERENCE_STEPS  # the sampling schedule the steps are taken from
    guidance_scale: float = DEFAULT_GUIDANCE            # CFG scale of the trajectory (steps > 1 only)
    seed: int = 0
    scheduler: str = "ddim"
    prediction: str = "model"

    def check(self) -> None:
        """One-line UserErrors for settings that cannot be scored."""
        for name in ("steps", "generations", "num_inference_steps"):
            value = getattr(self, name)
            if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < 1:
                raise UserError(f"--{name.replace('_', '-')} must be a positive integer, got {value}")
        if self.steps > self.num_inference_steps:
            raise UserError(f"--steps {self.steps} is more than the schedule's --num-inference-steps "
                            f"{self.num_inference_steps}; lower --steps or raise --num-inference-steps")
        if self.scheduler not in SCHEDULERS:
            raise UserError(f"unknown --scheduler '{self.scheduler}'; use one of {', '.join(SCHEDULERS)}")
        if self.prediction not in PREDICTIONS:
            raise UserError(f"unknown --prediction '{self.prediction}'; use one of {', '.join(PREDICTIONS)}")


def check_pipeline(pipe, ref: str) -> None:
    """Refuse, in one line, a pipeline that is not Stable Diffusion-style (one text encoder, a plain UNet)."""
    unet = getattr(pipe, "unet", None)
    ok = (unet is not None and getattr(pipe, "text_encoder", None) is not None and hasattr(pipe, "encode_prompt")
          and getattr(pipe, "text_encoder_2", None) is None and getattr(pipe, "scheduler", None) is not None
          and getattr(unet.config, "addition_embed_type", None) is None)
    if not ok:
        raise UserError(f"model '{ref}' ({type(pipe).__name__}) is not a Stable Diffusion-style pipeline "
                        "(a UNet and one CLIP text encoder); memorization-score supports those only")


def scoring_scheduler(pipe, name: str):
    """A scheduler of our own (the pipeline's is left untouched): DDIM from its config, or a copy of it."""
    if name == "ddim":
        from diffusers import DDIMScheduler

        return DDIMScheduler.from_config(pipe.scheduler.config)
    return copy.deepcopy(pipe.scheduler)


def step_norms(pipe, texts: Sequence[str], seeds: Sequence[Sequence[int]], settings: ScoreSettings) -> np.ndarray:
    """The gap norms of a batch of prompts: (prompts, generations, steps), float64.

    We drive the scheduler ourselves rather than call the pipeline with a callback:
    the pipeline's CFG adds the two predictions together before any callback sees them
    (``callback_on_step_end`` gets only the latents), so a callback would need a second
    UNet pass per step, and the pipeline would run all ``num_inference_steps`` steps and
    decode with the VAE; here the loop stops after ``settings.steps`` steps, with one
    batched UNet call (unconditional and conditional halves) per step.  The latents
    follow the guided trajectory at ``guidance_scale``, as in the authors' code."""
    import torch

    from bench.models.loader import quiet_libraries

    generations = settings.generations
    device, unet = pipe._execution_device, pipe.unet
    dtype = unet.dtype
    n = len(texts) * generations
    scheduler = scoring_scheduler(pipe, settings.scheduler)
    with torch.inference_mode(), quiet_libraries():
        cond, uncond = pipe.encode_prompt(list(texts), device, generations, True)
        embeddings = torch.cat([uncond, cond])
        height = width = unet.config.sample_size * pipe.vae_scale_factor
        generators = [torch.Generator("cpu").manual_seed(int(s)) for row in seeds for s in row]
        latents = pipe.prepare_latents(n, unet.config.in_channels, height, width, dtype, device, generators)
        scheduler.set_timesteps(settings.num_inference_steps, device=device)
        prediction_type = scheduler.config.get("prediction_type", "epsilon")
        out = np.empty((n, settings.steps))
        for s, t in enumerate(scheduler.timesteps[: settings.steps]):
            model_in = scheduler.scale_model_input(torch.cat([latents, latents]), t)
            pred = unet(model_in, t, encoder_hidden_states=embeddings, return_dict=False)[0]
            if pred.shape[1] != latents.shape[1]:  # learned variance: the first half is the prediction
                pred = pred[:, : latents.shape[1]]
            pred_uncond, pred_cond = pred.chunk(2)
            norms = gap_norms(pred_cond.float().cpu().numpy(), pred_uncond.float().cpu().numpy())
            if settings.prediction == "epsilon":
                alpha_bar = float(scheduler.alphas_cumprod[int(t)])
                scale = epsilon_gap_scale(prediction_type, alpha_bar)
                if scale == 0.0:
                    log.warning("alpha_bar is 0 at t=%d (zero terminal SNR): the eps gap of that step is 0 "
                                "for every prompt; use --prediction model", int(t))
                norms = norms * scale
            out[:, s] = norms
            if s + 1 < settings.steps:
                guided = pred_uncond + settings.guidance_scale * (pred_cond - pred_uncond)
                latents = scheduler.step(guided, t, latents, return_dict=False)[0]
    return out.reshape(len(texts), generations, settings.steps)


@dataclass
class ScoreResult:
    prompts: list[Any]          # bench.prompts.Prompt, in input order
    norms: np.ndarray           # (prompts, generations, steps)
    settings: ScoreSettings
    model: str

    def table(self, steps: int | None = None, generations: int | None = None) -> pd.DataFrame:
        """One row per prompt; ``steps`` / ``generations`` may take a prefix of what was computed."""
        steps = self.settings.steps if steps is None else steps
        generations = self.settings.generations if generations is None else generations
        scores = memorization_score(self.norms, steps, generations) if len(self.prompts) else np.empty(0)
        s = self.settings
        return pd.DataFrame({
            "prompt_id": [p.id for p in self.prompts], "prompt": [p.prompt for p in self.prompts],
            "category": [p.category for p in self.prompts], "score": scores.astype(float),
            "steps": steps, "generations": generations, "num_inference_steps": s.num_inference_steps,
            "guidance_scale": float(s.guidance_scale), "seed": s.seed, "prediction": s.prediction,
            "scheduler": s.scheduler, "model": self.model,
        }, columns=list(COLUMNS))


def score_prompts(pipe, prompts: Sequence[Any], settings: ScoreSettings, model: str = "",
                  batch_size: int = DEFAULT_BATCH_SIZE, progress: bool = False) -> ScoreResult:
    """Score ``prompts`` (``bench.prompts.Prompt``) with a loaded pipeline; batches of ``batch_size`` prompts."""
    from bench.rundir import image_seed

    settings.check()
    if batch_size < 1:
        raise UserError(f"--batch-size must be a positive integer, got {batch_size}")
    check_pipeline(pipe, model or type(pipe).__name__)
    prompts = list(prompts)
    norms = np.empty((len(prompts), settings.generations, settings.steps))
    starts = range(0, len(prompts), batch_size)
    if progress:
        from tqdm import tqdm

        starts = tqdm(starts, desc="memorization score", unit="batch")
    for start in starts:
        batch = prompts[start:start + batch_size]
        seeds = [[image_seed(settings.seed, p.id, g) for g in range(settings.generations)] for p in batch]
        norms[start:start + len(batch)] = step_norms(pipe, [p.prompt for p in batch], seeds, settings)
    return ScoreResult(prompts, norms, settings, model)


def load_scoring_pipeline(model: str, device: str = "auto", dtype: str = "float32"):
    """(pipeline, resolved reference) for a model reference, with the loader's one-line errors."""
    from bench.models.loader import load_pipeline, pick_device, resolve_model

    resolved = resolve_model(model)
    pipe = load_pipeline(resolved, dtype, pick_device(device))
    check_pipeline(pipe, resolved.ref)
    return pipe, resolved
