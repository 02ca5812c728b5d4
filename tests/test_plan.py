"""Sample seeds: a block of indices at a time, equal to NumPy's SeedSequence one index at a time."""

import numpy as np
import pytest

from generate.plan import WorkPlan, sample_seed


def seed_sequence(seed: int, index: int) -> int:
    return int(np.random.SeedSequence([seed, index]).generate_state(1, dtype=np.uint64)[0] >> np.uint64(1))


# Base seeds and indices of one, two and three 32-bit words, and the edges of a block and of a word.
SEEDS = [0, 1, 7, 2**31, 2**32 - 1, 2**32, 2**40 + 5, 2**63 - 1, 2**64 + 3]
INDICES = [0, 1, 1023, 1024, 1025, 99_999, 2**32 - 1, 2**32, 2**32 + 1023, 2**40 + 7, 2**64 - 1, 2**64 + 5]


@pytest.mark.parametrize("seed", SEEDS)
def test_sample_seed_is_seed_sequences(seed):
    assert [sample_seed(seed, i) for i in INDICES] == [seed_sequence(seed, i) for i in INDICES]


def test_sample_seed_at_random_seeds_and_indices():
    rng = np.random.default_rng(0)
    pairs = [(int(rng.integers(2**63)), int(rng.integers(10**9))) for _ in range(300)]
    assert [sample_seed(s, i) for s, i in pairs] == [seed_sequence(s, i) for s, i in pairs]


def test_a_shard_file_name_gives_back_its_shard():
    plan = WorkPlan(count=25, shard_size=10, prefix="synth")
    assert [plan.shard_of(plan.shard_name(k)) for k in range(plan.num_shards)] == [0, 1, 2]
    assert plan.shard_of("pseudo-000001.tar") is None and plan.shard_of("synth-1.tar") is None
    assert plan.shard_of("synth-00000x.tar") is None and plan.shard_of(".synth-000001.tar.tmp") is None
