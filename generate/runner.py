"""Runs a generation job's shards for one rank: batched sampling in the main thread, encoding in a
pool of threads, and a writer thread that packs the encoded images into tar members and appends them
to the shard in index order, so that the generator never waits on the CPU work and the shards' bytes
do not depend on the pool. Each encoder task takes a run of consecutive samples, so that per sample
there is neither a task nor a wake-up of the writer. The encoders do nothing but encode, which runs
mostly without the GIL; the writer's packing (records, tar headers, manifest rows: Python, a few
hundredths of a JPEG encode at 256 px) holds the GIL while they run their codecs, instead of
lengthening each encoder's turn (docs/results.md, "The writer against its alternatives", measures
both places).

Threads suffice because Pillow runs its codecs without the GIL when it encodes into a file, which
`writer.encode_image` gives it (into a BytesIO, JPEG holds the GIL); encoder processes, each with a
GIL of its own, measured no faster (docs/results.md, "The writer's ceiling at 256 px" and "The
writer against its alternatives")."""

from __future__ import annotations

import queue
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, Protocol, Sequence

import click
import numpy as np
import torch
from tqdm import tqdm

from ptcommon.launcher import detect
from ptcommon.outputs import disk_full_error, is_disk_full
from ptcommon.shards import DATASET_FILE, MANIFEST_COLUMNS, sample_bytes_bound
from ptcommon.storage import Location

from .filtering import Screen
from .generator import Generator, Start
from .plan import WorkPlan
from .store import ShardFolder
from .writer import DEFAULT_QUALITY, SampleRecord, ShardWriter, encode_sample, sample_bytes

# Batches allowed in flight between sampler and writer (each already handed to the encoders):
# enough to keep every encoder busy and hide a hiccup, few enough that memory stays flat however
# many images a job makes.
_QUEUE_DEPTH = 4
# How often an idle writer checks that the thread feeding it is still there.
_PRODUCER_CHECK_S = 0.1


def rank_cores() -> int:
    """The cores this rank may keep busy: an srun task's --cpus-per-task, else its share of the
    cores it may run on among the node's ranks (ptcommon/launcher.py)."""
    return detect().cores


def default_encode_workers() -> int:
    """--encode-workers' default: this rank's cores, less one for sampling."""
    return max(1, rank_cores() - 1)


class Job(Protocol):
    """What the runner needs from a kind of generation job (class-conditional synthesis, PCS). A job
    whose `screen` attribute is set (ptgen synth --classifier) also has `label(index)`."""

    plan: WorkPlan
    generator: Generator
    settings: JobSettings

    def header(self) -> dict: ...

    def hashed_config(self) -> dict: ...

    def condition(self, indices: range) -> torch.Tensor: ...

    def start(self, indices: Sequence[int]) -> Start | None:
        """The images these samples begin from (`Generator.sample`'s `start`); None: from noise."""

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
    quality: int | None = None  # JPEG's and WebP's; None: the writer's default

    def hashed(self) -> dict:
        """The settings that decide the shards' bytes (not the model SPEC, not the batch size)."""
        # `compiled` only when on, and `quality` only when not the default: a flag at its default
        # leaves a dataset's hash as it is without the flag.
        quality = self.quality if self.quality not in (None, DEFAULT_QUALITY) else None
        return {"steps": self.steps, "guidance": self.guidance, "seed": self.seed, "shard_size": self.shard_size,
                "image_format": self.image_format, "dtype": self.dtype, **({"compiled": True} if self.compiled else {}),
                **({"quality": quality} if quality is not None else {})}


@dataclass
class RunStats:
    images: int = 0  # in shards this run committed
    shards_written: int = 0
    shards_skipped: int = 0
    bytes: int = 0  # of shards this run committed
    seconds: float = 0.0
    complete: bool = False
    batch_size: int = 0  # the sampling batch that fitted in memory (below --batch-size after an out-of-memory)
    sampled: int = 0  # images the generator made: with a screen, every candidate
    kept: int = 0  # samples decided: with a screen, those whose slot kept a candidate; else as sampled

    @property
    def images_per_s(self) -> float:
        return self.images / self.seconds if self.seconds else 0.0


