"""The shard writer builds its tar members itself: the bytes must stay those Python's tarfile writes
with the shards' member attributes (what every shard written before holds)."""

import io
import json
import tarfile

import pytest

from generate.writer import SampleRecord, ShardWriter, sample_bytes

# Keys as the format makes them, one past nine digits, and two that tarfile can only hold with a
# pax header (too long for the ustar name field; not ASCII).
KEYS = ["000000000", "000000001", "1234567890123", "k" * 120, "clé"]
# Data sizes around a 512-byte block, and one of many blocks.
SIZES = [0, 1, 511, 512, 513, 30_000]


def tarfile_shard(samples: list[tuple[SampleRecord, str, bytes]]) -> bytes:
    """The reference: tarfile's stream writer at its defaults, each sample's members in name order."""
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w|") as tar:
        for record, image_format, image in samples:
            meta = json.dumps(record.meta, sort_keys=True, separators=(",", ":")).encode()
            members = {image_format: image, "json": meta}
            if record.label is not None:
                members["cls"] = str(record.label).encode()
            for ext in sorted(members):
                info = tarfile.TarInfo(f"{record.key}.{ext}")
                info.size, info.mode, info.mtime, info.uname, info.gname = len(members[ext]), 0o444, 0, "", ""
                tar.addfile(info, io.BytesIO(members[ext]))
    return out.getvalue()


def written_shard(tmp_path, samples) -> bytes:
    writer = ShardWriter(tmp_path / "shard.tar")
    for record, image_format, image in samples:
        writer.write(sample_bytes(record, image_format, image))
    writer.commit()
    return (tmp_path / "shard.tar").read_bytes()


@pytest.mark.parametrize("count", [0, 1, 7])  # an empty shard, one sample, several records' worth
def test_shards_are_the_bytes_tarfile_writes(tmp_path, count):
    samples = []
    for i in range(count):
        size = SIZES[i % len(SIZES)]
        image = bytes((i * 7 + j) % 251 for j in range(size))
        label = None if i % 3 == 2 else i
        meta = {"index": i, "seed": 2**62 + i, "class_name": "tench é"}
        samples.append((SampleRecord(KEYS[i % len(KEYS)] if i < len(KEYS) else f"{i:09d}", label, meta),
                        ["png", "jpg", "webp"][i % 3], image))
    assert written_shard(tmp_path, samples) == tarfile_shard(samples)


@pytest.mark.parametrize("key", KEYS)
@pytest.mark.parametrize("size", SIZES)
def test_each_member_header_is_tarfiles(tmp_path, key, size):
    samples = [(SampleRecord(key, 3, {"index": 0}), "jpg", b"\xff" * size)]
    assert written_shard(tmp_path, samples) == tarfile_shard(samples)


@pytest.mark.parametrize("scratch", ["memfd", "temporary file"])
def test_encoding_through_the_scratch_file_gives_pillows_bytes(monkeypatch, scratch):
    """encode_image writes through a per-thread scratch file (so that Pillow drops the GIL): the
    bytes must be those of saving into a buffer, for every format and channel count; a short image
    after a long one must not pick up the long one's tail, nor an image in the thread's reused
    Pillow image anything of the one before it (its pixels, its mode, its size, its quality)."""
    import os
    import threading

    import numpy as np
    from PIL import Image

    from generate.writer import _SAVE_ARGS, encode_image

    if scratch == "temporary file":  # as on an OS without memfd_create
        monkeypatch.delattr(os, "memfd_create", raising=False)
    rng = np.random.default_rng(0)
    smooth = np.linspace(0, 255, 96 * 96 * 3).reshape(96, 96, 3).astype(np.uint8)
    images = [rng.integers(0, 256, (96, 96, 3), dtype=np.uint8), smooth[:8, :8], smooth, smooth[:, :, :1]]
    failures = []

    def check() -> None:  # in a thread of its own, so that it makes its own scratch file
        for fmt, args in _SAVE_ARGS.items():
            for quality in (None, 40, None) if fmt != "png" else (None,):
                for pixels in images:
                    buf = io.BytesIO()
                    image = Image.fromarray(pixels[:, :, 0] if pixels.shape[2] == 1 else pixels)
                    image.save(buf, **(args if quality is None else {**args, "quality": quality}))
                    if encode_image(pixels, fmt, quality) != buf.getvalue():
                        failures.append((fmt, quality, pixels.shape))

    thread = threading.Thread(target=check)
    thread.start()
    thread.join()
    assert not failures


def test_a_forked_child_encodes_through_a_scratch_file_of_its_own():
    """A child forked from a thread that has encoded must not write into that thread's scratch
    file: parent and child would share its one file offset, and a child's bytes could be another's."""
    import multiprocessing
    import os

    import numpy as np

    from generate.writer import _scratch_file, encode_image

    pixels = np.linspace(0, 255, 64 * 64 * 3).reshape(64, 64, 3).astype(np.uint8)
    expected = encode_image(pixels, "jpg")
    parent_file = os.fstat(_scratch_file().fileno())
    context = multiprocessing.get_context("fork")
    receiver, sender = context.Pipe(duplex=False)

    def child() -> None:
        image = encode_image(pixels, "jpg")
        own = os.fstat(_scratch_file().fileno())
        sender.send((image, (own.st_dev, own.st_ino) != (parent_file.st_dev, parent_file.st_ino)))

    process = context.Process(target=child)
    process.start()
    sender.close()  # the child holds its own: if it dies without sending, recv() raises EOFError
    image, own_file = receiver.recv()
    process.join()
    assert image == expected and own_file


def test_encoding_refuses_what_is_not_a_uint8_image():
    import numpy as np

    from generate.writer import encode_image

    for pixels in (np.zeros((8, 8, 3), np.float32), np.zeros((8, 8), np.uint8), np.zeros((8, 8, 4), np.uint8)):
        with pytest.raises(ValueError, match=r"uint8 shaped \(H, W, 1 or 3\)"):
            encode_image(pixels, "png")
