"""The measuring functions of ``make perf`` (``scripts/perf.py``; figures in docs/perf.md).

Every figure is a ratio of two measurements taken in the same process, on the same
machine, minutes apart, so a machine shared with other jobs skews both sides alike;
absolute seconds are kept for reference only.  The ``scripts/bench_*.py`` benchmarks
import their workloads from here.

* ``measure_generation``: batched vs one pipeline call per image (the PNGs compared),
  the pipeline's FLOPs (``torch.utils.flop_counter.FlopCounterMode``: text encoder,
  UNet, VAE decoder) over its wall time, against this machine's float32 GEMM rate
  at the UNet's own GEMM shapes and at 2048².
* ``measure_scoring``: ``score_run`` (one pass) vs one separate tool per metric.
* ``measure_sweep``: a sweep of guidance scales scored against one reference:
  ``score_run`` (reference embedded once) vs the separate tools run once per scale.
* ``measure_memory``: peak memory of the metrics of ``score`` (FD, KID,
  precision/recall, CMMD) computed from a memory-mapped feature cache, large vs
  small N, each in a fresh subprocess.

The kNN figure needs ``audit`` (which ``bench`` may not import): ``scripts/bench_knn.py``.
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import tracemalloc
import warnings
from collections import Counter
from pathlib import Path

import numpy as np


def figure(name: str, value: float, goal: float, higher_is_better: bool, unit: str, size: str,
           note: str = "", **detail) -> dict:
    """One row of the perf table: a ratio measured in one run, its goal, and whether it was met."""
    finite = isinstance(value, (int, float)) and math.isfinite(value)
    met = finite and (value >= goal if higher_is_better else value <= goal)
    return {"name": name, "value": float(value), "goal": f"{'>=' if higher_is_better else '<='} {goal:g}{unit}",
            "goal_value": goal, "higher_is_better": higher_is_better, "unit": unit, "met": bool(met),
            "size": size, "note": note, "detail": detail}


def machine() -> dict:
    import platform

    info = {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version(),
            "numpy": np.__version__}
    with contextlib.suppress(OSError):
        info["load_average"] = list(os.getloadavg())
    with contextlib.suppress(ImportError):
        import torch

        info.update(torch=torch.__version__, torch_threads=torch.get_num_threads())
    return info


def _value(f: dict) -> str:
    v = f["value"]
    if f["unit"] == "" and f["goal_value"] < 1:  # a fraction: shown as a percentage
        return f"{100 * v:.1f}%"
    return f"{v:.3g}{f['unit']}" if abs(v) < 1000 else f"{v:,.0f}{f['unit']}"


def _goal(f: dict) -> str:
    g = f["goal_value"]
    shown = f"{100 * g:g}%" if f["unit"] == "" and g < 1 else f"{g:g}{f['unit']}"
    return f"{'≥' if f['higher_is_better'] else '≤'} {shown}"


def markdown(report: dict) -> str:
    """docs/perf.md: the figures of one ``make perf`` run as a table, each a ratio measured in that run."""
    m = report["machine"]
    load = m.get("load_average")
    lines = [
        "# Performance figures",
        "",
        f"Written by `make perf` (`scripts/perf.py`) on {report['created']}"
        + (" at toy sizes (`--tiny`): the numbers mean nothing" if report.get("tiny") else "") + ".",
        f"Machine: {m.get('cpus')} CPU cores, {m.get('platform')}, torch {m.get('torch', '-')} "
        f"({m.get('torch_threads', '-')} threads), numpy {m.get('numpy')}"
        + (f"; load average {load[0]:.1f} at the start, {report['machine'].get('load_average_end', [0])[0]:.1f} "
           "at the end (other jobs share the machine)" if load else "") + ".",
        "",
        "Each figure is a ratio of two measurements taken in the same run on this machine, minutes apart, so "
        "load from other jobs skews both sides alike; absolute times are in `build/perf/perf.json` for reference.",
        "",
        "| figure | measured | goal | verdict | size | how |",
        "|---|---|---|---|---|---|",
    ]
    for f in report["figures"]:
        verdict = "met" if f["met"] else f"**missed** ({_value(f)} vs {_goal(f)})"
        lines.append(f"| {f['name']} | {_value(f)} | {_goal(f)} | {verdict} | {f['size']} | {f['note']} |")
    secs = report.get("seconds", {})
    lines += ["", "Wall time per part: " + ", ".join(f"{k} {v:.0f} s" for k, v in secs.items()) + "."]
    if report.get("merged"):
        lines += ["", "Parts measured in separate runs (`scripts/perf.py --only ...`): " + "; ".join(
            f"{f['name']}: {f['measured']}" for f in report["figures"]) + "."]
    return "\n".join(lines) + "\n"


# ================================================================ generation


def decode(png: bytes) -> np.ndarray:
    from PIL import Image

    return np.asarray(Image.open(io.BytesIO(png)), dtype=np.int16)


def timed_images(pipe, batches, spec, cpu: dict | None = None) -> tuple[float, float, list[bytes]]:
    """(seconds in total, seconds inside the pipeline calls, PNG bytes) of ``run_batch`` over ``batches``;
    with ``cpu`` (a dict) this process' CPU seconds go to ``cpu["seconds"]``."""
    from bench.generate import png_bytes, run_batch

    start, cpu_start = time.perf_counter(), time.process_time()
    pipe_s, images = 0.0, []
    for batch in batches:
        t0 = time.perf_counter()
        out = run_batch(pipe, batch, spec, None, None)
        pipe_s += time.perf_counter() - t0
        images += [png_bytes(im) for im in out]
    if cpu is not None:
        cpu["seconds"] = time.process_time() - cpu_start
    return time.perf_counter() - start, pipe_s, images


