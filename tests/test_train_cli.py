"""pttrain pp -> finetune -> eval end to end, resume after SIGKILL, torchrun, and bad input."""

import json
import signal
import subprocess
import sys
import time

import pytest
from click.testing import CliRunner

from conftest import ROOT, run_module
from generate.cli import main as ptgen
from train.cli import main as pttrain

FAST = ["--arch", "test_resnet", "--min-steps", "0", "--quiet"]


@pytest.fixture(scope="module")
def shards(tiny_model, tmp_path_factory):
    """5 classes x 24 = 120 images in 7 uneven shards of 18 (the last holds 12)."""
    out = tmp_path_factory.mktemp("train") / "shards"
    args = ["synth", "--model", tiny_model, "--out", out, "--per-class", 24, "--shard-size", 18, "--quiet"]
    assert CliRunner().invoke(ptgen, [str(a) for a in args]).exit_code == 0
    return out


@pytest.fixture(scope="module")
def digits(tmp_path_factory):
    out = tmp_path_factory.mktemp("digits") / "digits"
    assert CliRunner().invoke(pttrain, ["data", "digits", "--out", str(out), "--labels-per-class", "5"]).exit_code == 0
    return out


def run(cli, *args):
    result = cli(pttrain, list(args))
    assert result.exit_code == 0, result.output + result.stderr
    return result


