"""One-line errors for both CLIs.

Users see `ptgen: error: --per-class 0: ...` and a non-zero exit, never a traceback or a usage
dump, for anything that is their input's fault; a Ctrl-C ends a command with `interrupted` and exit 130.
"""

from __future__ import annotations

import dataclasses
import functools
import re
import signal
import sys
import threading
from typing import Callable

import click


class InputError(click.ClickException):
    """Bad input: the message names the flag or file, the value, and what would be right."""

    exit_code = 2


def one_line(message: str) -> str:
    """A refusal raised in a DataLoader worker reaches the main process as the worker's formatted
    traceback; the user is owed only its last line, the refusal itself, without the class name."""
    if "Original Traceback" not in message:
        return message
    last = message.strip().splitlines()[-1]
    return re.sub(r"^[\w.]+(Error|Exception): ", "", last)


def _stop_at_first_interrupt() -> Callable[[bool], None]:
    """While a command runs, its first SIGINT raises KeyboardInterrupt and later ones are ignored;
    returns `restore(exiting)`, which puts Python's handling back unless the command was interrupted
    and the process is EXITING.

    A Ctrl-C reaches a launched rank twice: from the terminal, to the whole process group, and again
    from torchrun or srun, which forward it. The second would land while the first is handled, in the
    code that stops what the command started (the shard writer's thread, DataLoader workers, the
    process group, some of it at interpreter exit), and cut it short: a thread still running torch
    code when the interpreter finalizes aborts the process ("terminate called without an active
    exception"). SIGTERM and SIGKILL still end a stop that hangs.

    Where Python runs code that can only report an exception (a fork hook, __del__, a weakref or GC
    callback), a KeyboardInterrupt raised there is printed and dropped, and the command would run on
    with every later Ctrl-C ignored: a Ctrl-C that arrives while a DataLoader forks its workers is
    handled in the fork hooks. A dropped one is raised again, in the code that runs next."""
    if (threading.current_thread() is not threading.main_thread()
            or signal.getsignal(signal.SIGINT) is not signal.default_int_handler):
        return lambda exiting: None  # SIGINT ignored (a background job) or handled by the caller: left alone
    raised = False
    report = sys.unraisablehook

    def on_sigint(signum, frame):
        nonlocal raised
        if not raised:
            raised = True
            raise KeyboardInterrupt

    def on_unraisable(unraisable):
        nonlocal raised
        if raised and isinstance(unraisable.exc_value, KeyboardInterrupt):
            raised = False
            # A moment later and from another thread, so that it lands after the hook, not in this one; to
            # the main thread, whose blocking call it ends as the first one did.
            again = threading.Timer(0.05, signal.pthread_kill, (threading.main_thread().ident, signal.SIGINT))
            again.daemon = True
            again.start()
        else:
            report(unraisable)

    signal.signal(signal.SIGINT, on_sigint)
    sys.unraisablehook = on_unraisable

    def restore(exiting: bool) -> None:
        if raised and exiting:
            return
        signal.signal(signal.SIGINT, signal.default_int_handler)
        sys.unraisablehook = report

    return restore


class Group(click.Group):
    """A click group whose errors print as one line, and which a Ctrl-C stops with exit 130."""

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):  # type: ignore[override]
        name = prog_name or self.name or "error"
        restore = _stop_at_first_interrupt()
        try:
            return self._main(name, args, prog_name, complete_var, standalone_mode, **extra)
        finally:
            restore(exiting=standalone_mode)

    def _main(self, name, args, prog_name, complete_var, standalone_mode, **extra):
        try:
            result = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except click.exceptions.NoArgsIsHelpError as err:
            click.echo(err.ctx.get_help() if err.ctx else str(err))
            code = 0
        except click.ClickException as err:
            click.echo(f"{name}: error: {one_line(err.format_message())}", err=True)
            code = err.exit_code
        except click.Abort:
            click.echo(f"{name}: interrupted", err=True)
            code = 130
        else:
            if not standalone_mode:
                return result
            code = result if isinstance(result, int) else 0
        if not standalone_mode:
            return code
        sys.exit(code)


def packed(cls: type, name: str, options: list[Callable]) -> Callable:
    """A decorator that adds OPTIONS to a click command and hands the command their values as one
    CLS (a dataclass), in its argument NAME: each option's value fills the field of its name (fields
    without an option keep their defaults), so a command's signature stays short and a new option
    is a field and a line."""
    def probe() -> None: ...

    for option in options:
        probe = option(probe)
    names = [param.name for param in probe.__click_params__]
    fields = {f.name for f in dataclasses.fields(cls)}
    assert set(names) <= fields, f"{cls.__name__} lacks fields for {sorted(set(names) - fields)}"

    def decorate(command: Callable) -> Callable:
        @functools.wraps(command)
        def wrapper(**kw):
            return command(**{name: cls(**{n: kw.pop(n) for n in names})}, **kw)

        for option in reversed(options):
            wrapper = option(wrapper)
        return wrapper

    return decorate
