"""Hugging Face datasets as targets, built offline by `datasets` itself: finetune, pssl, kd, eval, ptgen pseudo."""

import json

import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner
from PIL import Image

from generate.cli import main as ptgen
from train.cli import main as pttrain

datasets = pytest.importorskip("datasets")

FAST = ["--arch", "test_resnet", "--img-size", 16, "--min-steps", 0, "--epochs", 1, "--batch-size", 4, "--quiet"]
CLASSES = ["cat", "dog", "owl"]


def rows(count: int, offset: int = 0) -> dict:
    images = [Image.new("RGB", (20, 16), (70 * (i % 3), 90, 40 + i)) for i in range(offset, offset + count)]
    return {"picture": images, "kind": [i % 3 for i in range(count)], "note": [f"n{i}" for i in range(count)]}


def features(label=True):
    kinds = {"picture": datasets.Image(), "note": datasets.Value("string")}
    if label:
        kinds["kind"] = datasets.ClassLabel(names=CLASSES)
    return datasets.Features(kinds)


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """train (6), validation (3) and test (3) splits, written by save_to_disk."""
    splits = {name: datasets.Dataset.from_dict(rows(n, o), features=features())
              for name, n, o in (("train", 6, 0), ("validation", 3, 6), ("test", 3, 9))}
    out = tmp_path_factory.mktemp("hf") / "pets"
    datasets.DatasetDict(splits).save_to_disk(str(out))
    return out


def run(cli, *args):
    result = cli(pttrain, [str(a) for a in args])
    assert result.exit_code == 0, result.output + result.stderr
    return result


def test_finetune_and_eval_on_a_saved_dataset(cli, saved, tmp_path):
    out = tmp_path / "ft"
    result = run(cli, "finetune", "--data", saved, "--init", "none", "--out", out, *FAST)
    assert "validation on its val part (3 images)" in result.stderr
    config = json.loads((out / "config.json").read_text())
    assert config["class_names"] == CLASSES and config["in_chans"] == 3
    record = json.loads((out / "train.json").read_text())
    assert (record["train_n"], record["val_n"], record["test_n"]) == (6, 3, 3)
    result = run(cli, "eval", "--run", out, "--data", f"hf:{saved}")
    assert result.output.strip().splitlines()[-1].endswith("n=3")


def test_parquet_files_through_load_dataset(cli, tmp_path):
    folder = tmp_path / "parquet"
    folder.mkdir()
    for name, n in (("train", 6), ("test", 3)):
        datasets.Dataset.from_dict(rows(n), features=features()).to_parquet(str(folder / f"{name}.parquet"))
    out = tmp_path / "ft"
    result = run(cli, "finetune", "--data", f"hf:{folder}", "--init", "none", "--out", out, "--val-split", 0.5, *FAST)
    assert "validation on --val-split 0.5 of train (3 images)" in result.stderr
    assert json.loads((out / "config.json").read_text())["class_names"] == CLASSES


def test_pseudo_then_pssl_and_kd_on_a_saved_dataset(cli, saved, tiny_model, classifier, tmp_path):
    shards = tmp_path / "pseudo"
    result = CliRunner().invoke(ptgen, [str(a) for a in ("pseudo", "--model", tiny_model, "--classifier", classifier,
                                                         "--target", saved, "--out", shards, "--per-target", 1,
                                                         "--quiet")])
    assert result.exit_code == 0, result.output
    header = json.loads((shards / "dataset.json").read_text())
    assert header["num_targets"] == 6 and header["count"] == 6
    classes = pq.read_table(shards / "manifest.parquet", columns=["target_class"]).column(0).to_pylist()
    assert classes == [CLASSES[i % 3] for i in range(6)]
    run(cli, "finetune", "--data", saved, "--extra-labeled", shards, "--init", "none", "--out", tmp_path / "extra", *FAST)
    assert json.loads((tmp_path / "extra" / "train.json").read_text())["extra_labeled"]["labels"] == "target_class"
    run(cli, "pssl", "--data", saved, "--unlabeled", shards, "--init", "none", "--guard", "none",
        "--out", tmp_path / "pssl", *FAST)
    run(cli, "kd", "--data", saved, "--teacher", classifier, "--out", tmp_path / "kd", *FAST)
    assert json.loads((tmp_path / "kd" / "train.json").read_text())["test_n"] == 3


def test_columns_are_chosen_by_feature_or_by_flag(cli, tmp_path):
    plain = tmp_path / "plain"
    data = rows(6)
    data["kind"] = [CLASSES[k] for k in data["kind"]]  # text labels, no ClassLabel
    datasets.Dataset.from_dict(data, features=datasets.Features({**features(False), "kind": datasets.Value("string")})
                               ).save_to_disk(str(plain))
    out = tmp_path / "ft"
    run(cli, "finetune", "--data", plain, "--init", "none", "--label-column", "kind", "--out", out, *FAST)
    assert json.loads((out / "config.json").read_text())["class_names"] == sorted(CLASSES)


@pytest.mark.parametrize("args, expected", [
    (["--label-column", "nope"], "--label-column nope: {data} has no such column; its columns: picture, kind, note"),
    ([], "--data {data}: no label column (a ClassLabel feature); its columns: picture, kind, note; name one with "
         "--label-column"),
])
def test_missing_columns_are_one_line(cli, tmp_path, args, expected):
    data = tmp_path / "nolabel"
    values = rows(3)
    values["kind"] = [1, 2, 3]
    datasets.Dataset.from_dict(values, features=datasets.Features({**features(False), "kind": datasets.Value("int64")})
                               ).save_to_disk(str(data))
    before = sorted(tmp_path.rglob("*"))
    result = cli(pttrain, [str(a) for a in ("finetune", "--data", data, "--init", "none", *args,
                                            "--out", tmp_path / "run", *FAST)])
    lines = result.stderr.strip().splitlines()
    assert result.exit_code != 0 and len(lines) == 1 and expected.format(data=data) in lines[0], result.stderr
    assert sorted(tmp_path.rglob("*")) == before


def test_a_dataset_without_an_image_column_lists_its_columns(cli, tmp_path):
    data = tmp_path / "noimage"
    datasets.Dataset.from_dict({"kind": [0, 1]}, features=datasets.Features(
        {"kind": datasets.ClassLabel(names=["x", "y"])})).save_to_disk(str(data))
    result = cli(pttrain, ["finetune", "--data", str(data), "--init", "none", "--out", str(tmp_path / "run")])
    assert result.exit_code != 0
    assert result.stderr.strip() == (f"pttrain: error: --data {data}: no image column (an Image feature); its columns: "
                                     "kind; name one with --image-column")
    assert not (tmp_path / "run").exists()
