"""Several processes (torchrun, or an srun step): the process group, and who may write."""

from __future__ import annotations

import atexit
import gc
import os
import signal
import sys
import threading
import traceback
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
    if use_cuda:
        torch.cuda.set_device(dev)  # NCCL's collectives run on the current device
    if launch.world > 1 and not dist.is_initialized():
        if launch.launcher == "slurm":
            os.environ["MASTER_ADDR"], os.environ["MASTER_PORT"] = rendezvous()
        dist.init_process_group("nccl" if use_cuda else "gloo", rank=launch.rank, world_size=launch.world)
        atexit.register(teardown)
    return Dist(launch.rank, launch.world, dev, launch.local_world, launch.launcher, launch.cores)


def teardown() -> None:
    """Leave the process group while the interpreter is still whole, however the run ended (setup
    registers this to run at exit).

    Gloo's worker threads drop each finished collective's work, and with it the last hold on its
    tensors, after the rank that waited for it has gone on: under load, sometimes only once the
    interpreter is finalizing. Releasing a tensor that has a Python object takes the GIL, which a
    finalizing interpreter answers by ending the thread (pthread_exit) inside a noexcept destructor:
    std::terminate, "terminate called without an active exception", exit -6. Destroying the group
    joins those threads first; it goes only with its last holder, DistributedDataParallel's reducer,
    which the frames of an uncaught error's traceback keep alive and reference cycles may too."""
    if not dist.is_initialized():
        return
    # A Ctrl-C now would only cut this short.
    main = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN) if main else None
    try:
        traceback.clear_frames(getattr(sys, "last_traceback", None))
        gc.collect()
        dist.destroy_process_group()
    finally:
        if previous is not None:
            signal.signal(signal.SIGINT, previous)
