"""Which device a process computes on, for both stages: `--device auto|cpu|cuda`, and on a node of
several processes the GPU of this one."""

from __future__ import annotations

import torch

from .cli import InputError
from .launcher import Launch, detect


def choose_device(flag: str, launch: Launch | None = None) -> torch.device:
    """The CPU, or this process's GPU: its node-local rank among the visible GPUs (the one GPU srun
    bound to it). One process per GPU: NCCL refuses two ranks on one device, and every rank checks
    the node's process count, not its own index, so all of them stop before any writes."""
    launch = launch or detect()
    use_cuda = torch.cuda.is_available() if flag == "auto" else flag == "cuda"
    if use_cuda and not torch.cuda.is_available():
        raise InputError("--device cuda: no GPU is visible to this process; pass --device cpu")
    if not use_cuda:
        return torch.device("cpu")
    visible = torch.cuda.device_count()
    index = launch.gpu_index(visible)
    if index is None:
        how = "srun with --ntasks-per-node" if launch.launcher == "slurm" else "torchrun with --nproc_per_node"
        raise InputError(f"{launch.launcher} started {launch.local_world} processes on this node, which has "
                         f"{visible} visible GPU(s); launch {how} {visible}, or pass --device cpu to run on CPU")
    return torch.device("cuda", index)
