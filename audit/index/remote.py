"""Query a remote clip-retrieval backend (``clip-retrieval back``) over HTTP.

clip-retrieval (Beaumont 2021, https://github.com/rom1504/clip-retrieval) serves
LAION-style indexes with ``POST <url>/knn-service``; the LAION-5B index itself was
published this way.  The request body fields are those read by
``clip_retrieval/clip_back.py`` ``KnnService.post``::

    {"embedding_input": [...d floats...], "modality": "image" | "text",
     "num_images": k, "num_result_ids": k, "indice_name": NAME,
     "deduplicate": false, "use_safety_model": false, "use_violence_detector": false,
     "use_mclip": false, "aesthetic_score": "", "aesthetic_weight": "0"}

and the answer is a JSON list, best first, of ``{"id": row, "similarity": cosine,
<metadata columns>...}``.  For a copy audit the backend must return the raw
neighbours, so every option that reorders or drops results is switched off
(``COPY_AUDIT_OPTIONS``): clip-retrieval's own ``ClipClient`` defaults to
aesthetic weighting (score 9, weight 0.5, which moves the query), deduplication
(drops near-identical neighbours, the very copies we look for) and the safety +
violence filters (drop rows).

Each query's answer is cached on disk (one JSON file per query, written
atomically) under a key of the backend url, index name, modality, k, the options
and the sha256 of the float32 query embedding, so a rerun sends only the queries
that have no answer yet.  Network errors, timeouts, HTTP errors and answers that
are not the expected JSON are retried with exponential backoff
(``backoff * 2**attempt`` seconds); after the last retry a ``RemoteQueryError``
(a ``UserError``) names the problem and carries the answers obtained so far in
``.partial``.

    client = ClipRetrievalClient("http://127.0.0.1:1234", "laion5B-L-14", cache_dir="runs/x/audit/remote-cache")
    result = client.search(image_embeddings, k=10)
    result.scores, result.ids, result.metadata      # also unpacks as a 3-tuple
    result.to_frame()                               # one row per (query, rank)
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from pathlib import Path
from typing import Any, NamedTuple, Sequence
from urllib.parse import urlsplit

import numpy as np
import pandas as pd

from bench.atomic import atomic_write_text
from bench.errors import UserError

log = logging.getLogger("t2i_audit")

#: Body options that make the backend return the raw nearest neighbours (see module docstring).
#: ``aesthetic_score: ""`` is how clip_back.py reads "no aesthetic embedding"; weight 0 guards
#: a backend that would apply one anyway.
COPY_AUDIT_OPTIONS: dict[str, Any] = {
    "deduplicate": False,
    "use_safety_model": False,
    "use_violence_detector": False,
    "use_mclip": False,
    "aesthetic_score": "",
    "aesthetic_weight": "0",
}

#: Bumped when the cache file format or key changes, so old answers are not misread.
CACHE_VERSION = 1

#: ``time.sleep``, looked up at call time so that tests can record the backoff delays.
_sleep = time.sleep


class RemoteSearchResult(NamedTuple):
    """Neighbours of each query, best first, padded to k.

    ``scores`` float32 [q, k] cosine similarity (NaN where the backend returned fewer
    than k), ``ids`` int64 [q, k] row ids in the remote index (-1 there), ``metadata``
    one list per query of the metadata dicts the backend returned (its
    ``columns_to_return``; without ``id`` and ``similarity``).
    """

    scores: np.ndarray
    ids: np.ndarray
    metadata: list[list[dict]]

    def to_frame(self) -> pd.DataFrame:
        """One row per (query, rank): ``query, rank, id, similarity`` then the metadata columns."""
        rows = []
        for q, metas in enumerate(self.metadata):
            for rank, meta in enumerate(metas):
                rows.append({"query": q, "rank": rank, "id": int(self.ids[q, rank]),
                             "similarity": float(self.scores[q, rank]), **meta})
        return pd.DataFrame(rows, columns=None if rows else ["query", "rank", "id", "similarity"])


class RemoteQueryError(UserError):
    """A query failed after all retries; ``partial`` holds the answers of the queries before it."""

    def __init__(self, message: str, partial: RemoteSearchResult, n_answered: int):
        super().__init__(message)
        self.partial = partial
        self.n_answered = n_answered


class _BadAnswer(Exception):
    """The backend answered, but not with the JSON list of neighbours we expect."""


class _Failed(Exception):
    """All attempts of one request failed; the message says how the last one failed."""


def parse_answer(payload: Any, k: int) -> list[dict]:
    """Check the decoded JSON of one ``/knn-service`` answer; return its neighbour dicts (at most k)."""
    if isinstance(payload, dict) and "message" in payload:  # flask_restful's error body
        raise _BadAnswer(f"backend error: {payload['message']}")
    if not isinstance(payload, list):
        raise _BadAnswer(f"expected a JSON list of neighbours, got {type(payload).__name__}")
    out = []
    for item in payload[:k]:
        if not isinstance(item, dict) or "id" not in item or "similarity" not in item:
            raise _BadAnswer("a neighbour lacks 'id' or 'similarity'")
        try:
            int(item["id"]), float(item["similarity"])
        except (TypeError, ValueError):
            raise _BadAnswer("a neighbour's 'id' or 'similarity' is not a number") from None
        out.append(item)
    return out


def _normalise_url(url: str) -> str:
    """``http://host:port`` (a trailing ``/knn-service`` or ``/`` is dropped)."""
    url = url.strip().rstrip("/")
    if url.endswith("/knn-service"):
        url = url[: -len("/knn-service")]
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise UserError(f"backend url {url!r} is not an http(s) url: pass e.g. http://127.0.0.1:1234")
    return url


