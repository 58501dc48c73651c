"""The memorization audit against a clip-retrieval backend (``--backend URL --index-name NAME``).

A fake backend (http.server on 127.0.0.1 in a thread) answers ``/knn-service`` the way
``clip_retrieval/clip_back.py`` does, from exact search in a small local shapes-laion:300
index built with the repo's own ``build_index``; its rows point at their images by
``image_path`` (even ids, PNG files) or ``url`` (odd ids, served by the same fake).
So the remote path must give the local path's table row for row.  The last test runs
the real ``clip-retrieval back`` through the interop tests' fixture (slow; skipped
without ``make clip-retrieval-env`` outside CI).
"""

from __future__ import annotations

import base64
import io
import json
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

import audit.index.remote as remote
from audit.probes.memorization.run import DEFAULT_POOL, audit_memorization
from audit.index.remote import ClipRetrievalClient, RemoteSearchResult
from audit.index.remote_index import RemoteClipIndex
from bench.errors import UserError
from conftest import run_cli

# The real-backend fixture lives with the other clip-retrieval interop tests (same folder).
from test_clip_retrieval_interop import clip_back, clip_retrieval_bin  # noqa: F401
from test_memorization import index_dir  # noqa: F401  (the same shapes-laion:300 index)

NAME = "shapes-300"
K = 3
N_ICONIC, N_FRESH = 2, 2
N_IMAGES = N_ICONIC + N_FRESH  # distinct images: one query each (identical ones would share a cached answer)
REMOTE_CACHE = Path("audit") / "remote-cache"


def _scene(prompt):
    from bench.world import SceneSpec

    return SceneSpec.from_dict(prompt.to_dict()["spec"])


def _png_bytes(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    return buf.getvalue()


class FakeKnnBackend:
    """clip_back's ``/indices-list`` and ``/knn-service`` over a local ``ClipIndex``, plus ``/image/<id>.png``.

    ``fail_from``: from this ``/knn-service`` request on (0-based count), answer HTTP 500
    with flask_restful's error body, as clip_back does when a query raises.
    """

    def __init__(self, index, image_dir: Path):
        self.index = index
        self.meta = index.metadata()
        self.image_dir = image_dir
        self.knn_requests = 0
        self.image_requests = 0
        self.fail_from: int | None = None
        self.lock = threading.Lock()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                if self.path == "/indices-list":
                    return self._send(200, json.dumps([NAME]).encode())
                if self.path.startswith("/image/") and self.path.endswith(".png"):
                    row = int(self.path[len("/image/"):-len(".png")])
                    with fake.lock:
                        fake.image_requests += 1
                    return self._send(200, _png_bytes(fake.index.load_image(row)), "image/png")
                self._send(404, b'{"message": "not found"}')

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with fake.lock:
                    n = fake.knn_requests
                    fake.knn_requests += 1
                if fake.fail_from is not None and n >= fake.fail_from:
                    return self._send(500, b'{"message": "Internal Server Error"}')
                self._send(200, json.dumps(fake.answer(body)).encode())

            def _send(self, status, data, kind="application/json"):
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", kind)
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)

    def answer(self, body: dict) -> list[dict]:
        assert body["indice_name"] == NAME and body["modality"] == "image" and body["deduplicate"] is False
        query = np.asarray(body["embedding_input"], dtype=np.float32)[None]
        scores, ids = self.index.search(query, body["num_images"])
        out = []
        for score, row in zip(scores[0], ids[0]):
            if row < 0:
                continue
            item = {"id": int(row), "similarity": float(score), "key": str(self.meta["key"].iloc[row]),
                    "caption": str(self.meta["caption"].iloc[row])}
            if row % 2 == 0:
                path = self.image_dir / f"{row}.png"
                with self.lock:
                    if not path.is_file():
                        path.write_bytes(_png_bytes(self.index.load_image(int(row))))
                item["image_path"] = str(path)
            else:
                item["url"] = f"{self.url}/image/{row}.png"
            out.append(item)
        return out


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    """An imported run: exact renders of 2 iconic scenes (copies) and of 2 fresh scenes (not copies)."""
    from bench.importer import import_images
    from bench.prompts import load_prompt_set
    from bench.world import render

    ps = load_prompt_set("shapes-audit").prompts
    iconic = [p for p in ps if p.category == "iconic"][:N_ICONIC]
    fresh = [p for p in ps if p.category == "fresh"][:N_FRESH]
    base = tmp_path_factory.mktemp("memo-remote")
    images = base / "images"
    images.mkdir()
    for p in iconic + fresh:
        render(_scene(p)).save(images / f"{p.id}_0.png")
    import_images(str(images), "shapes-audit", "renders", str(base / "run"))
    return base / "run"


