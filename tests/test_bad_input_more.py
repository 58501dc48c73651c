"""More user mistakes and hostile environments: one ``error:`` line, exit code 2, nothing written lost.

Each test here reproduces a failure a user reported (a traceback, or a silent wrong number) and
checks the one-line message, the exit code and that the files already written are unchanged.
"""

import errno
import json
import os
import resource
import shutil
import signal
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from audit.cli import main as audit_main
from bench.cli import main
from conftest import REPO
from test_bad_input import Result, assert_one_line_error, tree_digest

TINY = ("--model", "builtin:tiny-random", "--steps", "2", "--no-progress")


@pytest.fixture
def gen(capsys):
    """``t2i-bench generate`` with the tiny random model, in-process (as in test_bad_input)."""
    def run(*args: str, out: Path, prompts: Path | str) -> Result:
        capsys.readouterr()
        code = main(["generate", *TINY, "--prompts", str(prompts), "--out", str(out), *args])
        return Result(code, capsys.readouterr().err)
    return run


def bench(capsys, *args) -> tuple[int, str, str]:
    """``t2i-bench ARGS`` in-process: (exit code, stdout, stderr)."""
    capsys.readouterr()
    try:
        code = main([str(a) for a in args])
    except SystemExit as exc:  # argparse
        code = exc.code
    out, err = capsys.readouterr()
    return code, out, err


def audit(capsys, *args) -> tuple[int, str, str]:
    capsys.readouterr()
    try:
        code = audit_main([str(a) for a in args])
    except SystemExit as exc:
        code = exc.code
    out, err = capsys.readouterr()
    return code, out, err


def one_line(code: int, err: str, *needles: str) -> str:
    """The one error line of a refused command (and its checks)."""
    assert_one_line_error(Result(code, err), *needles)
    return err.strip()


def png_header_only(path: Path, width: int, height: int) -> None:
    """A PNG with a header and no pixels: enough for Pillow's decompression-bomb check, which reads the size."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    ihdr = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)  # 1-bit grayscale
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b""))


def env() -> dict:
    return {**os.environ, "PYTHONPATH": str(REPO)}


# ----------------------------------------------------------------- prompt files


def test_prompt_file_with_a_245_character_name_generates(gen, tmp_path, capsys):
    """Ids were '<file name>-0000': over the 128-character id limit, and image names over the file system's."""
    prompts = tmp_path / ("p" * 241 + ".txt")
    prompts.write_text("a red circle\na blue square\n")
    code, out, _ = bench(capsys, "prompts", "validate", prompts)
    assert code == 0 and out.startswith("ok: ")
    result = gen(out=tmp_path / "r", prompts=prompts)
    assert result.returncode == 0, result.stderr
    samples = pd.read_parquet(tmp_path / "r" / "samples.parquet")
    assert len(samples) == 2 and samples.prompt_id.str.len().max() <= 128
    assert all((tmp_path / "r" / p).is_file() for p in samples.path)


def test_prompt_file_with_a_nul_byte_is_refused_with_its_line(gen, tmp_path, capsys):
    bad = tmp_path / "nul.txt"
    bad.write_bytes(b"a red circle\na blue\x00 square\n")
    one_line(*bench(capsys, "prompts", "validate", bad)[::2], "line 2", "NUL")
    # UTF-16 decodes as UTF-8 with a NUL after every ASCII character: the same refusal
    utf16 = tmp_path / "utf16.txt"
    utf16.write_bytes("a red circle\n".encode("utf-16-le"))
    one_line(*bench(capsys, "prompts", "validate", utf16)[::2], "line 1", "NUL", "UTF-8")
    assert_one_line_error(gen(out=tmp_path / "r", prompts=bad), "line 2", "NUL")
    assert not (tmp_path / "r").exists()


def test_validate_wording_for_a_txt_file(tmp_path, capsys):
    """A T2I-CompBench-style .txt file: not 'vfile' and '0 categories'."""
    prompts = tmp_path / "compbench.txt"
    prompts.write_text("a red book and a yellow vase\na blue backpack and a red bench\n")
    code, out, _ = bench(capsys, "prompts", "validate", prompts)
    assert (code, out) == (0, "ok: compbench (user file), 2 prompts, no categories\n")


# ----------------------------------------------------------------------- import


