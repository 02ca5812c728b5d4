"""Shards from elsewhere are data, never code: every reader decodes only the format's members."""

import io
import pickle
import re
import shutil
import tarfile
from pathlib import Path

import pytest
import torch
import webdataset as wds

from generate.cli import main as ptgen
from ptcommon.shards import ReadPolicy, ShardFormatError, read_samples, shard_paths, read_header
from train.cli import main as pttrain
from train.data.shards import CorruptCounter, ShardSet
from train.data.transforms import Preprocess

GRAY16 = Preprocess(image_size=16, in_chans=1, mean=(0.5,), std=(0.5,))
# Read in the main process (--workers 0), whose warnings and skip counts the in-process runner captures.
TRAIN = ["--arch", "test_resnet", "--epochs", "1", "--min-steps", "0", "--batch-size", "4", "--img-size", "16", "--quiet",
         "--workers", "0"]


class Payload:
    """Unpickling this creates `path`: the stand-in for any code a pickle can run."""

    def __init__(self, path: Path):
        self.path = str(path)

    def __reduce__(self):
        return open, (self.path, "w")


def pickled(marker: Path) -> bytes:
    return pickle.dumps(Payload(marker))


def torch_saved(marker: Path) -> bytes:
    buf = io.BytesIO()
    torch.save({"state": Payload(marker)}, buf)
    return buf.getvalue()


def poison(src: Path, dst: Path, ext: str, data: bytes) -> Path:
    """A copy of a shard folder whose every sample carries one more member, KEY.<ext>, holding `data`."""
    shutil.copytree(src, dst)
    for shard in sorted(dst.glob("*.tar")):
        with tarfile.open(shard) as tar:
            members = [(m, tar.extractfile(m).read()) for m in tar]
        with tarfile.open(shard, "w", format=tarfile.USTAR_FORMAT) as tar:
            for i, (member, content) in enumerate(members):
                tar.addfile(member, io.BytesIO(content))
                key = member.name.split(".", 1)[0]
                if i + 1 == len(members) or members[i + 1][0].name.split(".", 1)[0] != key:
                    extra = tarfile.TarInfo(f"{key}.{ext}")
                    extra.size = len(data)
                    tar.addfile(extra, io.BytesIO(data))
    return dst


@pytest.fixture()
def labeled(labeled_shards):
    return labeled_shards


@pytest.mark.parametrize("ext,make", [("pyd", pickled), ("pth", torch_saved)])
def test_no_reader_runs_a_members_code(ext, make, labeled, pseudo_shards, target, cli, tmp_path):
    marker = tmp_path / "payload-ran"
    data = make(marker)
    poisoned = poison(labeled, tmp_path / "poisoned", ext, data)
    pseudo = poison(pseudo_shards, tmp_path / "pseudo", ext, data)

    # The payload is live: a reader that decodes by extension runs it (webdataset's default
    # decoders unpickle .pyd); so the checks below can fail.
    if ext == "pyd":
        sample = next(iter(wds.DataPipeline(wds.SimpleShardList(str(shard_paths(poisoned, read_header(poisoned))[0])),
                                            wds.tarfile_to_samples(), wds.decode("pil"))))
        assert marker.exists() and "pyd" in sample
        marker.unlink()

    runs = tmp_path / "runs"
    results = [
        cli(pttrain, ["pp", "--shards", poisoned, "--out", runs / "pp", *TRAIN]),
        cli(pttrain, ["finetune", "--data", poisoned, "--init", runs / "pp", "--out", runs / "ft", "--epochs", "1",
                      "--batch-size", "4", "--min-steps", "0", "--quiet", "--workers", "0"]),
        cli(pttrain, ["eval", "--run", runs / "pp", "--data", poisoned, "--confusion", tmp_path / "c.png"]),
        cli(pttrain, ["pssl", "--data", target, "--unlabeled", pseudo, "--init", "none", "--out", runs / "pssl",
                      "--ratio", "2", "--guard", "none", *TRAIN]),
        cli(ptgen, ["inspect", poisoned, "--grid", tmp_path / "sheet.png"]),
    ]
    for result in results:
        assert result.exit_code == 0, result.output
        assert f".{ext}" in result.output  # named in the run's log
    assert not marker.exists()
    assert re.search(rf"skipped \d+ members that the shard format does not define \(\.{ext} in synth-", results[0].output)
    assert "not part of the shard format (never decoded)" in results[4].output


def test_strict_refuses_a_dataset_with_unknown_members(labeled, cli, tmp_path):
    poisoned = poison(labeled, tmp_path / "poisoned", "pyd", b"not even a pickle")
    for command, args in ((pttrain, ["pp", "--shards", poisoned, "--out", tmp_path / "run", "--strict", *TRAIN]),
                          (ptgen, ["inspect", poisoned, "--strict"])):
        result = cli(command, args)
        assert result.exit_code == 2
        assert "synth-000000.tar holds .pyd members" in result.output and "--strict" in result.output
    assert not (tmp_path / "run").exists()


def rewrite_member(src: Path, dst: Path, name: str, content: bytes | None, size: int) -> Path:
    """A copy of a shard folder in which member `name` of shard 1 claims `size` bytes; with `content`
    None its header alone is written (nothing follows it), as a tar whose data was never sent."""
    shutil.copytree(src, dst)
    shard = dst / "synth-000001.tar"
    with tarfile.open(shard) as tar:
        members = [(m, tar.extractfile(m).read()) for m in tar]
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for member, data in members:
            if member.name == name:
                member.size = size
                if content is None:
                    tar.fileobj.write(member.tobuf(tarfile.USTAR_FORMAT))
                    break
                data = content
            tar.addfile(member, io.BytesIO(data))
    shard.write_bytes(out.getvalue())
    return dst


