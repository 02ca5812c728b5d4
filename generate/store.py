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

import contextlib
import hashlib
import json
import tempfile
import time
from dataclasses import asdict
from pathlib import Path
from typing import Iterator

import click
import pyarrow as pa
import pyarrow.parquet as pq

from ptcommon.cli import InputError
from ptcommon.outputs import atomic_path
from ptcommon.storage import Location, as_location
from ptcommon.shards import (DATASET_FILE, INFO_FILE, MANIFEST_FILE, PART_SHARD_KEY, PARTS_DIR, RERUN,
                             SHARD_BYTES_KEY, SOFT_LABELS_FILE, part_name, read_header, shard_glob, temp_name)
from . import __version__
from .plan import WorkPlan

# Header fields that never decide a shard's bytes.
_UNHASHED_HEADER = ("config_hash", "version", "batch_size", "model")
# How long a rank other than 0 waits for rank 0 to clear a folder under --overwrite.
_OVERWRITE_WAIT_S = 600
# Manifest rows a merge holds at once: it streams the parts into row groups of about this many, so
# its memory stays flat however many shards a folder has.
_MERGE_ROWS = 1 << 17


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
        self._landed: dict[str, int] | None = None  # a URL's shards and their bytes, listed once at start
        self._parts_landed: set[str] | None = None  # a URL's manifest parts, listed once when first needed

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
            self._landed = self.root.sizes(shard_glob(self.plan.prefix))

    def _wait_for_header(self, wanted_hash: str) -> None:
        deadline = time.monotonic() + _OVERWRITE_WAIT_S
        while time.monotonic() < deadline:
            existing = self.read_header()
            if existing is not None and existing.get("config_hash") == wanted_hash:
                return
            time.sleep(0.2)
        raise InputError(f"--overwrite: rank 0 did not prepare {self.root} within {_OVERWRITE_WAIT_S} s; is it running?")

    def is_complete(self, shard: int) -> bool:
        """Whether SHARD has landed with a manifest part that agrees with it (`problem`). One that
        landed and disagrees is named in one line: the caller writes it again."""
        name = self.plan.shard_name(shard)
        if self._landed is not None:
            size = self._landed.get(name)
        else:
            try:
                size = (self.root.path / name).stat().st_size
            except FileNotFoundError:
                size = None
        if size is None:
            return False
        problem = self.problem(shard, size)
        if problem is not None:
            click.echo(f"ptgen: {problem}; writing it again", err=True)
        return problem is None

    def landed(self) -> dict[str, int]:
        """{shard name: bytes} of this plan's shards in the folder, from one listing."""
        return self.root.sizes(shard_glob(self.plan.prefix)) or {}

    def problem(self, shard: int, size: int | None) -> str | None:
        """Why SHARD (SIZE bytes, None where it is missing) is not finished, as "NAME: what"; None when
        it is there and its manifest part agrees with it (`_checked_part`)."""
        return self._checked_part(shard, size)[1]

    def check(self, shard: int, size: int | None) -> tuple[str | None, int | None]:
        """`problem`, and the bytes SHARD's part recorded when ptgen wrote it (None: no record)."""
        part, problem = self._checked_part(shard, size)
        recorded = (part.metadata.metadata or {}).get(SHARD_BYTES_KEY.encode(), b"") if part is not None else b""
        return problem, int(recorded) if recorded.isdigit() else None

    def _checked_part(self, shard: int, size: int | None) -> tuple[pq.ParquetFile | None, str | None]:
        """SHARD's manifest part, opened, and what keeps the shard (SIZE bytes) from counting as finished:
        None when the part describes this shard, holds a row for each of its samples and recorded no
        more bytes than the shard has (a shard may grow, by members its user added; ptgen's own never
        shrinks). Only the part's footer is read."""
        name = self.plan.shard_name(shard)
        where = f"its manifest part {PARTS_DIR}/{part_name(name)}"
        if size is None:
            return None, f"{name}: missing"
        try:
            part = self._part(name)
        except (OSError, pa.ArrowException):
            return None, f"{name}: {where} is unreadable"
        if part is None:
            return None, f"{name}: {where} is missing"
        meta = {k.decode(errors="replace"): v.decode(errors="replace")
                for k, v in (part.metadata.metadata or {}).items()}
        described, expected = meta.get(PART_SHARD_KEY, name), len(self.plan.samples(shard))
        recorded = meta.get(SHARD_BYTES_KEY, "")
        if described != name:
            return part, f"{name}: {where} describes {described[:40]}"
        if part.metadata.num_rows != expected:
            return part, f"{name}: {where} holds {part.metadata.num_rows} rows for its {expected} samples"
        if recorded.isdigit() and size < int(recorded):
            return part, f"{name}: {size:,} bytes, {int(recorded):,} when written (truncated)"
        return part, None

    def _part(self, name: str) -> pq.ParquetFile | None:
        """Shard NAME's manifest part, its footer read; None where there is none."""
        part = part_name(name)
        if not self.root.remote:
            path = self.parts.path / part
            return pq.ParquetFile(path) if path.is_file() else None
        if self._parts_landed is None:  # for a URL, one listing instead of a request a part
            self._parts_landed = set(self.parts.sizes("*.parquet") or {})
        return pq.ParquetFile(pa.BufferReader(self.parts.read_bytes(part))) if part in self._parts_landed else None

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

    def write_part(self, shard: int, rows: list[dict], shard_bytes: int) -> None:
        """The manifest part of SHARD, which will be SHARD_BYTES long once committed."""
        name = self.plan.shard_name(shard)
        table = pa.Table.from_pylist(rows).replace_schema_metadata(
            {PART_SHARD_KEY: name, SHARD_BYTES_KEY: str(shard_bytes)})
        buf = pa.BufferOutputStream()
        pq.write_table(table, buf)
        self.parts.write_bytes(part_name(name), buf.getvalue().to_pybytes())

    def merge(self, header: dict) -> bool:
        """Write manifest.parquet (and, for labeled data, _info.json) once every shard is there.

        Returns whether the folder is complete. Any rank may call it; the ranks that find the
        folder complete write identical files. The parts are streamed into it, a few row groups'
        worth at a time, each checked against its shard on the way (`problem`): a shard that
        disagrees with its part is a one-line error saying what a rerun does.
        """
        names = self.plan.shard_names()
        landed = self.landed()
        if any(name not in landed for name in names):
            return False
        sizes = [landed[name] for name in names]
        self._parts_landed = None  # other ranks' parts landed since
        with self._manifest_file() as path, contextlib.ExitStack() as stack:
            writer, pending = None, []
            for shard, name in enumerate(names):
                part, problem = self._checked_part(shard, sizes[shard])
                if problem is not None:
                    raise InputError(f"--out {self.root}: {problem}; {RERUN}")
                pending.append(part.read().replace_schema_metadata())
                if sum(t.num_rows for t in pending) >= _MERGE_ROWS or shard == len(names) - 1:
                    table = pa.concat_tables(pending)
                    if writer is None:
                        schema = table.schema.with_metadata({SHARD_BYTES_KEY: json.dumps(sizes)})
                        # Dictionaries only for the strings that repeat (shard, class, target): on a
                        # column unique a row (key, index, seed) parquet's default builds one per row
                        # group and drops it, which made the write grow faster than the rows.
                        repeated = [f.name for f in schema if pa.types.is_string(f.type) and f.name != "key"]
                        writer = stack.enter_context(pq.ParquetWriter(str(path), schema, use_dictionary=repeated))
                    writer.write_table(table, row_group_size=len(table))
                    pending = []
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

    @contextlib.contextmanager
    def _manifest_file(self) -> Iterator[Path]:
        """A local file to write the manifest in; in place once the block ends: renamed locally, uploaded
        for a URL."""
        if not self.root.remote:
            with atomic_path(self.root.path / MANIFEST_FILE) as tmp:
                yield tmp
            return
        with tempfile.TemporaryDirectory(prefix="ptgen-manifest-", dir=self.local) as scratch:
            path = Path(scratch) / MANIFEST_FILE
            yield path
            self.root.upload(path, MANIFEST_FILE)
