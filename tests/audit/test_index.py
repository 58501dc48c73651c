"""audit.index: build from each source kind, exact and autofaiss search, reopen, foreign folders, refusals."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from bench.errors import UserError

OTHER_KEY = "clip-other__w0123456789abcdef__openclip-bicubic-shortest-64x64__float32"


@pytest.fixture(scope="module")
def clip():
    from bench.features import get_extractor
    from bench.score import clip_extractor_spec

    return get_extractor(clip_extractor_spec("builtin"))


def write_scenes(folder: Path, n: int, seed: int = 0) -> tuple[list[Path], list[str]]:
    """n random shapes-world renders as PNGs, each with a same-name .txt caption."""
    from bench.world import caption, random_scene, render

    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    paths, captions = [], []
    for i in range(n):
        scene = random_scene(rng)
        path = folder / f"scene_{i:02d}.png"
        render(scene).convert("RGB").save(path)
        captions.append(caption(scene, "single", i))
        path.with_suffix(".txt").write_text(captions[-1])
        paths.append(path)
    return paths, captions


def rgb(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB"))


def unit(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def clustered(n: int, dim: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """n unit vectors around 40 centres, and 100 queries near random members."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((40, dim))
    x = unit(centres[rng.integers(0, 40, n)] + 0.35 * rng.standard_normal((n, dim)))
    q = unit(x[rng.integers(0, n, 100)] + 0.05 * rng.standard_normal((100, dim)))
    return x, q


