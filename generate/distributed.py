"""Which share of the shards this process writes, and on which GPU: from --rank/--world, or from the
launcher's environment (torchrun's, or an srun step's: ptcommon/launcher.py). The shard plan makes
any launcher a valid distributor."""

from __future__ import annotations

from ptcommon.cli import InputError
from ptcommon.launcher import detect


def rank_and_world(rank: int | None, world: int | None) -> tuple[int, int]:
    """Flags win over the launcher's environment (torchrun's, then SLURM's); none means a single process."""
    if rank is None and world is None:
        launch = detect()
        rank, world = launch.rank, launch.world
    elif rank is None or world is None:
        raise InputError("--rank and --world go together: give both (e.g. --rank 0 --world 2) or neither")
    if world < 1:
        raise InputError(f"--world {world}: must be at least 1")
    if not 0 <= rank < world:
        raise InputError(f"--rank {rank}: must lie in [0, {world - 1}] for --world {world}")
    return rank, world
