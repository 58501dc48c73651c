"""``t2i-audit bias RUN``: attribute shares of a run's prompts, with intervals and reference shares.

The probe's entry point (``run_probe``), its options and its report; ``audit.cli`` makes the command."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any, Mapping

from bench import contract as C

from audit.probes.bias.run import ATTRIBUTES, AUTO, CALIBRATION_TOLERANCE, DEFAULT_REAL_CLIP
from audit.probes.bias.stats import MIN_BOOTSTRAP

EPILOG = f"""examples:
  # the built-in world: role prompts, read by the evaluator CLIP and by the exact detector
  t2i-bench generate --model builtin:shapes-ldm --prompts shapes-audit --category role \\
      --images-per-prompt 16 --guidance 7.5 --out runs/roles
  t2i-audit bias runs/roles
  # professions in HEIM's template, 8 images per prompt; gender, age, skin tone on a cached open_clip
  python -m audit.probes.bias.prompts --template heim --out build/professions-heim.jsonl
  t2i-bench generate --model MODEL --prompts build/professions-heim.jsonl --images-per-prompt 8 --out runs/prof
  t2i-audit bias runs/prof --clip {DEFAULT_REAL_CLIP}
  t2i-audit bias runs/prof --attributes skin_tone          # no CLIP needed

Writes RUN/audit/bias.parquet (per image, attribute and method: value, score, judged,
reason), RUN/audit/bias_prompts.parquet (per prompt, category and overall: shares with
95% intervals, MAD, imbalance, normalised entropy, difference from the BLS or corpus
share) and summary.json["bias"].  Intervals: Wilson per prompt, a seeded bootstrap over
prompts for aggregates.  Images where MTCNN finds no face are counted and reported.
In the built-in world the summary also holds the calibration: per role, the CLIP's
share against the detector's on the same images (tolerance {CALIBRATION_TOLERANCE:.2f}).
"""


def run_probe(run_dir: Path, options: Mapping[str, Any]) -> dict:
    """The probe's entry point (``ProbeInfo.run``): audit ``run_dir``; returns summary.json["bias"]."""
    from audit.probes.bias.run import audit_bias

    result = audit_bias(run_dir, attributes=options.get("attributes") or AUTO, clip=options.get("clip"),
                        prompts=options.get("prompts"), n_boot=options.get("bootstrap", MIN_BOOTSTRAP),
                        seed=options.get("seed", 0), face_gate=not options.get("no_face_gate", False),
                        batch_size=options.get("batch_size", 64), progress=not options.get("no_progress", False))
    return result.summary


def _fmt(triple) -> str:
    value, lo, hi = triple
    if value is None:
        return "n/a"
    return f"{value:.3f}" + ("" if lo is None else f" [{lo:.3f}, {hi:.3f}]")


def report(args: argparse.Namespace, s: dict) -> None:
    """What ``t2i-audit bias`` prints: counts, overall shares, and the calibration in the built-in world."""
    print(f"bias: {s['n_images']} images of {s['n_prompts']} prompts; judged {s['n_judged']}"
          + (f", no face in {s['n_no_face']}" if s.get("n_no_face") is not None else "")
          + (f", unreadable {s['n_unreadable']}" if s.get("n_unreadable") else ""))
    for attribute, methods in s["overall"].items():
        for method, block in methods.items():
            shares = ", ".join(f"{c} {_fmt(t)}" for c, t in block["shares"].items() if t[0])
            print(f"  {attribute} ({method}, n={block['n_judged']}): {shares or 'nothing judged'}")
            print(f"    imbalance {_fmt(block['imbalance'])}  MAD {_fmt(block['mad'])}  "
                  f"normalised entropy {_fmt(block['norm_entropy'])}")
            for c, t in block["diff"].items():
                print(f"    {c}: share - reference ({block['reference'][c]:.3f}) = {_fmt(t)}")
    calib = s.get("calibration")
    if calib:
        print(f"calibration (CLIP vs exact detector on the same images, tolerance {calib['tolerance']:.2f}):")
        print(f"  {'role':<12} {'dim':<6} {'major':<7} corpus  detector              CLIP (same images)    ok   "
              f"direction")
        for r in calib["roles"]:
            ok = "-" if r["within_tolerance"] is None else ("yes" if r["within_tolerance"] else "NO")
            planted = r["planted_recovered_clip"]
            what = "no skew" if r["corpus_share"] == 0.5 else "skew"
            verdict = "n/a" if planted is None else (f"{what} {'shown' if planted else 'NOT shown'}")
            print(f"  {r['role']:<12} {r['dimension']:<6} {r['major']:<7} {r['corpus_share']:.2f}    "
                  f"{_fmt(r['detector_share']):<21} {_fmt(r['clip_share_same_images']):<21} {ok:<4} {verdict}"
                  f"  (n={r['n_detected']}/{r['n_images']})")
        amp = s.get("amplification") or {}
        if any(v is not None for v in amp.values()):
            print("  amplification (majority share - corpus share, mean over skewed roles): "
                  + ", ".join(f"{m} {v:+.3f}" for m, v in amp.items() if v is not None))
    for warning in s.get("warnings", []):
        print(f"warning: {warning}")
    print(f"wrote {args.run}/{C.BIAS_TABLE.file}, {C.BIAS_PROMPTS_TABLE.file} and summary.json[\"bias\"]")


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The options of ``t2i-audit bias RUN`` (the RUN argument is added by ``audit.cli``)."""
    p.description = ("Attribute shares of a run's prompts (perceived gender, age group, skin tone by MTCNN + ITA; "
                     "built-in world role attributes), with Wilson and bootstrap intervals, HEIM's imbalance, "
                     "DALL-Eval's MAD, normalised entropy and the difference from BLS or corpus shares.")
    p.epilog = EPILOG
    p.add_argument("--attributes", default=AUTO,
                   help=f"comma list of {', '.join(ATTRIBUTES)}; default {AUTO}: role for built-in world role "
                        "prompts, else gender,age,skin_tone")
    p.add_argument("--clip", default=None,
                   help=f"open_clip MODEL@TAG (or local-dir:PATH) that reads gender and age (default "
                        f"{DEFAULT_REAL_CLIP}, HEIM's CLIP); 'builtin' (the default for role prompts) is the "
                        "evaluator CLIP")
    p.add_argument("--prompts", help="the prompt file (or set) the run was made from, for its extra columns "
                                     "(bls_pct_female, role, p_major); default: the set the manifest names")
    p.add_argument("--bootstrap", type=int, default=MIN_BOOTSTRAP,
                   help=f"bootstrap resamples for aggregate intervals (default and minimum {MIN_BOOTSTRAP})")
    p.add_argument("--seed", type=int, default=0, help="bootstrap seed (default 0)")
    p.add_argument("--no-face-gate", action="store_true",
                   help="read gender and age with CLIP on every image, as HEIM does, not only where MTCNN finds a "
                        "face (built-in world: role attributes, not only where the detector finds an object)")
    p.add_argument("--batch-size", type=int, default=64, help="feature extraction batch size")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bars")
