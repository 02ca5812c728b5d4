"""Where the commands write: checked before any work, written so that a failure shows nothing half-done.

Both stages write folders (shards, run folders, exports) and single files (a contact sheet,
an evaluation's JSON and plot). A bad location must cost the user one line before anything
runs, and a full disk one line that says how much more space the job needs, never a
traceback and never a file that looks finished but is not.
"""

from __future__ import annotations

import errno
import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator

from .cli import InputError

_FULL = (errno.ENOSPC, errno.EDQUOT)


def _nearest_existing(path: Path) -> Path:
    probe = path.absolute()
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    return probe


def _check_location(folder: Path, where: str) -> None:
    """Permission bits do not tell whether a folder takes writes (root passes them; a read-only
    mount or /proc refuses whatever they say), so the nearest existing folder is probed by
    creating and removing a hidden folder in it."""
    probe = _nearest_existing(folder)
    if not probe.is_dir():
        raise InputError(f"{where}: cannot be created: {probe} is a file, not a folder")
    try:
        os.rmdir(tempfile.mkdtemp(prefix=".ptgen-probe-", dir=probe))
    except OSError as err:
        raise InputError(f"{where}: cannot write in {probe} ({err.strerror or err})") from None


def check_output_dir(path: Path, flag: str) -> None:
    """Refuse a folder that cannot be created or written, before anything is written."""
    if path.exists() and not path.is_dir():
        raise InputError(f"{flag} {path}: is a file, not a folder")
    _check_location(path, f"{flag} {path}")


def check_output_file(path: Path, flag: str) -> None:
    """Refuse a file path that names a folder, or whose folder cannot be created or written."""
    if path.is_dir():
        raise InputError(f"{flag} {path}: is a folder; give a file name")
    _check_location(path.parent, f"{flag} {path}")


def human_bytes(n: float) -> str:
    for unit in ("B", "kB", "MB", "GB", "TB", "PB"):
        if abs(n) < 1000 or unit == "PB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    raise AssertionError("unreachable")


def human_seconds(seconds: float) -> str:
    for unit, size in (("years", 365 * 86400), ("days", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{seconds / size:.1f} {unit}"
    return f"{seconds:.0f} s"


def free_bytes(path: Path) -> int:
    """Free space where `path` is or would be created."""
    return shutil.disk_usage(_nearest_existing(path)).free


def is_disk_full(err: BaseException) -> bool:
    return isinstance(err, OSError) and err.errno in _FULL


def disk_full_error(flag: str, folder: Path, what: str, needed: float) -> InputError:
    """The one line a full disk costs: where, what failed, and how much more space the job needs."""
    return InputError(f"{flag} {folder}: no space left on the device while writing {what} "
                      f"({human_bytes(free_bytes(folder))} free; the rest of the job needs about {human_bytes(needed)} more); "
                      "free some space and rerun the same command to continue where it stopped")


def write_atomically(path: Path, write: Callable[[Path], None], flag: str, size: Callable[[], float]) -> None:
    """`write(tmp)`, then rename into place; a full disk becomes one line naming the folder and
    `size()`, the bytes the file needs, and leaves neither the file nor its temporary behind."""
    try:
        with atomic_path(path) as tmp:
            write(tmp)
    except OSError as err:
        if not is_disk_full(err):
            raise
        raise disk_full_error(flag, path.parent, path.name, size()) from None


def tensor_bytes(obj) -> int:
    """Bytes of every tensor in a nested state (dicts, lists, tensors): what a checkpoint of it needs."""
    if hasattr(obj, "nbytes") and hasattr(obj, "dtype"):
        return int(obj.nbytes)
    if isinstance(obj, dict):
        return sum(tensor_bytes(v) for v in obj.values())
    if isinstance(obj, (list, tuple)):
        return sum(tensor_bytes(v) for v in obj)
    return 0


@contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """A temporary name beside `path` to write to; renamed into place only if the block succeeds,
    removed otherwise, so a reader (or a rerun) never sees a half-written file."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
