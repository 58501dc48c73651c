"""A remote clip-retrieval backend seen through the ``ClipIndex`` interface the memorization audit uses.

``audit.probes.memorization.run.audit_memorization`` needs five things of an index: ``n``
(rows), ``folder`` (a label for messages and ``summary.json``), ``check_query``
(refuse a query it cannot answer, before the run is embedded), ``search``
(scores and row ids, best first, padded with -1 / NaN) and ``load_image`` (the
neighbour image), plus the keys and captions of the retrieved rows.
``RemoteClipIndex`` gives them to an ``audit.index.remote.ClipRetrievalClient``:

* ``n`` is ``None``: a backend does not say how many rows it serves, so the audit
  asks for ``k`` neighbours and takes what comes back (fewer rows come back
  as id -1, as from a small local index).
* ``search`` sends one ``/knn-service`` query per embedding with the copy-audit
  options of ``audit.index.remote`` (no aesthetic weighting, no deduplication, no safety
  filters) and keeps the metadata of every returned row, which is all we will
  ever know about it: ``metadata_for`` reads the keys and captions from there.
* ``load_image`` loads a neighbour from that metadata, trying in turn
  ``image_path`` (a file this machine can read: the backend and the audit share a
  disk, or the images were copied; a relative path is taken from the current
  directory, as clip_back itself does), ``spec`` (a row of the built-in shapes
  world, rendered exactly, like ``ClipIndex.load_image``), ``url`` (http(s),
  fetched with ``requests`` under the client's timeout) and last ``image``, the
  base64 JPEG clip_back adds when it can read ``image_path`` itself (last because
  JPEG re-encoding moves the pixels a little).  ``None`` when none works: the
  audit counts such neighbours as missing (NaN distance, never a copy).

Which CLIP made the backend's index cannot be checked.  A clip-retrieval answer
carries ids, similarities and metadata columns, never the embeddings, and
``/indices-list`` only names the indexes, so neither the model nor even the
dimension is known before a query is sent.  The user must pass the audit the
``--clip`` that built the backend's index; a query of another dimension makes
clip_back's faiss search raise, which it answers with a bare HTTP 500, and the
error message then says to check ``--clip``.  A CLIP of the same dimension but
other weights cannot be detected at all: its cosines are meaningless.

    client = ClipRetrievalClient("http://127.0.0.1:1234", "laion5B-L-14", cache_dir="runs/x/audit/remote-cache")
    audit_memorization("runs/x", RemoteClipIndex(client), clip="ViT-L-14@openai")
"""

from __future__ import annotations

import base64
import binascii
import logging
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from audit.index.remote import ClipRetrievalClient, RemoteQueryError
from bench.errors import UserError

log = logging.getLogger("t2i_audit")


