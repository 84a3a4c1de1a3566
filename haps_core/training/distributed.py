"""Data-parallel training across processes (one per GPU, or several on a CPU) via torchrun.

:func:`init_distributed` joins torchrun's process group; the trainer then shards every global
batch (:func:`shard_batch`), averages gradients (:func:`all_reduce_gradients`) and follows rank
0's early stopping (:func:`broadcast_value`). Save checkpoints from rank 0 (:func:`save_on_main`).
"""

# Launch any training entry point with ``torchrun --nproc-per-node N ...`` (and ``--nnodes`` /
# ``--rdzv-endpoint`` for several machines): NCCL on CUDA, gloo on CPU. On every rank:
# - the same shuffle of the training queries each epoch (the trainer's generator is seeded the
#   same everywhere), and `shard_batch` hands each rank a disjoint, deterministic slice of
#   every global batch, so an epoch still visits each query once and a global batch keeps the
#   configured ``batch_size`` (each rank sees about ``batch_size / world_size`` queries);
# - its own forward and backward pass on its slice, then `all_reduce_gradients` averages the
#   gradients, weighted by slice size, so the update equals single-process training on the
#   whole global batch (exactly, for losses that are means over queries; for the masked mean
#   over observed cells, exactly when the slices hold as many observed cells, which full
#   outcome rows give; otherwise a mean of slice means, as with any DDP sampler);
# - early stopping from rank 0's held-out score, broadcast with `broadcast_value`, so every
#   rank stops at the same epoch and restores the same best weights even where floating point
#   differs between devices.
# Gradients are all-reduced explicitly (one flattened bucket per step) rather than by wrapping
# each ensemble member in ``DistributedDataParallel``: members are called through the parent
# router and trained one at a time, the fine-tuned encoder's parameters sit outside the
# members, and the heads are small enough that overlapping communication with the backward
# pass buys nothing.

import contextlib
import datetime
import logging
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torch.distributed as dist

if TYPE_CHECKING:
    from haps_core.model import HAPSRouter

logger = logging.getLogger(__name__)

TORCHRUN_ENV = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")


@dataclass(frozen=True)
class DistContext:
    """Where this process sits in the job."""

    rank: int
    world_size: int
    local_rank: int
    backend: str
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def launched_by_torchrun() -> bool:
    """Whether torchrun (or another launcher setting its variables) started this process."""
    return all(k in os.environ for k in ("RANK", "WORLD_SIZE")) and int(os.environ["WORLD_SIZE"]) > 1


def is_distributed() -> bool:
    """Whether a process group with more than one rank is active."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def get_rank() -> int:
    return dist.get_rank() if is_distributed() else 0


def get_world_size() -> int:
    return dist.get_world_size() if is_distributed() else 1


def is_main_process() -> bool:
    """True on rank 0 and in single-process runs: the process that saves and reports."""
    return get_rank() == 0


def init_distributed(
    device: str = "auto", backend: str | None = None, timeout_s: float = 1800.0
) -> DistContext:
    """Joins the torchrun process group (idempotent) and picks this rank's device.

    Args:
        device: "auto" (CUDA when available), "cpu" or "cuda": the kind of device; on CUDA each
            rank takes ``cuda:LOCAL_RANK``.
        backend: "nccl" or "gloo"; default NCCL on CUDA, gloo on CPU.
        timeout_s: collective timeout; generous because rank 0 may embed a log alone first.

    Without torchrun's environment this is a single-process context (rank 0 of 1), so entry
    points can call it unconditionally.
    """
    use_cuda = device.startswith("cuda") or (device == "auto" and torch.cuda.is_available())
    if device not in ("auto", "cpu") and not device.startswith("cuda"):
        msg = f"`device` must be 'auto', 'cpu' or 'cuda', got {device!r}"
        raise ValueError(msg)
    if use_cuda and not torch.cuda.is_available():
        msg = f"device={device!r} was requested but CUDA is not available"
        raise ValueError(msg)
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    dev = torch.device("cuda", local_rank) if use_cuda else torch.device("cpu")
    chosen = backend or ("nccl" if use_cuda else "gloo")
    if not launched_by_torchrun():
        return DistContext(0, 1, 0, "none", dev)
    if use_cuda:
        if local_rank >= torch.cuda.device_count():
            msg = f"LOCAL_RANK={local_rank} but only {torch.cuda.device_count()} CUDA device(s) are visible"
            raise ValueError(msg)
        torch.cuda.set_device(dev)
    if not dist.is_initialized():
        kwargs: dict[str, Any] = {"backend": chosen, "timeout": datetime.timedelta(seconds=timeout_s)}
        if chosen == "nccl":
            kwargs["device_id"] = dev
        dist.init_process_group(**kwargs)
    ctx = DistContext(dist.get_rank(), dist.get_world_size(), local_rank, chosen, dev)
    logger.info("rank %d of %d (%s) on %s", ctx.rank, ctx.world_size, chosen, dev)
    return ctx


def cleanup() -> None:
    """Leaves the process group (call once at the end of a torchrun job)."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def barrier() -> None:
    if is_distributed():
        dist.barrier()


