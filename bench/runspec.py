"""The frozen, typed description of a generation run (a sweep is a list of these)."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

from bench.errors import UserError
from bench.models.loader import DEFAULT_MODEL, DTYPES

# Classifier-free guidance (Ho & Salimans 2022), in the two conventions papers use:
#   "cfg"          eps = eps_u + w * (eps_c - eps_u)   (GLIDE, Imagen, diffusers; w = 1: no guidance)
#   "ho-salimans"  eps = (1 + w) * eps_c - w * eps_u   (the original paper; w = 0: no guidance)
# Both give the same sampler; ho-salimans w corresponds to cfg w + 1.
GUIDANCE_FORMULATIONS = {
    "cfg": "eps = eps_uncond + w * (eps_cond - eps_uncond)  [GLIDE/Imagen/diffusers; w=1 is unguided]",
    "ho-salimans": "eps = (1 + w) * eps_cond - w * eps_uncond  [Ho & Salimans 2022; w=0 is unguided]",
}
MAX_CFG_SCALE = 50.0
MAX_STEPS = 1000

SCHEDULER_ALIASES = {
    "ddim": "DDIMScheduler",
    "ddpm": "DDPMScheduler",
    "pndm": "PNDMScheduler",
    "lms": "LMSDiscreteScheduler",
    "euler": "EulerDiscreteScheduler",
    "euler-a": "EulerAncestralDiscreteScheduler",
    "heun": "HeunDiscreteScheduler",
    "dpm++": "DPMSolverMultistepScheduler",
    "unipc": "UniPCMultistepScheduler",
}


def cfg_scale(guidance: float, formulation: str) -> float:
    """The diffusers ``guidance_scale`` that realises ``guidance`` in ``formulation``."""
    return guidance + 1.0 if formulation == "ho-salimans" else guidance


@dataclass(frozen=True)
class RunSpec:
    out: str
    model: str = DEFAULT_MODEL
    prompts: str = "drawbench"
    categories: tuple[str, ...] = ()
    per_category: int | None = None
    guidance: tuple[float, ...] = (7.5,)
    guidance_formulation: str = "cfg"
    images_per_prompt: int = 1
    steps: int = 20
    scheduler: str | None = None
    dtype: str = "float32"
    device: str = "auto"
    batch_size: int = 8
    seed: int = 0
    height: int | None = None
    width: int | None = None
    negative_prompt: str = ""
    extra: dict = field(default_factory=dict, compare=False, hash=False)

    def validate(self) -> "RunSpec":
        """Refuse out-of-range settings with one-line errors (never silently clamp)."""
        if self.guidance_formulation not in GUIDANCE_FORMULATIONS:
            raise UserError(
                f"unknown guidance formulation '{self.guidance_formulation}'; use one of {', '.join(GUIDANCE_FORMULATIONS)}"
            )
        if not self.guidance:
            raise UserError("no guidance scale given; pass e.g. --guidance 7.5 or --guidance 1,3,7.5")
        ho = self.guidance_formulation == "ho-salimans"
        low, high = (0.0, MAX_CFG_SCALE - 1.0) if ho else (1.0, MAX_CFG_SCALE)
        for g in self.guidance:
            if not (math.isfinite(g) and low <= g <= high):
                why = "" if ho or g >= 1 else " (diffusers treats values below 1 as 1, i.e. no guidance)"
                raise UserError(
                    f"guidance {g:g} is out of range for the '{self.guidance_formulation}' formulation: "
                    f"use {low:g} <= guidance <= {high:g}{why}"
                )
        if len(set(self.guidance)) != len(self.guidance):
            raise UserError(f"guidance list {list(self.guidance)} has duplicates; list each scale once")
        if not 1 <= self.steps <= MAX_STEPS:
            raise UserError(f"steps {self.steps} is out of range; use 1 <= steps <= {MAX_STEPS}")
        if self.images_per_prompt < 1:
            raise UserError(f"images per prompt must be at least 1 (got {self.images_per_prompt})")
        if self.batch_size < 1:
            raise UserError(f"batch size must be at least 1 (got {self.batch_size})")
        if self.dtype not in DTYPES:
            raise UserError(f"unknown dtype '{self.dtype}'; use one of {', '.join(DTYPES)}")
        for name in ("height", "width"):
            v = getattr(self, name)
            if v is not None and (v < 8 or v % 8):
                raise UserError(f"{name} {v} is invalid; use a positive multiple of 8")
        if self.seed < 0:
            raise UserError(f"seed must be non-negative (got {self.seed})")
        return self

    def scheduler_class_name(self) -> str | None:
        if self.scheduler is None:
            return None
        name = SCHEDULER_ALIASES.get(self.scheduler.lower(), self.scheduler)
        import diffusers

        cls = getattr(diffusers, name, None)
        if cls is None or not name.endswith("Scheduler"):
            raise UserError(
                f"unknown scheduler '{self.scheduler}'; use one of {', '.join(SCHEDULER_ALIASES)} or a diffusers scheduler class name"
            )
        return name

    def to_dict(self) -> dict:
        d = asdict(self)
        d.pop("extra")
        d["categories"] = list(self.categories)
        d["guidance"] = list(self.guidance)
        return d
