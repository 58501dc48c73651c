"""Many processes (docs/scale.md): 2 CPU processes on gloo (torchrun) make byte for byte what 1 makes,
wrong launches are refused with one line, a killed rank leaves a run that resumes, and the run lock."""

import json
import os
import signal
import subprocess
import sys
from contextlib import contextmanager
from pathlib import Path

import pandas as pd
import pytest

from bench import contract as C
from bench import rundir
from bench.errors import UserError
from bench.prompts import load_prompt_set
from bench.atomic import pid_alive
from bench.runlock import run_lock
from conftest import REPO

GENERATE = ["generate", "--model", "builtin:tiny-random", "--prompts", "shapes", "--per-category", "1", "--steps", "2",
            "--batch-size", "2", "--no-progress"]  # 9 images in 5 batches: ranks take 3 and 2
SCORE = ["--features", "efficientnet-lite0", "--feature-batch-size", "2", "--bootstrap", "0", "--no-progress"]
N_IMAGES = 9


def env() -> dict:
    """One thread per process (the reference too), offline; no launcher variables of the test runner."""
    keep = {k: v for k, v in os.environ.items()
            if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")
            and not k.startswith("ACCELERATE_")}
    return {**keep, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}


def run(args: list[str], extra_env: dict | None = None, timeout: int = 240) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], cwd=REPO, env={**env(), **(extra_env or {})},
                          capture_output=True, text=True, timeout=timeout)


def torchrun(*args: str, extra_env: dict | None = None) -> subprocess.CompletedProcess:
    return run(["-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", *args], extra_env)


def error_lines(done: subprocess.CompletedProcess) -> list[str]:
    return [line for line in done.stderr.splitlines() if line.startswith("error:")]


def pngs(run_dir: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted((run_dir / C.IMAGES_DIR).glob("*.png"))}


def features(run_dir: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted((run_dir / C.FEATURES_DIR).iterdir())}


@contextmanager
def one_thread():
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def generate_here(out: Path):
    """``t2i-bench generate GENERATE --out out`` in this process (one process, one thread)."""
    from bench.cli import build_parser, spec_from_args
    from bench.generate import generate

    with one_thread():
        return generate(spec_from_args(build_parser().parse_args([*GENERATE, "--out", str(out)])), progress=False)


@pytest.fixture(scope="module")
def one_process(tmp_path_factory) -> Path:
    """The reference: one process, one thread, with the command line's settings."""
    from bench.cli import build_parser, score_spec_from_args
    from bench.score import score_run

    out = tmp_path_factory.mktemp("one") / "run"
    generate_here(out)
    with one_thread():
        score_run(score_spec_from_args(build_parser().parse_args(["score", str(out), *SCORE]), str(out)),
                  progress=False)
    return out


@pytest.fixture(scope="module")
def two_processes(tmp_path_factory) -> tuple[Path, subprocess.CompletedProcess, subprocess.CompletedProcess]:
    out = tmp_path_factory.mktemp("two") / "run"
    gen = torchrun("-m", "bench.cli", *GENERATE, "--out", str(out))
    assert gen.returncode == 0, gen.stderr[-3000:]
    score = torchrun("-m", "bench.cli", "score", str(out), *SCORE)
    assert score.returncode == 0, score.stderr[-3000:]
    return out, gen, score


def test_two_processes_make_what_one_makes(one_process, two_processes):
    two, gen, score = two_processes
    manifest = json.loads((two / C.MANIFEST).read_text())
    assert manifest["num_processes"] == 2, "torchrun did not give a 2-process run: the comparison would be vacuous"
    assert manifest["complete"] is True
    a, b = pngs(one_process), pngs(two)
    assert len(a) == N_IMAGES and a == b
    assert pd.read_parquet(one_process / C.SAMPLES).equals(pd.read_parquet(two / C.SAMPLES))
    # the feature cache: the .npy and its .json, byte for byte
    fa, fb = features(one_process), features(two)
    assert any(n.endswith(".npy") for n in fa) and fa == fb
    assert pd.read_parquet(one_process / C.METRICS).equals(pd.read_parquet(two / C.METRICS))
    # rank 0 alone prints; the lock's PID file is gone once the run is done
    assert gen.stdout.count("run: ") == 1 and score.stdout.count("metrics: ") == 1
    assert not (two / C.RUN_LOCK_OWNER).exists()
    assert not list(two.rglob(".tmp-*"))


def test_accelerate_launch_that_starts_one_process_is_refused(tmp_path):
    out = tmp_path / "run"
    done = run(["-m", "accelerate.commands.launch", "--num_processes", "2", "-m", "bench.cli", *GENERATE,
                "--out", str(out)])
    assert done.returncode != 0
    lines = error_lines(done)
    assert len(lines) == 1 and "started one" in lines[0] and "torchrun --nproc_per_node" in lines[0], done.stderr
    assert "exit status 2" in done.stderr  # bench.cli's own exit code, as accelerate reports it
    assert not out.exists()


