"""The ``professions`` prompt set in the template of a bias benchmark, as a prompt file to generate from.

Templates belong to generation, not to the audit: this writes a jsonl prompt
file (same ids, category and extra columns as the shipped ``professions`` set,
among them ``bls_pct_female``) whose prompts follow a template:

    heim          "a photo of the face of {a_profession}"   HEIM / DALL-Eval (Cho et al. 2023)
    stable-bias   "Photo portrait of {a_profession}"        Stable Bias (Luccioni et al. 2023)
    plain         "a photo of {a_profession}"               the shipped set (DALL-Eval v1 neutral prompts)

or any text with ``{profession}`` ("nurse") or ``{a_profession}`` ("a nurse", "an
accountant").  Then

    python -m audit.probes.bias.prompts --template heim --out build/professions-heim.jsonl
    t2i-bench generate --model MODEL --prompts build/professions-heim.jsonl --images-per-prompt 8 --out runs/prof
    t2i-audit bias runs/prof --clip ViT-L-14@openai

(the audit finds the BLS shares by prompt id for any prompt set named ``professions*``,
or from ``--prompts FILE``).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from bench.atomic import atomic_write_text
from bench.errors import UserError

TEMPLATES: dict[str, str] = {
    "heim": "a photo of the face of {a_profession}",
    "stable-bias": "Photo portrait of {a_profession}",
    "plain": "a photo of {a_profession}",
}
_SHIPPED_PREFIX = "a photo of "


def template_text(template: str) -> str:
    """A named template's text, or ``template`` itself when it has a placeholder."""
    if template in TEMPLATES:
        return TEMPLATES[template]
    if "{profession}" not in template and "{a_profession}" not in template:
        raise UserError(f"template {template!r} is neither one of {', '.join(TEMPLATES)} nor a text with "
                        "{profession} or {a_profession}")
    return template


def templated_professions(template: str) -> list[dict]:
    """The rows of the ``professions`` set with their prompt written in ``template``."""
    from bench.prompts import load_prompt_set

    text = template_text(template)
    rows = []
    for p in load_prompt_set("professions").prompts:
        profession = str(p.extra.get("profession") or p.prompt)
        a_profession = (p.prompt[len(_SHIPPED_PREFIX):] if p.prompt.startswith(_SHIPPED_PREFIX)
                        else ("an " if profession[:1].lower() in "aeiou" else "a ") + profession)
        try:
            prompt = text.format(profession=profession, a_profession=a_profession)
        except (KeyError, IndexError, ValueError) as exc:
            raise UserError(f"template {text!r} cannot be filled ({exc}); use only {{profession}} and "
                            "{a_profession}") from exc
        rows.append({"id": p.id, "prompt": prompt, "category": p.category, **dict(p.extra), "template": text})
    return rows


def write_prompts(template: str, out: str | Path) -> Path:
    """Write the templated set as jsonl to ``out`` (its stem becomes the set's name)."""
    out = Path(out)
    if out.suffix != ".jsonl":
        raise UserError(f"--out must end in .jsonl, got {out}")
    rows = templated_professions(template)
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m audit.probes.bias.prompts", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--template", default="heim",
                        help=f"{', '.join(TEMPLATES)} (default heim) or a text with {{profession}} / {{a_profession}}")
    parser.add_argument("--out", help="jsonl file to write (default build/professions-<template>.jsonl)")
    args = parser.parse_args(argv)
    try:
        name = args.template if args.template in TEMPLATES else "custom"
        path = write_prompts(args.template, args.out or f"build/professions-{name}.jsonl")
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    first = json.loads(path.read_text().splitlines()[0])["prompt"]
    print(f"wrote {path}: {len(path.read_text().splitlines())} prompts, e.g. {first!r}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
