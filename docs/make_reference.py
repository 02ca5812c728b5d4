"""Write docs/reference.md, the flag reference of `ptgen` and `pttrain`, from the CLIs themselves.

    python docs/make_reference.py           # rewrite docs/reference.md
    python docs/make_reference.py --check   # exit 1, writing nothing, when docs/reference.md is stale

Every command (nested groups included) gets its one-line summary, its usage line and a table of
its parameters, read from click's own objects: the declared flags, the type, the default as
`--help` shows it (or the `[default: ...]` the help text gives), whether it is required, and the
help text. Nothing here is written per flag, and nothing depends on the terminal or the machine,
so the file changes exactly when a command's `--help` does. tests/test_docs.py fails when the
file is stale.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
REFERENCE = ROOT / "docs" / "reference.md"
REGENERATE = "python docs/make_reference.py"

if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import click  # noqa: E402

# A help text's own statement of a default it cannot give as a value ("[default: the model's own]").
HELP_DEFAULT = re.compile(r"\s*\[default: (?P<default>.*)\]\s*$", re.DOTALL)


def clis() -> list[tuple[str, click.Command]]:
    """The two entry points, under the names pyproject.toml installs them as."""
    from generate.cli import main as ptgen
    from train.cli import main as pttrain

    return [("ptgen", ptgen), ("pttrain", pttrain)]


def walk(command: click.Command, name: str, parent: click.Context | None = None):
    """(context, command) for COMMAND and every command under it, groups before their commands,
    subcommands in click's listing order (alphabetical). The contexts are made the way click makes
    them (with the command's context_settings, e.g. -h as well as --help), without parsing anything."""
    ctx = click.Context(command, info_name=name, parent=parent, **command.context_settings)
    yield ctx, command
    if isinstance(command, click.Group):
        for sub in command.list_commands(ctx):
            yield from walk(command.get_command(ctx, sub), sub, ctx)


def all_commands() -> list[tuple[click.Context, click.Command]]:
    return [pair for name, cli in clis() for pair in walk(cli, name)]


def flags(param: click.Parameter) -> list[str]:
    """What a user types: an option's flags (secondary ones, --no-X, included), an argument's metavar."""
    if isinstance(param, click.Argument):
        return [param.human_readable_name]
    return [*param.opts, *param.secondary_opts]


def help_extra(param: click.Option, ctx: click.Context) -> dict:
    """The bracket click appends to an option's help ({default, range, required, envvars}), as
    click renders it. click 8.2 and later hand it over as a dict; older ones only as the text of
    the help record, which is the help plus '  [a; b]'."""
    if hasattr(param, "get_help_extra"):
        return dict(param.get_help_extra(ctx))
    record = param.get_help_record(ctx)
    extra: dict = {}
    text = record[1] if record else ""
    if text.endswith("]") and "[" in text:
        for item in text[text.rindex("[") + 1:-1].split("; "):
            if item.startswith("default: "):
                extra["default"] = item[len("default: "):]
            elif item == "required":
                extra["required"] = item
            elif item.startswith("env var: "):
                extra["envvars"] = tuple(item[len("env var: "):].split(", "))
            else:
                extra["range"] = item
    return extra


def type_text(param: click.Parameter, extra: dict) -> str:
    kind = param.type
    if isinstance(param, click.Option) and param.is_flag and param.is_bool_flag:
        return "flag"
    if isinstance(kind, click.Choice):
        return "one of " + ", ".join(f"`{choice}`" for choice in kind.choices)
    if isinstance(kind, (click.IntRange, click.FloatRange)):
        base = "integer" if isinstance(kind, click.IntRange) else "float"
        described = extra.get("range") or kind._describe_range()
        return f"{base} `{described}`" if described else base
    name = kind.name
    return f"`{name}`" if not re.fullmatch(r"[a-z ]+", name) else name


def default_text(param: click.Parameter, ctx: click.Context, extra: dict, help_default: str | None) -> str:
    """The default as --help shows it; for an on/off pair, the flag that is on by default; else the
    help text's own [default: ...]; else nothing (none, or off for a flag)."""
    if isinstance(param, click.Option) and "default" in extra:
        if param.is_bool_flag and param.secondary_opts:
            value = param.get_default(ctx, call=False)
            return f"`{(param.opts if value else param.secondary_opts)[0]}`"
        return f"`{extra['default']}`"
    if help_default is not None:
        return prose(help_default)
    return ""


def split_help(text: str) -> tuple[str, str | None]:
    text = " ".join(text.split())
    found = HELP_DEFAULT.search(text)
    if not found:
        return text, None
    return text[:found.start()].rstrip(), " ".join(found["default"].split())


def prose(text: str) -> str:
    """Help text as Markdown: code spans kept; HTML-like <placeholders>, * and a _ that could open or
    close emphasis escaped."""
    parts = re.split(r"(`[^`]*`)", text)
    for i in range(0, len(parts), 2):
        parts[i] = (parts[i].replace("\\", "\\\\").replace("<", "&lt;").replace(">", "&gt;")
                    .replace("*", "\\*"))
        parts[i] = re.sub(r"(?<!\w)_|_(?!\w)", r"\_", parts[i])
    return "".join(parts)


def cell(text: str) -> str:
    """A table cell: GitHub's tables split on | even inside code spans."""
    return text.replace("|", "\\|")


def anchor(path: str) -> str:
    """GitHub's id for the heading `PATH`."""
    return re.sub(r"[^a-z0-9 -]", "", path.lower()).replace(" ", "-")


def rows(ctx: click.Context, command: click.Command) -> list[list[str]]:
    table = []
    for param in command.get_params(ctx):
        if getattr(param, "hidden", False):
            continue
        extra = help_extra(param, ctx) if isinstance(param, click.Option) else {}
        text, help_default = split_help(getattr(param, "help", None) or "")
        table.append([
            ", ".join(f"`{flag}`" for flag in flags(param)),
            type_text(param, extra),
            default_text(param, ctx, extra, help_default),
            "yes" if param.required else "",
            prose(text),
        ])
    return table


def section(ctx: click.Context, command: click.Command) -> list[str]:
    path = ctx.command_path
    summary = command.get_short_help_str(limit=10_000)
    usage = " ".join([path, *command.collect_usage_pieces(ctx)])
    lines = [f"## `{path}`", ""]
    if summary:
        lines += [prose(summary), ""]
    lines += [f"Usage: `{usage}`", ""]
    if isinstance(command, click.Group):
        lines += ["| Command | Summary |", "| --- | --- |"]
        for name in command.list_commands(ctx):
            sub = command.get_command(ctx, name)
            lines.append(f"| [`{path} {name}`](#{anchor(f'{path} {name}')}) | "
                         f"{cell(prose(sub.get_short_help_str(limit=10_000)))} |")
        lines.append("")
    lines += ["| Flag | Type | Default | Required | Description |", "| --- | --- | --- | --- | --- |"]
    lines += ["| " + " | ".join(cell(c) for c in row) + " |" for row in rows(ctx, command)]
    lines.append("")
    return lines


def render() -> str:
    commands = all_commands()
    lines = [
        f"<!-- Generated by docs/make_reference.py from the CLIs; do not edit. Regenerate: {REGENERATE} -->",
        "",
        "# Command-line reference",
        "",
        "Every command of `ptgen` and `pttrain` and every flag it takes, read from the commands "
        "themselves: each table is what `COMMAND --help` says, with the default as `--help` shows it "
        "(or as the help text describes it, where it depends on the data or the machine). A flag with "
        "no default is unset unless given; a flag of type flag is off unless given. "
        "`--help` also prints each command's full description. "
        f"After changing a command, regenerate this page with `{REGENERATE}`; "
        "tests/test_docs.py fails while it is stale.",
        "",
    ]
    for ctx, _ in commands:
        indent = "  " * (ctx.command_path.count(" "))
        lines.append(f"{indent}- [`{ctx.command_path}`](#{anchor(ctx.command_path)})")
    lines.append("")
    for ctx, command in commands:
        lines += section(ctx, command)
    return "\n".join(lines).rstrip("\n") + "\n"


def main(argv: list[str]) -> int:
    check = "--check" in argv
    unknown = [a for a in argv if a != "--check"]
    if unknown:
        print(f"usage: {REGENERATE} [--check]", file=sys.stderr)
        return 2
    text = render()
    current = REFERENCE.read_text(encoding="utf-8") if REFERENCE.exists() else None
    if check:
        if current != text:
            print(f"{REFERENCE.relative_to(ROOT)} is stale: run {REGENERATE}", file=sys.stderr)
            return 1
        return 0
    if current != text:
        REFERENCE.write_text(text, encoding="utf-8")
        print(f"wrote {REFERENCE.relative_to(ROOT)}")
    else:
        print(f"{REFERENCE.relative_to(ROOT)} is current")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
