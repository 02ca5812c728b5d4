"""The writing side's ceiling: how fast one core encodes 256 px images, and how close `ptgen synth`'s
writer comes to that rate times its encoder threads when the generator costs nothing.

  gil       whether Pillow releases the GIL while it encodes (what lets the writer use threads):
            images/s of two threads encoding against one, into the writer's scratch file
            (`generate.writer.encode_image`) and into a BytesIO; two threads reach twice one where
            the codec runs without the GIL
  bare      `generate.writer.encode_image` (the shards' own encoder settings) in one thread, per
            format (and per --qualities for JPEG and WebP), on photo-like content: 256 px crops of
            scikit-learn's two sample photographs (`load_sample_images`, and their mirror images),
            since a random-weight model's noise compresses unlike real samples; with the bytes per
            image and the decode rate of one core through the shard reader's decoder
            (`ptcommon.shards.open_image`), the training side's cost
  pipeline  `ptgen synth`'s runner (encoder pool, tar writer, manifest parts) fed by a stand-in
            generator that hands back the stored crops at no cost, at each --workers, against
            bare x workers (goal: at least 0.9), at each format's default quality; with the CPU
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
import io
import json
import math
import os
import platform
import resource
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
from PIL import Image

from benchmarks.common import ROOT, table, write_section
from generate.generator import Generator
from generate.runner import generate_shards
from generate.synth import SynthJob, SynthSettings
from generate.writer import _SAVE_ARGS, DEFAULT_QUALITY, LOSSY, encode_image
from ptcommon.shards import IMAGE_FORMATS, open_image

SIZE = 256
DEFAULT_OUT = ROOT / "runs" / "writer_ceiling.json"
GPU_MD = ROOT / "docs" / "gpu.md"
# GPU image rates as docs/gpu.md computes them: FLOPs per image (counted by
# `python -m benchmarks.gpu_synth [--generator sd15|biggan] --flops-only`; the diffusion models at
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


def encode_into_buffer(pixels: np.ndarray, fmt: str) -> bytes:
    """`encode_image`'s bytes, encoded into a BytesIO as a script usually would (the GIL check's contrast)."""
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, **_SAVE_ARGS[fmt])
    return buf.getvalue()


def threads_rate(encode: Callable[[np.ndarray, str], bytes], fmt: str, crops: np.ndarray, threads: int,
                 seconds: float) -> float:
    """Images/s of `threads` threads encoding the crops in turn for about `seconds`."""
    counts, stop = [0] * threads, time.perf_counter() + seconds

    def loop(k: int) -> None:
        while time.perf_counter() < stop or not counts[k]:
            encode(crops[(counts[k] + k) % len(crops)], fmt)
            counts[k] += 1

    start = time.perf_counter()
    workers = [threading.Thread(target=loop, args=(k,)) for k in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    return sum(counts) / (time.perf_counter() - start)


def gil_check(crops: np.ndarray, seconds: float) -> dict:
    """Per format, images/s of one thread and of two, encoding into the writer's scratch file
    (`encode_image`) and into a BytesIO: where Pillow holds the GIL, two threads give no more than one."""
    out = {}
    for fmt in IMAGE_FORMATS:
        out[fmt] = {}
        for sink, encode in (("file", encode_image), ("bytesio", encode_into_buffer)):
            encode(crops[0], fmt)  # warm-up
            one, two = (threads_rate(encode, fmt, crops, n, seconds) for n in (1, 2))
            out[fmt][sink] = {"one_thread": one, "two_threads": two, "scaling": two / one}
    return out


def cpu_seconds() -> float:
    """CPU time of all this process's threads."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def bare_rate(crops: np.ndarray, fmt: str, quality: int | None, seconds: float) -> tuple[float, float, float, float]:
    """Images/s of one thread encoding the crops in turn for about `seconds`, its CPU seconds per
    image, mean bytes per image, and images/s of one thread decoding them back."""
    encode_image(crops[0], fmt, quality)  # warm-up
    encoded, start, cpu = [], time.perf_counter(), cpu_seconds()
    while (elapsed := time.perf_counter() - start) < seconds or len(encoded) < len(crops):
        encoded.append(encode_image(crops[len(encoded) % len(crops)], fmt, quality))
    cpu = (cpu_seconds() - cpu) / len(encoded)
    n, decoded, start = len(encoded), 0, time.perf_counter()
    while (decoding := time.perf_counter() - start) < seconds or decoded < len(crops):
        open_image(encoded[decoded % n], "benchmark", fmt)
        decoded += 1
    return n / elapsed, cpu, sum(map(len, encoded)) / n, decoded / decoding


