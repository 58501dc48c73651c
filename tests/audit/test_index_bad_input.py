"""t2i-audit index: each bad input ends in one `error: ...` line and exit code 2 (no traceback),
and unreadable images in a source are skipped and counted, not fatal."""

from __future__ import annotations

import json
import tarfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

OTHER_KEY = "clip-other__w0123456789abcdef__openclip-bicubic-shortest-64x64__float32"


def cli(capsys, *args: str) -> tuple[int, str, str]:
    from audit.cli import main

    rc = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return rc, out, err


def assert_error(rc: int, err: str, *needles: str) -> str:
    lines = err.strip().splitlines()
    assert rc == 2, err
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert "Traceback" not in err
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
    return lines[0]


def unit_vectors(n: int, dim: int, seed: int = 0) -> np.ndarray:
    x = np.random.default_rng(seed).standard_normal((n, dim)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def write_pngs(folder: Path, n: int) -> list[Path]:
    from bench.world import random_scene, render

    rng = np.random.default_rng(0)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n):
        paths.append(folder / f"ok_{i}.png")
        render(random_scene(rng)).convert("RGB").save(paths[-1])
    return paths


# ----------------------------------------------------------------- opening folders

def test_empty_index_is_refused(tmp_path, capsys):
    (tmp_path / "empty" / "img_emb").mkdir(parents=True)
    (tmp_path / "empty" / "metadata").mkdir()
    np.save(tmp_path / "empty" / "img_emb" / "img_emb_0.npy", np.zeros((0, 16), np.float16))
    pd.DataFrame({"caption": pd.Series([], dtype=str)}).to_parquet(tmp_path / "empty" / "metadata" / "metadata_0.parquet")
    assert_error(*cli(capsys, "index", "open", tmp_path / "empty")[::2], "is empty (0 rows)")


def test_folder_without_embeddings_is_refused(tmp_path, capsys):
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "readme.txt").write_text("hello")
    assert_error(*cli(capsys, "index", "open", tmp_path / "notes")[::2], "no image embeddings", "index build")
    assert_error(*cli(capsys, "index", "open", tmp_path / "missing")[::2], "does not exist")


def test_metadata_not_aligned_with_embeddings_is_refused(tmp_path, capsys):
    from audit.index import write_index_folder

    folder = write_index_folder(tmp_path / "idx", unit_vectors(10, 16)).folder
    meta_file = folder / "metadata" / "metadata_0.parquet"
    pd.read_parquet(meta_file).iloc[:9].to_parquet(meta_file)
    assert_error(*cli(capsys, "index", "open", folder)[::2], "do not align", "metadata 9", "image embeddings 10")


def test_embedding_dimension_disagreeing_with_the_faiss_index_is_refused(tmp_path, capsys):
    import faiss

    from audit.index import write_index_folder

    folder = write_index_folder(tmp_path / "idx", unit_vectors(10, 16)).folder
    other = faiss.IndexFlatIP(32)
    other.add(unit_vectors(10, 32))
    faiss.write_index(other, str(folder / "image.index"))
    assert_error(*cli(capsys, "index", "open", folder)[::2], "dimensions disagree", "image index 32")


@pytest.mark.parametrize("dtype", ["int8", "int64", "bool"])
def test_embeddings_of_a_non_float_dtype_are_refused(tmp_path, capsys, dtype):
    from audit.index import write_index_folder

    folder = write_index_folder(tmp_path / "idx", unit_vectors(10, 16)).folder
    shard = next(folder.rglob("img_emb_0.npy"))
    np.save(shard, np.zeros((10, 16), dtype=dtype))
    assert_error(*cli(capsys, "index", "open", folder)[::2], f"are {dtype}", "expected float16 or float32")


def test_query_with_another_clip_or_dimension_is_refused(tmp_path, capsys):
    from audit.index import write_index_folder

    other_model = write_index_folder(tmp_path / "other-model", unit_vectors(8, 128), info={"model_key": OTHER_KEY})
    assert_error(*cli(capsys, "index", "query", other_model.folder, "--text", "a red circle", "--device", "cpu")[::2],
                 "built with CLIP", OTHER_KEY)
    other_dim = write_index_folder(tmp_path / "other-dim", unit_vectors(8, 32))
    assert_error(*cli(capsys, "index", "query", other_dim.folder, "--text", "a red circle", "--device", "cpu")[::2],
                 "dimension 128", "has dimension 32")


# ----------------------------------------------------------------- building from sources

