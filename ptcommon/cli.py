"""One-line errors for both CLIs.

Users see `ptgen: error: --per-class 0: ...` and a non-zero exit, never a traceback or a usage
dump, for anything that is their input's fault.
"""

from __future__ import annotations

import dataclasses
import functools
import re
import sys
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


class Group(click.Group):
    """A click group whose errors print as one line."""

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):  # type: ignore[override]
        name = prog_name or self.name or "error"
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
