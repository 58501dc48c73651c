"""Shared test set-up: offline hub, a cache outside the package, small run helpers."""

import os
import subprocess
import sys
from pathlib import Path

# Hub calls must fail fast: set before huggingface_hub is imported anywhere.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
REPO = Path(__file__).resolve().parents[1]
# The tiny built-in pipeline is built once and reused across test sessions.
os.environ.setdefault("T2I_AUDIT_CACHE", str(REPO / ".pytest_cache" / "t2i-audit-cache"))

import pytest  # noqa: E402


def run_cli(*args: str, timeout: int = 300, cwd: Path | None = None) -> subprocess.CompletedProcess:
    """Run ``python -m bench.cli ...`` (or another module) in a fresh process."""
    return subprocess.run(
        [sys.executable, *args], capture_output=True, text=True, timeout=timeout, cwd=cwd or REPO,
        env={**os.environ},
    )


@pytest.fixture
def prompt_file(tmp_path: Path) -> Path:
    path = tmp_path / "prompts.txt"
    path.write_text("a red circle\na blue square on a white background\na green star\n")
    return path