def test_import_scales_16_bit_grayscale_instead_of_clipping(tmp_path, capsys):
    prompts = tmp_path / "p.txt"
    prompts.write_text("a gradient\n")
    (tmp_path / "imgs").mkdir()
    ramp = (np.arange(64 * 64).reshape(64, 64) * 16).astype(np.uint16)  # 0 .. 65520
    Image.fromarray(ramp).save(tmp_path / "imgs" / "p-0000.png")
    assert Image.open(tmp_path / "imgs" / "p-0000.png").mode.startswith("I;16")
    code, _, err = bench(capsys, "import", tmp_path / "imgs", "--prompts", prompts, "--model-name", "m",
                         "--out", tmp_path / "r")
    assert code == 0, err
    stored = np.asarray(Image.open(tmp_path / "r" / "images" / "p-0000__s000__gna.png"))
    assert stored.shape == (64, 64, 3) and stored.dtype == np.uint8
    np.testing.assert_array_equal(stored[:, :, 0], (ramp >> 8).astype(np.uint8))  # the high byte, as libpng
    assert (stored == 255).mean() < 0.01  # clipping at 255 made 99.6% of it white
    manifest = json.loads((tmp_path / "r" / "manifest.json").read_text())
    assert sum(manifest["converted"].values()) == 1


def test_import_of_a_decompression_bomb_is_one_line(tmp_path, capsys):
    prompts = tmp_path / "p.txt"
    prompts.write_text("a huge image\n")
    (tmp_path / "imgs").mkdir()
    png_header_only(tmp_path / "imgs" / "p-0000.png", 20000, 20000)
    code, _, err = bench(capsys, "import", tmp_path / "imgs", "--prompts", prompts, "--model-name", "m",
                         "--out", tmp_path / "new" / "r")
    one_line(code, err, "p-0000.png", "400 Mpixel", "decompression-bomb limit", "downscale it or remove it")
    assert not (tmp_path / "new").exists()


@pytest.mark.parametrize("existing", ["none", "empty"])
def test_failed_import_leaves_no_half_written_out_and_the_rerun_works(tmp_path, capsys, existing):
    prompts = tmp_path / "p.txt"
    prompts.write_text("one\ntwo\n")
    folder = tmp_path / "imgs"
    folder.mkdir()
    Image.new("RGB", (16, 16), (200, 10, 10)).save(folder / "p-0000.png")
    (folder / "p-0001.png").write_bytes(b"")  # read after the good one: the import fails half-way
    out = tmp_path / "r"
    if existing == "empty":
        out.mkdir()
    argv = ("import", folder, "--prompts", prompts, "--model-name", "m", "--out", out)
    one_line(*bench(capsys, *argv)[::2], "cannot read image", "p-0001.png", "remove or replace it")
    assert (not out.exists()) if existing == "none" else (out.is_dir() and not any(out.iterdir()))
    Image.new("RGB", (16, 16), (10, 200, 10)).save(folder / "p-0001.png")
    code, out_text, err = bench(capsys, *argv)
    assert code == 0 and "2 images" in out_text, err


# ------------------------------------------------------------- generate: resume


def test_resume_regenerates_images_that_do_not_decode(gen, tmp_path):
    out = tmp_path / "r"
    assert gen(out=out, prompts=_three_prompts(tmp_path)).returncode == 0
    before = tree_digest(out / "images")
    images = sorted((out / "images").glob("*.png"))
    images[0].write_bytes(images[0].read_bytes()[:100])  # truncated
    images[1].write_bytes(b"")  # emptied
    again = gen(out=out, prompts=_three_prompts(tmp_path))
    assert again.returncode == 0, again.stderr
    warnings = [l for l in again.stderr.splitlines() if l.startswith("warning:")]
    assert len(warnings) == 1 and "2 existing image(s) do not decode" in warnings[0] and "generating them again" in warnings[0]
    assert tree_digest(out / "images") == before  # regenerated, identical to the first time (seeded per image)
    assert json.loads((out / "manifest.json").read_text())["complete"] is True


def test_resume_rebuilds_a_truncated_samples_table(gen, tmp_path):
    out = tmp_path / "r"
    prompts = _three_prompts(tmp_path)
    assert gen("--guidance", "1,2", out=out, prompts=prompts).returncode == 0
    table = out / "samples.parquet"
    before = pd.read_parquet(table)
    images = tree_digest(out / "images")
    table.write_bytes(table.read_bytes()[:300])
    again = gen("--guidance", "1", out=out, prompts=prompts)  # the rows of scale 2 must come back too
    assert again.returncode == 0, again.stderr
    assert "Traceback" not in again.stderr and "rebuilt samples.parquet from the 6 images" in again.stderr
    pd.testing.assert_frame_equal(pd.read_parquet(table), before)
    assert tree_digest(out / "images") == images