@pytest.fixture(scope="module")
def local(run_dir, index_dir):
    """The local-index audit (the reference): its result and its memorization.parquet as read back."""
    result = audit_memorization(run_dir, index_dir, k=K, progress=False)
    return result, pd.read_parquet(run_dir / "audit" / "memorization.parquet")


@pytest.fixture(scope="module")
def backend(index_dir, tmp_path_factory):
    from audit.index import ClipIndex

    fake = FakeKnnBackend(ClipIndex.open(index_dir), tmp_path_factory.mktemp("backend-images"))
    fake.thread.start()
    yield fake
    fake.server.shutdown()
    fake.server.server_close()


def _outputs(run: Path) -> dict[str, bytes]:
    """Every audit output file of a run (not the answer cache), to check a failed audit lost nothing."""
    files = [run / "summary.json", *sorted((run / "audit").glob("*.parquet")),
             *sorted((run / "audit" / "neighbours").glob("*.png"))]
    return {str(p.relative_to(run)): p.read_bytes() for p in files}


def _one_line_error(result) -> str:
    assert result.returncode == 2, (result.stdout, result.stderr)
    err = result.stderr.strip()
    assert err.startswith("error: ") and "\n" not in err and "Traceback" not in err, err
    return err


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_cli_backend_gives_the_local_copies_and_verdicts(run_dir, local, backend):
    result, local_table = local
    assert 0 < result.summary["n_copies"] < N_IMAGES  # copies and non-copies: a comparison that can fail
    before = backend.knn_requests
    cli = run_cli("-m", "audit.cli", "memorization", str(run_dir), "--backend", backend.url, "--index-name", NAME,
                  "--k", str(K), "--timeout", "20", "--retries", "1", "--no-progress")
    assert cli.returncode == 0, cli.stderr
    assert f"{N_ICONIC} of {N_IMAGES} images copy" in cli.stdout
    remote_table = pd.read_parquet(run_dir / "audit" / "memorization.parquet")
    # row for row the local audit: same neighbours, cosines, keys, captions, copy distances, verdicts
    pd.testing.assert_frame_equal(remote_table, local_table)
    assert not remote_table.copy_distance.isna().any()  # every neighbour image was loaded...
    ids = remote_table.neighbour_id
    assert (ids % 2 == 0).any() and (ids % 2 == 1).any()  # ...from image_path (even) and url (odd) rows
    assert backend.image_requests > 0
    summary = json.loads((run_dir / "summary.json").read_text())["memorization"]
    assert backend.url in summary["index"] and NAME in summary["index"]
    assert (summary["n_images"], summary["n_copies"]) == (result.summary["n_images"], result.summary["n_copies"])
    # one query per image went out, and each answer is cached under the run
    assert backend.knn_requests - before == N_IMAGES
    cached = [json.loads(p.read_text()) for p in (run_dir / REMOTE_CACHE).glob("*.json")]
    # each asks for the pool of candidates behind the relative distance; the table keeps the top K
    assert sum(c["request"]["num_images"] == DEFAULT_POOL for c in cached) == N_IMAGES


