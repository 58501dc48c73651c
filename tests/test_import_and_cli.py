"""`t2i-bench import`, the console scripts' help, the offline CLIP tokenizer and the model loader."""

import json
import os
from pathlib import Path

import pandas as pd
import pytest
from PIL import Image

from bench.cli import main
from bench.errors import UserError
from bench.importer import import_images
from conftest import run_cli


def make_image(path: Path, colour, mode="RGB", size=(32, 32)):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new(mode, size, colour).save(path)


def test_import_by_prompt_id(tmp_path):
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text('{"id": "cat", "prompt": "a cat", "category": "animals"}\n'
                       '{"id": "dog", "prompt": "a dog", "category": "animals"}\n')
    folder = tmp_path / "outputs"
    make_image(folder / "cat.png", (255, 0, 0))
    make_image(folder / "dog_0.jpg", (0, 255, 0))
    make_image(folder / "dog_1.png", (0, 0, 255, 128), mode="RGBA", size=(48, 40))
    result = import_images(str(folder), str(prompts), "api-model", str(tmp_path / "run"))
    assert (result.n_images, result.n_prompts) == (3, 2)

    samples = pd.read_parquet(tmp_path / "run" / "samples.parquet")
    assert sorted(samples.image_id) == ["cat__s000__gna", "dog__s000__gna", "dog__s001__gna"]
    assert set(samples.category) == {"animals"}
    dog1 = Image.open(tmp_path / "run" / "images" / "dog__s001__gna.png")
    assert dog1.mode == "RGB" and dog1.size == (48, 40)
    manifest = json.loads((tmp_path / "run" / "manifest.json").read_text())
    assert manifest["imported"] is True and manifest["model"]["ref"] == "api-model"
    assert manifest["image_sizes"] == ["32x32", "48x40"]


def test_import_by_file_column(tmp_path, capsys):
    prompts = tmp_path / "map.csv"
    prompts.write_text("file,prompt\nimg_a.png,a red circle\nsub/img_b.png,a blue square\n")
    make_image(tmp_path / "imgs" / "img_a.png", (255, 0, 0))
    make_image(tmp_path / "imgs" / "sub" / "img_b.png", (0, 0, 255))
    code = main(["import", str(tmp_path / "imgs"), "--prompts", str(prompts), "--model-name", "dalle",
                 "--out", str(tmp_path / "run")])
    assert code == 0, capsys.readouterr().err
    samples = pd.read_parquet(tmp_path / "run" / "samples.parquet")
    assert dict(zip(samples.prompt, samples.prompt_id)) == {"a red circle": "map-0000", "a blue square": "map-0001"}


