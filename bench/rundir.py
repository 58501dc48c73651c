"""Making a run directory: image ids and seeds, provenance, the manifest and the samples table.

The files and columns are named by ``bench.contract`` (docs/DESIGN.md §3); this
module holds what generation and import do with them.  Image files are
``images/<prompt_id>__s<sample:03d>__g<guidance>.png``.  Every write is atomic
(``bench.atomic``).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import subprocess
from importlib import metadata
from pathlib import Path

import pandas as pd

from bench import contract as C
from bench.atomic import TMP_PREFIX, atomic_write_text
from bench.errors import UserError

MANIFEST = C.MANIFEST
SAMPLES = C.SAMPLES
SUMMARY = C.SUMMARY
IMAGES = C.IMAGES_DIR
SAMPLE_COLUMNS = list(C.SAMPLES_TABLE.columns)
PROVENANCE_PACKAGES = ("t2i-audit", "torch", "diffusers", "transformers", "open_clip_torch", "numpy", "pillow", "accelerate")


def guidance_tag(guidance: float | None) -> str:
    """Guidance as it appears in file names: 7.5 -> '7.5', 1.0 -> '1', None (imported) -> 'na'."""
    return "na" if guidance is None else f"{guidance:g}"


def image_id(prompt_id: str, sample_index: int, guidance: float | None) -> str:
    return f"{prompt_id}__s{sample_index:03d}__g{guidance_tag(guidance)}"


def image_relpath(prompt_id: str, sample_index: int, guidance: float | None) -> str:
    return f"{IMAGES}/{image_id(prompt_id, sample_index, guidance)}.png"


def image_seed(run_seed: int, prompt_id: str, sample_index: int) -> int:
    """The seed of one image's CPU noise generator, from (run seed, prompt id, sample index).

    A hash, not a counter, so that the noise of an image does not depend on which
    other prompts, samples or guidance scales are in the run, nor on batch size or
    device.  Guidance is left out on purpose: a sweep compares scales on the same noise.
    """
    digest = hashlib.sha256(f"{run_seed}/{prompt_id}/{sample_index}".encode()).digest()
    return int.from_bytes(digest[:8], "big") & (2**63 - 1)


def now_iso() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


def package_versions() -> dict[str, str]:
    out = {}
    for name in PROVENANCE_PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    return out


def git_state() -> dict:
    """The git sha and dirty flag of the t2i-audit checkout, when it is one."""
    repo = Path(__file__).resolve().parents[1]
    try:
        sha = subprocess.run(["git", "-C", str(repo), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10)
        if sha.returncode != 0:
            return {"sha": None, "dirty": None}
        status = subprocess.run(["git", "-C", str(repo), "status", "--porcelain", "--untracked-files=no"],
                                capture_output=True, text=True, timeout=10)
        return {"sha": sha.stdout.strip(), "dirty": bool(status.stdout.strip())}
    except (OSError, subprocess.SubprocessError):
        return {"sha": None, "dirty": None}


def read_manifest(run_dir: Path) -> dict | None:
    path = Path(run_dir) / MANIFEST
    if not path.exists():
        return None
    try:
        manifest = json.loads(path.read_bytes().decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise UserError(f"{path} is not UTF-8 text (byte {exc.start}); restore it or use a new --out") from None
    except ValueError as exc:  # json.JSONDecodeError
        raise UserError(f"{path} is not valid JSON ({getattr(exc, 'msg', exc)}); restore it or use a new --out") from None
    if not isinstance(manifest, dict):  # valid JSON but not a manifest (e.g. "null", a list, a number)
        raise UserError(f"{path} holds a JSON {type(manifest).__name__}, not a run manifest object; "
                        f"restore it or use a new --out")
    return manifest


def write_json(path: Path, data: dict) -> None:
    atomic_write_text(path, json.dumps(data, indent=2, sort_keys=False, default=str) + "\n")


def write_samples(run_dir: Path, rows: list[dict]) -> Path:
    df = pd.DataFrame(rows, columns=SAMPLE_COLUMNS).sort_values("image_id", kind="stable").reset_index(drop=True)
    return C.write_table(run_dir, C.SAMPLES_TABLE, df)


def read_samples(run_dir: Path) -> pd.DataFrame:
    """The run's samples table (empty when generation has not written it yet)."""
    if not (Path(run_dir) / SAMPLES).exists():
        return pd.DataFrame(columns=SAMPLE_COLUMNS)
    return C.read_table(run_dir, C.SAMPLES_TABLE)


