"""WebDataset shards made by other tools, named by brace lists: labeled ones for pp, img2dataset's
jpg + txt + json for pssl --unlabeled (here over HTTP), and the ways such a set is refused."""

import io
import json
import re
import tarfile

import pytest
from PIL import Image

from servers import http_folder
from train.cli import main as pttrain

FAST = ["--arch", "test_resnet", "--img-size", "16", "--min-steps", "0", "--epochs", 1, "--batch-size", 4, "--quiet"]


def write_set(folder, name, shards, per_shard, members):
    """SHARDS tars of PER_SHARD samples; `members(i)` gives sample i's {extension: bytes}."""
    folder.mkdir(parents=True, exist_ok=True)
    for k in range(shards):
        with tarfile.open(folder / name.format(k), "w") as tar:
            for i in range(k * per_shard, (k + 1) * per_shard):
                for ext, data in members(i).items():
                    info = tarfile.TarInfo(f"{i:09d}.{ext}")
                    info.size = len(data)
                    tar.addfile(info, io.BytesIO(data))
    return folder


def jpeg(i):
    buf = io.BytesIO()
    Image.new("RGB", (12, 12), (20 * (i % 10), 100, 255 - 20 * (i % 10))).save(buf, "JPEG")
    return buf.getvalue()


@pytest.fixture(scope="module")
def labeled(tmp_path_factory):
    """3 classes over 2 shards of 6, as timm's wds layout or a published set holds them."""
    return write_set(tmp_path_factory.mktemp("wds") / "labeled", "train-{:06d}.tar", 2, 6,
                     lambda i: {"jpg": jpeg(i), "cls": str(i % 3).encode(), "json": b"{}"})


@pytest.fixture(scope="module")
def img2dataset(tmp_path_factory):
    """img2dataset's output: jpg, its caption (txt) and its record (json); no labels."""
    return write_set(tmp_path_factory.mktemp("wds") / "web", "{:05d}.tar", 2, 5,
                     lambda i: {"jpg": jpeg(i), "txt": f"a photo {i}".encode(),
                                "json": json.dumps({"url": f"https://example.invalid/{i}.jpg"}).encode()})


def test_pp_on_a_labeled_brace_list_takes_the_class_names_given(cli, labeled, tmp_path):
    names = tmp_path / "names.txt"
    names.write_text("ant\nbee\ncat\n")
    out = tmp_path / "pp"
    result = cli(pttrain, ["pp", "--shards", f"{labeled}/train-{{000000..000001}}.tar", "--class-names", names,
                           "--out", out, "--workers", 0, *FAST])
    assert result.exit_code == 0, result.output + result.stderr
    config = json.loads((out / "config.json").read_text())
    assert config["class_names"] == ["ant", "bee", "cat"] and config["in_chans"] == 3
    assert json.loads((out / "train.json").read_text())["steps"] == 12 // 4


def test_an_img2dataset_set_over_http_serves_pssl_unlabeled(cli, target, img2dataset, tmp_path):
    with http_folder(img2dataset.parent) as base:
        out = tmp_path / "pssl"
        result = cli(pttrain, ["pssl", "--data", target, "--unlabeled", f"{base}/web/{{00000..00001}}.tar",
                               "--init", "none", "--ratio", 2, "--threshold", 0, "--out", out, "--workers", 0,
                               "--epochs", 2, "--batch-size", 2, "--arch", "test_resnet", "--img-size", 16,
                               "--min-steps", 0, "--quiet"])
    assert result.exit_code == 0, result.output + result.stderr
    record = json.loads((out / "train.json").read_text())
    assert record["guard"].startswith("none (real images")
    assert "skipping .txt members" in result.stderr  # captions are never decoded


@pytest.mark.parametrize("case", ["no labels", "no match", "label key", "label range"])
def test_a_foreign_set_is_refused_in_one_line(cli, labeled, img2dataset, tmp_path, case):
    names = tmp_path / "two.txt"
    names.write_text("ant\nbee\n")
    args, expected = {
        "no labels": (["--shards", f"{img2dataset}/{{00000..00001}}.tar"],
                      r"no \.cls member \(--label-key cls\); they have \.jpg, \.json, \.txt"),
        "no match": (["--shards", f"{labeled}/val-{{000000..000003}}.tar"], "matches no object"),
        "label key": (["--shards", f"{img2dataset}/{{00000..00001}}.tar", "--label-key", "json"],
                   "names an image or the metadata"),
        "label range": (["--shards", f"{labeled}/train-{{000000..000001}}.tar", "--class-names", names],
                        "names 2 classes, but --shards .* holds class id 2"),
    }[case]
    out = tmp_path / "run"
    result = cli(pttrain, ["pp", *args, "--out", out, *FAST])
    assert result.exit_code == 2
    message = result.stderr.strip()
    assert len(message.splitlines()) == 1 and re.search(expected, message), message
    assert not out.exists()


def test_strict_refuses_a_foreign_set_with_members_it_does_not_read(cli, target, img2dataset, tmp_path):
    result = cli(pttrain, ["pssl", "--data", target, "--unlabeled", f"{img2dataset}/{{00000..00001}}.tar",
                           "--init", "none", "--strict", "--out", tmp_path / "run", *FAST])
    assert result.exit_code == 2 and "holds .txt members" in result.stderr and "--strict" in result.stderr
    assert not (tmp_path / "run").exists()