def test_source_without_images_is_refused(tmp_path, capsys):
    (tmp_path / "nothing").mkdir()
    (tmp_path / "nothing" / "notes.txt").write_text("no pictures here")
    out = tmp_path / "idx"
    assert_error(*cli(capsys, "index", "build", tmp_path / "nothing", "--out", out)[::2], "has no images")
    pd.DataFrame({"image_path": [], "caption": []}).to_csv(tmp_path / "empty.csv", index=False)
    assert_error(*cli(capsys, "index", "build", tmp_path / "empty.csv", "--out", out)[::2], "has no rows")
    with tarfile.open(tmp_path / "text-only.tar", "w") as tar:
        (tmp_path / "a.txt").write_text("a caption without an image")
        tar.add(tmp_path / "a.txt", arcname="a.txt")
    assert_error(*cli(capsys, "index", "build", tmp_path / "text-only.tar", "--out", out, "--no-progress",
                      "--device", "cpu")[::2], "no image members")
    assert_error(*cli(capsys, "index", "build", tmp_path / "nope", "--out", out)[::2], "does not exist")
    assert not out.exists()  # nothing half-written


def test_unreadable_images_are_skipped_and_counted(tmp_path, capsys):
    write_pngs(tmp_path / "mixed", 2)
    (tmp_path / "mixed" / "truncated.png").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00")
    (tmp_path / "mixed" / "text.jpg").write_text("not a jpeg")
    rc, out, err = cli(capsys, "index", "build", tmp_path / "mixed", "--out", tmp_path / "idx", "--no-progress",
                       "--device", "cpu")
    assert rc == 0, err
    assert "warning: skipped 2 unreadable image(s)" in err and "Traceback" not in err
    assert "2 rows" in out and "2 unreadable skipped" in out
    info = json.loads((tmp_path / "idx" / "t2i_index.json").read_text())
    assert info["n"] == 2 and info["n_skipped"] == 2

    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "a.png").write_bytes(b"garbage")
    rc, _, err = cli(capsys, "index", "build", tmp_path / "broken", "--out", tmp_path / "idx2", "--no-progress",
                     "--device", "cpu")
    assert_error(rc, err.strip().splitlines()[-1], "no readable images", "1 unreadable")
    assert not (tmp_path / "idx2").exists()


def test_csv_without_caption_column_names_the_columns(tmp_path, capsys):
    write_pngs(tmp_path / "img", 1)
    pd.DataFrame({"file": ["img/ok_0.png"], "label": ["x"]}).to_csv(tmp_path / "list.csv", index=False)
    assert_error(*cli(capsys, "index", "build", tmp_path / "list.csv", "--out", tmp_path / "idx")[::2],
                 "no caption column", "file, label", "--caption-column")
    assert_error(*cli(capsys, "index", "build", tmp_path / "list.csv", "--out", tmp_path / "idx",
                      "--caption-column", "alt")[::2], "no column 'alt'", "file, label")
    pd.DataFrame({"caption": ["x"]}).to_csv(tmp_path / "nopath.csv", index=False)
    assert_error(*cli(capsys, "index", "build", tmp_path / "nopath.csv", "--out", tmp_path / "idx")[::2],
                 "no image path column", "caption")


def test_existing_folders_are_not_overwritten(tmp_path, capsys):
    from audit.index import write_index_folder

    write_pngs(tmp_path / "img", 1)
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "thesis.tex").write_text("keep")
    assert_error(*cli(capsys, "index", "build", tmp_path / "img", "--out", tmp_path / "mine")[::2], "not an index")
    assert (tmp_path / "mine" / "thesis.tex").read_text() == "keep"
    write_index_folder(tmp_path / "old", unit_vectors(4, 16))
    assert_error(*cli(capsys, "index", "build", tmp_path / "img", "--out", tmp_path / "old")[::2], "--overwrite")


@pytest.mark.parametrize("args, needle", [
    (["shapes-laion:lots"], "whole number"),
    (["shapes-laion:10"], "too small"),
    (["shapes-laion:100", "--max-index-memory", "plenty"], "not a memory size"),
    (["shapes-laion:100", "--batch-size", "0"], "batch size"),
])
def test_bad_arguments_are_refused_before_any_work(tmp_path, capsys, args, needle):
    assert_error(*cli(capsys, "index", "build", *args, "--out", tmp_path / "idx")[::2], needle)
    assert not (tmp_path / "idx").exists()
