"""Shard folders written by the generation stage, read through a WebDataset pipeline.

This module knows the shard format (docs/shards.md) and nothing of how the shards were made.
"""

from __future__ import annotations

import json
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import webdataset as wds

from ptcommon.cli import InputError

SHUFFLE_BUFFER = 2000
IMAGE_KEYS = ("png", "jpg", "jpeg", "webp")


@dataclass
class CorruptCounter:
    """With --skip-corrupt: how many damaged samples or shards were skipped, and where."""

    skip: bool
    count: int = 0
    where: set = field(default_factory=set)

    def __call__(self, exn: Exception) -> bool:
        shard = next((str(a) for a in exn.args if isinstance(a, str) and ".tar" in a), "a shard")
        if not self.skip:
            raise InputError(f"{shard}: corrupted or unreadable shard ({exn.__class__.__name__}: "
                             f"{str(exn.args[0])[:80] if exn.args else ''}); rerun ptgen on it or pass --skip-corrupt")
        self.count += 1
        self.where.add(shard)
        warnings.warn(f"skipping damaged data in {shard}: {exn.__class__.__name__}", stacklevel=2)
        return True


class ShardSet:
    """A folder of ptgen shards: its dataset.json, its shard files and the label mapping."""

    def __init__(self, root: Path, flag: str = "--shards", labeled: bool | None = None):
        """`labeled` True or False refuses a folder of the other kind; None takes either."""
        self.root = root
        header_path = root / "dataset.json"
        if not header_path.exists():
            raise InputError(f"{flag} {root}: no dataset.json; expected a folder written by ptgen synth or ptgen pseudo")
        self.header = json.loads(header_path.read_text())
        prefix, count, size = self.header["prefix"], self.header["count"], self.header["shard_size"]
        self.paths = [root / f"{prefix}-{k:06d}.tar" for k in range(-(-count // size))]
        missing = [p.name for p in self.paths if not p.exists()]
        if missing:
            raise InputError(f"{flag} {root}: {len(missing)} of {len(self.paths)} shards missing ({missing[0]}, ...); "
                             "finish the generation first (rerun the same ptgen command)")
        self.count = count
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

    def pipeline(self, transform, batch_size: int, *, train: bool, seed: int, with_labels: bool,
                 corrupt: CorruptCounter, batches_per_worker: int | None = None) -> wds.DataPipeline:
        """Batches of (images, labels) or (images,).

        Training draws shards with replacement, seeded per (seed, rank, worker), and cuts the
        endless stream into epochs of `batches_per_worker` batches: every rank takes the same
        number of steps however unevenly shards divide, so no rank waits at an epoch's end.
        Evaluation reads every shard once, split over ranks and workers.
        """
        urls = [str(p) for p in self.paths]
        stages = [wds.ResampledShards(urls, seed=seed, deterministic=True)] if train else [
            wds.SimpleShardList(urls), wds.split_by_node, wds.split_by_worker]
        stages += [wds.tarfile_to_samples(handler=corrupt)]
        if train:
            stages.append(wds.shuffle(SHUFFLE_BUFFER, initial=SHUFFLE_BUFFER // 2))
        stages += [wds.decode("pil", handler=corrupt), wds.map(self._fields(transform, with_labels), handler=corrupt)]
        stages.append(wds.batched(batch_size, partial=not train))
        pipeline = wds.DataPipeline(*stages)
        if batches_per_worker is not None:
            pipeline = pipeline.with_epoch(batches_per_worker)
        return pipeline

    def _fields(self, transform, with_labels: bool):
        """(image,) or (image, head index) of a decoded sample; a sample missing a member names its shard."""

        def extract(sample: dict) -> tuple:
            image = next((sample[k] for k in IMAGE_KEYS if k in sample), None)
            if image is None or (with_labels and "cls" not in sample):
                raise ValueError(f"sample {sample.get('__key__')} lacks its image or label", sample.get("__url__", ""))
            if not with_labels:
                views = transform(image)  # one tensor, or several views of one image (weak, strong)
                return views if isinstance(views, tuple) else (views,)
            return transform(image), self.index_of[int(sample["cls"])]

        return extract
