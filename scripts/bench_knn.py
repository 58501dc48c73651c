"""Benchmark: autofaiss IVF-PQ against exact search on 1M clustered 512-d CLIP-like vectors.

Goals (from the scale issue): recall@10 >= 0.9, >= 20x the exact search's query
throughput, <= 100 bytes per vector.

Data: synthetic float16 unit vectors, clustered rather than uniform, so that the
inverted lists and product quantiser face the kind of structure real CLIP
embeddings have.  A seeded mixture of ``--clusters`` Gaussian clusters:

* cluster centres: random unit vectors; cluster sizes: log-normal weights (a few
  big clusters, a long tail, as concept frequencies in LAION);
* each cluster's spread s_c is log-uniform in [0.4, 1.2] (cosine to its centre
  about 1/sqrt(1 + s_c^2), i.e. 0.93 .. 0.64);
* the within-cluster noise is anisotropic with a power-law spectrum (variance of
  axis j proportional to 1/j, as the PCA spectrum of CLIP embeddings decays), on
  axes of one random rotation, with the spectrum's order permuted per cluster so
  each cluster has its own principal directions;
* x = normalise(centre + s_c * noise), stored as float16 (clip-retrieval's dtype).

Queries are fresh draws from the same mixture (another random stream), never
copies of database rows; one split tunes nprobe, the other (held out) is scored.

The database goes to a temporary embeddings folder in clip-retrieval's layout
(``img_emb/img_emb_<i>.npy``) and autofaiss reads it from there with
embedding-reader, as it would a real LAION shard set.  Exact search is faiss
``IndexFlatIP`` on the same vectors cast to float32; both searches run with the
same thread count, on the same queries, in the same batches.

Index: autofaiss' own choice under a memory budget of 0.95 x 100 B x N, or
``--index-key``.  At 1M x 512 autofaiss picks ``OPQ64_448,IVF16384_HNSW32,PQ64x8``,
which its own estimator puts at 110 B/vector (the centroids are 29 of them), so
``make bench-knn`` passes ``OPQ64_448,IVF4096_HNSW32,PQ64x8`` (82 B/vector
estimated, a tenth of the k-means work; see docs/scale.md).  nprobe: autofaiss
tunes it for its latency budget; we report that, then take the smallest power of
two reaching recall@10 >= 0.9 on the tuning split and score the held-out split.

Search: as ``audit.index.ClipIndex.search`` does it, the compressed index returns
``10 x --rerank`` candidates that are re-scored exactly from the float16
``img_emb`` shards (memory-mapped, only the candidates' rows are read) and cut to
the top 10; ``--rerank 1`` measures the codes alone.  At 1M clustered rows the
codes alone reach recall@10 0.50 at every nprobe: at this density (measured on
100k rows over 300 clusters) the 10th and 11th neighbours' cosines differ by about
0.004 (median), less than the PQ64 error.

Reported: recall@10 (fraction of the exact top-10 found in the approximate
top-10, averaged over held-out queries), QPS of both and their ratio (wall clock
inside ``search``; the CPU-time ratio too, which a loaded machine does not
skew), bytes per vector (index file size / N), build wall times; written to
build/bench/knn.json.  A script, not a test.

    python scripts/bench_knn.py --n 100000 --threads 1     # a quick try, autofaiss' choice
    python scripts/bench_knn.py --index-key 'OPQ64_448,IVF4096_HNSW32,PQ64x8'   # what make bench-knn runs
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from tqdm import tqdm

GOAL_RECALL = 0.9
GOAL_SPEEDUP = 20.0
GOAL_BYTES_PER_VECTOR = 100.0
K = 10


# ---------------------------------------------------------------- data


class ClusteredUnitVectors:
    """A seeded mixture of anisotropic Gaussian clusters, projected onto the unit sphere."""

    def __init__(self, dim: int, n_clusters: int, seed: int):
        rng = np.random.default_rng(seed)
        self.dim = dim
        centres = rng.standard_normal((n_clusters, dim)).astype(np.float32)
        self.centres = centres / np.linalg.norm(centres, axis=1, keepdims=True)
        weights = rng.lognormal(mean=0.0, sigma=1.0, size=n_clusters)
        self.weights = weights / weights.sum()
        self.spread = np.exp(rng.uniform(np.log(0.4), np.log(1.2), size=n_clusters)).astype(np.float32)
        variance = 1.0 / np.arange(1, dim + 1)  # power-law spectrum: variance of axis j ~ 1/j
        self.axis_std = np.sqrt(variance / variance.sum()).astype(np.float32)  # E|noise|^2 = 1
        self.spectrum_order = np.stack([rng.permutation(dim) for _ in range(n_clusters)]).astype(np.int32)
        self.rotation = np.linalg.qr(rng.standard_normal((dim, dim)))[0].astype(np.float32)

    def effective_dim(self) -> float:
        """Participation ratio (sum var)^2 / sum var^2 of the within-cluster noise."""
        var = self.axis_std.astype(np.float64) ** 2
        return float(var.sum() ** 2 / (var**2).sum())

    def sample(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """n float16 unit vectors drawn from the mixture."""
        cluster = rng.choice(len(self.weights), size=n, p=self.weights)
        noise = rng.standard_normal((n, self.dim), dtype=np.float32)
        noise *= self.axis_std[self.spectrum_order[cluster]]
        noise = noise @ self.rotation
        x = self.centres[cluster] + self.spread[cluster, None] * noise
        x /= np.linalg.norm(x, axis=1, keepdims=True)
        return x.astype(np.float16)


def write_embedding_folder(world: ClusteredUnitVectors, n: int, folder: Path, chunk: int, seed: int) -> list[Path]:
    """Write n vectors as clip-retrieval's ``img_emb/img_emb_<i>.npy`` files, chunk by chunk.

    The shard numbers are zero-padded, as clip-retrieval and ``audit.index`` write them:
    autofaiss reads the folder through embedding-reader, which takes the files in name
    order, so with ``img_emb_10.npy`` sorting before ``img_emb_2.npy`` its row ids would
    not be the exact index's (the first run of this benchmark measured recall@10 = 0.05,
    one shard in twenty, that way)."""
    rng = np.random.default_rng([seed, 1])
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    width = len(str((n + chunk - 1) // chunk - 1))
    for i, start in enumerate(tqdm(range(0, n, chunk), desc="database vectors", unit="chunk")):
        path = folder / f"img_emb_{i:0{width}d}.npy"
        np.save(path, world.sample(min(chunk, n - start), rng))
        paths.append(path)
    return paths


# ---------------------------------------------------------------- library compatibility


# ---------------------------------------------------------------- measurement


class Timing:
    """Seconds spent inside ``index.search``: wall clock, and this process' CPU time.

    On a machine shared with other jobs the wall clock includes time the
    scheduler gave to others; the CPU time does not, so the ratio of CPU-time
    throughputs is the load-independent check of the wall-clock ratio.
    """

    def __init__(self):
        self.wall = self.cpu = 0.0


def timed_search(index, queries: np.ndarray, k: int, batch: int, desc: str) -> tuple[np.ndarray, Timing]:
    """Row ids of the top-k for every query, searched in batches of ``batch`` queries."""
    ids, timing = [], Timing()
    for start in tqdm(range(0, len(queries), batch), desc=desc, unit="batch", leave=False):
        q = queries[start:start + batch]
        wall, cpu = time.perf_counter(), time.process_time()
        _, found = index.search(q, k)
        timing.wall += time.perf_counter() - wall
        timing.cpu += time.process_time() - cpu
        ids.append(found)
    return np.concatenate(ids), timing


class Reranked:
    """``ClipIndex.search``'s path: k x factor candidates from the compressed index, re-scored
    exactly from the float16 ``img_emb`` shards (memory-mapped), cut to k."""

    def __init__(self, index, emb_files: list[Path], factor: int):
        from audit.index import ShardRows

        self.index, self.rows, self.factor = index, ShardRows(emb_files), factor

    def search(self, queries: np.ndarray, k: int):
        from audit.index import exact_rerank

        _, candidates = self.index.search(queries, k * self.factor)
        scores, ids = exact_rerank(queries, candidates.astype(np.int64), self.rows)
        return scores[:, :k], ids[:, :k]


def recall_at_k(approx_ids: np.ndarray, exact_ids: np.ndarray) -> float:
    """Mean over queries of |approx top-k ∩ exact top-k| / k."""
    k = exact_ids.shape[1]
    hits = [len(np.intersect1d(a, e)) for a, e in zip(approx_ids, exact_ids)]
    return float(np.mean(hits) / k)


def search_params(index_key: str, nprobe: int) -> str:
    """autofaiss' own parameter string for an nprobe (HNSW quantisers get efSearch = 2 nprobe, as it sets)."""
    if "_HNSW" in index_key:
        return f"nprobe={nprobe},efSearch={2 * nprobe},ht=2048"
    return f"nprobe={nprobe}"


