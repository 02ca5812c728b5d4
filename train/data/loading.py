"""DataLoaders built once per run, whose workers persist across epochs, and whose draws still follow
from (--seed, rank, epoch) alone (train/seeding.py).

A persistent worker is seeded once, when it starts, so its generators cannot carry the epoch's key
by themselves. Each kind of data therefore tells its draws the epoch another way:

- an in-memory dataset (an ImageFolder, a folder of images): every sample is fetched under a key
  (epoch, position, index) and seeds the generators from it right before its transform draws, so
  its augmentation is the same whichever worker fetches it, with any number of workers;
- a shard stream: the epoch lives in shared memory; each worker reads it when the epoch's stream
  starts in it and seeds from (epoch, rank, worker), as the pipeline's shard and sample shuffles do.
"""

from __future__ import annotations

import multiprocessing
import sys
from typing import Callable, Iterable

import torch
from torch.utils.data import DataLoader, Dataset, IterableDataset, Sampler, get_worker_info

from ..seeding import loader_generator, seed_everything


def choose_workers(flag: int | None, cores: int) -> int:
    """--workers: by default one per core this process may keep busy (ptcommon.launcher's
    Launch.cores: the node's cores shared among its training processes, or an srun task's
    --cpus-per-task); more is capped there, with a warning that says so."""
    if flag is None:
        return cores
    if flag > cores:
        print(f"warning: --workers {flag}: capped at {cores}, the cores of this process (the node's cores shared "
              "among its training processes, or SLURM's --cpus-per-task)", file=sys.stderr, flush=True)
        return cores
    return flag


class SeededSamples(Dataset):
    """DATASET's samples fetched by key (epoch, position, index): the transform's draws follow from
    (seed, rank, epoch, position)."""

    def __init__(self, dataset: Dataset, seed: int, rank: int):
        self.dataset, self.seed, self.rank = dataset, seed, rank

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key: tuple[int, int, int]):
        epoch, position, index = key
        seed_everything(self.seed, "sample", self.rank, epoch, position)
        return self.dataset[index]


class DrawnBatches(Sampler):
    """`steps` batches of keys into a dataset of SIZE samples, drawn with replacement from (seed,
    epoch, rank): the same count on every rank, whatever the dataset's size. `set_epoch` chooses
    the epoch the next pass draws."""

    def __init__(self, size: int, batch_size: int, steps: int, seed: int, rank: int):
        self.size, self.batch_size, self.steps, self.seed, self.rank = size, batch_size, steps, seed, rank
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.steps

    def __iter__(self):
        g = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch * 1000 + self.rank)
        drawn = torch.randint(self.size, (self.steps * self.batch_size,), generator=g).tolist()
        for step in range(self.steps):
            first = step * self.batch_size
            yield [(self.epoch, first + j, drawn[first + j]) for j in range(self.batch_size)]


class EpochStream(IterableDataset):
    """An iterable of batches remade each epoch by `make(epoch)`, read by persistent workers."""

    def __init__(self, make: Callable[[int], Iterable], seed: int, rank: int):
        self.make, self.seed, self.rank = make, seed, rank
        self._epoch = multiprocessing.Value("q", 0, lock=False)  # shared with the forked workers

    def set_epoch(self, epoch: int) -> None:
        self._epoch.value = epoch

    def __iter__(self):
        epoch = self._epoch.value
        worker = get_worker_info()
        if worker is not None:  # the main process's draws are seeded per step by the trainer
            seed_everything(self.seed, "stream", self.rank, epoch, worker.id)
        return iter(self.make(epoch))


def build_loader(dataset: Dataset, workers: int, pin: bool, batch_sampler: Sampler | None = None,
                 batch_size: int | None = None, generator: torch.Generator | None = None) -> DataLoader:
    """The run's one DataLoader for DATASET: persistent workers, pinned memory for a GPU."""
    if batch_sampler is not None:
        batch_size = 1  # DataLoader's default, which a batch sampler requires
    return DataLoader(dataset, batch_size=batch_size, batch_sampler=batch_sampler, num_workers=workers,
                      persistent_workers=workers > 0, pin_memory=pin, generator=generator,
                      prefetch_factor=4 if workers > 0 else None)


def epoch_batches(loader: DataLoader, epochal) -> Callable[[int], DataLoader]:
    """`batches(epoch)` for the trainer: the one LOADER, its sampler or stream (EPOCHAL) set to EPOCH."""

    def batches(epoch: int) -> DataLoader:
        epochal.set_epoch(epoch)
        return loader

    return batches


def drawn_batches(dataset: Dataset, batch_size: int, steps: int, seed: int, rank: int, workers: int,
                  pin: bool) -> Callable[[int], DataLoader]:
    """`steps` batches an epoch of an in-memory dataset, drawn with replacement (DrawnBatches)."""
    sampler = DrawnBatches(len(dataset), batch_size, steps, seed, rank)
    loader = build_loader(SeededSamples(dataset, seed, rank), workers, pin, batch_sampler=sampler,
                          generator=loader_generator(seed, rank))
    return epoch_batches(loader, sampler)


def stream_batches(make: Callable[[int], Iterable], seed: int, rank: int, workers: int,
                   pin: bool) -> Callable[[int], DataLoader]:
    """The batches of a stream that `make(epoch)` builds (a shard pipeline that batches itself)."""
    stream = EpochStream(make, seed, rank)
    loader = build_loader(stream, workers, pin, generator=loader_generator(seed, "shards", rank))
    return epoch_batches(loader, stream)
