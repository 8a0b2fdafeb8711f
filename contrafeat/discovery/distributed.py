"""Data-parallel plumbing for discovery: devices, the process group under torchrun, batch shares, reductions.

A run started by `torchrun --nproc_per_node N` sees WORLD_SIZE, RANK and LOCAL_RANK in its environment;
every rank then draws the same global batch from the same seeded generator and works on its own share
of it, and gradients are summed over the ranks (see `Trainer.train_step`). The PCA of W and the
evaluation's paired dataset are shared out the same way.
"""
from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import torch
import torch.distributed as dist

from contrafeat.devices import resolve_device
from contrafeat.errors import UserError

T = TypeVar("T")


@dataclass(frozen=True)
class Runtime:
    """Where this process runs: its rank among `world_size` data-parallel processes and its device."""

    rank: int = 0
    world_size: int = 1
    device: torch.device = torch.device("cpu")

    @property
    def is_main(self) -> bool:
        """Rank 0 alone writes files and shows progress."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def start(device_name: str) -> Runtime:
    """The runtime of this process; joins the process group (nccl on CUDA, gloo otherwise) when WORLD_SIZE > 1."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    device = resolve_device(device_name, int(os.environ.get("LOCAL_RANK", "0")))
    if world_size == 1:
        return Runtime(0, 1, device)
    if device.type == "mps":
        raise UserError("--device mps: data-parallel runs need CUDA (nccl) or the CPU (gloo)")
    if device.type == "cuda":
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return Runtime(dist.get_rank(), world_size, device)


def stop(runtime: Runtime) -> None:
    """Leave the process group this runtime joined."""
    if runtime.distributed and dist.is_initialized():
        dist.destroy_process_group()


def rank_share(count: int, runtime: Runtime) -> torch.Tensor:
    """Indices of this rank's consecutive share of `count` items (shares differ in size by at most one)."""
    if count < runtime.world_size:
        raise UserError(f"a batch of {count} sample(s) cannot be shared by {runtime.world_size} processes; raise --batch-size")
    return torch.tensor_split(torch.arange(count), runtime.world_size)[runtime.rank]


def all_reduce_sum_(tensors: list[torch.Tensor], runtime: Runtime) -> None:
    """Sum tensors over the ranks in place, in one flat message; nothing to do in a single process."""
    if not runtime.distributed or not tensors:
        return
    flat = torch.cat([tensor.reshape(-1) for tensor in tensors])
    dist.all_reduce(flat)
    for tensor, reduced in zip(tensors, flat.split([tensor.numel() for tensor in tensors])):
        tensor.copy_(reduced.view_as(tensor))


def broadcast_from_main(value: Any, runtime: Runtime) -> Any:
    """Rank 0's `value` on every rank (pickled); other ranks pass None."""
    if not runtime.distributed:
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def all_gather_objects(value: Any, runtime: Runtime) -> list[Any]:
    """Every rank's `value` (pickled), in rank order, on every rank; [value] in a single process."""
    if not runtime.distributed:
        return [value]
    gathered: list[Any] = [None] * runtime.world_size
    dist.all_gather_object(gathered, value)
    return gathered


def decided_on_main(decide: Callable[[], T], runtime: Runtime) -> T:
    """`decide()` run on rank 0 alone; its value, or the UserError it raised, on every rank (which wait for it)."""
    if not runtime.distributed:
        return decide()
    outcome: tuple[T | None, str | None] | None = None
    if runtime.is_main:
        try:
            outcome = (decide(), None)
        except UserError as error:
            outcome = (None, str(error))
    value, failure = broadcast_from_main(outcome, runtime)
    if failure is not None:
        raise UserError(failure)
    return value


def barrier(runtime: Runtime) -> None:
    """Wait until every rank gets here; nothing to do in a single process."""
    if runtime.distributed:
        dist.barrier()


def local_seed(seed: int, rank: int, step: int) -> int:
    """Seed of a rank's global torch RNG (per-pixel synthesis noise only); rank 0 at step 0 uses `seed` itself."""
    return seed + rank + 1_000_003 * step