def prepare_run_dir(run_dir: Path) -> None:
    """Create the run directory (and images/), or fail with a one-line reason."""
    try:
        (Path(run_dir) / IMAGES).mkdir(parents=True, exist_ok=True)
        probe = Path(run_dir) / ".write-test"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise UserError(
            f"cannot write to output directory '{run_dir}': {exc.strerror or exc}; choose another --out or fix its permissions"
        ) from exc


def check_writable_target(run_dir: Path) -> None:
    """Fail fast (before loading a model) when the run directory cannot be created."""
    ancestor = Path(run_dir).absolute()
    while not ancestor.exists():
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise UserError(f"cannot write to output directory '{run_dir}': '{ancestor}' is a file; choose another --out")
    if not os.access(ancestor, os.W_OK | os.X_OK):
        raise UserError(f"cannot write to output directory '{run_dir}': '{ancestor}' is not writable; choose another --out or fix its permissions")


def check_run_dir(path: str | Path, what: str = "run", made_by: str = "t2i-bench generate or import") -> Path:
    """An existing run directory, or a one-line UserError saying what the path is instead
    (missing, a file, or a folder without a manifest)."""
    path = Path(path)
    if path.is_file():
        raise UserError(f"{what} '{path}' is a file, not a run directory; pass the folder {made_by} wrote")
    if not path.is_dir():
        raise UserError(f"{what} directory '{path}' does not exist; pass a folder made by {made_by}")
    if not (path / MANIFEST).is_file():
        raise UserError(f"'{path}' is not a run directory (no {MANIFEST}); pass the folder {made_by} wrote")
    return path


def check_run_writable(run_dir: str | Path, command: str) -> None:
    """Fail before any work when ``command`` cannot write its results into an existing run directory
    (read-only mount, no permission): one line naming the run and the fix."""
    run_dir = Path(run_dir)
    probe = run_dir / f".write-test-{os.getpid()}"
    try:
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise UserError(
            f"cannot write to run '{run_dir}' ({exc.strerror or exc}): {command} writes its results into the run "
            f"directory; copy the run somewhere writable (cp -r) and run {command} on the copy, or fix its permissions"
        ) from None


def check_not_foreign(run_dir: Path) -> None:
    """Refuse a non-empty folder that is not a run directory: never write into someone's files."""
    run_dir = Path(run_dir)
    # A writer's lock (bench.runlock) and the temporary files of a writer killed before its first manifest
    # (bench.atomic) are not someone's files.
    ours = lambda name: name in (C.RUN_LOCK, C.RUN_LOCK_OWNER) or name.startswith(TMP_PREFIX)  # noqa: E731
    if run_dir.is_dir() and not (run_dir / MANIFEST).exists() and any(not ours(p.name) for p in run_dir.iterdir()):
        raise UserError(f"'{run_dir}' exists, is not empty and is not a run directory (no {MANIFEST}); choose a new --out")
    if run_dir.exists() and not run_dir.is_dir():
        raise UserError(f"output path '{run_dir}' is a file, not a directory; choose another --out")


def check_same_identity(run_dir: Path, identity: dict) -> None:
    """An existing run made with different settings is refused, never mixed."""
    manifest = read_manifest(run_dir)
    if manifest is None:
        return
    old = manifest.get("identity", {})
    diffs = [f"{k}: {old.get(k)!r} -> {identity.get(k)!r}" for k in sorted(set(old) | set(identity)) if old.get(k) != identity.get(k)]
    if diffs:
        shown = "; ".join(diffs[:4]) + (f"; and {len(diffs) - 4} more" if len(diffs) > 4 else "")
        raise UserError(
            f"run directory '{run_dir}' was made with different settings ({shown}); use a new --out, or the same settings to resume"
        )
