"""Several processes (torchrun, or an srun step): the process group, and who may write."""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from ptcommon.device import choose_device
from ptcommon.launcher import detect, rendezvous


@dataclass(frozen=True)
class Dist:
    rank: int
    world: int
    device: torch.device
    local_world: int = 1  # processes on this node
    launcher: str = "none"  # torchrun, slurm or none
    cores: int = 1  # the cores this process may keep busy with its data workers (Launch.cores)

    @property
    def main(self) -> bool:
        """Only rank 0 writes the run folder and prints progress."""
        return self.rank == 0

    def barrier(self) -> None:
        if self.world > 1:
            dist.barrier()

    def share(self, value):
        """Rank 0's VALUE (any picklable object), on every rank."""
        if self.world == 1:
            return value
        box = [value]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def all_reduce_sum(self, tensor: torch.Tensor) -> torch.Tensor:
        if self.world > 1:
            dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
        return tensor


def setup(device: str = "auto") -> Dist:
    """Join the launcher's process group (gloo on CPU, nccl on GPUs): torchrun's, or an srun step's
    with its rendezvous derived from SLURM's node list and job id."""
    launch = detect()
    dev = choose_device(device, launch)
    use_cuda = dev.type == "cuda"
    if launch.world > 1 and not dist.is_initialized():
        if launch.launcher == "slurm":
            os.environ["MASTER_ADDR"], os.environ["MASTER_PORT"] = rendezvous()
        dist.init_process_group("nccl" if use_cuda else "gloo", rank=launch.rank, world_size=launch.world)
    return Dist(launch.rank, launch.world, dev, launch.local_world, launch.launcher, launch.cores)


def teardown() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()
