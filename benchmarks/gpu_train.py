"""ResNet-50 training speed on one GPU: the step rate on a batch held in GPU memory, the rate when
pttrain's loader feeds it from shards, and the model FLOP utilisation.

    run     ResNet-50 at 224 px, bf16 autocast, channels_last, AdamW (pttrain's step):
              in_memory  one batch kept in GPU memory, stepped over and over: the GPU's ceiling
              loader     the same steps fed by pttrain's shard loader (JPEG shards of 256 px
                         photo-like images, the natural policy's training transform, pinned
                         memory, persistent workers: the node's cores)
              MFU        in_memory images/s x FLOPs per image (forward + backward, counted by
                         torch's FlopCounterMode) / --peak-tflops
            and write runs/benchmarks/gpu_train.json
    report  the table in docs/results.md

    python -m benchmarks.gpu_train run [--batch 256] [--compile] [--peak-tflops 989]
    python -m benchmarks.gpu_train report

--peak-tflops is the GPU's dense bf16 peak from its data sheet (989 for an H100 or H200 SXM).
--tiny runs a tiny model at 32 px on CPU in fp32, to prove the script works; its figures say
nothing about a GPU.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from benchmarks.common import ROOT, table, write_section
from benchmarks.train_data_path import loader, make_shards
from ptcommon.launcher import detect
from train.data.shards import ShardSet
from train.trainer import to_device

RESULT = ROOT / "runs" / "benchmarks" / "gpu_train.json"


def training_step(model, optimizer, amp: torch.dtype | None):
    def step(images: torch.Tensor, labels: torch.Tensor) -> None:
        with torch.autocast(images.device.type, dtype=amp, enabled=amp is not None):
            loss = F.cross_entropy(model(images), labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    return step


def timed(step, batches, steps: int, warmup: int, device: torch.device) -> float:
    """Steps a second over STEPS steps after WARMUP ones (cuDNN's search, compilation)."""
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


def flops_per_image(model, size: int, device: torch.device, amp: torch.dtype | None) -> float:
    """FLOPs of one training step (forward + backward) per image, counted on a batch of 2."""
    from torch.utils.flop_counter import FlopCounterMode

    images = torch.randn(2, 3, size, size, device=device)
    with FlopCounterMode(display=False) as counter:
        with torch.autocast(device.type, dtype=amp, enabled=amp is not None):
            loss = model(images).float().sum()
        loss.backward()
    model.zero_grad(set_to_none=True)
    return counter.get_total_flops() / 2


def run(args: argparse.Namespace) -> None:
    import timm

    tiny = args.tiny
    device = torch.device("cpu" if tiny else "cuda")
    arch, size, shard_size, batch = ("test_resnet", 32, 40, 4) if tiny else ("resnet50", 224, 256, args.batch)
    steps, warmup = (3, 1) if tiny else (args.steps, args.warmup)
    amp = None if tiny else torch.bfloat16
    workers = args.workers if args.workers is not None else detect().cores
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    model = timm.create_model(arch, num_classes=1000).to(device, memory_format=torch.channels_last).train()
    per_image = flops_per_image(model, size, device, amp)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    step = training_step(torch.compile(model) if args.compile else model, optimizer, amp)

    held = to_device((torch.randn(batch, 3, size, size), torch.randint(0, 1000, (batch,))), device)  # stays there
    in_memory = timed(step, iter(lambda: held, None), steps, warmup, device) * batch

    images = batch * (steps + warmup) if tiny else args.images
    shards = ShardSet(make_shards(Path(tempfile.mkdtemp(prefix="ptgen-gputrain-")) / "jpg", "jpg", images, shard_size))
    batches = loader(shards, size, batch, workers, steps=10**6, pin=device.type == "cuda")(0)
    fed = timed(step, batches, steps, warmup, device) * batch

    name = "CPU (tiny proof)" if tiny else torch.cuda.get_device_name()
    result = {"tiny": tiny, "device_name": name, "arch": arch, "size": size, "batch": batch, "steps": steps,
              "amp": "off" if amp is None else "bf16", "compile": args.compile, "workers": workers,
              "cores": detect().cores, "flops_per_image": per_image, "in_memory_images_per_s": round(in_memory, 1),
              "loader_images_per_s": round(fed, 1), "peak_tflops": args.peak_tflops,
              "mfu": round(in_memory * per_image / (args.peak_tflops * 1e12), 4)}
    RESULT.parent.mkdir(parents=True, exist_ok=True)
    RESULT.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result, indent=1))


def report(_: argparse.Namespace) -> None:
    r = json.loads(RESULT.read_text())
    tiny = (" **Tiny proof run on CPU: it shows that the script works, not what a GPU does.**" if r["tiny"] else "")
    md = f"""### ResNet-50 training on one GPU: in memory, fed by the loader, MFU

Command: `python -m benchmarks.gpu_train run{' --tiny' if r['tiny'] else f" --batch {r['batch']}"}{' --compile' if r['compile'] else ''}
&& python -m benchmarks.gpu_train report`. {r['device_name']}; {r['arch']} at {r['size']} px, batch
{r['batch']}, {r['amp']} autocast, channels_last, AdamW; the loader from JPEG shards through the
natural policy's training transform with {r['workers']} workers ({r['cores']} cores). MFU: the
in-memory rate x {r['flops_per_image'] / 1e9:.1f} GFLOP per image (forward + backward, counted) over
the {r['peak_tflops']} TFLOP/s peak.{tiny}

{table(["path", "images/s", "ratio"], [
    ["one batch in GPU memory", r["in_memory_images_per_s"], "1.00"],
    ["fed by pttrain's loader from shards", r["loader_images_per_s"],
     f"{r['loader_images_per_s'] / r['in_memory_images_per_s']:.2f} (goal >= 0.9)"],
    ["model FLOP utilisation", f"{r['mfu']:.1%}", ""],
])}
"""
    write_section("gpu_train", md)
    print(md)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run")
    r.add_argument("--batch", type=int, default=256)
    r.add_argument("--steps", type=int, default=50)
    r.add_argument("--warmup", type=int, default=15)
    r.add_argument("--images", type=int, default=8192, help="Shard images the loader reads (it repeats them).")
    r.add_argument("--workers", type=int, help="Loader workers. [default: the node's cores]")
    r.add_argument("--peak-tflops", type=float, default=989.0)
    r.add_argument("--compile", action="store_true")
    r.add_argument("--tiny", action="store_true")
    sub.add_parser("report")
    args = ap.parse_args()
    run(args) if args.cmd == "run" else report(args)


if __name__ == "__main__":
    main()
