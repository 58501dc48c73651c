"""``make demo``, audit half: the built-in world's training-data and watermark audits.

Runs after ``bench.demo`` (which made ``<runs>/demo``):

1. builds (or reopens) a LAION-style index of a shapes-laion subset with the
   built-in evaluator CLIP, in clip-retrieval's layout (``<runs>/demo-index``);
2. generates (or resumes) ``<runs>/demo-audit``: the ``shapes-audit`` prompt
   set (iconic captions of the planted duplicates, fresh captions, the
   "stock photo of" cue with and without it, role words) on the built-in model;
3. generates (or resumes) ``<runs>/demo-roles``: the role prompts of
   ``shapes-audit``, 16 images each, for the bias probe;
4. runs every registered audit probe (``audit.probes.PROBES``: memorization,
   watermark, bias, unsafe, and any plugin) on the three runs, prints the headline
   numbers and, for each role, the planted corpus share beside the generated share
   read by the detector and by CLIP, with intervals;
5. writes the societal-risk report of each run (``<run>/report.html``, ``report.md``);
6. generates ``<runs>/demo-memorized`` (iconic and fresh captions on ``builtin:shapes-ldm-memorized``,
   a model known to copy) and audits it: the copy audit's positive control.

Each audit's rate by category is printed beside the truth read by the world's detectors.

Every step reuses what an earlier run of the demo left, so a second run is fast.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from bench import contract as C
from bench.cli import setup_cli_output
from bench.errors import UserError
from bench.generate import generate
from bench.models.loader import DEFAULT_MODEL

#: The copy audit's positive control (scripts/train_memorized_lora.py).
MEMORIZING_MODEL = "builtin:shapes-ldm-memorized"
from bench.runspec import RunSpec

INDEX_SOURCE = "shapes-laion:20000"
AUDIT_IMAGES_PER_PROMPT = 2
#: Images per role prompt for the bias probe: 16 puts a Wilson interval of a unanimous share at
#: [0.81, 1] (the issue asks for 8 or more per prompt; 6 roles x 16 = 96 images, ~20 s on 2 cores).
ROLE_IMAGES_PER_PROMPT = 16
#: What every probe is given; a probe takes the options it knows (the demo index for the copy and
#: watermark probes; the built-in world's role attribute for the bias probe).
DEMO_OPTIONS = {"attributes": "role"}


def ensure_index(folder: Path):
    """Open the demo index, building it first when it is not there."""
    from audit.index import ClipIndex, build_index, is_index_folder
    from bench.features import get_extractor
    from bench.score import clip_extractor_spec

    if is_index_folder(folder):
        return ClipIndex.open(folder)
    print(f"building the index {folder} from {INDEX_SOURCE} (embedding with the built-in evaluator CLIP)")
    return build_index(INDEX_SOURCE, folder, get_extractor(clip_extractor_spec("builtin")))


def audit_run(run: Path, index) -> dict:
    """Every registered probe on ``run`` (with the demo index and ``DEMO_OPTIONS``); the summary.

    A probe that does not apply to the run (e.g. the bias probe on a run without role prompts)
    says why in one line, and the others go on."""
    from audit.probes import PROBES

    for name in PROBES.names():
        try:
            PROBES.get(name)(run, {"index": index, **DEMO_OPTIONS})
        except UserError as exc:
            print(f"{run}: {name} not run: {exc}")
    return C.read_summary(run)


def _share(triple) -> str:
    """"0.80 [0.65, 0.90]" from a (value, low, high) triple, "n/a" when absent."""
    if not triple or triple[0] is None:
        return "n/a"
    value, low, high = triple
    return f"{value:.2f} [{low:.2f}, {high:.2f}]"


def print_role_table(summary: dict) -> None:
    """For each role: planted corpus share, generated share by the detector and by CLIP, with intervals."""
    calibration = (summary.get("bias") or {}).get("calibration") or {}
    roles = calibration.get("roles") or []
    if not roles:
        return
    print("bias (role prompts; share of the value the corpus skews towards, 95% Wilson intervals):")
    print(f"  {'role':<12} {'attribute':<16} {'corpus':>6}  {'detector (truth)':<19} {'CLIP (same images)':<19} "
          f"within {calibration.get('tolerance', 0.05):.2f}")
    for r in roles:
        ok = {True: "yes", False: "NO"}.get(r.get("within_tolerance"), "-")
        print(f"  {r['role']:<12} {r['dimension'] + ' ' + r['major']:<16} {r['corpus_share']:>6.2f}  "
              f"{_share(r.get('detector_share')):<19} {_share(r.get('clip_share_same_images')):<19} {ok}"
              f"   (n={r.get('n_detected')}/{r.get('n_images')} read)")


def memorizing_control(runs: Path, index) -> Path | None:
    """The copy audit's positive control: iconic and fresh captions on ``MEMORIZING_MODEL`` (a model known
    to copy), audited against the demo index; None when that model is not installed."""
    from audit.probes import PROBES
    from bench.models.loader import resolve_model

    try:
        resolve_model(MEMORIZING_MODEL)
    except UserError as exc:
        print(f"positive control skipped: {exc}")
        return None
    run = runs / "demo-memorized"
    generate(RunSpec(out=str(run), model=MEMORIZING_MODEL, prompts="shapes-audit", categories=("iconic", "fresh"),
                     guidance=(7.5,), images_per_prompt=AUDIT_IMAGES_PER_PROMPT, steps=20, batch_size=24))
    PROBES.get("memorization")(run, {"index": index})
    return run


def audits_beside_truth(run: Path):
    """Per image of a ``shapes-audit`` run: the copy and visible-watermark verdicts, and the world's truth.

    Copy truth: an iconic caption's image is a copy when the world's detector reads back the iconic scene
    (``audit.calibration.memorization.copies_truth``); no other caption is any training image's.
    Watermark truth: ``bench.world.detect_watermark`` finds the planted mark."""
    import numpy as np
    import pandas as pd
    from PIL import Image

    from audit.calibration.memorization import copies_truth
    from audit.calibration.simulate import scene_of
    from bench.prompts import load_prompt_set
    from bench.world import detect_watermark
    from bench.world.detect import WATERMARK_THRESHOLD

    prompts = {p.id: p for p in load_prompt_set("shapes-audit").prompts}
    copies = C.read_table(run, C.MEMORIZATION_TABLE).groupby("image_id").agg(
        category=("category", "first"), prompt_id=("prompt_id", "first"), path=("path", "first"),
        is_copy=("is_copy", "any"))
    watermark_table = C.WATERMARK_TABLE.path(run)
    marks = (C.read_table(run, C.WATERMARK_TABLE).set_index("image_id")["visible"].astype(bool)
             if watermark_table.is_file() else None)
    rows = []
    for image_id, r in copies.iterrows():
        image = np.asarray(Image.open(run / r.path).convert("RGB"))
        prompt = prompts.get(r.prompt_id)
        rows.append({"category": r.category, "copy": bool(r.is_copy),
                     "watermark": None if marks is None else bool(marks.get(image_id, False)),
                     "copy_truth": bool(prompt is not None and prompt.category == "iconic"
                                        and copies_truth(image, scene_of(prompt))),
                     "watermark_truth": bool(detect_watermark(image) >= WATERMARK_THRESHOLD)})
    return pd.DataFrame(rows)


def print_beside_truth(run: Path) -> None:
    """Each audit's rate by category beside the truth's, with 95% Wilson intervals, and their agreement."""
    table = audits_beside_truth(run)
    audits = [("copy", "copy_truth", "copy")]
    if table["watermark"].notna().all():
        audits.append(("watermark", "watermark_truth", "watermark"))
    table = table.astype({col: bool for audit in audits for col in audit[:2]})
    print(f"{run}: audits beside the truth by category (95% Wilson intervals; truth = the world's detectors):")
    headers = {"copy": "copy audit", "copy_truth": "copies (truth)", "watermark": "watermark audit",
               "watermark_truth": "watermarks (truth)"}
    columns = [col for audit in audits for col in audit[:2]]
    print(f"  {'category':<10} " + " ".join(f"{headers[col]:<24}" for col in columns))
    for cat, g in table.groupby("category"):
        n = len(g)
        print(f"  {cat:<10} " + " ".join(f"{rate_text(int(g[col].sum()), n):<24}" for col in columns))
    for audit, truth, name in audits:
        agree = int((table[audit] == table[truth]).sum())
        flagged_wrongly = int((table[audit] & ~table[truth]).sum())
        missed = int((~table[audit] & table[truth]).sum())
        print(f"  {name} audit agrees with the truth on {rate_text(agree, len(table))}: "
              f"{flagged_wrongly} flagged wrongly, {missed} missed")


def rate_text(k: int, n: int) -> str:
    """"0.42 [0.25, 0.61] (5/12)": a rate with its 95% Wilson interval and N."""
    from bench.intervals import wilson

    low, high = wilson(k, n)
    return f"{k / n:.2f} [{low:.2f}, {high:.2f}] ({k}/{n})" if n else "n/a (0 images)"


def headline_text(block: dict, key: str) -> str:
    """A probe's headline value with the interval it recorded beside it (``<key>_ci`` or the probe's
    ``<stem>_ci``), and its N."""
    value = block.get(key)
    if not isinstance(value, (int, float)):
        return str(value)
    interval = block.get(f"{key}_ci") or block.get(key.replace("_rate", "") + "_ci")
    shown = f"{value:.3f}"
    if isinstance(interval, (list, tuple)) and len(interval) == 2 and None not in interval:
        shown += f" [{interval[0]:.3f}, {interval[1]:.3f}]"
    n = block.get("n_judged", block.get("n_images"))
    return shown + (f" (N = {n})" if n is not None else "")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", default="runs", help="runs root (default ./runs)")
    args = ap.parse_args(argv)
    setup_cli_output()
    runs = Path(args.runs)
    demo_run, audit_dir, index_dir = runs / "demo", runs / "demo-audit", runs / "demo-index"
    roles_dir = runs / "demo-roles"
    try:
        if not (demo_run / C.SAMPLES).is_file():
            raise UserError(f"{demo_run} has no images yet: run `python -m bench.demo --runs {runs}` first")
        index = ensure_index(index_dir)
        spec = RunSpec(out=str(audit_dir), model=DEFAULT_MODEL, prompts="shapes-audit", guidance=(7.5,),
                       images_per_prompt=AUDIT_IMAGES_PER_PROMPT, steps=20, batch_size=24)
        generate(spec)
        generate(RunSpec(out=str(roles_dir), model=DEFAULT_MODEL, prompts="shapes-audit", categories=("role",),
                         guidance=(7.5,), images_per_prompt=ROLE_IMAGES_PER_PROMPT, steps=20, batch_size=24))
        summaries = {run: audit_run(run, index) for run in (demo_run, audit_dir, roles_dir)}
        control = memorizing_control(runs, index)
        from audit.report import build_report, write_report

        reports = [write_report(build_report(run), run / C.REPORT_HTML, run / C.REPORT_MD)[0] for run in summaries]
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    print()
    print(f"index    : {index_dir}  ({index.n} images of {INDEX_SOURCE}, d={index.dim})")
    for run, summary in summaries.items():
        for name, probe in summary.get(C.AUDITS_KEY, {}).items():
            if name not in ("memorization", "watermark"):  # the built-in probes get their own line below
                block = summary.get(probe["summary_key"], {})
                print(f"{run}: {probe['display_name']}: {probe['headline']} {headline_text(block, probe['headline'])}")
        mem, wm = summary["memorization"], summary["watermark"]
        invisible = ("not checkable (images under 256 px)" if wm["invisible_rate"] is None
                     else f"{wm['invisible_rate']:.3f}")
        n_marked = round(wm["visible_rate"] * wm["n_images"])
        print(f"{run}: copy rate {rate_text(mem['n_copies'], mem['n_images'])}, "
              f"visible watermark rate {rate_text(n_marked, wm['n_images'])}, invisible watermark rate {invisible}")
    print_beside_truth(audit_dir)
    if control is not None:
        print(f"positive control ({MEMORIZING_MODEL}, a model trained to copy the iconic scenes):")
        print_beside_truth(control)
    print_role_table(summaries[roles_dir])
    print("outputs  : <run>/audit/<probe>.parquet (memorization, watermark, bias, unsafe), neighbours/")
    print("reports  : " + ", ".join(str(p) for p in reports))
    print(f"dashboard: .venv/bin/t2i-dashboard --runs {args.runs}   (Memorization, Audits, Bias and Report pages)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
