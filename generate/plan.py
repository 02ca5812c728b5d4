"""The work plan: which samples go to which shard, which rank writes which shard, and each sample's seed.

Everything here is a pure function of the config, which is what makes shards byte-identical
however the work is split over processes or interrupted: shard k always holds samples
[k * shard_size, (k + 1) * shard_size), batched from the shard's own start, and sample i's noise
comes from a seed derived from (seed, i) alone.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np

from ptcommon.shards import num_shards, sample_key, shard_name

__all__ = ["WorkPlan", "sample_key", "sample_seed"]


@functools.lru_cache(maxsize=1 << 16)  # asked for twice a sample: by the sampler, then by its record
def sample_seed(seed: int, index: int) -> int:
    """A 63-bit seed for sample `index`, decorrelated from its neighbours' (no `seed + index` overlap
    between runs whose base seeds differ by a small number)."""
    state = np.random.SeedSequence([seed, index]).generate_state(1, dtype=np.uint64)[0]
    return int(state >> np.uint64(1))


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
