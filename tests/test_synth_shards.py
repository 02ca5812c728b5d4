"""`ptgen synth` writes shards that plain webdataset, tarfile and timm's reader conventions accept."""

import io
import json
import tarfile

import numpy as np
import pyarrow.parquet as pq
import webdataset as wds
from PIL import Image

from generate.cli import main as ptgen

PER_CLASS, SHARD = 6, 8  # 5 classes x 6 = 30 images in shards of 8, 8, 8, 6


def synth(cli, model, out, *extra):
    result = cli(ptgen, ["synth", "--model", model, "--out", out, "--per-class", PER_CLASS,
                         "--shard-size", SHARD, "--batch-size", 3, "--quiet", *extra])
    assert result.exit_code == 0, result.output
    return result


def test_shards_read_back_with_webdataset_and_tarfile(cli, tiny_model, tmp_path):
    out = tmp_path / "shards"
    synth(cli, tiny_model, out)
    names = sorted(p.name for p in out.glob("synth-*.tar"))
    assert names == [f"synth-{k:06d}.tar" for k in range(4)]

    manifest = pq.read_table(out / "manifest.parquet").to_pylist()
    assert len(manifest) == 30
    by_key = {row["key"]: row for row in manifest}

    samples = list(wds.WebDataset([str(out / n) for n in names], shardshuffle=False))
    assert [s["__key__"] for s in samples] == [row["key"] for row in manifest]
    for s in samples:
        row = by_key[s["__key__"]]
        assert "." not in s["__key__"]
        assert int(s["cls"]) == row["label"]
        meta = json.loads(s["json"])
        assert meta["label"] == row["label"] and meta["seed"] == row["seed"]
        assert meta["class_name"] == f"tiny class {row['label']}"
        image = Image.open(io.BytesIO(s["png"]))
        assert image.size == (8, 8) and image.mode == "L"

    # Labels are balanced over the classes, in every dataset and every full shard.
    labels = [row["label"] for row in manifest]
    assert np.bincount(labels).tolist() == [PER_CLASS] * 5

    with tarfile.open(out / names[0]) as tar:
        members = tar.getmembers()
    assert len(members) == 3 * SHARD  # .cls, .json, .png per sample
    assert {(m.mtime, m.uid, m.gid, m.mode, m.uname, m.gname) for m in members} == {(0, 0, 0, 0o444, "", "")}


def test_dataset_json_and_timm_info(cli, tiny_model, tmp_path):
    out = tmp_path / "shards"
    synth(cli, tiny_model, out, "--class-ids", "1,3")
    header = json.loads((out / "dataset.json").read_text())
    for key in ("model", "num_classes", "class_names", "steps", "guidance", "seed", "batch_size",
                "image_size", "count", "config_hash", "version"):
        assert key in header, key
    assert header["num_classes"] == 2 and header["class_ids"] == [1, 3]
    assert header["class_names"] == ["tiny class 1", "tiny class 3"]
    assert header["count"] == 12 and header["steps"] == 4 and header["guidance"] == 2.0

    info = json.loads((out / "_info.json").read_text())
    split = info["splits"]["train"]
    assert split["num_samples"] == 12
    assert split["filenames"] == ["synth-000000.tar", "synth-000001.tar"]
    assert split["shard_lengths"] == [8, 4]
    labels = {int(s["cls"]) for s in wds.WebDataset(str(out / "synth-{000000..000001}.tar"), shardshuffle=False)}
    assert labels == {1, 3}


def test_image_formats(cli, tiny_model, tmp_path):
    for fmt in ("jpg", "webp"):
        out = tmp_path / fmt
        synth(cli, tiny_model, out, "--image-format", fmt, "--class-ids", "0")
        sample = next(iter(wds.WebDataset(str(out / "synth-000000.tar"), shardshuffle=False)))
        assert Image.open(io.BytesIO(sample[fmt])).size == (8, 8)
