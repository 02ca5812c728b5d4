"""Does the data loader keep up with training? (issue 5's benchmark)

Measures, at pttrain's defaults (batch 128, the default architecture, training augmentation):
  loader     images/s of the shard pipeline alone (decode + augment + batch, no model)
  step       images/s of training steps on in-memory batches (forward + backward + AdamW)
  folder     images/s of the same images read from an ImageFolder of PNG files
and writes the ratios into docs/results.md. The shards are made by `ptgen synth` from the
built-in generator when installed, else from a small random model at 16x16.

    python benchmarks/train_loader.py [--images 4096] [--workers 0]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import torch
from torch.utils.data import DataLoader

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from results_doc import table, write_section  # noqa: E402

from train.data.folder import labeled_split  # noqa: E402
from train.data.shards import CorruptCounter, ShardSet  # noqa: E402
from train.data.transforms import Preprocess  # noqa: E402
from train.models import ModelConfig, create_model, default_image_size  # noqa: E402
from train.cli import DEFAULT_ARCH  # noqa: E402


def make_shards(out: Path, images: int) -> Path:
    from click.testing import CliRunner

    from generate.cli import main as ptgen
    from generate.models import builtin_info

    if builtin_info("glyphs-1k").installed:
        model, note = "builtin:glyphs-1k", "builtin:glyphs-1k, 2 sampling steps"
    else:
        from tiny_models import save_tiny_unet

        model, note = str(save_tiny_unet(out.parent / "model", num_classes=100, image_size=16)), "random 16x16 model"
    classes = 100
    args = ["synth", "--model", model, "--out", str(out), "--classes", str(classes), "--per-class",
            str(images // classes), "--steps", "2", "--quiet"]
    result = CliRunner().invoke(ptgen, args)
    assert result.exit_code == 0, result.output
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

    md = f"""### Training-stage loader vs training step (issue 5)

Command: `python benchmarks/train_loader.py --images {args.images} --workers {args.workers}`. Shards: {args.images}
images from {note}, {shards.image_size}x{shards.image_size}, resized to {size} (pttrain's default size); batch
{args.batch}; `{DEFAULT_ARCH}` (pttrain's default);
{args.workers} loader workers; {torch.get_num_threads()} torch threads on {__import__('os').cpu_count()} cores.

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
