"""Benchmark: peak memory of the Fréchet distance at 2k vs 20k images (goal: 20k <= 1.1 x 2k).

Each measurement runs in a fresh Python subprocess, for two paths:

* ``streaming``: synthetic float32 features (default 1280-d, EfficientNet-Lite0's
  size) made batch by batch, never all at once, for a generated and a reference
  set, fed into ``StreamingGaussian``; then ``finalize`` and ``frechet_distance``.
* ``in-memory``: what ``score_run`` does today with features from
  ``extract_features``: each set is held as one N x d float32 array (batches
  collected and concatenated, then re-indexed into the caller's order, as
  ``extract_features`` does), the generated rows are selected again (as
  ``score_run``'s ``_rows_of``), then ``GaussianStats.from_features`` and ``fd``.

Reported per run: peak RSS (``ru_maxrss``: includes the interpreter, numpy and
scipy), the RSS growth over the RSS after imports, and the peak of traced
Python/numpy allocations (``tracemalloc``: the algorithm's own arrays; LAPACK
workspace inside scipy is not traced).  The machine's other load does not change
these numbers much, only the wall times.  A script, not a test.  ``make perf`` measures the whole of score's metrics (FD, KID,
precision/recall, CMMD) from a memory-mapped cache the same way (``bench.perf.measure_memory``).

    python scripts/bench_fid_memory.py                       # 2000 vs 20000 images, 1280-d
    python scripts/bench_fid_memory.py --dim 2048 --sizes 2000 20000
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
import tracemalloc
import warnings

import numpy as np


from bench.perf import feature_batches  # noqa: E402  (shared with make perf)


def streaming(n: int, dim: int, batch_size: int) -> float:
    from bench.metrics.fid import StreamingGaussian, frechet_distance

    stats = []
    for seed, shift in ((1, 0.0), (2, 0.1)):
        acc = StreamingGaussian()
        for batch in feature_batches(n, dim, batch_size, seed, shift):
            acc.update(batch)
        stats.append(acc.finalize())
    g, r = stats
    return frechet_distance(g.mu, g.sigma, r.mu, r.sigma)


def in_memory(n: int, dim: int, batch_size: int) -> float:
    from bench.metrics.fid import GaussianStats, fd

    sets = []
    for seed, shift in ((1, 0.0), (2, 0.1)):
        feats = np.concatenate(list(feature_batches(n, dim, batch_size, seed, shift)))  # extract_features._compute
        order = np.arange(n)[::-1]
        sets.append(feats[order])  # extract_features: back to the caller's row order (a copy)
    gen, ref = sets
    gen_rows = gen[np.ones(n, dtype=bool)]  # score_run._rows_of: the rows of one guidance group (a copy)
    return fd(gen_rows, GaussianStats.from_features(ref)).value


def child(path: str, n: int, dim: int, batch_size: int) -> None:
    import bench.metrics.fid  # noqa: F401  (imports numpy/scipy before the baseline)
    import scipy.linalg  # noqa: F401

    warnings.simplefilter("ignore")  # N <= d warnings at small sizes
    base_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    tracemalloc.start()
    start = time.perf_counter()
    value = {"streaming": streaming, "in-memory": in_memory}[path](n, dim, batch_size)
    seconds = time.perf_counter() - start
    _, traced_peak = tracemalloc.get_traced_memory()
    peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # kB on Linux
    print(json.dumps({"fd": value, "rss_base_mb": base_kb / 1024, "rss_peak_mb": peak_kb / 1024,
                      "traced_peak_mb": traced_peak / 2**20, "seconds": seconds}))


def measure(path: str, n: int, dim: int, batch_size: int) -> dict:
    cmd = [sys.executable, __file__, "--child", path, "--n", str(n), "--dim", str(dim), "--batch-size", str(batch_size)]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", type=int, nargs=2, default=(2000, 20000), metavar=("SMALL", "LARGE"))
    ap.add_argument("--dim", type=int, default=1280, help="feature dimension (1280 EfficientNet-Lite0, 2048 Inception)")
    ap.add_argument("--batch-size", type=int, default=256)
    ap.add_argument("--paths", nargs="+", default=["streaming", "in-memory"], choices=["streaming", "in-memory"])
    ap.add_argument("--child", choices=["streaming", "in-memory"], help=argparse.SUPPRESS)
    ap.add_argument("--n", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(args.child, args.n, args.dim, args.batch_size)
        return

    small, large = args.sizes
    print(f"features: synthetic float32, d = {args.dim}, batches of {args.batch_size}; generated and reference "
          f"sets of N images each; one fresh subprocess per measurement")
    for path in args.paths:
        a, b = measure(path, small, args.dim, args.batch_size), measure(path, large, args.dim, args.batch_size)
        print(f"\n{path}:")
        for n, m in ((small, a), (large, b)):
            print(f"  N={n:6d}: peak RSS {m['rss_peak_mb']:7.1f} MB (after imports {m['rss_base_mb']:6.1f} MB, "
                  f"growth {m['rss_peak_mb'] - m['rss_base_mb']:6.1f} MB), traced peak {m['traced_peak_mb']:7.1f} MB, "
                  f"FD {m['fd']:.4f}, {m['seconds']:.1f} s")
        rss = b["rss_peak_mb"] / a["rss_peak_mb"]
        growth = (b["rss_peak_mb"] - b["rss_base_mb"]) / (a["rss_peak_mb"] - a["rss_base_mb"])
        traced = b["traced_peak_mb"] / a["traced_peak_mb"]
        print(f"  ratio {large}/{small}: peak RSS {rss:.2f}x, RSS growth {growth:.2f}x, traced peak {traced:.2f}x "
              f"(goal <= 1.1x: {'met' if max(rss, traced) <= 1.1 else 'NOT met'})")


if __name__ == "__main__":
    main()
