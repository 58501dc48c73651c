"""The ``prompts`` sub-command: list, show and validate prompt sets.

The main CLI calls ``add_prompts_parser(subparsers)``; each leaf command sets
``func(args) -> int`` and raises ``UserError`` for user mistakes (the main CLI
prints those as one line and exits with code 2).
"""

from __future__ import annotations

import argparse
import re

from bench.errors import UserError
from bench.prompts import list_prompt_sets, load_prompt_set, validate_file

_RAW = argparse.RawDescriptionHelpFormatter

PROMPTS_EPILOG = """\
examples:
  t2i-bench prompts list
  t2i-bench prompts show drawbench --category Colors --limit 5
  t2i-bench prompts validate my_prompts.csv
"""

SHOW_EPILOG = """\
NAME is a registered set (see `t2i-bench prompts list`) or a prompt file
(.yaml, .txt, .csv, .tsv, .jsonl).

examples:
  t2i-bench prompts show drawbench
  t2i-bench prompts show parti --category Animals --category Vehicles --limit 10
  t2i-bench prompts show geneval --per-category 2
  t2i-bench prompts show ./my_prompts.txt
"""

VALIDATE_EPILOG = """\
Checks a prompt file without running anything: UTF-8, a prompt column, no
empty prompts, unique file-name-safe ids, and for a yaml set the data hash.

  .txt    one prompt per line (blank lines skipped)
  .csv    header with prompt|prompts|text|caption, optional category, id
  .tsv    same columns, tab-separated, no quoting
  .jsonl  one object per line: {"prompt": ..., "category": ..., "id": ..., "spec": {...}}
  .yaml   a set definition (see prompt_sets/README.md)

examples:
  t2i-bench prompts validate my_prompts.csv
  t2i-bench prompts validate prompt_sets/drawbench.yaml
"""


def add_prompts_parser(subparsers) -> None:
    """Register ``prompts list|show|validate`` on an argparse sub-parsers object."""
    parser = subparsers.add_parser(
        "prompts",
        help="list, show and validate prompt sets",
        description="Prompt sets: the shipped registry and your own prompt files.",
        epilog=PROMPTS_EPILOG,
        formatter_class=_RAW,
    )
    sub = parser.add_subparsers(dest="prompts_command", metavar="{list,show,validate}", required=True)

    p = sub.add_parser(
        "list",
        help="list the shipped prompt sets",
        description="List the shipped prompt sets (each is loaded, so its data hash is checked).",
        epilog="examples:\n  t2i-bench prompts list\n",
        formatter_class=_RAW,
    )
    p.set_defaults(func=cmd_list)

    p = sub.add_parser(
        "show",
        help="print a prompt set's header and prompts",
        description="Print a prompt set's provenance header and its prompts (id, category, prompt).",
        epilog=SHOW_EPILOG,
        formatter_class=_RAW,
    )
    p.add_argument("name", metavar="NAME", help="registered set name or prompt file path")
    p.add_argument(
        "--category", action="append", metavar="C",
        help="keep only this category (case-insensitive; repeat for several)",
    )
    p.add_argument("--per-category", type=int, metavar="N", help="keep the first N prompts of each category")
    p.add_argument("--limit", type=int, metavar="K", help="print at most K prompts")
    p.set_defaults(func=cmd_show)

    p = sub.add_parser(
        "validate",
        help="check a prompt file without running anything",
        description="Parse and check a prompt file; prints a one-line summary or a one-line error.",
        epilog=VALIDATE_EPILOG,
        formatter_class=_RAW,
    )
    p.add_argument("file", metavar="FILE", help="prompt file (.yaml, .txt, .csv, .tsv, .jsonl)")
    p.set_defaults(func=cmd_validate)


def cmd_list(args) -> int:
    rows = [
        [s.name, s.version, str(len(s)), str(len(s.categories())), _short_license(s.license)]
        for s in list_prompt_sets()
    ]
    print(_table(["name", "version", "prompts", "categories", "license"], rows))
    return 0


def cmd_show(args) -> int:
    if args.limit is not None and args.limit < 1:
        raise UserError(f"--limit must be at least 1 (got {args.limit})")
    ps = load_prompt_set(args.name).subset(args.category, args.per_category)
    shown = ps.prompts if args.limit is None else ps.prompts[: args.limit]
    header = [
        ("name", ps.name),
        ("version", ps.version),
        ("source", ps.source or "-"),
        ("license", ps.license or "-"),
        ("sha256", ps.sha256),
    ]
    if ps.selection:
        header.append(("subset", ps.selection))
    count = f"{len(ps)}" + (f" (showing {len(shown)})" if len(shown) < len(ps) else "")
    header.append(("prompts", count))
    for key, value in header:
        print(f"{key + ':':<9} {' '.join(value.split())}")
    print()
    # Newlines inside a prompt would break the table; show them escaped.
    rows = [[p.id, p.category, p.prompt.replace("\r", "\\r").replace("\n", "\\n")] for p in shown]
    print(_table(["id", "category", "prompt"], rows))
    return 0


def cmd_validate(args) -> int:
    ps = validate_file(args.file)
    # A user file has version "file" (not "vfile"); a .txt file (T2I-CompBench style) has no categories.
    version = "user file" if ps.version == "file" else f"v{ps.version}"
    n_cat = len(ps.categories())
    categories = "no categories" if n_cat == 0 else f"{n_cat} categor{'y' if n_cat == 1 else 'ies'}"
    print(f"ok: {ps.name} ({version}), {len(ps)} prompt{'' if len(ps) == 1 else 's'}, {categories}")
    return 0


def _short_license(text: str, width: int = 40) -> str:
    """Licence without its parenthesised notes, for the one-line table."""
    while True:  # innermost parentheses first, so "(c)" inside a note goes too
        stripped = re.sub(r"\s*\([^()]*\)", "", text)
        if stripped == text:
            break
        text = stripped
    short = " ".join(text.split()) or "-"
    return short if len(short) <= width else short[: width - 3] + "..."


def _table(headers: list[str], rows: list[list[str]]) -> str:
    """Left-aligned columns separated by two spaces; the last column is not padded."""
    widths = [max(len(r[i]) for r in [headers, *rows]) for i in range(len(headers) - 1)]
    lines = []
    for row in [headers, *rows]:
        cells = [c.ljust(w) for c, w in zip(row, widths)] + [row[-1]]
        lines.append("  ".join(cells).rstrip())
    return "\n".join(lines)