def nlist_of(index) -> int:
    import faiss

    return faiss.extract_index_ivf(index).nlist


def tune_nprobe(index, searcher, index_key, queries, exact_ids, target, batch):
    """Smallest power-of-two nprobe whose recall@10 of ``searcher`` (the index itself, or re-ranked)
    on the tuning split reaches target (else the largest tried)."""
    from autofaiss.external.optimize import set_search_hyperparameters

    tried = []
    nprobe = 1
    while nprobe <= nlist_of(index):
        set_search_hyperparameters(index, search_params(index_key, nprobe), use_gpu=False)
        ids, timing = timed_search(searcher, queries, K, batch, f"tune nprobe={nprobe}")
        tried.append({"nprobe": nprobe, "recall_at_10": recall_at_k(ids, exact_ids), "qps": len(queries) / timing.wall})
        print(f"  nprobe={nprobe:5d}: tuning recall@10 {tried[-1]['recall_at_10']:.4f}, {tried[-1]['qps']:9.1f} QPS")
        if tried[-1]["recall_at_10"] >= target:
            break
        nprobe *= 2
    return tried[-1]["nprobe"], tried


def verdict(ok: bool) -> str:
    return "met" if ok else "MISSED"


# ---------------------------------------------------------------- main


def default_index_key(n: int) -> str:
    """What ``make bench-knn`` / ``make perf`` build: OPQ64 + PQ64x8 codes (~64 B/vector) over an HNSW-quantised
    IVF with 4096 lists at 1M (4 sqrt(N), faiss' guideline; docs/scale.md) and a power of two near sqrt(N)
    below (fewer centroids keep a small index's fixed overhead under the 100 B/vector budget)."""
    nlist = 4096 if n >= 1_000_000 else 2 ** max(4, int(round(np.log2(np.sqrt(n)))))
    return f"OPQ64_448,IVF{nlist}_HNSW32,PQ64x8"


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=1_000_000, help="database vectors (default 1M)")
    ap.add_argument("--dim", type=int, default=512, help="dimension (default 512, CLIP ViT-B)")
    ap.add_argument("--queries", type=int, default=3000, help="queries: a third tunes nprobe, the rest is scored")
    ap.add_argument("--clusters", type=int, default=3000, help="Gaussian clusters in the mixture")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=os.cpu_count(), help="faiss/OpenMP threads for every stage")
    ap.add_argument("--batch", type=int, default=500, help="queries per search call (both indexes)")
    ap.add_argument("--chunk", type=int, default=50_000, help="vectors per img_emb_<i>.npy file")
    ap.add_argument("--index-key", default=None,
                    help="faiss factory string for autofaiss (default: autofaiss chooses under the memory budget)")
    ap.add_argument("--max-index-memory", default=None,
                    help="autofaiss memory budget (default: 0.95 x 100 B x N, in bytes, so the file stays <= 100 B/vector)")
    ap.add_argument("--target-recall", type=float, default=GOAL_RECALL, help="recall the nprobe search aims for")
    ap.add_argument("--rerank", type=int, default=None,
                    help="candidates per result re-scored exactly from img_emb, as ClipIndex.search does "
                         "(default audit.index.RERANK_FACTOR; 1 = the compressed codes alone)")
    ap.add_argument("--work-dir", default=None, help="where the temporary embeddings and index go (default: a temp dir)")
    ap.add_argument("--out", default="build/bench/knn.json")
    return ap


