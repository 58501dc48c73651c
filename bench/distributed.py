"""Many processes on torch.distributed, through Accelerate's ``PartialState`` (docs/scale.md).

``setup(device)`` returns the process group this process belongs to: a plain
single process when no launcher started it, or Accelerate's ``PartialState``
when ``torchrun`` / ``accelerate launch`` / ``srun torchrun`` did.  Generation
and feature extraction split their fixed batches with
``PartialState.split_between_processes`` (diffusers' "Distributed inference"
recipe), so N processes compute exactly the batches one process computes and
the files are byte for byte the same.

Launches that would silently do the wrong thing are refused with one line:

* ``accelerate launch --num_processes N`` on a machine without GPUs runs its
  simple launcher, which starts ONE process (the request is visible only as
  ``MASTER_ADDR`` in its environment);
* a state whose ``num_processes`` differs from torchrun's ``WORLD_SIZE`` (e.g.
  a default ``PartialState()`` made on a CPU-only machine before us: every rank
  would think it is alone and make every image).

Errors before the work starts are agreed between ranks (``sync`` / ``fail``):
every rank raises, the lowest rank that had the error prints it and the others
raise a ``quiet`` copy, so a refusal is one ``error:`` line, not one per rank.
"""

from __future__ import annotations

import logging
import os
from contextlib import contextmanager
from typing import Iterator, Sequence

from bench.errors import UserError

log = logging.getLogger("t2i_audit")