def _three_prompts(tmp_path: Path) -> Path:
    path = tmp_path / "three.txt"
    path.write_text("a red circle\na blue square\na green star\n")
    return path


# ---------------------------------------------------- environment: disk, limits


def _ignore_sigxfsz_and_limit(size: int):
    def preexec():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # then a write over the limit raises EFBIG
        resource.setrlimit(resource.RLIMIT_FSIZE, (size, size))
    return preexec


def test_file_size_limit_is_one_line_and_keeps_the_run(gen, tmp_path):
    """`ulimit -f 50` at 256 px: a PNG of noise is ~190 KB, over 50 KiB."""
    out, prompts = tmp_path / "r", tmp_path / "one.txt"
    prompts.write_text("a red circle\n")
    size = ("--height", "256", "--width", "256")
    assert gen(*size, "--guidance", "1", out=out, prompts=prompts).returncode == 0
    images, table = tree_digest(out / "images"), (out / "samples.parquet").read_bytes()
    proc = subprocess.run(
        [sys.executable, "-m", "bench.cli", "generate", *TINY, *size, "--guidance", "1,2", "--prompts", str(prompts),
         "--out", str(out)],
        capture_output=True, text=True, timeout=300, env=env(), preexec_fn=_ignore_sigxfsz_and_limit(50 * 1024))
    one_line(proc.returncode, proc.stderr, "cannot write", "__g2.png", "File too large",
             "ulimit -f", "run the same command again to resume")
    assert tree_digest(out / "images") == images and (out / "samples.parquet").read_bytes() == table
    assert not list(out.rglob(".tmp-*"))


def test_disk_full_is_one_line_naming_the_file(gen, tmp_path, monkeypatch):
    import bench.atomic
    import bench.generate

    out, prompts = tmp_path / "r", _three_prompts(tmp_path)
    assert gen(out=out, prompts=prompts).returncode == 0
    before = tree_digest(out)

    def full_disk(target, data):  # as a write() on a full disk: an OSError without a file name
        with bench.atomic.atomic_path(target):
            raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(bench.generate, "atomic_write_bytes", full_disk)
    proc = gen("--guidance", "7.5,2", out=out, prompts=prompts)
    line = one_line(proc.returncode, proc.stderr, "No space left on device", "free disk space", "resume")
    assert "__g2.png" in line
    after = tree_digest(out)
    assert {k: v for k, v in after.items() if k != "manifest.json"} == {k: v for k, v in before.items() if k != "manifest.json"}


# ------------------------------------------------------------ read-only places


def run_read_only(folder: Path, commands: list[list[str]]) -> list[Result]:
    """Run ``python -m ...`` commands while ``folder`` is read-only.

    Root ignores permissions, so as root the folder is bind-mounted read-only in a private mount
    namespace (``unshare -m``); otherwise its files and folders lose their write bits for the call."""
    folder = folder.resolve()
    results = []
    if os.geteuid() == 0:
        if shutil.which("unshare") is None:
            pytest.skip("running as root without unshare: cannot make a read-only folder")
        for argv in commands:
            script = 'mount --bind -o ro "$0" "$0" || exit 99; exec "$@"'
            proc = subprocess.run(["unshare", "-m", "sh", "-c", script, str(folder), sys.executable, *argv],
                                  capture_output=True, text=True, timeout=300, env=env())
            if proc.returncode == 99 or "unshare:" in proc.stderr[:200]:
                pytest.skip(f"no read-only bind mount here: {proc.stderr.strip()[:200]}")
            results.append(Result(proc.returncode, proc.stderr))
        return results
    paths = [folder, *folder.rglob("*")]
    modes = {p: p.stat().st_mode for p in paths}
    try:
        for p in paths:
            p.chmod(modes[p] & ~0o222)
        for argv in commands:
            proc = subprocess.run([sys.executable, *argv], capture_output=True, text=True, timeout=300, env=env())
            results.append(Result(proc.returncode, proc.stderr))
    finally:
        for p in reversed(paths):
            p.chmod(modes[p])
    return results


