"""Speed-up of N processes over 1 for ``t2i-bench generate`` on this machine (docs/scale.md).

Runs the same generation twice into temporary run directories, once as one process
(``python -m bench.cli generate``) and once as N processes on gloo
(``torchrun --standalone --nproc_per_node N -m bench.cli generate``), every process with
one thread (OMP_NUM_THREADS=1), checks that the images are byte-identical, and prints
the wall-clock times, the generation rates (images/s of the generation loop, model
loading excluded) and their ratios.  With --repeats > 1 the two are alternated and
the best time of each is kept (other work on a shared machine only slows a run down).

    python scripts/bench_distributed.py                       # builtin:shapes-ldm, 20 steps, 96 images, 2 processes
    python scripts/bench_distributed.py --processes 4 --repeats 3
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
#: 8 categories x 4 prompts x 3 images = 96 images, 12 batches of 8 (6 per process with 2).
CATEGORIES = ("counting", "position", "single_object", "colors", "binding", "size", "misspellings", "descriptive")


def generate_args(args, out: Path) -> list[str]:
    cats = [a for c in CATEGORIES for a in ("--category", c)]
    return ["-m", "bench.cli", "generate", "--model", args.model, "--prompts", "shapes", *cats,
            "--per-category", str(args.per_category), "--images-per-prompt", str(args.images_per_prompt),
            "--steps", str(args.steps), "--batch-size", str(args.batch_size), "--device", "cpu",
            "--no-progress", "--out", str(out)]


def timed(cmd: list[str], env: dict) -> tuple[float, float]:
    """(wall seconds, images/s of the generation loop as t2i-bench prints it)."""
    start = time.perf_counter()
    done = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if done.returncode != 0:
        sys.exit(f"error: {' '.join(cmd[:6])} ... failed ({done.returncode}): {done.stderr.strip()[-500:]}")
    rate = re.search(r"([0-9.]+) img/s", done.stdout)
    return wall, float(rate.group(1)) if rate else float("nan")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="builtin:shapes-ldm")
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--per-category", type=int, default=4)
    p.add_argument("--images-per-prompt", type=int, default=3)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--processes", type=int, default=2)
    p.add_argument("--repeats", type=int, default=1)
    args = p.parse_args()

    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    python = sys.executable
    best = {"one": (float("inf"), 0.0), "many": (float("inf"), 0.0)}
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="bench-distributed-") as tmp:
        tmp = Path(tmp)
        for _ in range(args.repeats):
            for name in ("one", "many"):
                out = tmp / name
                shutil.rmtree(out, ignore_errors=True)
                launcher = [] if name == "one" else ["-m", "torch.distributed.run", "--standalone",
                                                     "--nproc_per_node", str(args.processes)]
                wall, rate = timed([python, *launcher, *generate_args(args, out)], env)
                if wall < best[name][0]:
                    best[name] = (wall, rate)
        one = {p.name: p.read_bytes() for p in (tmp / "one" / "images").glob("*.png")}
        many = {p.name: p.read_bytes() for p in (tmp / "many" / "images").glob("*.png")}
    identical = one == many
    (w1, r1), (wn, rn) = best["one"], best["many"]
    print(f"model {args.model}, {args.steps} steps, {len(one)} images, batch size {args.batch_size}, "
          f"1 thread per process, {os.cpu_count()} CPUs, load average {load_before:.1f} before, "
          f"{os.getloadavg()[0]:.1f} after (other work sharing the cores)")
    print(f"1 process:   wall {w1:6.1f} s   generation {r1:6.2f} img/s")
    print(f"{args.processes} processes: wall {wn:6.1f} s   generation {rn:6.2f} img/s")
    print(f"speed-up (generation rate): {rn / r1:.2f}x   speed-up (wall clock, with start-up): {w1 / wn:.2f}x")
    print(f"images byte-identical: {identical}")
    return 0 if identical else 1


if __name__ == "__main__":
    sys.exit(main())
