"""Which share of the shards this process writes, and on which GPU: from --rank/--world, or from the
launcher's environment (torchrun's RANK / WORLD_SIZE / LOCAL_RANK, or SLURM's SLURM_PROCID /
SLURM_NTASKS / SLURM_LOCALID). The shard plan makes any launcher a valid distributor."""

from __future__ import annotations

import os

from ptcommon.cli import InputError


_LAUNCHERS = (("RANK", "WORLD_SIZE", "LOCAL_RANK"), ("SLURM_PROCID", "SLURM_NTASKS", "SLURM_LOCALID"))


def _launcher() -> tuple[str, str, str] | None:
    return next((names for names in _LAUNCHERS if names[0] in os.environ), None)


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
