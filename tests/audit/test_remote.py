"""The clip-retrieval HTTP client against a fake backend on 127.0.0.1 (http.server in a thread).

The fake answers ``POST /knn-service`` the way ``clip_retrieval/clip_back.py`` does: a
JSON list, best first, of {"id", "similarity", <metadata columns>}, computed by exact
inner product over a small seeded set of unit vectors.  Each test can make it fail,
stall or talk nonsense for its first requests.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest

import audit.index.remote as remote
from audit.index.remote import COPY_AUDIT_OPTIONS, ClipRetrievalClient, RemoteQueryError
from bench.errors import UserError

DIM = 16
N = 40


def unit(rows: int, seed: int) -> np.ndarray:
    x = np.random.default_rng(seed).standard_normal((rows, DIM)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


class FakeBackend:
    """A clip-retrieval-like backend; ``behaviour(n)`` decides how request n (0-based) is answered."""

    def __init__(self):
        self.vectors = unit(N, seed=1)
        self.keys = [f"key{i:03d}" for i in range(N)]
        self.bodies: list[dict] = []
        self.times: list[float] = []
        self.behaviour = lambda n: "ok"
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # keep the test output quiet
                pass

            def do_GET(self):
                self._send(200, json.dumps(["shapes"]).encode())

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                n = len(fake.bodies)
                fake.bodies.append(body)
                fake.times.append(time.monotonic())
                action = fake.behaviour(n)
                if action == "slow":
                    time.sleep(1.0)
                if action == "500":
                    return self._send(500, b'{"message": "Internal Server Error"}')
                if action == "garbage":
                    return self._send(200, b"<html>not json</html>")
                if action == "wrong-shape":
                    return self._send(200, b'{"results": 3}')
                self._send(200, json.dumps(fake.answer(body)).encode())

            def _send(self, status, data):
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):  # the client gave up (timeout test)
                    pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)

    def answer(self, body: dict) -> list[dict]:
        query = np.asarray(body["embedding_input"], dtype=np.float32)
        sims = self.vectors @ query
        order = np.argsort(-sims)[: body["num_images"]]
        return [{"id": int(i), "similarity": float(sims[i]), "key": self.keys[i], "caption": f"caption {i}"}
                for i in order]


@pytest.fixture
def backend():
    fake = FakeBackend()
    fake.thread.start()
    yield fake
    fake.server.shutdown()
    fake.server.server_close()


def exact_knn(vectors: np.ndarray, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    sims = queries @ vectors.T
    ids = np.argsort(-sims, axis=1)[:, :k]
    return np.take_along_axis(sims, ids, axis=1), ids


def test_request_body_has_the_copy_audit_safe_options(backend, tmp_path):
    client = ClipRetrievalClient(backend.url, "shapes", cache_dir=tmp_path / "cache")
    queries = unit(2, seed=5)
    client.search(queries, k=3, progress=False)
    assert len(backend.bodies) == 2
    body = backend.bodies[0]
    # the fields clip_back.py's KnnService.post reads, with every result-altering option off
    assert body["modality"] == "image" and body["indice_name"] == "shapes"
    assert body["num_images"] == body["num_result_ids"] == 3
    assert body["deduplicate"] is False
    assert body["use_safety_model"] is False and body["use_violence_detector"] is False
    assert body["aesthetic_score"] == "" and float(body["aesthetic_weight"]) == 0.0
    assert {k: body[k] for k in COPY_AUDIT_OPTIONS} == COPY_AUDIT_OPTIONS
    # the embedding goes over the wire exactly (float32 -> JSON -> float32)
    np.testing.assert_array_equal(np.asarray(body["embedding_input"], dtype=np.float32), queries[0])


def test_search_parses_neighbours_like_exact_knn(backend):
    client = ClipRetrievalClient(backend.url, "shapes")
    queries = unit(5, seed=7)
    result = client.search(queries, k=4, progress=False)
    want_scores, want_ids = exact_knn(backend.vectors, queries, 4)
    np.testing.assert_array_equal(result.ids, want_ids)
    np.testing.assert_allclose(result.scores, want_scores, atol=1e-6)
    assert result.scores.dtype == np.float32 and result.ids.dtype == np.int64
    assert [m["key"] for m in result.metadata[0]] == [backend.keys[i] for i in want_ids[0]]
    assert all("id" not in m and "similarity" not in m for m in result.metadata[0])
    scores, ids, metadata = result  # unpacks like ClipIndex.search plus the metadata
    frame = result.to_frame()
    assert len(frame) == 5 * 4 and list(frame.columns[:4]) == ["query", "rank", "id", "similarity"]
    assert frame.key.tolist()[:4] == [backend.keys[i] for i in want_ids[0]]


def test_fewer_neighbours_than_k_are_padded(backend):
    client = ClipRetrievalClient(backend.url, "shapes")
    result = client.search(unit(1, seed=3), k=N + 5, progress=False)
    assert (result.ids[0, :N] >= 0).all() and (result.ids[0, N:] == -1).all()
    assert np.isnan(result.scores[0, N:]).all() and len(result.metadata[0]) == N


def test_second_call_is_answered_from_the_cache(backend, tmp_path):
    cache = tmp_path / "cache"
    queries = unit(3, seed=11)
    first = ClipRetrievalClient(backend.url, "shapes", cache_dir=cache).search(queries, k=5, progress=False)
    assert len(backend.bodies) == 3 and len(list(cache.glob("*.json"))) == 3

    again = ClipRetrievalClient(backend.url, "shapes", cache_dir=cache)
    second = again.search(queries, k=5, progress=False)
    assert again.n_requests == 0 and len(backend.bodies) == 3
    np.testing.assert_array_equal(second.ids, first.ids)
    np.testing.assert_array_equal(second.scores, first.scores)
    assert second.metadata == first.metadata
    # another k, index name, backend url or query is another cache entry
    again.search(queries, k=4, progress=False)
    assert again.n_requests == 3
    other = ClipRetrievalClient(backend.url + "/knn-service", "other-index", cache_dir=cache)
    assert other.cache_key(backend.bodies[0]) == again.cache_key(backend.bodies[0])  # same url, same body
    body = dict(backend.bodies[0], indice_name="other-index")
    assert other.cache_key(body) != again.cache_key(backend.bodies[0])
    assert not list(cache.glob(".tmp-*"))


def test_retries_with_exponential_backoff_then_success(backend, monkeypatch):
    delays = []
    monkeypatch.setattr(remote, "_sleep", lambda s: (delays.append(s), time.sleep(s)))
    backend.behaviour = lambda n: "500" if n < 2 else ("garbage" if n == 2 else "ok")
    client = ClipRetrievalClient(backend.url, "shapes", retries=3, backoff=0.05)
    queries = unit(1, seed=2)
    result = client.search(queries, k=3, progress=False)
    assert client.n_requests == 4 == len(backend.bodies)
    assert delays == [0.05, 0.1, 0.2]  # backoff * 2**attempt
    gaps = np.diff(backend.times)
    assert (gaps >= np.array(delays) * 0.9).all()
    np.testing.assert_array_equal(result.ids, exact_knn(backend.vectors, queries, 3)[1])


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_unreachable_backend_is_one_line_error_after_retries(monkeypatch):
    delays = []
    monkeypatch.setattr(remote, "_sleep", delays.append)
    client = ClipRetrievalClient(f"http://127.0.0.1:{free_port()}", "shapes", retries=2, backoff=0.5, timeout=2)
    with pytest.raises(UserError) as err:
        client.search(unit(2, seed=0), k=3, progress=False)
    message = str(err.value)
    assert "\n" not in message and "cannot connect" in message and "3 attempt(s)" in message
    assert client.n_requests == 3 and delays == [0.5, 1.0]
    assert isinstance(err.value, RemoteQueryError) and err.value.n_answered == 0


def test_slow_backend_times_out(backend, monkeypatch):
    monkeypatch.setattr(remote, "_sleep", lambda s: None)
    backend.behaviour = lambda n: "slow"
    client = ClipRetrievalClient(backend.url, "shapes", retries=1, timeout=0.2)
    start = time.monotonic()
    with pytest.raises(RemoteQueryError, match="no answer within 0.2 s"):
        client.search(unit(1, seed=0), k=3, progress=False)
    assert time.monotonic() - start < 1.5 and client.n_requests == 2


@pytest.mark.parametrize("action, reason", [("garbage", "not JSON"), ("wrong-shape", "expected a JSON list"),
                                            ("500", "HTTP 500")])
def test_garbage_answers_are_a_clear_error(backend, monkeypatch, action, reason):
    monkeypatch.setattr(remote, "_sleep", lambda s: None)
    backend.behaviour = lambda n: action
    client = ClipRetrievalClient(backend.url, "shapes", retries=2)
    with pytest.raises(RemoteQueryError, match=reason) as err:
        client.search(unit(1, seed=0), k=3, progress=False)
    assert "\n" not in str(err.value) and client.n_requests == 3


def test_partial_results_are_kept_and_cached(backend, tmp_path, monkeypatch):
    monkeypatch.setattr(remote, "_sleep", lambda s: None)
    cache = tmp_path / "cache"
    queries = unit(5, seed=13)
    backend.behaviour = lambda n: "ok" if n < 3 else "500"  # the backend dies after 3 answers
    client = ClipRetrievalClient(backend.url, "shapes", retries=1, cache_dir=cache)
    with pytest.raises(RemoteQueryError) as err:
        client.search(queries, k=4, progress=False)
    assert "query 4 of 5" in str(err.value) and "3 answer(s) kept" in str(err.value) and str(cache) in str(err.value)
    partial = err.value.partial
    want_scores, want_ids = exact_knn(backend.vectors, queries, 4)
    assert err.value.n_answered == 3 and partial.ids.shape == (3, 4)
    np.testing.assert_array_equal(partial.ids, want_ids[:3])
    assert len(list(cache.glob("*.json"))) == 3

    # the backend is back: a rerun sends only the two missing queries
    backend.behaviour = lambda n: "ok"
    n_before = len(backend.bodies)
    rerun = ClipRetrievalClient(backend.url, "shapes", cache_dir=cache)
    result = rerun.search(queries, k=4, progress=False)
    assert rerun.n_requests == 2 == len(backend.bodies) - n_before
    np.testing.assert_array_equal(result.ids, want_ids)


def test_corrupt_cache_entry_is_refetched(backend, tmp_path):
    cache = tmp_path / "cache"
    queries = unit(1, seed=4)
    ClipRetrievalClient(backend.url, "shapes", cache_dir=cache).search(queries, k=2, progress=False)
    (entry,) = cache.glob("*.json")
    entry.write_text("{truncated")
    client = ClipRetrievalClient(backend.url, "shapes", cache_dir=cache)
    result = client.search(queries, k=2, progress=False)
    assert client.n_requests == 1
    np.testing.assert_array_equal(result.ids, exact_knn(backend.vectors, queries, 2)[1])
    assert json.loads(entry.read_text())["answer"][0]["id"] == result.ids[0, 0]


def test_indices_list(backend):
    assert ClipRetrievalClient(backend.url, "shapes").indices() == ["shapes"]


def test_unknown_index_name_is_named_in_the_error(backend, monkeypatch):
    monkeypatch.setattr(remote, "_sleep", lambda s: None)
    backend.behaviour = lambda n: "500"  # what clip_back.py answers for an unknown indice_name
    client = ClipRetrievalClient(backend.url, "laion5B", retries=0)
    with pytest.raises(RemoteQueryError, match="serves no index named 'laion5B', only: shapes"):
        client.search(unit(1, seed=0), k=2, progress=False)


@pytest.mark.parametrize("kwargs, match", [
    (dict(url="ftp://host", index_name="x"), "not an http"),
    (dict(url="http://127.0.0.1:1", index_name=""), "no index name"),
    (dict(url="http://127.0.0.1:1", index_name="x", retries=-1), "bad retry settings"),
])
def test_bad_settings(kwargs, match):
    with pytest.raises(UserError, match=match):
        ClipRetrievalClient(**kwargs)


def test_bad_queries(backend):
    client = ClipRetrievalClient(backend.url, "shapes")
    with pytest.raises(UserError, match="non-empty finite"):
        client.search(np.full((1, DIM), np.nan, dtype=np.float32), k=2)
    with pytest.raises(UserError, match="k must be"):
        client.search(unit(1, seed=0), k=0)
    with pytest.raises(UserError, match="modality"):
        client.search(unit(1, seed=0), k=2, modality="audio")
    assert client.n_requests == 0