def metrics(run_dir):
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def test_pp_finetune_eval(cli, shards, digits, tmp_path):
    pp_dir, ft_dir = tmp_path / "pp", tmp_path / "ft"
    run(cli, "pp", "--shards", shards, "--out", pp_dir, "--epochs", 3, "--batch-size", 16, *FAST)
    config = json.loads((pp_dir / "config.json").read_text())
    assert config["num_classes"] == 5 and config["source_ids"] == [0, 1, 2, 3, 4]
    # 8 px shards train at the default size policy's 32 px.
    assert config["image_size"] == 32 and config["in_chans"] == 1
    steps = [r["step"] for r in metrics(pp_dir) if "loss" in r]
    assert steps[-1] == 3 * (120 // 16)
    assert (pp_dir / "curve.png").exists() and (pp_dir / "model.safetensors").exists()

    # The pp run scores itself on its own labeled shards.
    result = run(cli, "eval", "--run", pp_dir, "--data", shards, "--json", tmp_path / "pp.json")
    assert json.loads((tmp_path / "pp.json").read_text())["n"] == 120

    result = run(cli, "finetune", "--data", digits, "--init", pp_dir, "--out", ft_dir, "--epochs", 2, "--min-steps", 0,
                 "--quiet")
    ft = json.loads((ft_dir / "config.json").read_text())
    assert ft["class_names"] == [str(d) for d in range(10)] and ft["arch"] == "test_resnet"
    assert ft["image_size"] == 32  # the backbone's; the 16 px digits are resized to it
    # digits have no val/ part: no curve during training (the start line says how to get one), and
    # test/ is scored once, at the end.
    assert "no validation curve" in result.stderr and "--val-split 0.1" in result.stderr
    assert not any("val_top1" in r for r in metrics(ft_dir))
    record = json.loads((ft_dir / "train.json").read_text())
    assert record["test_n"] == 899 and 0 <= record["test_top1"] <= 1

    result = run(cli, "eval", "--run", ft_dir, "--data", digits, "--json", tmp_path / "ft.json")
    last = result.output.strip().splitlines()[-1]
    assert last.startswith("top1=") and last.endswith("n=899")
    scores = json.loads((tmp_path / "ft.json").read_text())
    assert set(scores) == {"top1", "top5", "n"} and scores["n"] == 899
    assert (ft_dir / "confusion.png").exists()


def test_finetune_on_labeled_shards_keeps_their_source_ids(cli, tiny_model, shards, tmp_path):
    """Target data may come as shards: here 3 of the source classes, fine-tuned from a pp run."""
    target = tmp_path / "target"
    args = ["synth", "--model", tiny_model, "--out", target, "--class-ids", "1,3,4", "--per-class", 8, "--quiet"]
    assert CliRunner().invoke(ptgen, [str(a) for a in args]).exit_code == 0
    pp_dir, ft_dir = tmp_path / "pp", tmp_path / "ft"
    run(cli, "pp", "--shards", shards, "--out", pp_dir, "--epochs", 1, "--batch-size", 16, "--img-size", 12, *FAST)
    run(cli, "finetune", "--data", target, "--init", pp_dir, "--out", ft_dir, "--epochs", 2, "--batch-size", 8,
        "--min-steps", 0, "--quiet")
    config = json.loads((ft_dir / "config.json").read_text())
    assert config["num_classes"] == 3 and config["source_ids"] == [1, 3, 4]
    assert config["image_size"] == 12  # an explicit --img-size holds, and the fine-tune keeps its run's
    assert [r["step"] for r in metrics(ft_dir) if "loss" in r][-1] == 2 * (24 // 8)
    result = run(cli, "eval", "--run", ft_dir, "--data", target)
    assert result.output.strip().splitlines()[-1].endswith("n=24")


def test_training_stage_runs_where_diffusers_is_missing(shards, digits, tmp_path):
    """pp, finetune and eval in a process where importing diffusers (or the generation stage) fails."""
    block = ("import sys; sys.modules['diffusers'] = None; sys.modules['generate'] = None; "
             "from train.cli import main; main(sys.argv[1:])")
    pp_dir = tmp_path / "pp"
    for args in (["pp", "--shards", shards, "--out", pp_dir, "--epochs", 1, "--batch-size", 32, *FAST],
                 ["finetune", "--data", digits, "--init", pp_dir, "--out", tmp_path / "ft", "--epochs", 1, "--min-steps", 0, "--quiet"],
                 ["eval", "--run", pp_dir, "--data", shards]):
        result = run_module("-c", block, *map(str, args))
        assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip().splitlines()[-1].endswith("n=120")


def test_scratch_baseline_learns(cli, digits, tmp_path):
    out = tmp_path / "scratch"
    run(cli, "finetune", "--data", digits, "--init", "none", "--out", out, "--epochs", 8, "--lr", 3e-3, *FAST)
    losses = [r["loss"] for r in metrics(out) if "loss" in r]
    assert losses[-1] < losses[0]


def test_min_steps_raises_the_epochs_of_a_small_target(cli, digits, tmp_path):
    """40 labeled digits (10 of the 50 held out for validation) in batches of 32 are 2 steps an epoch:
    --epochs 2 becomes 4 epochs to reach --min-steps 7 (raised to whole epochs), while --min-steps 0
    keeps the epochs as given."""
    args = ["finetune", "--data", digits, "--init", "none", "--batch-size", 32, "--epochs", 2, "--val-split", 0.2,
            "--arch", "test_resnet", "--quiet"]
    for floor, steps, epochs in ((7, 8, 4), (0, 4, 2)):
        out = tmp_path / f"floor-{floor}"
        run(cli, *args, "--min-steps", floor, "--out", out)
        record = json.loads((out / "train.json").read_text())
        assert (record["steps"], record["epochs_run"]) == (steps, epochs)
        assert max(r["step"] for r in metrics(out)) == steps
        assert [r["epoch"] for r in metrics(out) if "val_top1" in r] == list(range(epochs))


def test_a_run_stopped_before_its_first_checkpoint_starts_again_with_resume(cli, digits, tmp_path):
    out = tmp_path / "early"
    out.mkdir()
    (out / "metrics.jsonl").write_text('{"step": 20, "loss": 9.0}\n')
    args = ["finetune", "--data", digits, "--init", "none", "--out", out, "--epochs", 1, *FAST]
    refused = cli(pttrain, args)
    assert refused.exit_code != 0 and "pass --resume to start that run again" in refused.stderr
    result = run(cli, *args, "--resume")
    assert "stopped before its first checkpoint; starting it again" in result.stderr
    assert metrics(out)[0]["loss"] != 9.0 and (out / "model.safetensors").exists()
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("mine")
    other = ["finetune", "--data", digits, "--init", "none", "--out", tmp_path / "other", "--epochs", 1, *FAST]
    refused = cli(pttrain, [*other, "--resume"])
    assert refused.exit_code != 0 and "holds no checkpoint.pt to resume from" in refused.stderr


def test_finished_run_is_never_overwritten(cli, digits, tmp_path):
    out = tmp_path / "once"
    run(cli, "finetune", "--data", digits, "--init", "none", "--out", out, "--epochs", 1, *FAST)
    again = cli(pttrain, ["finetune", "--data", str(digits), "--init", "none", "--out", str(out), "--epochs", "1", *FAST])
    assert again.exit_code != 0 and "holds a finished run" in again.stderr


def test_resume_after_sigkill_reaches_the_same_end(cli, shards, tmp_path):
    def pp_args(out):
        return ["-m", "train", "pp", "--shards", str(shards), "--out", str(out), "--epochs", "20",
                "--batch-size", "16", "--checkpoint-every", "5", "--seed", "3", *FAST]

    out = tmp_path / "killed"
    proc = subprocess.Popen([sys.executable, *pp_args(out)], cwd=ROOT, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline and proc.poll() is None:
        if (out / "checkpoint.pt").exists() and (out / "metrics.jsonl").exists() and len(metrics(out)) >= 2:
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (out / "model.safetensors").exists(), "the kill came too late"
    resumed = run_module(*pp_args(out), "--resume", timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert max(r["step"] for r in metrics(out)) == 20 * (120 // 16)

    straight = tmp_path / "straight"
    assert run_module(*pp_args(straight), timeout=300).returncode == 0
    top1 = {}
    for name in ("killed", "straight"):
        run(cli, "eval", "--run", tmp_path / name, "--data", shards, "--json", tmp_path / f"{name}.json")
        top1[name] = json.loads((tmp_path / f"{name}.json").read_text())["top1"]
    assert abs(top1["killed"] - top1["straight"]) <= 0.15, top1


def test_torchrun_two_ranks_with_uneven_shards(shards, tmp_path):
    out = tmp_path / "ddp"
    proc = run_module("-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29533",
                      "-m", "train", "pp", "--shards", str(shards), "--out", str(out), "--epochs", "2",
                      "--batch-size", "8", *FAST, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    # 120 images / (8 x 2 ranks) = 7 steps an epoch on every rank, although 7 shards split 4 + 3.
    assert max(r["step"] for r in metrics(out)) == 14
    assert (out / "model.safetensors").exists()


def test_more_ranks_than_gpus_is_a_clear_error(monkeypatch):
    from ptcommon.cli import InputError
    from train.distributed import setup

    monkeypatch.setattr("torch.cuda.is_available", lambda: True)
    monkeypatch.setattr("torch.cuda.device_count", lambda: 1)
    for name, value in (("RANK", "0"), ("WORLD_SIZE", "2"), ("LOCAL_WORLD_SIZE", "2"), ("LOCAL_RANK", "0")):
        monkeypatch.setenv(name, value)  # rank 0 stops too, before it writes anything
    with pytest.raises(InputError, match=r"torchrun started 2 processes on this node, which has 1 visible GPU.*"
                       r"--nproc_per_node 1"):
        setup("auto")


@pytest.mark.parametrize(
    "args, expected",
    [
        (["pp", "--shards", "{tmp}", "--arch", "resnet19"], "--arch resnet19: not a timm architecture; closest:"),
        (["pp", "--shards", "{tmp}"], "no dataset.json"),
        (["finetune", "--data", "{tmp}", "--init", "none"], "no train/ folder"),
        (["finetune", "--data", "{digits}", "--init", "{tmp}"], "not a finished run folder"),
        (["eval", "--run", "{tmp}/nope", "--data", "{digits}"], "no such folder"),
        (["finetune", "--data", "{digits}", "--init", "none", "--arch", "dla34", "--img-size", "16"],
         "cannot take 16 px input"),
        (["finetune", "--data", "{digits}", "--init", "builtin:glyphs-1k", "--img-size", "32"],
         "--img-size 32: --init builtin:glyphs-1k was trained at 16 px"),
    ],
)
def test_bad_input(cli, digits, tmp_path, args, expected):
    args = [a.format(tmp=tmp_path, digits=digits) for a in args]
    before = sorted(tmp_path.rglob("*"))
    result = cli(pttrain, args)
    assert result.exit_code != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and expected in lines[0], result.stderr
    assert "Traceback" not in result.output
    assert sorted(tmp_path.rglob("*")) == before
