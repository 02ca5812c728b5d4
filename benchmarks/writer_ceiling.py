"""The writing side's ceiling: how fast one core encodes 256 px images, and how close `ptgen synth`'s
writer comes to that rate times its encoder threads when the generator costs nothing.

  gil       whether Pillow releases the GIL while it encodes (what lets the writer use threads):
            images/s of two threads encoding against one, into the writer's scratch file
            (`generate.writer.encode_image`) and into a BytesIO; two threads reach twice one where
            the codec runs without the GIL; and of two processes, a GIL each, which tell what two
            encodes cost each other on the cores from what the GIL costs
  bare      `generate.writer.encode_image` (the shards' own encoder settings) in one thread, per
            format (and per --qualities for JPEG and WebP), on photo-like content: 256 px crops of
            scikit-learn's two sample photographs (`load_sample_images`, and their mirror images),
            since a random-weight model's noise compresses unlike real samples; with the bytes per
            image and the decode rate of one core through the shard reader's decoder
            (`ptcommon.shards.open_image`), the training side's cost
  pipeline  `ptgen synth`'s runner (encoder pool, tar writer, manifest parts) fed by a stand-in
            generator that hands back the stored crops at no cost, at each --workers, writing into
            the temporary folder and into a folder in memory (/dev/shm, where there is one), against
            bare x workers and against the bare encode run in as many
            threads (what threads of it give together), at each format's default quality,
            in --rounds slices interleaved with the bare encode's (this machine's speed drifts
            from minute to minute, and a ratio must not divide one minute by another); with the CPU
            time of all the process's threads per image beside the bare encode's, which tells work
            added (the CPU share) from waiting (the rest of a shortfall)

`report` writes the table into docs/results.md and the cores a GPU needs into docs/gpu.md,
from the GPU image rates computed there (FLOPs per image at a model FLOP utilisation of 0.35).

    python -m benchmarks.writer_ceiling run --report      # on a quiet machine: a few minutes; writes the tables
    python -m benchmarks.writer_ceiling report            # the tables again, from the last run's file
    python -m benchmarks.writer_ceiling run --tiny --out runs/writer_ceiling-tiny.json   # proof, seconds
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import io
import json
import math
import multiprocessing
import os
import platform
import shutil
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Sequence

import numpy as np
from PIL import Image

from benchmarks.common import ROOT, cli, doc_flag, flag, ints, out_flag, save_result, table, words, write_section
from generate.runner import encode_images, generate_shards, pack_samples
from generate.synth import SynthJob, SynthSettings
from generate.writer import DEFAULT_QUALITY, LOSSY, encode_image
from ptcommon.shards import IMAGE_FORMATS, open_image

if TYPE_CHECKING:
    import torch

SIZE = 256
DEFAULT_OUT = ROOT / "runs" / "writer_ceiling.json"
# Where the writer also runs with storage taken out of its cost: a folder in memory (Linux's tmpfs).
MEMORY = Path("/dev/shm")
GPU_MD = ROOT / "docs" / "gpu.md"
# GPU image rates as docs/gpu.md computes them: FLOPs per image (counted by
# `python -m benchmarks.synth_throughput flops [--generator sd15|biggan]`; the diffusion models at
# 25 steps with guidance) at 0.35 of an H100's 989 TFLOP/s dense bf16.
H100_BF16, MFU = 989e12, 0.35
# (FLOPs per image, pixels a side)
GPU_MODELS = {"DiT-XL/2, 256 px, 25 steps": (12.06e12, 256), "SD 1.5, 512 px, 25 steps": (36.34e12, 512),
              "BigGAN-deep, 256 px": (77.7e9, 256)}


def photo_crops() -> np.ndarray:
    """256 px RGB crops of scikit-learn's sample photographs on a grid, and their mirror images."""
    from sklearn.datasets import load_sample_images

    crops = []
    for photo in load_sample_images().images:
        h, w, _ = photo.shape
        for y in np.linspace(0, h - SIZE, 3).astype(int):
            for x in np.linspace(0, w - SIZE, 4).astype(int):
                crop = photo[y : y + SIZE, x : x + SIZE]
                crops += [crop, crop[:, ::-1]]
    return np.ascontiguousarray(np.stack(crops), dtype=np.uint8)


