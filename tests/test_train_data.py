"""Training-stage data: ptgen shards through WebDataset, ImageFolder trees, preprocessing."""

import itertools

import pytest
import torch
from PIL import Image

from ptcommon.cli import InputError
from train.data.folder import UnlabeledImages, labeled_split
from train.data.shards import CorruptCounter, ShardSet, dealt_shards
from train.data.transforms import Preprocess

GRAY16 = Preprocess(image_size=16, in_chans=1, mean=(0.5,), std=(0.5,))


@pytest.fixture()
def shards(labeled_shards):
    return labeled_shards


def test_eval_pipeline_reads_every_sample_once_with_mapped_labels(shards):
    data = ShardSet(shards)
    assert data.class_ids == [1, 3, 4] and data.count == 21 and len(data.paths) == 5
    batches = list(data.pipeline(GRAY16.transform(False), 4, train=False, seed=0, with_labels=True,
                                 corrupt=CorruptCounter(False)))
    images = torch.cat([b[0] for b in batches])
    labels = torch.cat([torch.as_tensor(b[1]) for b in batches])
    assert images.shape == (21, 1, 16, 16)  # 8x8 samples resized to the run's 16x16
    assert torch.bincount(labels).tolist() == [7, 7, 7]


def test_train_pipeline_has_a_fixed_epoch_length(shards):
    data = ShardSet(shards)
    epoch = list(data.pipeline(GRAY16.transform(True), 4, train=True, seed=0, with_labels=True,
                               corrupt=CorruptCounter(False), batches_per_worker=6))
    assert len(epoch) == 6 and all(b[0].shape == (4, 1, 16, 16) for b in epoch)


@pytest.mark.parametrize("count, slots", [(10, 1), (10, 3), (13, 4), (3, 8)])
def test_training_deals_every_shard_once_a_round_over_all_workers(count, slots):
    """However the shards divide over the workers, each round of the deal holds every shard once,
    and a worker's shards come grouped by round, in order."""
    reads: dict[int, list[int]] = {}
    for slot in range(slots):
        groups = dealt_shards(count, 7, slot, slots)
        for round_, group in itertools.islice(groups, 6):
            reads.setdefault(round_, []).extend(group)
    full = [r for r in reads if r < min(max(reads), 4)]  # rounds every slot has passed
    assert full and all(sorted(reads[r]) == list(range(count)) for r in full)
    assert reads[0] != reads[1]  # another permutation each round
    assert next(dealt_shards(count, 7, 0, slots)) == next(dealt_shards(count, 7, 0, slots))


def test_an_epoch_that_matches_the_folder_trains_on_every_image_once(shards):
    """One worker and an epoch of the folder's size: the round's images, each once, whatever shards
    of uneven sizes (21 samples in shards of 5 and one of 1) and the shuffle buffer."""
    data = ShardSet(shards)

    def images(train: bool) -> list[bytes]:
        pipeline = data.pipeline(lambda image: image, 21, train=train, seed=3, with_labels=True,
                                 corrupt=CorruptCounter(False), batches_per_worker=1 if train else None)
        return sorted(image.tobytes() for batch in pipeline for image in batch[0])

    assert images(train=True) == images(train=False)


def test_corrupted_shard_is_named_or_skipped(shards, tmp_path):
    import shutil

    broken = tmp_path / "broken"
    shutil.copytree(shards, broken)
    damaged = broken / "synth-000002.tar"
    damaged.write_bytes(damaged.read_bytes()[:1500])
    # Shorter than the manifest recorded: refused from the listing, before any step reads it.
    with pytest.raises(InputError, match=r"synth-000002.tar is 1,500 bytes, 20,480 when written \(truncated\); rerun"):
        ShardSet(broken)
    data = ShardSet(broken, skip_corrupt=True)
    run = lambda counter: list(data.pipeline(GRAY16.transform(False), 4, train=False, seed=0,  # noqa: E731
                                             with_labels=True, corrupt=counter))
    with pytest.raises(InputError, match=r"synth-000002.tar: corrupted or unreadable shard"):
        run(CorruptCounter(False))
    counter = CorruptCounter(True)
    with pytest.warns(UserWarning, match="synth-000002.tar"):
        batches = run(counter)
    assert counter.count >= 1 and any("synth-000002.tar" in w for w in counter.where)
    assert 16 <= sum(len(b[1]) for b in batches) < 21
    with pytest.warns(UserWarning, match="synth-000002.tar"):  # training reads on past it
        epoch = list(data.pipeline(GRAY16.transform(True), 4, train=True, seed=0, with_labels=True,
                                   corrupt=CorruptCounter(True), batches_per_worker=20))
    assert len(epoch) == 20


