"""Fault suite: SIGKILL at seeded random points of every stage, then rerun; results must equal an uninterrupted run.

Stages: ``generate``, ``score`` (feature extraction and metrics), ``index build``, the ``memorization``,
``watermark`` and ``bias`` probes, and ``report``.  For each, one uninterrupted run gives the expected
files and its duration T; then each of ``TRIALS`` trials copies the stage's input, starts the command,
SIGKILLs it at a time drawn (seeded) between the stage's first output file (at the latest 30% of T) and
its end, reruns it to completion, and compares
every result file with the uninterrupted run's (tables by content, arrays and images by bytes), and
checks that no temporary file (``bench.atomic.TMP_PREFIX``) is left behind.

The commands run in forked children of this process, which imported the heavy libraries once: a
kill then lands in the stage's own work, not in interpreter start-up (a fresh ``python -m`` spends
seconds importing torch, which would swallow most kills).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import signal
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd
import pytest

from bench.atomic import TMP_PREFIX

pytestmark = pytest.mark.slow

TRIALS = 5
SEED = 20261203
KILL_WINDOW = (0.05, 0.95)  # where in [first output, end] of the uninterrupted run the child is killed


def _child(argv: list[str], module: str) -> int:
    """Fork a child that runs ``module``'s CLI main on ``argv``; returns its pid."""
    pid = os.fork()
    if pid == 0:  # the child: one thread (the parent's thread pools do not survive a fork), no output
        code = 1
        try:
            import torch

            torch.set_num_threads(1)
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, 1)
            os.dup2(devnull, 2)
            if module == "bench":
                from bench.cli import main
            else:
                from audit.cli import main
            code = main(argv)
        finally:
            os._exit(code if isinstance(code, int) else 1)
    return pid


def run_to_end(argv: list[str], module: str, watch: Path | None = None) -> tuple[float, float]:
    """Run to the end; (duration, seconds until ``watch`` first held a file the run wrote; 0 without ``watch``)."""
    before = set(_names(watch)) if watch is not None and watch.exists() else set()
    start = time.monotonic()
    pid = _child(argv, module)
    first = 0.0
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            break
        if watch is not None and not first and watch.exists() and set(_names(watch)) - before:
            first = time.monotonic() - start
        time.sleep(0.01)
    assert os.waitstatus_to_exitcode(status) == 0, f"{module} {' '.join(argv)} failed"
    duration = time.monotonic() - start
    return duration, first or duration


def run_and_kill(argv: list[str], module: str, after_s: float) -> bool:
    """Start, SIGKILL after ``after_s`` seconds; True when the kill landed before the command finished."""
    pid = _child(argv, module)
    deadline = time.monotonic() + after_s
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return False
        time.sleep(0.01)
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    return True


# ----------------------------------------------------------------------------- comparing results


#: JSON keys whose values differ between two identical runs by design (timings, clocks).
VOLATILE = ("second", "time", "created", "date", "elapsed", "duration", "started", "finished", "updated")


def _stable(value):
    if isinstance(value, dict):
        return {k: _stable(v) for k, v in value.items() if not any(word in k.lower() for word in VOLATILE)}
    if isinstance(value, list):
        return [_stable(v) for v in value]
    return value


def _digest(path: Path, work: Path) -> object:
    """What must be equal between two runs: tables by content, JSON without timings, other files by bytes;
    the work folder's own path is replaced by a placeholder (each trial runs in its own folder)."""
    import json

    if path.suffix == ".parquet":
        frame = pd.read_parquet(path)
        text = frame.sort_values(list(frame.columns[:1]), kind="stable").reset_index(drop=True).to_json()
    elif path.suffix == ".json":
        text = json.dumps(_stable(json.loads(path.read_text())), sort_keys=True)
    elif path.suffix in (".html", ".md"):
        return None  # the report states when it was made; its sections come from the tables compared above
    else:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    for spelling in (str(work), str(work).replace("/", "\\/")):  # as written, and as pandas' to_json escapes it
        text = text.replace(spelling, "<work>")
    return text


def snapshot(folder: Path, work: Path | None = None) -> dict[str, object]:
    out = {}
    for path in sorted(folder.rglob("*")):
        if path.is_file() and not path.name.endswith(".lock"):
            out[path.relative_to(folder).as_posix()] = _digest(path, work or folder)
    return out


def _names(folder: Path) -> list[str]:
    return [p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()]


def leftovers(folder: Path) -> list[str]:
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob(f"{TMP_PREFIX}*"))


@dataclass
class Stage:
    name: str
    module: str
    argv: Callable[[Path], list[str]]  # given the work folder
    prepare: Callable[[Path], None]  # copies the stage's input into the work folder
    result: str  # the folder (relative to the work folder) whose files are compared