# The shards' encoder settings, for the GIL check's contrast: `gil_check` refuses to run where
# they give other bytes than `encode_image`, since the two sinks would then do different work.
BUFFER_SAVE_ARGS = {"png": {"format": "PNG", "compress_level": 6},
                    "jpg": {"format": "JPEG", "quality": DEFAULT_QUALITY},
                    "webp": {"format": "WEBP", "quality": DEFAULT_QUALITY, "method": 4}}


def encode_into_buffer(pixels: np.ndarray, fmt: str) -> bytes:
    """`encode_image`'s bytes, encoded into a BytesIO as a script usually would (the GIL check's contrast)."""
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, **BUFFER_SAVE_ARGS[fmt])
    return buf.getvalue()


def cpu_seconds() -> float:
    """CPU time of all this process's threads."""
    return time.process_time()


@dataclass
class Tally:
    """Images, wall seconds and CPU seconds (`cpu_seconds`) summed over a measurement's slices."""

    images: int = 0
    seconds: float = 0.0
    cpu: float = 0.0

    def add(self, images: int, seconds: float, cpu: float) -> float:
        """Count one slice; return its images/s."""
        self.images, self.seconds, self.cpu = self.images + images, self.seconds + seconds, self.cpu + cpu
        return images / seconds

    @property
    def rate(self) -> float:
        return self.images / self.seconds

    @property
    def cpu_per_image(self) -> float:
        return self.cpu / self.images


def encode_until(encode: Callable[[np.ndarray, str], bytes], fmt: str, crops: np.ndarray, k: int,
                 stop: float) -> int:
    """The `k`th of several loops (threads or processes) encoding the crops in turn, each from its
    own offset, until `stop` (and at least once); how many it encoded."""
    done = 0
    while time.perf_counter() < stop or not done:
        encode(crops[(done + k) % len(crops)], fmt)
        done += 1
    return done


