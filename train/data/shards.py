"""Shard folders written by the generation stage, read through a WebDataset pipeline.

The format itself (names, header, which members are read and how they are decoded) is
`ptcommon.shards`; this module adds what training needs: epochs, shuffling, splitting over
ranks and workers, and the label mapping.
"""

from __future__ import annotations

import functools
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import torch
import webdataset as wds

from ptcommon.cli import InputError
from ptcommon.shards import (PTGEN, Layout, ReadPolicy, ShardFormatError, decode, read_header, refuse_unexpected,
                             shard_paths, tar_samples, unexpected_members)
from ptcommon.storage import as_location

from ..seeding import derive_seed

SHUFFLE_BUFFER = 2000


def _shard_of(exn: Exception) -> str:
    """The shard a reading error names (WebDataset and `tar_samples` append its URL to the args)."""
    return next((str(a) for a in exn.args if isinstance(a, str) and ".tar" in a), "a shard")


@dataclass
class CorruptCounter:
    """With --skip-corrupt: how many damaged samples or shards were skipped, and where."""

    skip: bool
    count: int = 0
    where: set = field(default_factory=set)
    # Training deals shards forever, so a folder damaged throughout would spin without a step;
    # two counts in a row tell it apart from bad luck. Skips since the last sample that decoded,
    # against `limit`; shard reads that failed since the last sample read out of any tar, against
    # `reads_limit`: a folder whose every shard fails to open stops after a few reads of each, however
    # many samples its header counts. None: no limit (a single pass ends by itself).
    in_a_row: int = 0
    limit: int | None = None
    reads_in_a_row: int = 0
    reads_limit: int | None = None

    def __call__(self, exn: Exception) -> bool:
        if isinstance(exn, ShardFormatError):  # a refusal, never a damage to skip
            raise exn
        shard = _shard_of(exn)
        if not self.skip:
            raise InputError(f"{shard}: corrupted or unreadable shard ({exn.__class__.__name__}: "
                             f"{str(exn.args[0])[:80] if exn.args else ''}); rerun ptgen on it or pass --skip-corrupt")
        self.count += 1
        self.in_a_row += 1
        self.where.add(shard)
        if self.limit is not None and self.in_a_row > self.limit:
            self._nothing_left(f"{self.in_a_row} damaged samples or shards in a row")
        warnings.warn(f"skipping damaged data in {shard}: {exn.__class__.__name__}", stacklevel=2)
        return True

    def shard_failed(self, exn: Exception) -> bool:
        """The handler of the tar-reading stage: a shard that could not be read on."""
        self.reads_in_a_row += 1
        if self.skip and self.reads_limit is not None and self.reads_in_a_row > self.reads_limit:
            self.where.add(_shard_of(exn))
            self._nothing_left(f"{self.reads_in_a_row} shard reads in a row failed")
        return self(exn)

    def _nothing_left(self, what: str):
        raise InputError(f"{what} and not one readable sample, in {len(self.where)} shard(s) such as "
                         f"{min(self.where)}: nothing left to train on; rerun ptgen on the folder")

    def read(self, sample):
        """A pipeline stage's map: a sample came out of a tar, so its shard was readable."""
        self.reads_in_a_row = 0
        return sample

    def readable(self, sample):
        """A pipeline stage's map: a sample got through, so the skips so far were not the whole folder."""
        self.in_a_row = 0
        return sample