def encode_images(image_format: str, quality: int | None, indices: range, images: np.ndarray) -> list[bytes]:
    """An encoder's task: a run of consecutive samples' images, encoded."""
    return [encode_sample(index, pixels, image_format, quality) for index, pixels in zip(indices, images)]


def pack_samples(job: Job, image_format: str, shard_name: str, indices: range,
                 encoded: list[bytes]) -> tuple[bytes, list[dict]]:
    """Encoded images of consecutive samples as their tar members, joined, and their manifest rows."""
    parts, rows = [], []
    for index, image in zip(indices, encoded):
        record = job.record(index)
        parts.append(sample_bytes(record, image_format, image))
        rows.append({**dict(zip(MANIFEST_COLUMNS, (record.key, shard_name, len(image)))), **record.meta})
    return b"".join(parts), rows


class _Writer(threading.Thread):
    """Consumes (shard, indices, encodings) batches, each encoding a future of the encoder pool
    that gives a run of samples' encoded images; a (shard, None, None) item commits the shard, and
    None ends the thread, as does the end of the thread that made it without having sent that.

    Not a daemon: a job's records run torch code here (PCS's top classes), and a thread inside torch
    when the interpreter finalizes is ended there by pthread_exit, under a noexcept destructor, which
    aborts the process ("terminate called without an active exception"). A KeyboardInterrupt may
    land anywhere in the producer, even between the two lines that hand this thread its None and
    wait for it; the interpreter's exit then waits for it instead, and it ends on its own."""

    def __init__(self, job: Job, folder: ShardFolder, image_format: str, quality: int | None, bar: tqdm,
                 stats: RunStats, encode_workers: int):
        super().__init__(name="shard-writer")
        self.producer = threading.current_thread()
        self.job, self.folder, self.image_format, self.quality = job, folder, image_format, quality
        self.bar, self.stats = bar, stats
        self.inbox: queue.Queue = queue.Queue(maxsize=_QUEUE_DEPTH)
        self.encoders = ThreadPoolExecutor(encode_workers, thread_name_prefix="encode")
        self.encode_workers = encode_workers
        self.error: BaseException | None = None
        self._open: ShardWriter | None = None
        self._rows: list[dict] = []

    def encode(self, indices: range, images: np.ndarray) -> list[Future]:
        """Start encoding a batch (called by the sampler, so encoding overlaps the next batch's
        sampling), in one run of samples per encoder: the batches queued behind keep them all busy."""
        run = -(-len(indices) // self.encode_workers)
        return [self.encoders.submit(self._encode_run, indices[i : i + run], images[i : i + run])
                for i in range(0, len(indices), run)]

    def _encode_run(self, indices: range, images: np.ndarray) -> list[bytes]:
        """An encoder's task."""
        return encode_images(self.image_format, self.quality, indices, images)

    def _next(self) -> tuple | None:
        while True:
            try:
                return self.inbox.get(timeout=_PRODUCER_CHECK_S)
            except queue.Empty:
                if not self.producer.is_alive():  # the main thread counts as ended once the interpreter exits
                    return None

    def run(self) -> None:
        try:
            while (item := self._next()) is not None:
                self._handle(*item)
        except BaseException as err:  # re-raised in the main thread
            self.error = err
            while (item := self._next()) is not None:  # unblock the producer until it sees the error
                for encoding in item[2] or ():
                    encoding.cancel()
        finally:  # the producer submits nothing after its None, so the pool may go now
            self.encoders.shutdown(cancel_futures=True)
            if self._open is not None:
                self._open.abort()

    def _handle(self, shard: int, indices: range | None, encodings: list[Future] | None) -> None:
        if indices is None:
            self._commit(shard)
            return
        samples, rows = self._pack(shard, indices, encodings)
        if self._open is None:
            self._open = ShardWriter(self.folder.shard_path(shard))
        self._open.write(samples)
        self._rows += rows
        self.bar.update(len(indices))

    def _pack(self, shard: int, indices: range, encodings: list[Future]) -> tuple[bytes, list[dict]]:
        """The batch's tar members, joined, and its manifest rows, from its encoders' futures."""
        encoded = [image for encoding in encodings for image in encoding.result()]
        return pack_samples(self.job, self.image_format, self.folder.plan.shard_name(shard), indices, encoded)

    def _commit(self, shard: int) -> None:
        # The manifest part lands before the shard, so a finished shard always has its part.
        self.folder.write_part(shard, self._rows, self._open.final_size)
        self._open.commit()
        self.stats.bytes += self.folder.publish(shard)
        self.stats.images += len(self._rows)
        self.stats.shards_written += 1
        self._open, self._rows = None, []


def _is_out_of_memory(err: BaseException) -> bool:
    # CUDA raises OutOfMemoryError, or for a cuBLAS / cuDNN workspace a RuntimeError naming the
    # library's allocation status; the CPU allocator a RuntimeError naming itself.
    return isinstance(err, torch.OutOfMemoryError) or (isinstance(err, RuntimeError) and any(
        sign in str(err) for sign in ("DefaultCPUAllocator: can't allocate memory", "CUBLAS_STATUS_ALLOC_FAILED",
                                      "CUDNN_STATUS_ALLOC_FAILED")))


def _sample(job: Job, indices: Sequence[int], seeds: Sequence[int], steps: int, guidance: float,
            stats: RunStats) -> np.ndarray:
    """The images of samples INDICES from SEEDS (with a screen, an index recurs for each of its
    candidates), in sub-batches of `stats.batch_size`, halved at each out-of-memory.

    A sample's pixels depend on its own seed alone, not on its batch-mates, so a smaller batch
    gives the same images; the size that fitted is kept for the rest of the run."""
    parts, start = [], 0
    while start < len(indices):
        chunk = slice(start, start + stats.batch_size)
        try:
            parts.append(job.generator.sample(job.condition(indices[chunk]), seeds[chunk], steps, guidance,
                                              start=job.start(indices[chunk])))
            start += stats.batch_size
            continue
        except RuntimeError as err:  # torch.OutOfMemoryError is one
            if not _is_out_of_memory(err):
                raise
        # Out of memory. Only here, past the except block, is the traceback gone, and with it the
        # failed batch's tensors that CUDA's cache could not give back while it lived.
        if len(indices[chunk]) == 1:
            raise click.ClickException(f"--batch-size: out of memory even at one image (sample {indices[start]}): the "
                                       f"model does not fit this device at --dtype {job.settings.dtype}; try a "
                                       "half-precision --dtype or a device with more memory")
        stats.batch_size = len(indices[chunk]) // 2
        click.echo(f"ptgen: out of memory at a batch of {len(indices[chunk])}; going on at {stats.batch_size} "
                   "(each image keeps its own noise)", err=True)
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    return parts[0] if len(parts) == 1 else np.concatenate(parts)


def _batches(job: Job, shard: int, batch_size: int, steps: int, guidance: float,
             stats: RunStats) -> Iterator[tuple[range, np.ndarray | None]]:
    """The shard's samples in order, in runs of consecutive ones with their images, a run after
    each generator batch. A job with a screen (ptgen synth --classifier) has its own."""
    screen = getattr(job, "screen", None)
    if screen is not None:
        yield from _screened(job, screen, job.plan.samples(shard), batch_size, steps, guidance, stats)
        return
    for indices in job.plan.batches(shard, batch_size):
        images = _sample(job, indices, [job.seed(i) for i in indices], steps, guidance, stats)
        stats.sampled += len(indices)
        stats.kept += len(indices)
        yield indices, images


def _screened(job: Job, screen: Screen, samples: range, batch_size: int, steps: int, guidance: float,
              stats: RunStats) -> Iterator[tuple[range, np.ndarray | None]]:
    """SAMPLES, each its slot's first candidate that SCREEN keeps (generate/filtering.py), in runs of
    consecutive samples as they are decided: after each generator batch, the run from the first
    sample not yet handed on up to the first undecided one (empty while that one waits).

    A batch gives each undecided sample its next candidate, earliest samples first; once fewer are
    left than a batch holds, each gets several, up to the candidates a kept sample has cost so far,
    so that the batches stay about full to the shard's end. A candidate drawn after its sample's
    kept one is wasted, never used: which candidates share a batch changes the speed, not what a
    sample keeps."""
    cap = screen.settings.max_candidates
    undecided = dict.fromkeys(samples, 0)  # sample -> its next candidate
    kept: dict[int, np.ndarray] = {}
    handed = samples.start
    while undecided:
        draws: list[tuple[int, int]] = []
        for depth in range(min(cap, screen.cost())):
            more = [(i, c + depth) for i, c in undecided.items() if c + depth < cap]
            draws += more[: batch_size - len(draws)]
            if not more or len(draws) == batch_size:
                break
        slots = [i for i, _ in draws]
        images = _sample(job, slots, [screen.candidate_seed(i, c) for i, c in draws], steps, guidance, stats)
        labels = [job.label(i) for i in slots]
        stats.sampled += len(draws)
        # In order: a sample's candidates come in the order drawn, so its first kept one is kept.
        for (i, c), image, label, confidence in zip(draws, images, labels, screen.confidence(images, labels)):
            if i not in undecided:  # an earlier candidate of it was kept
                continue
            if screen.decide(i, label, c, confidence):
                kept[i] = image
                del undecided[i]
                stats.kept += 1
            else:
                undecided[i] = c + 1
        end = handed
        while end in kept:
            end += 1
        run = range(handed, end)
        yield run, np.stack([kept.pop(i) for i in run]) if run else None
        handed = end


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
    quality: int | None = None,
    encode_workers: int = 1,
    progress: bool = True,
    on_first_batch: Callable[[float, int, tuple[int, int] | None], None] | None = None,
) -> RunStats:
    """Write this rank's unfinished shards, then merge the manifest if the folder is complete.

    `on_first_batch(images_per_s, images_left, screened)` sees the rate of the first batch, before
    the rest of the job starts; with a screen, the rate is of candidates, and SCREENED is (kept,
    drawn) of that batch (else None). A full disk stops the run with one line saying how much more space
    it needs; the shard being written is removed, so a rerun resumes from the last one finished."""
    plan = job.plan
    stats = RunStats(batch_size=batch_size)
    total = plan.rank_samples(rank, world)
    # What the first batch's estimate counts: the images of this rank's shards not yet in the folder,
    # from one listing and by arithmetic, since a plan may hold more shards than can be gone through
    # before the first starts (each shard's own check comes as the loop reaches it).
    mine = plan.shards_for_rank(rank, world)
    unwritten = total - sum(len(plan.samples(k)) for k in map(plan.shard_of, folder.landed())
                            if k is not None and k in mine)
    bar = tqdm(total=total, unit="img", disable=not progress, desc=f"rank {rank}" if world > 1 else "synth")
    writer = _Writer(job, folder, image_format, quality, bar, stats, encode_workers)
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
                for indices, images in _batches(job, shard, batch_size, steps, guidance, stats):
                    if indices:
                        _put(writer, (shard, indices, writer.encode(indices, images)))
                    if on_first_batch is not None:
                        screened = (stats.kept, stats.sampled) if getattr(job, "screen", None) else None
                        on_first_batch(stats.sampled / (time.perf_counter() - start), unwritten - stats.kept,
                                       screened)
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
        raise disk_full_error("--out", folder.local, "its shards", (total - stats.images) * per_image) from None
    return stats