def threads_rate(encode: Callable[[np.ndarray, str], bytes], fmt: str, crops: np.ndarray, threads: int,
                 seconds: float, tally: Tally | None = None) -> float:
    """Images/s of `threads` threads encoding the crops in turn for about `seconds`, counted into
    `tally` where one is given."""
    counts, stop, cpu = [0] * threads, time.perf_counter() + seconds, cpu_seconds()

    def loop(k: int) -> None:
        counts[k] = encode_until(encode, fmt, crops, k, stop)

    start = time.perf_counter()
    workers = [threading.Thread(target=loop, args=(k,)) for k in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    elapsed = time.perf_counter() - start
    return (tally or Tally()).add(sum(counts), elapsed, cpu_seconds() - cpu)


def processes_rate(encode: Callable[[np.ndarray, str], bytes], fmt: str, crops: np.ndarray, processes: int,
                   seconds: float, tally: Tally) -> float:
    """Images/s of `processes` forked processes, each doing what a thread of `threads_rate` does
    for about `seconds`, with a GIL of its own; counted into `tally` (the CPU time not counted)."""
    context = multiprocessing.get_context("fork")  # the children run `encode` as given, closures too
    receiver, sender = context.Pipe(duplex=False)

    def loop(k: int) -> None:
        start = time.perf_counter()
        done = encode_until(encode, fmt, crops, k, start + seconds)
        sender.send((done, time.perf_counter() - start))

    children = [context.Process(target=loop, args=(k,)) for k in range(processes)]
    for child in children:
        child.start()
    sender.close()  # the children hold theirs: one that dies without sending ends recv() with EOFError
    counts = [receiver.recv() for _ in children]
    for child in children:
        child.join()
    # Each child times its own loop, so a child's start-up is not counted as time it encoded.
    rate = sum(done / elapsed for done, elapsed in counts)
    images = sum(done for done, _ in counts)
    tally.add(images, images / rate, 0.0)
    return rate


def scaling(encode: Callable[[np.ndarray, str], bytes], fmt: str, crops: np.ndarray, seconds: float,
            rounds: int) -> dict:
    """Images/s of one thread, of two, and of two processes running `encode`, in `rounds`
    interleaved slices of `seconds` in all for each."""
    encode(crops[0], fmt)  # warm-up
    one, two, two_processes = Tally(), Tally(), Tally()
    for _ in range(rounds):
        for threads, tally in ((1, one), (2, two)):
            threads_rate(encode, fmt, crops, threads, seconds / rounds, tally)
        processes_rate(encode, fmt, crops, 2, seconds / rounds, two_processes)
    return {"one_thread": one.rate, "two_threads": two.rate, "scaling": two.rate / one.rate,
            "two_processes": two_processes.rate, "processes_scaling": two_processes.rate / one.rate}


def gil_check(crops: np.ndarray, seconds: float, rounds: int) -> dict:
    """Per format, images/s of one thread and of two, encoding into the writer's scratch file
    (`encode_image`) and into a BytesIO: where Pillow holds the GIL, two threads give no more than
    one. And the same for SHA-256 of each crop's pixels, which runs wholly without the GIL: what
    two threads on this machine's cores give where nothing in them waits for the GIL."""
    for fmt in IMAGE_FORMATS:
        if encode_into_buffer(crops[0], fmt) != encode_image(crops[0], fmt):
            raise SystemExit(f"writer_ceiling: BUFFER_SAVE_ARGS[{fmt!r}] differs from generate.writer's settings")
    out: dict = {fmt: {sink: scaling(encode, fmt, crops, seconds, rounds)
                       for sink, encode in (("file", encode_image), ("bytesio", encode_into_buffer))}
                 for fmt in IMAGE_FORMATS}
    out["sha256"] = {"-": scaling(lambda pixels, fmt: hashlib.sha256(pixels).digest(), "", crops, seconds, rounds)}
    return out


def bare_slice(crops: np.ndarray, fmt: str, quality: int | None, seconds: float,
               tally: Tally) -> tuple[list[bytes], float]:
    """One thread encoding the crops in turn for about `seconds`, counted into `tally`; one
    encoding of each crop and the images/s. Only one round is kept: keeping all would add a page
    fault every few kB to the bare encode, a cost the writer does not pay."""
    encode_image(crops[0], fmt, quality)  # warm-up
    encoded, done, start, cpu = [], 0, time.perf_counter(), cpu_seconds()
    while (elapsed := time.perf_counter() - start) < seconds or done < len(crops):
        image = encode_image(crops[done % len(crops)], fmt, quality)
        if done < len(crops):
            encoded.append(image)
        done += 1
    return encoded, tally.add(done, elapsed, cpu_seconds() - cpu)


def decode_rate(encoded: list[bytes], fmt: str, seconds: float) -> float:
    """Images/s of one thread decoding the encodings in turn through the shard reader's decoder."""
    decoded, start = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - start) < seconds or decoded < len(encoded):
        open_image(encoded[decoded % len(encoded)], "benchmark", fmt)
        decoded += 1
    return decoded / elapsed


class StoredImages:
    """A stand-in generator: the stored crops in turn, at no sampling cost. It has what `ptgen
    synth`'s job and runner ask of a generator, not the whole `generate.generator.Generator`
    interface, whose rest serves models loaded from folders."""

    image_size, channels = SIZE, 3

    def __init__(self, crops: np.ndarray):
        self.crops = crops
        self.num_classes = len(crops)
        self.class_names = [f"crop {i}" for i in range(len(crops))]

    def fingerprint(self) -> dict:
        return {"backend": "stored", "crops": len(self.crops)}

    def sample(self, condition: torch.Tensor, seeds: Sequence[int], steps: int, guidance: float) -> np.ndarray:
        """The crops themselves, nothing copied (the memory the bare rate encodes from): the
        pipeline asks for its classes in rounds, each batch one round from the first class."""
        if not np.array_equal(condition.numpy(), np.arange(len(condition))):
            raise ValueError("the stored-images stand-in takes its classes in order, each batch from the first")
        return self.crops[: len(condition)]