def test_import_unmatched_images_is_one_line_error(tmp_path, capsys):
    prompts = tmp_path / "p.txt"
    prompts.write_text("a cat\n")
    make_image(tmp_path / "imgs" / "random_name.png", (1, 2, 3))
    code = main(["import", str(tmp_path / "imgs"), "--prompts", str(prompts), "--model-name", "x", "--out", str(tmp_path / "r")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.startswith("error: 1 of 1 images match no prompt") and "\n" not in err
    assert not (tmp_path / "r").exists()


def test_import_refuses_two_images_for_one_sample(tmp_path):
    prompts = tmp_path / "p.jsonl"
    prompts.write_text('{"id": "cat", "prompt": "a cat"}\n')
    make_image(tmp_path / "imgs" / "cat.png", (1, 2, 3))
    make_image(tmp_path / "imgs" / "cat_0.jpg", (1, 2, 3))
    with pytest.raises(UserError, match="both map to prompt 'cat' sample 0"):
        import_images(str(tmp_path / "imgs"), str(prompts), "x", str(tmp_path / "r"))


@pytest.mark.parametrize("module", ["bench.cli", "audit.cli", "dashboard.cli"])
def test_console_scripts_have_help_with_examples(module):
    proc = run_cli("-m", module, "--help")
    assert proc.returncode == 0, proc.stderr
    assert "examples:" in proc.stdout


def test_generate_help_has_examples(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["generate", "--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert "examples:" in out and "t2i-bench generate --model" in out


def test_clip_tokenizer_built_offline_matches_open_clip(tmp_path):
    import open_clip

    from bench.models.clip_tokenizer import build_clip_tokenizer

    ours = build_clip_tokenizer(tmp_path)
    reference = open_clip.get_tokenizer("ViT-B-32")
    texts = ["a photo of a cat", "A red colored car.", "Tcennis rpacket.", "naïve café, 3 déjà-vu's!"]
    for text in texts:
        ids = ours(text).input_ids
        assert ids == reference([text])[0].tolist()[: len(ids)]
    assert len(ours) == 49408


def test_builtin_weights_hash_is_stable_and_names_the_weights():
    from bench.models.loader import resolve_model, weights_sha256

    resolved = resolve_model("tiny-random")
    assert resolved.kind == "builtin" and (resolved.path / "model_index.json").exists()
    assert weights_sha256(resolved) == weights_sha256(resolve_model("builtin:tiny-random"))
    assert not list(resolved.path.rglob("*.bin")), "built-in weights are safetensors only"


def test_unknown_builtin_is_refused():
    from bench.models.loader import resolve_model

    with pytest.raises(UserError, match="unknown built-in model"):
        resolve_model("builtin:nope")


def test_atomic_writes_get_the_mode_of_a_plain_open(tmp_path):
    import os
    import stat

    from bench.atomic import atomic_write_text

    atomic_write_text(tmp_path / "a.json", "{}")
    (tmp_path / "b.json").write_text("{}")
    mode = lambda p: stat.S_IMODE(os.stat(p).st_mode)  # noqa: E731
    assert mode(tmp_path / "a.json") == mode(tmp_path / "b.json")
    assert not list(tmp_path.glob(".tmp-*"))


def test_a_killed_writers_temporary_file_is_cleared_by_the_next_writer_into_its_folder(tmp_path):
    """A writer SIGKILLed between creating its temporary file and renaming it leaves a ``.tmp-`` file; the next
    writer into the folder (any command) deletes it, and keeps a live writer's and a foreign one."""
    import signal
    import socket
    import subprocess
    import sys

    from bench.atomic import TMP_PREFIX, atomic_write_text

    folder = tmp_path / "audit"
    script = ("import os, signal, sys; from bench.atomic import atomic_path\n"
              "with atomic_path(sys.argv[1]) as tmp:\n    os.kill(os.getpid(), signal.SIGKILL)\n")
    killed = subprocess.run([sys.executable, "-c", script, str(folder / "table.parquet")], capture_output=True)
    assert killed.returncode == -signal.SIGKILL
    (dead,) = folder.glob(TMP_PREFIX + "*")
    live = folder / f"{TMP_PREFIX}{os.getpid()}@{socket.gethostname()}@abc.parquet"  # this process: alive
    foreign = folder / f"{TMP_PREFIX}1@some-other-host@abc.parquet"  # another host's writer: not ours to judge
    live.write_bytes(b"")
    foreign.write_bytes(b"")
    atomic_write_text(folder / "other.json", "{}")
    assert sorted(p.name for p in folder.iterdir()) == sorted(["other.json", live.name, foreign.name])
    assert not dead.exists()


def test_usage_mistakes_are_one_error_line_with_exit_code_2():
    for argv, needle in ((["-m", "bench.cli", "generate", "--steps", "abc", "--out", "x"], "invalid int value: 'abc'"),
                         (["-m", "audit.cli", "memorisation", "x"], "did you mean 'memorization'?"),
                         (["-m", "audit.cli", "unsafe"], "arguments are required: run")):
        result = run_cli(*argv)
        lines = result.stderr.strip().splitlines()
        assert result.returncode == 2 and len(lines) == 1, result.stderr
        assert lines[0].startswith("error: ") and needle in lines[0] and "--help" in lines[0]
