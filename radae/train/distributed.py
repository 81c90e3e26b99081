"""Multi-process pretraining (DistributedDataParallel): who this process is and the few collective calls the loop makes.

The process group is initialised by the caller (``torchrun ... -m radae.cli run``, see
:func:`radae.runner.run_pretrain_distributed`); without one every helper here is the single-process identity.
"""
from __future__ import annotations

import contextlib

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def dist_info() -> DistInfo:
    if dist.is_available() and dist.is_initialized():
        return DistInfo(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", dist.get_rank())))
    return DistInfo()


def wrap_ddp(model: nn.Module, device: torch.device, world: int) -> nn.Module:
    """The model wrapped in DistributedDataParallel when ``world > 1`` (one GPU per process, or CPU/gloo)."""
    if world > 1:
        return nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    return model


def gather(obj, world: int) -> list:
    """``[obj of rank 0, ..., obj of rank world-1]`` on every process (``[obj]`` without DDP)."""
    if world <= 1:
        return [obj]
    out = [None] * world
    dist.all_gather_object(out, obj)
    return out


def any_rank(flag: bool, device: torch.device, world: int, asked: bool = True) -> bool:
    """``flag`` max-reduced over the processes, so all stop at the same step.

    Every process enters the collective whenever ``asked`` (the loop asks at every step when ``max_minutes`` is set,
    on every rank alike), whatever its own ``flag``: ranks whose clocks disagree about the deadline then agree on the
    step to stop at instead of one waiting forever in a collective the others never join. ``asked=False`` (no time
    budget) is the same on every rank and costs no collective.
    """
    if world <= 1 or not asked:
        return flag
    t = torch.tensor(float(flag), device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item())


@contextlib.contextmanager
def process_group(cfg):
    """torchrun's process group for this rank: threads per process, NCCL on GPUs (one device per local rank), gloo on
    CPU; destroyed on exit."""
    from radae.util.threads import configure_torch

    configure_torch(cfg.threads, int(os.environ.get("WORLD_SIZE", "1")))
    backend = "nccl" if torch.cuda.is_available() and cfg.pretrain.device != "cpu" else "gloo"
    if backend == "nccl":
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    dist.init_process_group(backend=backend)
    try:
        yield
    finally:
        dist.destroy_process_group()