def stand_in_job(crops: np.ndarray, fmt: str, images: int) -> SynthJob:
    """`ptgen synth`'s job over the stored crops, for at least `images` samples."""
    # A batch is one round of the classes, and a shard whole rounds, so that every batch starts at
    # the first class.
    per_class, batch_size = math.ceil(images / len(crops)), len(crops)
    settings = SynthSettings(model="stored", steps=1, guidance=1.0, seed=0, shard_size=20 * batch_size,
                             image_format=fmt, dtype="fp32", compiled=False, batch_size=batch_size,
                             class_ids=tuple(range(len(crops))), per_class=per_class)
    return SynthJob(settings, StoredImages(crops))


def serial_slice(crops: np.ndarray, fmt: str, seconds: float, tally: Tally) -> float:
    """The writer's whole per-sample work (the sampler's seeds, an encoder's task, then the
    writer's packing: record, tar members, manifest row) in this one thread, for about `seconds`,
    counted into `tally`; its images/s. What the pool would reach with no cost of its own."""
    job, done = stand_in_job(crops, fmt, 10**9), 0
    start, cpu = time.perf_counter(), cpu_seconds()
    while (elapsed := time.perf_counter() - start) < seconds or not done:
        indices = range(done, done + len(crops))
        [job.seed(i) for i in indices]
        pack_samples(job, fmt, "stand-in.tar", indices, encode_images(fmt, None, indices, crops))
        done += len(crops)
    return tally.add(done, elapsed, cpu_seconds() - cpu)


def pipeline_slice(crops: np.ndarray, fmt: str, workers: int, images: int, work: Path, tally: Tally) -> float:
    """The writer at `workers` encoders writing `images` (rounded up to whole rounds of the crops),
    counted into `tally`; its images/s."""
    cpu = cpu_seconds()
    out = Path(tempfile.mkdtemp(dir=work))
    stats = generate_shards(stand_in_job(crops, fmt, images), out, encode_workers=workers, progress=False)
    cpu = cpu_seconds() - cpu
    shutil.rmtree(out)  # a slice writes hundreds of MB; the next needs none of it
    return tally.add(stats.images, stats.seconds, cpu)


def measure_format(crops: np.ndarray, fmt: str, quality: int | None, workers: list[int], seconds: float,
                   rounds: int, work: Path, memory: Path | None) -> dict:
    """One format at one quality: the bare encode, and where `workers` is not empty the writer at
    each worker count, in `rounds` interleaved slices (bare, the one-thread row, then for each
    worker count the bare encode in as many threads and the writer, writing into `work` and, where
    given, into `memory`, in turn), so that the machine's drift from minute to minute weighs on
    both sides of a ratio alike."""
    bare, serial, pipes, encoded = Tally(), Tally(), {w: Tally() for w in workers}, []
    in_memory, memory_rounds = {w: Tally() for w in workers}, {w: [] for w in workers}
    # The bare encode in as many threads as the writer has encoders: what threads of it give
    # together, less than one thread's rate times the threads where they wait for the GIL inside
    # the encode; the writer cannot beat it, so its ratio tells the writer's own loss. In one
    # thread it is the bare encode itself.
    together = {w: bare if w == 1 else Tally() for w in workers}
    together_rounds: dict[int, list[float]] = {w: [] for w in workers}
    per_round: dict[str, list[float]] = {str(w): [] for w in ["serial", *workers]}
    slice_seconds = seconds / (rounds if workers else 1)
    for round_ in range(rounds if workers else 1):
        encoded, slice_rate = bare_slice(crops, fmt, quality, slice_seconds, bare)
        if workers:
            per_round["serial"].append(serial_slice(crops, fmt, slice_seconds, serial) / slice_rate)
        for w in workers:
            together_rate = slice_rate if w == 1 else threads_rate(
                lambda pixels, fmt: encode_image(pixels, fmt, quality), fmt, crops, w, slice_seconds, together[w])
            images = max(len(crops), int(slice_rate * w * slice_seconds))
            # Disk and memory take turns going first: a slice's writeback may go on into the next.
            for folder in ([work, memory] if round_ % 2 else [memory, work]):
                if folder == work:
                    got = pipeline_slice(crops, fmt, w, images, work, pipes[w])
                    per_round[str(w)].append(got / (slice_rate * w))
                    together_rounds[w].append(got / together_rate)
                elif folder is not None:
                    got = pipeline_slice(crops, fmt, w, images, folder, in_memory[w])
                    memory_rounds[w].append(got / (slice_rate * w))
    row = {"format": fmt, "quality": quality, "bare_per_core": bare.rate, "bare_cpu_s": bare.cpu_per_image,
           "bytes_per_image": sum(map(len, encoded)) / len(encoded),
           "decode_per_core": decode_rate(encoded, fmt, seconds / 2), "pipeline": {}}
    if workers:
        row["serial"] = {"images_per_s": serial.rate, "cpu_s": serial.cpu_per_image,
                         "of_bare": serial.rate / bare.rate, "rounds": per_round["serial"]}
    for w, tally in pipes.items():
        row["pipeline"][str(w)] = {"images": tally.images, "images_per_s": tally.rate, "cpu_s": tally.cpu_per_image,
                                   "of_bare_x_workers": tally.rate / (bare.rate * w), "rounds": per_round[str(w)],
                                   "bare_in_workers_threads": together[w].rate,
                                   "of_bare_threads": tally.rate / together[w].rate, "threads_rounds": together_rounds[w]}
        if memory is not None:
            row["pipeline"][str(w)]["memory"] = {"images_per_s": in_memory[w].rate, "rounds": memory_rounds[w],
                                                 "of_bare_x_workers": in_memory[w].rate / (bare.rate * w)}
    return row


