"""Which share of the shards this process writes: from --rank/--world, or from torchrun's environment."""

from __future__ import annotations

import os

from ptcommon.cli import InputError


def rank_and_world(rank: int | None, world: int | None) -> tuple[int, int]:
    """Flags win over torchrun's RANK / WORLD_SIZE; neither means a single process."""
    if rank is None and world is None:
        rank = int(os.environ.get("RANK", 0))
        world = int(os.environ.get("WORLD_SIZE", 1))
    elif rank is None or world is None:
        raise InputError("--rank and --world go together: give both (e.g. --rank 0 --world 2) or neither")
    if world < 1:
        raise InputError(f"--world {world}: must be at least 1")
    if not 0 <= rank < world:
        raise InputError(f"--rank {rank}: must lie in [0, {world - 1}] for --world {world}")
    return rank, world
