"""train/data/loading.py: loaders built once per run whose persistent workers still draw from
(--seed, rank, epoch), so a fresh loader (a resumed run) draws what a long-lived one does."""

import torch
from torch.utils.data import Dataset

from ptcommon.launcher import Launch
from train.data.loading import choose_workers, drawn_batches, stream_batches


class Noisy(Dataset):
    """Sample i is i plus a draw from torch's global generator (as an augmentation draws)."""

    def __len__(self):
        return 5

    def __getitem__(self, i):
        return torch.tensor(float(i)) + torch.rand(())


def noisy_stream(epoch):
    return [(torch.full((2,), float(epoch)) + torch.rand(2),) for _ in range(3)]


def collect(batches, epoch):
    return [b[0] if isinstance(b, (list, tuple)) else b for b in batches(epoch)]


def test_drawn_batches_are_the_same_with_any_workers_and_from_a_fresh_loader():
    long_lived = drawn_batches(Noisy(), 2, 3, seed=4, rank=0, workers=2, pin=False)
    epochs = [collect(long_lived, e) for e in range(3)]
    for workers in (0, 1):  # another worker count, and a loader made afresh at epoch 2
        fresh = drawn_batches(Noisy(), 2, 3, seed=4, rank=0, workers=workers, pin=False)
        assert all(torch.equal(a, b) for a, b in zip(collect(fresh, 2), epochs[2]))
    assert not torch.equal(torch.stack(epochs[1]), torch.stack(epochs[2]))  # epochs draw anew


def test_a_persistent_stream_reads_each_epoch_and_reseeds_its_workers():
    long_lived = stream_batches(noisy_stream, seed=4, rank=0, workers=2, pin=False)
    epochs = [collect(long_lived, e) for e in range(3)]
    assert [int(b[0]) for b in epochs[2]] == [2] * 6  # two workers, three batches each, all of epoch 2
    fresh = stream_batches(noisy_stream, seed=4, rank=0, workers=2, pin=False)
    assert all(torch.equal(a, b) for a, b in zip(collect(fresh, 2), epochs[2]))


def test_workers_default_to_the_cores_shared_out_and_are_capped_there(monkeypatch, capsys):
    monkeypatch.setattr("os.sched_getaffinity", lambda pid: set(range(16)))
    monkeypatch.setenv("SLURM_CPUS_PER_TASK", "6")
    assert Launch(0, 1, 0, 1, "none").cores == 16 and Launch(3, 8, 3, 4, "torchrun").cores == 4
    assert Launch(3, 8, 3, 4, "slurm").cores == 6  # an srun task has its own CPUs
    assert choose_workers(None, 4) == 4 and choose_workers(0, 4) == 0 and choose_workers(3, 4) == 3
    assert choose_workers(9, 4) == 4
    assert capsys.readouterr().err.startswith("warning: --workers 9: capped at 4, the cores of this process")