def run(args: argparse.Namespace) -> None:
    if args.cores:  # this process and every thread it starts
        os.sched_setaffinity(0, sorted(os.sched_getaffinity(0))[: args.cores])
    crops = photo_crops()
    seconds = 0.3 if args.tiny else args.seconds
    rounds = 1 if args.tiny else args.rounds
    result = {"command": " ".join(["python -m benchmarks.writer_ceiling", *sys.argv[1:]]), "tiny": args.tiny,
              "machine": {"cores": len(os.sched_getaffinity(0)), "processor": platform.processor() or platform.machine(),
                          "pillow": Image.__version__, "python": platform.python_version()},
              "crops": len(crops), "rounds": rounds, "gil": gil_check(crops, seconds / 3, rounds), "formats": {}}
    print("GIL:", json.dumps(result["gil"]), flush=True)
    memory = MEMORY if MEMORY.is_dir() and os.access(MEMORY, os.W_OK) else None
    with tempfile.TemporaryDirectory(prefix="writer-ceiling-") as tmp, \
            (tempfile.TemporaryDirectory(prefix="writer-ceiling-", dir=memory) if memory
             else contextlib.nullcontext()) as in_memory:
        result["work"] = {"folder": tempfile.gettempdir(), "filesystem": filesystem(Path(tmp)),
                          "memory": str(memory) if memory else None}
        for fmt in args.formats:
            for quality in (args.qualities if fmt in LOSSY else [None]):
                # The writer at the shards' own settings only.
                workers = args.workers if quality in (None, DEFAULT_QUALITY) else []
                row = measure_format(crops, fmt, quality, workers, seconds, rounds, Path(tmp),
                                     Path(in_memory) if in_memory else None)
                name = fmt if quality is None else f"{fmt} q{quality}"
                ratios = ", ".join(f"at {w}: {p['of_bare_x_workers']:.2f}" for w, p in row["pipeline"].items())
                print(f"{name}: encode {row['bare_per_core']:.1f} img/s"
                      + (f"; the writer {ratios} of bare x workers" if ratios else ""), flush=True)
                result["formats"][name] = row
    result["loadavg_15min"] = os.getloadavg()[2]
    save_result(args.out, result)
    if args.report:
        report(args)


def filesystem(path: Path) -> str:
    """The type of the filesystem `path` is on (Linux's mount table), or "unknown"."""
    try:
        mounts = [line.split()[1:3] for line in Path("/proc/mounts").read_text().splitlines()]
    except OSError:
        return "unknown"
    on = [(point, kind) for point, kind in mounts if path.resolve().is_relative_to(point)]
    return max(on, key=lambda m: len(m[0]))[1] if on else "unknown"