CPU_LAUNCH = "torchrun --nproc_per_node N -m bench.cli"
GPU_LAUNCH = "accelerate launch --num_processes N -m bench.cli"
#: Process-count variables of MPI launchers (Accelerate's MULTI_CPU reads them too).
_MPI_SIZE_VARS = ("PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "MV2_COMM_WORLD_SIZE")

_current: "Processes | None" = None


def env_rank() -> int:
    """This process's global rank as the launcher set it (0 when not launched); no torch import."""
    for name in ("RANK", "PMI_RANK", "OMPI_COMM_WORLD_RANK", "MV2_COMM_WORLD_RANK"):
        value = os.environ.get(name, "")
        if value.isdigit():
            return int(value)
    return 0


def env_world_size() -> int:
    """The number of processes the launcher started (1 when not launched)."""
    for name in ("WORLD_SIZE", *_MPI_SIZE_VARS):
        value = os.environ.get(name, "")
        if value.isdigit():
            return int(value)
    return 1


def launched() -> bool:
    """Started by torchrun / accelerate's multi-process launchers / MPI (even with one process)."""
    return "LOCAL_RANK" in os.environ or "WORLD_SIZE" in os.environ or any(v in os.environ for v in _MPI_SIZE_VARS)


class Processes:
    """The processes of one run: ``rank``, ``num_processes``, ``is_main`` and the few collectives used.

    ``state`` is Accelerate's ``PartialState`` in a launched run, None for a plain single process.
    """

    def __init__(self, state=None):
        self.state = state
        self.num_processes = state.num_processes if state is not None else 1
        self.rank = state.process_index if state is not None else 0
        self.local_rank = state.local_process_index if state is not None else 0
        self.device = str(state.device) if state is not None else None
        self._synced = False

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def multi(self) -> bool:
        return self.num_processes > 1

    def __repr__(self) -> str:
        return f"Processes(rank={self.rank}, num_processes={self.num_processes})"

    # -- work ------------------------------------------------------------------------------------
    @contextmanager
    def split(self, items: Sequence) -> Iterator[list]:
        """This rank's contiguous share of ``items`` (Accelerate's ``split_between_processes``)."""
        if not self.multi:
            yield list(items)
            return
        with self.state.split_between_processes(list(items)) as mine:
            yield list(mine)

    def gather(self, items: list) -> list:
        """Every rank's ``items`` concatenated in rank order, on every rank (Accelerate's ``gather_object``)."""
        if not self.multi:
            return list(items)
        from accelerate.utils import gather_object

        return list(gather_object(list(items)))

    def wait(self) -> None:
        if self.multi:
            self.state.wait_for_everyone()

    # -- errors before the work ---------------------------------------------------------------------
    def sync(self, error: UserError | None = None) -> None:
        """All ranks meet here once, each with its error or None; if any rank had one, every rank raises.

        The lowest rank with an error raises it as it is (and prints it); the others raise a ``quiet``
        copy (exit code 2, nothing printed).  Call it once, before the ranks start writing.
        """
        if self._synced:
            if error is not None:
                raise error
            return
        self._synced = True
        if not self.multi:
            if error is not None:
                raise error
            return
        messages = self.gather([str(error) if error is not None else None])
        failed = [(rank, m) for rank, m in enumerate(messages) if m is not None]
        if not failed:
            return
        first_rank, message = failed[0]
        if error is not None and first_rank == self.rank:
            raise error
        raise quiet_error(message) from error

    def fail(self, error: UserError) -> None:
        """Raise ``error`` after telling the other ranks (through ``sync``) when they have not met yet."""
        self.sync(error)

    @contextmanager
    def quiet_logs(self) -> Iterator[None]:
        """Warnings of the 't2i_audit' logger come from rank 0 only (every rank would say the same)."""
        if self.is_main:
            yield
            return
        logger = logging.getLogger("t2i_audit")
        drop = _BelowError()
        logger.addFilter(drop)
        try:
            yield
        finally:
            logger.removeFilter(drop)


class _BelowError(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno >= logging.ERROR


def quiet_error(message: str) -> UserError:
    """A UserError that the CLI turns into exit code 2 without printing it (another rank prints it)."""
    error = UserError(message)
    error.quiet = True
    return error


def _refuse(message: str) -> None:
    """Raise a launch refusal that every rank reaches on its own: only rank 0 prints it."""
    error = UserError(message)
    if env_rank() != 0:
        error.quiet = True
    raise error


def check_launcher(command: str = "generate") -> None:
    """Refuse ``accelerate launch --num_processes N`` (N > 1) that started a single process (CPU-only machine).

    Accelerate's simple launcher (no GPUs) runs the command once; it sets MASTER_ADDR only when more
    than one process (or machine) was asked for, and never WORLD_SIZE."""
    accelerate_simple = "ACCELERATE_DYNAMO_BACKEND" in os.environ or "ACCELERATE_MIXED_PRECISION" in os.environ
    if accelerate_simple and "MASTER_ADDR" in os.environ and not launched():
        _refuse(
            "accelerate launch was asked for several processes but started one (without GPUs it runs its simple "
            f"launcher: a single process); on CPUs launch with '{CPU_LAUNCH} {command} ...' (docs/scale.md)"
        )


def setup(device: str = "cpu", command: str = "generate") -> Processes:
    """The processes of this run, for work on ``device`` ("cpu", "cuda", "cuda:N", "mps").

    Not launched: a single process (no process group).  Launched by torchrun / accelerate launch /
    MPI: Accelerate's ``PartialState`` (gloo on CPU, nccl on CUDA), checked against the launcher's
    process count.  The state is kept for the process (``current``) so that feature extraction
    called later in the same command shards the same way.
    """
    global _current
    check_launcher(command)
    if not launched():
        return Processes()
    from accelerate import PartialState

    cpu = device.split(":")[0] == "cpu" or os.environ.get("ACCELERATE_USE_CPU", "").lower() in ("1", "true", "yes")
    state = PartialState(cpu=cpu)
    world = env_world_size()
    if state.num_processes != world:
        _refuse(
            f"the launcher started {world} processes but torch.distributed joins {state.num_processes} "
            f"({state.distributed_type}; a default PartialState() on a machine without GPUs), so each would do "
            f"all the work; on CPUs launch with '{CPU_LAUNCH} {command} ...' (gloo), on GPUs with "
            f"'{GPU_LAUNCH} {command} ...' (docs/scale.md)"
        )
    if state.device.type == "cuda":
        import torch

        local_world = int(os.environ.get("LOCAL_WORLD_SIZE", "0") or 0)
        if local_world > torch.cuda.device_count():
            _refuse(f"{local_world} processes on this node but only {torch.cuda.device_count()} GPU(s); "
                    f"start at most one process per GPU (--nproc_per_node / --num_processes)")
    _current = Processes(state)
    return _current


def current() -> Processes:
    """The processes set up by this command (``setup``), or a single process."""
    return _current if _current is not None else Processes()

