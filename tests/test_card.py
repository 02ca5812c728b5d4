"""ptgen card: a shard folder's dataset card, read by Hugging Face datasets offline."""

import shutil

from generate.cli import main as ptgen


def test_datasets_reads_a_carded_folder_with_its_class_names(cli, labeled_shards, tmp_path, monkeypatch):
    folder = tmp_path / "shards"
    shutil.copytree(labeled_shards, folder)
    result = cli(ptgen, ["card", folder])
    assert result.exit_code == 0, result.output
    card = (folder / "README.md").read_text()
    assert "no license found in the generator folder's own card" in card
    header = __import__("json").loads((folder / "dataset.json").read_text())
    assert header["config_hash"] in card and "| images | 21 (3 classes of the generator's 5) |" in card

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    import datasets

    train = datasets.load_dataset(str(folder), split="train")
    assert isinstance(train.features["png"], datasets.Image)
    labels = train.features["cls"]
    assert isinstance(labels, datasets.ClassLabel)
    assert [labels.int2str(i) for i in (1, 3, 4)] == ["tiny class 1", "tiny class 3", "tiny class 4"]
    assert len(train) == 21 and sorted(set(train["cls"])) == [1, 3, 4]
    assert train[0]["png"].size == (8, 8)


def test_card_refuses_a_folder_without_dataset_json(cli, tmp_path):
    result = cli(ptgen, ["card", tmp_path])
    assert result.exit_code == 2 and "no dataset.json" in result.stderr
    assert not (tmp_path / "README.md").exists()
