"""Run folders: where a training command writes, and the rules that keep finished runs safe."""

from __future__ import annotations

import datetime
import fcntl
import json
import os
import socket
import sys
import time
from pathlib import Path

from ptcommon.cli import InputError

from ptcommon.runfolder import WEIGHTS_FILE

CHECKPOINT_FILE = "checkpoint.pt"
METRICS_FILE = "metrics.jsonl"
TENSORBOARD_DIR = "tensorboard"  # --tensorboard's event files, beside the metrics
LOCK_FILE = "run.lock"
RUNS_DIR = Path("runs")


class RunLock:
    """The run folder's lock: an flock on `run.lock`, which names its holder (pid, host, start).

    The kernel drops an flock when the last descriptor of it closes, so a lock left by a killed
    job never blocks its resume: the file may stay behind, but nobody holds it. A forked child (a
    DataLoader worker) would share the descriptor and hold the lock for the seconds it outlives a
    killed parent, so children close their copy at fork. No one ever decides that a lock is stale
    from its contents (a pid on another node cannot be checked)."""

    def __init__(self, folder: Path):
        self.path = folder / LOCK_FILE
        self.fd: int | None = None

    def acquire(self) -> None:
        """Take the lock, or refuse in one line naming who holds it. On a file system without locks
        (some NFS mounts) the run goes on unlocked, and says so."""
        while True:
            created = not self.path.exists()
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                raise InputError(f"--out {self.path.parent}: is in use by another job ({self._holder()}); wait for "
                                 f"it to end, or choose another folder") from None
            except OSError as err:  # ENOLCK, EOPNOTSUPP: no locks here, which is no reason to refuse the run
                os.close(fd)
                if created:
                    self.path.unlink(missing_ok=True)
                print(f"warning: --out {self.path.parent}: this file system takes no locks ({err.strerror}); nothing "
                      "stops a second job from writing this run folder", file=sys.stderr, flush=True)
                return
            # The holder we waited on may have unlinked the file between our open and flock: a lock
            # on a name no longer in the folder locks nothing, so start again.
            if self.path.exists() and os.path.samestat(os.fstat(fd), os.stat(self.path)):
                break
            os.close(fd)
        self.fd = fd
        os.register_at_fork(after_in_child=self._forget)
        record = json.dumps({"pid": os.getpid(), "host": socket.gethostname(),
                             "since": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")})
        os.ftruncate(fd, 0)
        os.pwrite(fd, record.encode() + b"\n", 0)

    def _forget(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None

    def _holder(self) -> str:
        try:
            holder = json.loads(self.path.read_text())
            return f"pid {holder['pid']} on {holder['host']}, since {holder['since']}"
        except (OSError, ValueError, KeyError):
            return "its holder is starting"

    def release(self) -> None:
        """Unlink while still holding it, so no one takes a lock on a file about to go."""
        if self.fd is None:
            return
        self.path.unlink(missing_ok=True)
        os.close(self.fd)
        self.fd = None


def default_run_dir(command: str) -> Path:
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%d-%H%M%S")
    return RUNS_DIR / f"{command}-{stamp}"


def prepare_run_dir(out: Path | None, command: str, resume: bool) -> tuple[Path, bool]:
    """The folder a run writes: a new one by default; an existing one only to resume it. Also
    whether there is a checkpoint to resume from: --resume on a run stopped before its first
    checkpoint (its log alone in the folder) starts that run again from step 0.

    A finished run (it has model.safetensors) is never overwritten.
    """
    folder = out if out is not None else default_run_dir(command)
    if (folder / WEIGHTS_FILE).exists():
        raise InputError(f"--out {folder}: holds a finished run; choose a new folder (runs are never overwritten)")
    has_checkpoint = (folder / CHECKPOINT_FILE).exists()
    found = {p.name for p in folder.iterdir()} - {LOCK_FILE} if folder.is_dir() else set()
    log_only = found - {TENSORBOARD_DIR} == {METRICS_FILE}
    if resume and not has_checkpoint and not log_only:
        raise InputError(f"--resume: {folder} holds no {CHECKPOINT_FILE} to resume from")
    if not resume and has_checkpoint:
        raise InputError(f"--out {folder}: holds an unfinished run; pass --resume to continue it, or choose a new folder")
    if not resume and found:
        hint = (": it holds only the log of a run stopped before its first checkpoint; pass --resume to start that "
                "run again there, or choose a new folder") if log_only else "; choose a new folder"
        raise InputError(f"--out {folder}: is not empty{hint}")
    return folder, resume and has_checkpoint


def claim_run_dir(out: Path | None, command: str, resume: bool) -> tuple[Path, bool, RunLock]:
    """`prepare_run_dir`, under the folder's lock: a second job on a folder in use is refused before it
    looks at what the folder holds, and a refusal leaves no folder and no lock file behind."""
    folder = out if out is not None else default_run_dir(command)
    lock, existed = RunLock(folder), folder.is_dir()
    if existed:
        lock.acquire()
    try:
        folder, resume = prepare_run_dir(folder, command, resume)
    except InputError:
        lock.release()
        raise
    if not existed:
        folder.mkdir(parents=True, exist_ok=True)
        lock.acquire()
    return folder, resume, lock


def wait_for_folder(folder: Path, timeout: float = 120.0) -> None:
    """On ranks other than 0: the run folder rank 0 created, once this node sees it (a shared file
    system may show it to other nodes a little later)."""
    deadline = time.monotonic() + timeout
    while not folder.is_dir():
        if time.monotonic() > deadline:
            raise InputError(f"--out {folder}: rank 0 created it, but this node does not see it after {timeout:.0f} s; "
                             "--out must be on a file system every node shares")
        time.sleep(0.5)
