"""``t2i-bench``: a thin command line over the ``bench`` library."""

from __future__ import annotations

import argparse
import errno
import logging
import sys
import warnings

from bench.errors import UserError

EPILOG = """examples:
  t2i-bench prompts list
  t2i-bench prompts show drawbench --category Colors --limit 5
  t2i-bench generate --prompts drawbench --per-category 1 --guidance 1,7.5 --steps 10 --out runs/demo
  t2i-bench generate --model runwayml/stable-diffusion-v1-5 --prompts parti --dtype float16 --out runs/sd15-parti
  t2i-bench import my_dalle_images/ --prompts my_prompts.csv --model-name dall-e-3 --out runs/dalle3
  t2i-bench score runs/demo --reference runs/other --features efficientnet-lite0
"""

GENERATE_EPILOG = """examples:
  # the default model, builtin:shapes-ldm: a small Stable Diffusion trained on the built-in shapes world
  t2i-bench generate --prompts shapes --per-category 2 --guidance 1,3,7.5 --out runs/demo
  # builtin:tiny-random: random weights (its images are noise), for fast tests of the plumbing
  t2i-bench generate --model builtin:tiny-random --prompts drawbench --per-category 1 --steps 2 --out runs/smoke
  # any diffusers model: hub id (from the HF cache offline), local folder, or single file
  t2i-bench generate --model stabilityai/stable-diffusion-2-1 --prompts drawbench --dtype float16 --out runs/sd21
  t2i-bench generate --model ./my-pipeline --prompts prompts.txt --images-per-prompt 4 --scheduler dpm++ --out runs/mine
  # the original Ho & Salimans convention (w=0 is unguided) instead of diffusers' (w=1)
  t2i-bench generate --guidance 0,2,6.5 --guidance-formulation ho-salimans --out runs/hs

Re-running the same command resumes an interrupted run; a run directory made with
other settings is refused.
"""

IMPORT_EPILOG = """examples:
  # images named <prompt id>.png or <prompt id>_<k>.png, ids from the prompt file
  t2i-bench import outputs/ --prompts prompts.jsonl --model-name imagen --out runs/imagen
  # or a CSV with 'file' and 'prompt' columns naming each image
  t2i-bench import outputs/ --prompts files_and_prompts.csv --model-name dall-e-3 --out runs/dalle3
"""


class OneLineArgumentParser(argparse.ArgumentParser):
    """argparse that reports a usage mistake as one ``error:`` line with exit code 2, not its usage block.

    Sub-command parsers inherit the class (``add_subparsers`` uses the parent's type)."""

    def error(self, message: str):
        import difflib
        import re

        bad = re.search(r"invalid choice: '([^']*)' \(choose from (.*)\)", message)
        if bad:  # "did you mean" for a misspelt sub-command
            choices = re.findall(r"'([^']*)'", bad.group(2))
            close = difflib.get_close_matches(bad.group(1), choices, n=1, cutoff=0.6)
            message += f"; did you mean '{close[0]}'?" if close else ""
        self.exit(2, f"error: {message}; see {self.prog} --help\n")

    def parse_known_args(self, args=None, namespace=None):
        """argparse's, then one check for every command: no numeric option may be NaN or infinite
        (``float("nan")`` and ``float("inf")`` parse, and would become silent wrong numbers)."""
        import math

        parsed, extras = super().parse_known_args(args, namespace)
        for dest, value in vars(parsed).items():
            values = value if isinstance(value, (list, tuple)) else [value]
            if any(isinstance(v, float) and not math.isfinite(v) for v in values):
                shown = ",".join(f"{v:g}" if isinstance(v, float) else str(v) for v in values)
                self.error(f"argument --{dest.replace('_', '-')}: {shown} is not a finite number; give a real value")
        return parsed, extras


