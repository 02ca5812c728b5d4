"""The shard writer: one WebDataset tar per shard, visible only once complete, equal bytes for equal content."""

from __future__ import annotations

import contextlib
import io
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import click
import numpy as np
import webdataset as wds
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
    95: 24% more bytes than WebP at the same quality, but 22 times its encode rate and 3 times its
    decode rate a core, which is what a GPU node runs short of on both sides (BigGAN-deep at its
    computed H100 rate needs about 12 cores to encode JPEG, 69 for WebP: docs/gpu.md)."""
    return "png" if channels == 1 or image_size * image_size * channels <= 512 else "jpg"


def encode_image(pixels: np.ndarray, image_format: str, quality: int | None = None) -> bytes:
    """Encode one uint8 image shaped (H, W, C) with C = 1 (grayscale) or 3 (RGB); `quality`
    (JPEG and WebP only) replaces their default."""
    image = Image.fromarray(pixels[:, :, 0] if pixels.shape[2] == 1 else pixels)
    buf = io.BytesIO()
    args = _SAVE_ARGS[image_format]
    image.save(buf, **(args if quality is None else {**args, "quality": quality}))
    return buf.getvalue()


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


class ShardWriter:
    """Writes one shard under a hidden temporary name; `commit` renames it into place.

    Readers (and a rerun looking for finished shards) therefore never see half a shard, and a
    process killed mid-shard leaves only a temporary file that the next run overwrites.
    """

    def __init__(self, path: Path, image_format: str):
        self.path = path
        self.image_format = image_format
        self._tmp = path.with_name(temp_name(path.name))
        self._file = open(self._tmp, "wb")
        # Fixed owner, mode and mtime so that equal content gives equal bytes.
        self._tar = wds.TarWriter(self._file, user="", group="", mode=0o444, mtime=0, encoder=False)

    def write(self, record: SampleRecord, image: bytes) -> None:
        sample = {"__key__": record.key, self.image_format: image}
        if record.label is not None:
            sample[LABEL_MEMBER] = str(record.label).encode()
        sample[META_MEMBER] = json.dumps(record.meta, sort_keys=True, separators=(",", ":")).encode()
        self._tar.write(sample)

    def commit(self) -> None:
        self._tar.close()
        self._file.flush()
        os.fsync(self._file.fileno())
        self._file.close()
        os.replace(self._tmp, self.path)

    def abort(self) -> None:
        """Drop the unfinished shard. Closing flushes buffers, which fails again on a full disk:
        that must not keep the temporary file from going."""
        try:
            with contextlib.suppress(OSError):
                self._tar.close()
            with contextlib.suppress(OSError):
                self._file.close()
        finally:
            self._tmp.unlink(missing_ok=True)
