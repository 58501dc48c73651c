"""Every user mistake: one line on stderr, exit code 2, nothing already written lost."""

import hashlib
from dataclasses import dataclass
from pathlib import Path

import pytest

from bench.cli import main
from conftest import run_cli


@dataclass
class Result:
    returncode: int
    stderr: str


@pytest.fixture
def gen(capsys):
    """Run ``t2i-bench generate`` in-process (fast); one test below checks a real process."""
    def run(*args: str, out: Path, prompts: Path | str) -> Result:
        capsys.readouterr()
        code = main(["generate", "--model", "builtin:tiny-random", "--prompts", str(prompts), "--steps", "2", "--no-progress", "--out", str(out), *args])
        return Result(code, capsys.readouterr().err)
    return run


def assert_one_line_error(proc, *needles: str):
    assert proc.returncode == 2, proc.stderr
    lines = [l for l in proc.stderr.strip().splitlines() if l.strip()]
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("error: ") and "Traceback" not in proc.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]


def tree_digest(folder: Path) -> dict[str, str]:
    return {p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def test_hub_model_missing_offline_in_a_real_process(tmp_path, prompt_file):
    proc = run_cli("-m", "bench.cli", "generate", "--prompts", str(prompt_file), "--no-progress", "--out", str(tmp_path / "r"),
                   "--model", "some-org/not-a-cached-model")
    assert_one_line_error(proc, "some-org/not-a-cached-model", "not available offline", "hf download")
    assert not (tmp_path / "r").exists()


def test_missing_local_model_path(gen, tmp_path, prompt_file):
    proc = gen("--model", "./models/does-not-exist", out=tmp_path / "r", prompts=prompt_file)
    assert_one_line_error(proc, "does not exist")


def test_folder_that_is_not_a_pipeline(gen, tmp_path, prompt_file):
    (tmp_path / "m").mkdir()
    proc = gen("--model", str(tmp_path / "m"), out=tmp_path / "r", prompts=prompt_file)
    assert_one_line_error(proc, "model_index.json")


@pytest.mark.parametrize("content, needle", [
    ("caf\xe9 au lait\n".encode("latin-1"), "UTF-8"),
    (b"", "empty"),
])
def test_malformed_text_prompt_file(gen, tmp_path, content, needle):
    bad = tmp_path / "bad.txt"
    bad.write_bytes(content)
    assert_one_line_error(gen(out=tmp_path / "r", prompts=bad), needle)


def test_prompt_csv_without_prompt_column(gen, tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("title,kind\nx,y\n")
    assert_one_line_error(gen(out=tmp_path / "r", prompts=bad), "column")


def test_unknown_prompt_set_suggests_close_name(gen, tmp_path):
    assert_one_line_error(gen(out=tmp_path / "r", prompts="drawbnch"), "drawbench")


@pytest.mark.parametrize("args, needle", [
    (("--guidance", "0.5"), "guidance 0.5 is out of range"),
    (("--guidance", "1,100"), "guidance 100 is out of range"),
    (("--guidance", "-1", "--guidance-formulation", "ho-salimans"), "out of range"),
    (("--steps", "0"), "steps 0 is out of range"),
    (("--steps", "5000"), "steps 5000 is out of range"),
    (("--images-per-prompt", "0"), "images per prompt"),
    (("--height", "30"), "multiple of 8"),
    (("--scheduler", "nonsense"), "unknown scheduler"),
])
def test_out_of_range_settings(gen, tmp_path, prompt_file, args, needle):
    proc = gen(*args, out=tmp_path / "r", prompts=prompt_file)
    assert_one_line_error(proc, needle)
    assert not (tmp_path / "r").exists()


def test_unwritable_output_directory(gen, tmp_path, prompt_file):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    assert_one_line_error(gen(out=blocker / "run", prompts=prompt_file), "cannot write to output directory")
    assert blocker.read_text() == "not a folder"


def test_output_path_is_a_file(gen, tmp_path, prompt_file):
    target = tmp_path / "f"
    target.write_text("keep me")
    assert_one_line_error(gen(out=target, prompts=prompt_file), "is a file")
    assert target.read_text() == "keep me"


def test_foreign_non_empty_folder_refused(gen, tmp_path, prompt_file):
    (tmp_path / "r").mkdir()
    (tmp_path / "r" / "notes.txt").write_text("mine")
    assert_one_line_error(gen(out=tmp_path / "r", prompts=prompt_file), "not a run directory")
    assert tree_digest(tmp_path / "r") == {"notes.txt": hashlib.sha256(b"mine").hexdigest()}


def test_existing_run_with_different_settings_is_refused(gen, tmp_path, prompt_file):
    out = tmp_path / "r"
    first = gen(out=out, prompts=prompt_file)
    assert first.returncode == 0, first.stderr
    before = tree_digest(out)
    proc = gen("--seed", "1", "--steps", "3", out=out, prompts=prompt_file)
    assert_one_line_error(proc, "different settings", "steps: 2 -> 3", "seed: 0 -> 1")
    assert tree_digest(out) == before


def test_long_prompts_are_truncated_and_counted_once(gen, tmp_path):
    prompts = tmp_path / "long.txt"
    long = " ".join(["a very detailed red circle"] * 30)
    prompts.write_text(f"{long}\n{long} again\na short prompt\n")
    proc = gen("--guidance", "1,2", out=tmp_path / "r", prompts=prompts)
    assert proc.returncode == 0, proc.stderr
    warnings = [l for l in proc.stderr.splitlines() if "truncated" in l]
    assert warnings == ["warning: 2 of 3 prompts are longer than the text encoder's 77 tokens and are truncated to it"]
    import json
    import pandas as pd
    assert json.loads((tmp_path / "r" / "manifest.json").read_text())["truncated_prompts"] == 2
    assert pd.read_parquet(tmp_path / "r" / "samples.parquet").truncated.sum() == 4
