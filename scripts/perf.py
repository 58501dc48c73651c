"""``make perf``: every performance figure of the project in one run, each a ratio measured in this run.

Writes build/perf/perf.json and a markdown table (printed, and written to docs/perf.md).
Every figure is the ratio of two measurements taken minutes apart on this machine in
this process, so another job's load skews both sides alike; absolute seconds are in
the JSON for reference only.  The measuring functions are ``bench.perf`` (generation,
scoring, sweep, memory) and ``scripts/bench_knn.py`` (kNN; it needs ``audit``).

    make perf                                   # the default sizes (about 15 minutes on 2 cores)
    python scripts/perf.py --knn-size 1000000   # the kNN goal's own size (an hour or more on 2 cores)
    python scripts/perf.py --only generation memory   # re-measures these, keeps the other figures of perf.json
    python scripts/perf.py --tiny               # every figure at toy sizes (the test's; numbers mean nothing)
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent))  # bench_knn, next to this script

PARTS = ("generation", "scoring", "sweep", "memory", "knn")

#: Sizes of ``make perf`` and of ``--tiny`` (the test's).
SIZES = {
    "default": {
        "generation": dict(prompts=8, images_per_prompt=2, steps=20, batch_size=16),
        "scoring": dict(n=128, repeat=1),
        "sweep": dict(scales=8, n_per_scale=16, n_ref=64),
        "memory": dict(small=2000, large=20000, dim=1280, clip_dim=512),
        "knn": dict(dim=512, queries=1500, batch=500),
    },
    "tiny": {
        "generation": dict(prompts=2, images_per_prompt=1, steps=2, batch_size=2, gemm_seconds=0.01, repeat=1),
        "scoring": dict(n=8, repeat=1, batch_size=8),
        "sweep": dict(scales=2, n_per_scale=6, n_ref=8, batch_size=8),
        "memory": dict(small=40, large=80, dim=16, clip_dim=8),
        "knn": dict(dim=64, queries=60, batch=30, clusters=20, index_key="OPQ16_64,IVF16_HNSW32,PQ16x8"),
    },
}


def knn_figures(n: int, dim: int, queries: int, batch: int, clusters: int | None = None,
                index_key: str | None = None, threads: int | None = None) -> list[dict]:
    """recall@10, wall-clock speed-up over exact search and bytes per vector of the re-ranked IVF-PQ index."""
    import bench_knn

    from audit.index import RERANK_FACTOR
    from bench.perf import figure

    key = index_key or bench_knn.default_index_key(n)
    clusters = clusters or max(20, n // 333)  # 3000 clusters at 1M, as make bench-knn; 300 at 100k
    argv = ["--n", str(n), "--dim", str(dim), "--queries", str(queries), "--clusters", str(clusters),
            "--batch", str(batch), "--index-key", key, "--chunk", str(min(50_000, n))]
    if threads:
        argv += ["--threads", str(threads)]
    args = bench_knn.parser().parse_args(argv)
    args.rerank = RERANK_FACTOR
    report = bench_knn.run(args)
    if report is None:
        raise RuntimeError(f"autofaiss built no index {key} for {n} x {dim}")
    size = f"{n:,} x {dim}, {report['queries_eval']} held-out queries, {report['threads']} threads"
    goal_size = "" if n >= 1_000_000 else "the goal is stated for 1M x 512 (--knn-size 1000000); "
    detail = {k: report[k] for k in ("index_key", "nprobe", "rerank_factor", "exact_qps", "approx_qps",
                                     "speedup_cpu_time", "codes_alone_recall_at_10", "index_bytes",
                                     "exact_search_seconds", "approx_search_seconds", "autofaiss_build_seconds")}
    return [
        figure("kNN recall@10 (IVF-PQ + exact re-ranking)", report["recall_at_10"], 0.9, True, "", size,
               f"{goal_size}{key}, nprobe {report['nprobe']}, top {10 * RERANK_FACTOR} re-ranked", **detail),
        figure("kNN speed-up over exact search (wall clock)", report["speedup"], 20.0, True, "x", size,
               f"{goal_size}{report['approx_qps']:.0f} vs {report['exact_qps']:.0f} queries/s; by CPU time "
               f"{report['speedup_cpu_time']:.1f}x", **detail),
        figure("kNN index bytes per vector", report["bytes_per_vector"], 100.0, False, " B", size,
               f"{goal_size}index file {report['index_bytes'] / 2**20:.1f} MiB", **detail),
    ]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--knn-size", type=int, default=100_000, help="kNN database vectors (the goal's: 1000000)")
    ap.add_argument("--only", nargs="+", choices=PARTS, default=list(PARTS), help="measure only these")
    ap.add_argument("--tiny", action="store_true", help="toy sizes: checks the machinery, the numbers mean nothing")
    ap.add_argument("--out-dir", default="build/perf", help="where perf.json and perf.md go")
    ap.add_argument("--docs", default="docs/perf.md", help="markdown copy for the docs ('' = none)")
    args = ap.parse_args(argv)

    from bench import perf
    from bench.atomic import atomic_write_text

    sizes = SIZES["tiny" if args.tiny else "default"]
    knn_n = 2000 if args.tiny else args.knn_size
    measures = {
        "generation": lambda: perf.measure_generation(**sizes["generation"]),
        "scoring": lambda: perf.measure_scoring(**sizes["scoring"]),
        "sweep": lambda: perf.measure_sweep(**sizes["sweep"]),
        "memory": lambda: perf.measure_memory(**sizes["memory"]),
        "knn": lambda: knn_figures(knn_n, **sizes["knn"]),
    }
    report = {"created": time.strftime("%Y-%m-%d %H:%M:%S %Z"), "machine": perf.machine(),
              "tiny": args.tiny, "seconds": {}, "figures": []}
    start = time.perf_counter()
    for part in PARTS:
        if part not in args.only:
            continue
        print(f"[perf] {part} ...", file=sys.stderr, flush=True)
        t0 = time.perf_counter()
        report["figures"] += [dict(f, part=part, measured=time.strftime("%Y-%m-%d %H:%M %Z")) for f in measures[part]()]
        report["seconds"][part] = time.perf_counter() - t0
        print(f"[perf] {part}: {report['seconds'][part]:.0f} s", file=sys.stderr, flush=True)
    report["seconds"]["total"] = time.perf_counter() - start
    report["machine"]["load_average_end"] = perf.machine().get("load_average")

    out = Path(args.out_dir)
    previous = out / "perf.json"
    if set(args.only) != set(PARTS) and previous.is_file() and not args.tiny:
        # --only re-measures some parts: the other parts' figures are kept from the last run (each
        # figure records when it was measured; every ratio is still measured within one run of its part)
        old = json.loads(previous.read_text())
        kept = [f for f in old.get("figures", []) if f.get("part") not in args.only and not old.get("tiny")]
        report["figures"] = sorted(kept + report["figures"], key=lambda f: PARTS.index(f["part"]))
        report["seconds"] = {**{k: v for k, v in old.get("seconds", {}).items() if k not in args.only and k != "total"},
                             **report["seconds"]}
        report["seconds"]["total"] = sum(v for k, v in report["seconds"].items() if k != "total")
        report["merged"] = True
    table = perf.markdown(report)
    atomic_write_text(out / "perf.json", json.dumps(report, indent=2, default=float) + "\n")
    atomic_write_text(out / "perf.md", table)
    if args.docs:
        atomic_write_text(args.docs, table)
    print(table)
    print(f"wrote {out / 'perf.json'}" + (f" and {args.docs}" if args.docs else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
