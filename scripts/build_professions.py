#!/usr/bin/env python3
"""Build prompt_sets/data/professions.jsonl, the profession list for bias probes.

Inputs (copied byte-for-byte into prompt_sets/data/; provenance in SOURCES.md):

- DALL-Eval (j-min/DallEval, MIT):
  ``dalleval_v1_neutral_prompts_profession.json`` ("a photo of a/an X", 85) and
  ``dalleval_bias_prompt_list.json`` ("A man/woman/person who works as a/an X", 83).
- Stable Bias vocabulary (ml-research/Fair-Diffusion, Apache-2.0):
  ``fairdiffusion_occupations.txt`` (153 occupations, fixed-width).
- Winogender (rudinger/winogender-schemas, MIT):
  ``winogender_occupations-stats.tsv`` gives the BLS percent-female figures.

Output: one JSON object per unique profession (case-insensitive), sorted by
profession, with keys ``id``, ``prompt`` ("a photo of a/an {profession}"),
``category`` ("dalleval", "stable-bias" or "both"), ``profession``, ``sources``,
``bls_pct_female`` and ``bls_year``.  The BLS keys are null unless winogender
lists exactly that occupation; we never map "computer programmer" to
"programmer", because that would invent a statistic.

The output is deterministic: re-running it reproduces the committed file byte
for byte (tests/test_prompts.py checks this).  After a change, paste the printed
sha256 into prompt_sets/professions.yaml.

    python scripts/build_professions.py                 # rewrite the committed file
    python scripts/build_professions.py --out /tmp/p.jsonl
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import io
import json
import re
import sys
from pathlib import Path

DATA_DIR = Path(__file__).resolve().parent.parent / "prompt_sets" / "data"

NEUTRAL_FILE = "dalleval_v1_neutral_prompts_profession.json"
BIAS_FILE = "dalleval_bias_prompt_list.json"
STABLE_BIAS_FILE = "fairdiffusion_occupations.txt"
WINOGENDER_FILE = "winogender_occupations-stats.tsv"

# Stable Bias writes everything in lower case; these read wrong in a prompt.
DISPLAY_NAMES = {"ceo": "CEO", "it specialist": "IT specialist"}

# Words that start with a vowel letter but a consonant sound, or the reverse.
_A_WORDS = ("uni", "use", "usu", "eu", "one", "once")
_AN_WORDS = ("hour", "honest", "honor", "honour", "heir")


def article(noun: str) -> str:
    """Return "a" or "an" for ``noun`` (by sound, for the cases that occur here)."""
    word = noun.lower()
    if word.startswith(_AN_WORDS):
        return "an"
    if word.startswith(_A_WORDS):
        return "a"
    return "an" if word[:1] in "aeiou" else "a"


def slug(profession: str) -> str:
    """A filesystem-safe prompt id: lower case, runs of other characters -> '-'."""
    return re.sub(r"[^a-z0-9]+", "-", profession.lower()).strip("-")


def read_dalleval_neutral(path: Path) -> dict[str, str]:
    """Profession -> article used, from "a photo of a/an X"."""
    out = {}
    for text in json.loads(path.read_text(encoding="utf-8"))["neutral_prompts"]:
        m = re.fullmatch(r"a photo of (a|an) (.+)", text)
        if not m:
            sys.exit(f"error: {path.name}: unexpected prompt {text!r}")
        out[m.group(2)] = m.group(1)
    return out


def read_dalleval_bias(path: Path) -> dict[str, str]:
    """Profession -> article used, from "A man/woman/person who works as a/an X"."""
    out = {}
    for text in json.loads(path.read_text(encoding="utf-8")):
        if text in ("A man", "A woman", "A person"):  # the no-profession controls
            continue
        m = re.fullmatch(r"A (?:man|woman|person) who works as (a|an) (.+)", text)
        if not m:
            sys.exit(f"error: {path.name}: unexpected prompt {text!r}")
        out[m.group(2)] = m.group(1)
    return out


def read_stable_bias(path: Path) -> list[str]:
    """Occupation names from the fixed-width table (header skipped)."""
    lines = path.read_text(encoding="utf-8").splitlines()
    if not lines or not lines[0].startswith("Occupation"):
        sys.exit(f"error: {path.name}: expected an 'Occupation ...' header line")
    out = []
    for line in lines[1:]:
        if not line.strip():
            continue
        # Names contain single spaces; the count columns follow after the padding.
        m = re.fullmatch(r"(.+?)\s+\d+\s+\d+\s+[\d.]+%\s*", line)
        if not m:
            sys.exit(f"error: {path.name}: unexpected line {line!r}")
        out.append(m.group(1))
    return out


def read_winogender(path: Path) -> dict[str, tuple[float, int]]:
    """Occupation -> (bls_pct_female, bls_year)."""
    rows = csv.DictReader(io.StringIO(path.read_text(encoding="utf-8")), delimiter="\t")
    return {r["occupation"]: (float(r["bls_pct_female"]), int(r["bls_year"])) for r in rows}


def build(data_dir: Path) -> tuple[bytes, list[str]]:
    """Return the jsonl bytes and a list of report lines."""
    neutral = read_dalleval_neutral(data_dir / NEUTRAL_FILE)
    bias = read_dalleval_bias(data_dir / BIAS_FILE)
    stable = read_stable_bias(data_dir / STABLE_BIAS_FILE)
    bls = read_winogender(data_dir / WINOGENDER_FILE)

    # key (lower case) -> display name and source lists.  DALL-Eval's spelling
    # wins ("TV presenter"), since Stable Bias lower-cases everything.
    names: dict[str, str] = {}
    sources: dict[str, list[str]] = {}
    for source, professions in (
        ("dalleval-v1", list(neutral)),
        ("dalleval-iccv2023", list(bias)),
        ("stable-bias", stable),
    ):
        for prof in professions:
            key = prof.lower()
            names.setdefault(key, DISPLAY_NAMES.get(key, prof))
            if source not in sources.setdefault(key, []):
                sources[key].append(source)

    # Our a/an rule must agree with the articles DALL-Eval wrote by hand.
    disagreements = [
        f"{prof}: DALL-Eval '{art}', rule '{article(prof)}'"
        for prof, art in sorted({**neutral, **bias}.items())
        if art != article(prof)
    ]
    if disagreements:
        sys.exit("error: article rule disagrees with DALL-Eval: " + "; ".join(disagreements))

    lines, counts, with_bls, ids = [], {}, 0, set()
    for key in sorted(names):
        prof = names[key]
        srcs = sources[key]
        dalle = any(s.startswith("dalleval") for s in srcs)
        category = "both" if dalle and "stable-bias" in srcs else ("dalleval" if dalle else "stable-bias")
        counts[category] = counts.get(category, 0) + 1
        pct, year = bls.get(key, (None, None))
        with_bls += pct is not None
        pid = slug(prof)
        if pid in ids:
            sys.exit(f"error: two professions share the id {pid!r}")
        ids.add(pid)
        row = {
            "id": pid,
            "prompt": f"a photo of {article(prof)} {prof}",
            "category": category,
            "profession": prof,
            "sources": srcs,
            "bls_pct_female": pct,
            "bls_year": year,
        }
        lines.append(json.dumps(row, ensure_ascii=False))
    data = ("\n".join(lines) + "\n").encode("utf-8")

    report = [
        f"read {len(neutral)} DALL-Eval v1 professions, {len(bias)} DALL-Eval ICCV-2023 professions, "
        f"{len(stable)} Stable Bias occupations, {len(bls)} winogender BLS rows",
        f"wrote {len(lines)} unique professions: "
        + ", ".join(f"{c} {counts.get(c, 0)}" for c in ("dalleval", "stable-bias", "both")),
        f"{with_bls} have a BLS female share (exact winogender match); "
        f"{len(bls) - with_bls} winogender occupations matched nothing",
    ]
    return data, report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="examples:\n  python scripts/build_professions.py\n"
        "  python scripts/build_professions.py --out /tmp/professions.jsonl",
    )
    parser.add_argument("--data-dir", type=Path, default=DATA_DIR, help="folder with the input lists (default: %(default)s)")
    parser.add_argument("--out", type=Path, default=None, help="output file (default: DATA_DIR/professions.jsonl)")
    args = parser.parse_args(argv)

    out = args.out or args.data_dir / "professions.jsonl"
    data, report = build(args.data_dir)
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_bytes(data)
    tmp.replace(out)  # atomic: a reader never sees half a file
    for line in report:
        print(line)
    print(f"output: {out} ({len(data)} bytes, sha256 {hashlib.sha256(data).hexdigest()})")
    print("if this changed the file, paste the sha256 into prompt_sets/professions.yaml")
    return 0


if __name__ == "__main__":
    sys.exit(main())
