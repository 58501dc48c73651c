"""The built wheel is a complete package: models, prompt data and all, usable outside the repo.

The built-in models and prompt sets are read through ``Path(__file__)``
(``bench/models/loader.py``, ``bench/models/evaluator_clip.py``,
``prompt_sets/__init__.py``), so the editable install used for development finds
them in the checkout whether or not ``pyproject.toml`` declares them as package
data.  These tests build the wheel, install it with ``--no-deps`` into a fresh venv
that sees the current environment's packages, and run the console scripts from a
folder outside the repo, checking that the code and weights come from the wheel.
"""

from __future__ import annotations

import json
import os
import shutil
import site
import subprocess
import sys
import sysconfig
import tarfile
import zipfile
from pathlib import Path

import pytest

from bench.prompts import registry
from conftest import REPO

pytestmark = pytest.mark.slow

# What a build copies: the working tree as the developer has it (untracked modules
# included, as `pip wheel .` would see them), without environments and build output.
TREE_IGNORE = shutil.ignore_patterns(
    ".git", ".venv", ".venv-*", "build", "dist", "*.egg-info", "__pycache__", ".pytest_cache", "runs", "tmp", "*.whl",
)
BUILTIN = REPO / "bench" / "models" / "builtin"
PROMPT_SETS = REPO / "prompt_sets"


def _run(cmd: list, cwd: Path, timeout: int = 300, env: dict | None = None) -> subprocess.CompletedProcess:
    proc = subprocess.run([str(c) for c in cmd], cwd=cwd, capture_output=True, text=True, timeout=timeout, env=env)
    assert proc.returncode == 0, f"{' '.join(map(str, cmd))} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}"
    return proc


def _build_wheel(src: Path, out: Path) -> Path:
    # --no-build-isolation: the build uses this environment's setuptools, so no network is needed.
    _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index", "-q", "-w", out, "."],
         cwd=src)
    (wheel,) = out.glob("t2i_audit-*.whl")
    return wheel


def _shipped_data_files() -> list[str]:
    """Every non-Python file the code reads at run time, as paths inside the wheel."""
    files = [p for p in BUILTIN.rglob("*") if p.is_file() and not p.name.startswith(".")]
    files += sorted(PROMPT_SETS.glob("*.yaml"))
    files += [p for p in (PROMPT_SETS / "data").iterdir() if p.is_file() and not p.name.startswith(".")]
    return sorted(p.relative_to(REPO).as_posix() for p in files)


@pytest.fixture(scope="module")
def source_tree(tmp_path_factory) -> Path:
    """A copy of the checkout, so building leaves no build/ or egg-info in the repo."""
    src = tmp_path_factory.mktemp("src") / "t2i-audit"
    shutil.copytree(REPO, src, ignore=TREE_IGNORE)
    return src


@pytest.fixture(scope="module")
def wheel(source_tree, tmp_path_factory) -> Path:
    return _build_wheel(source_tree, tmp_path_factory.mktemp("wheel"))


def test_wheel_holds_models_and_prompt_data(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    weights = sorted(p.relative_to(REPO).as_posix() for p in BUILTIN.rglob("*.safetensors"))
    assert len(weights) >= 4, f"expected the built-in models' weights under {BUILTIN}, found {weights}"
    expected = _shipped_data_files()
    missing = [f for f in expected if f not in names]
    assert not missing, f"{wheel.name} lacks {len(missing)} package-data files: {missing}"
    # The data the prompt-set yamls name must be there too (a yaml without its data is unusable).
    for name, yaml_path in registry().items():
        assert yaml_path.relative_to(REPO).as_posix() in names, f"prompt set {name}: {yaml_path.name} not in the wheel"


def test_sdist_builds_the_same_wheel(source_tree, wheel, tmp_path):
    """`python -m build` makes the wheel from the sdist: it must come out the same."""
    sdist_dir = tmp_path / "sdist"
    # The backend pyproject.toml names, called as a build frontend would; runs offline.
    name = _run([sys.executable, "-c", "import sys; from setuptools import build_meta; "
                 "print(build_meta.build_sdist(sys.argv[1]))", sdist_dir], cwd=source_tree).stdout.split()[-1]
    sdist = sdist_dir / name
    with tarfile.open(sdist) as tar:
        members = {m.name.split("/", 1)[1] for m in tar.getmembers() if "/" in m.name}
        # filter= exists from Python 3.12 (and in 3.10/3.11 security releases).
        kwargs = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}
        tar.extractall(tmp_path / "unpacked", **kwargs)
    assert "tests/conftest.py" in members and "scripts/train_builtin_generator.py" in members  # MANIFEST.in
    (unpacked,) = (tmp_path / "unpacked").iterdir()
    from_sdist = _build_wheel(unpacked, tmp_path / "wheel")
    assert sorted(zipfile.ZipFile(from_sdist).namelist()) == sorted(zipfile.ZipFile(wheel).namelist())


def test_installed_wheel_generates_and_lists_every_prompt_set(wheel, tmp_path):
    venv = tmp_path / "venv"
    _run([sys.executable, "-m", "venv", "--without-pip", venv], cwd=tmp_path)
    python = venv / "bin" / "python"
    # Install first, into an environment that holds nothing, so pip neither skips the
    # wheel as "already satisfied" nor touches the current environment's editable install.
    _run([sys.executable, "-m", "pip", "--python", python, "install", "--no-deps", "--no-index", "-q", wheel],
         cwd=tmp_path)
    venv_site = Path(_run([python, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
                          cwd=tmp_path).stdout.strip()).resolve()
    # ...then let it see the current environment's packages (torch, diffusers, ...).  A .pth
    # line only appends a folder to sys.path, after the venv's own site-packages, and does not
    # run the .pth files in it: the editable install's finder is not installed there.
    here = dict.fromkeys([*site.getsitepackages(), sysconfig.get_path("purelib"), sysconfig.get_path("platlib")])
    (venv_site / "zz_existing_environment.pth").write_text("".join(f"{p}\n" for p in here))

    outside = tmp_path / "elsewhere"
    outside.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}
    env.update(HF_HUB_OFFLINE="1", T2I_AUDIT_CACHE=str(tmp_path / "cache"), TOKENIZERS_PARALLELISM="false")

    where = _run([python, "-c", "import bench, prompt_sets; print(bench.__file__); print(prompt_sets.__file__)"],
                 cwd=outside, env=env).stdout.split()
    for module_file in where:
        assert Path(module_file).resolve().is_relative_to(venv_site), f"{module_file} is not the installed wheel's copy"

    bin_dir = venv / "bin"
    proc = _run([bin_dir / "t2i-bench", "generate", "--prompts", "shapes", "--category", "colors",
                 "--per-category", "2", "--steps", "4", "--device", "cpu", "--no-progress", "--out", "run"],
                cwd=outside, env=env)
    run_dir = outside / "run"
    images = sorted((run_dir / "images").glob("*.png"))
    assert len(images) == 2, proc.stdout + proc.stderr
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["complete"] is True
    assert manifest["model"]["ref"] == "builtin:shapes-ldm"  # the default model
    assert Path(manifest["model"]["path"]).resolve().is_relative_to(venv_site), manifest["model"]["path"]

    listing = _run([bin_dir / "t2i-bench", "prompts", "list"], cwd=outside, env=env).stdout
    listed = {line.split()[0] for line in listing.splitlines()[1:] if line.strip()}
    assert listed == set(registry()), f"prompt sets listed by the installed package: {sorted(listed)}"
