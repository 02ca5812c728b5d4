"""`pttrain data digits`: the built-in target task exported as an ImageFolder tree."""

import io
import json
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from train.cli import main
from train.data import digits


@pytest.fixture(scope="module")
def export_dir(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("digits") / "export"
    digits.export(out, labels_per_class=10, seed=0)
    return out


def rows_of(root: Path, part: str) -> list[int]:
    return sorted(int(p.stem) for p in (root / part).rglob("*.png"))


def test_same_arguments_give_byte_identical_files(export_dir, tmp_path):
    again = tmp_path / "again"
    digits.export(again, labels_per_class=10, seed=0)
    assert digits.read_tree(again) == digits.read_tree(export_dir)


def test_parts_are_disjoint_and_cover_every_image(export_dir):
    test, train, unlabeled = (set(rows_of(export_dir, part)) for part in ("test", "train", "unlabeled"))
    assert not (test & train) and not (test & unlabeled) and not (train & unlabeled)
    assert len(test | train | unlabeled) == 1797


def test_counts_and_labels(export_dir):
    _, labels = digits.load()
    for digit in range(10):
        train_rows = [int(p.stem) for p in (export_dir / "train" / str(digit)).glob("*.png")]
        assert len(train_rows) == 10
        assert all(labels[row] == digit for row in train_rows)
        assert all(labels[int(p.stem)] == digit for p in (export_dir / "test" / str(digit)).glob("*.png"))
    assert sorted(p.name for p in (export_dir / "train").iterdir()) == [str(d) for d in range(10)]
    assert [p.name for p in (export_dir / "unlabeled").iterdir()] == ["images"]
    record = json.loads((export_dir / "split.json").read_text())
    assert record["counts"] == {"train": 100, "test": 899, "unlabeled": 798}
    assert record["labels_per_class"] == 10 and record["seed"] == 0
    # The test half is stratified: every digit has about half its images there.
    assert all(abs(t - c / 2) <= 1 for t, c in zip(record["per_class"]["test"], np.bincount(labels)))


def test_test_half_is_the_same_for_every_seed(export_dir, tmp_path):
    other = tmp_path / "seed7"
    digits.export(other, labels_per_class=10, seed=7)
    assert rows_of(other, "test") == rows_of(export_dir, "test")
    assert rows_of(other, "train") != rows_of(export_dir, "train")
    pool = set(rows_of(export_dir, "train")) | set(rows_of(export_dir, "unlabeled"))
    assert set(rows_of(other, "train")) <= pool


def test_images_are_16x16_grayscale_white_ink_on_black(export_dir):
    images, _ = digits.load()
    for path in sorted((export_dir / "test" / "0").glob("*.png"))[:5]:
        image = Image.open(io.BytesIO(path.read_bytes()))
        assert image.size == (16, 16) and image.mode == "L"
        pixels = np.asarray(image, dtype=float)
        # Bright where sklearn's ink values are high: the 8x8 source, pixel-doubled, predicts it.
        source = np.kron(images[int(path.stem)], np.ones((2, 2)))
        assert np.corrcoef(pixels.ravel(), source.ravel())[0, 1] > 0.9
        assert pixels.max() > 150


@pytest.mark.parametrize("k", [0, -3, 88, 1000])
def test_bad_labels_per_class_is_refused_in_one_line(cli, tmp_path, k):
    out = tmp_path / "out"
    result = cli(main, ["data", "digits", "--out", out, "--labels-per-class", k])
    assert result.exit_code != 0
    message = result.stderr.strip()
    assert "\n" not in message
    assert "--labels-per-class" in message and str(k) in message and "1 to 87" in message
    assert "Traceback" not in result.output + result.stderr
    assert not out.exists()


def test_largest_allowed_k_leaves_smallest_class_without_unlabeled(tmp_path):
    out = tmp_path / "out"
    digits.export(out, labels_per_class=87, seed=1)
    assert json.loads((out / "split.json").read_text())["per_class"]["unlabeled"][8] == 0


def test_rerun_into_same_export_succeeds_without_writing(cli, export_dir):
    before = {p: p.stat().st_mtime_ns for p in export_dir.rglob("*")}
    result = cli(main, ["data", "digits", "--out", export_dir])
    assert result.exit_code == 0 and "already holds" in result.output
    assert {p: p.stat().st_mtime_ns for p in export_dir.rglob("*")} == before


def test_different_export_needs_overwrite(cli, tmp_path):
    out = tmp_path / "out"
    assert cli(main, ["data", "digits", "--out", out, "--seed", 1]).exit_code == 0
    refused = cli(main, ["data", "digits", "--out", out, "--seed", 2])
    assert refused.exit_code != 0 and "--overwrite" in refused.stderr
    assert json.loads((out / "split.json").read_text())["seed"] == 1
    replaced = cli(main, ["data", "digits", "--out", out, "--seed", 2, "--overwrite"])
    assert replaced.exit_code == 0
    assert json.loads((out / "split.json").read_text())["seed"] == 2
    assert len(rows_of(out, "train")) == 100


def test_overwrite_never_touches_foreign_files(cli, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    result = cli(main, ["data", "digits", "--out", out, "--overwrite"])
    assert result.exit_code != 0 and "notes.txt" in result.stderr
    assert [p.name for p in out.iterdir()] == ["notes.txt"]


def test_help_states_the_true_limits(cli):
    _, labels = digits.load()
    test, _ = digits.test_and_pool(labels)
    text = cli(main, ["data", "digits", "--help"]).output
    assert f"({digits.max_labels_per_class(labels)})" in text
    assert f"({len(test)} images)" in text
    for word in ("--labels-per-class", "--seed", "--overwrite", "unlabeled/images", "oracle"):
        assert word in text
    assert re.search(r"byte-identical", text)
