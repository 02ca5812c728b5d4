"""The output folder of a generation job: dataset.json, finished shards, manifest parts and their merge.

Files:
  dataset.json            the config (and its hash) every shard in the folder was made with
  <prefix>-NNNNNN.tar     finished shards; `.<name>.tmp` while being written
  _parts/<shard>.parquet  one manifest part per finished shard, written before the shard is renamed
  manifest.parquet        all parts in shard order, written once the last shard lands
  _info.json              split info in the form timm's WebDataset reader reads
  soft_labels.safetensors `ptgen pseudo`'s soft labels, computed once (generate.soft_labels)
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import asdict
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from ptcommon.cli import InputError
from ptcommon.storage import Location, as_location
from ptcommon.shards import (DATASET_FILE, INFO_FILE, MANIFEST_FILE, PARTS_DIR, SOFT_LABELS_FILE, part_name, read_header,
                             shard_glob, temp_name)
from . import __version__
from .plan import WorkPlan

# Header fields that never decide a shard's bytes.
_UNHASHED_HEADER = ("config_hash", "version", "batch_size", "model")
# How long a rank other than 0 waits for rank 0 to clear a folder under --overwrite.
_OVERWRITE_WAIT_S = 600


def config_hash(config: dict) -> str:
    canonical = json.dumps(config, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def dataset_header(job, described: dict, labeled: bool) -> dict:
    """A job's dataset.json: its settings and hashed config, what JOB's kind adds (DESCRIBED), and the
    fields every shard folder has."""
    hashed = job.hashed_config()
    fingerprint = hashed.pop("model_fingerprint")
    return {
        **asdict(job.settings), **hashed, **described,
        "image_size": job.generator.image_size, "channels": job.generator.channels, "count": job.plan.count,
        "num_shards": job.plan.num_shards, "prefix": job.plan.prefix, "labeled": labeled,
        "config_hash": config_hash(job.hashed_config()), "version": __version__,
        "model_fingerprint": fingerprint,  # last: long, and rarely what a reader looks for
    }


def _describe_difference(ours: dict, theirs: dict) -> str:
    keys = sorted(k for k in set(ours) | set(theirs) if ours.get(k) != theirs.get(k))
    shown = []
    for k in keys[:4]:
        a, b = json.dumps(ours.get(k)), json.dumps(theirs.get(k))
        shown.append(f"{k} {a[:40]} here vs {b[:40]} there")
    return "; ".join(shown) + (f" (and {len(keys) - 4} more)" if len(keys) > 4 else "")


class ShardFolder:
    """The output folder, local or at a URL (ptcommon.storage). Locally a shard is written in place
    under its temporary name; for a URL it is written in STAGING, a local folder, and uploaded once
    complete, so the local space a rank needs is about one shard."""

    def __init__(self, root: Location | Path, plan: WorkPlan, staging: Path | None = None):
        self.root = as_location(root, "--out")
        self.plan = plan
        self.parts = self.root.sub(PARTS_DIR)
        self.local = staging if self.root.remote else self.root.path  # where shards are written before they land
        self._landed: set[str] | None = None  # a URL's shards listed once at start: a rerun skips them

    def read_header(self) -> dict | None:
        """The folder's dataset.json, validated; None for a folder without one."""
        if not self.root.exists(DATASET_FILE):
            return None
        return read_header(self.root, "--out", remedy="remove it or use --overwrite")

    def check_compatible(self, header: dict, hashed: dict) -> None:
        """Stop before mixing datasets: the folder must be empty of shards or hold this very config."""
        existing = self.read_header()
        if existing is None:
            strays = self.root.names(shard_glob(self.plan.prefix))
            if strays:
                raise InputError(
                    f"--out {self.root}: holds shards ({strays[0]}, ...) but no {DATASET_FILE}; "
                    "use an empty folder or --overwrite"
                )
            return
        if existing.get("config_hash") != header["config_hash"]:
            theirs = {k: existing.get(k) for k in hashed}
            if theirs == hashed:
                # A setting hashed only away from its default (--compile, --quality) is absent from
                # one side's hashed config: name it from the headers, less what decides no byte.
                ours = {k: v for k, v in header.items() if k not in _UNHASHED_HEADER}
                hashed, theirs = ours, {k: existing.get(k) for k in ours}
            raise InputError(
                f"--out {self.root}: holds shards of another config (differs in {_describe_difference(hashed, theirs)}); "
                "use another folder, or --overwrite to replace them"
            )

    def clear(self) -> None:
        """Remove what a generation job wrote, and nothing else the user keeps in the folder."""
        for pattern in (shard_glob(self.plan.prefix), temp_name(shard_glob(self.plan.prefix))):
            self.root.remove(self.root.names(pattern))
        self.parts.remove(self.parts.names())
        self.root.remove([MANIFEST_FILE, INFO_FILE, SOFT_LABELS_FILE, DATASET_FILE])

    def prepare(self, header: dict, hashed: dict, rank: int, overwrite: bool) -> None:
        """Make the folder ready for this config: create it, check or clear what it holds, write dataset.json.

        Under --overwrite only rank 0 clears; the other ranks wait for its new dataset.json, so no
        rank deletes a shard another has just written.
        """
        self.local.mkdir(parents=True, exist_ok=True)
        if overwrite and rank > 0:
            self._wait_for_header(header["config_hash"])
        else:
            if overwrite:
                self.clear()
            else:
                self.check_compatible(header, hashed)
            # A resumed folder keeps the dataset.json it was started with.
            if self.read_header() is None:
                self.root.write_bytes(DATASET_FILE, (json.dumps(header, indent=1) + "\n").encode())
        if self.root.remote:
            self._landed = set(self.root.names(shard_glob(self.plan.prefix)))

    def _wait_for_header(self, wanted_hash: str) -> None:
        deadline = time.monotonic() + _OVERWRITE_WAIT_S
        while time.monotonic() < deadline:
            existing = self.read_header()
            if existing is not None and existing.get("config_hash") == wanted_hash:
                return
            time.sleep(0.2)
        raise InputError(f"--overwrite: rank 0 did not prepare {self.root} within {_OVERWRITE_WAIT_S} s; is it running?")

    def is_complete(self, shard: int) -> bool:
        name = self.plan.shard_name(shard)
        return name in self._landed if self._landed is not None else self.root.exists(name)

    def shard_path(self, shard: int) -> Path:
        """Where the shard writer writes shard SHARD (ShardWriter renames it to this name when complete)."""
        return self.local / self.plan.shard_name(shard)

    def publish(self, shard: int) -> int:
        """Land a finished shard (its manifest part is already there) and return its bytes: for a URL,
        upload it from the staging folder, which it then leaves."""
        path = self.shard_path(shard)
        size = path.stat().st_size
        if self.root.remote:
            self.root.upload(path, self.plan.shard_name(shard))
        return size

    def write_part(self, shard: int, rows: list[dict]) -> None:
        buf = pa.BufferOutputStream()
        pq.write_table(pa.Table.from_pylist(rows), buf)
        self.parts.write_bytes(part_name(self.plan.shard_name(shard)), buf.getvalue().to_pybytes())

    def missing_shards(self) -> list[int]:
        landed = set(self.root.names(shard_glob(self.plan.prefix)))
        return [k for k in range(self.plan.num_shards) if self.plan.shard_name(k) not in landed]

    def merge(self, header: dict) -> bool:
        """Write manifest.parquet (and, for labeled data, _info.json) once every shard is there.

        Returns whether the folder is complete. Any rank may call it; the ranks that find the
        folder complete write identical files.
        """
        if self.missing_shards():
            return False
        tables = [pq.read_table(pa.BufferReader(self.parts.read_bytes(part_name(name))))
                  for name in self.plan.shard_names()]
        manifest = pa.concat_tables(tables)
        buf = pa.BufferOutputStream()
        pq.write_table(manifest, buf)
        self.root.write_bytes(MANIFEST_FILE, buf.getvalue().to_pybytes())
        if header["labeled"]:
            info = {
                "name": f"{header['prefix']}-{header['config_hash']}",
                "splits": {
                    "train": {
                        "name": "train",
                        "num_samples": self.plan.count,
                        "filenames": self.plan.shard_names(),
                        "shard_lengths": [len(self.plan.samples(k)) for k in range(self.plan.num_shards)],
                    }
                },
            }
            self.root.write_bytes(INFO_FILE, (json.dumps(info, indent=1) + "\n").encode())
        return True
