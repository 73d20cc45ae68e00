"""Scale-out through ``torch.distributed``: the process group torchrun describes, and an in-order gather.

``torchrun --nproc_per_node=K -m gammalimit ...`` starts K processes with
``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR`` and ``MASTER_PORT``
in their environment; :func:`init_from_env` joins them into one process group
(gloo on the CPU; NCCL for CUDA tensors, with gloo beside it for the CPU
objects the estimates gather). Nothing here is a scheme of its own: every
collective is ``torch.distributed``'s.

While a group of more than one process is active, the library shards its
work by itself:

- :func:`gammalimit.estimate.stream_estimate` (hence ``discrete_loss``): the
  independent pair sources of :func:`gammalimit.sampling.iter_blocks`, source
  ``i`` on rank ``i % K``; each rank reduces its blocks to per-block partial
  statistics, :func:`gather_in_order` collects them on every rank, and every
  rank merges them in block order, the same merge a single process makes, so
  the result is that of one process bit for bit;
- :class:`gammalimit.train.Trainer`: ``DistributedDataParallel`` over the
  step's global batch; rank 0 alone writes the run folder.

Every rank must then call the same library functions in the same order (they
are collectives).
"""

from __future__ import annotations

import os
import pickle
from contextlib import contextmanager

import torch
import torch.distributed as dist

#: The environment variable torchrun sets to the number of processes.
WORLD_SIZE_VAR = "WORLD_SIZE"

_local = [False]  # inside local(): act as a single process


def requested() -> bool:
    """Whether the environment (torchrun's) asks for more than one process."""
    try:
        return int(os.environ.get(WORLD_SIZE_VAR, "1")) > 1
    except ValueError:
        raise ValueError(f"{WORLD_SIZE_VAR} must be an integer number of processes, "
                         f"got {os.environ[WORLD_SIZE_VAR]!r}") from None


def init_from_env(device: str = "cpu") -> bool:
    """Join the process group torchrun describes (``env://``); return whether one of more than one
    process is active. A no-op without ``WORLD_SIZE > 1`` or when a group is already initialised.

    ``device="cuda"``: NCCL for CUDA tensors (each process on ``cuda:LOCAL_RANK``) and gloo for CPU
    tensors; otherwise gloo alone.
    """
    if not requested() or not dist.is_available():
        return False
    if not dist.is_initialized():
        if str(device).startswith("cuda") and torch.cuda.is_available():
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
            dist.init_process_group(backend="cpu:gloo,cuda:nccl")
        else:
            dist.init_process_group(backend="gloo")
    return active()


def destroy() -> None:
    """Leave the process group, if one is initialised."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def active() -> bool:
    """A process group of more than one process is initialised (and not suspended by :func:`local`)."""
    return (not _local[0]) and dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def rank() -> int:
    """This process's rank (0 without a group)."""
    return dist.get_rank() if active() else 0


def world_size() -> int:
    """The number of processes K (1 without a group)."""
    return dist.get_world_size() if active() else 1


def is_main() -> bool:
    """Rank 0: the process that prints and writes files."""
    return rank() == 0


@contextmanager
def local():
    """Code that one rank runs alone (nothing inside shards or waits for the other ranks)."""
    before = _local[0]
    _local[0] = True
    try:
        yield
    finally:
        _local[0] = before


def owns(source: int) -> bool:
    """Whether this rank works on independent source ``source`` (source ``i`` on rank ``i % K``)."""
    return source % world_size() == rank()


def gather_in_order(items: list) -> list:
    """Every rank's ``(index, value)`` items, on every rank, sorted by ``index`` (the values only).

    ``torch.distributed.all_gather_object``: values travel pickled, so float tensors arrive with
    every bit. Without a group: the items' values, sorted.
    """
    if active():
        parts = [None] * world_size()
        dist.all_gather_object(parts, items)
        items = [item for part in parts for item in part]
    return [value for _, value in sorted(items, key=lambda item: item[0])]


def all_mean(values: torch.Tensor) -> torch.Tensor:
    """The mean over ranks of ``values`` (a detached copy; the values themselves without a group)."""
    if not active():
        return values
    out = values.detach().clone()
    dist.all_reduce(out, op=dist.ReduceOp.SUM)
    return out / world_size()


def barrier() -> None:
    """Wait for every rank (nothing without a group)."""
    if active():
        dist.barrier()


def from_main(fn):
    """``fn()`` on rank 0 alone; its exception, if any, raised on every rank (so that all stop together).

    On the other ranks the exception is rank 0's, marked ``from_main = True``: the command line prints it
    once, from rank 0. Returns ``fn()``'s value on rank 0, ``None`` elsewhere.
    """
    if not active():
        return fn()
    value, error = None, None
    if is_main():
        try:
            value = fn()
        except Exception as err:  # noqa: BLE001 - passed on to every rank, then raised
            error = err
    if error is not None:
        try:
            pickle.loads(pickle.dumps(error))
        except Exception:  # noqa: BLE001 - an exception that does not travel: its type and message do
            error = (OSError if isinstance(error, OSError) else ValueError)(f"{type(error).__name__}: {error}")
    box = [error]
    dist.broadcast_object_list(box, src=0)
    if box[0] is not None:
        if not is_main():
            box[0].from_main = True
        raise box[0]
    return value


def wrap(model: torch.nn.Module, device: torch.device) -> torch.nn.Module:
    """``DistributedDataParallel(model)`` while a group is active (gradients averaged over ranks,
    rank 0's weights broadcast at the start), else ``model`` itself."""
    if not active():
        return model
    from torch.nn.parallel import DistributedDataParallel

    ids = None
    if device.type == "cuda":  # "cuda" alone means this process's GPU, cuda:LOCAL_RANK (init_from_env)
        ids = [device.index if device.index is not None else torch.cuda.current_device()]
    return DistributedDataParallel(model, device_ids=ids)
