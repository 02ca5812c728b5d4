"""One `--seed` for everything a training run draws.

A run draws from torch's global generators (the initial weights, a fresh head, the augmentations
of torchvision's v2 transforms, dropout), from each DataLoader worker's generators and from
WebDataset's shard and sample shuffles. Each of these streams is seeded from the run's seed and
a key naming the stream: the model from ("model",); a training step from (rank, step), right
before its batch is drawn, so the draws of step k are the same whether the run went there
straight or resumed from a checkpoint and skipped to it; a loader's workers from (rank, epoch).
"""

from __future__ import annotations

import hashlib
import random

import numpy as np
import torch


def derive_seed(seed: int, *key: int | str) -> int:
    """A 63-bit seed for the stream KEY of a run seeded SEED, well mixed: neighbouring seeds or
    keys give unrelated streams, and it is the same in every process (no Python `hash`)."""
    digest = hashlib.blake2b(repr((seed, *key)).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") >> 1


def seed_everything(seed: int, *key: int | str) -> None:
    """Seed torch's global generators (CPU and every CUDA device), numpy's and Python's `random`
    for the stream KEY of a run seeded SEED."""
    derived = derive_seed(seed, *key)
    torch.manual_seed(derived)
    np.random.seed(derived % 2**32)
    random.seed(derived)


def loader_generator(seed: int, *key: int | str) -> torch.Generator:
    """The generator a DataLoader draws its base seed from. Worker w then seeds its torch and
    `random` with base + w and numpy from (base, w), so every worker's draws follow from
    (seed, key, w), and the main process's global generator is left alone."""
    return torch.Generator().manual_seed(derive_seed(seed, "loader", *key))
