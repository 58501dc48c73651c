"""Interop with the real clip-retrieval, run from its own environment (``make clip-retrieval-env``).

a. clip-retrieval's ``index`` command builds an index over embeddings we write in its
   layout; ``audit.index.ClipIndex`` opens it and searches like faiss does.
b. clip-retrieval's ``back`` serves an index that we built (shapes-laion, built-in
   CLIP); ``audit.index.remote.ClipRetrievalClient`` gets the same neighbours from it as our
   local ``ClipIndex.search``.

Outside CI the tests skip when the environment is missing; with ``CI`` set they fail.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from conftest import REPO

#: clip-retrieval's environment (``make clip-retrieval-env``); CLIP_RETRIEVAL_VENV points elsewhere.
CR_BIN = Path(os.environ.get("CLIP_RETRIEVAL_VENV", REPO / ".venv-clip-retrieval")) / "bin"
LAUNCHER = REPO / "scripts" / "clip_retrieval_back.py"
CLIP_SPEC = f"clip:local-dir:{REPO / 'bench' / 'models' / 'builtin' / 'shapes-clip'}"
DIM = 128

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def clip_retrieval_bin() -> Path:
    if (CR_BIN / "clip-retrieval").is_file() and (CR_BIN / "python").is_file():
        return CR_BIN
    reason = f"clip-retrieval's environment {CR_BIN.parent} is missing: run `make clip-retrieval-env`"
    if os.environ.get("CI"):
        pytest.fail(reason)
    pytest.skip(reason)


def cr_env() -> dict[str, str]:
    """The environment for clip-retrieval's processes: offline, few threads (the machine is shared)."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    return {**env, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "WANDB_MODE": "disabled"}


def unit_float16(rows: int, rng: np.random.Generator) -> np.ndarray:
    x = rng.standard_normal((rows, DIM)).astype(np.float32)
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float16)


def normalised(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


@pytest.fixture
def embeddings_folder(tmp_path: Path) -> tuple[Path, np.ndarray, np.ndarray, pd.DataFrame]:
    """clip-retrieval's inference output layout: two parts (200 + 100 rows), float16 unit vectors."""
    rng = np.random.default_rng(0)
    folder = tmp_path / "embeddings"
    images, texts, metas = [], [], []
    for part, rows in enumerate((200, 100)):
        img, txt = unit_float16(rows, rng), unit_float16(rows, rng)
        meta = pd.DataFrame({
            "key": [f"{part:05d}{i:04d}" for i in range(rows)],
            "caption": [f"caption {part}-{i}" for i in range(rows)],
            "url": [f"http://example.invalid/{part}/{i}.png" for i in range(rows)],
        })
        for sub, name, data in (("img_emb", "img_emb", img), ("text_emb", "text_emb", txt)):
            (folder / sub).mkdir(parents=True, exist_ok=True)
            np.save(folder / sub / f"{name}_{part}.npy", data)
        (folder / "metadata").mkdir(exist_ok=True)
        meta.to_parquet(folder / "metadata" / f"metadata_{part}.parquet")
        images.append(img), texts.append(txt), metas.append(meta)
    return folder, np.concatenate(images), np.concatenate(texts), pd.concat(metas, ignore_index=True)


def run_clip_retrieval_index(bin_dir: Path, embeddings: Path, index_folder: Path, copy_metadata: bool) -> None:
    cmd = [str(bin_dir / "clip-retrieval"), "index", "--embeddings_folder", str(embeddings),
           "--index_folder", str(index_folder), "--max_index_memory_usage", "100M",
           "--current_memory_available", "2G", "--nb_cores", "1", "--copy_metadata", str(copy_metadata)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=cr_env())
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]