class ShardSet:
    """A folder of ptgen shards, at a path or a URL: its dataset.json, its shard files and the label mapping."""

    layout: Layout = PTGEN  # the members each sample is read from
    made_by_ptgen = True  # pseudo samples carry their target's confidence; a foreign set's images carry none
    # What `index_of` maps to head indices: a sample's .cls source id (None), or this field of its .json
    # (pseudo samples' class name, when they train as labeled extra data).
    label_field: str | None = None

    def __init__(self, root: str | Path, flag: str = "--shards", labeled: bool | None = None,
                 policy: ReadPolicy | None = None, skip_corrupt: bool = False):
        """`labeled` True or False refuses a folder of the other kind; None takes either."""
        self.root = as_location(root, flag)
        self.policy = policy or ReadPolicy()
        self.corrupt = CorruptCounter(skip_corrupt)
        self.header = read_header(self.root, flag)
        self.paths = shard_paths(self.root, self.header, flag, damaged_ok=skip_corrupt)
        if self.policy.strict:  # up front, so a refusal comes before any run folder or training step
            refuse_unexpected(unexpected_members(self.paths), f"{flag} {root}")
        self.count = int(self.header["count"])
        self.labeled = bool(self.header.get("labeled"))
        if labeled is not None and labeled != self.labeled:
            kind = "labeled (ptgen synth)" if self.labeled else "unlabeled (ptgen pseudo)"
            want = "labeled shards from ptgen synth" if labeled else "unlabeled samples"
            raise InputError(f"{flag} {root}: holds {kind} samples; this needs {want}")
        # Source ids in .cls map to contiguous head indices in the order of dataset.json's class_ids.
        self.class_ids: list[int] = list(self.header.get("class_ids", []))
        self.class_names: list[str] = list(self.header.get("class_names", []))
        self.index_of = {cid: i for i, cid in enumerate(self.class_ids)}
        self.image_size = int(self.header["image_size"])
        self.channels = int(self.header.get("channels", 1))

    def report_skipped(self) -> None:
        """One line for each kind of data this process skipped while reading: damaged, or not in the format."""
        if self.corrupt.count:
            print(f"warning: skipped {self.corrupt.count} damaged samples or shards in {sorted(self.corrupt.where)}")
        if (summary := self.policy.summary()) is not None:
            print(f"warning: {summary}")

    def pipeline(self, transform, batch_size: int, *, train: bool, seed: int, with_labels: bool,
                 corrupt: CorruptCounter, batches_per_worker: int | None = None,
                 weight_of: Callable[[dict], float] | None = None) -> wds.DataPipeline:
        """Batches of (images, labels) or (images,), unlabeled ones with each sample's weight last when
        `weight_of` (a sample's `.json` -> weight) is given; samples of weight 0 are left out.

        Training deals the shards to the loader workers of every rank (`dealt_shards`), shuffles
        each worker's share, and cuts the endless stream into epochs of `batches_per_worker`
        batches: every rank takes the same number of steps however unevenly shards divide, so no
        rank waits at an epoch's end.
        Evaluation reads every shard once, split over ranks and workers.
        """
        read = wds.pipelinefilter(tar_samples)(self.policy, corrupt.shard_failed, self.layout)
        if train:
            # Limits no folder with a readable sample reaches: every shard read 16 times over and
            # every sample 4 times over without one that decodes.
            corrupt.reads_limit = 16 * len(self.paths) + 64
            corrupt.limit = 4 * (len(self.paths) + self.count) + 64
            stages = [self._dealt_samples(seed, read, corrupt)]
        else:
            stages = [wds.SimpleShardList(list(map(str, self.paths))), wds.split_by_node, wds.split_by_worker, read]
        stages.append(wds.map(functools.partial(decode, layout=self.layout), handler=corrupt))
        if weight_of is not None:
            stages.append(wds.select(lambda sample: weight_of(sample.meta) > 0))
        stages.append(wds.map(self._fields(transform, with_labels, weight_of), handler=corrupt))
        if train:
            stages.append(wds.map(corrupt.readable))
        stages.append(wds.batched(batch_size, partial=not train))
        pipeline = wds.DataPipeline(*stages)
        if batches_per_worker is not None:
            pipeline = pipeline.with_epoch(batches_per_worker)
        return pipeline

    def _dealt_samples(self, seed: int, read, corrupt: CorruptCounter):
        """The pipeline's source in training: this worker's share of each round (`dealt_shards`),
        read and shuffled a round at a time with a buffer seeded per (seed, rank, worker, round)."""
        urls = list(map(str, self.paths))

        def samples() -> Iterator[dict]:
            rank, world, worker, workers = wds.utils.pytorch_worker_info()
            for round_, group in dealt_shards(len(urls), seed, rank * workers + worker, world * workers):
                shuffle = wds.shuffle(SHUFFLE_BUFFER, initial=SHUFFLE_BUFFER // 2,
                                      seed=derive_seed(seed, rank, worker, round_))
                yield from shuffle(map(corrupt.read, read(iter({"url": urls[k]} for k in group))))

        return samples

    def _fields(self, transform, with_labels: bool, weight_of: Callable[[dict], float] | None = None):
        """(image,) or (image, head index) of a decoded sample (unlabeled: and its weight, with
        `weight_of`); a sample missing its label names its shard."""

        def extract(sample) -> tuple:
            if not with_labels:
                views = transform(sample.image)  # one tensor, or several views of one image (weak, strong)
                views = views if isinstance(views, tuple) else (views,)
                return views if weight_of is None else (*views, torch.tensor(weight_of(sample.meta)))
            label = sample.label if self.label_field is None else sample.meta.get(self.label_field)
            if label is None:
                raise ValueError(f"sample {sample.key} lacks its label", sample.shard)
            if label not in self.index_of:
                raise ValueError(f"sample {sample.key}: label {label!r} is not among the classes trained on",
                                 sample.shard)
            return transform(sample.image), self.index_of[label]

        return extract


def dealt_shards(count: int, seed: int, slot: int, slots: int) -> Iterator[tuple[int, list[int]]]:
    """Training's shards for loader worker SLOT of SLOTS (ranks x workers), as (round, shard indices).

    The shards' order is an endless sequence of permutations of all COUNT shards, each seeded from
    (SEED, round) and the same in every process, dealt position by position to the slots in turn:
    every shard is read once before any is read again. A slot's shards of one round come as one
    group, which the pipeline shuffles on its own, so a round's samples all come out before the
    next round's. An epoch therefore trains on each image once, but for the slots' uneven shares:
    a slot short of an epoch's images goes on into the next round, one with more stops inside its
    own (docs/results.md gives the shares at 1,300 shards over 64 ranks x 8 workers)."""
    position, current, group = slot, 0, []
    order = _round_order(count, seed, 0)
    while True:
        round_, k = divmod(position, count)
        if round_ != current:
            if group:
                yield current, group
            current, group, order = round_, [], _round_order(count, seed, round_)
        group.append(order[k])
        position += slots


def _round_order(count: int, seed: int, round_: int) -> list[int]:
    return np.random.default_rng(derive_seed(seed, "deal", round_)).permutation(count).tolist()
