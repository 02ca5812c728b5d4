"""Does the data loader keep up with training? The shard pipeline's rate against the training step's.

Measures, at pttrain's defaults (batch 128, the default architecture, training augmentation):
  loader     images/s of the shard pipeline alone (decode + augment + batch, no model)
  step       images/s of training steps on in-memory batches (forward + backward + AdamW)
  folder     images/s of the same images read from an ImageFolder of PNG files
and writes the ratios into docs/results.md. The shards are made by `ptgen synth` from the
built-in generator when installed, else from a small random model at 16x16.

    python -m benchmarks.train_loader [--images 4096] [--workers 0]
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import torch
from torch.utils.data import DataLoader

from benchmarks.common import run_tool, table, write_section
from generate.models import builtin_info
from train.cli import DEFAULT_ARCH
from train.data.folder import labeled_split
from train.data.shards import CorruptCounter, ShardSet
from train.data.transforms import Preprocess
from train.models import ModelConfig, create_model, default_image_size

CLASSES = 100


def save_random_model(folder: Path, image_size: int) -> Path:
    """A small randomly initialised class-conditional UNet (diffusers layout, last class row = null
    class), so that the benchmark runs where the built-in generator is not installed."""
    import diffusers

    torch.manual_seed(0)
    unet = diffusers.UNet2DModel(
        sample_size=image_size, in_channels=1, out_channels=1, block_out_channels=(8, 16), layers_per_block=1,
        down_block_types=("DownBlock2D",) * 2, up_block_types=("UpBlock2D",) * 2, norm_num_groups=4,
        num_class_embeds=CLASSES + 1)
    # Random weights give near-uniform grey images, which would make decoding unrealistically cheap.
    with torch.no_grad():
        unet.conv_out.weight.mul_(20)
    unet.save_pretrained(folder / "unet")
    diffusers.DPMSolverMultistepScheduler(num_train_timesteps=100).save_pretrained(folder / "scheduler")
    # Guided like the built-in model, so that sampling runs the unconditional pass as well.
    (folder / "ptgen.json").write_text(json.dumps({"null_class": True, "defaults": {"guidance": 2.0}}))
    return folder


def make_shards(out: Path, images: int) -> tuple[Path, str]:
    if builtin_info("glyphs-1k")["installed"]:
        model, note = "builtin:glyphs-1k", "builtin:glyphs-1k, 2 sampling steps"
    else:
        model, note = str(save_random_model(out.parent / "model", image_size=16)), "random 16x16 model"
    run_tool("generate", "synth", "--model", model, "--out", out, "--classes", CLASSES, "--per-class",
             images // CLASSES, "--steps", 2, "--quiet")
    return out, note


def to_folder(shards: ShardSet, root: Path) -> None:
    batches = shards.pipeline(lambda im: im, 256, train=False, seed=0, with_labels=True, corrupt=CorruptCounter(False))
    n = 0
    for images, labels in batches:
        for image, label in zip(images, labels):
            path = root / "train" / f"{int(label):03d}" / f"{n:06d}.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            image.save(path)
            n += 1


def rate(iterator, limit_images: int) -> float:
    seen, start = 0, time.perf_counter()
    for batch in iterator:
        seen += len(batch[1])
        if seen >= limit_images:
            break
    return seen / (time.perf_counter() - start)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", type=int, default=4096)
    ap.add_argument("--workers", type=int, default=0)
    ap.add_argument("--batch", type=int, default=128)
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="ptgen-loader-"))
    shard_dir, note = make_shards(tmp / "shards", args.images)
    shards = ShardSet(shard_dir)
    size = default_image_size(shards.image_size)  # what pttrain pp would train at
    pre = Preprocess(size, shards.channels, (0.5,), (0.5,))
    transform = pre.transform(augment=True)

    def shard_batches():
        pipe = shards.pipeline(transform, args.batch, train=True, seed=0, with_labels=True,
                               corrupt=CorruptCounter(False), batches_per_worker=10**6)
        return DataLoader(pipe, batch_size=None, num_workers=args.workers)

    rate(shard_batches(), args.batch * 2)  # warm-up
    loader = rate(shard_batches(), args.images)

    to_folder(shards, tmp / "folder")
    folder = labeled_split(tmp / "folder", "train", transform)
    folder_rate = rate(DataLoader(folder, batch_size=args.batch, shuffle=True, num_workers=args.workers), args.images)

    config = ModelConfig(DEFAULT_ARCH, len(shards.class_ids), shards.class_names, size, shards.channels, [0.5], [0.5])
    model = create_model(config).train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    x = torch.randn(args.batch, shards.channels, size, size)
    y = torch.randint(0, config.num_classes, (args.batch,))
    steps, start = 0, time.perf_counter()
    while time.perf_counter() - start < 20 or steps < 5:
        loss = torch.nn.functional.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        steps += 1
    step_rate = steps * args.batch / (time.perf_counter() - start)

    md = f"""### Training-stage loader vs training step

Command: `python -m benchmarks.train_loader --images {args.images} --workers {args.workers}`. Shards: {args.images}
images from {note}, {shards.image_size}x{shards.image_size}, resized to {size} (pttrain's default size); batch
{args.batch}; `{DEFAULT_ARCH}` (pttrain's default);
{args.workers} loader workers; {torch.get_num_threads()} torch threads on {os.cpu_count()} cores.

{table(["path", "images/s", "ratio"], [
    ["shard pipeline alone (decode, augment, batch)", f"{loader:.0f}", f"{loader / step_rate:.1f}x the step (goal >= 2x)"],
    ["training step (forward, backward, AdamW)", f"{step_rate:.0f}", "1.0"],
    ["same images from an ImageFolder of PNG files", f"{folder_rate:.0f}", f"shards are {loader / folder_rate:.2f}x the folder"],
])}
"""
    write_section("train_loader", md)
    print(md)


if __name__ == "__main__":
    main()
