"""The work plan: which samples go to which shard, which rank writes which shard, and each sample's seed.

Everything here is a pure function of the config, which is what makes shards byte-identical
however the work is split over processes or interrupted: shard k always holds samples
[k * shard_size, (k + 1) * shard_size), batched from the shard's own start, and sample i's noise
comes from a seed derived from (seed, i) alone.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Callable

import numpy as np

from ptcommon.shards import num_shards, shard_name



def sample_seed(seed: int, index: int) -> int:
    """A 63-bit seed for sample `index`, decorrelated from its neighbours' (no `seed + index` overlap
    between runs whose base seeds differ by a small number): the top 63 bits of the first 64-bit
    word of NumPy's `SeedSequence([seed, index])`.

    Computed a block of consecutive indices at a time, with the same result: SeedSequence builds
    Python objects and arrays for each index, which at JPEG's encode rate at 256 px showed in the
    writer's time (the one-thread row of docs/results.md, "The writer's ceiling")."""
    return _seed_block(seed, index // _SEED_BLOCK)[index % _SEED_BLOCK]


_SEED_BLOCK = 1024  # divides 2**32, so an index's count of 32-bit words is the same over a block
# NumPy's SeedSequence constants (numpy/random/bit_generator.pyx): its hash is restated here
# over arrays, and tests/test_plan.py pins it to SeedSequence itself.
_POOL, _INIT_A, _MULT_A, _INIT_B, _MULT_B = 4, 0x43B0D7E5, 0x931E8875, 0x8B51F9DD, 0x58F38DED
_MIX_L, _MIX_R, _MASK = 0xCA01F9DD, 0x4973F715, 0xFFFFFFFF


def _words(n: int) -> list[int]:
    """SeedSequence's entropy words of a non-negative int: 32 bits each, least significant first, at least one."""
    return [(n >> shift) & _MASK for shift in range(0, max(n.bit_length(), 1), 32)]


def _hasher(init: int, mult: int) -> Callable[[np.ndarray], np.ndarray]:
    """SeedSequence's hash of 32-bit words, over arrays: its constant moves on at every call."""
    const = init

    def hash_words(value: np.ndarray) -> np.ndarray:
        nonlocal const
        value = value ^ np.uint32(const)
        const = const * mult & _MASK
        return _xorshift(value * np.uint32(const))

    return hash_words


def _xorshift(value: np.ndarray) -> np.ndarray:
    return value ^ (value >> np.uint32(16))


@functools.lru_cache(maxsize=64)  # the blocks the encoder threads are working through
def _seed_block(seed: int, block: int) -> list[int]:
    """`sample_seed` for indices [block, block + 1) * _SEED_BLOCK, by SeedSequence's own hash over all at once."""
    # Only the lowest word varies over a block: it starts at a multiple of _SEED_BLOCK.
    low, *high = _words(block * _SEED_BLOCK)
    entropy = [np.full(_SEED_BLOCK, word, dtype=np.uint32) for word in _words(seed)]
    entropy += [low + np.arange(_SEED_BLOCK, dtype=np.uint32), *(np.full(_SEED_BLOCK, w, dtype=np.uint32) for w in high)]
    hashmix = _hasher(_INIT_A, _MULT_A)

    def mix(x: np.ndarray, y: np.ndarray) -> np.ndarray:
        return _xorshift(np.uint32(_MIX_L) * x - np.uint32(_MIX_R) * y)

    zero = np.zeros(_SEED_BLOCK, dtype=np.uint32)
    pool = [hashmix(entropy[i] if i < len(entropy) else zero) for i in range(_POOL)]
    for src in range(_POOL):
        for dst in range(_POOL):
            if src != dst:
                pool[dst] = mix(pool[dst], hashmix(pool[src]))
    for word in entropy[_POOL:]:
        for dst in range(_POOL):
            pool[dst] = mix(pool[dst], hashmix(word))
    # generate_state(1, uint64): the pool's first two words, hashed again, as one little-endian uint64.
    finish = _hasher(_INIT_B, _MULT_B)
    first, second = (finish(word).astype(np.uint64) for word in pool[:2])
    return ((first | second << np.uint64(32)) >> np.uint64(1)).tolist()


@dataclass(frozen=True)
class WorkPlan:
    count: int
    shard_size: int
    prefix: str

    @property
    def num_shards(self) -> int:
        return num_shards(self.count, self.shard_size)

    def shard_name(self, shard: int) -> str:
        return shard_name(self.prefix, shard)

    def shard_names(self) -> list[str]:
        return [self.shard_name(k) for k in range(self.num_shards)]

    def shard_of(self, name: str) -> int | None:
        """The shard a file NAME of this plan's is (`shard_name`'s inverse); None for another name."""
        head, tail = f"{self.prefix}-", ".tar"
        digits = name[len(head):-len(tail)] if name.startswith(head) and name.endswith(tail) else ""
        return int(digits) if digits.isdigit() and self.shard_name(int(digits)) == name else None

    def samples(self, shard: int) -> range:
        start = shard * self.shard_size
        return range(start, min(start + self.shard_size, self.count))

    def shards_for_rank(self, rank: int, world: int) -> range:
        """Round-robin, so that ranks finish at about the same time whatever the shard count.

        A range, not a list: a plan of 10^11 images has 10^8 shards, and nothing about them may
        be built before the first one starts."""
        return range(rank, self.num_shards, world)

    def rank_samples(self, rank: int, world: int) -> int:
        """How many samples `rank`'s shards hold, by arithmetic: only the last shard may be short."""
        mine = self.shards_for_rank(rank, world)
        short = self.num_shards * self.shard_size - self.count
        return len(mine) * self.shard_size - (short if self.num_shards - 1 in mine else 0)

    def batches(self, shard: int, batch_size: int) -> list[range]:
        samples = self.samples(shard)
        return [samples[i : i + batch_size] for i in range(0, len(samples), batch_size)]
