"""The shard format in code: the one thing the generation and training stages share.

`docs/shards.md` describes it for readers; this module is what both stages import, so a name
or a rule changes here or nowhere. It holds the folder's file names, the shard and sample
names, the header (`dataset.json`) reader, and the only way the project reads shard members.

Reading is deliberately narrow, because shards travel between people: a member is read only
if the format defines it (the image, `.cls`, `.json`), and each is decoded by a decoder chosen
here (Pillow with its decompression-bomb limit, `int`, `json.loads`). Nothing is unpickled or
`torch.load`-ed, whatever a member is called. Members the format does not define are never
read: they are skipped and named once in the log, or, with `strict`, refuse the dataset.
"""

from __future__ import annotations

import contextlib
import functools
import io
import json
import re
import sys
import tarfile
import warnings
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, Iterable, Iterator

import click
from PIL import Image

from .cli import InputError
from .storage import Location, as_location, open_stream, scheme_of

FORMAT = "ptgen-shards/1"
DATASET_FILE = "dataset.json"
MANIFEST_FILE = "manifest.parquet"
INFO_FILE = "_info.json"
PARTS_DIR = "_parts"
SOFT_LABELS_FILE = "soft_labels.safetensors"  # `ptgen pseudo`'s: each target's condition, computed once

KEY_WIDTH = 9
IMAGE_FORMATS = ("png", "jpg", "webp")
LABEL_MEMBER = "cls"
META_MEMBER = "json"
# Manifest columns every row has; the rest are the sample's `.json` fields.
MANIFEST_COLUMNS = ("key", "shard", "image_bytes")
# Parquet footer keys. A manifest part records the shard it describes and that shard's bytes once
# committed (the part lands first), so a resume tells a shard cut short, or a part of another shard,
# from a finished one; the merged manifest records every shard's bytes, in shard order (a JSON
# list), so a reader finds a truncated shard from one listing, before training rather than at it.
PART_SHARD_KEY = "ptgen_shard"
SHARD_BYTES_KEY = "ptgen_shard_bytes"
# What a rerun does about a missing or damaged shard: the one remedy every such message ends with.
RERUN = "rerun the same ptgen command: it writes this shard again, byte for byte, and keeps the finished ones"

# A pseudo sample's `.json` fields. `target_confidence` is the source classifier's top-1 probability
# on the target image that conditioned the sample: ptgen pseudo writes it, pttrain pssl's guard reads it.
TARGET_CONFIDENCE = "target_confidence"
# The class name of that target image where the target has labels (null where not): pttrain's
# --extra-labeled reads it.
TARGET_CLASS = "target_class"
PSEUDO_FIELDS = ("index", "seed", TARGET_CLASS, TARGET_CONFIDENCE, "target_key", "top_classes")
# Below this mean target confidence the source classifier recognises few of the targets, and their
# pseudo samples follow its guesses: ptgen pseudo warns there, and pssl's guard defaults to it
# (docs/results.md, "P-SSL that never costs").
UNSURE_CONFIDENCE = 0.3

# Far above any real image (a 4096x4096 RGB PNG is under 50 MB), far below what would hurt to
# hold in memory per sample and loader worker.
DEFAULT_MAX_MEMBER_MB = 64


def sample_key(index: int) -> str:
    """The key of sample `index`: digits only, since WebDataset splits member names at the first dot."""
    return f"{index:0{KEY_WIDTH}d}"


def shard_name(prefix: str, shard: int) -> str:
    return f"{prefix}-{shard:06d}.tar"


def shard_glob(prefix: str) -> str:
    return f"{prefix}-*.tar"


def temp_name(name: str) -> str:
    """Where a shard lies while it is written: hidden, so no reader (or rerun) takes it for a finished one."""
    return f".{name}.tmp"


def part_name(shard: str) -> str:
    """The manifest part of a shard, under PARTS_DIR."""
    return f"{shard.removesuffix('.tar')}.parquet"


