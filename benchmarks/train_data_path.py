"""Does pttrain's data path keep up with training? Its shard loader's rate against the training
step's, against one core's decode, from remote stores, and feeding a GPU.

  loader      the built-in world's shards (`ptgen synth`, 2 sampling steps) at pttrain's defaults
              (batch 128, the default architecture and input size, training augmentation):
                shards   the shard loader alone (decode, augment, batch), no model
                step     training steps on an in-memory batch (forward, backward, AdamW)
                folder   the same images read from an ImageFolder of PNG files
  remote      the same loader reading the same shards from HTTP (`python -m http.server`) and from S3
              (moto's `moto_server`), each server a process of its own on 127.0.0.1, as a store
              would be, against local disk; each source timed --repeats times, interleaved with
              the others, and the median kept, so that all three see the same load
  run         the ceiling for photos: 256 px RGB shards in PNG, JPEG and WebP (photo-like content:
              smooth random fields with edges and grain, so that the codecs work as on photos) through
              the natural policy's training transform at 224 px (random resized crop, flip, colour
              jitter, normalise):
                bare     in this process on one torch thread: the rate of one core
                loader   pttrain's shard loader at 1 and 2 workers, each worker on one torch thread
              into benchmarks/results/train_data_path.json (tracked; --tiny: runs/benchmarks/)
  report      its table, from that file, with the cores one GPU needs to feed ResNet-50 at the
              step rate `gpu` measured (or --gpu-rate)
  gpu         ResNet-50 at 224 px on one GPU, bf16 autocast, channels_last, AdamW (pttrain's step):
                in_memory  one batch kept in GPU memory, stepped over and over: the GPU's ceiling
                loader     the same steps fed by pttrain's shard loader (JPEG shards of 256 px
                           photo-like images, the natural policy's training transform, pinned
                           memory, the node's cores as workers)
                MFU        in_memory images/s x FLOPs per image (forward + backward, counted by
                           torch's FlopCounterMode) / --peak-tflops (989 for an H100 or H200 SXM)
              into runs/benchmarks/gpu_train.json
  gpu-report  its table

    python -m benchmarks.train_data_path loader [--images 4096] [--workers 0]
    python -m benchmarks.train_data_path remote [--images 8192] [--shard-size 512] [--workers 1,2] [--repeats 3]
    python -m benchmarks.train_data_path run [--images 2048] [--tiny]
    python -m benchmarks.train_data_path report [--gpu-rate R] [--doc FILE|-]
    python -m benchmarks.train_data_path gpu [--batch 256] [--compile] && python -m benchmarks.train_data_path gpu-report

--tiny (run: 64 images of 64 px, cropped to 56; gpu: a tiny model at 32 px on the CPU in fp32)
proves the script works in seconds; its figures say nothing about speed. Timings need a machine
with nothing else running.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterable

import numpy as np
import torch

from benchmarks.common import (
    KEPT, RUNS, cli, doc_flag, flag, ints, read_json, run_tool, save_result, table, write_section,
)
from train.data.loading import stream_batches
from train.data.shards import CorruptCounter, ShardSet

if TYPE_CHECKING:
    from PIL import Image

    from ptcommon.runfolder import ModelConfig

    Transform = Callable[[Image.Image], torch.Tensor]

CEILING = KEPT / "train_data_path.json"  # tracked: `report` rebuilds its table from it
TINY_CEILING = RUNS / "benchmarks" / "train_data_path-tiny.json"  # a --tiny run proves the script, it measures nothing
GPU = RUNS / "benchmarks" / "gpu_train.json"
FORMATS = ("png", "jpg", "webp")
ARCH = "resnet50"
SHARD_SIZE = 256
CLASSES = 10
GLYPH_CLASSES = 100


def shard_loader(shards: ShardSet, transform: Transform, batch: int, workers: int,
                 pin: bool = False) -> Callable[[int], Iterable]:
    """pttrain's shard loader: the shard pipeline behind persistent workers, endless for a benchmark."""
    def pipeline(epoch: int) -> Iterable:
        return shards.pipeline(transform, batch, train=True, seed=epoch, with_labels=True,
                               corrupt=CorruptCounter(False), batches_per_worker=10**6)

    return stream_batches(pipeline, 0, 0, workers, pin)


