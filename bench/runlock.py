"""The writers' lock of a run directory: one ``t2i-bench generate`` or ``score`` at a time.

``run_lock(run_dir, command)`` takes ``<run>/.run.lock`` (``C.RUN_LOCK``, a
``filelock`` lock: an OS lock that dies with its process, so the lock of a
killed writer is free at once) without waiting, and writes who holds it into
``<run>/.run.lock.pid`` (``C.RUN_LOCK_OWNER``).  A second writer is refused
with one line naming the holder's PID; a PID file left by a dead writer is
simply overwritten by the next one.  Readers (the dashboard, the report) never
take the lock: every file is written atomically, so they see old or new files.

In a multi-process run only rank 0 takes it (``enabled=False`` elsewhere), so
the run never refuses itself.
"""

from __future__ import annotations

import json
import os
import socket
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from bench import contract as C
from bench.atomic import atomic_write_text, pid_alive
from bench.errors import UserError

#: How long a refused writer re-reads the PID file when the holder has not written it yet.
OWNER_WAIT_S = 1.0


@contextmanager
def run_lock(run_dir: str | Path, command: str, enabled: bool = True) -> Iterator[None]:
    """Hold the run's writer lock for the body, or raise UserError naming the holder.

    The run folder is created when missing (the lock lives in it); if this call created it and the
    body left nothing else in it, the folder is removed again on the way out.
    """
    if not enabled:
        yield
        return
    from filelock import FileLock, Timeout

    run_dir = Path(run_dir)
    created = not run_dir.exists()
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(f"cannot write to output directory '{run_dir}': {exc.strerror or exc}; "
                        "choose another --out or fix its permissions") from None
    lock = FileLock(str(run_dir / C.RUN_LOCK), timeout=0)
    try:
        lock.acquire(timeout=0)
    except Timeout:
        raise UserError(refusal(run_dir, command)) from None
    except OSError as exc:  # read-only run: writers fail on their own, with their own message
        if created:
            _remove_if_only_lock(run_dir)
        raise UserError(f"cannot lock run '{run_dir}' ({exc.strerror or exc}): {command} writes into the run "
                        "directory; copy it somewhere writable, or fix its permissions") from None
    owner = run_dir / C.RUN_LOCK_OWNER
    try:
        atomic_write_text(owner, json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "command": command,
                                             "since": time.strftime("%Y-%m-%dT%H:%M:%S%z")}) + "\n")
        yield
    finally:
        owner.unlink(missing_ok=True)
        lock.release()
        if created:
            _remove_if_only_lock(run_dir)


def holder(run_dir: str | Path) -> dict | None:
    """What ``.run.lock.pid`` says about the holder, or None when absent or unreadable."""
    try:
        data = json.loads((Path(run_dir) / C.RUN_LOCK_OWNER).read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) and isinstance(data.get("pid"), int) else None


def refusal(run_dir: Path, command: str) -> str:
    """The one-line refusal of a second writer: who holds the lock (PID, host, command) and the fix."""
    deadline = time.monotonic() + OWNER_WAIT_S
    info = holder(run_dir)
    # The holder writes its PID just after taking the lock, and a dead writer's PID file may still be there:
    # re-read for a moment until the file names a live process (on this host).
    while time.monotonic() < deadline and (info is None or (_here(info) and not pid_alive(info["pid"]))):
        time.sleep(0.05)
        info = holder(run_dir)
    if info is None:
        who = f"another process (its PID is not recorded in {C.RUN_LOCK_OWNER})"
    else:
        where = "" if _here(info) else f" on host {info.get('host')}"
        what = info.get("command") or "a writer"
        who = f"{what} (PID {info['pid']}{where}, since {info.get('since', '?')})"
    return (f"run '{run_dir}' is locked by {who}: one generate or score at a time per run; wait for it to "
            f"finish (or stop it), then run {command} again")


def _here(info: dict) -> bool:
    return info.get("host") in (None, socket.gethostname())


def _remove_if_only_lock(run_dir: Path) -> None:
    """Remove a folder this call created when it holds nothing but the lock files (a refused first run)."""
    try:
        names = {p.name for p in run_dir.iterdir()}
        if names <= {C.RUN_LOCK, C.RUN_LOCK_OWNER}:
            for name in names:
                (run_dir / name).unlink(missing_ok=True)
            run_dir.rmdir()
    except OSError:
        pass
