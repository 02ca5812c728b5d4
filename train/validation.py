"""What a run scores itself on while it trains, and the test score at its end.

A target's during-training curve comes from validation images: its val/ part, or --val-split of
train/ (train.data.labeled.split_off); never from test/, which only `pttrain eval` and the end of
a run read. Pseudo pre-training holds out a few of its shards (--val-shards) and scores on them.
Every rank scores a slice and the counts are summed (train.evaluate).
"""

from __future__ import annotations

import copy
from typing import Callable

import torch

from ptcommon.cli import InputError
from ptcommon.shards import shard_name

from .data.labeled import LabeledImages
from .data.loading import build_loader
from .data.shards import ShardSet
from .evaluate import evaluate, rank_slice

# pp's default hold-out: 1% of the shards, where that is 2 shards or more (200 shards, 200,000
# images at ptgen's default shard size); smaller folders, the built-in world's among them, train on
# every shard unless --val-shards says otherwise.
VAL_SHARD_SHARE = 100
VAL_SHARDS_MIN = 2

Scorer = Callable[[torch.nn.Module], dict]


def default_val_shards(num_shards: int) -> int:
    held = num_shards // VAL_SHARD_SHARE
    return held if held >= VAL_SHARDS_MIN else 0


def hold_out_shards(data: ShardSet, flag: int | None) -> tuple[ShardSet, ShardSet | None]:
    """(train, val): the last --val-shards shards of DATA held out (synth writes classes in turn, so
    every shard of at least as many samples as classes holds each class); by default
    `default_val_shards`. The sample counts follow from the header: only the last shard may be short."""
    total = len(data.paths)
    held = default_val_shards(total) if flag is None else flag
    if held == 0:
        return data, None
    if held >= total:
        raise InputError(f"--val-shards {held}: the folder has {total} shard(s) and training needs one at least; "
                         f"pass at most {total - 1}")
    shard_size = int(data.header["shard_size"])
    val_count = data.count - (total - held) * shard_size
    train, val = copy.copy(data), copy.copy(data)
    train.paths, train.count = data.paths[: total - held], data.count - val_count
    val.paths, val.count = data.paths[total - held:], val_count
    return train, val


def held_out_names(data: ShardSet, val: ShardSet) -> list[str]:
    first = len(data.paths) - len(val.paths)
    return [shard_name(data.header["prefix"], k) for k in range(first, len(data.paths))]


def image_scorer(dataset: LabeledImages, transform, num_classes: int, ctx, prefix: str) -> Scorer:
    """Top-1 on DATASET, as {PREFIX_top1, PREFIX_n}, each rank scoring its slice."""
    dataset = dataset.subset(range(len(dataset)), dataset.where)
    dataset.transform = transform
    loader = build_loader(rank_slice(dataset, ctx.dist.rank, ctx.dist.world), ctx.workers, ctx.pin, batch_size=256)

    def score(model: torch.nn.Module) -> dict:
        result = evaluate(model, loader, num_classes, ctx.dist.device, ctx.dist.all_reduce_sum)
        return {f"{prefix}_top1": result.top1, f"{prefix}_n": result.n}

    return score


def shard_scorer(val: ShardSet, transform, num_classes: int, ctx) -> Scorer:
    """Top-1 on held-out shards, as val_top1 / val_n: each rank reads its share of them once."""

    def score(model: torch.nn.Module) -> dict:
        batches = val.pipeline(transform, 256, train=False, seed=0, with_labels=True, corrupt=val.corrupt)
        result = evaluate(model, batches, num_classes, ctx.dist.device, ctx.dist.all_reduce_sum)
        return {"val_top1": result.top1, "val_n": result.n}

    return score