def images_per_s(batches: Iterable, images: int, warmup: int) -> float:
    """Images a second over IMAGES, after WARMUP images (worker start-up, first decodes, connections)."""
    seen, start = 0, None
    for batch in batches:
        seen += len(batch[1])
        if start is None and seen >= warmup:
            start, seen = time.perf_counter(), 0
        if start is not None and seen >= images:
            break
    return seen / (time.perf_counter() - start)


def glyph_shards(out: Path, images: int, shard_size: int = 1000) -> Path:
    run_tool("generate", "synth", "--out", out, "--classes", GLYPH_CLASSES, "--per-class", images // GLYPH_CLASSES,
             "--shard-size", shard_size, "--steps", 2, "--quiet")
    return out


def glyph_transform(shards: ShardSet) -> Transform:
    """pttrain pp's training transform for SHARDS, at its default input size."""
    from train.data.transforms import Preprocess
    from train.models import default_image_size

    return Preprocess(default_image_size(shards.image_size), shards.channels, (0.5,), (0.5,)).transform(augment=True)


def to_folder(shards: ShardSet, root: Path) -> None:
    batches = shards.pipeline(lambda im: im, 256, train=False, seed=0, with_labels=True, corrupt=CorruptCounter(False))
    n = 0
    for images, labels in batches:
        for image, label in zip(images, labels):
            path = root / "train" / f"{int(label):03d}" / f"{n:06d}.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            image.save(path)
            n += 1


def step_rate(config: ModelConfig, batch: int, seconds: float = 20) -> float:
    """Images/s of training steps (forward, backward, AdamW) on one in-memory batch."""
    from ptcommon.runfolder import create_model

    model = create_model(config).train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    x = torch.randn(batch, config.in_chans, config.image_size, config.image_size)
    y = torch.randint(0, config.num_classes, (batch,))
    steps, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds or steps < 5:
        loss = torch.nn.functional.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        steps += 1
    return steps * batch / (time.perf_counter() - start)


def loader(args: argparse.Namespace) -> None:
    from torch.utils.data import DataLoader

    from ptcommon.runfolder import ModelConfig
    from train.cli import DEFAULT_ARCH
    from train.data.folder import labeled_split
    from train.models import default_image_size

    tmp = Path(tempfile.mkdtemp(prefix="ptgen-loader-"))
    shards = ShardSet(glyph_shards(tmp / "shards", args.images))
    size = default_image_size(shards.image_size)
    transform = glyph_transform(shards)
    from_shards = images_per_s(shard_loader(shards, transform, args.batch, args.workers)(0), args.images, args.batch)
    to_folder(shards, tmp / "folder")
    folder = labeled_split(tmp / "folder", "train", transform)
    from_folder = images_per_s(DataLoader(folder, batch_size=args.batch, shuffle=True, num_workers=args.workers),
                               args.images, args.batch)
    step = step_rate(ModelConfig(DEFAULT_ARCH, len(shards.class_ids), shards.class_names, size, shards.channels,
                                 [0.5], [0.5]), args.batch)
    md = f"""Command: `python -m benchmarks.train_data_path loader --images {args.images} --workers {args.workers}`. Shards: {args.images}
images from builtin:glyphs-1k, 2 sampling steps, {shards.image_size}x{shards.image_size}, resized to {size} (pttrain's default size); batch
{args.batch}; `{DEFAULT_ARCH}` (pttrain's default);
{args.workers} loader workers; {torch.get_num_threads()} torch threads on {os.cpu_count()} cores.

{table(["path", "images/s", "ratio"], [
    ["shard pipeline alone (decode, augment, batch)", f"{from_shards:.0f}", f"{from_shards / step:.1f}x the step"],
    ["training step (forward, backward, AdamW)", f"{step:.0f}", "1.0"],
    ["same images from an ImageFolder of PNG files", f"{from_folder:.0f}", f"shards are {from_shards / from_folder:.2f}x the folder"],
])}
"""
    write_section("train_loader", md, args.doc)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def serve(cmd: list[str], port: int) -> subprocess.Popen:
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return proc
        time.sleep(0.1)
    proc.kill()
    raise RuntimeError(f"{cmd[0]} did not listen on 127.0.0.1:{port}")