def test_clip_retrieval_index_opens_with_our_clip_index(clip_retrieval_bin, embeddings_folder):
    import faiss

    from audit.index import ClipIndex

    folder, images, texts, meta = embeddings_folder
    # index into the embeddings folder itself: img_emb/ + text_emb/ + metadata/ + the
    # faiss files side by side is the layout of docs/DESIGN.md §5
    run_clip_retrieval_index(clip_retrieval_bin, folder, folder, copy_metadata=False)
    assert (folder / "image.index").is_file() and (folder / "text.index").is_file()

    index = ClipIndex.open(folder)
    assert (index.n, index.dim) == (len(meta), DIM)
    assert index.model_key is None  # clip-retrieval writes no t2i_index.json: a foreign index
    assert index.metadata()["key"].tolist() == meta["key"].tolist()
    np.testing.assert_array_equal(np.asarray(index.image_embeddings(), dtype=np.float16), images)

    rng = np.random.default_rng(1)
    queries = np.concatenate([normalised(unit_float16(8, rng)), normalised(images[[0, 150, 250]])])
    k = 10
    for modality, faiss_file, vectors in (("image", "image.index", images), ("text", "text.index", texts)):
        scores, ids = index.search(queries, k, modality=modality)
        want_scores, want_ids = faiss.read_index(str(folder / faiss_file)).search(queries, k)
        np.testing.assert_array_equal(ids, want_ids)
        np.testing.assert_allclose(scores, want_scores, atol=1e-6)
        # and faiss agrees with exact cosine on the float16 vectors
        exact = queries @ vectors.astype(np.float32).T
        np.testing.assert_allclose(scores, np.take_along_axis(exact, ids, axis=1), atol=1e-5)
    scores, ids = index.search(queries[-3:], 1)
    assert ids[:, 0].tolist() == [0, 150, 250]


def test_clip_retrieval_index_output_folder_opens_without_embeddings(clip_retrieval_bin, embeddings_folder, tmp_path):
    """clip-retrieval's usual run writes image.index + metadata/ to a folder of its own."""
    import faiss

    from audit.index import ClipIndex

    folder, images, _, meta = embeddings_folder
    out = tmp_path / "clip-retrieval-index"
    run_clip_retrieval_index(clip_retrieval_bin, folder, out, copy_metadata=True)
    assert not (out / "img_emb").exists()
    index = ClipIndex.open(out)
    assert (index.n, index.dim, index.model_key) == (len(meta), DIM, None)
    assert index.metadata()["caption"].tolist() == meta["caption"].tolist()
    # the Flat index autofaiss picks for 300 rows gives the vectors back
    np.testing.assert_allclose(index.image_embeddings(), images.astype(np.float32), atol=1e-7)
    queries = normalised(unit_float16(6, np.random.default_rng(2)))
    scores, ids = index.search(queries, 7)
    want_scores, want_ids = faiss.read_index(str(out / "image.index")).search(queries, 7)
    np.testing.assert_array_equal(ids, want_ids)
    np.testing.assert_allclose(scores, want_scores, atol=1e-6)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_backend(proc: subprocess.Popen, url: str, log: Path, timeout: float = 180) -> None:
    import requests

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"clip-retrieval back exited with {proc.returncode}: {log.read_text()[-3000:]}")
        try:
            if requests.get(f"{url}/indices-list", timeout=2).ok:
                return
        except requests.RequestException:
            pass
        time.sleep(0.5)
    pytest.fail(f"clip-retrieval back did not start within {timeout} s: {log.read_text()[-3000:]}")