def test_cached_answers_are_reused(run_dir, local, backend, tmp_path):
    result, _ = local
    runs = []
    for _ in range(2):
        before = backend.knn_requests
        client = ClipRetrievalClient(backend.url, NAME, timeout=20, retries=0, cache_dir=tmp_path / "cache")
        runs.append(audit_memorization(run_dir, RemoteClipIndex(client), k=K, progress=False))
        runs[-1].summary["sent"] = backend.knn_requests - before
    assert [r.summary["sent"] for r in runs] == [N_IMAGES, 0]
    for r in runs:
        pd.testing.assert_frame_equal(r.table, result.table)


def test_backend_failing_mid_run_is_one_line_and_loses_nothing(run_dir, local, backend):
    k, pool = K + 1, DEFAULT_POOL - 1  # a pool of another size: answers not cached yet
    before = _outputs(run_dir)
    assert "audit/memorization.parquet" in before
    backend.fail_from = backend.knn_requests + 2  # two answers, then HTTP 500 for good
    try:
        cli = run_cli("-m", "audit.cli", "memorization", str(run_dir), "--backend", backend.url,
                      "--index-name", NAME, "--k", str(k), "--pool", str(pool), "--retries", "1", "--no-progress")
    finally:
        backend.fail_from = None
    err = _one_line_error(cli)
    assert f"failed on query 3 of {N_IMAGES} after 2 attempt(s): HTTP 500" in err, err
    assert "2 answer(s) kept" in err and "remote-cache" in err
    assert _outputs(run_dir) == before  # the earlier outputs are untouched
    # the two answers are cached: the rerun sends only the three missing queries
    sent = backend.knn_requests
    client = ClipRetrievalClient(backend.url, NAME, retries=0, cache_dir=run_dir / REMOTE_CACHE)
    resumed = audit_memorization(run_dir, RemoteClipIndex(client), k=k, pool=pool, progress=False)
    assert backend.knn_requests - sent == N_IMAGES - 2
    assert resumed.summary["n_copies"] == local[0].summary["n_copies"]


def test_unreachable_backend_is_one_line_error(run_dir, local):
    before = _outputs(run_dir)
    url = f"http://127.0.0.1:{_free_port()}"
    cli = run_cli("-m", "audit.cli", "memorization", str(run_dir), "--backend", url, "--index-name", NAME,
                  "--retries", "0", "--timeout", "2", "--no-progress")
    err = _one_line_error(cli)
    assert f"cannot list the indexes of clip-retrieval backend {url}" in err and "after 1 attempt" in err, err
    assert _outputs(run_dir) == before


def test_backend_checks_before_the_run_is_embedded(backend, monkeypatch):
    """check_query: the index name must be served; an unreachable backend is retried with backoff."""
    with pytest.raises(UserError, match=r"serves no index named 'nope' \(it serves: shapes-300\)"):
        RemoteClipIndex(ClipRetrievalClient(backend.url, "nope")).check_query(None, 128)
    RemoteClipIndex(ClipRetrievalClient(backend.url, NAME)).check_query(None, 128)
    delays = []
    monkeypatch.setattr(remote, "_sleep", delays.append)
    dead = RemoteClipIndex(ClipRetrievalClient(f"http://127.0.0.1:{_free_port()}", NAME, timeout=2, retries=2))
    with pytest.raises(UserError, match="after 3 attempt"):
        dead.check_query(None, 128)
    assert delays == [1.0, 2.0]


def test_cli_needs_exactly_one_index(run_dir, index_dir, capsys):
    from audit.cli import main

    cases = [
        ([], "no index given"),
        (["--index", str(index_dir), "--backend", "http://127.0.0.1:1"], "not both"),
        (["--backend", "http://127.0.0.1:1"], "--backend needs --index-name"),
        (["--index", str(index_dir), "--retries", "2"], "--retries only apply to --backend"),
        (["--backend", "ftp://x", "--index-name", NAME], "is not an http(s) url"),
    ]
    for extra, message in cases:
        assert main(["memorization", str(run_dir), "--no-progress", *extra]) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("error: ") and "\n" not in err and message in err, (extra, err)