@contextlib.contextmanager
def main_process_first() -> Iterator[None]:
    """Rank 0 runs the block first (e.g. embeds a log into the on-disk cache), then the others
    run it and read what rank 0 wrote instead of repeating the work."""
    if not is_main_process():
        barrier()
    try:
        yield
    finally:
        if is_main_process():
            barrier()


# ---------------------------------------------------------------------------------------------
# Sharding


def shard_bounds(n: int, rank: int, world_size: int) -> tuple[int, int]:
    """[start, end) of `rank`'s contiguous share of n items: sizes differ by at most one."""
    base, extra = divmod(n, world_size)
    start = rank * base + min(rank, extra)
    return start, start + base + (1 if rank < extra else 0)


def shard_batch(batch: np.ndarray, rank: int | None = None, world_size: int | None = None) -> np.ndarray:
    """This rank's disjoint slice of a global batch (the whole batch in a single process).

    Every rank holds the same global batch (same seeded shuffle), so the slices are disjoint,
    cover the batch, and need no communication.
    """
    rank = get_rank() if rank is None else rank
    world_size = get_world_size() if world_size is None else world_size
    if world_size == 1:
        return batch
    start, end = shard_bounds(len(batch), rank, world_size)
    return batch[start:end]


def shard_queries(
    queries: np.ndarray, epoch: int, seed: int, rank: int | None = None, world_size: int | None = None
) -> np.ndarray:
    """This rank's disjoint share of an epoch's shuffled queries (deterministic in seed, epoch).

    For loops that go over a rank's own share (evaluation, embedding); the trainer shards
    each global batch with :func:`shard_batch` instead, to keep the global batch size.
    """
    gen = torch.Generator().manual_seed(int(seed) * 1_000_003 + int(epoch))
    order = np.asarray(queries)[torch.randperm(len(queries), generator=gen).numpy()]
    return shard_batch(order, rank, world_size)


def gradient_scale(local: int, total: int, world_size: int | None = None) -> float:
    """Factor on a rank's mean loss so that averaging gradients over ranks gives the gradient of
    the mean over the whole global batch: ``world_size * local / total``."""
    world_size = get_world_size() if world_size is None else world_size
    return world_size * local / max(total, 1)


# ---------------------------------------------------------------------------------------------
# Collectives (no-ops in a single process)


def all_reduce_gradients(params: Iterable[torch.nn.Parameter]) -> None:
    """Averages the gradients of `params` over ranks, in one flattened all-reduce.

    A parameter with a gradient on some rank but not on this one (this rank's slice was empty)
    counts as a zero gradient here, so every rank reduces the same tensors in the same order; a
    parameter no rank has a gradient for stays without one, as in a single process (the
    optimiser then leaves it alone).
    """
    if not is_distributed():
        return
    params = [p for p in params if p.requires_grad]
    if not params:
        return
    device = params[0].device
    has_grad = torch.tensor([p.grad is not None for p in params], dtype=torch.float32, device=device)
    dist.all_reduce(has_grad, op=dist.ReduceOp.MAX)
    params = [p for p, flag in zip(params, has_grad.tolist(), strict=True) if flag > 0]
    if not params:
        return
    grads: list[torch.Tensor] = []
    for p in params:
        if p.grad is None:
            p.grad = torch.zeros_like(p)
        grads.append(p.grad)
    flat = torch.cat([g.reshape(-1) for g in grads])
    dist.all_reduce(flat, op=dist.ReduceOp.SUM)
    flat /= get_world_size()
    offset = 0
    for g in grads:
        n = g.numel()
        g.copy_(flat[offset : offset + n].view_as(g))
        offset += n


def broadcast_parameters(tensors: Iterable[torch.Tensor], src: int = 0) -> None:
    """Copies rank `src`'s values of `tensors` to every rank (start from identical weights)."""
    if not is_distributed():
        return
    with torch.no_grad():
        for t in tensors:
            dist.broadcast(t.data, src=src)


def _collective_device() -> torch.device:
    if dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def all_reduce_sum(values: list[float]) -> list[float]:
    """Sums a few floats over ranks (epoch loss totals)."""
    if not is_distributed():
        return list(values)
    t = torch.tensor(values, dtype=torch.float64, device=_collective_device())
    dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t.cpu().tolist()


def broadcast_value(values: list[float], src: int = 0) -> list[float]:
    """Rank `src`'s floats on every rank (one decision, e.g. early stopping, for all)."""
    if not is_distributed():
        return list(values)
    t = torch.tensor(values, dtype=torch.float64, device=_collective_device())
    dist.broadcast(t, src=src)
    return t.cpu().tolist()


def save_on_main(router: "HAPSRouter", directory: str | os.PathLike[str]) -> Path | None:
    """Saves the router's checkpoint from rank 0 only, then waits for it on every rank.

    All ranks hold identical weights after training; writing from one avoids N processes
    racing on one folder.
    """
    path = router.save_pretrained(directory) if is_main_process() else None
    barrier()
    return path