@pytest.fixture
def clip_back(clip_retrieval_bin, tmp_path):
    """Start ``clip-retrieval back`` (through scripts/clip_retrieval_back.py) over one index folder."""
    procs = []

    def start(index_folder: Path, name: str, columns: str) -> str:
        indices = tmp_path / "indices_paths.json"
        indices.write_text(json.dumps({name: str(index_folder)}))
        port = free_port()
        log = tmp_path / "clip_back.log"
        with open(log, "wb") as out:
            proc = subprocess.Popen(
                [str(clip_retrieval_bin / "python"), str(LAUNCHER), "--indices-paths", str(indices),
                 "--port", str(port), "--columns", columns],
                stdout=out, stderr=subprocess.STDOUT, env=cr_env(), cwd=tmp_path,
            )
        procs.append(proc)
        url = f"http://127.0.0.1:{port}"
        wait_for_backend(proc, url, log)
        return url

    yield start
    for proc in procs:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def assert_same_neighbours(scores_a, ids_a, scores_b, ids_b, atol=1e-3, tie=1e-5):
    """Rank by rank the same scores (within ``atol``), and the same ids except where two
    neighbours tie (exact duplicates, e.g. the planted iconic copies), whose order faiss
    leaves open."""
    np.testing.assert_allclose(scores_a, scores_b, atol=atol)
    for sa, ia, ib in zip(scores_a, ids_a, ids_b):
        for rank, score in enumerate(sa):
            tied = np.abs(sa - score) <= tie
            if tied.sum() == 1:
                assert ia[rank] == ib[rank], (rank, ia, ib)
            elif not tied[-1]:  # a tie group inside the top k: the same rows in any order
                assert set(ia[tied]) == set(ib[tied]), (rank, ia, ib)


def test_clip_retrieval_back_serves_our_index_like_local_search(clip_back, tmp_path):
    from audit.index import build_index
    from audit.index.remote import ClipRetrievalClient
    from bench.features import get_extractor
    from bench.world import render_row

    extractor = get_extractor(CLIP_SPEC)
    index = build_index("shapes-laion:300", tmp_path / "shapes-index", extractor, progress=False)
    meta = index.metadata()
    assert index.n == len(meta) == 300 and index.model_key == extractor.key

    url = clip_back(index.folder, "shapes-300", "key,caption,url,dup_group")
    client = ClipRetrievalClient(url, "shapes-300", timeout=30, retries=2, backoff=0.5,
                                 cache_dir=tmp_path / "remote-cache")
    assert client.indices() == ["shapes-300"]

    # queries: fresh renders of indexed rows (iconic duplicates among them) and indexed embeddings
    iconic = meta.index[meta["dup_group"] >= 0][:3].tolist()
    assert iconic, "shapes-laion:300 keeps the iconic duplicate groups"
    rows = sorted(set(iconic + [0, 17, 123, 299]))
    queries = np.concatenate([extractor([render_row(meta.loc[r]) for r in rows]),
                              normalised(index.image_embeddings()[[5, 250]])])
    k = 8
    local_scores, local_ids = index.search(queries, k, query_key=extractor.key)
    remote = client.search(queries, k, progress=False)
    assert_same_neighbours(local_scores, local_ids, remote.scores, remote.ids)
    # a render of an indexed row finds that row (or an identical copy of it) first
    dup = meta["dup_group"].to_numpy()
    for row, top, score in zip(rows, remote.ids[: len(rows), 0], remote.scores[: len(rows), 0]):
        assert top == row or (dup[row] >= 0 and dup[top] == dup[row]), (row, top)
        assert score > 0.99
    assert [[m["key"] for m in ms] for ms in remote.metadata] == [meta["key"].to_numpy()[ids].tolist()
                                                                  for ids in remote.ids]
    assert client.n_requests == len(queries)

    # the back's own CLIP (loaded by the launcher from bench/models/builtin/shapes-clip) embeds
    # captions like our extractor does
    captions = meta["caption"].iloc[[0, 17, 123]].tolist()
    text_queries, _ = extractor.encode_text(captions)
    local_scores, local_ids = index.search(normalised(text_queries), 5, query_key=extractor.key)
    remote_text = client.search_text(captions, 5, progress=False)
    assert_same_neighbours(local_scores, local_ids, remote_text.scores, remote_text.ids)

    # answers are cached: asking again sends nothing
    again = ClipRetrievalClient(url, "shapes-300", cache_dir=tmp_path / "remote-cache")
    np.testing.assert_array_equal(again.search(queries, k, progress=False).ids, remote.ids)
    assert again.n_requests == 0
