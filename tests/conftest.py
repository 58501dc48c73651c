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


#: Debian's Chromium, which `make browser` installs for the dashboard's browser tests.
CHROMIUM = Path("/usr/bin/chromium")


@pytest.fixture
def chromium() -> Path:
    """Chromium's path; skip without it on a dev machine, fail on CI (env CI set)."""
    if CHROMIUM.exists():
        return CHROMIUM
    if os.environ.get("CI"):
        pytest.fail(f"{CHROMIUM} is missing on CI; install it with 'make browser'")
    pytest.skip(f"{CHROMIUM} not installed (run 'make browser'); browser tests need it")


@pytest.fixture
def prompt_file(tmp_path: Path) -> Path:
    path = tmp_path / "prompts.txt"
    path.write_text("a red circle\na blue square on a white background\na green star\n")
    return path
