"""Shards are a pure function of (config, shard index): splits over ranks, torchrun and SIGKILL +
rerun all give the bytes of one uninterrupted process."""

import pyarrow.parquet as pq
import pytest

from conftest import run_module, synth_killed_after
from generate.cli import main as ptgen

ARGS = ["--per-class", 8, "--shard-size", 6, "--batch-size", 4, "--dtype", "fp32", "--quiet"]  # 40 images, 7 shards


def synth_args(model, out, *extra):
    return ["synth", "--model", model, "--out", out, *ARGS, *extra]


def shard_bytes(folder):
    return {p.name: p.read_bytes() for p in sorted(folder.glob("synth-*.tar"))}


def assert_same_dataset(a, b):
    assert shard_bytes(a) == shard_bytes(b)
    assert len(shard_bytes(a)) == 7
    assert pq.read_table(a / "manifest.parquet").equals(pq.read_table(b / "manifest.parquet"))
    assert (a / "_info.json").read_bytes() == (b / "_info.json").read_bytes()


@pytest.fixture(scope="module")
def reference(tiny_model, tmp_path_factory):
    from click.testing import CliRunner

    out = tmp_path_factory.mktemp("ref") / "shards"
    result = CliRunner().invoke(ptgen, [str(a) for a in synth_args(tiny_model, out)])
    assert result.exit_code == 0, result.output
    return out


def test_rank_world_split_matches_one_process(cli, tiny_model, tmp_path, reference):
    out = tmp_path / "split"
    first = cli(ptgen, synth_args(tiny_model, out, "--rank", 1, "--world", 2))
    assert first.exit_code == 0 and "still missing" in first.output
    assert len(shard_bytes(out)) == 3  # shards 1, 3, 5
    assert not (out / "manifest.parquet").exists()
    second = cli(ptgen, synth_args(tiny_model, out, "--rank", 0, "--world", 2))
    assert second.exit_code == 0 and "folder complete" in second.output
    assert_same_dataset(out, reference)


def test_batch_size_does_not_change_the_images(cli, tiny_model, tmp_path, reference):
    out = tmp_path / "b7"
    assert cli(ptgen, synth_args(tiny_model, out, "--batch-size", 7)).exit_code == 0
    assert shard_bytes(out) == shard_bytes(reference)


def test_torchrun_two_processes_match_one_process(tiny_model, tmp_path, reference):
    out = tmp_path / "torchrun"
    # --standalone: a free port of torchrun's choosing, never one that another run still holds.
    proc = run_module("-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                      "-m", "generate", *map(str, synth_args(tiny_model, out)), timeout=300)
    assert proc.returncode == 0, f"{proc.stderr[:3000]}\n...\n{proc.stderr[-3000:]}"
    assert "rank 0:" in proc.stdout and "rank 1:" in proc.stdout
    assert_same_dataset(out, reference)


def test_sigkill_then_rerun_matches_uninterrupted(tiny_model, tmp_path, reference):
    out = tmp_path / "killed"
    # Many sampling steps slow the job down enough to kill it part-way.
    slow = [*map(str, synth_args(tiny_model, out)), "--steps", "4"]
    done = synth_killed_after(slow[1:], out)
    assert 2 <= done < 7, f"kill landed after {done} shards; the test needs it part-way"
    assert not (out / "manifest.parquet").exists()

    rerun = run_module("-m", "generate", *slow, timeout=300)
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    assert f"({done} already done)" in rerun.stdout
    assert not list(out.glob(".*.tmp"))
    assert_same_dataset(out, reference)


def test_bf16_shards_are_the_same_bytes_across_batch_sizes_and_ranks(cli, tiny_model, tmp_path):
    one = tmp_path / "one"
    assert cli(ptgen, synth_args(tiny_model, one, "--dtype", "bf16", "--batch-size", 1)).exit_code == 0
    split = tmp_path / "split"
    for rank in (1, 0):
        args = synth_args(tiny_model, split, "--dtype", "bf16", "--batch-size", 5, "--rank", rank, "--world", 2)
        assert cli(ptgen, args).exit_code == 0
    assert_same_dataset(one, split)