def test_score_memorization_and_watermark_on_a_read_only_run(gen, tmp_path):
    out = tmp_path / "r"
    assert gen(out=out, prompts=_three_prompts(tmp_path)).returncode == 0
    before = tree_digest(out)
    run = str(out.resolve())
    score, memorization, watermark = run_read_only(out, [
        ["-m", "bench.cli", "score", run, "--features", "efficientnet-lite0", "--reference", run, "--no-progress"],
        ["-m", "audit.cli", "memorization", run, "--index", str(tmp_path / "no-index")],
        ["-m", "audit.cli", "watermark", run],
    ])
    for result, command in ((score, "t2i-bench score"), (memorization, "t2i-audit memorization"),
                            (watermark, "t2i-audit watermark")):
        line = one_line(result.returncode, result.stderr, f"cannot write to run '{run}'", command, "copy the run")
        assert "Read-only file system" in line or "Permission denied" in line
    assert tree_digest(out) == before


def test_index_build_out_read_only(tmp_path, capsys):
    target = tmp_path / "ro"
    target.mkdir()
    (result,) = run_read_only(target, [["-m", "audit.cli", "index", "build", "shapes-laion:50", "--out",
                                        str(target.resolve() / "idx"), "--no-progress"]])
    one_line(result.returncode, result.stderr, "cannot write the index to", "is not writable", "--out")
    assert not any(target.iterdir())


@pytest.mark.parametrize("where", ["proc", "under-a-file"])
def test_index_build_out_unwritable(tmp_path, capsys, where):
    blocker = tmp_path / "a-file"
    blocker.write_text("keep me")
    out = Path("/proc/t2i-audit-index") if where == "proc" else blocker / "idx"
    if where == "proc" and not Path("/proc").is_dir():
        pytest.skip("no /proc here")
    code, _, err = audit(capsys, "index", "build", "shapes-laion:50", "--out", out, "--no-progress")
    one_line(code, err, "cannot write the index to", "--out")
    assert blocker.read_text() == "keep me"


# ----------------------------------------------------------------- score


@pytest.fixture(scope="module")
def tiny_runs(tmp_path_factory):
    """A run of 3 uncategorised prompts (one guidance scale) and two reference runs."""
    from bench.generate import generate
    from bench.runspec import RunSpec

    root = tmp_path_factory.mktemp("score-runs")
    prompts = root / "cats.txt"
    prompts.write_text("a photo of a cat\na dog on a sofa\na red circle\n")
    common = dict(model="builtin:tiny-random", prompts=str(prompts), steps=2, images_per_prompt=2)
    run = generate(RunSpec(out=str(root / "run"), **common), progress=False).run_dir
    ref_a = generate(RunSpec(out=str(root / "ref-a"), seed=1, **common), progress=False).run_dir
    ref_b = generate(RunSpec(out=str(root / "ref-b"), seed=2, **common), progress=False).run_dir
    return run, ref_a, ref_b


SCORE = ("--features", "efficientnet-lite0", "--bootstrap", "0", "--no-progress")


def test_second_reference_keeps_the_first_references_rows(tiny_runs, capsys):
    run, ref_a, ref_b = tiny_runs
    code, _, err = bench(capsys, "score", run, "--reference", ref_a, *SCORE)
    assert code == 0, err
    first = pd.read_parquet(run / "metrics.parquet")
    code, _, err = bench(capsys, "score", run, "--reference", ref_b, *SCORE)
    assert code == 0, err
    both = pd.read_parquet(run / "metrics.parquet")
    fd = both[both.metric == "FD_efficientnet-lite0"]
    assert sorted(fd.reference) == sorted([f"run:{ref_a}", f"run:{ref_b}"])
    kept = both[both.reference == f"run:{ref_a}"].reset_index(drop=True)
    pd.testing.assert_frame_equal(kept[first.columns], first[first.reference == f"run:{ref_a}"].reset_index(drop=True))
    # scoring against ref-a again replaces its rows (no duplicates)
    assert bench(capsys, "score", run, "--reference", ref_a, *SCORE)[0] == 0
    again = pd.read_parquet(run / "metrics.parquet")
    assert len(again) == len(both) and not again.duplicated(["metric", "subset", "guidance", "reference"]).any()