def test_folder_index_layout_self_search_and_reopen(tmp_path, clip):
    from audit.index import ClipIndex, build_index

    paths, captions = write_scenes(tmp_path / "images", 6)
    (tmp_path / "images" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    index = build_index(str(tmp_path / "images"), tmp_path / "idx", clip, progress=False)

    assert (index.n, index.dim, index.model_key) == (6, clip.dim, clip.key)
    assert index.info["n_skipped"] == 1 and "broken.png" in index.info["skipped"][0][0]
    assert index.info["index_type"] == "flat"
    folder = index.folder
    for name in ("img_emb/img_emb_0.npy", "text_emb/text_emb_0.npy", "metadata/metadata_0.parquet",
                 "image.index", "text.index", "t2i_index.json"):
        assert (folder / name).is_file(), name
    emb = np.load(folder / "img_emb" / "img_emb_0.npy")
    assert emb.dtype == np.float16 and emb.shape == (6, clip.dim)
    np.testing.assert_allclose(np.linalg.norm(emb.astype(np.float32), axis=1), 1, atol=2e-3)

    meta = index.metadata()
    rows = [meta.index[meta["image_path"] == str(p.resolve())][0] for p in paths]
    assert meta.loc[rows, "caption"].tolist() == captions
    scores, ids = index.search(clip([rgb(p) for p in paths]), 3, query_key=clip.key)
    assert ids[:, 0].tolist() == rows  # each image finds itself first ...
    np.testing.assert_allclose(scores[:, 0], 1, atol=5e-3)  # ... at cosine 1 (float16 storage)
    assert (scores[:, 0] > scores[:, 1]).all()
    for row, path in zip(rows, paths):
        np.testing.assert_array_equal(index.load_image(row), rgb(path))

    again = ClipIndex.open(folder)
    assert (again.n, again.dim, again.model_key, again.info) == (index.n, index.dim, index.model_key, index.info)
    pd.testing.assert_frame_equal(again.metadata(), meta)
    np.testing.assert_array_equal(again.image_embeddings(), index.image_embeddings())
    s2, i2 = again.search(clip([rgb(p) for p in paths]), 3, query_key=clip.key)
    np.testing.assert_array_equal(i2, ids)
    np.testing.assert_allclose(s2, scores, atol=1e-6)


def test_csv_source_keeps_columns_and_text_search_finds_the_caption(tmp_path, clip):
    from audit.index import build_index

    paths, captions = write_scenes(tmp_path / "data" / "img", 4, seed=1)
    table = pd.DataFrame({"file": [f"img/{p.name}" for p in paths], "caption": captions, "licence": ["cc0"] * 4})
    table.to_csv(tmp_path / "data" / "list.csv", index=False)
    index = build_index(str(tmp_path / "data" / "list.csv"), tmp_path / "idx", clip, progress=False)

    meta = index.metadata()
    assert meta["image_path"].tolist() == [str(p.resolve()) for p in paths]
    assert meta["caption"].tolist() == captions and meta["licence"].tolist() == ["cc0"] * 4
    text, _ = clip.encode_text(captions)
    scores, ids = index.search(text, 2, modality="text", query_key=clip.key)
    assert ids[:, 0].tolist() == [0, 1, 2, 3]
    np.testing.assert_allclose(scores[:, 0], 1, atol=5e-3)


def test_webdataset_source_and_load_image_from_the_tar(tmp_path, clip):
    import webdataset as wds

    from audit.index import build_index

    paths, captions = write_scenes(tmp_path / "src", 5, seed=2)
    tar = tmp_path / "shard-000000.tar"
    with wds.TarWriter(str(tar)) as sink:
        for i, (path, text) in enumerate(zip(paths, captions)):
            sink.write({"__key__": f"s{i:04d}", "png": path.read_bytes(), "txt": text, "json": {"uid": 100 + i}})
    index = build_index(str(tar), tmp_path / "idx", clip, progress=False)

    meta = index.metadata()
    assert index.n == 5 and index.info["source_kind"] == "webdataset"
    assert meta["key"].tolist() == [f"s{i:04d}" for i in range(5)]
    assert meta["caption"].tolist() == captions and meta["uid"].tolist() == [100, 101, 102, 103, 104]
    assert meta["tar_member"].tolist() == [f"s{i:04d}.png" for i in range(5)]
    for row, path in enumerate(paths):
        np.testing.assert_array_equal(index.load_image(row), rgb(path))
    _, ids = index.search(clip([rgb(p) for p in paths]), 1, query_key=clip.key)
    assert ids[:, 0].tolist() == [0, 1, 2, 3, 4]


@pytest.fixture(scope="module")
def shapes_index(tmp_path_factory, clip):
    from audit.index import build_index

    return build_index("shapes-laion:200", tmp_path_factory.mktemp("shapes") / "idx", clip, progress=False,
                       batch_size=64)


def test_shapes_laion_subset_keeps_every_iconic_group_and_renders_rows(shapes_index):
    from audit.index.sources import shapes_laion_rows
    from bench.world.corpus import ICONIC_GROUPS, build_corpus, render_row

    index = shapes_index
    meta = index.metadata()
    assert index.n == 200 and index.info["source"] == "shapes-laion:200"
    assert set(build_corpus(1000, seed=0).columns) <= set(meta.columns)  # every corpus column is kept
    pd.testing.assert_frame_equal(shapes_laion_rows(200), meta)  # deterministic, in corpus order
    iconic = meta[meta["dup_group"] >= 0]
    assert sorted(iconic["dup_group"].unique()) == list(range(ICONIC_GROUPS))
    assert (iconic.groupby("dup_group").size() == 2).all()  # max(2, round(110 * 200 / 100_000)) copies each

    row, twin = iconic.index[iconic["dup_group"] == 0].tolist()
    np.testing.assert_array_equal(index.load_image(row), np.asarray(render_row(meta.iloc[row]).convert("RGB")))
    scores, ids = index.search(index.image_embeddings()[[row]], 2)
    assert set(ids[0]) == {row, twin}  # a planted duplicate is its copy's nearest neighbour
    np.testing.assert_allclose(scores[0], 1, atol=5e-3)


def test_shapes_index_refuses_queries_of_another_clip_or_dim(shapes_index, clip):
    index = shapes_index
    q = np.asarray(index.image_embeddings()[:2], np.float32)
    index.check_query(clip.key, clip.dim)
    index.check_query(clip.key.replace("__float32", "__float16"), clip.dim)  # dtype alone is not another model
    with pytest.raises(UserError, match="built with CLIP"):
        index.search(q, 3, query_key=OTHER_KEY)
    with pytest.raises(UserError, match="dimension 64"):
        index.search(np.ones((1, 64), np.float32) / 8, 3, query_key=clip.key)


def test_autofaiss_index_agrees_with_flat_search(tmp_path):
    from audit.index import ClipIndex, write_index_folder

    x, q = clustered(3000, 32, seed=0)
    flat = write_index_folder(tmp_path / "flat", x, index_type="flat")
    approx = write_index_folder(tmp_path / "autofaiss", x, index_type="autofaiss", max_index_memory="1M")
    assert approx.info["index_type"] == "autofaiss" and approx.index_type.startswith("autofaiss (")
    assert (tmp_path / "autofaiss" / "image.json").is_file()  # autofaiss' infos, as clip-retrieval keeps them

    exact = q @ np.asarray(flat.image_embeddings(), np.float32).T
    s_flat, i_flat = flat.search(q, 5)
    np.testing.assert_array_equal(i_flat[:, 0], exact.argmax(axis=1))
    np.testing.assert_allclose(s_flat[:, 0], exact.max(axis=1), atol=1e-5)
    s_af, i_af = ClipIndex.open(tmp_path / "autofaiss").search(q, 5)
    same = i_af[:, 0] == i_flat[:, 0]
    assert same.mean() >= 0.95, same.mean()
    np.testing.assert_allclose(s_af[same, 0], s_flat[same, 0], atol=2e-3)


def test_shard_rows_gathers_across_shards_in_any_order(tmp_path):
    from audit.index import ShardRows

    rng = np.random.default_rng(5)
    parts = [rng.standard_normal((n, 4)).astype(np.float16) for n in (3, 5, 2)]
    files = []
    for i, part in enumerate(parts):
        files.append(tmp_path / f"img_emb_{i}.npy")
        np.save(files[-1], part)
    whole = np.concatenate(parts).astype(np.float32)
    ids = np.array([9, 0, 4, 3, 7, 2, 8, 8])
    np.testing.assert_array_equal(ShardRows(files).take(ids), whole[ids])


@pytest.mark.parametrize("threads", [1, 2, 4])
def test_exact_rerank_on_threads_equals_the_exact_search(tmp_path, monkeypatch, threads):
    """Re-ranking every row as a candidate (in shuffled order, with -1 padding) gives the exact search's
    top k, whatever the thread count and query blocks (blocks of 3 queries here: several per thread)."""
    import faiss

    import audit.index.clip_index as index_module
    from audit.index import ShardRows, exact_rerank

    monkeypatch.setattr(index_module, "RERANK_BLOCK", 3)
    x, q = clustered(300, 16, seed=7)
    x16 = x.astype(np.float16)
    files = []
    for i, part in enumerate(np.array_split(x16, [120, 250])):
        files.append(tmp_path / f"img_emb_{i}.npy")
        np.save(files[-1], part)
    q = q[:20].astype(np.float32)
    flat = faiss.IndexFlatIP(16)
    flat.add(x16.astype(np.float32))
    exact_scores, exact_ids = flat.search(q, 10)
    rng = np.random.default_rng(0)
    candidates = np.stack([np.concatenate([rng.permutation(300), [-1, -1]]) for _ in range(len(q))])
    scores, ids = exact_rerank(q, candidates, ShardRows(files), threads=threads)
    np.testing.assert_array_equal(ids[:, :10], exact_ids)
    np.testing.assert_allclose(scores[:, :10], exact_scores, atol=1e-5)
    assert (ids[:, -2:] == -1).all() and np.isneginf(scores[:, -2:]).all()


def test_approximate_index_is_reranked_from_the_stored_embeddings(tmp_path, monkeypatch):
    """An IVF-PQ index returns the exact top k (with exact cosines) for most queries once its
    k x RERANK_FACTOR candidates are re-scored; asking for only k candidates finds fewer."""
    import faiss

    import audit.index.clip_index as index_module
    from audit.index import ClipIndex, write_index_folder

    x, q = clustered(4000, 32, seed=3)
    folder = tmp_path / "pq"
    write_index_folder(folder, x, index_type="flat")
    pq = faiss.index_factory(32, "IVF16,PQ4x8", faiss.METRIC_INNER_PRODUCT)
    pq.train(x)
    pq.add(x)
    pq.nprobe = 16
    faiss.write_index(pq, str(folder / "image.index"))  # the folder now holds a compressed index

    stored = np.asarray(ClipIndex.open(folder).image_embeddings(), np.float32)
    exact_top = np.argsort(-(q @ stored.T), axis=1)[:, :10]

    def recall(ids):
        return np.mean([len(np.intersect1d(a, e)) / 10 for a, e in zip(ids, exact_top)])

    scores, ids = ClipIndex.open(folder).search(q, 10)
    np.testing.assert_allclose(scores, np.take_along_axis(q @ stored.T, ids, 1), atol=1e-5)  # exact cosines
    monkeypatch.setattr(index_module, "RERANK_FACTOR", 1)
    _, ids_no_rerank = ClipIndex.open(folder).search(q, 10)
    assert recall(ids) >= 0.95 and recall(ids) > recall(ids_no_rerank) + 0.1, (recall(ids), recall(ids_no_rerank))


def test_fewer_rows_than_k_pads_with_minus_one(tmp_path):
    from audit.index import write_index_folder

    x, _ = clustered(3, 8, seed=1)
    scores, ids = write_index_folder(tmp_path / "tiny", x).search(x, 5)
    assert (ids[:, 3:] == -1).all() and np.isnan(scores[:, 3:]).all()
    assert sorted(ids[:, :3].ravel().tolist()) == [0, 0, 0, 1, 1, 1, 2, 2, 2]


def test_clip_retrieval_folders_open_with_unknown_model(tmp_path, capsys):
    """A `clip-retrieval index` output (faiss files + metadata, no t2i_index.json, no img_emb)
    and a bare `clip-retrieval inference` output (img_emb + metadata, no faiss file)."""
    import faiss

    from audit.cli import main
    from audit.index import ClipIndex

    x, q = clustered(50, 16, seed=2)
    x16 = x.astype(np.float16)
    meta = pd.DataFrame({"image_path": [f"/data/{i}.jpg" for i in range(50)], "caption": [f"c{i}" for i in range(50)]})
    built = tmp_path / "cr-index"
    (built / "metadata").mkdir(parents=True)
    meta.to_parquet(built / "metadata" / "metadata_0.parquet")
    for name in ("image", "text"):
        flat = faiss.IndexFlatIP(16)
        flat.add(x16.astype(np.float32))
        faiss.write_index(flat, str(built / f"{name}.index"))
    bare = tmp_path / "cr-embeddings"
    (bare / "img_emb").mkdir(parents=True)
    (bare / "metadata").mkdir()
    np.save(bare / "img_emb" / "img_emb_0.npy", x16)
    meta.to_parquet(bare / "metadata" / "metadata_0.parquet")

    want = (q @ x16.astype(np.float32).T).argmax(axis=1)
    for folder in (built, bare):
        index = ClipIndex.open(folder)
        assert (index.n, index.dim, index.model_key) == (50, 16, None)
        assert index.describe()["model"] == "unknown (no t2i_index.json)"
        np.testing.assert_array_equal(np.asarray(index.image_embeddings(), np.float16), x16)
        np.testing.assert_array_equal(index.search(q, 1, query_key=OTHER_KEY)[1][:, 0], want)  # no key: dim only
        assert index.load_image(0) is None  # /data/0.jpg does not exist here
    assert ClipIndex.open(built).modalities == ("image", "text")
    assert ClipIndex.open(bare).index_type.startswith("flat")

    assert main(["index", "open", str(built)]) == 0
    out = capsys.readouterr().out
    assert "unknown (no t2i_index.json)" in out and "rows:       50" in out and "image_path, caption" in out


def test_existing_index_needs_overwrite_and_the_swap_is_clean(tmp_path):
    from audit.index import write_index_folder

    x, _ = clustered(20, 8, seed=3)
    write_index_folder(tmp_path / "idx", x)
    with pytest.raises(UserError, match="--overwrite"):
        write_index_folder(tmp_path / "idx", x[:10])
    assert write_index_folder(tmp_path / "idx", x[:10], overwrite=True).n == 10
    assert sorted(p.name for p in tmp_path.iterdir()) == ["idx"]  # no temporary folders left behind

    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "todo.txt").write_text("keep me")
    with pytest.raises(UserError, match="not an index"):
        write_index_folder(tmp_path / "notes", x, overwrite=True)
    assert (tmp_path / "notes" / "todo.txt").read_text() == "keep me"


