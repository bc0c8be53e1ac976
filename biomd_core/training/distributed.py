"""Data parallelism under ``torchrun`` (PyTorch DDP).

Every rank draws the *same* global batch (shared seed) and trains on its
shard, so N ranks with batch B/N take the same steps as one process with
batch B.  Gradients are averaged by :class:`~torch.nn.parallel.DistributedDataParallel`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class DistributedContext:
    """Rank, world size and device of this process."""

    rank: int = 0
    world_size: int = 1
    device: torch.device = torch.device("cpu")

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    def shard(self, batch_size: int) -> slice:
        """This rank's rows of a global batch (the batch must divide evenly)."""
        if batch_size % self.world_size:
            raise ValueError(f"batch_size {batch_size} is not divisible by the {self.world_size} data-parallel ranks")
        per = batch_size // self.world_size
        return slice(self.rank * per, (self.rank + 1) * per)


def setup(device: str = "auto") -> DistributedContext:
    """Initialise the process group when launched by ``torchrun`` (gloo on CPU, NCCL on CUDA)."""
    import torch.distributed as dist

    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda":
        if not torch.cuda.is_available():  # (a CPU-only PyTorch failed in torch._C with an AttributeError)
            raise RuntimeError("device: cuda, but PyTorch sees no CUDA GPU on this machine (a CPU-only build, or "
                               "no driver): train with device: auto or cpu, or on a machine with a GPU")
        local = int(os.environ.get("LOCAL_RANK", "0"))
        torch.cuda.set_device(local)
        dev = torch.device("cuda", local)
    else:
        dev = torch.device(device)
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if dev.type == "cuda" else "gloo")
    return DistributedContext(rank, world, dev)


def wrap(net: torch.nn.Module, ctx: DistributedContext) -> torch.nn.Module:
    """``net`` wrapped in DDP when running on several ranks (parameters stay shared with ``net``)."""
    if not ctx.enabled:
        return net
    from torch.nn.parallel import DistributedDataParallel

    return DistributedDataParallel(net, device_ids=[ctx.device.index] if ctx.device.type == "cuda" else None)


def barrier(ctx: DistributedContext) -> None:
    if ctx.enabled:
        import torch.distributed as dist

        dist.barrier()


def teardown(ctx: DistributedContext) -> None:
    if ctx.enabled:
        import torch.distributed as dist

        if dist.is_initialized():
            dist.destroy_process_group()
