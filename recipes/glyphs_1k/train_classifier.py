"""Train the glyphs-1k source classifier on freshly rendered batches (never a repeated image).

    python -m recipes.glyphs_1k.train_classifier --out ptcommon/builtin/glyphs-1k/classifier --minutes 7

The run folder ends up holding `model.safetensors` (fp16) and `config.json`, written by
`train.models.save_run` as for any `pttrain` run (everything needed to rebuild the model and to
preprocess its input), and `metrics.json` (top-1 on renders from seeds that training never
used). While training, a `checkpoint.pt` is kept there; rerunning the same command resumes
from it, and it is deleted once the final files are written.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from timm.scheduler import CosineLRScheduler

from ptcommon.runfolder import ModelConfig, create_model, load_run

from train.models import save_run

from .class_list import CLASSES_JSON, GlyphClass, load_classes
from .render import GlyphRenderer, derive_seed

# A ResNet with a deep stem whose pooling is a strided convolution: a 16x16 input runs its
# stem at 8x8 and its four stages at 4x4, 2x2, 1x1 and 1x1. The stage widths keep it under
# 1.5M parameters (3 MB in fp16). It differs from resnet18, `pttrain`'s default target
# architecture, as the method requires.
ARCH = "resnet10t"
TIMM_KWARGS: dict = {
    "stem_type": "deep",
    "stem_width": 32,
    "replace_stem_pool": True,
    "channels": [64, 112, 176, 160],
}
BATCH_SIZE = 256
PEAK_LR = 3e-3
WEIGHT_DECAY = 0.05
LABEL_SMOOTHING = 0.1
WARMUP_FRACTION = 0.03
# Training and evaluation draw batch seeds from distinct streams: training batch k renders
# from derive_seed(TRAIN_STREAM, k, ...), evaluation batch k from derive_seed(EVAL_STREAM, k, ...).
TRAIN_STREAM = 0
EVAL_STREAM = 1
EVAL_IMAGES = 10_000
SCHEDULE_TICKS = 10_000
CHECKPOINT_EVERY_S = 60.0
# Pixel statistics of the renders (white ink on black), measured once and frozen here so
# that every consumer normalises identically.
NORMALIZE_MEAN = 0.15
NORMALIZE_STD = 0.29


def preprocess(images: torch.Tensor) -> torch.Tensor:
    """uint8 (N, 1, H, W) renders -> normalised float input, channels-last for CPU speed."""
    x = images.float().div_(255.0).sub_(NORMALIZE_MEAN).div_(NORMALIZE_STD)
    return x.contiguous(memory_format=torch.channels_last)


@torch.no_grad()
def evaluate(model: torch.nn.Module, renderer: GlyphRenderer, num_images: int = EVAL_IMAGES, batch_size: int = 1000) -> float:
    """Top-1 accuracy on renders from the evaluation seed stream."""
    model.eval()
    correct = seen = 0
    for images, labels in renderer.batches(batch_size, EVAL_STREAM):
        take = min(batch_size, num_images - seen)
        logits = model(preprocess(images[:take]))
        correct += int((logits.argmax(1) == labels[:take]).sum())
        seen += take
        if seen >= num_images:
            break
    return correct / seen


def eval_seeds_unseen(train_steps: int, num_images: int = EVAL_IMAGES, batch_size: int = 1000) -> bool:
    """True when no evaluation batch seed equals any seed that training rendered from."""
    train = {derive_seed(TRAIN_STREAM, k, part) for k in range(train_steps) for part in (0, 1)}
    batches = -(-num_images // batch_size)
    return all(derive_seed(EVAL_STREAM, k, part) not in train for k in range(batches) for part in (0, 1))


def model_config(classes: list[GlyphClass], arch: str, timm_kwargs: dict, size: int) -> ModelConfig:
    """The run folder's config.json, as `pttrain` writes and every stage reads it."""
    return ModelConfig(
        arch=arch,
        num_classes=len(classes),
        class_names=[c.name for c in classes],
        image_size=size,
        in_chans=1,
        mean=[NORMALIZE_MEAN],
        std=[NORMALIZE_STD],
        source_ids=[c.id for c in classes],
        timm_kwargs=timm_kwargs,
    )