@pytest.mark.parametrize("damage", ["truncated", "not a tar"])
def test_training_on_a_folder_damaged_throughout_stops_with_a_message(shards, tmp_path, damage):
    """Training resamples shards without end; with --skip-corrupt and nothing readable it would spin.
    Truncated shards still give broken samples, counted against every sample; shards that cannot be
    read at all stop it after a few reads of each, however many samples the header counts."""
    import shutil

    broken = tmp_path / "broken"
    shutil.copytree(shards, broken)
    for tar in broken.glob("*.tar"):
        tar.write_bytes(tar.read_bytes()[:700] if damage == "truncated" else b"not a tar " * 100)
    data = ShardSet(broken, skip_corrupt=True)
    counter = CorruptCounter(True)
    epoch = data.pipeline(GRAY16.transform(True), 4, train=True, seed=0, with_labels=True, corrupt=counter,
                          batches_per_worker=6)
    what = "damaged samples or shards in a row" if damage == "truncated" else "shard reads in a row failed"
    with pytest.warns(UserWarning), pytest.raises(InputError, match=f"{what} and not one readable sample.*rerun ptgen"):
        list(epoch)
    if damage == "truncated":
        assert counter.in_a_row == counter.limit + 1
    else:  # 16 reads of each of its 5 shards, and 64
        assert counter.reads_in_a_row == counter.reads_limit + 1 == 16 * 5 + 64 + 1 < counter.limit


def test_shard_folder_errors(shards, tmp_path):
    with pytest.raises(InputError, match="no dataset.json"):
        ShardSet(tmp_path)
    import shutil

    partial = tmp_path / "partial"
    shutil.copytree(shards, partial)
    (partial / "synth-000004.tar").unlink()
    with pytest.raises(InputError, match="1 of 5 shards missing"):
        ShardSet(partial)


def write_png(path, mode="L", size=(8, 8)):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new(mode, size, 128).save(path)


def test_image_folder_and_its_errors(tmp_path):
    root = tmp_path / "data"
    write_png(root / "train" / "a" / "1.png")
    write_png(root / "train" / "b" / "1.png", mode="RGB", size=(20, 12))
    ds = labeled_split(root, "train", GRAY16.transform(False))
    assert ds.classes == ["a", "b"] and ds[1][0].shape == (1, 16, 16)

    with pytest.raises(InputError, match=r"--data .*: no test/ folder"):
        labeled_split(root, "test")
    (root / "train" / "c").mkdir()
    with pytest.raises(InputError, match=r"class folder train/c is empty"):
        labeled_split(root, "train")
    (root / "train" / "c").rmdir()
    (root / "train" / "a" / "2.png").write_bytes(b"not a png")
    ds = labeled_split(root, "train")
    with pytest.raises(InputError, match=r"2.png: cannot read this image"):
        ds[1]


def test_unlabeled_images_and_rgb_conversion(tmp_path):
    write_png(tmp_path / "u" / "x" / "1.png")
    write_png(tmp_path / "u" / "2.jpg", mode="RGB")
    rgb = Preprocess(image_size=32, in_chans=3, mean=(0.5,) * 3, std=(0.5,) * 3)
    ds = UnlabeledImages(tmp_path / "u", rgb.transform(False))
    assert len(ds) == 2 and ds[0].shape == (3, 32, 32)
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="--unlabeled .*empty: no images found"):
        UnlabeledImages(tmp_path / "empty")
