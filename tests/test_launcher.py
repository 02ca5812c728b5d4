"""ptcommon.launcher: torchrun's and SLURM's variables, SLURM's host lists, and the rendezvous an srun
step derives when torchrun did not set one."""

import pytest

from ptcommon.cli import InputError
from ptcommon.launcher import Launch, detect, expand_nodelist, expand_tasks_per_node, rendezvous

LAUNCH_VARIABLES = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")


@pytest.fixture()
def env(monkeypatch):
    """A clean environment: no launcher variables at all; returns monkeypatch.setenv for several at once."""
    import os

    for name in list(os.environ):
        if name.startswith("SLURM_") or name in LAUNCH_VARIABLES:
            monkeypatch.delenv(name)

    def set_all(**values):
        for name, value in values.items():
            monkeypatch.setenv(name, str(value))

    return set_all


@pytest.mark.parametrize("nodelist, hosts", [
    ("gpu[01-03,07],login1", ["gpu01", "gpu02", "gpu03", "gpu07", "login1"]),
    ("node7", ["node7"]),
    ("a[1-2]-ib[0-1]", ["a1-ib0", "a1-ib1", "a2-ib0", "a2-ib1"]),
    ("n[008-010],m[9]", ["n008", "n009", "n010", "m9"]),
])
def test_slurm_host_lists_expand(nodelist, hosts):
    assert expand_nodelist(nodelist) == hosts


def test_a_host_list_it_cannot_read_is_one_line():
    with pytest.raises(InputError, match=r"cannot read the range 'x-3'"):
        expand_nodelist("gpu[x-3]")


def test_tasks_per_node_expand():
    assert expand_tasks_per_node("2(x3),1") == [2, 2, 2, 1]
    assert expand_tasks_per_node("8") == [8]


def test_a_plain_process_and_a_batch_shell_are_one_process(env):
    assert detect().launcher == "none" and detect().world == 1
    env(SLURM_PROCID=0, SLURM_NTASKS=8, SLURM_LOCALID=0, SLURM_STEP_ID=0xFFFFFFFE)
    assert (detect().launcher, detect().world) == ("none", 1)


def test_an_srun_step_is_one_ddp_run_with_a_derived_rendezvous(env):
    env(SLURM_STEP_ID=0, SLURM_PROCID=9, SLURM_LOCALID=1, SLURM_NODEID=1, SLURM_STEP_NUM_TASKS=16,
        SLURM_STEP_TASKS_PER_NODE="8(x2)", SLURM_STEP_NODELIST="gpu[07-08]", SLURM_JOB_ID=123456)
    launch = detect()
    assert (launch.rank, launch.world, launch.local_rank, launch.local_world, launch.launcher) == (9, 16, 1, 8, "slurm")
    addr, port = rendezvous()
    assert addr == "gpu07" and 1024 < int(port) < 32768
    env(SLURM_JOB_ID=123457)
    assert rendezvous()[1] != port  # another job, another port
    env(MASTER_ADDR="head", MASTER_PORT=29500)
    assert rendezvous() == ("head", "29500")  # torchrun's (or the user's) win


def test_torchrun_wins_over_slurm(env):
    env(SLURM_STEP_ID=0, SLURM_PROCID=3, SLURM_STEP_NUM_TASKS=4, RANK=1, WORLD_SIZE=2, LOCAL_RANK=1,
        LOCAL_WORLD_SIZE=2)
    launch = detect()
    assert (launch.rank, launch.world, launch.local_rank, launch.launcher) == (1, 2, 1, "torchrun")


@pytest.mark.parametrize("values, expected", [
    ({"SLURM_PROCID": 4, "SLURM_STEP_NUM_TASKS": 4}, "SLURM_PROCID 4 is not below the step's 4 tasks"),
    ({"SLURM_STEP_NUM_TASKS": 5}, "adds up to 4 tasks, not 5"),
    ({"SLURM_STEP_NODELIST": "gpu[1-3]"}, "names 3 nodes, SLURM_STEP_TASKS_PER_NODE '2(x2)' 2"),
    ({"SLURM_LOCALID": 2}, "SLURM_LOCALID 2 is not below the 2 tasks of node 1"),
])
def test_slurm_variables_that_disagree_are_one_line(env, values, expected):
    env(SLURM_STEP_ID=0, SLURM_PROCID=3, SLURM_LOCALID=1, SLURM_NODEID=1, SLURM_STEP_NUM_TASKS=4,
        SLURM_STEP_TASKS_PER_NODE="2(x2)", SLURM_STEP_NODELIST="gpu[1-2]")
    detect()  # consistent as set up
    env(**values)
    with pytest.raises(InputError, match="SLURM's variables disagree") as err:
        detect()
    assert expected in str(err.value) and "\n" not in str(err.value)


def test_each_process_takes_its_own_gpu(env):
    assert Launch(5, 16, 5, 8, "torchrun").gpu_index(8) == 5
    assert Launch(5, 16, 5, 8, "torchrun").gpu_index(4) is None  # two processes would share a GPU
    assert Launch(5, 16, 5, 8, "slurm").gpu_index(1) == 0  # srun bound one GPU to each task
    assert Launch(5, 16, 5, 8, "slurm").gpu_index(8) == 5
