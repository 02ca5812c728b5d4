"""The training data path's ceiling: how many images a second one core decodes and augments, and
what pttrain's loader delivers with 1 and 2 workers against it.

    run     write 256 px RGB shards in PNG, JPEG and WebP (photo-like content: smooth random
            fields with edges and grain, so that the codecs work as on photos), then measure
              bare    decode + the natural policy's training transform at 224 px (random resized
                      crop, flip, colour jitter, normalise) + batching, in this process on one
                      torch thread: the rate of one core
              loader  pttrain's shard loader (the pipeline, persistent workers, as `pttrain pp`
                      builds it) at 1 and 2 workers, each worker on one torch thread
            and write the figures to runs/benchmarks/train_data_path.json
    report  the table in docs/results.md, with the cores one GPU needs to feed ResNet-50 at
            the step rate of benchmarks/gpu_train.py's result (or --gpu-rate)

    python -m benchmarks.train_data_path run [--images 2048] [--tiny]
    python -m benchmarks.train_data_path report [--gpu-rate IMAGES_PER_S]

--tiny (64 images of 64 px, cropped to 56) proves the script works in seconds; its figures say
nothing about speed. Timings need a machine with nothing else running.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from benchmarks.common import ROOT, table, write_section
from ptcommon.shards import DATASET_FILE, shard_name
from train.data.loading import stream_batches
from train.data.shards import CorruptCounter, ShardSet
from train.data.transforms import Preprocess, arch_data_config

RESULT = ROOT / "runs" / "benchmarks" / "train_data_path.json"
FORMATS = ("png", "jpg", "webp")
ARCH = "resnet50"
SHARD_SIZE = 256
CLASSES = 10


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


def make_shards(root: Path, image_format: str, images: int, size: int) -> Path:
    """IMAGES labeled samples of SIZE px in IMAGE_FORMAT, in the shard format `pttrain pp` reads."""
    from generate.writer import SampleRecord, ShardWriter, encode_image, sample_bytes

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
    return root


def natural_transform(crop: int):
    """The natural policy's training transform of ResNet-50 at CROP px, as pttrain builds it."""
    stats = arch_data_config(ARCH)
    return Preprocess(crop, 3, tuple(stats["mean"]), tuple(stats["std"]), policy="natural",
                      interpolation=stats["interpolation"], crop_pct=stats["crop_pct"]).transform(augment=True)


def loader(shards: ShardSet, crop: int, batch: int, workers: int, steps: int, pin: bool = False):
    """pttrain's shard loader (`_shard_batches`): the pipeline behind persistent workers."""
    transform = natural_transform(crop)
    per_worker = -(-steps // max(1, workers))

    def pipeline(epoch: int):
        return shards.pipeline(transform, batch, train=True, seed=epoch, with_labels=True,
                               corrupt=CorruptCounter(False), batches_per_worker=per_worker)

    return stream_batches(pipeline, 0, 0, workers, pin)


def images_per_s(batches, images: int, warmup: int) -> float:
    """Images a second over IMAGES, after WARMUP images (worker start-up, first decodes)."""
    seen, start = 0, None
    for batch in batches:
        seen += len(batch[1])
        if start is None and seen >= warmup:
            start, seen = time.perf_counter(), 0
        if start is not None and seen >= images:
            break
    return seen / (time.perf_counter() - start)


def run(args: argparse.Namespace) -> None:
    size, crop, images, batch = (64, 56, 64, 8) if args.tiny else (256, 224, args.images, args.batch)
    torch.set_num_threads(1)
    work = Path(tempfile.mkdtemp(prefix="ptgen-datapath-"))
    rows = []
    for fmt in FORMATS:
        shards = ShardSet(make_shards(work / fmt, fmt, images, size))
        mean_bytes = sum(p.stat().st_size for p in shards.paths) / images
        steps = 2 * images // batch  # the stream is endless: enough batches for warm-up and measure
        bare = images_per_s(loader(shards, crop, batch, 0, steps)(0), images, warmup=batch)
        row = {"format": fmt, "image_bytes": round(mean_bytes), "bare": round(bare, 1)}
        for workers in (1, 2):
            batches = loader(shards, crop, batch, workers, steps)(0)  # DataLoader's workers run one torch thread
            row[f"workers_{workers}"] = round(images_per_s(batches, images, warmup=2 * batch * workers), 1)
        rows.append(row)
        print(row, flush=True)
    RESULT.parent.mkdir(parents=True, exist_ok=True)
    RESULT.write_text(json.dumps({"tiny": args.tiny, "size": size, "crop": crop, "images": images, "batch": batch,
                                  "cores": os.cpu_count(), "rows": rows}, indent=1) + "\n")
    print(f"wrote {RESULT}")


def gpu_rate(flag: float | None) -> tuple[float | None, str]:
    """The step rate one GPU must be fed at: --gpu-rate, else the loader-free rate gpu_train measured."""
    if flag is not None:
        return flag, "--gpu-rate"
    measured = ROOT / "runs" / "benchmarks" / "gpu_train.json"
    if measured.exists():
        result = json.loads(measured.read_text())
        if not result.get("tiny"):
            return result["in_memory_images_per_s"], f"benchmarks/gpu_train.py on {result['device_name']}"
    return None, "no GPU figure yet: run benchmarks/gpu_train.py on a GPU, or pass --gpu-rate"


def report(args: argparse.Namespace) -> None:
    result = json.loads(RESULT.read_text())
    need, source = gpu_rate(args.gpu_rate)
    lines = []
    for r in result["rows"]:
        per_worker = [r[f"workers_{w}"] / (w * r["bare"]) for w in (1, 2)]
        cores = f"{need / r['bare']:.1f}" if need else "-"
        lines.append([r["format"], r["image_bytes"], r["bare"], r["workers_1"], f"{per_worker[0]:.2f}",
                      r["workers_2"], f"{per_worker[1]:.2f}", cores])
    tiny = (" **Tiny proof run: these figures show that the script works, not the machine's speed.**"
            if result["tiny"] else "")
    md = f"""### The training data path's ceiling (decode + training transform)

Command: `python -m benchmarks.train_data_path run{' --tiny' if result['tiny'] else ''} && python -m
benchmarks.train_data_path report`. {result['images']} RGB images of {result['size']} px in shards,
through the natural policy's training transform at {result['crop']} px (ResNet-50's random resized
crop, flip, colour jitter, normalisation), batches of {result['batch']}, on a machine of {result['cores']}
cores. *bare*: one core (this process, one torch thread); *1 / 2 workers*: pttrain's loader
(persistent workers, one torch thread each); *per worker*: the loader's rate per worker against
the bare rate (goal >= 0.9). *Cores per GPU*: the GPU's rate ({source}) over the bare rate.{tiny}

{table(["format", "bytes/image", "bare img/s/core", "1 worker img/s", "per worker", "2 workers img/s",
        "per worker", "cores per GPU"], lines)}
"""
    write_section("train_data_path", md)
    print(md)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run")
    r.add_argument("--images", type=int, default=2048)
    r.add_argument("--batch", type=int, default=64)
    r.add_argument("--tiny", action="store_true")
    p = sub.add_parser("report")
    p.add_argument("--gpu-rate", type=float, help="Images/s one GPU trains ResNet-50 at (default: gpu_train's).")
    args = ap.parse_args()
    run(args) if args.cmd == "run" else report(args)


if __name__ == "__main__":
    main()