class StoredImages(Generator):
    """A benchmark-only stand-in generator: the stored crops in turn, at no sampling cost."""

    name = "stored"

    def __init__(self, crops: np.ndarray):
        self.crops = crops
        self._names = [f"crop {i}" for i in range(len(crops))]

    @classmethod
    def claims(cls, folder: Path) -> bool:
        return False

    @classmethod
    def describe(cls, folder: Path) -> dict:
        raise TypeError("the stored-images stand-in is never read from a folder")

    num_classes = property(lambda self: len(self.crops))
    class_names = property(lambda self: self._names)
    image_size = property(lambda self: SIZE)
    channels = property(lambda self: 3)
    supports_guidance = property(lambda self: False)

    def parameter_count(self) -> int:
        return 0

    def fingerprint(self) -> dict:
        return {"backend": self.name, "crops": len(self.crops)}

    def sample(self, condition, seeds: Sequence[int], steps: int, guidance: float) -> np.ndarray:
        """The crops themselves, nothing copied (the memory the bare rate encodes from): the
        pipeline asks for its classes in rounds, each batch one round from the first class."""
        if not np.array_equal(condition.numpy(), np.arange(len(condition))):
            raise ValueError("the stored-images stand-in takes its classes in order, each batch from the first")
        return self.crops[: len(condition)]


def pipeline_rate(crops: np.ndarray, fmt: str, workers: int, images: int, work: Path) -> tuple[int, float, float]:
    """Images written (`images` rounded up to whole rounds of the crops), images/s, and CPU seconds
    per image of all threads (sampler, encoders, writer)."""
    # A batch is one round of the classes, and a shard whole rounds, so that every batch starts at
    # the first class.
    per_class, batch_size = math.ceil(images / len(crops)), len(crops)
    settings = SynthSettings(model="stored", steps=1, guidance=1.0, seed=0, shard_size=20 * batch_size,
                             image_format=fmt, dtype="fp32", compiled=False, batch_size=batch_size,
                             class_ids=tuple(range(len(crops))), per_class=per_class)
    cpu = cpu_seconds()
    stats = generate_shards(SynthJob(settings, StoredImages(crops)), work / f"{fmt}-{workers}",
                            encode_workers=workers, progress=False)
    return stats.images, stats.images_per_s, (cpu_seconds() - cpu) / stats.images


def run(args: argparse.Namespace) -> None:
    crops = photo_crops()
    seconds = 0.3 if args.tiny else args.seconds
    result = {"command": " ".join(["python -m benchmarks.writer_ceiling", *sys.argv[1:]]), "tiny": args.tiny,
              "machine": {"cores": len(os.sched_getaffinity(0)), "processor": platform.processor() or platform.machine(),
                          "pillow": Image.__version__, "python": platform.python_version()},
              "crops": len(crops), "gil": gil_check(crops, seconds / 3), "formats": {}}
    print("GIL:", json.dumps(result["gil"]), flush=True)
    with tempfile.TemporaryDirectory(prefix="writer-ceiling-") as tmp:
        for fmt in args.formats:
            for quality in (args.qualities if fmt in LOSSY else [None]):
                rate, cpu, size, decode = bare_rate(crops, fmt, quality, seconds)
                row = {"format": fmt, "quality": quality, "bare_per_core": rate, "bare_cpu_s": cpu,
                       "bytes_per_image": size, "decode_per_core": decode, "pipeline": {}}
                name = fmt if quality is None else f"{fmt} q{quality}"
                print(f"{name}: encode {rate:.1f} img/s, {size / 1e3:.1f} kB, decode {decode:.1f} img/s", flush=True)
                if quality in (None, DEFAULT_QUALITY):  # the writer at the shards' own settings
                    for workers in args.workers:
                        images = len(crops) if args.tiny else max(len(crops), int(rate * workers * seconds))
                        images, got, got_cpu = pipeline_rate(crops, fmt, workers, images, Path(tmp))
                        row["pipeline"][str(workers)] = {"images": images, "images_per_s": got, "cpu_s": got_cpu,
                                                         "of_bare_x_workers": got / (rate * workers)}
                        print(f"  {workers} workers: {got:.1f} img/s = {got / (rate * workers):.2f} of bare x workers; "
                              f"CPU {got_cpu * 1e3:.2f} ms an image against {cpu * 1e3:.2f} bare", flush=True)
                result["formats"][name] = row
    result["loadavg_15min"] = os.getloadavg()[2]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    print(f"wrote {args.out}")
    if args.report:
        report(args)


