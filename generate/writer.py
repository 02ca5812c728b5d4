"""The shard writer: one WebDataset tar per shard, visible only once complete, equal bytes for equal content."""

from __future__ import annotations

import contextlib
import io
import json
import os
import tarfile
import tempfile
import threading
from dataclasses import dataclass, field
from pathlib import Path

import click
import numpy as np
from PIL import Image

from ptcommon.shards import LABEL_MEMBER, META_MEMBER, temp_name

# Fixed encoder settings: the same pixels must give the same bytes on every run. `quality` is
# the lossy formats' default, which --quality replaces.
DEFAULT_QUALITY = 95
LOSSY = ("jpg", "webp")
_SAVE_ARGS = {
    "png": {"format": "PNG", "compress_level": 6},
    "jpg": {"format": "JPEG", "quality": DEFAULT_QUALITY},
    "webp": {"format": "WEBP", "quality": DEFAULT_QUALITY, "method": 4},
}


def auto_format(image_size: int, channels: int) -> str:
    """--image-format auto, by the costs measured at 256 px (docs/results.md, "The writer's ceiling").
    An image whose raw pixels fit one 512-byte tar block takes one block in any format, so it stays
    PNG, lossless (the built-in 16 px world); so does grayscale. Larger RGB goes to JPEG at quality
    95: a quarter more bytes than WebP at the same quality, but about 20 times its encode rate
    and at least twice its decode rate a core, which is what a GPU node runs short of on both
    sides (BigGAN-deep at its computed H100 rate needs about 4 cores to encode JPEG, 40 for WebP:
    docs/gpu.md)."""
    return "png" if channels == 1 or image_size * image_size * channels <= 512 else "jpg"


# Each thread encodes into a scratch file of its own, never a BytesIO: given a file descriptor,
# Pillow runs the codec with the GIL released, and into a Python buffer with it held, which for
# JPEG kept a second encoder thread from adding anything (docs/results.md, "The writer's ceiling at
# 256 px", measures both). Same bytes either way. The thread also
# keeps one Pillow image per mode and size and copies each sample's pixels into it: a new image a
# sample (what Image.fromarray makes) is an allocation and more work under the GIL, at JPEG's
# rate a visible share of the writer's time (docs/results.md, "The writer's ceiling").
_scratch = threading.local()
# A forked child starts with the forking thread's scratch file, whose one file offset it would
# share with its parent and its siblings: it makes its own instead.
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=lambda: vars(_scratch).clear())


def _scratch_file() -> io.FileIO:
    file = getattr(_scratch, "file", None)
    if file is None:
        # In memory where the OS offers it (Linux); elsewhere an unnamed temporary file.
        if hasattr(os, "memfd_create"):
            file = io.FileIO(os.memfd_create("ptgen-encode"), "r+")
        else:
            file = tempfile.TemporaryFile(buffering=0)
        _scratch.file = file
    return file


def _scratch_image(pixels: np.ndarray) -> Image.Image:
    """This thread's image of the pixels' mode and size, holding a copy of them."""
    if pixels.dtype != np.uint8 or pixels.ndim != 3 or pixels.shape[2] not in (1, 3):
        raise ValueError(f"an image is uint8 shaped (H, W, 1 or 3), not {pixels.dtype} shaped {pixels.shape}")
    mode, size = ("L" if pixels.shape[2] == 1 else "RGB"), (pixels.shape[1], pixels.shape[0])
    image = getattr(_scratch, "image", None)
    if image is None or image.mode != mode or image.size != size:
        image = _scratch.image = Image.new(mode, size)
    image.frombytes(np.ascontiguousarray(pixels))
    return image


def encode_image(pixels: np.ndarray, image_format: str, quality: int | None = None) -> bytes:
    """Encode one uint8 image shaped (H, W, C) with C = 1 (grayscale) or 3 (RGB); `quality`
    (JPEG and WebP only) replaces their default."""
    image = _scratch_image(pixels)
    args = _SAVE_ARGS[image_format]
    file = _scratch_file()
    file.seek(0)  # what a longer image left beyond this one's end is never read
    image.save(file, **(args if quality is None else {**args, "quality": quality}))
    size = file.tell()
    file.seek(0)
    return file.read(size)


def encode_sample(index: int, pixels: np.ndarray, image_format: str, quality: int | None = None) -> bytes:
    """`encode_image` for sample `index`, whose refusal (an image the format cannot hold) is one line."""
    try:
        return encode_image(pixels, image_format, quality)
    except Exception as err:
        raise click.ClickException(f"--image-format {image_format}: sample {index} could not be encoded "
                                   f"({err}); its shard was not written") from None