def _save_atomic(obj: dict, path: Path) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def train(
    out: Path,
    minutes: float,
    steps: int | None,
    arch: str,
    timm_kwargs: dict,
    classes_path: Path,
    size: int,
    checkpoint_every_s: float = CHECKPOINT_EVERY_S,
) -> dict:
    """Train (or resume) into `out`; return the metrics.

    Why not train/trainer.py: the loss is `Supervised(label_smoothing=0.1)`'s and fresh renders
    would fit `Trainer`'s `batches(epoch)`, but `Trainer` runs a fixed number of steps (epochs x
    steps per epoch) with its cosine floor fixed at 1e-2 x the peak rate. This recipe's budget is
    minutes of training steps (7 in the build), its cosine follows the fraction of that budget
    spent and decays to 1e-3 x the peak, and it checkpoints by seconds; `Trainer` would also leave
    metrics.jsonl and curve.png in the run folder, which the build ships whole.
    """
    # Zero-initialised residual branches start with subnormal gradients, which run 20x slower
    # on x86 CPUs; flushing them to zero changes nothing that matters for training.
    torch.set_flush_denormal(True)
    out.mkdir(parents=True, exist_ok=True)
    classes = load_classes(classes_path)
    config = model_config(classes, arch, timm_kwargs, size)
    renderer = GlyphRenderer([c.codepoint for c in classes], size=size)

    model = create_model(config).to(memory_format=torch.channels_last)
    optimizer = torch.optim.AdamW(model.parameters(), lr=PEAK_LR, weight_decay=WEIGHT_DECAY)

    checkpoint_path = out / "checkpoint.pt"
    if (out / "model.safetensors").exists() and not checkpoint_path.exists():
        raise SystemExit(f"{out} already holds a finished run; choose another --out")
    if checkpoint_path.exists():
        state = torch.load(checkpoint_path, weights_only=True)
        if state["config"] != config.as_dict():
            raise SystemExit(f"{checkpoint_path} belongs to a different configuration; remove it or choose another --out")
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        step, train_seconds, budget = state["step"], state["train_seconds"], state["budget"]
        print(f"resuming at step {step} after {train_seconds / 60:.1f} min (budget {budget})", flush=True)
    else:
        step, train_seconds = 0, 0.0
        budget = {"steps": steps} if steps else {"seconds": minutes * 60.0}

    def progress() -> float:
        if "steps" in budget:
            return step / budget["steps"]
        return train_seconds / budget["seconds"]

    # The cosine follows training progress in [0, 1] (steps done, or seconds spent, over the
    # budget), so a time budget still decays to its minimum on a machine shared with others.
    scheduler = CosineLRScheduler(
        optimizer,
        t_initial=SCHEDULE_TICKS,
        lr_min=PEAK_LR * 1e-3,
        warmup_t=int(WARMUP_FRACTION * SCHEDULE_TICKS),
        warmup_lr_init=PEAK_LR * 1e-2,
        t_in_epochs=False,
    )
    model.train()
    last_save = last_log = time.perf_counter()
    batches = renderer.batches(BATCH_SIZE, TRAIN_STREAM, start=step)
    while progress() < 1.0:
        tick = time.perf_counter()
        scheduler.step_update(int(progress() * SCHEDULE_TICKS))
        images, labels = next(batches)
        logits = model(preprocess(images))
        loss = F.cross_entropy(logits, labels, label_smoothing=LABEL_SMOOTHING)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        step += 1
        now = time.perf_counter()
        train_seconds += now - tick
        if now - last_log > 30:
            accuracy = (logits.argmax(1) == labels).float().mean().item()
            print(f"step {step}  loss {loss.item():.3f}  batch top-1 {accuracy:.3f}  {train_seconds / 60:.2f} min", flush=True)
            last_log = now
        if now - last_save > checkpoint_every_s:
            state = {"model": model.state_dict(), "optimizer": optimizer.state_dict(), "step": step,
                     "train_seconds": train_seconds, "budget": budget, "config": config.as_dict()}
            _save_atomic(state, checkpoint_path)
            last_save = now

    # fp16 halves the shipped bytes; half() leaves the integer BatchNorm counters as they are.
    save_run(out, copy.deepcopy(model).half(), config)
    # Score what ships: the fp16 weights loaded back the way every later step loads them.
    shipped = load_run(str(out), "--out")[0].to(memory_format=torch.channels_last)
    metrics = {
        "top1_unseen_renders": evaluate(shipped, renderer),
        "eval_images": EVAL_IMAGES,
        "eval_seeds_disjoint_from_training": eval_seeds_unseen(step),
        "train_steps": step,
        "batch_size": BATCH_SIZE,
        "train_images": step * BATCH_SIZE,
        "train_minutes": round(train_seconds / 60, 2),
        "parameters": sum(p.numel() for p in shipped.parameters()),
        "torch_threads": torch.get_num_threads(),
    }
    (out / "metrics.json").write_text(json.dumps(metrics, indent=1) + "\n", encoding="utf-8")
    checkpoint_path.unlink(missing_ok=True)
    return metrics


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description="Train the glyphs-1k source classifier on endless fresh renders (CPU is fine).",
        epilog="Rerunning with the same --out resumes from its checkpoint.",
    )
    parser.add_argument("--out", type=Path, required=True, help="run folder to write")
    parser.add_argument("--minutes", type=float, default=7.0, help="training budget in minutes of training steps (default 7)")
    parser.add_argument("--steps", type=int, default=None, help="train exactly this many steps instead of a time budget")
    parser.add_argument("--arch", default=ARCH, help=f"timm architecture (default {ARCH})")
    parser.add_argument("--timm-kwargs", type=json.loads, default=TIMM_KWARGS, help="JSON keyword arguments for timm.create_model")
    parser.add_argument("--classes", type=Path, default=CLASSES_JSON, help="class list (default: the recipe's classes.json)")
    parser.add_argument("--size", type=int, default=16, help="image size in pixels (default 16)")
    parser.add_argument("--checkpoint-every", type=float, default=CHECKPOINT_EVERY_S, help="seconds between checkpoints (default 60)")
    args = parser.parse_args(argv)
    metrics = train(args.out, args.minutes, args.steps, args.arch, args.timm_kwargs, args.classes, args.size, args.checkpoint_every)
    print(json.dumps(metrics, indent=1))


if __name__ == "__main__":
    main()