def remote(args: argparse.Namespace) -> None:
    from train.models import default_image_size

    tmp = Path(tempfile.mkdtemp(prefix="ptgen-remote-"))
    local = glyph_shards(tmp / "shards", args.images, args.shard_size)
    http_port, s3_port = free_port(), free_port()
    os.environ.update({"AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench", "AWS_DEFAULT_REGION": "us-east-1",
                       "AWS_EC2_METADATA_DISABLED": "true", "AWS_ENDPOINT_URL": f"http://127.0.0.1:{s3_port}"})
    servers = [serve([sys.executable, "-m", "http.server", "--bind", "127.0.0.1", "--directory", str(tmp),
                      str(http_port)], http_port),
               serve([str(Path(sys.executable).parent / "moto_server"), "-H", "127.0.0.1", "-p", str(s3_port)], s3_port)]
    try:
        import s3fs

        fs = s3fs.S3FileSystem()
        fs.mkdir("bench")
        fs.put(str(local) + "/", "bench/shards", recursive=True)
        sets = {name: ShardSet(spec) for name, spec in (
            ("local disk", str(local)), ("HTTP (http.server)", f"http://127.0.0.1:{http_port}/shards"),
            ("S3 (moto_server)", "s3://bench/shards"))}
        first = sets["local disk"]
        transform = glyph_transform(first)
        # Per worker count, each source timed --repeats times, interleaved with the others.
        rates: dict[tuple[int, str], list[float]] = {(w, name): [] for w in args.workers for name in sets}
        for workers in args.workers:
            for _ in range(args.repeats):
                for name, data in sets.items():
                    batches = shard_loader(data, transform, args.batch, workers)(0)
                    rates[workers, name].append(images_per_s(batches, args.images, args.batch * max(1, workers)))
    finally:
        for proc in servers:
            proc.terminate()
            proc.wait()
    rows = []
    for (workers, name), r in rates.items():
        base = statistics.median(rates[workers, "local disk"])
        rows.append([workers, name, f"{statistics.median(r):.0f}", " / ".join(f"{x:.0f}" for x in r),
                     f"{statistics.median(r) / base:.2f}"])
    md = f"""Command: `python -m benchmarks.train_data_path remote --images {args.images} --shard-size {args.shard_size} --workers
{','.join(map(str, args.workers))} --repeats {args.repeats}`. {first.count} images from builtin:glyphs-1k, 2 sampling steps, {first.image_size} px
{first.header.get('image_format')}, in {len(first.paths)} shards of {args.shard_size}; pttrain's shard pipeline with
training augmentation at {default_image_size(first.image_size)} px, batch {args.batch}, the given loader workers,
{os.cpu_count()} cores. The servers run on 127.0.0.1 as processes of their own, on the same cores. Each
source was timed {args.repeats} time{"s" if args.repeats != 1 else ""}, interleaved with the others; the ratio is the median's against local
disk's at the same worker count, measured in the same run.

{table(["loader workers", "source", "images/s (median)", "each run", "ratio to local disk"], rows)}
"""
    write_section("remote_read", md, args.doc)


