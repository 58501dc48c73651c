"""``t2i-audit memorization RUN --index DIR | --backend URL --index-name NAME``: flag generated
images that copy an indexed training image, in a local index folder or a clip-retrieval backend.

The probe's entry point (``run_probe``), its options and its report; ``audit.cli`` makes the command."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any, Mapping

from bench import contract as C
from audit.probes.memorization.run import (CRITERIA, DEFAULT_CRITERION, DEFAULT_K, DEFAULT_POOL,
                                           DEFAULT_THRESHOLD_COSINE, DEFAULT_THRESHOLD_DISTANCE,
                                           DEFAULT_THRESHOLD_RELATIVE, NEIGHBOUR_CHOICES)
from bench.errors import UserError

EPILOG = f"""examples:
  # the built-in world: an index of shapes-laion, then the audit of a run against it
  t2i-audit index build shapes-laion:20000 --out indexes/shapes-laion-20k
  t2i-audit memorization runs/demo --index indexes/shapes-laion-20k
  # stricter copy threshold, more neighbours, every neighbour image saved
  t2i-audit memorization runs/demo --index indexes/shapes-laion-20k --k 10 --threshold-distance 0.05 --neighbours all
  # an index built with another CLIP: name the same CLIP (open_clip MODEL@TAG)
  t2i-audit memorization runs/sd21 --index indexes/laion-subset --clip ViT-B-32@laion2b_s34b_b79k
  # an index served by `clip-retrieval back`: --clip must be the CLIP that built it (not checkable remotely)
  t2i-audit memorization runs/sd21 --backend http://127.0.0.1:1234 --index-name laion-subset --clip ViT-B-32@laion2b_s34b_b79k

A (generated image, neighbour) pair is a copy when clip_cosine >= --threshold-cosine
(default {DEFAULT_THRESHOLD_COSINE}) and, by --criterion (default {DEFAULT_CRITERION}):
  absolute  the tiled-L2 copy distance <= --threshold-distance (default {DEFAULT_THRESHOLD_DISTANCE});
  relative  Carlini et al.'s relative distance (the copy distance over 0.5 x the mean distance to
            the 50 nearest distinct candidates of a --pool of {DEFAULT_POOL}) <= --threshold-relative
            (default {DEFAULT_THRESHOLD_RELATIVE}): one training image much closer than its look-alikes;
  both      both of the above.
