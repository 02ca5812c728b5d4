"""`ptgen inspect` and `ptgen models`."""

import json

from PIL import Image

from generate.cli import main as ptgen


def test_inspect_counts_and_contact_sheet(cli, tiny_model, tmp_path):
    out = tmp_path / "shards"
    assert cli(ptgen, ["synth", "--model", tiny_model, "--out", out, "--per-class", 4, "--shard-size", 6, "--quiet"]).exit_code == 0
    result = cli(ptgen, ["inspect", out, "--json"])
    summary = json.loads(result.output)
    assert summary["complete"] and summary["images"] == 20 and summary["shards"] == 4
    assert summary["per_class"] == {f"{c} tiny class {c}": 4 for c in range(5)}
    assert summary["bytes"] == sum(p.stat().st_size for p in out.glob("synth-*.tar"))
    assert summary["config"]["config_hash"]

    sheet = tmp_path / "sheet.png"
    text = cli(ptgen, ["inspect", out, "--grid", sheet, "--rows", 3, "--cols", 4])
    assert text.exit_code == 0 and "20 of 20 images" in text.output and "4/4 shards" in text.output
    assert Image.open(sheet).size[0] > 200


def test_inspect_merges_parts_left_unmerged(cli, tiny_model, tmp_path):
    out = tmp_path / "shards"
    assert cli(ptgen, ["synth", "--model", tiny_model, "--out", out, "--per-class", 2, "--quiet"]).exit_code == 0
    (out / "manifest.parquet").unlink()
    assert json.loads(cli(ptgen, ["inspect", out, "--json"]).output)["complete"]
    assert (out / "manifest.parquet").exists()


def test_inspect_counts_a_folder_copied_without_its_parts(cli, tiny_model, tmp_path):
    """Shards and dataset.json alone (no _parts/, no manifest.parquet): counted from the shards."""
    import shutil

    out = tmp_path / "shards"
    assert cli(ptgen, ["synth", "--model", tiny_model, "--out", out, "--per-class", 3, "--shard-size", 4,
                       "--quiet"]).exit_code == 0
    shutil.rmtree(out / "_parts")
    (out / "manifest.parquet").unlink()
    summary = json.loads(cli(ptgen, ["inspect", out, "--json"]).output)
    assert summary["complete"] and summary["images"] == 15
    assert summary["per_class"] == {f"{c} tiny class {c}": 3 for c in range(5)}


def test_inspect_of_a_folder_that_is_not_a_dataset(cli, tmp_path):
    result = cli(ptgen, ["inspect", tmp_path])
    assert result.exit_code != 0 and "no dataset.json" in result.stderr


def test_models_json_lists_the_builtin(cli):
    models = json.loads(cli(ptgen, ["models", "--json"]).output)
    assert [m["name"] for m in models] == ["builtin:glyphs-1k"]
    assert {"name", "path", "num_classes", "image_size"} <= set(models[0])
