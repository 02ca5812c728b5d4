"""Which share of the shards this process writes, and on which GPU: from --rank/--world, or from the
launcher's environment (torchrun's RANK / WORLD_SIZE / LOCAL_RANK, or, inside an srun step, SLURM's
SLURM_PROCID / SLURM_STEP_NUM_TASKS / SLURM_LOCALID). The shard plan makes any launcher a valid
distributor."""

from __future__ import annotations

import os

from ptcommon.cli import InputError


_TORCHRUN = ("RANK", "WORLD_SIZE", "LOCAL_RANK")
# Inside an srun step; the step's own task count first, as a step may take fewer tasks than the job.
_SRUN = ("SLURM_PROCID", "SLURM_STEP_NUM_TASKS", "SLURM_LOCALID")
_SRUN_OLD = ("SLURM_PROCID", "SLURM_NTASKS", "SLURM_LOCALID")  # a Slurm without per-step counts
# Slurm numbers its batch, extern and interactive steps from 0xFFFFFFF0 up: a batch script's own
# shell is not an srun task even though it sees SLURM_PROCID 0 and the job's SLURM_NTASKS.
_FIRST_SPECIAL_STEP = 0xFFFFFFF0


def _in_srun_step() -> bool:
    step = os.environ.get("SLURM_STEP_ID", os.environ.get("SLURM_STEPID", ""))
    return step.isdecimal() and int(step) < _FIRST_SPECIAL_STEP and "SLURM_PROCID" in os.environ


def _launcher() -> tuple[str, str, str] | None:
    """torchrun's variables, else an srun step's; a batch script run without srun is one process."""
    if _TORCHRUN[0] in os.environ:
        return _TORCHRUN
    if _in_srun_step():
        return _SRUN if _SRUN[1] in os.environ else _SRUN_OLD
    return None


def rank_and_world(rank: int | None, world: int | None) -> tuple[int, int]:
    """Flags win over the launcher's environment (torchrun's, then SLURM's); none means a single process."""
    if rank is None and world is None:
        names = _launcher()
        rank = int(os.environ[names[0]]) if names else 0
        world = int(os.environ.get(names[1], 1)) if names else 1
    elif rank is None or world is None:
        raise InputError("--rank and --world go together: give both (e.g. --rank 0 --world 2) or neither")
    if world < 1:
        raise InputError(f"--world {world}: must be at least 1")
    if not 0 <= rank < world:
        raise InputError(f"--rank {rank}: must lie in [0, {world - 1}] for --world {world}")
    return rank, world


def local_rank() -> int:
    """This process's index on its node (which GPU it takes): the launcher's, else 0."""
    names = _launcher()
    return int(os.environ.get(names[2], 0)) if names else 0


def ranks_on_node() -> int:
    """How many ranks share this node (and its cores): torchrun's LOCAL_WORLD_SIZE, else this
    node's entry of an srun step's SLURM_STEP_TASKS_PER_NODE (such as `4(x2),3`), else 1."""
    if "LOCAL_WORLD_SIZE" in os.environ:
        return int(os.environ["LOCAL_WORLD_SIZE"])
    if _in_srun_step() and "SLURM_STEP_TASKS_PER_NODE" in os.environ:
        counts = []
        for part in os.environ["SLURM_STEP_TASKS_PER_NODE"].split(","):
            tasks, _, repeat = part.partition("(x")
            counts += [int(tasks)] * int(repeat.rstrip(")") or 1)
        return counts[min(int(os.environ.get("SLURM_NODEID", 0)), len(counts) - 1)]
    return 1