def test_an_oversized_member_is_refused_by_name_before_it_is_read(labeled, cli, tmp_path):
    png = next(m for m in tarfile.open(labeled / "synth-000001.tar") if m.name == "000000007.png")
    padded = tarfile.open(labeled / "synth-000001.tar").extractfile(png).read() + b"\0" * (3 << 20)
    big = rewrite_member(labeled, tmp_path / "big", "000000007.png", padded, len(padded))
    result = cli(pttrain, ["eval", "--run", "builtin:glyphs-1k", "--data", big, "--max-member-mb", "1",
                           "--confusion", tmp_path / "c.png"])
    assert result.exit_code == 2
    assert "synth-000001.tar: member 000000007.png (key 000000007) is 3.0 MB, over the 1.0 MB limit" in result.output
    with pytest.raises(ShardFormatError, match="000000007.png"):
        list(read_samples(sorted(big.glob("*.tar")), ReadPolicy(max_member_bytes=1 << 20)))

    # A header that claims 4 GiB with nothing behind it: reading the data would fail as a damaged
    # tar; the refusal by size comes first, so nothing of it is read.
    huge = rewrite_member(labeled, tmp_path / "huge", "000000007.png", None, 4 << 30)
    args = ["eval", "--run", "builtin:glyphs-1k", "--data", huge, "--confusion", tmp_path / "c.png"]
    result = cli(pttrain, args)  # the shard is shorter than its manifest records: refused from the listing
    assert result.exit_code == 2 and "synth-000001.tar is" in result.output and "(truncated)" in result.output
    (huge / "manifest.parquet").unlink()  # without the record, the reader's own check by the header
    result = cli(pttrain, args)
    assert result.exit_code == 2
    assert "member 000000007.png (key 000000007) is 4096.0 MB, over the 64.0 MB limit" in result.output


def test_a_decompression_bomb_is_refused(tmp_path):
    from PIL import Image

    from ptcommon.shards import open_image

    buf = io.BytesIO()
    Image.new("L", (20000, 20000)).save(buf, format="PNG")  # 400 M pixels, a few hundred kB compressed
    with pytest.raises(ShardFormatError, match="decompression-bomb"):
        open_image(buf.getvalue(), "x.tar: sample 000000000", "png")


def test_clean_shards_read_exactly_as_with_webdataset_decoders(labeled):
    """The format's own decoders give the very batches the generic ones gave."""
    data = ShardSet(labeled)
    ours = list(data.pipeline(GRAY16.transform(False), 5, train=False, seed=0, with_labels=True,
                              corrupt=CorruptCounter(False)))
    urls = [str(p) for p in data.paths]
    generic = wds.DataPipeline(wds.SimpleShardList(urls), wds.tarfile_to_samples(), wds.decode("pil"),
                               wds.map(lambda s: (GRAY16.transform(False)(s["png"]), data.index_of[int(s["cls"])])),
                               wds.batched(5, partial=True))
    theirs = list(generic)
    assert len(ours) == len(theirs) == 5
    for (a, la), (b, lb) in zip(ours, theirs):
        assert torch.equal(a, b) and list(la) == list(lb)


def test_an_image_member_is_decoded_only_by_its_extensions_decoder():
    from PIL import Image

    from ptcommon.shards import open_image

    buf = io.BytesIO()
    Image.new("L", (8, 8)).save(buf, format="TIFF")
    with pytest.raises(Exception, match="cannot identify image file"):
        open_image(buf.getvalue(), "x.tar: sample 000000000", "png")  # a TIFF named .png


def test_a_header_naming_a_command_or_a_path_is_refused(labeled, cli, tmp_path):
    import json

    for prefix in ("pipe:touch PWNED #", "../synth", "/tmp/synth"):
        folder = tmp_path / "f"
        shutil.rmtree(folder, ignore_errors=True)
        shutil.copytree(labeled, folder)
        header = json.loads((folder / "dataset.json").read_text())
        (folder / "dataset.json").write_text(json.dumps({**header, "prefix": prefix}))
        (folder / f"{prefix.replace('/', '_')}-000000.tar").write_bytes(b"")
        result = cli(pttrain, ["pp", "--shards", folder, "--out", tmp_path / "run", *TRAIN])
        assert result.exit_code == 2 and "expected letters, digits and _ only" in result.stderr
        assert not (tmp_path / "PWNED").exists() and not (folder / "PWNED").exists()


def test_an_oversized_tar_header_extension_is_refused_before_it_is_read(tmp_path):
    shard = tmp_path / "synth-000000.tar"
    with tarfile.open(shard, "w", format=tarfile.GNU_FORMAT) as tar:
        info = tarfile.TarInfo("0" * (200 << 10) + ".png")  # a 200 kB long name, carried in a GNU extension
        tar.addfile(info, io.BytesIO(b""))
    with pytest.raises(ShardFormatError, match="tar header extension of"):
        list(read_samples([shard]))


def test_a_refusal_in_a_loader_worker_is_still_one_line(labeled, cli, tmp_path):
    result = cli(pttrain, ["eval", "--run", "builtin:glyphs-1k", "--data", labeled, "--max-member-mb", "0.0001",
                           "--workers", "1", "--confusion", tmp_path / "c.png"])
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.exit_code == 2 and len(lines) == 1, result.stderr
    assert lines[0].startswith("pttrain: error: ") and "over the" in lines[0] and "Traceback" not in result.stderr