def cores_per_gpu(rate: float, per_core: float, efficiency: float) -> int:
    """Encoder threads to keep up with `rate` images/s, plus the core that drives the sampling."""
    return math.ceil(rate / (per_core * efficiency)) + 1


def report(args: argparse.Namespace) -> None:
    result = json.loads(args.out.read_text())
    formats = result["formats"]
    rows, pipeline_rows = [], []
    for name, row in formats.items():
        rows.append([name, f"{row['bytes_per_image'] / 1e3:.1f}", f"{row['bare_per_core']:.1f}",
                     f"{row['decode_per_core']:.1f}"])
        for workers, p in row["pipeline"].items():
            pipeline_rows.append([name, workers, f"{p['images_per_s']:.1f}", f"{row['bare_per_core'] * int(workers):.1f}",
                                  f"{p['of_bare_x_workers']:.2f}",
                                  f"{p['cpu_s'] * 1e3:.2f} / {row['bare_cpu_s'] * 1e3:.2f}"])
    gil_rows = [[fmt, sink, f"{g['one_thread']:.1f}", f"{g['two_threads']:.1f}", f"{g['scaling']:.2f}"]
                for fmt, sinks in result["gil"].items() for sink, g in sinks.items()]
    m = result["machine"]
    caveat = " **Tiny proof run: not a measurement.**" if result["tiny"] else ""
    write_section("writer_ceiling", f"""
### The writer's ceiling at {SIZE} px

{result['crops']} crops of {SIZE} px from scikit-learn's sample photographs; {m['cores']} cores
({m['processor']}), Pillow {m['pillow']}, Python {m['python']}; load average over 15 minutes at
the end {result['loadavg_15min']:.2f}. Command: `{result['command']}`.{caveat}

Pillow and the GIL: images/s of one encoder thread and of two, into a file (the writer's scratch
file, in memory) and into a BytesIO; a ratio near 2 means the codec runs without the GIL:

{table(["format", "encoded into", "1 thread img/s", "2 threads img/s", "2 threads / 1"], gil_rows)}

Per format, one core (encode with the shards' own settings; decode with the shard reader's):

{table(["format", "kB per image", "encode img/s per core", "decode img/s per core"], rows)}

The writer (`ptgen synth`'s runner) fed at no cost, at each format's default quality. Its CPU
time per image counts every thread (sampler, encoders, writer): where it matches the bare
encode's, a ratio short of 1 is time spent waiting, not work added.

{table(["format", "encode workers", "pipeline img/s", "bare x workers", "ratio (goal >= 0.9)",
        "CPU ms per image: pipeline (all threads) / bare"], pipeline_rows)}
""")
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

Each rank encodes with `--encode-workers` threads (default: the cores it may use, divided by the
ranks on the node, less one for sampling). The cores an H100 needs to keep up = ceil(its image
rate / (one core's bare rate x the writer's efficiency)) + 1, with the rates measured by
`python -m benchmarks.writer_ceiling run` (docs/results.md, "The writer's ceiling") and the
efficiency each format's lowest pipeline ratio measured there ({shares}); at 512 px an image
is taken to cost 4 times a 256 px one to encode (its pixels; computed, not measured). The GPU rates are computed
(989 TFLOP/s x 0.35 / FLOPs per image, as above), not measured.{caveat}

{table(["model", "H100 img/s (computed)", *(f"cores with {fmt}" for fmt in written)], cores)}
""", GPU_MD)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run")
    r.add_argument("--tiny", action="store_true", help="a few images per measurement: proves the script, measures nothing")
    r.add_argument("--seconds", type=float, default=15.0, help="about how long each measurement runs")
    r.add_argument("--formats", type=lambda s: s.split(","), default=list(IMAGE_FORMATS))
    r.add_argument("--workers", type=lambda s: [int(w) for w in s.split(",")], default=[1, 2])
    r.add_argument("--qualities", type=lambda s: [int(q) for q in s.split(",")], default=[90, DEFAULT_QUALITY],
                   help="JPEG and WebP qualities to measure (the writer at the default only)")
    r.add_argument("--out", type=Path, default=DEFAULT_OUT)
    r.add_argument("--report", action="store_true", help="then write the tables, as `report` does")
    p = sub.add_parser("report")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT, help="the results file `run` wrote")
    args = ap.parse_args()
    run(args) if args.cmd == "run" else report(args)


if __name__ == "__main__":
    main()
