"""``t2i-audit memorization-score --model M --prompts P``: rank prompts by Wen et al.'s index-free
memorization score (``audit.probes.memorization.noise_gap``), with no index and no training data.

Writes one row per prompt to ``--out FILE`` (.parquet or .csv), or, with ``--run RUN``, to
RUN/audit/memorization_score.parquet through the run-directory contract (plus
summary.json["memorization_score"]); prints the top prompts.  ``audit.cli`` registers it
like ``index`` and ``report``.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import pandas as pd

from audit.probes.memorization.noise_gap import PREDICTIONS
from audit.probes.memorization.noise_gap_model import (COLUMNS, DEFAULT_BATCH_SIZE, DEFAULT_GENERATIONS,
                                                       DEFAULT_GUIDANCE, DEFAULT_INFERENCE_STEPS, DEFAULT_STEPS,
                                                       SCHEDULERS, ScoreSettings)
from bench.errors import UserError

COMMAND = "memorization-score"
SUMMARY_KEY = "memorization_score"
OUT_SUFFIXES = (".parquet", ".csv")

EPILOG = f"""examples:
  # the built-in world: iconic (duplicated) captions against fresh ones
  t2i-audit memorization-score --model builtin:shapes-ldm --prompts shapes-audit --category iconic --category fresh --out build/memscore.csv
  # Stable Diffusion v1.4 on Webster's 500 memorized prompts, as the authors (50 steps x 4 generations)
  t2i-audit memorization-score --model CompVis/stable-diffusion-v1-4 --prompts sdv1-memorized --steps 50 --generations 4 --dtype float16 --out sdv1-mem.parquet
  # the prompts and model of a run; writes RUN/audit/memorization_score.parquet
  t2i-audit memorization-score --run runs/demo

score = mean over generations and the first --steps steps of the --num-inference-steps schedule of
||pred(x_t, prompt) - pred(x_t, "")||_2 (Wen et al., ICLR 2024).  Higher = more likely memorized; it
ranks prompts, it has no universal threshold (docs/memorization-score.md).
"""


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not an integer") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {value}")
    return value


def register(subparsers) -> None:
    p = subparsers.add_parser(
        COMMAND, help="rank prompts by the index-free memorization score (Wen et al. 2024)",
        description="Score prompts by how much the text changes the model's noise prediction at the first "
                    "sampling steps (Wen et al., ICLR 2024): no index or training data needed.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", help="builtin:shapes-ldm, builtin:tiny-random, a pipeline folder, a checkpoint or a "
                                   "hub id (default with --run: the run's model)")
    p.add_argument("--prompts", help="a shipped prompt set name or a prompt file (default with --run: the run's prompts)")
    p.add_argument("--category", action="append", default=[], help="keep prompts of this category (repeatable)")
    p.add_argument("--limit", type=_positive_int, help="score only the first N prompts (after --category)")
    p.add_argument("--steps", type=_positive_int, default=DEFAULT_STEPS,
                   help=f"first steps of the schedule to average (default {DEFAULT_STEPS})")
    p.add_argument("--generations", type=_positive_int, default=DEFAULT_GENERATIONS,
                   help=f"initial noises per prompt (default {DEFAULT_GENERATIONS})")
    p.add_argument("--num-inference-steps", type=_positive_int, default=DEFAULT_INFERENCE_STEPS,
                   help=f"length of the sampling schedule the steps come from (default {DEFAULT_INFERENCE_STEPS})")
    p.add_argument("--guidance-scale", type=float, default=DEFAULT_GUIDANCE,
                   help=f"CFG scale of the trajectory between steps (default {DEFAULT_GUIDANCE})")
    p.add_argument("--scheduler", choices=SCHEDULERS, default="ddim",
                   help="ddim (from the pipeline's config, as the authors) or the pipeline's own (default ddim)")
    p.add_argument("--prediction", choices=PREDICTIONS, default="model",
                   help="model: the UNet's output as the authors; epsilon: converted to eps (default model)")
    p.add_argument("--seed", type=int, help="noise seed (default 0, or the run's seed with --run)")
    p.add_argument("--batch-size", type=_positive_int, default=DEFAULT_BATCH_SIZE,
                   help=f"prompts per UNet batch (default {DEFAULT_BATCH_SIZE}); does not change the scores")
    p.add_argument("--device", default="auto", help="auto (cuda, then mps, then cpu), cpu, cuda, cuda:N, mps")
    p.add_argument("--dtype", default="float32", help="float32, float16 (GPU) or bfloat16 (default float32)")
    where = p.add_mutually_exclusive_group()
    where.add_argument("--out", metavar="FILE", help="write the table here (.parquet or .csv)")
    where.add_argument("--run", metavar="RUN", help=f"a run directory: write RUN/audit/{SUMMARY_KEY}.parquet")
    p.add_argument("--top", type=int, default=10, help="prompts to print, highest first (default 10)")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    p.set_defaults(func=run_command)


def score_table():
    """The run-directory table of this command (``bench.contract.audit_table``)."""
    from bench import contract as C

    return C.MEMORIZATION_SCORE_TABLE


def _check_out(out: str) -> Path:
    path = Path(out)
    if path.suffix.lower() not in OUT_SUFFIXES:
        raise UserError(f"--out '{out}' must end in .parquet or .csv")
    if path.is_dir():
        raise UserError(f"--out '{out}' is a directory; name a .parquet or .csv file")
    existing = path.parent
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise UserError(f"cannot write '{out}': '{existing}' is not a folder")
    return path


def _run_inputs(args: argparse.Namespace):
    """(model ref, prompts, seed) from the arguments, falling back on the run's manifest and samples."""
    from bench import rundir
    from bench.prompts import Prompt, load_prompt_set

    model, seed, prompts = args.model, args.seed, None
    if args.run:
        run = rundir.check_run_dir(args.run)
        rundir.check_run_writable(run, f"t2i-audit {COMMAND}")
        manifest = rundir.read_manifest(run) or {}
        model = model or (manifest.get("model") or {}).get("ref")
        seed = manifest.get("seed", 0) if seed is None else seed
        if args.prompts is None:
            samples = rundir.read_samples(run)
            if samples.empty:
                raise UserError(f"run '{run}' has no samples to take prompts from; pass --prompts")
            first = samples.drop_duplicates("prompt_id")
            prompts = [Prompt(r.prompt_id, r.prompt, r.category) for r in first.itertuples()]
    if not model:
        raise UserError("no model given: pass --model (e.g. builtin:shapes-ldm or a hub id)")
    if prompts is None:
        if not args.prompts:
            raise UserError("no prompts given: pass --prompts (a shipped set name or a prompt file)")
        prompts = list(load_prompt_set(args.prompts).prompts)
    if args.category:
        known = sorted({p.category for p in prompts})
        unknown = [c for c in args.category if c not in known]
        if unknown:
            raise UserError(f"no prompt has category {', '.join(map(repr, unknown))}; categories: {', '.join(known)}")
        prompts = [p for p in prompts if p.category in args.category]
    if args.limit:
        prompts = prompts[: args.limit]
    if not prompts:
        raise UserError("no prompts to score")
    return model, prompts, 0 if seed is None else seed