def num_shards(count: int, shard_size: int) -> int:
    return -(-count // shard_size)


def sample_bytes_bound(image_size: int, channels: int) -> int:
    """Bytes one sample takes in a shard at most, before any is written: each member is a 512-byte
    tar header plus its data padded to 512 bytes; the image at most its raw pixels plus the
    encoder's headers (PNG of noise is about raw size, JPEG and WebP at quality 95 less), `.cls`
    and `.json` one block each."""
    def block(n: int) -> int:
        return 512 + -(-n // 512) * 512

    return block(image_size * image_size * channels + 1024) + 2 * block(512)


def is_shard_folder(root: Location | Path | str) -> bool:
    return as_location(root).exists(DATASET_FILE)


def read_header(root: Location | Path | str, flag: str = "", remedy: str = "") -> dict:
    """`dataset.json` of a shard folder, validated: a missing or damaged one is a one-line error naming
    `flag` and the folder, ending with REMEDY where the caller knows one."""
    root = as_location(root, flag)
    where = f"{flag} {root}" if flag else str(root)

    def refuse(problem: str) -> InputError:
        return InputError(f"{where}: {problem}" + (f"; {remedy}" if remedy else ""))

    if not root.exists(DATASET_FILE):
        raise refuse(f"no {DATASET_FILE}; expected a folder written by ptgen synth or ptgen pseudo")
    try:
        header = json.loads(root.read_bytes(DATASET_FILE))
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise refuse(f"{DATASET_FILE} is not valid JSON") from None
    missing = [k for k in ("prefix", "count", "shard_size") if not isinstance(header, dict) or k not in header]
    if missing:
        raise refuse(f"{DATASET_FILE} lacks {', '.join(missing)}; is it from ptgen synth or ptgen pseudo?")
    # The prefix becomes file names: a path or a `pipe:` URL there would read outside the folder or run a command.
    if not isinstance(header["prefix"], str) or not re.fullmatch(r"[A-Za-z0-9_]+", header["prefix"]):
        raise refuse(f"{DATASET_FILE} has prefix {str(header['prefix'])[:40]!r}; expected letters, digits and _ only")
    bad = [k for k in ("count", "shard_size") if not isinstance(header[k], int) or header[k] < 1]
    if bad:
        raise refuse(f"{DATASET_FILE} has {bad[0]} {str(header[bad[0]])[:20]!r}; expected a positive integer")
    return header


def shard_paths(root: Location | Path | str, header: dict, flag: str = "", damaged_ok: bool = False) -> list[str]:
    """Every shard a complete folder holds, in order, as absolute paths or URLs that `open_stream`
    reads; a folder missing any is a one-line error, found from one listing of the folder. Where the
    back-end cannot list (plain HTTP), the manifest vouches for the shards, since it is written only
    once the last one has landed; without it each shard is asked for.

    A shard shorter than the manifest recorded (cut short by a killed copy, say) is a one-line error
    too, found from the same listing and the manifest's footer before any training step rather than
    when a reader reaches it; with DAMAGED_OK (--skip-corrupt) a warning, and the reader skips what
    it cannot read."""
    root = as_location(root, flag)
    prefix, where = header["prefix"], f"{flag} {root}" if flag else str(root)
    names = [shard_name(prefix, k) for k in range(num_shards(header["count"], header["shard_size"]))]
    sizes = root.sizes(shard_glob(prefix))
    if sizes is None:
        present = set(names) if root.exists(MANIFEST_FILE) else {n for n in names if root.exists(n)}
    else:
        present = set(sizes)
    missing = [n for n in names if n not in present]
    if missing:
        raise InputError(f"{where}: {len(missing)} of {len(names)} shards missing ({missing[0]}, ...); finish the "
                         "generation first: rerun the same ptgen command, which writes only the missing shards")
    recorded = recorded_shard_bytes(root) if sizes is not None else None
    if recorded is not None and len(recorded) == len(names):
        short = [(n, sizes[n], r) for n, r in zip(names, recorded) if sizes[n] < r]
        if short:
            name, size, was = short[0]
            more = f" (and {len(short) - 1} more)" if len(short) > 1 else ""
            problem = f"{where}: {name} is {size:,} bytes, {was:,} when written (truncated){more}"
            if not damaged_ok:
                raise InputError(f"{problem}; {RERUN}")
            print(f"warning: {problem}; reading past what cannot be read (--skip-corrupt)", file=sys.stderr, flush=True)
    return [root.url_of(n) for n in names]


def recorded_shard_bytes(root: Location) -> list[int] | None:
    """Each shard's bytes as the manifest recorded them when the folder was completed (its footer alone
    is read); None without a manifest, or one that records none (from an earlier ptgen, or a back-end
    that cannot seek)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    if root.scheme in ("http", "https") or not root.exists(MANIFEST_FILE):
        return None
    try:
        if not root.remote:
            footer = pq.read_metadata(root.path / MANIFEST_FILE)
        else:
            with root.fs.open(root.child(MANIFEST_FILE), "rb") as file:
                footer = pq.read_metadata(file)
    except (OSError, pa.ArrowException):  # a damaged manifest vouches for nothing: the listing stands alone
        return None
    recorded = (footer.metadata or {}).get(SHARD_BYTES_KEY.encode())
    try:
        values = json.loads(recorded) if recorded else None
    except json.JSONDecodeError:
        return None
    return values if isinstance(values, list) and all(isinstance(v, int) for v in values) else None


def split_member(name: str) -> tuple[str, str]:
    """('000000001', 'png') for '000000001.png': split as WebDataset's grouping splits it, extension lower-cased."""
    from webdataset.tariterators import base_plus_ext

    key, ext = base_plus_ext(name)
    return key or name, (ext or "").lower()


@dataclass(frozen=True)
class Layout:
    """Which members of a sample are read: its image (the first of `images` it has), its label and
    its metadata. ptgen's shards have one layout; a WebDataset set from another tool names its own
    keys (--image-key, --label-key), among the images this module has a decoder for."""

    images: tuple[str, ...] = IMAGE_FORMATS
    label: str = LABEL_MEMBER
    meta: str = META_MEMBER

    @property
    def members(self) -> tuple[str, ...]:
        return (self.label, self.meta, *self.images)

    def describe(self) -> str:
        return f"image {'/'.join(self.images)}, .{self.label}, .{self.meta}"


PTGEN = Layout()
# Every image extension a decoder is chosen for below, in the order a foreign sample's image is looked for.
READABLE_IMAGES = ("jpg", "jpeg", "png", "webp")


class ShardFormatError(InputError):
    """A shard holds something the reader refuses: a member over the size limit, or (strict) one the format lacks."""


@dataclass
class ReadPolicy:
    """How shards from elsewhere are read: what is refused, and what was skipped so far (in this process)."""

    strict: bool = False
    max_member_bytes: int = DEFAULT_MAX_MEMBER_MB << 20
    skipped: Counter = field(default_factory=Counter)  # (shard name, extension) -> members skipped

    def unexpected(self, shard: str, member: str, ext: str, layout: Layout = PTGEN) -> None:
        name = shard.rsplit("/", 1)[-1]
        if self.strict:
            raise ShardFormatError(f"{shard}: member {member} is not part of the shard format ({layout.describe()}); "
                                   "refusing the dataset (--strict)")
        if (name, ext) not in self.skipped:
            print(f"warning: {shard}: skipping .{ext} members (not part of the shard format; never decoded)",
                  file=sys.stderr, flush=True)
        self.skipped[name, ext] += 1

    def summary(self) -> str | None:
        """One line on what was skipped, or None when nothing was."""
        if not self.skipped:
            return None
        total = sum(self.skipped.values())
        where = sorted({f".{ext} in {name}" for name, ext in self.skipped})
        more = f" and {len(where) - 3} more" if len(where) > 3 else ""
        return f"skipped {total} members that the shard format does not define ({', '.join(where[:3])}{more})"


def read_options(command):
    """--strict and --max-member-mb for a command that reads shards; the command receives `policy`."""

    @click.option("--strict", is_flag=True, help="Refuse shards holding members the shard format does not define "
                  "(default: skip them unread and name them once in the log).")
    @click.option("--max-member-mb", type=click.FloatRange(min=0, min_open=True), default=DEFAULT_MAX_MEMBER_MB,
                  show_default=True, help="Refuse a shard member larger than this, before reading it.")
    @functools.wraps(command)
    def wrapper(strict: bool, max_member_mb: float, **kw):
        return command(policy=ReadPolicy(strict=strict, max_member_bytes=int(max_member_mb * 2**20)), **kw)

    return wrapper


@dataclass(frozen=True)
class ForeignKeys:
    """--label-key, --image-key and --class-names: how a foreign set's samples are read."""

    label_key: str = LABEL_MEMBER
    image_key: str | None = None
    class_names: Path | None = None


def foreign_options(command):
    """The flags of a command that reads foreign WebDataset shards; the command receives `keys`."""

    @click.option("--label-key", default=LABEL_MEMBER, show_default=True,
                  help="Shards from another tool (a brace list): the member holding each sample's class id.")
    @click.option("--image-key", type=click.Choice(READABLE_IMAGES),
                  help="Shards from another tool: the image member. [default: the first of "
                       f"{'/'.join(READABLE_IMAGES)} a sample has]")
    @click.option("--class-names", "class_names", type=click.Path(path_type=Path, dir_okay=False),
                  help="Shards from another tool: a file of class names, one a line, the first line class 0. "
                       "[default: class_names in the set's _info.json, else the class ids]")
    @functools.wraps(command)
    def wrapper(label_key: str, image_key: str | None, class_names: Path | None, **kw):
        return command(keys=ForeignKeys(label_key, image_key, class_names), **kw)

    return wrapper


def _mb(n: int) -> str:
    return f"{n / 2**20:.1f}" if n >= 2**20 // 10 else f"{n / 2**20:.2g}"


_EXTENSION_TYPES = (tarfile.GNUTYPE_LONGNAME, tarfile.GNUTYPE_LONGLINK, tarfile.XHDTYPE, tarfile.XGLTYPE,
                    tarfile.SOLARIS_XHDTYPE)
_MAX_EXTENSION_BYTES = 64 << 10
_MAX_LABEL_BYTES = 64  # a class id as decimal text, with room to spare


class _BoundedTarInfo(tarfile.TarInfo):
    def _proc_member(self, tar):  # tarfile's hook for each header, before it reads an extension's data
        if self.type in _EXTENSION_TYPES and self.size > _MAX_EXTENSION_BYTES:
            raise ShardFormatError(f"{getattr(tar, 'name', None) or 'a shard'}: a tar header extension of "
                                   f"{self.size} bytes (over {_MAX_EXTENSION_BYTES}); refused without reading it")
        return super()._proc_member(tar)


def members(stream: BinaryIO, shard: str, policy: ReadPolicy, layout: Layout = PTGEN) -> Iterator[dict]:
    """The format's members of one tar stream, as {fname, data, __url__}; others skipped unread.

    A member's size is checked from its tar header, before any of it is read."""
    # Plain ustar only ("r|", no decompression), and header extensions (long names, pax records)
    # bounded, since tarfile reads those whole before any member size can be checked.
    with tarfile.open(fileobj=stream, mode="r|", tarinfo=_BoundedTarInfo) as tar:
        for info in tar:
            if not info.isreg():
                continue
            key, ext = split_member(info.name)
            if ext not in layout.members:
                policy.unexpected(shard, info.name, ext, layout)
                continue
            if info.size > policy.max_member_bytes:
                raise ShardFormatError(
                    f"{shard}: member {info.name} (key {key}) is {_mb(info.size)} MB, over the "
                    f"{_mb(policy.max_member_bytes)} MB limit; refused without reading it "
                    "(raise --max-member-mb if the dataset really holds images that large)")
            yield {"fname": info.name, "data": tar.extractfile(info).read(), "__url__": shard}
            tar.members = []  # a streamed tar otherwise keeps every header it has passed


def tar_samples(sources: Iterable[dict], policy: ReadPolicy, handler, layout: Layout = PTGEN) -> Iterator[dict]:
    """A WebDataset stage: {url} dicts -> samples {__key__, __url__, <ext>: bytes}, through `members`.

    Each shard is opened by `open_stream` (a path, or a URL of an accepted scheme; never a
    `pipe:`) and streamed. `handler` decides on unreadable or damaged tars as WebDataset's
    handlers do; a ShardFormatError is never handed to it, so --skip-corrupt cannot turn a
    refusal into silence."""
    from webdataset.tariterators import group_by_keys

    def expand(sources: Iterable[dict]) -> Iterator[dict]:
        for source in sources:
            try:
                with contextlib.closing(open_stream(source["url"])) as stream:
                    yield from members(stream, source["url"], policy, layout)
            except ShardFormatError:
                raise
            except Exception as exn:  # unreachable, or damaged: tarfile raises ReadError, EOFError, OSError
                exn.args = (*exn.args, source["url"])
                if not handler(exn):
                    return
            yield {}  # end of shard: samples never straddle two shards

    return group_by_keys(expand(sources), handler=handler)


_PIL_FORMATS = {"png": "PNG", "jpg": "JPEG", "jpeg": "JPEG", "webp": "WEBP"}


def open_image(data: bytes, where: str, fmt: str) -> Image.Image:
    """Decode an image member with the one Pillow decoder its extension names (a `.png` that is
    really a TIFF or an EPS is refused, not decoded), and the decompression-bomb limit as an error."""
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            image = Image.open(io.BytesIO(data), formats=[_PIL_FORMATS[fmt]])
            image.load()
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as err:
            raise ShardFormatError(f"{where}: image refused by Pillow's decompression-bomb limit ({err})") from None
    return image


def parse_label(data: bytes) -> int | None:
    """A label member's class id (decimal text), or None when it is not one."""
    text = data.decode("ascii", errors="replace").strip()
    return int(text) if text.isdecimal() else None


@dataclass
class Sample:
    """One decoded sample: the image, the source label (None for pseudo samples) and the `.json` fields."""

    key: str
    shard: str
    image: Image.Image
    label: int | None
    meta: dict


def decode(sample: dict, layout: Layout = PTGEN) -> Sample:
    """A grouped sample's members through the format's own decoders; a sample that lacks its image, or
    whose label is not decimal text, raises ValueError naming its shard (the reader's handler decides)."""
    shard, key = sample.get("__url__", "?"), sample.get("__key__", "?")
    fmt = next((f for f in layout.images if f in sample), None)
    if fmt is None:
        raise ValueError(f"sample {key} lacks its image", shard)
    label = None
    if layout.label in sample:
        label = parse_label(sample[layout.label])
        if label is None:
            raise ValueError(f"sample {key}: .{layout.label} is not a decimal class id", shard)
    meta = json.loads(sample[layout.meta]) if layout.meta in sample else {}
    return Sample(key, shard, open_image(sample[fmt], f"{shard}: sample {key}", fmt), label, meta)


def read_samples(urls: Iterable[str | Path], policy: ReadPolicy | None = None,
                 layout: Layout = PTGEN) -> Iterator[Sample]:
    """Decoded samples of finished shards, in order, without a pipeline (inspection, tools)."""
    policy = policy or ReadPolicy()

    def reraise(exn: Exception) -> bool:
        raise exn

    for raw in tar_samples(({"url": str(u)} for u in urls), policy, reraise, layout):
        yield decode(raw, layout)


def refuse_unexpected(found: dict[str, list[str]], where: str) -> None:
    """--strict, checked up front: refuse a dataset whose `unexpected_members` found anything."""
    if found:
        ext, names = next(iter(found.items()))
        raise ShardFormatError(f"{where}: {names[0]} holds .{ext} members, which the shard format does not define; "
                               "refusing the dataset (--strict)")


def scan(url: str, read: Iterable[str] = (), max_bytes: int = _MAX_LABEL_BYTES) -> Iterator[tuple[str, str, bytes | None]]:
    """(key, extension, data) of every regular member of one shard, from its tar headers: the data
    only for the extensions in READ and at most MAX_BYTES long (a label's few bytes), None for the rest.

    A local shard is read by seeking from header to header; a remote one is streamed once."""
    wanted = set(read)
    local = scheme_of(url) in ("", "file")
    with contextlib.closing(open_stream(url)) as stream:
        with tarfile.open(fileobj=stream, mode="r:" if local else "r|", tarinfo=_BoundedTarInfo) as tar:
            for info in tar:
                if info.isreg():
                    key, ext = split_member(info.name)
                    small = ext in wanted and info.size <= max_bytes
                    yield key, ext, tar.extractfile(info).read() if small else None
                tar.members = []


def unexpected_members(urls: Iterable[str | Path], layout: Layout = PTGEN) -> dict[str, list[str]]:
    """{extension: [shard names]} of members the format does not define, from the tar headers alone."""
    found: dict[str, set[str]] = {}
    for url in map(str, urls):
        try:
            for _, ext, _ in scan(url):
                if ext not in layout.members:
                    found.setdefault(ext, set()).add(url.rsplit("/", 1)[-1])
        except ShardFormatError:
            raise
        except (tarfile.TarError, EOFError, OSError, InputError) as err:
            raise ShardFormatError(f"{url}: corrupted or unreadable shard ({type(err).__name__}); "
                                   "rerun ptgen on it") from None
    return {ext: sorted(names) for ext, names in sorted(found.items())}
