"""The user cache directory (never inside the package) and cached file hashes."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from bench.atomic import atomic_write_text


def cache_dir() -> Path:
    """``$T2I_AUDIT_CACHE`` if set, else the platform's user cache dir."""
    env = os.environ.get("T2I_AUDIT_CACHE")
    if env:
        return Path(env).expanduser()
    import platformdirs

    return Path(platformdirs.user_cache_dir("t2i-audit"))


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def cached_sha256_file(path: Path) -> str:
    """sha256 of a (possibly multi-GB) weight file, remembered by (path, size, mtime).

    Real checkpoints are gigabytes; hashing them on every run would cost seconds
    to minutes, so the digest is cached in the user cache dir.
    """
    path = Path(path).resolve()
    st = path.stat()
    key = f"{path}|{st.st_size}|{st.st_mtime_ns}"
    index_path = cache_dir() / "file-hashes.json"
    try:
        index = json.loads(index_path.read_text())
    except (OSError, ValueError):
        index = {}
    if key not in index:
        index[key] = sha256_file(path)
        try:
            atomic_write_text(index_path, json.dumps(index, indent=0, sort_keys=True))
        except OSError:
            pass  # an unwritable cache only costs time
    return index[key]
