"""Bad input: a non-zero exit, one line naming the flag, the value and what would be right, no
traceback, nothing written."""

import json

import pytest

from generate.cli import main as ptgen
from generate.models import builtin_info


def run_bad(cli, out, *args):
    result = cli(ptgen, ["synth", "--out", out, "--quiet", *args])
    assert result.exit_code != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.output
    return lines[0]


@pytest.mark.parametrize(
    "args, expected",
    [
        (["--classes", "6"], "--classes 6: the model has 5 classes"),
        (["--class-ids", "1,9"], "--class-ids 1,9: 9 is out of range; the model's ids are 0..4"),
        (["--class-ids", "1,2,1"], "--class-ids 1,2,1: 1 is repeated"),
        (["--class-ids", "a-b"], "'a-b' is not a class id"),
        (["--classes", "2", "--class-ids", "1"], "--classes and --class-ids exclude each other"),
        (["--per-class", "0"], "'--per-class': 0 is not in the range x>=1"),
        (["--rank", "2", "--world", "2"], "--rank 2: must lie in [0, 1]"),
        (["--rank", "1"], "--rank and --world go together"),
    ],
)
def test_bad_flags(cli, tiny_model, tmp_path, args, expected):
    out = tmp_path / "out"
    line = run_bad(cli, out, "--model", tiny_model, *args)
    assert expected in line
    assert not out.exists()


def test_missing_model_folder(cli, tmp_path):
    out = tmp_path / "out"
    line = run_bad(cli, out, "--model", tmp_path / "nope")
    assert f"--model {tmp_path / 'nope'}: no such folder" in line
    assert not out.exists()


def test_model_that_is_not_class_conditional(cli, tmp_path):
    from tiny_models import save_tiny_unet

    model = save_tiny_unet(tmp_path / "uncond", class_conditional=False, null_class=False, num_classes=1)
    line = run_bad(cli, tmp_path / "out", "--model", model)
    assert "not class-conditional" in line and "num_class_embeds" in line
    assert not (tmp_path / "out").exists()


def test_a_folder_that_is_no_known_generator_names_what_was_expected(cli, tmp_path):
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "weights.bin").write_bytes(b"")
    line = run_bad(cli, tmp_path / "out", "--model", tmp_path / "empty")
    assert "not a generator folder ptgen knows (found weights.bin)" in line
    assert "dit: model_index.json (DiTPipeline), transformer/, vae/, scheduler/" in line and "unet: unet/" in line


def test_a_pipeline_no_backend_samples_is_not_supported_yet(cli, tmp_path):
    folder = tmp_path / "sdxl"
    (folder / "unet").mkdir(parents=True)
    (folder / "text_encoder").mkdir(parents=True)
    (folder / "model_index.json").write_text('{"_class_name": "StableDiffusionXLPipeline"}')
    line = run_bad(cli, tmp_path / "out", "--model", folder)
    assert "a StableDiffusionXLPipeline (text-to-image) is not supported yet" in line
    assert not (tmp_path / "out").exists()


def test_guidance_without_null_class(cli, tiny_model_no_null, tmp_path):
    line = run_bad(cli, tmp_path / "out", "--model", tiny_model_no_null, "--guidance", "3")
    assert "--guidance 3.0" in line and "no null class" in line


def test_unwritable_output(cli, tiny_model, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    line = run_bad(cli, blocker / "shards", "--model", tiny_model)
    assert f"--out {blocker / 'shards'}: cannot be created: {blocker} is a file" in line


def test_folder_of_another_config_is_refused_then_overwritten(cli, tiny_model, tmp_path):
    out = tmp_path / "out"
    base = ["synth", "--model", tiny_model, "--out", out, "--per-class", 2, "--quiet"]
    assert cli(ptgen, base).exit_code == 0
    before = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}

    line = run_bad(cli, out, "--model", tiny_model, "--per-class", 2, "--steps", 3)
    assert f"--out {out}: holds shards of another config" in line and "steps 3 here vs 4 there" in line
    assert {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()} == before

    again = cli(ptgen, [*base, "--steps", 3, "--overwrite"])
    assert again.exit_code == 0
    assert json.loads((out / "dataset.json").read_text())["steps"] == 3


def test_rerun_of_a_finished_folder_skips_everything(cli, tiny_model, tmp_path):
    out = tmp_path / "out"
    args = ["synth", "--model", tiny_model, "--out", out, "--per-class", 2, "--quiet"]
    assert cli(ptgen, args).exit_code == 0
    again = cli(ptgen, args)
    assert again.exit_code == 0 and "wrote 0 images in 0 shards (1 already done)" in again.output


def test_default_model_is_the_builtin(cli, tmp_path):
    info = builtin_info("glyphs-1k")
    result = cli(ptgen, ["synth", "--out", tmp_path / "out", "--classes", "2", "--per-class", "1", "--quiet"])
    if info["installed"]:
        assert result.exit_code == 0, result.output
    else:
        assert result.exit_code != 0
        assert "--model builtin:glyphs-1k: the built-in generator is missing" in result.stderr
        assert not (tmp_path / "out").exists()


def test_rank_and_world_come_from_an_srun_step_when_torchrun_is_absent(monkeypatch):
    from generate.distributed import rank_and_world
    from ptcommon.launcher import detect

    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "SLURM_STEP_ID", "SLURM_STEPID", "SLURM_STEP_NUM_TASKS"):
        monkeypatch.delenv(name, raising=False)
    # A batch script's own shell sees the job's variables but is one process: it writes every shard.
    monkeypatch.setenv("SLURM_PROCID", "0")
    monkeypatch.setenv("SLURM_NTASKS", "8")
    monkeypatch.setenv("SLURM_LOCALID", "0")
    assert rank_and_world(None, None) == (0, 1)
    monkeypatch.setenv("SLURM_STEP_ID", str(0xFFFFFFFE))  # Slurm's batch step
    assert rank_and_world(None, None) == (0, 1)
    # srun tasks: the step's count wins over the job's.
    monkeypatch.setenv("SLURM_STEP_ID", "0")
    monkeypatch.setenv("SLURM_PROCID", "5")
    monkeypatch.setenv("SLURM_LOCALID", "1")
    assert rank_and_world(None, None) == (5, 8) and detect().local_rank == 1
    monkeypatch.setenv("SLURM_STEP_NUM_TASKS", "6")
    assert rank_and_world(None, None) == (5, 6)
    monkeypatch.setenv("RANK", "2")
    monkeypatch.setenv("WORLD_SIZE", "4")
    assert rank_and_world(None, None) == (2, 4)  # torchrun's own variables win
    assert rank_and_world(0, 1) == (0, 1)  # and flags win over both