def parse_float_list(text: str) -> tuple[float, ...]:
    try:
        return tuple(float(x) for x in text.split(",") if x.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not a comma-separated list of numbers (e.g. 1,3,7.5)")


def parse_extractor_list(text: str) -> tuple[str, ...]:
    """argparse type of --features: extractor specs whose kinds are in the extractor registry."""
    from bench.features import check_extractor_spec

    try:
        return tuple(check_extractor_spec(f.strip()) for f in text.split(",") if f.strip())
    except UserError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def add_generation_args(p: argparse.ArgumentParser) -> None:
    from bench.models.loader import DEFAULT_MODEL, DTYPES
    from bench.runspec import GUIDANCE_FORMULATIONS, SCHEDULER_ALIASES

    p.add_argument("--model", default=DEFAULT_MODEL, help=f"hub id, local pipeline dir, single-file checkpoint, or built-in (default {DEFAULT_MODEL})")
    p.add_argument("--prompts", default="drawbench", help="prompt set name or file (.yaml/.txt/.csv/.tsv/.jsonl)")
    p.add_argument("--category", action="append", default=[], help="keep only this category (repeatable)")
    p.add_argument("--per-category", type=int, help="first N prompts of each category")
    p.add_argument("--guidance", type=parse_float_list, default=(7.5,), help="comma-separated guidance scales (default 7.5)")
    p.add_argument("--guidance-formulation", default="cfg", choices=list(GUIDANCE_FORMULATIONS))
    p.add_argument("--images-per-prompt", type=int, default=1)
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--scheduler", help=f"{', '.join(SCHEDULER_ALIASES)} or a diffusers class name (default: the model's)")
    p.add_argument("--dtype", default="float32", choices=list(DTYPES))
    p.add_argument("--device", default="auto", help="auto (cuda, then mps, then cpu), cpu, cuda, cuda:N, mps")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--height", type=int)
    p.add_argument("--width", type=int)
    p.add_argument("--negative-prompt", default="")
    p.add_argument("--out", required=True, help="run directory to write (or resume)")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")


def spec_from_args(args):
    from bench.runspec import RunSpec

    return RunSpec(
        out=args.out, model=args.model, prompts=args.prompts, categories=tuple(args.category),
        per_category=args.per_category, guidance=args.guidance, guidance_formulation=args.guidance_formulation,
        images_per_prompt=args.images_per_prompt, steps=args.steps, scheduler=args.scheduler, dtype=args.dtype,
        device=args.device, batch_size=args.batch_size, seed=args.seed, height=args.height, width=args.width,
        negative_prompt=args.negative_prompt,
    )


def add_generate_parser(sub) -> None:

    p = sub.add_parser("generate", help="generate images for a prompt set into a run directory",
                       epilog=GENERATE_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_generation_args(p)
    p.set_defaults(func=run_generate)


def _secondary_rank() -> bool:
    """A process other than rank 0 of a multi-process launch (docs/scale.md)."""
    from bench.distributed import env_rank

    return env_rank() != 0


def run_generate(args) -> int:
    from bench.generate import generate

    result = generate(spec_from_args(args), progress=not args.no_progress)
    if _secondary_rank():  # one line per run, not per process
        return 0
    rate = result.n_generated / result.seconds if result.seconds > 0 and result.n_generated else 0.0
    print(f"run: {result.run_dir}  ({result.n_images} images, {result.n_generated} generated now"
          + (f", {rate:.2f} img/s" if rate else "") + ")")
    return 0


def add_import_parser(sub) -> None:
    p = sub.add_parser("import", help="turn a folder of images + a prompt file into a run directory",
                       epilog=IMPORT_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("images", help="folder of images (png, jpg, webp, ...)")
    p.add_argument("--prompts", required=True, help="prompt file or set name whose ids or 'file' column name the images")
    p.add_argument("--model-name", required=True, help="what made the images (recorded in the manifest)")
    p.add_argument("--out", required=True, help="run directory to write")
    p.set_defaults(func=run_import)


def run_import(args) -> int:
    from bench.importer import import_images

    result = import_images(args.images, args.prompts, args.model_name, args.out)
    print(f"run: {result.run_dir}  ({result.n_images} images for {result.n_prompts} prompts)")
    return 0


SCORE_EPILOG = """examples:
  # FD on EfficientNet-Lite0 features (works offline) against another run, per guidance
  t2i-bench score runs/demo --reference runs/other --features efficientnet-lite0
  # FID with Inception weights from a local file, against pytorch-fid / clean-fid statistics
  t2i-bench score runs/sd21 --reference coco30k_stats.npz --inception-weights pt_inception-2015-12-05-6726825d.pth
  # CLIP score with an open_clip model from the cache
  t2i-bench score runs/sd21 --features "" --clip ViT-B-32@laion2b_s34b_b79k

Features are cached: a run's in RUN/features/, a reference folder's (not a run) in the user
cache, $T2I_AUDIT_CACHE/features if set, else ~/.cache/t2i-audit/features on Linux
(platformdirs' user cache dir elsewhere); delete it to free space, it is rebuilt on demand.
Scoring a run again against another --reference keeps the earlier reference's rows
in metrics.parquet (one row per metric, subset, guidance and reference).
"""


def add_score_parser(sub) -> None:
    p = sub.add_parser("score", help="score a run: FD/FID, KID, IS, precision/recall, CLIP score, CMMD, compositional accuracy",
                       epilog=SCORE_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run", help="run directory")
    add_scoring_args(p)
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=run_score)


def add_scoring_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--reference", help="folder of images, another run directory, or a .npz with mu/sigma")
    from bench.features import EXTRACTORS

    p.add_argument("--features", default="inception", type=parse_extractor_list,
                   help=f"comma-separated image extractors, of the kinds {', '.join(EXTRACTORS.names())} "
                        "(e.g. efficientnet-lite0, dinov2:vitb14, clip:MODEL@TAG; default inception; '' for none)")
    p.add_argument("--clip", help="CLIP for CLIP score/CMMD: 'builtin' (the shapes-world evaluator) or MODEL@TAG")
    p.add_argument("--inception-weights", help="local pt_inception-2015-12-05 weights file")
    p.add_argument("--feature-batch-size", type=int, default=32)
    p.add_argument("--kid-subset-size", type=int, default=1000)
    p.add_argument("--bootstrap", type=int, default=1000, metavar="N",
                   help="bootstrap resamples for each metric's 95%% interval (0: no intervals; default 1000)")
    p.add_argument("--bootstrap-seed", type=int, default=0, help="seed of the bootstrap (default 0)")


def score_spec_from_args(args, run: str):
    from bench.score import ScoreSpec

    return ScoreSpec(run=run, reference=args.reference, features=args.features,
                     clip=args.clip, batch_size=args.feature_batch_size, kid_subset_size=args.kid_subset_size,
                     inception_weights=args.inception_weights, bootstrap=args.bootstrap, seed=args.bootstrap_seed)


def run_score(args) -> int:
    from bench.contract import METRICS
    from bench.score import score_run

    table = score_run(score_spec_from_args(args, args.run), progress=not args.no_progress)
    if _secondary_rank():  # rank 0 prints (and writes) the metrics
        return 0
    overall = table[table.subset == "all"][["metric", "guidance", "value", "ci_low", "ci_high", "n", "n_for_1pct"]]
    # NaN guidance is the row of all scales together (the only row of a run with one scale)
    overall = overall.astype({"guidance": object})
    overall["guidance"] = [("all" if g != g else f"{g:g}") for g in table[table.subset == "all"].guidance]
    with __import__("pandas").option_context("display.width", 200, "display.max_rows", 200):
        print(overall.to_string(index=False))
    print(f"metrics: {args.run}/{METRICS}")
    if not args.clip:  # after the work, so that a refusal stays the one line on stderr
        print("info: no CLIP score or CMMD: they need --clip (builtin for the shapes world, or MODEL@TAG)",
              file=sys.stderr)
    return 0


SWEEP_EPILOG = """examples:
  # the guidance curve of the papers: FD against CLIP score, one point per scale
  t2i-bench sweep --guidance 1,1.5,2,3,4,5,7.5,10 --prompts shapes --per-category 4 \\
      --reference refs/shapes --features efficientnet-lite0 --clip builtin --out runs/sweep
Existing images are reused: re-running with more scales only generates the new ones.
"""


def add_sweep_parser(sub) -> None:
    p = sub.add_parser("sweep", help="generate + score a list of guidance scales; write sweep.parquet and sweep.png",
                       epilog=SWEEP_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_generation_args(p)
    add_scoring_args(p)
    p.set_defaults(func=run_sweep, guidance=(1.0, 1.5, 2.0, 3.0, 4.0, 5.0, 7.5, 10.0))


def run_sweep(args) -> int:
    from bench.contract import SWEEP, SWEEP_PLOT
    from bench.sweep import run_sweep as sweep

    table = sweep(spec_from_args(args), score_spec_from_args(args, args.out), progress=not args.no_progress)
    if _secondary_rank():
        return 0
    print(table.to_string(index=False))
    print(f"sweep: {args.out}/{SWEEP}  plot: {args.out}/{SWEEP_PLOT}")
    return 0


REFERENCE_EPILOG = """examples:
  # exact renders of the shapes prompts' specs: the built-in world's reference for FD/KID/P-R
  t2i-bench reference --prompts shapes --images-per-prompt 4 --out refs/shapes
"""


def add_reference_parser(sub) -> None:
    p = sub.add_parser("reference", help="render the built-in world's reference images for a prompt set with specs",
                       epilog=REFERENCE_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--prompts", default="shapes")
    p.add_argument("--category", action="append", default=[])
    p.add_argument("--per-category", type=int)
    p.add_argument("--images-per-prompt", type=int, default=4)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", required=True)
    p.set_defaults(func=run_reference)


def run_reference(args) -> int:
    from bench.prompts import load_prompt_set
    from bench.world.reference import render_reference

    prompt_set = load_prompt_set(args.prompts).subset(args.category or None, args.per_category)
    n = render_reference(prompt_set, args.out, args.images_per_prompt, args.seed)
    print(f"reference: {args.out}  ({n} renders)")
    return 0


COMPARE_EPILOG = """examples:
  # two guidance scales of one run: paired by prompt, with a 95% interval for every difference
  t2i-bench compare runs/demo@3 runs/demo@7.5
  # two models on one prompt set (paired by prompt id), a third against the first too
  t2i-bench compare runs/sd15 runs/sd21 runs/sdxl --out runs/compare-sd
RUN@G keeps the images of guidance scale G.  A run given whole uses all its images.
"""


def add_compare_parser(sub) -> None:
    p = sub.add_parser("compare", help="differences of every metric between runs, with paired 95%% intervals",
                       epilog=COMPARE_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("runs", nargs="+", metavar="RUN[@GUIDANCE]", help="the baseline run first, then the others")
    p.add_argument("--out", help="folder for compare.parquet and compare.png (default: a compare-A-vs-B "
                                 "folder beside the first run)")
    p.add_argument("--resamples", type=int, default=1000, help="bootstrap resamples (default 1000)")
    p.add_argument("--seed", type=int, default=0, help="seed of the bootstrap (default 0)")
    p.add_argument("--metrics", type=lambda s: [m for m in s.split(",") if m],
                   help="comma-separated metric names to compare (default: every metric both runs have)")
    p.add_argument("--no-set-metrics", action="store_true",
                   help="compare per-image metrics only (skip FD/KID/CMMD/precision/recall)")
    p.add_argument("--no-categories", action="store_true", help="print the overall rows only")
    p.set_defaults(func=run_compare)


def run_compare(args) -> int:
    from pathlib import Path

    from bench.compare import compare_runs, format_table, parse_side
    from bench.compare_plot import save_comparison

    sides = [parse_side(text) for text in args.runs]
    result = compare_runs(sides, resamples=args.resamples, seed=args.seed, set_metrics=not args.no_set_metrics,
                          metrics=args.metrics)
    out = Path(args.out) if args.out else sides[0].run.parent / (
        "compare-" + "-vs-".join(s.label.replace("@", "_w") for s in sides))
    if out.exists() and not out.is_dir():
        raise UserError(f"--out '{out}' is a file: pass a folder for compare.parquet and compare.png")
    try:
        table_path, plot_path = save_comparison(result, sides, out)
    except OSError as exc:
        raise UserError(f"cannot write to '{out}' ({exc.strerror or exc}): pass a writable --out folder") from None
    print(format_table(result, categories=not args.no_categories))
    print(f"compare: {table_path}  plot: {plot_path}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    from bench.cli_prompts import add_prompts_parser

    parser = OneLineArgumentParser(
        prog="t2i-bench", description="Benchmark text-to-image models: prompt sets, generation, run directories.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", required=True)
    add_prompts_parser(sub)
    add_generate_parser(sub)
    add_import_parser(sub)
    add_score_parser(sub)
    add_sweep_parser(sub)
    add_compare_parser(sub)
    add_reference_parser(sub)
    return parser


class _StderrHandler(logging.Handler):
    """Library warnings as 'warning: ...' lines on the *current* sys.stderr."""

    def emit(self, record: logging.LogRecord) -> None:
        print(f"{record.levelname.lower()}: {record.getMessage()}", file=sys.stderr)


def setup_cli_output() -> None:
    logger = logging.getLogger("t2i_audit")
    if not any(isinstance(h, _StderrHandler) for h in logger.handlers):
        logger.addHandler(_StderrHandler(logging.WARNING))
        logger.propagate = False
    # Deprecation chatter from dependencies is not something a user can act on.
    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", category=DeprecationWarning)


#: errno -> the fix, for write failures the environment causes (disk full, file size limit, read-only, permissions).
_OS_ERROR_FIXES = {
    errno.ENOSPC: "free disk space (or write to another disk), then run the same command again to resume",
    errno.EDQUOT: "free space within your disk quota, then run the same command again to resume",
    errno.EFBIG: "the file size limit (ulimit -f) is too small for it: raise it, then run the same command again "
                 "to resume",
    errno.EROFS: "it is on a read-only file system: write to a writable place (another --out, or a copy of the run)",
    errno.EACCES: "fix its permissions, or write to a place you may write to (another --out, or a copy of the run)",
    errno.EPERM: "fix its permissions, or write to a place you may write to (another --out, or a copy of the run)",
}


def os_error_message(exc: OSError) -> str | None:
    """One line for an OSError the environment caused (errno in ``_OS_ERROR_FIXES``), naming the path and
    the fix; None for any other OSError.  Atomic writes (``bench.atomic``) leave every earlier file whole."""
    fix = _OS_ERROR_FIXES.get(exc.errno)
    if fix is None:
        return None
    where = f"'{exc.filename}'" if exc.filename is not None else "a file"
    verb = "access" if exc.errno in (errno.EACCES, errno.EPERM) else "write"
    what = (exc.strerror or type(exc).__name__).replace("\n", " ")
    return f"cannot {verb} {where} ({what}): {fix}; files written before are kept"


def run_cli(parser: argparse.ArgumentParser, argv=None) -> int:
    """Parse, run, and turn a UserError into one line on stderr with exit code 2."""
    setup_cli_output()
    args = parser.parse_args(argv)
    try:
        return args.func(args) or 0
    except UserError as exc:
        if not getattr(exc, "quiet", False):  # quiet: another rank of a multi-process run prints it
            print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    except OSError as exc:
        message = os_error_message(exc)
        if message is None:
            raise  # not the environment's doing: a bug, keep the traceback
        print(f"error: {message}", file=sys.stderr)
        return UserError.exit_code
    except KeyboardInterrupt:
        print("error: interrupted; run the same command again to resume", file=sys.stderr)
        return 130
    finally:
        _close_process_group()


def _close_process_group() -> None:
    """Destroy a torch.distributed process group this command joined (multi-process runs): left alive, gloo
    can abort the interpreter at exit (SIGABRT) while another rank is already gone."""
    dist = sys.modules.get("torch.distributed")
    if dist is not None and dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def main(argv=None) -> int:
    return run_cli(build_parser(), argv)


if __name__ == "__main__":
    sys.exit(main())
