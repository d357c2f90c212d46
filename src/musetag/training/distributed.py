"""Distributed data parallel training under ``torchrun``.

``torchrun --nproc_per_node=N -m musetag train ...`` starts N processes with ``RANK``,
``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR`` and ``MASTER_PORT`` in their environment;
:func:`setup` joins the process group (NCCL on GPUs, Gloo on CPU). Each rank trains on its shard of
every epoch's order (:func:`shard`), gradients are averaged by DDP, evaluation outputs are gathered
on rank 0, and only rank 0 writes files.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import torch
import torch.distributed as dist


@dataclass
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    backend: str = ""
    initialized_here: bool = False

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def env_world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


def setup(device_type: str = "cpu") -> DistInfo:
    """Join the process group described by torchrun's environment (no-op for one process)."""
    world = env_world_size()
    if world <= 1:
        return DistInfo()
    rank = int(os.environ["RANK"])
    local_rank = int(os.environ.get("LOCAL_RANK", rank))
    backend = "nccl" if device_type == "cuda" else "gloo"
    initialized_here = False
    if not dist.is_initialized():
        if device_type == "cuda":
            torch.cuda.set_device(local_rank)
        dist.init_process_group(backend=backend, rank=rank, world_size=world, timeout=timedelta(minutes=30))
        initialized_here = True
    return DistInfo(rank=rank, world_size=world, local_rank=local_rank, backend=dist.get_backend(),
                    initialized_here=initialized_here)


def teardown(info: DistInfo) -> None:
    if info.enabled and info.initialized_here and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


def barrier(info: DistInfo) -> None:
    if info.enabled:
        dist.barrier()


def shard(indices: list[int], info: DistInfo) -> list[int]:
    """This rank's part of an epoch's order, padded (by wrapping) to equal lengths like
    ``torch.utils.data.DistributedSampler``: rank r takes positions r, r+N, r+2N..."""
    if not info.enabled:
        return list(indices)
    n = len(indices)
    total = -(-n // info.world_size) * info.world_size
    padded = list(indices) + list(indices[: total - n]) if total > n else list(indices)
    return padded[info.rank:total:info.world_size]


def gather_objects(obj: Any, info: DistInfo) -> list[Any]:
    """Every rank's ``obj`` on every rank (rank order)."""
    if not info.enabled:
        return [obj]
    out: list[Any] = [None] * info.world_size
    dist.all_gather_object(out, obj)
    return out


def all_reduce_mean(value: float, info: DistInfo) -> float:
    if not info.enabled:
        return float(value)
    t = torch.tensor([float(value)], dtype=torch.float64)
    dist.all_reduce(t)
    return float(t.item()) / info.world_size
