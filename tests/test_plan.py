"""Sample seeds: a block of indices at a time, equal to NumPy's SeedSequence one index at a time."""

import numpy as np
import pytest

from generate.plan import sample_seed


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
