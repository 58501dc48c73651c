"""Benchmark: batched generation against the naive loop (one pipeline call per prompt and seed).

Both use the same loaded pipeline, scheduler, steps, guidance and per-image seeds,
and the same ``bench.generate.run_batch`` call; only the batch size differs.  Prints
whether the PNGs are byte-identical and the throughput ratio.  A script, not a test.

    make bench-generate            # defaults below
    python scripts/bench_generate.py --prompts 24 --steps 20 --batch-size 24
"""

from __future__ import annotations

import argparse
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np  # noqa: E402

from bench.generate import build_plan, plan_batches, run_batch  # noqa: E402
from bench.models.loader import DEFAULT_MODEL, load_pipeline, resolve_model  # noqa: E402
from bench.perf import decode, timed_images  # noqa: E402  (shared with make perf)
from bench.prompts import load_prompt_set  # noqa: E402
from bench.runspec import RunSpec  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=DEFAULT_MODEL)
    ap.add_argument("--prompt-set", default="drawbench")
    ap.add_argument("--prompts", type=int, default=16, help="how many prompts of the set")
    ap.add_argument("--images-per-prompt", type=int, default=2)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--guidance", type=float, default=7.5)
    ap.add_argument("--batch-size", type=int, default=32)
    args = ap.parse_args()

    import torch

    prompts = load_prompt_set(args.prompt_set).prompts[: args.prompts]
    spec = RunSpec(out="-", model=args.model, guidance=(args.guidance,), steps=args.steps,
                   images_per_prompt=args.images_per_prompt, batch_size=args.batch_size)
    resolved = resolve_model(args.model)
    pipe = load_pipeline(resolved, "float32", "cpu")
    plan = build_plan(prompts, spec)
    n = len(plan)
    print(f"model: {resolved.ref} ({type(pipe).__name__}, {resolved.path})")
    print(f"work: {n} images = {len(prompts)} prompts x {args.images_per_prompt} seeds, {args.steps} steps, "
          f"guidance {args.guidance:g}, {type(pipe.scheduler).__name__}, torch threads {torch.get_num_threads()}")

    run_batch(pipe, plan[:2], spec, None, None)  # warm-up (allocator, kernels) for both sides
    naive_s, _, naive = timed_images(pipe, plan_batches(plan, 1), spec)
    batched_s, _, batched = timed_images(pipe, plan_batches(plan, args.batch_size), spec)
    identical = sum(a == b for a, b in zip(naive, batched))
    max_diff = max(int(np.abs(decode(a) - decode(b)).max()) for a, b in zip(naive, batched))
    print(f"naive loop : {naive_s:7.2f} s  {n / naive_s:6.2f} img/s  (batch size 1)")
    print(f"batched    : {batched_s:7.2f} s  {n / batched_s:6.2f} img/s  (batch size {args.batch_size})")
    print(f"throughput ratio batched/naive: {naive_s / batched_s:.2f}x (goal >= 3x)")
    print(f"identical PNGs: {identical}/{n}; largest pixel difference {max_diff}/255"
          + (" (all byte-identical)" if identical == n else " (float rounding differs with batch shape; see docs/PITFALLS.md)"))


if __name__ == "__main__":
    main()