@dataclass
class SampleRecord:
    """What a shard stores beside a sample's image: its key, its label (None when unlabeled) and metadata."""

    key: str
    label: int | None
    meta: dict = field(default_factory=dict)


# Members are written as Python's tarfile writes them (its default pax format, which for short
# ASCII names is plain ustar) with fixed owner, mode and mtime, so that equal content gives equal
# bytes. The headers are filled in from one that tarfile made, since tarfile's own per-member work
# (about 0.1 ms a sample) held the GIL long enough to bound the writer at JPEG's encode rate.
_BLOCK, _RECORD = tarfile.BLOCKSIZE, tarfile.RECORDSIZE


def _tarfile_header(name: str, size: int) -> bytes:
    info = tarfile.TarInfo(name)
    info.size, info.mode, info.mtime, info.uname, info.gname = size, 0o444, 0, "", ""
    return info.tobuf(tarfile.PAX_FORMAT, tarfile.ENCODING, "surrogateescape")


# The header of an empty member with an empty name, cut around the three fields that vary: name
# (bytes 0-99), size (124-135, octal) and checksum (148-155: six octal digits, NUL, a space kept).
_EMPTY = _tarfile_header("", 0)
_AFTER_NAME, _AFTER_SIZE, _AFTER_CHECKSUM = _EMPTY[100:124], _EMPTY[136:148], _EMPTY[155:]
# The checksum sums the header's bytes with its own field read as spaces; name and size add theirs.
_FIXED_SUM = sum(_AFTER_NAME) + sum(_AFTER_SIZE) + 8 * ord(" ") + sum(_AFTER_CHECKSUM[1:])
_NAME_LENGTH, _MAX_SIZE = 100, 8**11  # beyond these (or a non-ASCII name) tarfile adds a pax header
_PADDING = bytes(_BLOCK)


def _header(name: str, size: int) -> bytes:
    if not (name.isascii() and len(name) <= _NAME_LENGTH and size < _MAX_SIZE):
        return _tarfile_header(name, size)
    raw, size_field = name.encode("ascii"), b"%011o\0" % size
    checksum = _FIXED_SUM + sum(raw) + sum(size_field)
    return (raw.ljust(_NAME_LENGTH, b"\0") + _AFTER_NAME + size_field + _AFTER_SIZE + b"%06o\0" % checksum
            + _AFTER_CHECKSUM)


# json.dumps with any option builds an encoder per call, a tenth of the packing's time a sample.
_META_JSON = json.JSONEncoder(sort_keys=True, separators=(",", ":"))


def sample_bytes(record: SampleRecord, image_format: str, image: bytes) -> bytes:
    """A sample's members as they stand in its shard: each a header, its data and NULs to a whole
    block, in the order of their names (the order WebDataset's writer gives them)."""
    meta = _META_JSON.encode(record.meta).encode()
    members = {image_format: image, META_MEMBER: meta}
    if record.label is not None:
        members[LABEL_MEMBER] = str(record.label).encode()
    parts = []
    for ext in sorted(members):
        data = members[ext]
        parts += (_header(f"{record.key}.{ext}", len(data)), data, _PADDING[: -len(data) % _BLOCK])
    return b"".join(parts)


class ShardWriter:
    """Writes one shard under a hidden temporary name; `commit` renames it into place.

    Readers (and a rerun looking for finished shards) therefore never see half a shard, and a
    process killed mid-shard leaves only a temporary file that the next run overwrites.
    """

    def __init__(self, path: Path):
        self.path = path
        self._tmp = path.with_name(temp_name(path.name))
        self._file = open(self._tmp, "wb")
        self._size = 0

    def write(self, samples: bytes) -> None:
        """Append `sample_bytes`: one sample's, or the next few samples' joined."""
        self._file.write(samples)
        self._size += len(samples)

    @property
    def final_size(self) -> int:
        """The shard's bytes once committed, known before: its manifest part, written first, records it."""
        return self._size + 2 * _BLOCK + (-(self._size + 2 * _BLOCK) % _RECORD)

    def commit(self) -> None:
        # tarfile's end of archive: two zero blocks, then zeros to a whole record.
        self._file.write(bytes(self.final_size - self._size))
        self._file.flush()
        os.fsync(self._file.fileno())
        self._file.close()
        os.replace(self._tmp, self.path)

    def abort(self) -> None:
        """Drop the unfinished shard. Closing flushes buffers, which fails again on a full disk:
        that must not keep the temporary file from going."""
        try:
            with contextlib.suppress(OSError):
                self._file.close()
        finally:
            self._tmp.unlink(missing_ok=True)