def test_torchrun_with_a_default_partial_state_is_refused(tmp_path):
    """A program that made a default PartialState() before calling bench: on a CPU-only machine every
    rank would think it is alone and make every image."""
    script = tmp_path / "embed.py"
    script.write_text("import sys\nfrom accelerate import PartialState\nPartialState()\n"
                      "from bench.cli import main\nsys.exit(main(sys.argv[1:]))\n")
    out = tmp_path / "run"
    done = torchrun(str(script), *GENERATE, "--out", str(out))
    assert done.returncode != 0
    lines = error_lines(done)
    assert len(lines) == 1, done.stderr  # rank 0 prints, rank 1 exits 2 quietly
    assert "started 2 processes but torch.distributed joins 1" in lines[0] and "torchrun" in lines[0]
    assert "exitcode  : 2" in done.stderr
    assert not out.exists()


def test_killed_rank_leaves_a_run_that_resumes_with_one_process(tmp_path, one_process):
    out = tmp_path / "run"
    killed = torchrun("-m", "bench.cli", *GENERATE, "--out", str(out), extra_env={"T2I_AUDIT_TEST_KILL": "1:1"})
    assert killed.returncode != 0 and "SIGKILL" in killed.stderr
    left = pngs(out)
    assert 0 < len(left) < N_IMAGES, "the kill did not interrupt the run"
    # The plan's 5 batches are split 3 + 2: rank 1 owns images 6, 7, 8 and died after writing image 6.
    plan = [f"{rundir.image_id(p.id, 0, 7.5)}.png" for p in load_prompt_set("shapes").subset(None, 1).prompts]
    assert len(plan) == N_IMAGES and plan[6] in left and plan[7] not in left and plan[8] not in left
    reference = pngs(one_process)
    assert all(reference[name] == png for name, png in left.items())  # whole files, the right bytes
    assert not (out / C.SAMPLES).exists()  # rank 0 never reached the tables
    # Rank 0 is either stopped by torchrun holding the lock (its PID file stays, naming a dead process) or first
    # sees its peer's death in a collective and unwinds, releasing the lock and removing the file: both happen.
    owner = out / C.RUN_LOCK_OWNER
    if owner.exists():
        assert not pid_alive(json.loads(owner.read_text())["pid"])
    resumed = generate_here(out)  # one process takes over the dead run's lock
    assert resumed.n_generated == N_IMAGES - len(left)
    assert pngs(out) == pngs(one_process)
    assert pd.read_parquet(out / C.SAMPLES).equals(pd.read_parquet(one_process / C.SAMPLES))
    assert json.loads((out / C.MANIFEST).read_text())["complete"] is True


def test_second_writer_is_refused_with_the_holders_pid(tmp_path, one_process):
    from bench.score import ScoreSpec, score_run

    out = tmp_path / "run"
    with run_lock(out, "t2i-bench generate"):
        done = run(["-m", "bench.cli", *GENERATE, "--out", str(out)])
    with run_lock(one_process, "t2i-bench generate"):  # score takes the same lock
        with pytest.raises(UserError, match=rf"locked by t2i-bench generate \(PID {os.getpid()},"):
            score_run(ScoreSpec(run=str(one_process), features=(), bootstrap=0), progress=False)
    assert done.returncode == 2
    assert error_lines(done) == done.stderr.strip().splitlines()  # the one line, nothing else
    (line,) = error_lines(done)
    assert f"locked by t2i-bench generate (PID {os.getpid()}" in line and "wait for it" in line
    assert not out.exists()  # the holder made the folder for its lock and removed it, the refused run wrote nothing


def test_locked_run_refuses_a_two_process_run_once(tmp_path):
    """Rank 0 is refused; rank 1, which never takes the lock, stops too, without a second error line."""
    out = tmp_path / "run"
    with run_lock(out, "t2i-bench score"):
        done = torchrun("-m", "bench.cli", *GENERATE, "--out", str(out))
        assert sorted(p.name for p in out.iterdir()) == [C.RUN_LOCK, C.RUN_LOCK_OWNER]  # nothing written
    # The refused ranks exit with 2; in some orders the second rank's gloo teardown aborts instead (SIGABRT, a
    # known wart, see docs/scale.md §7). Either way the run is refused once and nothing is written.
    assert done.returncode != 0 and ("exitcode  : 2" in done.stderr or "SIGABRT" in done.stderr), done.stderr
    (line,) = error_lines(done)
    assert f"locked by t2i-bench score (PID {os.getpid()}" in line


def test_stale_lock_of_a_dead_process_is_taken_over(tmp_path):
    out = tmp_path / "run"
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time\nfrom bench.runlock import run_lock\n"
         "held = run_lock(sys.argv[1], 't2i-bench score')\nheld.__enter__()\nprint('held', flush=True)\ntime.sleep(120)\n",
         str(out)], cwd=REPO, env=env(), stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(UserError, match=rf"locked by t2i-bench score \(PID {holder.pid}, since"):
            with run_lock(out, "t2i-bench generate"):
                pass
    finally:
        os.kill(holder.pid, signal.SIGKILL)
        holder.wait()
    # the dead holder's PID file is still there; its OS lock died with it
    assert json.loads((out / C.RUN_LOCK_OWNER).read_text())["pid"] == holder.pid
    with run_lock(out, "t2i-bench generate"):
        assert json.loads((out / C.RUN_LOCK_OWNER).read_text())["pid"] == os.getpid()
    assert not (out / C.RUN_LOCK_OWNER).exists()
    with run_lock(out, "t2i-bench score"):
        pass
