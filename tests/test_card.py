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


def _folder(labeled_shards, tmp_path):
    folder = tmp_path / "shards"
    shutil.copytree(labeled_shards, folder)
    return folder


def test_card_replaces_its_own_earlier_card(cli, labeled_shards, tmp_path):
    folder = _folder(labeled_shards, tmp_path)
    assert cli(ptgen, ["card", folder]).exit_code == 0
    card = folder / "README.md"
    first = card.read_text()
    assert '\nwritten_by: "ptgen card"\n' in first.split("\n---\n")[0]
    card.write_text(first.replace("Synthetic images:", "Stale text from an earlier run:"))
    result = cli(ptgen, ["card", folder])
    assert result.exit_code == 0, result.output
    assert card.read_text() == first


def test_card_refuses_a_readme_the_user_wrote_and_leaves_it(cli, labeled_shards, tmp_path):
    folder = _folder(labeled_shards, tmp_path)
    mine = folder / "README.md"
    # front matter that looks like a card, even naming ptgen, but without the line only ptgen writes
    mine.write_bytes(b"---\nlicense: mit\ntags:\n- ptgen\n---\n# my notes\r\nkept as they are\n")
    before = mine.read_bytes()
    result = cli(ptgen, ["card", folder])
    assert result.exit_code == 2
    message = result.stderr.strip()
    assert "\n" not in message and str(mine) in message
    assert "--out" in message and "--overwrite" in message
    assert mine.read_bytes() == before
    assert sorted(p.name for p in folder.iterdir()) == sorted([p.name for p in labeled_shards.iterdir()] + ["README.md"])


def test_card_out_writes_elsewhere_and_overwrite_replaces(cli, labeled_shards, tmp_path):
    folder = _folder(labeled_shards, tmp_path)
    mine = folder / "README.md"
    mine.write_text("# my notes\n")
    elsewhere = tmp_path / "cards" / "card.md"
    result = cli(ptgen, ["card", folder, "--out", elsewhere])
    assert result.exit_code == 0, result.output
    assert str(elsewhere) in result.output and 'written_by: "ptgen card"' in elsewhere.read_text()
    assert mine.read_text() == "# my notes\n"

    other = tmp_path / "notes.md"
    other.write_text("# other notes\n")
    assert cli(ptgen, ["card", folder, "--out", other]).exit_code == 2
    assert other.read_text() == "# other notes\n"

    result = cli(ptgen, ["card", folder, "--overwrite"])
    assert result.exit_code == 0, result.output
    assert mine.read_text() == elsewhere.read_text()