def main() -> int:
    ap = parser()
    args = ap.parse_args()
    if args.n < 10 * K or args.queries < 2 or args.dim < 8:
        ap.error("--n must be >= 100, --queries >= 2 and --dim >= 8")
    if args.rerank is None:
        from audit.index import RERANK_FACTOR

        args.rerank = RERANK_FACTOR
    if args.rerank < 1:
        ap.error("--rerank must be >= 1 (1 = no re-ranking)")
    report = run(args)
    if report is None:
        return 2
    from bench.atomic import atomic_write_text

    atomic_write_text(args.out, json.dumps(report, indent=2) + "\n")
    print(f"\nwrote {args.out}")
    return 0


def run(args: argparse.Namespace) -> dict | None:
    """The measurement (``parser()``'s arguments; ``--rerank`` resolved): the report, or None when autofaiss
    built no index (said on stderr).  ``scripts/perf.py`` calls it too."""
    import faiss
    from autofaiss import build_index
    from autofaiss.external.metadata import IndexMetadata
    from autofaiss.external.optimize import get_optimal_index_keys_v2

    from audit.index.faiss_compat import accept_autofaiss_opq_keyword

    accept_autofaiss_opq_keyword()
    faiss.omp_set_num_threads(args.threads)
    wall_start = time.perf_counter()
    if args.work_dir:
        Path(args.work_dir).mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=args.work_dir, prefix="bench-knn-") as tmp:
        tmp = Path(tmp)
        world = ClusteredUnitVectors(args.dim, args.clusters, args.seed)
        print(f"data: {args.n:,} x {args.dim} float16 unit vectors from {args.clusters} clustered Gaussians "
              f"(noise effective dim {world.effective_dim():.0f}), {args.queries} fresh queries; "
              f"{args.threads} thread(s); folder {tmp}")
        t0 = time.perf_counter()
        files = write_embedding_folder(world, args.n, tmp / "img_emb", args.chunk, args.seed)
        queries = world.sample(args.queries, np.random.default_rng([args.seed, 2])).astype(np.float32)
        n_tune = args.queries // 3
        tune_q, eval_q = queries[:n_tune], queries[n_tune:]
        data_seconds = time.perf_counter() - t0

        # exact search: IndexFlatIP on the same float16 values cast to float32
        print("\nexact: faiss IndexFlatIP (float32)")
        t0 = time.perf_counter()
        exact = faiss.IndexFlatIP(args.dim)
        for path in tqdm(files, desc="exact add", unit="file"):
            exact.add(np.load(path).astype(np.float32))
        exact_build_seconds = time.perf_counter() - t0
        exact_tune_ids, _ = timed_search(exact, tune_q, K, args.batch, "exact search (tuning split)")
        exact_eval_ids, exact_timing = timed_search(exact, eval_q, K, args.batch, "exact search (held-out split)")
        exact_qps = len(eval_q) / exact_timing.wall
        print(f"  build {exact_build_seconds:.1f} s, {exact_qps:.1f} QPS on {len(eval_q)} held-out queries")
        del exact

        # autofaiss: reads the folder with embedding-reader, picks (or takes) the index, trains, adds, tunes, saves
        budget = args.max_index_memory or f"{int(0.95 * GOAL_BYTES_PER_VECTOR * args.n)}B"
        index_path, infos_path = tmp / "image.index", tmp / "index_infos.json"
        # the key autofaiss' build_index would pick itself (its first candidate), asked for up
        # front so that its own size estimate can be shown before hours of training
        candidates = [args.index_key] if args.index_key else get_optimal_index_keys_v2(args.n, args.dim, budget)
        if not candidates:
            print(f"error: autofaiss has no index for {args.n:,} x {args.dim} within {budget}: raise "
                  f"--max-index-memory or pass --index-key", file=sys.stderr)
            return None
        requested_key = candidates[0]
        estimate = IndexMetadata(requested_key, args.n, args.dim).estimated_index_size_in_bytes() / args.n
        print(f"\nautofaiss: build_index(metric ip, max_index_memory_usage={budget}, index_key={requested_key} "
              f"({'given' if args.index_key else 'autofaiss choice'}; autofaiss estimates {estimate:.1f} B/vector))")
        t0 = time.perf_counter()
        index, infos = build_index(
            embeddings=str(tmp / "img_emb"),
            index_path=str(index_path),
            index_infos_path=str(infos_path),
            index_key=requested_key,
            max_index_memory_usage=budget,
            current_memory_available="8G",
            metric_type="ip",
            nb_cores=args.threads,
            verbose=logging.INFO,
        )
        autofaiss_seconds = time.perf_counter() - t0
        if index is None:
            print("error: autofaiss built no index (see its log above): raise --max-index-memory or pass "
                  "--index-key", file=sys.stderr)
            return None
        faiss.omp_set_num_threads(args.threads)  # autofaiss sets it too; make sure both searches match
        index_key = infos["index_key"]
        index_bytes = index_path.stat().st_size
        bytes_per_vector = index_bytes / args.n
        default_params = infos.get("index_param", "")
        print(f"  index {index_key} ({index_bytes / 2**20:.1f} MiB), built in {autofaiss_seconds:.1f} s; "
              f"autofaiss' search parameters: {default_params}")

        default_ids, default_timing = timed_search(index, eval_q, K, args.batch, "approx search (autofaiss params)")
        default_recall = recall_at_k(default_ids, exact_eval_ids)
        print(f"  with autofaiss' parameters, codes alone: held-out recall@10 {default_recall:.4f}, "
              f"{len(eval_q) / default_timing.wall:.1f} QPS")

        searcher = Reranked(index, files, args.rerank) if args.rerank > 1 else index
        how = (f"top {K * args.rerank} candidates re-scored from the float16 img_emb shards" if args.rerank > 1
               else "codes alone")
        print(f"\nnprobe search on the tuning split ({len(tune_q)} queries, {how}, target recall@10 "
              f"{args.target_recall})")
        nprobe, tried = tune_nprobe(index, searcher, index_key, tune_q, exact_tune_ids, args.target_recall, args.batch)
        from autofaiss.external.optimize import set_search_hyperparameters

        set_search_hyperparameters(index, search_params(index_key, nprobe), use_gpu=False)
        approx_ids, approx_timing = timed_search(searcher, eval_q, K, args.batch, "approx search (held-out split)")
        codes_ids, _ = timed_search(index, eval_q, K, args.batch, "codes alone at that nprobe")
        codes_recall = recall_at_k(codes_ids, exact_eval_ids)
    wall_seconds = time.perf_counter() - wall_start

    recall = recall_at_k(approx_ids, exact_eval_ids)
    approx_qps = len(eval_q) / approx_timing.wall
    speedup = approx_qps / exact_qps
    speedup_cpu = exact_timing.cpu / approx_timing.cpu  # same queries: QPS ratio = inverse time ratio
    goals = {
        "recall_at_10": {"value": recall, "goal": f">= {GOAL_RECALL}", "met": recall >= GOAL_RECALL},
        "speedup": {"value": speedup, "goal": f">= {GOAL_SPEEDUP}", "met": speedup >= GOAL_SPEEDUP},
        "bytes_per_vector": {"value": bytes_per_vector, "goal": f"<= {GOAL_BYTES_PER_VECTOR}",
                             "met": bytes_per_vector <= GOAL_BYTES_PER_VECTOR},
    }
    print(f"\nresults (N={args.n:,}, d={args.dim}, {len(eval_q)} held-out queries, {args.threads} thread(s), "
          f"batches of {args.batch}):")
    print(f"  index            {index_key}, nprobe {nprobe} ({search_params(index_key, nprobe)}); {how}")
    print(f"  recall@10        {recall:.4f}   goal >= {GOAL_RECALL}: {verdict(goals['recall_at_10']['met'])}"
          f"   (codes alone at this nprobe: {codes_recall:.4f})")
    print(f"  QPS              approx {approx_qps:.1f}, exact {exact_qps:.1f}: ratio {speedup:.1f}x   "
          f"goal >= {GOAL_SPEEDUP:.0f}x: {verdict(goals['speedup']['met'])}")
    print(f"                   (by CPU time instead of wall clock: {speedup_cpu:.1f}x)")
    print(f"  bytes/vector     {bytes_per_vector:.1f}   goal <= {GOAL_BYTES_PER_VECTOR:.0f}: "
          f"{verdict(goals['bytes_per_vector']['met'])}   (the index file; re-ranking reads "
          f"{K * args.rerank if args.rerank > 1 else 0} rows of the {2 * args.dim} B/vector img_emb shards per query "
          "from disk, which the clip-retrieval layout keeps anyway)")
    print(f"  build time       autofaiss {autofaiss_seconds:.1f} s (read, train, add, its own tuning, save); "
          f"exact {exact_build_seconds:.1f} s")
    print(f"  data generation  {data_seconds:.1f} s; whole script {wall_seconds:.1f} s")

    report = {
        "n": args.n, "dim": args.dim, "clusters": args.clusters, "seed": args.seed, "threads": args.threads,
        "queries_tune": len(tune_q), "queries_eval": len(eval_q), "batch": args.batch, "k": K,
        "noise_effective_dim": world.effective_dim(),
        "index_key": index_key, "index_key_source": "given" if args.index_key else "autofaiss",
        "autofaiss_estimated_bytes_per_vector": estimate,
        "max_index_memory_usage": budget, "nprobe": nprobe, "search_params": search_params(index_key, nprobe),
        "autofaiss_params": default_params, "autofaiss_params_recall_at_10": default_recall,
        "autofaiss_params_qps": len(eval_q) / default_timing.wall,
        "rerank_factor": args.rerank, "search": how, "codes_alone_recall_at_10": codes_recall,
        "recall_at_10": recall, "approx_qps": approx_qps, "exact_qps": exact_qps, "speedup": speedup, "speedup_cpu_time": speedup_cpu,
        "exact_search_seconds": {"wall": exact_timing.wall, "cpu": exact_timing.cpu},
        "approx_search_seconds": {"wall": approx_timing.wall, "cpu": approx_timing.cpu},
        "index_bytes": index_bytes, "bytes_per_vector": bytes_per_vector,
        "autofaiss_build_seconds": autofaiss_seconds, "exact_build_seconds": exact_build_seconds,
        "data_seconds": data_seconds, "wall_seconds": wall_seconds,
        "nprobe_search": tried, "goals": goals,
        "versions": {"faiss": faiss.__version__, "autofaiss": __import__("autofaiss").__version__},
    }
    return report


if __name__ == "__main__":
    sys.exit(main())