def test_score_output_without_clip(tiny_runs, capsys):
    """One guidance scale: its row says 'all', not NaN; no --clip: one info line; N <= d names the set."""
    run, ref_a, _ = tiny_runs
    code, out, err = bench(capsys, "score", run, "--reference", ref_a, *SCORE)
    assert code == 0, err
    header, *rows = out.splitlines()[:-1]
    assert header.split()[:2] == ["metric", "guidance"] and len(rows) == 4
    assert [r.split()[1] for r in rows] == ["all"] * 4  # was NaN
    info = [l for l in err.splitlines() if l.startswith("info:")]
    assert info == ["info: no CLIP score or CMMD: they need --clip (builtin for the shapes world, or MODEL@TAG)"]
    rank = [l for l in err.splitlines() if "samples <= d=" in l]
    assert rank and all("reference set" in l or "generated set" in l for l in rank), rank
    assert any("reference set" in l for l in rank) and any("generated set" in l for l in rank)


def test_builtin_clip_outside_the_shapes_world(tiny_runs, capsys):
    run, _, _ = tiny_runs
    code, out, err = bench(capsys, "score", run, "--features", "", "--clip", "builtin", "--bootstrap", "0",
                           "--no-progress")
    assert code == 0, err
    warned = [l for l in err.splitlines() if "--clip builtin" in l]
    assert len(warned) == 1 and warned[0].startswith("warning: ") and "2 of 3 prompts" in warned[0]
    assert "info:" not in err
    metrics = pd.read_parquet(run / "metrics.parquet")
    assert set(metrics.subset) == {"all"}  # no 'category=' row for a file without categories


def test_category_rows_name_uncategorised_prompts():
    from bench.metrics.base import category_results

    per_group = pd.DataFrame({"category": ["animals", ""], "mean": [1.0, 2.0], "n_images": [2, 2]})
    assert [r.subset for r in category_results(per_group, "CLIPScore", "mean", "n_images", None)] == [
        "category=animals", "category=(none)"]
    assert category_results(per_group.iloc[1:], "CLIPScore", "mean", "n_images", None) == []


def test_offline_clip_names_the_right_syntax(tiny_runs, capsys):
    run, _, _ = tiny_runs
    line = one_line(*bench(capsys, "score", run, "--features", "", "--clip", "ViT-L-14@openai")[::2],
                    "not available offline", "--clip ViT-L-14@/path/to/checkpoint")
    assert "--clip-pretrained" not in line


@pytest.mark.parametrize("argv", [
    ("generate", "--steps", "abc", "--out", "x"),
    ("score", "run", "--bootstrap", "many"),
    ("prompts", "show", "drawbench", "--limit", "x"),
])
def test_bad_option_values_are_one_line(capsys, argv):
    code, out, err = bench(capsys, *argv)
    one_line(code, err, "invalid int value", "--help")
    assert "usage:" not in err and out == ""


def test_a_file_given_as_the_run(tmp_path, capsys):
    not_a_run = tmp_path / "run.txt"
    not_a_run.write_text("x")
    one_line(*bench(capsys, "score", not_a_run, "--features", "")[::2], "is a file, not a run directory")
    for argv in (("watermark", not_a_run), ("bias", not_a_run), ("report", not_a_run)):
        one_line(*audit(capsys, *argv)[::2], "is a file, not a run directory")
    assert not_a_run.read_text() == "x"


# ------------------------------------------------------------------ help and docs


def test_generate_help_does_not_call_the_default_model_noise(capsys):
    with pytest.raises(SystemExit):
        main(["generate", "--help"])
    out = capsys.readouterr().out
    assert "noise until" not in out
    assert "builtin:shapes-ldm" in out and "trained" in out


def test_feature_cache_location_is_documented(capsys):
    with pytest.raises(SystemExit):
        main(["score", "--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert "~/.cache/t2i-audit/features" in out and "T2I_AUDIT_CACHE" in out
    readme = (REPO / "README.md").read_text()
    run_section = readme[readme.index("### Run directory"):readme.index("### Comparing runs")]
    assert "~/.cache/t2i-audit/features" in run_section and "T2I_AUDIT_CACHE" in run_section


def test_pitfalls_do_not_promise_identical_pngs_across_batch_sizes():
    text = " ".join((REPO / "docs" / "PITFALLS.md").read_text().split())
    assert "most PNGs byte-identical" not in text
    assert "12 of 12" in text