class StubClient:
    """Answers every query with the given rows (ids 0..n-1), to feed RemoteClipIndex chosen metadata."""

    url, index_name, timeout, retries, backoff = "http://stub.invalid", "stub", 5.0, 0, 0.0

    def __init__(self, metas: list[dict]):
        self.metas = metas

    def search(self, queries, k, *, modality, progress):
        n = len(self.metas)
        return RemoteSearchResult(np.ones((1, n), np.float32), np.arange(n, dtype=np.int64)[None], [self.metas])


def test_neighbour_images_from_the_answer_metadata(backend, index_dir, tmp_path):
    from audit.index import ClipIndex

    local_index = ClipIndex.open(index_dir)
    meta = local_index.metadata()
    want = [local_index.load_image(r) for r in (4, 5, 6)]
    (tmp_path / "four.png").write_bytes(_png_bytes(want[0]))
    jpeg = io.BytesIO()
    Image.fromarray(want[2]).save(jpeg, format="JPEG")
    rows = [
        {"key": "k0", "caption": "c0", "image_path": str(tmp_path / "four.png")},              # a local file
        {"url": f"{backend.url}/image/5.png"},                                                   # fetched
        {"image": base64.b64encode(jpeg.getvalue()).decode(), "image_path": "/nowhere.png"},    # clip_back's base64
        {"spec": meta["spec"].iloc[4], "width": int(meta["width"].iloc[4])},                     # shapes world
        {"url": f"{backend.url}/missing.png"},                                                   # HTTP 404
        {"image_path": str(tmp_path / "gone.png"), "url": "shapes://k5"},                        # nothing loadable
    ]
    idx = RemoteClipIndex(StubClient(rows))
    scores, ids = idx.search(np.ones((1, 4), np.float32), len(rows))
    assert ids.tolist() == [list(range(len(rows)))]
    np.testing.assert_array_equal(idx.load_image(0), want[0])
    np.testing.assert_array_equal(idx.load_image(1), want[1])
    jpeg_img = idx.load_image(2)
    assert jpeg_img.shape == want[2].shape and np.abs(jpeg_img.astype(int) - want[2]).mean() < 8
    np.testing.assert_array_equal(idx.load_image(3), want[0])
    assert idx.load_image(4) is None and idx.load_image(5) is None
    assert idx.load_image(99) is None  # a row no answer returned
    # keys and captions from the answers; the row id and no caption where they are missing
    looked_up = idx.metadata_for([0, 1])
    assert looked_up.to_dict("records") == [{"key": "k0", "caption": "c0"}, {"key": "1", "caption": ""}]


@pytest.mark.slow
def test_real_clip_retrieval_back_gives_the_local_verdicts(clip_back, run_dir, index_dir, local, tmp_path):
    """``clip-retrieval back`` serving the same index (rows rendered from ``spec``) gives the same copies."""
    result, _ = local
    url = clip_back(index_dir, NAME, "key,caption,spec,width")
    client = ClipRetrievalClient(url, NAME, timeout=30, retries=2, backoff=0.5, cache_dir=tmp_path / "cache")
    remote_result = audit_memorization(run_dir, RemoteClipIndex(client), k=K, progress=False)
    per_image = lambda t: t.groupby("image_id")["is_copy"].any()  # noqa: E731
    pd.testing.assert_series_equal(per_image(remote_result.table), per_image(result.table))
    top1 = lambda t: t[t["rank"] == 0].set_index("image_id")  # noqa: E731
    # exact duplicates tie, and faiss may order a tie differently: compare scores, not ids
    np.testing.assert_allclose(top1(remote_result.table).clip_cosine, top1(result.table).clip_cosine, atol=1e-3)
    np.testing.assert_allclose(top1(remote_result.table).copy_distance, top1(result.table).copy_distance, atol=1e-6)
    assert remote_result.summary["n_copies"] == result.summary["n_copies"]