Every row records its criterion, relative distance and n_within (how many pool candidates lie
within the copy distance: hundreds means a common scene). Defaults calibrated on generations
in docs/audit-calibration.md.
Writes RUN/audit/memorization.parquet, RUN/audit/memorization_prompts.parquet,
RUN/audit/neighbours/*.png and summary.json["memorization"]; backend answers are cached
under RUN/audit/remote-cache/, so a rerun after a failure only sends the missing queries.
"""

DEFAULT_TIMEOUT = 30.0
DEFAULT_RETRIES = 3


def _open_index(run_dir: Path, options: Mapping[str, Any]):
    """The index argument of ``audit_memorization``: the ``index`` option (a folder or an open index),
    or a ``RemoteClipIndex`` over the ``backend`` option.

    Exactly one of --index / --backend is checked here rather than by an argparse
    group, so every mistake is one ``error:`` line (argparse prints its usage too).
    """
    index, backend = options.get("index"), options.get("backend")
    remote_only = [f"--{name.replace('_', '-')}" for name in ("index_name", "timeout", "retries")
                   if options.get(name) is not None]
    if index is not None and backend is not None:
        raise UserError("pass either --index DIR (a local index folder) or --backend URL (a clip-retrieval "
                        "backend), not both")
    if index is not None:
        if remote_only:
            raise UserError(f"{', '.join(remote_only)} only apply to --backend; drop them with --index")
        return index
    if backend is None:
        raise UserError("no index given: pass --index DIR (a local index folder) or --backend URL "
                        "--index-name NAME (a clip-retrieval backend)")
    if not options.get("index_name"):
        raise UserError(f"--backend needs --index-name NAME: one of the indexes {backend}/indices-list names")
    from audit.index.remote import ClipRetrievalClient
    from audit.index.remote_index import RemoteClipIndex

    client = ClipRetrievalClient(
        backend, options["index_name"],
        timeout=DEFAULT_TIMEOUT if options.get("timeout") is None else options["timeout"],
        retries=DEFAULT_RETRIES if options.get("retries") is None else options["retries"],
        cache_dir=Path(run_dir) / C.REMOTE_CACHE_DIR,
    )
    return RemoteClipIndex(client, progress=not options.get("no_progress", False))


def run_probe(run_dir: Path, options: Mapping[str, Any]) -> dict:
    """The probe's entry point (``ProbeInfo.run``): audit ``run_dir``; returns summary.json["memorization"]."""
    from audit.probes.memorization.run import audit_memorization

    index = _open_index(run_dir, options)
    result = audit_memorization(
        run_dir, index, clip=options.get("clip", "builtin"), k=options.get("k", DEFAULT_K),
        threshold_cosine=options.get("threshold_cosine", DEFAULT_THRESHOLD_COSINE),
        threshold_distance=options.get("threshold_distance", DEFAULT_THRESHOLD_DISTANCE),
        threshold_relative=options.get("threshold_relative", DEFAULT_THRESHOLD_RELATIVE),
        criterion=options.get("criterion", DEFAULT_CRITERION), pool=options.get("pool", DEFAULT_POOL),
        neighbours=options.get("neighbours", "top1"), batch_size=options.get("batch_size", 64),
        progress=not options.get("no_progress", False),
    )
    return result.summary


def report(args: argparse.Namespace, s: dict) -> None:
    """What ``t2i-audit memorization`` prints: the rate and the prompts copied most."""
    print(f"memorization: {s['n_copies']} of {s['n_images']} images copy an indexed image "
          f"(copy rate {s['copy_rate']:.3f}; criterion {s.get('criterion', 'absolute')}; {s['method']})")
    prompts = C.read_table(args.run, C.MEMORIZATION_PROMPTS_TABLE)
    top = prompts.sort_values(["copy_rate", "prompt_id"], ascending=[False, True]).head(5)
    for row in top[top.n_copies > 0].itertuples():
        print(f"  {row.prompt_id}: {row.n_copies}/{row.n_images}  {row.prompt[:70]}")
    print(f"wrote {args.run}/{C.MEMORIZATION_TABLE.file}, {C.MEMORIZATION_PROMPTS_TABLE.file}, {C.NEIGHBOURS_DIR}/")


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The options of ``t2i-audit memorization RUN`` (the RUN argument is added by ``audit.cli``)."""
    p.description = ("kNN candidates by CLIP cosine from a clip-retrieval-style index, confirmed by Carlini et al.'s "
                     "tiled L2 (max over a 4x4 grid of per-tile RMS distances, each tile aligned within 1 px).")
    p.epilog = EPILOG
    where = p.add_argument_group("index (exactly one of --index / --backend)")
    where.add_argument("--index", help="index folder (t2i-audit index build, or clip-retrieval's layout)")
    where.add_argument("--backend", metavar="URL",
                       help="a clip-retrieval backend (`clip-retrieval back`), e.g. http://127.0.0.1:1234")
    where.add_argument("--index-name", metavar="NAME", help="with --backend: the index to query (see URL/indices-list)")
    where.add_argument("--timeout", type=float, metavar="SECONDS",
                       help=f"with --backend: seconds per request (default {DEFAULT_TIMEOUT:g})")
    where.add_argument("--retries", type=int, metavar="N",
                       help=f"with --backend: extra attempts after a failed request (default {DEFAULT_RETRIES})")
    p.add_argument("--clip", default="builtin",
                   help="the CLIP that embeds the run; must be the index's (default: builtin evaluator CLIP). "
                        "A backend cannot tell its CLIP: name the one that built its index")
    p.add_argument("--k", type=int, default=DEFAULT_K, help=f"neighbours per image (default {DEFAULT_K})")
    p.add_argument("--threshold-cosine", type=float, default=DEFAULT_THRESHOLD_COSINE)
    p.add_argument("--threshold-distance", type=float, default=DEFAULT_THRESHOLD_DISTANCE)
    p.add_argument("--criterion", choices=CRITERIA, default=DEFAULT_CRITERION,
                   help=f"which distance confirms a copy (default {DEFAULT_CRITERION}; see below)")
    p.add_argument("--threshold-relative", type=float, default=DEFAULT_THRESHOLD_RELATIVE)
    p.add_argument("--pool", type=int, default=DEFAULT_POOL,
                   help=f"CLIP candidates for the relative distance, at least --k (default {DEFAULT_POOL})")
    p.add_argument("--neighbours", choices=NEIGHBOUR_CHOICES, default="top1",
                   help="neighbour images to save: top1 (+ every copy, default), copies, all")
    p.add_argument("--batch-size", type=int, default=64, help="feature extraction batch size")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