def _gemm_shapes_of(fn) -> Counter:
    """(batch, M, K, N) of every float GEMM that ``fn()`` runs, counted: mm/addmm/bmm/baddbmm, and each
    convolution as its implicit GEMM (M = output pixels, K = input channels x kernel area, N = output channels)."""
    import torch
    from torch.utils._python_dispatch import TorchDispatchMode

    aten = torch.ops.aten
    shapes: Counter = Counter()

    class Record(TorchDispatchMode):
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            out = func(*args, **(kwargs or {}))
            packet = func.overloadpacket
            if packet in (aten.mm, aten.addmm):
                a, b = (args[0], args[1]) if packet is aten.mm else (args[1], args[2])
                shapes[(1, a.shape[0], a.shape[1], b.shape[1])] += 1
            elif packet in (aten.bmm, aten.baddbmm):
                a, b = (args[0], args[1]) if packet is aten.bmm else (args[1], args[2])
                shapes[(a.shape[0], a.shape[1], a.shape[2], b.shape[2])] += 1
            elif packet is aten.convolution:
                x, w, groups = args[0], args[1], args[8]
                k = w.shape[1] * int(np.prod(w.shape[2:]))
                m = out.shape[0] * int(np.prod(out.shape[2:]))
                shapes[(groups, m, k, w.shape[0] // groups)] += 1
            return out

    with Record():
        fn()
    return shapes


def gemm_flops_per_second(shape: tuple[int, int, int, int], min_seconds: float = 0.2) -> float:
    """float32 FLOP/s of ``torch.matmul`` at (batch, M, K, N), best of repeated timings of at least min_seconds."""
    import torch

    b, m, k, n = shape
    a = torch.randn(b, m, k) if b > 1 else torch.randn(m, k)
    w = torch.randn(b, k, n) if b > 1 else torch.randn(k, n)
    torch.matmul(a, w)  # warm-up
    flops = 2.0 * b * m * k * n
    reps = max(1, int(min_seconds / max(flops / 5e10, 1e-6)))
    best = float("inf")
    for _ in range(3):
        t0 = time.perf_counter()
        for _ in range(reps):
            torch.matmul(a, w)
        best = min(best, (time.perf_counter() - t0) / reps)
    return flops / best


def measure_gemm_peak(shapes: Counter, cover: float = 0.8, square: int = 2048, min_seconds: float = 0.2) -> dict:
    """This machine's float32 GEMM rate: at the UNet's own GEMM shapes (the largest-FLOP shapes covering
    ``cover`` of its GEMM FLOPs, weighted by their FLOPs: total FLOPs / total time) and at square x square."""
    by_flops = sorted(shapes.items(), key=lambda kv: -2.0 * np.prod(kv[0]) * kv[1])
    total = sum(2.0 * np.prod(s) * c for s, c in by_flops)
    chosen, acc = [], 0.0
    for s, c in by_flops:
        chosen.append((s, c))
        acc += 2.0 * np.prod(s) * c
        if acc >= cover * total:
            break
    timed = [(s, c, gemm_flops_per_second(s, min_seconds)) for s, c in chosen]
    flops = sum(2.0 * np.prod(s) * c for s, c, _ in timed)
    seconds = sum(2.0 * np.prod(s) * c / rate for s, c, rate in timed)
    return {
        "unet_shapes_flops_per_s": flops / seconds,
        "square_flops_per_s": gemm_flops_per_second((1, square, square, square), min_seconds),
        "square": square,
        "unet_shapes": [{"batch_m_k_n": list(map(int, s)), "count": int(c), "flops_per_s": r} for s, c, r in timed],
        "unet_shapes_share_of_gemm_flops": acc / total if total else 0.0,
    }


def measure_generation(model: str | None = None, prompt_set: str = "drawbench", prompts: int = 16,
                       images_per_prompt: int = 2, steps: int = 20, guidance: float = 7.5, batch_size: int = 32,
                       gemm_seconds: float = 0.2, repeat: int = 2) -> list[dict]:
    """Batched vs naive generation (same pipeline, seeds, ``run_batch``) and the pipeline's achieved FLOP/s.

    The sides alternate for ``repeat`` rounds and each keeps its fastest, so a change of the machine's
    load during the run skews the ratio less; CPU seconds are recorded too (a load-independent check)."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from bench.generate import build_plan, plan_batches, run_batch
    from bench.models.loader import DEFAULT_MODEL, load_pipeline, resolve_model
    from bench.prompts import load_prompt_set
    from bench.runspec import RunSpec

    model = model or DEFAULT_MODEL
    chosen = load_prompt_set(prompt_set).prompts[:prompts]
    spec = RunSpec(out="-", model=model, guidance=(guidance,), steps=steps, images_per_prompt=images_per_prompt,
                   batch_size=batch_size)
    pipe = load_pipeline(resolve_model(model), "float32", "cpu")
    plan = build_plan(chosen, spec)
    n = len(plan)
    run_batch(pipe, plan[:2], spec, None, None)  # warm-up (allocator, kernels) for both sides
    batches = plan_batches(plan, batch_size)
    naive_s = batched_s = naive_pipe_s = batched_pipe_s = naive_cpu = batched_cpu = float("inf")
    for _ in range(repeat):
        cpu: dict = {}
        s, ps, naive = timed_images(pipe, plan_batches(plan, 1), spec, cpu)
        naive_s, naive_pipe_s, naive_cpu = min(naive_s, s), min(naive_pipe_s, ps), min(naive_cpu, cpu["seconds"])
        s, ps, batched = timed_images(pipe, batches, spec, cpu)
        batched_s, batched_pipe_s = min(batched_s, s), min(batched_pipe_s, ps)
        batched_cpu = min(batched_cpu, cpu["seconds"])
    identical = sum(a == b for a, b in zip(naive, batched))
    max_diff = max(int(np.abs(decode(a) - decode(b)).max()) for a, b in zip(naive, batched))
    # docs/PITFALLS.md: the float kernels may round the last bit differently for another batch shape.
    assert len(naive) == len(batched) == n and max_diff <= 1, (
        f"batched and naive generation differ by {max_diff}/255 (at most 1/255 of kernel rounding allowed)")

    flops = 0.0
    for batch in batches:  # the FLOPs of exactly the batched run's pipeline calls
        counter = FlopCounterMode(display=False)
        with counter:
            run_batch(pipe, batch, spec, None, None)
        flops += counter.get_total_flops()
    by_module = {k: float(sum(v.values())) for k, v in counter.get_flop_counts().items() if "." not in k}

    # The UNet's GEMM shapes at the batched run's batch (classifier-free guidance doubles it).
    rows = 2 * len(batches[0])
    size = pipe.unet.config.sample_size
    sample = torch.randn(rows, pipe.unet.config.in_channels, size, size)
    context = torch.randn(rows, pipe.tokenizer.model_max_length, pipe.unet.config.cross_attention_dim)
    with torch.no_grad():  # not inference_mode: a Python dispatch mode does not see its mkldnn linear/conv calls
        shapes = _gemm_shapes_of(lambda: pipe.unet(sample, 10, encoder_hidden_states=context))
    assert shapes, "no GEMM recorded in the UNet's forward"
    peak = measure_gemm_peak(shapes, min_seconds=gemm_seconds)
    achieved = flops / batched_pipe_s
    work = (f"{n} images ({len(chosen)} prompts x {images_per_prompt}), {steps} steps, batch {batch_size}, "
            f"{spec.model}")
    absolute = {"naive_seconds": naive_s, "batched_seconds": batched_s, "naive_pipeline_seconds": naive_pipe_s,
                "naive_cpu_seconds": naive_cpu, "batched_cpu_seconds": batched_cpu, "rounds": repeat,
                "batched_pipeline_seconds": batched_pipe_s, "images": n, "flops": flops,
                "flops_by_module": by_module, "achieved_flops_per_s": achieved,
                "torch_threads": torch.get_num_threads()}
    return [
        figure("batched vs naive generation", naive_s / batched_s, 3.0, True, "x", work,
               f"best of {repeat} alternating rounds; by CPU time {naive_cpu / batched_cpu:.2f}x; {identical}/{n} PNGs "
               f"byte-identical, largest pixel difference {max_diff}/255 (asserted <= 1)",
               identical_pngs=identical, max_pixel_difference=max_diff, **absolute),
        figure("generation FLOP/s vs float32 GEMM peak (UNet's GEMM shapes)", achieved / peak["unet_shapes_flops_per_s"],
               0.30, True, "", work,
               f"{achieved / 1e9:.2f} GFLOP/s achieved (batched pipeline calls) vs "
               f"{peak['unet_shapes_flops_per_s'] / 1e9:.2f} GFLOP/s GEMM at the UNet's shapes",
               **absolute, gemm=peak),
        figure(f"generation FLOP/s vs float32 GEMM peak ({peak['square']}²)", achieved / peak["square_flops_per_s"],
               0.30, True, "", work,
               f"{achieved / 1e9:.2f} GFLOP/s vs {peak['square_flops_per_s'] / 1e9:.2f} GFLOP/s at "
               f"{peak['square']}x{peak['square']}x{peak['square']}", achieved_flops_per_s=achieved,
               square_flops_per_s=peak["square_flops_per_s"]),
    ]


# ================================================================ scoring: ours vs one tool per metric

#: Small random open_clip (evaluator layout) when the built-in evaluator is not installed.
SMALL_CLIP_CFG = {
    "embed_dim": 64,
    "vision_cfg": {"image_size": 64, "layers": 2, "width": 128, "head_width": 32, "patch_size": 8},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 128, "heads": 2, "layers": 2},
}


def render_folder(folder: Path, n: int, seed: int, size: int) -> list[dict]:
    """n random shapes-world scenes as <id>.png; returns their prompt rows."""
    from bench.world import caption, random_scene, render

    folder.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        scene = random_scene(rng)
        pid = f"img{i:05d}"
        render(scene, size=size).save(folder / f"{pid}.png")
        rows.append({"id": pid, "prompt": caption(scene, "descriptive"), "category": "descriptive"})
    return rows


def clip_spec(work: Path) -> tuple[str, str]:
    """(extractor spec, description) of the CLIP used by both sides."""
    from bench.models.evaluator_clip import DEFAULT_DIR

    if (DEFAULT_DIR / "open_clip_config.json").is_file():
        return f"clip:local-dir:{DEFAULT_DIR}", f"built-in evaluator {DEFAULT_DIR}"
    from bench.models.tiny import write_random_open_clip

    folder = write_random_open_clip(work / "small-random-clip", SMALL_CLIP_CFG)
    return f"clip:local-dir:{folder}", "small open_clip ViT with random weights (built-in evaluator not installed)"


def extractor_module(extractor):
    """torchmetrics' ``feature=``: a torch module mapping uint8 NCHW images to our extractor's features."""
    import torch

    class ExtractorModule(torch.nn.Module):
        def __init__(self, extractor):
            super().__init__()
            self.extractor = extractor

        def forward(self, imgs: torch.Tensor) -> torch.Tensor:
            arrays = [im.permute(1, 2, 0).contiguous().numpy() for im in imgs.to(torch.uint8).cpu()]
            return torch.from_numpy(self.extractor(arrays))

    return ExtractorModule(extractor)


def read_batches(paths: list[Path], batch_size: int):
    """uint8 NCHW tensors, reading (decoding) the files again on every call."""
    import torch

    from bench.features.images import load_image

    for start in range(0, len(paths), batch_size):
        arrays = [load_image(p)[0] for p in paths[start : start + batch_size]]
        yield torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2)


def embed(extractor, paths: list[Path], batch_size: int) -> np.ndarray:
    """Features of the images, read from disk again (what every separate tool does)."""
    return np.concatenate([extractor(list(b.permute(0, 2, 3, 1).numpy())) for b in read_batches(paths, batch_size)])


def ours(run: Path, reference: Path, clip: str, batch_size: int, cache: Path):
    """``score_run`` with cold caches (the run's ``features/`` and the reference cache cleared): seconds, table.

    Without the bootstrap intervals (``bootstrap=0``): the peers compute point values only, so the ratio
    compares the same work; the intervals' own cost is measured on its own (``score --bootstrap``)."""
    from bench.score import ScoreSpec, score_run

    shutil.rmtree(run / "features", ignore_errors=True)
    shutil.rmtree(cache, ignore_errors=True)
    start = time.perf_counter()
    table = score_run(ScoreSpec(str(run), str(reference), features=("efficientnet-lite0",), clip=clip,
                                batch_size=batch_size, bootstrap=0), progress=False)
    return time.perf_counter() - start, table


def peers(gen_paths: list[Path], ref_paths: list[Path], prompts: list[str], clip: str, batch_size: int):
    """One separate tool per metric ours reports, each reading and embedding the images itself:
    torchmetrics FID and KID, prdc, a CLIP-score pass, a CMMD pass.  -> (seconds per tool, values)."""
    from prdc import compute_prdc
    from torchmetrics.image.fid import FrechetInceptionDistance
    from torchmetrics.image.kid import KernelInceptionDistance

    from bench.features import get_extractor
    from bench.metrics.cmmd import mmd_rbf

    times, values = {}, {}
    start = time.perf_counter()
    fid = FrechetInceptionDistance(feature=extractor_module(get_extractor("efficientnet-lite0")))
    for real, paths in ((False, gen_paths), (True, ref_paths)):
        for batch in read_batches(paths, batch_size):
            fid.update(batch, real=real)
    values["FID"] = float(fid.compute())
    times["torchmetrics FID"] = time.perf_counter() - start

    start = time.perf_counter()
    subset = min(1000, len(gen_paths), len(ref_paths))
    kid = KernelInceptionDistance(feature=extractor_module(get_extractor("efficientnet-lite0")), subset_size=subset)
    for real, paths in ((False, gen_paths), (True, ref_paths)):
        for batch in read_batches(paths, batch_size):
            kid.update(batch, real=real)
    values["KID"] = float(kid.compute()[0])
    times["torchmetrics KID"] = time.perf_counter() - start

    start = time.perf_counter()
    effnet = get_extractor("efficientnet-lite0")
    gen_f, ref_f = (embed(effnet, paths, batch_size) for paths in (gen_paths, ref_paths))
    with contextlib.redirect_stdout(io.StringIO()):  # prdc prints the set sizes
        result = compute_prdc(real_features=ref_f, fake_features=gen_f, nearest_k=3)
    values["precision"], values["recall"] = float(result["precision"]), float(result["recall"])
    times["prdc precision/recall"] = time.perf_counter() - start

    start = time.perf_counter()
    ext = get_extractor(clip)
    img = embed(ext, gen_paths, batch_size)
    txt, _ = ext.encode_text(prompts)
    img = img / np.linalg.norm(img, axis=1, keepdims=True)
    txt = txt / np.linalg.norm(txt, axis=1, keepdims=True)
    values["CLIP score"] = float(np.mean(100.0 * np.maximum((img * txt).sum(axis=1), 0.0)))
    times["CLIP-score pass"] = time.perf_counter() - start

    start = time.perf_counter()
    ext = get_extractor(clip)
    values["CMMD"] = mmd_rbf(embed(ext, gen_paths, batch_size), embed(ext, ref_paths, batch_size))
    times["CMMD pass"] = time.perf_counter() - start
    return times, values


class ScoreWorkspace:
    """A temporary imported run of ``n`` shapes-world renders, a reference folder of ``n_ref`` others, the CLIP,
    and a private feature cache (``T2I_AUDIT_CACHE``, restored on close).  With ``scales`` the run's images
    are split into that many guidance scales (the samples table's ``guidance``), as a sweep's run is."""

    def __init__(self, n: int, size: int = 64, n_ref: int | None = None, scales: tuple[float, ...] = ()):
        import logging

        from bench import contract as C
        from bench import rundir
        from bench.features import get_extractor
        from bench.importer import import_images

        # Quiet while the workspace lives, restored by close(): N <= d warnings are expected at small N, and
        # torchmetrics' KID warns about keeping its features.
        self._logger = logging.getLogger("t2i_audit")
        self._old_level = self._logger.level
        self._logger.setLevel(logging.ERROR)
        self._warnings = warnings.catch_warnings()
        self._warnings.__enter__()
        warnings.filterwarnings("ignore", message=".*will save all extracted features.*")
        self.work = Path(tempfile.mkdtemp(prefix="perf-score-"))
        self.cache = self.work / "cache"
        self._old_cache = os.environ.get("T2I_AUDIT_CACHE")
        os.environ["T2I_AUDIT_CACHE"] = str(self.cache)  # the reference's cache lives here, not in the user's
        rows = render_folder(self.work / "generated", n, seed=1, size=size)
        render_folder(self.work / "reference", n_ref or n, seed=2, size=size)
        (self.work / "prompts.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
        self.run = self.work / "run"
        import_images(str(self.work / "generated"), str(self.work / "prompts.jsonl"), "shapes-world-render",
                      str(self.run))
        samples = rundir.read_samples(self.run)
        if scales:
            samples = samples.copy()
            samples["guidance"] = [float(scales[i * len(scales) // len(samples)]) for i in range(len(samples))]
            C.write_table(self.run, C.SAMPLES_TABLE, samples)
        self.samples = samples
        self.reference = self.work / "reference"
        self.gen_paths = [self.run / p for p in samples.path]
        self.ref_paths = sorted(self.reference.glob("*.png"))
        self.clip, self.clip_desc = clip_spec(self.work)
        for spec in ("efficientnet-lite0", self.clip):  # warm-up: imports, weight hashes, kernels
            get_extractor(spec)(np.zeros((2, size, size, 3), np.uint8))

    def close(self) -> None:
        self._logger.setLevel(self._old_level)
        self._warnings.__exit__(None, None, None)
        if self._old_cache is None:
            os.environ.pop("T2I_AUDIT_CACHE", None)
        else:
            os.environ["T2I_AUDIT_CACHE"] = self._old_cache
        shutil.rmtree(self.work, ignore_errors=True)


def measure_scoring(n: int = 128, size: int = 64, batch_size: int = 32, repeat: int = 2) -> list[dict]:
    """One-pass ``score_run`` vs one separate tool per metric, best of ``repeat`` alternating rounds per side."""
    ws = ScoreWorkspace(n, size)
    try:
        ours_s = peers_s = float("inf")
        for _ in range(repeat):
            s, table = ours(ws.run, ws.reference, ws.clip, batch_size, ws.cache)
            times, values = peers(ws.gen_paths, ws.ref_paths, ws.samples.prompt.tolist(), ws.clip, batch_size)
            ours_s = min(ours_s, s)
            if sum(times.values()) < peers_s:
                peers_s, peer_times = sum(times.values()), times
        all_rows = table[table.subset == "all"].set_index("metric").value
        our_fd = float(all_rows["FD_efficientnet-lite0"])
        rel = abs(our_fd - values["FID"]) / abs(values["FID"])
    finally:
        ws.close()
    return [figure("one-pass scoring vs peers run separately", peers_s / ours_s, 2.5, True, "x",
                   f"{n} + {n} renders {size}x{size}, best of {repeat}",
                   f"FD equals torchmetrics FID to {rel:.1e} relative; peers: torchmetrics FID + KID, prdc, "
                   "CLIP-score pass, CMMD pass", ours_seconds=ours_s, peers_seconds=peers_s, peer_seconds=peer_times,
                   fd_relative_difference=rel, clip=ws.clip_desc)]


def measure_sweep(scales: int = 8, n_per_scale: int = 16, n_ref: int = 128, size: int = 64,
                  batch_size: int = 32) -> list[dict]:
    """A run of ``scales`` guidance scales scored against one reference: ``score_run`` (every image and the
    reference embedded once, metrics per scale from the cached features) vs the peers run once per scale."""
    guidance = tuple(float(g) for g in np.linspace(1.5, 12.0, scales))
    ws = ScoreWorkspace(scales * n_per_scale, size, n_ref=n_ref, scales=guidance)
    try:
        ours_s, table = ours(ws.run, ws.reference, ws.clip, batch_size, ws.cache)
        groups = sorted(set(table.guidance.dropna()))
        peers_s, per_scale = 0.0, []
        for g in guidance:
            rows = (ws.samples.guidance == g).to_numpy()
            paths = [p for p, keep in zip(ws.gen_paths, rows) if keep]
            prompts = ws.samples.prompt[rows].tolist()
            times, _ = peers(paths, ws.ref_paths, prompts, ws.clip, batch_size)
            per_scale.append(sum(times.values()))
            peers_s += per_scale[-1]
    finally:
        ws.close()
    assert len(groups) == scales, f"score_run reported {len(groups)} guidance groups, expected {scales}"
    return [figure(f"sweep of {scales} guidance scales: reference embedded once vs peers per scale",
                   peers_s / ours_s, 5.0, True, "x",
                   f"{scales} scales x {n_per_scale} renders + {n_ref} reference, {size}x{size}",
                   f"ours: one score_run ({len(groups)} scales + all); peers: the 5 tools once per scale",
                   ours_seconds=ours_s, peers_seconds=peers_s, peers_seconds_per_scale=per_scale)]


# ================================================================ memory of score's metrics


def feature_batches(n: int, dim: int, batch_size: int, seed: int, shift: float):
    """n synthetic float32 feature rows, batch by batch (never all at once)."""
    rng = np.random.default_rng(seed)
    for start in range(0, n, batch_size):
        rows = min(batch_size, n - start)
        yield rng.standard_normal((rows, dim), dtype=np.float32) + np.float32(shift)


def write_feature_cache(folder: Path, n: int, dim: int, seed: int, shift: float, key: str,
                        unit: bool = False) -> Path:
    """A feature cache entry as ``bench.features.cache`` writes it (``<key>__<hash>.npy`` + ``.json``) of n
    synthetic rows, written batch by batch through a memory map (never all rows in memory); unit: L2-normalised."""
    from bench.features.cache import cache_file_for

    folder.mkdir(parents=True, exist_ok=True)
    set_hash = f"{seed:016x}"
    npy = cache_file_for(folder, key, set_hash)
    out = np.lib.format.open_memmap(npy, mode="w+", dtype=np.float32, shape=(n, dim))
    for start, batch in zip(range(0, n, 1024), feature_batches(n, dim, 1024, seed, shift)):
        if unit:
            batch /= np.linalg.norm(batch, axis=1, keepdims=True)
        out[start : start + len(batch)] = batch
    out.flush()
    del out
    meta = {"extractor": key, "image_set_sha256": set_hash, "paths": [f"{i}" for i in range(n)],
            "skipped": [], "converted": {}}
    npy.with_suffix(".json").write_text(json.dumps(meta))
    return npy


class _AnonPeak:
    """Peak anonymous RSS (``RssAnon`` of /proc/self/status, sampled every 2 ms in a thread): process-private
    memory, without the file pages of memory-mapped caches that ``ru_maxrss`` counts (those the kernel can
    drop at any time)."""

    def __init__(self):
        self.peak = self.base = self._read()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)

    @staticmethod
    def _read() -> int:
        try:
            for line in Path("/proc/self/status").read_text().splitlines():
                if line.startswith("RssAnon:"):
                    return int(line.split()[1]) * 1024
        except OSError:
            pass
        return 0

    def _poll(self):
        while not self._stop.wait(0.002):
            self.peak = max(self.peak, self._read())

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self._read())


def memory_child(n: int, dim: int, clip_dim: int, folder: str) -> dict:
    """In a fresh process: the metrics of ``score``'s features and CLIP passes (FD, KID, precision/recall,
    CMMD; ``bench.score._run_metrics`` on the "all" group, no bootstrap) from memory-mapped caches of
    n generated and n reference rows.  -> the value and the peaks of traced numpy/Python allocations,
    anonymous RSS and ``ru_maxrss`` (kept for reference: writing the caches through a memory map has
    usually set it already), over the baseline after imports and cache writing."""
    import pandas as pd

    import bench.metrics  # noqa: F401  (numpy, scipy, the registry: before the baseline)
    import scipy.linalg  # noqa: F401
    from bench.features.base import FeatureSet
    from bench.features.cache import _read_cache
    from bench.metrics import METRICS
    from bench.metrics.fid import GaussianStats
    from bench.score import _run_metrics

    warnings.simplefilter("ignore")  # N <= d warnings at small sizes
    root = Path(folder)
    key, clip_key = "perf-effnet", "perf-clip"
    files = {(name, k): write_feature_cache(root / name, n, d, seed, shift, k, unit=(k == clip_key))
             for name, seed, shift in (("gen", 1, 0.0), ("ref", 2, 0.1))
             for k, d in ((key, dim), (clip_key, clip_dim))}
    samples = pd.DataFrame({"image_id": [f"{i}" for i in range(n)], "prompt_id": "p", "prompt": "p",
                            "category": "", "guidance": np.nan, "path": [f"{i}" for i in range(n)]})

    def load(name, k):
        npy = files[(name, k)]
        feats, meta = _read_cache(npy, k, npy.stem.split("__")[1].ljust(16, "0"))
        return FeatureSet(feats, k, tuple(meta["paths"]), (), {}, str(npy), True)

    metrics = list(METRICS.items())
    base_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    tracemalloc.start()
    start = time.perf_counter()
    with _AnonPeak() as anon:
        gen, ref = load("gen", key), load("ref", key)
        fields = {"gen": gen, "reference": ref, "logits": None,
                  "reference_stats": GaussianStats.from_features(ref, what="reference")}
        rows = _run_metrics(metrics, "features", samples, fields, "ref", {"kid_subset_size": 1000, "pr_k": 3})
        fields = {"gen": load("gen", clip_key), "reference": load("ref", clip_key), "text_emb": None,
                  "truncated": None}
        rows += _run_metrics(metrics, "clip", samples, fields, "ref", {})
    seconds = time.perf_counter() - start
    _, traced = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    peak_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {"n": n, "dim": dim, "clip_dim": clip_dim, "values": {r["metric"]: r["value"] for r in rows},
            "traced_peak_bytes": traced, "anon_rss_growth_bytes": anon.peak - anon.base,
            "maxrss_growth_bytes": (peak_rss - base_rss) * 1024, "seconds": seconds,
            "feature_bytes": 2 * n * (dim + clip_dim) * 4}


def measure_memory(small: int = 2000, large: int = 20000, dim: int = 1280, clip_dim: int = 512) -> list[dict]:
    """Peak memory of score's metrics at ``large`` vs ``small`` cached rows, each in a fresh subprocess."""
    runs = {}
    for n in (small, large):
        with tempfile.TemporaryDirectory(prefix="perf-memory-") as tmp:
            cmd = [sys.executable, "-m", "bench.perf", "memory-child", str(n), str(dim), str(clip_dim), tmp]
            out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
            runs[n] = json.loads(out.strip().splitlines()[-1])
    a, b = runs[small], runs[large]
    traced = b["traced_peak_bytes"] / a["traced_peak_bytes"]
    anon = b["anon_rss_growth_bytes"] / max(a["anon_rss_growth_bytes"], 1)
    maxrss = b["maxrss_growth_bytes"] / max(a["maxrss_growth_bytes"], 1)
    mb = 2**20
    return [figure(f"peak memory of score's metrics, {large} vs {small} images", traced, 1.1, False, "x",
                   f"{small} vs {large} cached rows, d = {dim} (+ CLIP d = {clip_dim}), memory-mapped",
                   f"traced numpy allocations {a['traced_peak_bytes'] / mb:.0f} -> {b['traced_peak_bytes'] / mb:.0f} "
                   f"MB; anonymous RSS growth {a['anon_rss_growth_bytes'] / mb:.0f} -> "
                   f"{b['anon_rss_growth_bytes'] / mb:.0f} MB ({anon:.2f}x, sampled every 2 ms)", small=a, large=b,
                   anon_rss_ratio=anon,
                   maxrss_ratio=maxrss)]


if __name__ == "__main__":  # the memory measurement's subprocess
    if len(sys.argv) == 6 and sys.argv[1] == "memory-child":
        print(json.dumps(memory_child(int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), sys.argv[5])))
    else:
        sys.exit("usage: python -m bench.perf memory-child N DIM CLIP_DIM FOLDER (make perf runs scripts/perf.py)")
