#!/usr/bin/env python3
"""Build the `shapes` prompt set of the built-in world.

Writes <out>/data/shapes.jsonl and <out>/shapes.yaml (default: prompt_sets/).
The output is deterministic; tests rebuild it and compare bytes.

Examples:
    python scripts/build_shapes_prompts.py
    python scripts/build_shapes_prompts.py --out /tmp/shapes-check
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # runnable from a checkout without installing
    sys.path.insert(0, str(REPO))

from bench.world.promptset import write_prompt_set  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     epilog=__doc__.split("\n\n", 2)[2],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=REPO / "prompt_sets",
                        help="folder for shapes.yaml and data/shapes.jsonl (default: prompt_sets/)")
    args = parser.parse_args(argv)
    yaml_path, data_path = write_prompt_set(args.out)
    print(f"wrote {yaml_path} and {data_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