class ClipRetrievalClient:
    """Client of one index served by a clip-retrieval backend.

    ``url`` the backend (``http://host:port``), ``index_name`` one of the names in its
    ``indices_paths.json`` (``GET <url>/indices-list``).  ``timeout`` seconds per
    request (connect and read), ``retries`` extra attempts after a failed one,
    ``backoff`` the first retry delay in seconds (doubled each retry), ``cache_dir``
    where answers are cached (None: no cache).
    """

    def __init__(self, url: str, index_name: str, *, timeout: float = 30.0, retries: int = 3,
                 backoff: float = 1.0, cache_dir: str | Path | None = None):
        if not index_name:
            raise UserError("no index name given: pass the name the backend serves (see <url>/indices-list)")
        if timeout <= 0 or retries < 0 or backoff < 0:
            raise UserError(f"bad retry settings (timeout={timeout}, retries={retries}, backoff={backoff}): "
                            "use timeout > 0, retries >= 0, backoff >= 0")
        self.url = _normalise_url(url)
        self.index_name = index_name
        self.timeout = float(timeout)
        self.retries = int(retries)
        self.backoff = float(backoff)
        self.cache_dir = Path(cache_dir) if cache_dir is not None else None
        self.n_requests = 0  # HTTP requests sent (tests check that cached answers send none)
        self._session = None

    # -- cache -----------------------------------------------------------------------------------
    def cache_key(self, body: dict) -> str:
        """sha256 over url, index, modality, k, options and the query (embedding hash or text)."""
        query = body.get("embedding_input")
        if query is not None:
            query_id = "emb:" + hashlib.sha256(np.asarray(query, dtype="<f4").tobytes()).hexdigest()
        else:
            query_id = "text:" + body["text"]
        fields = {k: v for k, v in body.items() if k not in ("embedding_input", "text")}
        blob = json.dumps({"v": CACHE_VERSION, "url": self.url, "query": query_id, **fields}, sort_keys=True)
        return hashlib.sha256(blob.encode("utf-8")).hexdigest()

    def _cache_file(self, key: str) -> Path | None:
        return self.cache_dir / f"{key}.json" if self.cache_dir is not None else None

    def _read_cache(self, key: str, k: int) -> list[dict] | None:
        path = self._cache_file(key)
        if path is None or not path.is_file():
            return None
        try:
            return parse_answer(json.loads(path.read_text(encoding="utf-8"))["answer"], k)
        except (OSError, ValueError, KeyError, TypeError, _BadAnswer) as e:
            log.warning("ignoring unreadable cached answer %s (%s)", path, e)
            return None

    def _write_cache(self, key: str, body: dict, answer: list[dict]) -> None:
        path = self._cache_file(key)
        if path is None:
            return
        request = {k: v for k, v in body.items() if k != "embedding_input"}
        atomic_write_text(path, json.dumps({"url": self.url, "request": request, "answer": answer}))

    # -- HTTP ------------------------------------------------------------------------------------
    def _post(self, body: dict, k: int) -> list[dict]:
        """POST one query, with retries and exponential backoff; ``_Failed`` after the last attempt."""
        import requests  # imported here: a client that answers from the cache needs no network stack

        if self._session is None:
            self._session = requests.Session()
        last = ""
        for attempt in range(self.retries + 1):
            if attempt:
                _sleep(self.backoff * 2 ** (attempt - 1))
            self.n_requests += 1
            try:
                resp = self._session.post(f"{self.url}/knn-service", json=body, timeout=self.timeout)
                if resp.status_code != 200:
                    detail = resp.text.strip().replace("\n", " ")[:200]
                    raise _BadAnswer(f"HTTP {resp.status_code}{': ' + detail if detail else ''}")
                try:
                    payload = resp.json()
                except ValueError:
                    raise _BadAnswer(f"answer is not JSON: {resp.text[:80]!r}") from None
                return parse_answer(payload, k)
            except requests.Timeout:
                last = f"no answer within {self.timeout:g} s"
            except requests.ConnectionError as e:
                last = f"cannot connect ({type(e).__name__})"
            except requests.RequestException as e:
                last = f"request failed ({type(e).__name__}: {e})"
            except _BadAnswer as e:
                last = str(e)
            log.info("clip-retrieval query to %s failed (attempt %d of %d): %s",
                     self.url, attempt + 1, self.retries + 1, last)
        raise _Failed(last.replace("\n", " "))

    def indices(self, *, retry: bool = True) -> list[str]:
        """The index names the backend serves (``GET <url>/indices-list``), retried with the same
        backoff as queries unless ``retry=False``."""
        import requests

        attempts = self.retries + 1 if retry else 1
        for attempt in range(attempts):
            if attempt:
                _sleep(self.backoff * 2 ** (attempt - 1))
            try:
                resp = requests.get(f"{self.url}/indices-list", timeout=self.timeout)
                resp.raise_for_status()
                names = resp.json()
                break
            except (requests.RequestException, ValueError) as e:
                failure = type(e).__name__
        else:
            raise UserError(f"cannot list the indexes of clip-retrieval backend {self.url} ({failure}) after "
                            f"{attempts} attempt(s) of {self.timeout:g} s at most: check the url and that the "
                            "backend is running")
        if not isinstance(names, list):
            raise UserError(f"{self.url}/indices-list did not return a list: is this a clip-retrieval backend?")
        return [str(n) for n in names]

    def _index_hint(self, failure: str) -> str:
        """When the backend answered with an HTTP error: say so if it serves no index of our name
        (clip_back.py answers an unknown ``indice_name`` with a bare HTTP 500)."""
        if not failure.startswith("HTTP"):
            return ""
        try:
            names = self.indices(retry=False)  # it just answered, so it is up
        except UserError:
            return ""
        if self.index_name in names:
            return ""
        return f" (it serves no index named {self.index_name!r}, only: {', '.join(names) or 'none'})"

    # -- search ----------------------------------------------------------------------------------
    def search(self, queries: np.ndarray, k: int, *, modality: str = "image",
               progress: bool = True) -> RemoteSearchResult:
        """Nearest neighbours of each query embedding (float32 [q, d], L2-normalised) in the
        remote ``modality`` index ("image" or "text"); see ``RemoteSearchResult``."""
        queries = np.asarray(queries, dtype=np.float32)
        if queries.ndim == 1:
            queries = queries[None]
        if queries.ndim != 2 or queries.shape[0] == 0 or not np.isfinite(queries).all():
            raise UserError(f"queries must be a non-empty finite [q, d] array, got shape {queries.shape}")
        bodies = [self._body(k, modality, embedding_input=q.tolist()) for q in queries]
        return self._run(bodies, k, progress)

    def search_text(self, texts: Sequence[str], k: int, *, modality: str = "image",
                    progress: bool = True) -> RemoteSearchResult:
        """Neighbours of captions, embedded by the backend's own CLIP (``text`` in the request)."""
        if isinstance(texts, str) or not texts:
            raise UserError("texts must be a non-empty list of strings")
        return self._run([self._body(k, modality, text=str(t)) for t in texts], k, progress)

    def _body(self, k: int, modality: str, **query) -> dict:
        if modality not in ("image", "text"):
            raise UserError(f"modality must be 'image' or 'text', got {modality!r}")
        if int(k) < 1:
            raise UserError(f"k must be >= 1, got {k}")
        return {**query, "modality": modality, "num_images": int(k), "num_result_ids": int(k),
                "indice_name": self.index_name, **COPY_AUDIT_OPTIONS}

    def _run(self, bodies: list[dict], k: int, progress: bool) -> RemoteSearchResult:
        from tqdm.auto import tqdm

        answers: list[list[dict]] = []
        n_cached = 0
        for i, body in enumerate(tqdm(bodies, desc=f"knn {self.index_name}", unit="query",
                                      disable=not progress or len(bodies) < 2)):
            key = self.cache_key(body)
            answer = self._read_cache(key, k)
            if answer is not None:
                n_cached += 1
            else:
                try:
                    answer = self._post(body, k)
                except _Failed as e:
                    where = f"; they are cached in {self.cache_dir}, rerun to resume" if self.cache_dir else ""
                    raise RemoteQueryError(
                        f"clip-retrieval backend {self.url} (index {self.index_name!r}) failed on query {i + 1} "
                        f"of {len(bodies)} after {self.retries + 1} attempt(s): {e}{self._index_hint(str(e))}; "
                        f"{i} answer(s) kept{where}",
                        partial=_to_result(answers, k), n_answered=i,
                    ) from None
                self._write_cache(key, body, answer)
            answers.append(answer)
        if n_cached:
            log.info("%d of %d clip-retrieval answers came from the cache %s", n_cached, len(bodies), self.cache_dir)
        return _to_result(answers, k)


def _to_result(answers: list[list[dict]], k: int) -> RemoteSearchResult:
    scores = np.full((len(answers), k), np.nan, dtype=np.float32)
    ids = np.full((len(answers), k), -1, dtype=np.int64)
    metadata = []
    for q, answer in enumerate(answers):
        for rank, item in enumerate(answer):
            ids[q, rank] = int(item["id"])
            scores[q, rank] = float(item["similarity"])
        metadata.append([{c: v for c, v in item.items() if c not in ("id", "similarity")} for item in answer])
    return RemoteSearchResult(scores, ids, metadata)
