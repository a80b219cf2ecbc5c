"""DistributedDataParallel under torchrun: gloo on CPU, nccl on GPU; rank 0 writes.

With no torchrun environment (or WORLD_SIZE=1) everything here is a no-op and a run is
a plain single-process run.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn


@dataclass(frozen=True)
class Context:
    rank: int = 0
    world: int = 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world > 1


def setup() -> Context:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Context()
    if not dist.is_initialized():
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    return Context(dist.get_rank(), dist.get_world_size())


def teardown(ctx: Context) -> None:
    if ctx.enabled and dist.is_initialized():
        dist.destroy_process_group()


def wrap(module: nn.Module, ctx: Context) -> nn.Module:
    if not ctx.enabled or not any(p.requires_grad for p in module.parameters()):
        return module
    # DDP syncs buffers (BatchNorm running statistics) from rank 0 before every forward
    return nn.parallel.DistributedDataParallel(module)


def unwrap(module: nn.Module) -> nn.Module:
    return module.module if isinstance(module, nn.parallel.DistributedDataParallel) else module


def sync_buffers(module: nn.Module, ctx: Context) -> None:
    """Make every rank's buffers rank 0's (DDP syncs them before a forward, not after one)."""
    if ctx.enabled:
        for buf in module.buffers():
            dist.broadcast(buf, 0)


def barrier(ctx: Context) -> None:
    if ctx.enabled:
        dist.barrier()


def replica_max_diff(module: nn.Module, ctx: Context) -> float:
    """Largest absolute difference between this module on rank 0 and on any other rank."""
    if not ctx.enabled:
        return 0.0
    flat = torch.cat([t.detach().double().flatten() for t in module.state_dict().values() if t.is_floating_point()])
    reference = flat.clone()
    dist.broadcast(reference, 0)
    diff = torch.tensor([(flat - reference).abs().max().item()], dtype=torch.float64)
    dist.all_reduce(diff, op=dist.ReduceOp.MAX)
    return float(diff.item())
