"""Atomic file writes: write to a temporary name in the same folder, then rename.

A reader (or a resumed run) therefore never sees a partial file; a crash leaves at
most a ``.tmp-<pid>@<host>@*`` file.  The next writer into that folder, whatever
the command, clears the ones whose process is gone (``sweep_dead_writers``, once
per folder and process), so a killed stage's rerun leaves no temporary file;
``remove_stale_temp_files`` clears all of them, for a writer that holds the run's lock.
"""

from __future__ import annotations

import functools
import os
import socket
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

TMP_PREFIX = ".tmp-"

#: (pid, folder) pairs already swept of dead writers' temporary files by this process.
_swept: set[tuple[int, Path]] = set()


def _writer_tag() -> str:
    """``<pid>@<host>@``: who writes a temporary file, so a later writer can tell whether it is still alive."""
    return f"{os.getpid()}@{socket.gethostname()}@"


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, another user's
        return True
    return True


def sweep_dead_writers(folder: Path) -> int:
    """Delete the temporary files in ``folder`` left by writers on this host that are no longer running.

    A live writer's files (another rank, a concurrent audit) and other hosts' files are kept; so are
    names this module did not make.  Returns how many were deleted.
    """
    host = socket.gethostname()
    removed = 0
    for path in folder.glob(TMP_PREFIX + "*@*@*"):
        pid, _, rest = path.name[len(TMP_PREFIX):].partition("@")
        owner_host = rest.partition("@")[0]
        if pid.isdigit() and owner_host == host and int(pid) != os.getpid() and not pid_alive(int(pid)):
            path.unlink(missing_ok=True)
            removed += 1
    return removed


def _sweep_once(folder: Path) -> None:
    key = (os.getpid(), folder.resolve())
    if key not in _swept:
        _swept.add(key)
        sweep_dead_writers(folder)


@functools.lru_cache(maxsize=1)
def _umask() -> int:
    """The process umask, read once on first write (never at import).

    Linux reports it in /proc/self/status; elsewhere reading it means setting it
    with ``os.umask``, which is put straight back.
    """
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextmanager
def atomic_path(target: str | Path) -> Iterator[Path]:
    """Yield a temporary path next to ``target``; rename it onto ``target`` on success."""
    target = Path(target)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        _sweep_once(target.parent)
        fd, tmp = tempfile.mkstemp(prefix=TMP_PREFIX + _writer_tag(), suffix=target.suffix, dir=target.parent)
    except OSError as exc:
        raise _naming(exc, target) from exc
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        # mkstemp makes the file 0600; give the result the mode a plain open() would.
        if tmp_path.is_file():
            os.chmod(tmp_path, 0o666 & ~_umask())
        os.replace(tmp_path, target)
    except OSError as exc:  # disk full, file size limit...: the error names the target, not the temporary file
        raise _naming(exc, target) from exc
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def _naming(exc: OSError, target: Path) -> OSError:
    """``exc`` with ``target`` as its file name when it had none or named a temporary file
    (a failed ``write()`` carries no file name), so the one-line error says which file failed."""
    named_tmp = exc.filename is not None and Path(str(exc.filename)).name.startswith(TMP_PREFIX)
    if exc.errno is None or (exc.filename is not None and not named_tmp):
        return exc
    return type(exc)(exc.errno, exc.strerror or os.strerror(exc.errno), str(target))


def atomic_write_bytes(target: str | Path, data: bytes) -> None:
    with atomic_path(target) as tmp:
        tmp.write_bytes(data)


def atomic_write_text(target: str | Path, text: str) -> None:
    atomic_write_bytes(target, text.encode("utf-8"))


def remove_stale_temp_files(folder: str | Path) -> int:
    """Delete temporary files left by a killed writer; returns how many."""
    folder = Path(folder)
    if not folder.is_dir():
        return 0
    stale = list(folder.glob(TMP_PREFIX + "*"))
    for p in stale:
        p.unlink(missing_ok=True)
    return len(stale)