def memory_cells(pipeline: dict) -> list[str]:
    """The table's "into memory" cells of a worker count's measurement ("-" where it was not run)."""
    mem = pipeline.get("memory")
    if mem is None:
        return ["-"] * 3
    return [f"{mem['images_per_s']:.1f}", f"{mem['of_bare_x_workers']:.2f}", round_range(mem["rounds"])]


def cores_per_gpu(rate: float, per_core: float, efficiency: float) -> int:
    """Encoder threads to keep up with `rate` images/s, plus the core that drives the sampling."""
    return math.ceil(rate / (per_core * efficiency)) + 1


def round_range(ratios: list[float]) -> str:
    """The lowest and the highest of a measurement's per-round ratios."""
    return f"{min(ratios):.2f}-{max(ratios):.2f}"


def report(args: argparse.Namespace) -> None:
    result = json.loads(args.out.read_text())
    formats = result["formats"]
    rows, pipeline_rows = [], []
    for name, row in formats.items():
        rows.append([name, f"{row['bytes_per_image'] / 1e3:.1f}", f"{row['bare_per_core']:.1f}",
                     f"{row['decode_per_core']:.1f}"])
        if "serial" in row:
            p = row["serial"]
            pipeline_rows.append([name, "none: one thread", f"{p['images_per_s']:.1f}", f"{row['bare_per_core']:.1f}",
                                  f"{p['of_bare']:.2f}", round_range(p["rounds"]), "-", "-", "-",
                                  f"{p['cpu_s'] * 1e3:.2f} / {row['bare_cpu_s'] * 1e3:.2f}", "-", "-", "-"])
        for workers, p in row["pipeline"].items():
            pipeline_rows.append([name, workers, f"{p['images_per_s']:.1f}", f"{row['bare_per_core'] * int(workers):.1f}",
                                  f"{p['of_bare_x_workers']:.2f}", round_range(p["rounds"]),
                                  f"{p['bare_in_workers_threads']:.1f}", f"{p['of_bare_threads']:.2f}",
                                  round_range(p["threads_rounds"]),
                                  f"{p['cpu_s'] * 1e3:.2f} / {row['bare_cpu_s'] * 1e3:.2f}", *memory_cells(p)])
    gil_rows = [[fmt, sink, f"{g['one_thread']:.1f}", f"{g['two_threads']:.1f}", f"{g['scaling']:.2f}",
                 *([f"{g['two_processes']:.1f}", f"{g['processes_scaling']:.2f}"] if "two_processes" in g else ["-"] * 2)]
                for fmt, sinks in result["gil"].items() for sink, g in sinks.items()]
    m, work = result["machine"], result.get("work", {})
    caveat = " **Tiny proof run: not a measurement.**" if result["tiny"] else ""
    write_section("writer_ceiling", f"""
{result['crops']} crops of {SIZE} px from scikit-learn's sample photographs; {m['cores']} cores
({m['processor']}), Pillow {m['pillow']}, Python {m['python']}; load average over 15 minutes at
the end {result['loadavg_15min']:.2f}. Command: `{result['command']}`.{caveat} The writer writes
its shards into the temporary folder ({work.get('folder', '?')}, here a {work.get('filesystem', '?')}
filesystem) and, for the columns "into memory", into {work.get('memory') or 'no folder'} (tmpfs),
which takes the storage's cost (the kernel's copies and writeback, the fsync at each shard's
end) out of the writer's.

Pillow and the GIL: images/s of one encoder thread and of two, into a file (the writer's scratch
file, in memory) and into a BytesIO, in {result.get('rounds', 1)} interleaved rounds; a ratio near 2
means the codec runs without the GIL. Two processes do the same work with a GIL each, in the same
rounds: where two threads fall short of them, the shortfall is the GIL's (each encode takes it back
after each of its C calls and system calls); where both fall short of 2 alike, it is what two
encodes cost each other on this machine's cores. The last row, SHA-256 of each crop's pixels, runs
wholly without the GIL:

{table(["format", "encoded into", "1 thread img/s", "2 threads img/s", "2 threads / 1", "2 processes img/s",
        "2 processes / 1"], gil_rows)}

Per format, one core (encode with the shards' own settings; decode with the shard reader's):

{table(["format", "kB per image", "encode img/s per core", "decode img/s per core"], rows)}

The writer (`ptgen synth`'s runner) fed at no cost, at each format's default quality, measured in
{result.get('rounds', 1)} rounds that interleave it with the bare encode (bare, the one-thread row,
then for each worker count the bare encode in as many threads and the writer, into the
temporary folder and into memory, in turn), so that
the machine's drift weighs on both sides of a ratio alike: the ratio is the rounds' images/s
pooled over the bare rate pooled times the workers; "by round" gives the lowest and the highest
of the rounds' own ratios. The row without a pool is the writer's whole
per-sample work (the sampler's seeds, encode, record, tar members, manifest row) run in one
thread: what the pool would reach if threads cost nothing. "Bare in as many threads" is the bare
encode run in as many threads as the writer has encoders, in the same rounds: what threads of
the encode give together on this machine, the most a writer with encoder threads could reach
(the GIL table tells whether what they lose is the GIL's or the cores'). The CPU time per image
counts every
thread (sampler, encoders, writer): where it matches the bare encode's, a ratio short of 1 is
time spent waiting, not work added.

{table(["format", "encode workers", "pipeline img/s", "bare x workers", "ratio", "ratio by round",
        "bare in as many threads, img/s", "ratio to it", "by round", "CPU ms per image: pipeline (all threads) / bare",
        "into memory, img/s", "ratio", "by round"],
       pipeline_rows)}
""", args.doc)
    # Per format, the writer's worst measured share of bare x workers (at most 1).
    written = {name: row for name, row in formats.items() if row["pipeline"]}
    efficiency = {name: min(1.0, *(p["of_bare_x_workers"] for p in row["pipeline"].values()))
                  for name, row in written.items()}
    cores = []
    for model, (flops, side) in GPU_MODELS.items():
        rate = H100_BF16 * MFU / flops
        scale = (SIZE / side) ** 2  # encoding costs about its pixels
        cores.append([model, f"{rate:.1f}", *(str(cores_per_gpu(rate, row["bare_per_core"] * scale, efficiency[fmt]))
                                              for fmt, row in written.items())])
    shares = ", ".join(f"{fmt} {e:.2f}" for fmt, e in efficiency.items())
    write_section("writer_cores", f"""
### Cores a GPU needs for its writer

Each rank encodes with `--encode-workers` threads (default: its cores, that is in an srun step
its --cpus-per-task, else the cores it may use divided by the ranks on the node, less one for
sampling). The cores an H100 needs to keep up = ceil(its image
rate / (one core's bare rate x the writer's efficiency)) + 1, with the rates measured by
`python -m benchmarks.writer_ceiling run` (docs/results.md, "The writer's ceiling") and the
efficiency each format's lowest pipeline ratio measured there ({shares}); at 512 px an image
is taken to cost 4 times a 256 px one to encode (its pixels; computed, not measured). The GPU rates are computed
(989 TFLOP/s x 0.35 / FLOPs per image, as above), not measured.{caveat}

{table(["model", "H100 img/s (computed)", *(f"cores with {fmt}" for fmt in written)], cores)}
""", "-" if args.doc == "-" else GPU_MD)


def main() -> None:
    cli(__doc__,
        run=(run, [out_flag(DEFAULT_OUT), flag("--report", action="store_true", help="then write the tables"), doc_flag(),
                   flag("--tiny", action="store_true", help="a few images per measurement: proves the script"),
                   flag("--seconds", type=float, default=15.0,
                        help="about how long each measurement runs, over all its rounds"),
                   flag("--rounds", type=int, default=5,
                        help="slices each format's bare and writer measurements are interleaved in"),
                   flag("--formats", type=words, default=list(IMAGE_FORMATS)),
                   flag("--workers", type=ints, default=[1, 2]),
                   flag("--qualities", type=ints, default=[90, DEFAULT_QUALITY],
                        help="JPEG and WebP qualities to measure (the writer at the default only)"),
                   flag("--cores", type=int, default=0,
                        help="run on the first CORES of the cores this process may use (default: all of them)")]),
        report=(report, [out_flag(DEFAULT_OUT), doc_flag()]))


if __name__ == "__main__":
    main()
