"""Runs a generation job's shards for one rank: batched sampling in the main thread, encoding and
tar writing in a writer thread, so that the generator never waits on I/O."""

from __future__ import annotations

import queue
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Protocol

import numpy as np
import torch
from tqdm import tqdm

from ptcommon.outputs import disk_full_error, is_disk_full
from ptcommon.shards import MANIFEST_COLUMNS, sample_bytes_bound

from .generator import Generator
from .plan import WorkPlan
from .store import ShardFolder
from .writer import SampleRecord, ShardWriter, encode_image

# Batches allowed in flight between sampler and writer: enough to hide an encode hiccup,
# few enough that memory stays flat however many images a job makes.
_QUEUE_DEPTH = 4


class Job(Protocol):
    """What the runner needs from a kind of generation job (class-conditional synthesis, PCS)."""

    plan: WorkPlan
    generator: Generator
    settings: JobSettings

    def header(self) -> dict: ...

    def hashed_config(self) -> dict: ...

    def condition(self, indices: range) -> torch.Tensor: ...

    def seed(self, index: int) -> int: ...

    def record(self, index: int) -> SampleRecord: ...


@dataclass(frozen=True)
class JobSettings:
    """What every generation job is sampled and written with."""

    model: str
    steps: int
    guidance: float
    seed: int
    shard_size: int
    image_format: str
    dtype: str
    compiled: bool
    batch_size: int

    def hashed(self) -> dict:
        """The settings that decide the shards' bytes (not the model SPEC, not the batch size)."""
        # `compiled` only when on, so that every dataset made before the flag existed keeps its hash.
        return {"steps": self.steps, "guidance": self.guidance, "seed": self.seed, "shard_size": self.shard_size,
                "image_format": self.image_format, "dtype": self.dtype, **({"compiled": True} if self.compiled else {})}


@dataclass
class RunStats:
    images: int = 0  # in shards this run committed
    shards_written: int = 0
    shards_skipped: int = 0
    bytes: int = 0  # of shards this run committed
    seconds: float = 0.0
    complete: bool = False

    @property
    def images_per_s(self) -> float:
        return self.images / self.seconds if self.seconds else 0.0


class _Writer(threading.Thread):
    """Consumes (shard, indices, images) batches; a (shard, None, None) item commits the shard."""

    def __init__(self, job: Job, folder: ShardFolder, image_format: str, bar: tqdm, stats: RunStats):
        super().__init__(daemon=True, name="shard-writer")
        self.job, self.folder, self.image_format = job, folder, image_format
        self.bar, self.stats = bar, stats
        self.inbox: queue.Queue = queue.Queue(maxsize=_QUEUE_DEPTH)
        self.error: BaseException | None = None
        self._open: ShardWriter | None = None
        self._rows: list[dict] = []

    def run(self) -> None:
        try:
            while (item := self.inbox.get()) is not None:
                self._handle(*item)
        except BaseException as err:  # re-raised in the main thread
            self.error = err
            while self.inbox.get() is not None:  # unblock the producer until it sees the error
                pass
        finally:
            if self._open is not None:
                self._open.abort()

    def _handle(self, shard: int, indices: range | None, images: np.ndarray | None) -> None:
        if indices is None:
            self._commit(shard)
            return
        if self._open is None:
            self._open = ShardWriter(self.folder.shard_path(shard), self.image_format)
        shard_name = self.folder.plan.shard_name(shard)
        for index, pixels in zip(indices, images):
            record = self.job.record(index)
            data = encode_image(pixels, self.image_format)
            self._open.write(record, data)
            self._rows.append({**dict(zip(MANIFEST_COLUMNS, (record.key, shard_name, len(data)))), **record.meta})
        self.bar.update(len(indices))

    def _commit(self, shard: int) -> None:
        # The manifest part lands before the shard, so a finished shard always has its part.
        self.folder.write_part(shard, self._rows)
        self._open.commit()
        self.stats.bytes += self.folder.shard_path(shard).stat().st_size
        self.stats.images += len(self._rows)
        self.stats.shards_written += 1
        self._open, self._rows = None, []


def run_job(
    job: Job,
    folder: ShardFolder,
    *,
    rank: int,
    world: int,
    batch_size: int,
    steps: int,
    guidance: float,
    image_format: str,
    progress: bool = True,
    on_first_batch: Callable[[float, int], None] | None = None,
) -> RunStats:
    """Write this rank's unfinished shards, then merge the manifest if the folder is complete.

    `on_first_batch(images_per_s, images_left)` sees the rate of the first batch, before the
    rest of the job starts. A full disk stops the run with one line saying how much more space
    it needs; the shard being written is removed, so a rerun resumes from the last one finished."""
    plan = job.plan
    stats = RunStats()
    total = plan.rank_samples(rank, world)
    bar = tqdm(total=total, unit="img", disable=not progress, desc=f"rank {rank}" if world > 1 else "synth")
    writer = _Writer(job, folder, image_format, bar, stats)
    writer.start()
    start = time.perf_counter()
    try:
        try:
            for shard in plan.shards_for_rank(rank, world):
                if folder.is_complete(shard):  # checked as the loop reaches it: no up-front pass over every shard
                    stats.shards_skipped += 1
                    total -= len(plan.samples(shard))
                    bar.total = total
                    bar.refresh()
                    continue
                for indices in plan.batches(shard, batch_size):
                    seeds = [job.seed(i) for i in indices]
                    images = job.generator.sample(job.condition(indices), seeds, steps, guidance)
                    _put(writer, (shard, indices, images))
                    if on_first_batch is not None:
                        on_first_batch(len(indices) / (time.perf_counter() - start), total - len(indices))
                        on_first_batch = None
                _put(writer, (shard, None, None))
        finally:
            writer.inbox.put(None)
            writer.join()
            bar.close()
        if writer.error is not None:
            raise writer.error
        stats.seconds = time.perf_counter() - start
        stats.complete = folder.merge(folder.read_header())
    except OSError as err:
        if not is_disk_full(err):
            raise
        # Finished shards say what an image costs on disk, tar headers and padding included.
        per_image = (stats.bytes / stats.images if stats.images
                     else sample_bytes_bound(job.generator.image_size, job.generator.channels))
        raise disk_full_error("--out", folder.root, "its shards", (total - stats.images) * per_image) from None
    return stats


def _put(writer: _Writer, item: tuple) -> None:
    if writer.error is not None:
        raise writer.error
    writer.inbox.put(item)


def generate_shards(job: Job, out: Path, *, rank: int = 0, world: int = 1, overwrite: bool = False,
                    progress: bool = True, on_ready: Callable[[Job], None] | None = None,
                    on_first_batch: Callable[[float, int], None] | None = None) -> RunStats:
    """Check and prepare `out` for this job, then write this rank's unfinished shards.

    `on_ready` is called once the folder is checked and prepared, before sampling starts.
    """
    folder = ShardFolder(out, job.plan)
    try:
        folder.prepare(job.header(), job.hashed_config(), rank, overwrite)
    except OSError as err:
        if not is_disk_full(err):
            raise
        raise disk_full_error("--out", out, "dataset.json", job.plan.count * sample_bytes_bound(
            job.generator.image_size, job.generator.channels)) from None
    if on_ready is not None:
        on_ready(job)
    s = job.settings
    return run_job(job, folder, rank=rank, world=world, batch_size=s.batch_size, steps=s.steps,
                   guidance=s.guidance, image_format=s.image_format, progress=progress, on_first_batch=on_first_batch)