def test_cli_build_open_query_round_trip(tmp_path, capsys):
    from audit.cli import main

    write_scenes(tmp_path / "images", 4, seed=4)
    out = tmp_path / "idx"
    assert main(["index", "build", str(tmp_path / "images"), "--out", str(out), "--no-progress", "--device", "cpu"]) == 0
    assert "4 rows, dim 128, flat" in capsys.readouterr().out
    assert json.loads((out / "t2i_index.json").read_text())["clip"] == "builtin"
    assert main(["index", "open", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "clip-shapes-clip__" in printed and "key, image_path, caption" in printed
    first = sorted((tmp_path / "images").glob("*.png"))[0]
    assert main(["index", "query", str(out), "--image", str(first), "-k", "2", "--device", "cpu"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split()[:3] == ["rank", "cosine", "row"] and "scene_00" in lines[1]


def test_cli_entry_point_opens_an_index(tmp_path):
    """The real entry point in a fresh process, not only the in-process parser."""
    from conftest import run_cli

    from audit.index import write_index_folder

    x, _ = clustered(30, 8, seed=5)
    write_index_folder(tmp_path / "idx", x, info={"model_key": OTHER_KEY})
    proc = run_cli("-m", "audit.cli", "index", "open", str(tmp_path / "idx"))
    assert proc.returncode == 0, proc.stderr
    assert "rows:       30" in proc.stdout and OTHER_KEY in proc.stdout and "index type: flat" in proc.stdout


def test_repeated_captions_are_embedded_once_with_the_same_result(clip):
    from audit.index import embed_source
    from audit.index.sources import Item, Source

    captions = ["a red circle", "a blue star", "a red circle", "", "a green square", "a blue star", "x"] * 3
    image = np.zeros((64, 64, 3), np.uint8)
    source = Source("test", "test", True, len(captions), lambda: (Item({"caption": c}, image) for c in captions))
    embedded = embed_source(source, clip, batch_size=4, progress=False)  # batches split the repeats
    direct, _ = clip.encode_text(captions)
    np.testing.assert_allclose(embedded["text_emb"].astype(np.float32), direct, atol=1e-3)  # float16 storage
    assert embedded["metadata"]["caption"].tolist() == captions
