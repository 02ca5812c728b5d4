"""torchrun support: process group set-up, and who may write."""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from ptcommon.cli import InputError


@dataclass(frozen=True)
class Dist:
    rank: int
    world: int
    device: torch.device

    @property
    def main(self) -> bool:
        """Only rank 0 writes the run folder and prints progress."""
        return self.rank == 0

    def barrier(self) -> None:
        if self.world > 1:
            dist.barrier()

    def all_reduce_sum(self, tensor: torch.Tensor) -> torch.Tensor:
        if self.world > 1:
            dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
        return tensor


def setup(device: str = "auto") -> Dist:
    """Join torchrun's process group when launched by it (gloo on CPU, nccl on GPUs)."""
    world = int(os.environ.get("WORLD_SIZE", 1))
    rank = int(os.environ.get("RANK", 0))
    use_cuda = torch.cuda.is_available() if device == "auto" else device == "cuda"
    if use_cuda:
        local = int(os.environ.get("LOCAL_RANK", 0))
        per_node, visible = int(os.environ.get("LOCAL_WORLD_SIZE", 1)), torch.cuda.device_count()
        # One process per GPU: NCCL refuses two ranks on one device. Every rank checks the node's
        # process count, not its own index, so all of them stop here before any writes a run folder.
        if per_node > visible:
            raise InputError(f"torchrun started {per_node} processes on this node, which has {visible} visible GPU(s); "
                             f"pass --nproc_per_node {visible}, or --device cpu to run on CPU")
        torch.cuda.set_device(local)
        dev = torch.device("cuda", local)
    else:
        dev = torch.device("cpu")
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if use_cuda else "gloo")
    return Dist(rank, world, dev)


def teardown() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()