class RemoteClipIndex:
    """``ClipIndex``'s query interface over one index of a clip-retrieval backend (see the module docstring)."""

    #: Rows served: unknown (clip-retrieval does not say).  ``audit_memorization`` then asks for k as is.
    n: int | None = None

    def __init__(self, client: ClipRetrievalClient, *, progress: bool = False):
        self.client = client
        self.progress = progress
        self.model_key: str | None = None  # unknown: see the module docstring
        self.folder = f"{client.url} (index {client.index_name})"  # what messages and summary.json name
        self._metadata: dict[int, dict[str, Any]] = {}
        self._query_dim: int | None = None
        self._checked = False

    # ------------------------------------------------------------------ query

    def check_query(self, query_key: str | None, dim: int) -> None:
        """Check, before the run is embedded, that the backend answers and serves our index name.

        ``query_key`` cannot be compared (the backend's CLIP is unknown) and ``dim``
        cannot be checked (answers carry no embeddings); ``dim`` is kept for the
        error message of a failed search.  ``/indices-list`` is asked with the
        client's timeout and retry policy, so an unreachable backend fails here,
        in one line, instead of after the features are computed.
        """
        self._query_dim = int(dim)
        if self._checked:
            return
        names = self.client.indices()
        if self.client.index_name not in names:
            raise UserError(f"clip-retrieval backend {self.client.url} serves no index named "
                            f"{self.client.index_name!r} (it serves: {', '.join(names) or 'none'}); "
                            f"pass one of them as --index-name")
        self._checked = True

    def search(self, queries, k, *, modality: str = "image", query_key: str | None = None
               ) -> tuple[np.ndarray, np.ndarray]:
        """(scores float32 [q, k], row ids int64 [q, k]) like ``ClipIndex.search``; -1 / NaN where the
        backend returned fewer than k.  ``query_key`` is accepted for the interface and not checked."""
        try:
            result = self.client.search(queries, int(k), modality=modality, progress=self.progress)
        except RemoteQueryError as e:
            if e.n_answered == 0 and "HTTP 500" in str(e) and self._query_dim is not None:
                raise RemoteQueryError(
                    f"{e} (if every query fails so, check that --clip is the CLIP that built the backend's "
                    f"index: our queries have dimension {self._query_dim})",
                    partial=e.partial, n_answered=e.n_answered) from None
            raise
        for ids, metas in zip(result.ids, result.metadata):
            for row_id, meta in zip(ids, metas):
                self._metadata.setdefault(int(row_id), meta)
        return result.scores, result.ids

    # ------------------------------------------------------------------ rows

    def metadata_for(self, ids) -> pd.DataFrame:
        """``key`` and ``caption`` of rows returned by ``search``, one row per id, in order
        (the row id as key, and no caption, where the backend did not return them)."""
        rows = []
        for i in ids:
            meta = self._metadata.get(int(i), {})
            key, caption = meta.get("key"), meta.get("caption")
            rows.append({"key": str(key) if key not in (None, "") else str(int(i)),
                         "caption": "" if caption is None else str(caption)})
        return pd.DataFrame(rows, columns=["key", "caption"])

    def load_image(self, row_id: int) -> np.ndarray | None:
        """The image of a returned row as HWC uint8 RGB from its metadata, or None (see the module docstring)."""
        from bench.features.images import ImageProblem, load_image, load_image_bytes

        meta = self._metadata.get(int(row_id))
        if meta is None:
            return None
        problems = []
        path = meta.get("image_path")
        if isinstance(path, str) and path:
            p = Path(path).expanduser()
            if p.is_file():
                try:
                    return load_image(p)[0]
                except ImageProblem as e:
                    problems.append(f"{p}: {e}")
        spec = meta.get("spec")
        if isinstance(spec, str) and spec:
            try:
                from bench.world.corpus import render_row

                width = meta.get("width")
                size = int(width) if width is not None and pd.notna(width) else 64
                return np.asarray(render_row({"spec": spec, "width": size}).convert("RGB"))
            except (KeyError, ValueError, TypeError) as e:
                problems.append(f"spec: {e}")
        url = meta.get("url")
        if isinstance(url, str) and url.startswith(("http://", "https://")):
            data = self._fetch(url, problems)
            if data is not None:
                try:
                    return load_image_bytes(data)[0]
                except ImageProblem as e:
                    problems.append(f"{url}: {e}")
        b64 = meta.get("image")
        if isinstance(b64, str) and b64:
            try:
                return load_image_bytes(base64.b64decode(b64, validate=True))[0]
            except (ImageProblem, binascii.Error, ValueError) as e:
                problems.append(f"image (base64): {e}")
        if problems:
            log.info("cannot load the image of remote row %d: %s", row_id, "; ".join(problems))
        return None

    def _fetch(self, url: str, problems: list[str]) -> bytes | None:
        import requests

        try:
            resp = requests.get(url, timeout=self.client.timeout)
        except requests.RequestException as e:
            problems.append(f"{url}: {type(e).__name__}")
            return None
        if resp.status_code != 200:
            problems.append(f"{url}: HTTP {resp.status_code}")
            return None
        return resp.content
