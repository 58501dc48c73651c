"""The shipped prompt sets: one ``<name>.yaml`` per set, raw data under ``data/``.

This folder is installed as package data; ``bench.prompts`` reads it.  The
format is described in ``bench/prompts.py`` and in ``README.md`` here.
"""

from pathlib import Path

PROMPT_SETS_DIR = Path(__file__).parent