def run_command(args: argparse.Namespace) -> int:
    from audit.probes.memorization.noise_gap_model import load_scoring_pipeline, score_prompts
    from bench.atomic import atomic_path

    if not math.isfinite(args.guidance_scale):
        raise UserError("--guidance-scale must be a finite number")
    out = _check_out(args.out) if args.out else None
    model, prompts, seed = _run_inputs(args)
    settings = ScoreSettings(steps=args.steps, generations=args.generations,
                             num_inference_steps=args.num_inference_steps, guidance_scale=args.guidance_scale,
                             seed=seed, scheduler=args.scheduler, prediction=args.prediction)
    settings.check()  # before the model loads
    pipe, resolved = load_scoring_pipeline(model, args.device, args.dtype)
    result = score_prompts(pipe, prompts, settings, resolved.ref, batch_size=args.batch_size,
                           progress=not args.no_progress)
    table = result.table()
    if args.run:
        from bench import contract as C

        target = C.write_table(args.run, score_table(), table)
        C.update_summary(args.run, {SUMMARY_KEY: summary_block(table)})
        wrote = f"{target} and summary.json[{SUMMARY_KEY!r}]"
    elif out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(out) as tmp:
            if out.suffix.lower() == ".csv":
                table.to_csv(tmp, index=False)
            else:
                table.to_parquet(tmp, index=False)
        wrote = str(out)
    else:
        wrote = None
    print_top(table, args.top)
    if wrote:
        print(f"wrote {wrote}")
    return 0


def summary_block(table: pd.DataFrame) -> dict:
    """summary.json["memorization_score"]: the settings and the score per category (mean, max)."""
    first = table.iloc[0]
    by_category = table.groupby("category")["score"].agg(["mean", "max", "count"])
    return {
        "n_prompts": int(len(table)), "steps": int(first["steps"]), "generations": int(first["generations"]),
        "num_inference_steps": int(first["num_inference_steps"]), "guidance_scale": float(first["guidance_scale"]),
        "seed": int(first["seed"]), "prediction": str(first["prediction"]), "scheduler": str(first["scheduler"]),
        "model": str(first["model"]), "max_score": float(table["score"].max()),
        "top_prompt_id": str(table.loc[table["score"].idxmax(), "prompt_id"]),
        "by_category": {str(c): {"mean": float(r["mean"]), "max": float(r["max"]), "n": int(r["count"])}
                        for c, r in by_category.iterrows()},
    }


def print_top(table: pd.DataFrame, top: int) -> None:
    first = table.iloc[0]
    print(f"memorization score of {len(table)} prompts ({first['model']}; first {first['steps']} of "
          f"{first['num_inference_steps']} steps x {first['generations']} generation(s)); higher = more likely memorized")
    for row in table.sort_values("score", ascending=False, kind="stable").head(max(top, 0)).itertuples():
        category = f" [{row.category}]" if row.category else ""
        text = row.prompt if len(row.prompt) <= 80 else row.prompt[:77] + "..."
        print(f"  {row.score:10.4f}  {row.prompt_id}{category}  {text}")