def photo_like(rng: np.random.Generator, size: int) -> np.ndarray:
    """An RGB uint8 image with the structure codecs meet in photos: smooth colour regions (a random
    8x8 field upsampled), a few hard edges, and sensor-like grain."""
    from PIL import Image

    coarse = rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)
    field = np.asarray(Image.fromarray(coarse).resize((size, size), Image.BICUBIC), dtype=np.float32)
    for _ in range(3):
        x0, y0 = rng.integers(0, size, 2)
        field[y0:y0 + size // 4, x0:x0 + size // 4] = rng.integers(0, 256, 3)
    field += rng.normal(0, 6, field.shape)
    return np.clip(field, 0, 255).astype(np.uint8)


def photo_shards(root: Path, image_format: str, images: int, size: int) -> ShardSet:
    """IMAGES labeled photo-like samples of SIZE px in IMAGE_FORMAT, in the shard format `pttrain pp` reads."""
    from generate.writer import SampleRecord, ShardWriter, encode_image, sample_bytes
    from ptcommon.shards import DATASET_FILE, shard_name

    rng = np.random.default_rng(0)
    prefix = "bench"
    root.mkdir(parents=True)
    for shard in range(-(-images // SHARD_SIZE)):
        writer = ShardWriter(root / shard_name(prefix, shard))
        for i in range(shard * SHARD_SIZE, min(images, (shard + 1) * SHARD_SIZE)):
            image = encode_image(photo_like(rng, size), image_format)
            writer.write(sample_bytes(SampleRecord(f"{i:09d}", i % CLASSES), image_format, image))
        writer.commit()
    header = {"prefix": prefix, "count": images, "shard_size": SHARD_SIZE, "labeled": True, "image_size": size,
              "channels": 3, "image_format": image_format, "class_ids": list(range(CLASSES)),
              "class_names": [f"class {c}" for c in range(CLASSES)]}
    (root / DATASET_FILE).write_text(json.dumps(header))
    return ShardSet(root)


def natural_transform(crop: int) -> Transform:
    """The natural policy's training transform of ResNet-50 at CROP px, as pttrain builds it."""
    from ptcommon.timm_specs import data_config
    from train.data.transforms import Preprocess

    stats = data_config(ARCH)
    return Preprocess(crop, 3, tuple(stats["mean"]), tuple(stats["std"]), policy="natural",
                      interpolation=stats["interpolation"], crop_pct=stats["crop_pct"]).transform(augment=True)


def ceiling(args: argparse.Namespace) -> None:
    size, crop, images, batch = (64, 56, 64, 8) if args.tiny else (256, 224, args.images, args.batch)
    torch.set_num_threads(1)  # DataLoader's workers run one torch thread each: the bare rate runs as one
    work = Path(tempfile.mkdtemp(prefix="ptgen-datapath-"))
    rows = []
    for fmt in FORMATS:
        shards = photo_shards(work / fmt, fmt, images, size)
        row = {"format": fmt, "image_bytes": round(sum(p.stat().st_size for p in (work / fmt).glob("*.tar")) / images),
               "bare": round(images_per_s(shard_loader(shards, natural_transform(crop), batch, 0)(0), images, batch), 1)}
        for workers in (1, 2):
            batches = shard_loader(shards, natural_transform(crop), batch, workers)(0)
            row[f"workers_{workers}"] = round(images_per_s(batches, images, warmup=2 * batch * workers), 1)
        rows.append(row)
        print(row, flush=True)
    save_result(args.out or (TINY_CEILING if args.tiny else CEILING), {"tiny": args.tiny, "size": size, "crop": crop, "images": images, "batch": batch,
                          "cores": os.cpu_count(), "rows": rows})


def gpu_rate(flag_rate: float | None) -> tuple[float | None, str]:
    """The step rate one GPU must be fed at: --gpu-rate, else the loader-free rate `gpu` measured."""
    if flag_rate is not None:
        return flag_rate, "--gpu-rate"
    if GPU.exists() and not (result := read_json(GPU)).get("tiny"):
        return result["in_memory_images_per_s"], f"`train_data_path gpu` on {result['device_name']}"
    return None, "no GPU figure yet: run `python -m benchmarks.train_data_path gpu` on a GPU, or pass --gpu-rate"


def report(args: argparse.Namespace) -> None:
    result = read_json(args.out or CEILING)
    need, source = gpu_rate(args.gpu_rate)
    lines = []
    for r in result["rows"]:
        per_worker = [r[f"workers_{w}"] / (w * r["bare"]) for w in (1, 2)]
        cores = f"{need / r['bare']:.1f}" if need else "-"
        lines.append([r["format"], r["image_bytes"], r["bare"], r["workers_1"], f"{per_worker[0]:.2f}",
                      r["workers_2"], f"{per_worker[1]:.2f}", cores])
    tiny = (" **Tiny proof run: these figures show that the script works, not the machine's speed.**"
            if result["tiny"] else "")
    gpu_flag = f" --gpu-rate {args.gpu_rate:g}" if args.gpu_rate is not None else ""
    md = f"""Command: `python -m benchmarks.train_data_path run{' --tiny' if result['tiny'] else ''} && python -m
benchmarks.train_data_path report{gpu_flag}`. {result['images']} RGB images of {result['size']} px in shards,
through the natural policy's training transform at {result['crop']} px (ResNet-50's random resized
crop, flip, colour jitter, normalisation), batches of {result['batch']}, on a machine of {result['cores']}
cores. *bare*: one core (this process, one torch thread); *1 / 2 workers*: pttrain's loader
(persistent workers, one torch thread each); *per worker*: the loader's rate per worker against
the bare rate. *Cores per GPU*: the GPU's rate ({source}) over the bare rate, computed.{tiny}

{table(["format", "bytes/image", "bare img/s/core", "1 worker img/s", "per worker", "2 workers img/s",
        "per worker", "cores per GPU (computed)"], lines)}
"""
    write_section("train_data_path", md, args.doc)


def timed_steps(step: Callable, batches: Iterable, steps: int, warmup: int, device: torch.device) -> float:
    """Steps a second over STEPS steps after WARMUP ones (cuDNN's search, compilation)."""
    from train.trainer import to_device

    for i, (images, labels) in enumerate(batches):
        if i == warmup:
            if device.type == "cuda":
                torch.cuda.synchronize()
            start = time.perf_counter()
        if i == warmup + steps:
            break
        step(*to_device((images, torch.as_tensor(labels)), device))
    if device.type == "cuda":
        torch.cuda.synchronize()
    return steps / (time.perf_counter() - start)


def gpu(args: argparse.Namespace) -> None:
    import timm
    import torch.nn.functional as F
    from torch.utils.flop_counter import FlopCounterMode

    from ptcommon.launcher import detect
    from train.trainer import to_device

    tiny = args.tiny
    device = torch.device("cpu" if tiny else "cuda")
    arch, size, shard_size, batch = ("test_resnet", 32, 40, 4) if tiny else (ARCH, 224, 256, args.batch)
    steps, warmup = (3, 1) if tiny else (args.steps, args.warmup)
    amp = None if tiny else torch.bfloat16
    workers = args.workers if args.workers is not None else detect().cores
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    model = timm.create_model(arch, num_classes=1000).to(device, memory_format=torch.channels_last).train()
    # FLOPs of one training step (forward + backward) per image, counted on a batch of 2.
    with FlopCounterMode(display=False) as counter:
        with torch.autocast(device.type, dtype=amp, enabled=amp is not None):
            loss = model(torch.randn(2, 3, size, size, device=device)).float().sum()
        loss.backward()
    model.zero_grad(set_to_none=True)
    per_image = counter.get_total_flops() / 2
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    net = torch.compile(model) if args.compile else model

    def step(images: torch.Tensor, labels: torch.Tensor) -> None:
        with torch.autocast(images.device.type, dtype=amp, enabled=amp is not None):
            loss = F.cross_entropy(net(images), labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    held = to_device((torch.randn(batch, 3, size, size), torch.randint(0, 1000, (batch,))), device)  # stays there
    in_memory = timed_steps(step, iter(lambda: held, None), steps, warmup, device) * batch
    shards = photo_shards(Path(tempfile.mkdtemp(prefix="ptgen-gputrain-")) / "jpg", "jpg",
                          batch * (steps + warmup) if tiny else args.images, shard_size)
    batches = shard_loader(shards, natural_transform(size), batch, workers, pin=device.type == "cuda")(0)
    fed = timed_steps(step, batches, steps, warmup, device) * batch
    result = {"tiny": tiny, "device_name": "CPU (tiny proof)" if tiny else torch.cuda.get_device_name(), "arch": arch,
              "size": size, "batch": batch, "steps": steps, "amp": "off" if amp is None else "bf16",
              "compile": args.compile, "workers": workers, "cores": detect().cores, "flops_per_image": per_image,
              "in_memory_images_per_s": round(in_memory, 1), "loader_images_per_s": round(fed, 1),
              "peak_tflops": args.peak_tflops, "mfu": round(in_memory * per_image / (args.peak_tflops * 1e12), 4)}
    save_result(GPU, result)


def gpu_report(args: argparse.Namespace) -> None:
    r = read_json(GPU)
    tiny = (" **Tiny proof run on CPU: it shows that the script works, not what a GPU does.**" if r["tiny"] else "")
    md = f"""Command: `python -m benchmarks.train_data_path gpu{' --tiny' if r['tiny'] else f" --batch {r['batch']}"}{' --compile' if r['compile'] else ''}
&& python -m benchmarks.train_data_path gpu-report`. {r['device_name']}; {r['arch']} at {r['size']} px, batch
{r['batch']}, {r['amp']} autocast, channels_last, AdamW; the loader from JPEG shards through the
natural policy's training transform with {r['workers']} workers ({r['cores']} cores). MFU: the
in-memory rate x {r['flops_per_image'] / 1e9:.1f} GFLOP per image (forward + backward, counted) over
the {r['peak_tflops']} TFLOP/s peak.{tiny}

{table(["path", "images/s", "ratio"], [
    ["one batch in GPU memory", r["in_memory_images_per_s"], "1.00"],
    ["fed by pttrain's loader from shards", r["loader_images_per_s"],
     f"{r['loader_images_per_s'] / r['in_memory_images_per_s']:.2f}"],
    ["model FLOP utilisation", f"{r['mfu']:.1%}", "-"],
])}
"""
    write_section("gpu_train", md, args.doc)


def main() -> None:
    out = flag("--out", type=Path, help=f"the results file [default: {CEILING.relative_to(KEPT.parent.parent)}; "
               "with --tiny, runs/benchmarks/train_data_path-tiny.json]")
    cli(__doc__,
        loader=(loader, [flag("--images", type=int, default=4096), flag("--workers", type=int, default=0),
                         flag("--batch", type=int, default=128), doc_flag()]),
        remote=(remote, [flag("--images", type=int, default=8192), flag("--shard-size", type=int, default=512),
                         flag("--workers", type=ints, default=[1, 2]), flag("--batch", type=int, default=128),
                         flag("--repeats", type=int, default=3), doc_flag()]),
        run=(ceiling, [flag("--images", type=int, default=2048), flag("--batch", type=int, default=64),
                       flag("--tiny", action="store_true"), out]),
        report=(report, [flag("--gpu-rate", type=float,
                              help="Images/s one GPU trains ResNet-50 at (default: what `gpu` measured)."),
                         out, doc_flag()]),
        gpu=(gpu, [flag("--batch", type=int, default=256), flag("--steps", type=int, default=50),
                   flag("--warmup", type=int, default=15),
                   flag("--images", type=int, default=8192, help="Shard images the loader reads (it repeats them)."),
                   flag("--workers", type=int, help="Loader workers. [default: the node's cores]"),
                   flag("--peak-tflops", type=float, default=989.0), flag("--compile", action="store_true"),
                   flag("--tiny", action="store_true")]),
        gpu_report=(gpu_report, [doc_flag()]))


if __name__ == "__main__":
    main()
