"""Who launched this process, and as which of how many: torchrun's variables, else an srun step's,
else a single process. Both stages read it here: generation to split its shard plan, training to
join one DDP process group.

Inside an srun step the rendezvous torchrun would have given comes from SLURM: the step's first
node is the master and the port follows from the job id, so every task of the step agrees on it
without talking to the others.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from itertools import product

from .cli import InputError

# Slurm numbers its batch, extern and interactive steps from 0xFFFFFFF0 up: a batch script's own
# shell is not an srun task even though it sees SLURM_PROCID 0 and the job's SLURM_NTASKS.
_FIRST_SPECIAL_STEP = 0xFFFFFFF0
# The port range the master port is drawn from: above the well-known ports and below Linux's
# ephemeral ones (32768+), so a busy node's outgoing connections do not take it.
PORT_BASE, _PORT_SPAN = 12000, 20000


@dataclass(frozen=True)
class Launch:
    rank: int
    world: int
    local_rank: int  # its index among the processes on its node
    local_world: int  # processes on this node
    launcher: str  # "torchrun", "slurm" or "none"

    def gpu_index(self, visible: int) -> int | None:
        """The GPU this process takes among the VISIBLE ones: its local rank; device 0 when srun bound
        one GPU to each task (--gpus-per-task 1, --gpu-bind), so that each task sees only its own.
        None when the node runs more processes than it shows GPUs."""
        if self.launcher == "slurm" and visible == 1:
            return 0
        return self.local_rank if self.local_world <= visible else None

    @property
    def cores(self) -> int:
        """The cores this process may keep busy (itself and its data workers): an srun task's
        --cpus-per-task (no more than it may run on), else the cores it may run on shared among the
        processes on its node."""
        usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
        if self.launcher == "slurm" and os.environ.get("SLURM_CPUS_PER_TASK", "").isdecimal():
            return max(1, min(int(os.environ["SLURM_CPUS_PER_TASK"]), usable))
        return max(1, usable // self.local_world)


def expand_nodelist(nodelist: str) -> list[str]:
    """SLURM's compressed host list as host names: `gpu[01-03,07],login1` is gpu01, gpu02, gpu03,
    gpu07, login1 (zero padding kept; several bracket groups in one name multiply out)."""
    hosts: list[str] = []
    for name in re.findall(r"(?:[^,\[]|\[[^\]]*\])+", nodelist):
        parts = re.split(r"\[([^\]]*)\]", name)  # text, ranges, text, ranges, ..., text
        choices = [[p] if i % 2 == 0 else _expand_ranges(p, nodelist) for i, p in enumerate(parts)]
        hosts += ["".join(c) for c in product(*choices)]
    return hosts


def _expand_ranges(ranges: str, nodelist: str) -> list[str]:
    out = []
    for piece in ranges.split(","):
        low, _, high = piece.partition("-")
        if not low.isdecimal() or (high and not high.isdecimal()):
            raise InputError(f"SLURM_STEP_NODELIST {nodelist!r}: cannot read the range {piece!r}")
        out += [str(i).zfill(len(low)) for i in range(int(low), int(high or low) + 1)]
    return out


def expand_tasks_per_node(spec: str) -> list[int]:
    """SLURM's tasks-per-node list, `2(x3),1` = [2, 2, 2, 1]."""
    counts = []
    for piece in spec.split(","):
        match = re.fullmatch(r"(\d+)(?:\(x(\d+)\))?", piece.strip())
        if not match:
            raise InputError(f"SLURM_STEP_TASKS_PER_NODE {spec!r}: cannot read {piece!r}")
        counts += [int(match[1])] * int(match[2] or 1)
    return counts


def _in_srun_step() -> bool:
    step = os.environ.get("SLURM_STEP_ID", os.environ.get("SLURM_STEPID", ""))
    return step.isdecimal() and int(step) < _FIRST_SPECIAL_STEP and "SLURM_PROCID" in os.environ


def _slurm(name: str, *fallbacks: str) -> str | None:
    """A step variable, else the job-wide one (a Slurm without per-step variables)."""
    return next((os.environ[n] for n in (name, *fallbacks) if n in os.environ), None)


def _from_slurm() -> Launch:
    rank = int(os.environ["SLURM_PROCID"])
    world = int(_slurm("SLURM_STEP_NUM_TASKS", "SLURM_NTASKS") or 1)
    local = int(os.environ.get("SLURM_LOCALID", 0))
    per_node_spec = _slurm("SLURM_STEP_TASKS_PER_NODE", "SLURM_TASKS_PER_NODE")
    per_node = expand_tasks_per_node(per_node_spec) if per_node_spec else [world]
    node = int(_slurm("SLURM_NODEID") or 0)
    nodelist = _slurm("SLURM_STEP_NODELIST", "SLURM_JOB_NODELIST", "SLURM_NODELIST")
    problems = []
    if not 0 <= rank < world:
        problems.append(f"SLURM_PROCID {rank} is not below the step's {world} tasks")
    if per_node_spec and sum(per_node) != world:
        problems.append(f"SLURM_STEP_TASKS_PER_NODE {per_node_spec!r} adds up to {sum(per_node)} tasks, not {world}")
    if nodelist and per_node_spec and len(expand_nodelist(nodelist)) != len(per_node):
        problems.append(f"the node list {nodelist!r} names {len(expand_nodelist(nodelist))} nodes, "
                        f"SLURM_STEP_TASKS_PER_NODE {per_node_spec!r} {len(per_node)}")
    if not 0 <= node < len(per_node):
        problems.append(f"SLURM_NODEID {node} is not among the step's {len(per_node)} nodes")
    elif not 0 <= local < per_node[node]:
        problems.append(f"SLURM_LOCALID {local} is not below the {per_node[node]} tasks of node {node}")
    if problems:
        raise InputError(f"SLURM's variables disagree: {problems[0]}; launch with srun inside the allocation "
                         "(or unset the SLURM_* variables to run one process)")
    return Launch(rank, world, local, per_node[node] if per_node_spec else world, "slurm")


def detect() -> Launch:
    """torchrun's RANK / WORLD_SIZE / LOCAL_RANK / LOCAL_WORLD_SIZE, else an srun step's SLURM_*;
    a batch script run without srun, or a plain command, is one process."""
    if "RANK" in os.environ:
        world = int(os.environ.get("WORLD_SIZE", 1))
        return Launch(int(os.environ["RANK"]), world, int(os.environ.get("LOCAL_RANK", 0)),
                      int(os.environ.get("LOCAL_WORLD_SIZE", world)), "torchrun")
    if _in_srun_step():
        return _from_slurm()
    return Launch(0, 1, 0, 1, "none")


def rendezvous() -> tuple[str, str]:
    """MASTER_ADDR and MASTER_PORT: torchrun's (or the user's) when set, else for an srun step the
    step's first node and a port drawn from the job id (the same for every task of the job)."""
    addr, port = os.environ.get("MASTER_ADDR"), os.environ.get("MASTER_PORT")
    if addr is None:
        nodelist = _slurm("SLURM_STEP_NODELIST", "SLURM_JOB_NODELIST", "SLURM_NODELIST")
        if not nodelist:
            raise InputError("no MASTER_ADDR and no SLURM node list: launch with torchrun or srun, or set "
                             "MASTER_ADDR and MASTER_PORT")
        addr = expand_nodelist(nodelist)[0]
    if port is None:
        job = _slurm("SLURM_JOB_ID", "SLURM_JOBID") or "0"
        port = str(PORT_BASE + int(job) % _PORT_SPAN)
    return addr, port