def check_stage(stage: Stage, tmp_path: Path) -> list[str]:
    """Run ``stage`` uninterrupted, then TRIALS kill/rerun trials; returns one line per trial."""
    expected_dir = tmp_path / "uninterrupted"
    expected_dir.mkdir(parents=True)
    stage.prepare(expected_dir)
    duration, first_output = run_to_end(stage.argv(expected_dir), stage.module, expected_dir / stage.result)
    expected = snapshot(expected_dir / stage.result, expected_dir)
    assert expected, f"{stage.name}: the uninterrupted run wrote nothing"
    rng = np.random.default_rng([SEED, len(stage.name)])
    lines = []
    for trial in range(TRIALS):
        work = tmp_path / f"trial{trial}"
        work.mkdir()
        stage.prepare(work)
        # From the stage's first output (or 30% of its time, for stages that write only at the end) to its end.
        start = min(first_output, 0.3 * duration)
        after = start + float(rng.uniform(*KILL_WINDOW)) * (duration - start)
        killed = run_and_kill(stage.argv(work), stage.module, after)
        partial = len(_names(work / stage.result)) if (work / stage.result).exists() else 0
        run_to_end(stage.argv(work), stage.module)
        got = snapshot(work / stage.result, work)
        assert got.keys() == expected.keys(), (stage.name, trial, sorted(set(got) ^ set(expected)))
        different = [k for k in got if got[k] != expected[k]]
        assert not different, f"{stage.name} trial {trial}: {different} differ from the uninterrupted run"
        assert leftovers(work) == [], f"{stage.name} trial {trial}: temporary files left: {leftovers(work)}"
        lines.append(f"{stage.name} trial {trial}: killed at {after:.2f} s of {duration:.2f} s "
                     f"({'during the work' if killed else 'after it finished'}; {partial} files by then), "
                     f"rerun identical")
        shutil.rmtree(work)
    return lines


# ----------------------------------------------------------------------------- the stages' inputs


TINY = ["--model", "builtin:tiny-random", "--steps", "2", "--batch-size", "4", "--no-progress"]


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    """A tiny generated run of shapes prompts, one of shapes-audit role prompts, and a small index."""
    import importlib

    for heavy in ("torch", "diffusers", "open_clip", "faiss"):  # imported once here, before any fork
        importlib.import_module(heavy)

    root = tmp_path_factory.mktemp("fault-inputs")
    run_to_end(["generate", *TINY, "--prompts", "shapes", "--per-category", "1", "--guidance", "1,7.5",
                "--images-per-prompt", "2", "--out", str(root / "run")], "bench")
    run_to_end(["generate", *TINY, "--prompts", "shapes-audit", "--category", "role", "--per-category", "4",
                "--images-per-prompt", "2", "--out", str(root / "roles")], "bench")
    run_to_end(["index", "build", "shapes-laion:300", "--out", str(root / "index"), "--no-progress",
                "--device", "cpu"], "audit")
    return root


def _copy(src: Path, name: str | None = None):
    def prepare(work: Path) -> None:
        shutil.copytree(src, work / (name or src.name), symlinks=True)
    return prepare


def _copy_all(*prepares):
    def prepare(work: Path) -> None:
        for p in prepares:
            p(work)
    return prepare


def test_generate_resumes_after_sigkill(tmp_path):
    stage = Stage("generate", "bench",
                  lambda w: ["generate", *TINY, "--prompts", "shapes", "--per-category", "1", "--guidance", "1,3,7.5",
                             "--images-per-prompt", "2", "--out", str(w / "run")],
                  lambda w: None, "run")
    print("\n" + "\n".join(check_stage(stage, tmp_path)))


def test_score_resumes_after_sigkill(tmp_path, inputs):
    stage = Stage("score", "bench",
                  lambda w: ["score", str(w / "run"), "--features", "efficientnet-lite0", "--clip", "builtin",
                             "--reference", str(w / "run"), "--bootstrap", "200", "--no-progress"],
                  _copy(inputs / "run"), "run")
    print("\n" + "\n".join(check_stage(stage, tmp_path)))


def test_index_build_resumes_after_sigkill(tmp_path):
    stage = Stage("index build", "audit",
                  lambda w: ["index", "build", "shapes-laion:200", "--out", str(w / "index"), "--no-progress",
                             "--device", "cpu"],
                  lambda w: None, "index")
    print("\n" + "\n".join(check_stage(stage, tmp_path)))


def test_memorization_resumes_after_sigkill(tmp_path, inputs):
    stage = Stage("memorization", "audit",
                  lambda w: ["memorization", str(w / "run"), "--index", str(w / "index"), "--no-progress"],
                  _copy_all(_copy(inputs / "run"), _copy(inputs / "index")), "run/audit")
    print("\n" + "\n".join(check_stage(stage, tmp_path)))


def test_watermark_resumes_after_sigkill(tmp_path, inputs):
    stage = Stage("watermark", "audit",
                  lambda w: ["watermark", str(w / "run"), "--index", str(w / "index"), "--no-progress"],
                  _copy_all(_copy(inputs / "run"), _copy(inputs / "index")), "run/audit")
    print("\n" + "\n".join(check_stage(stage, tmp_path)))


def test_bias_and_report_resume_after_sigkill(tmp_path, inputs):
    bias = Stage("bias", "audit", lambda w: ["bias", str(w / "roles"), "--no-progress"],
                 _copy(inputs / "roles"), "roles/audit")
    lines = check_stage(bias, tmp_path / "bias")
    report = Stage("report", "audit", lambda w: ["report", str(w / "roles")], _copy(inputs / "roles"), "roles")
    (tmp_path / "report").mkdir()
    lines += check_stage(report, tmp_path / "report")
    print("\n" + "\n".join(lines))
