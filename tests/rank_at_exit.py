"""`python tests/rank_at_exit.py MODULE ARGS...` runs `python -m MODULE ARGS...` (train or generate) and,
last thing before the interpreter finalizes, prints to stderr the threads still alive then: the native
ones by name (gloo's and the TCP store's have theirs) and the Python ones other than the main thread.
A thread still running at that point is what can abort a process at exit; tests/test_interrupt.py
reads the line."""

import atexit
import os
import runpy
import signal
import sys
import threading

MARK = "threads at exit:"


def _native_threads() -> list[str]:
    names = []
    for task in os.listdir("/proc/self/task"):
        try:
            with open(f"/proc/self/task/{task}/comm") as f:
                names.append(f.read().strip())
        except OSError:  # ended meanwhile
            pass
    return sorted(names)


def _report() -> None:
    python = sorted(t.name for t in threading.enumerate() if t is not threading.main_thread())
    print(f"{MARK} native {','.join(_native_threads())} python {','.join(python) or '-'}", file=sys.stderr,
          flush=True)


if __name__ == "__main__":
    # Ctrl-C reaches this as it reaches a job in a terminal's foreground, also where the tests run as a
    # background job, whose processes start with SIGINT ignored.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    # Registered before the command runs, so it runs after whatever the command registers (atexit is LIFO).
    atexit.register(_report)
    module = sys.argv.pop(1)
    runpy.run_module(module, run_name="__main__", alter_sys=True)