def _put(writer: _Writer, item: tuple) -> None:
    if writer.error is not None:
        raise writer.error
    writer.inbox.put(item)


def generate_shards(job: Job, out: Location | Path, *, rank: int = 0, world: int = 1, overwrite: bool = False,
                    encode_workers: int = 1, progress: bool = True, on_ready: Callable[[Job], None] | None = None,
                    on_first_batch: Callable[[float, int, tuple[int, int] | None], None] | None = None,
                    staging: Path | None = None) -> RunStats:
    """Check and prepare `out` for this job, then write this rank's unfinished shards (for a URL,
    through the local folder STAGING).

    `on_ready` is called once the folder is checked and prepared, before sampling starts.
    """
    folder = ShardFolder(out, job.plan, staging)
    try:
        folder.prepare(job.header(), job.hashed_config(), rank, overwrite)
    except OSError as err:
        if not is_disk_full(err):
            raise
        raise disk_full_error("--out", folder.local, DATASET_FILE, job.plan.count * sample_bytes_bound(
            job.generator.image_size, job.generator.channels)) from None
    if on_ready is not None:
        on_ready(job)
    s = job.settings
    return run_job(job, folder, rank=rank, world=world, batch_size=s.batch_size, steps=s.steps,
                   guidance=s.guidance, image_format=s.image_format, quality=s.quality, encode_workers=encode_workers,
                   progress=progress, on_first_batch=on_first_batch)
