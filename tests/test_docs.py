"""The docs against the CLIs: docs/reference.md is what docs/make_reference.py writes from them,
it lists every flag of every command, and every command line in README.md and docs/*.md parses.

Command lines are parsed by click, as `ptgen` / `pttrain` would parse them, without running
anything. Where they are found:

- code blocks (```bash, ```sh, ```shell, ```console, or no language): each command, a `\\` at a
  line's end joining the next line, `# comments` dropped; full parse, so an unknown flag, a value
  its type or choices refuse, a missing required flag or a stray argument all fail;
- inline code spans in the prose (`ptgen pseudo --top-k all`): the same parse, but a span may
  name a command without its required flags (`ptgen pseudo`) or end at a flag without its value
  (`pttrain pssl --guard`), since prose mentions a flag as often as it gives a command.

A command is one that starts (after a `$ ` prompt, NAME=value assignments and `time`, `nohup`,
`exec`, `env`) with `ptgen`, `pttrain`, `python -m generate|train`, `torchrun ... -m
generate|train` or `srun ... <any of these>`; a torchrun or srun line that runs something else,
and `python -m benchmarks...`, are not ours. Pipelines and lists (`|`, `&&`, `;`) are split into
their commands.

Marker rules:
- Synopsis: a command with a word `...` or containing `...` (`ptgen synth ... --rank R --world W`)
  is a synopsis, not a command line: only its command path and flag names are checked.
- Placeholders (DIR, SPEC, FOLDER, hf:NAME) are strings to click and parse as such: no parameter
  of either CLI has click.Path(exists=True) (test_no_param_checks_the_file_system), so a path
  need not exist.
- An ALL-CAPS placeholder as the value of a flag that takes a number or a choice (`--classes N`)
  cannot be converted: the flag's name is checked, its value is not.
- A bare `$VAR` word that is not a flag's value is dropped: it may expand to flags or to nothing
  (`RESUME=$(... && echo --resume)`), which no static check can know. As a flag's value it stays
  a placeholder string.
- docs/reference.md is generated; the reference tests here check it, not this one.
"""

from __future__ import annotations

import difflib
import importlib.util
import re
import shlex
from dataclasses import dataclass
from pathlib import Path

import click
import pytest

from generate.cli import main as ptgen_main
from train.cli import main as pttrain_main

ROOT = Path(__file__).resolve().parent.parent
REFERENCE = ROOT / "docs" / "reference.md"
ROOTS = {"ptgen": ptgen_main, "pttrain": pttrain_main}
MODULES = {"generate": "ptgen", "train": "pttrain"}
SHELL_BLOCKS = {"", "bash", "sh", "shell", "console", "zsh"}
WRAPPERS = {"time", "nohup", "exec", "env"}


def load_generator():
    spec = importlib.util.spec_from_file_location("make_reference", ROOT / "docs" / "make_reference.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


make_reference = load_generator()


# --- the CLIs, walked independently of the generator --------------------------------------------

def commands() -> dict[str, tuple[click.Context, click.Command]]:
    """'ptgen synth' -> (its context, the command), for every command and group of both CLIs."""
    found = {}

    def walk(command, name, parent):
        ctx = click.Context(command, info_name=name, parent=parent, **command.context_settings)
        found[ctx.command_path] = (ctx, command)
        if isinstance(command, click.Group):
            for sub in command.list_commands(ctx):
                walk(command.get_command(ctx, sub), sub, ctx)

    for name, cli in ROOTS.items():
        walk(cli, name, None)
    return found


COMMANDS = commands()


def declared_flags(ctx: click.Context, command: click.Command) -> set[str]:
    out = set()
    for param in command.get_params(ctx):
        if isinstance(param, click.Argument):
            out.add(param.human_readable_name)
        elif not param.hidden:
            out.update(param.opts + param.secondary_opts)
    return out


def option_table(ctx: click.Context, command: click.Command) -> dict[str, click.Option]:
    return {flag: p for p in command.get_params(ctx) if isinstance(p, click.Option)
            for flag in p.opts + p.secondary_opts}


def takes_value(option: click.Option) -> bool:
    return not option.is_flag and not option.count and option.nargs != 0


# --- the reference ------------------------------------------------------------------------------

def test_reference_is_current():
    current, fresh = REFERENCE.read_text(encoding="utf-8"), make_reference.render()
    if current != fresh:
        diff = difflib.unified_diff(current.splitlines(), fresh.splitlines(), "docs/reference.md", "the CLIs",
                                    lineterm="", n=0)
        pytest.fail(f"docs/reference.md is stale: run {make_reference.REGENERATE}\n" + "\n".join(list(diff)[:40]))


def reference_sections() -> dict[str, set[str]]:
    """'ptgen synth' -> the flags in the first cells of its flags table, as docs/reference.md has them."""
    sections: dict[str, set[str]] = {}
    current = None
    in_flags = False
    for line in REFERENCE.read_text(encoding="utf-8").splitlines():
        heading = re.fullmatch(r"## `([^`]+)`", line)
        if heading:
            current, in_flags = heading[1], False
            sections[current] = set()
        elif line.startswith("| Flag |"):
            in_flags = True
        elif in_flags and line.startswith("| ") and not line.startswith("| ---"):
            first = re.split(r"(?<!\\) \| ", line[2:], maxsplit=1)[0]
            sections[current].update(re.findall(r"`([^`]+)`", first))
        elif not line.startswith("|"):
            in_flags = False
    return sections


def test_reference_lists_every_command_and_flag():
    sections = reference_sections()
    assert set(sections) == set(COMMANDS), "commands missing from or unknown to docs/reference.md"
    for path, (ctx, command) in COMMANDS.items():
        expected = declared_flags(ctx, command)
        assert sections[path] == expected, (
            f"{path}: missing from docs/reference.md {sorted(expected - sections[path])}, "
            f"not a flag of the command {sorted(sections[path] - expected)}")
    assert "--no-wd-norm-bias" in sections["pttrain pp"]  # secondary flags count too


def test_reference_follows_the_help_texts(monkeypatch):
    """A changed help text makes the file stale, and --check says so without writing."""
    ctx, command = COMMANDS["ptgen synth"]
    option = option_table(ctx, command)["--per-class"]
    monkeypatch.setattr(option, "help", "A help text nobody wrote.")
    text = make_reference.render()
    assert "A help text nobody wrote." in text
    assert text != REFERENCE.read_text(encoding="utf-8")


def test_check_exits_nonzero_when_stale(tmp_path, monkeypatch, capsys):
    stale = tmp_path / "reference.md"
    stale.write_text("stale\n", encoding="utf-8")
    monkeypatch.setattr(make_reference, "REFERENCE", stale)
    monkeypatch.setattr(make_reference, "ROOT", tmp_path)
    assert make_reference.main(["--check"]) == 1
    assert stale.read_text(encoding="utf-8") == "stale\n"
    assert make_reference.main([]) == 0
    assert make_reference.main(["--check"]) == 0
    assert "stale" in capsys.readouterr().err


def test_no_param_checks_the_file_system():
    """The doc lines' placeholder paths parse only because no parameter wants an existing path."""
    for path, (ctx, command) in COMMANDS.items():
        for param in command.get_params(ctx):
            assert not (isinstance(param.type, click.Path) and param.type.exists), (
                f"{path} {param.name}: click.Path(exists=True); test_docs must then parse doc lines "
                "where their paths exist")


# --- command lines in the docs ------------------------------------------------------------------

@dataclass(frozen=True)
class DocCommand:
    where: str  # README.md:48
    kind: str  # "block" or "inline"
    text: str  # the command as the doc has it, comment dropped, continuation lines joined
    prog: str  # ptgen or pttrain
    args: tuple[str, ...]

    @property
    def synopsis(self) -> bool:
        return any("..." in word for word in self.args)


def doc_files() -> list[Path]:
    return [ROOT / "README.md", *(p for p in sorted((ROOT / "docs").glob("*.md")) if p != REFERENCE)]


def strip_comment(line: str) -> str:
    """The line up to a # that starts a word outside quotes, as the shell reads it."""
    quote = None
    for i, char in enumerate(line):
        if quote:
            if char == quote:
                quote = None
        elif char in "'\"":
            quote = char
        elif char == "#" and (i == 0 or line[i - 1].isspace()):
            return line[:i].rstrip()
    return line.rstrip()


def simple_commands(text: str) -> list[list[str]]:
    """TEXT's commands as word lists, split at | || && ; & and parentheses; [] when it is no shell."""
    lexer = shlex.shlex(text, posix=True, punctuation_chars=";&|<>()")
    lexer.whitespace_split = True
    lexer.commenters = ""
    try:
        words = list(lexer)
    except ValueError:  # an unbalanced quote: prose, not a command
        return []
    out, current = [], []
    for word in words:
        if word and all(c in ";&|<>()" for c in word):
            out.append(current)
            current = []
        else:
            current.append(word)
    out.append(current)
    return [c for c in out if c]


def invocation(words: list[str]) -> tuple[str, list[str]] | None:
    """(ptgen or pttrain, its arguments) when WORDS run one of the CLIs, else None."""
    words = list(words)
    while words and (words[0] == "$" or words[0] in WRAPPERS or re.fullmatch(r"[A-Za-z_]\w*=.*", words[0])):
        words.pop(0)
    if not words:
        return None
    head = words[0]
    if head in ROOTS:
        return head, words[1:]
    if re.fullmatch(r"python(3(\.\d+)?)?", head) and len(words) > 2 and words[1] == "-m":
        return (MODULES[words[2]], words[3:]) if words[2] in MODULES else None
    if head == "torchrun":
        for i, word in enumerate(words[:-1]):
            if word == "-m":
                return (MODULES[words[i + 1]], words[i + 2:]) if words[i + 1] in MODULES else None
        return None
    if head == "srun":
        for i, word in enumerate(words[1:], 1):
            if word in ROOTS or re.fullmatch(r"python(3(\.\d+)?)?|torchrun", word):
                return invocation(words[i:])
    return None


def commands_in(text: str, where: str, kind: str) -> list[DocCommand]:
    out = []
    for words in simple_commands(text):
        found = invocation(words)
        if found:
            out.append(DocCommand(where, kind, " ".join(text.split()), found[0], tuple(found[1])))
    return out


def doc_commands(path: Path, text: str | None = None) -> list[DocCommand]:
    name = path.relative_to(ROOT).as_posix() if path.is_absolute() else str(path)
    lines = (path.read_text(encoding="utf-8") if text is None else text).splitlines()
    found: list[DocCommand] = []
    prose = list(lines)  # the file with its code blocks blanked, for the inline spans
    fence = None
    i = 0
    while i < len(lines):
        line = lines[i]
        opening = re.match(r"\s*(`{3,}|~{3,})\s*([\w+-]*)", line)
        if fence is None and opening:
            fence, language = opening[1], opening[2].lower()
            prose[i] = ""
            i += 1
            continue
        if fence is not None:
            prose[i] = ""
            if line.strip().startswith(fence) and not line.strip()[len(fence):].strip():
                fence = None
                i += 1
                continue
            if language in SHELL_BLOCKS:
                start, command = i, strip_comment(line)
                while command.endswith("\\") and i + 1 < len(lines):
                    i += 1
                    prose[i] = ""
                    command = command[:-1] + " " + strip_comment(lines[i])
                found += commands_in(command, f"{name}:{start + 1}", "block")
            i += 1
            continue
        i += 1
    # Inline spans, paragraph by paragraph so that one stray backtick cannot pair across them.
    paragraph: list[tuple[int, str]] = []
    for number, line in [*enumerate(prose, 1), (len(prose) + 1, "")]:
        if line.strip():
            paragraph.append((number, line))
            continue
        joined = "\n".join(text for _, text in paragraph)
        for span in re.finditer(r"(?<!`)`([^`]+)`(?!`)", joined):
            first = paragraph[joined.count("\n", 0, span.start())][0]
            found += commands_in(span[1].replace("\n", " "), f"{name}:{first}", "inline")
        paragraph = []
    return found


def check_names(command: DocCommand) -> str | None:
    """A synopsis: the command path exists and every flag is one of its flags."""
    ctx, cmd = COMMANDS[command.prog]
    path = command.prog
    words = list(command.args)
    while isinstance(cmd, click.Group) and words:
        word = words.pop(0)
        if word.startswith("-"):
            if word not in option_table(ctx, cmd):
                return f"No such option '{word}' (of {path})."
            continue
        if "..." in word:
            return None
        if cmd.get_command(ctx, word) is None:
            return f"No such command '{word}' (of {path})."
        path = f"{path} {word}"
        ctx, cmd = COMMANDS[path]
    table = option_table(ctx, cmd)
    skip = False
    for word in words:
        if skip or not word.startswith("-") or word == "-" or "..." in word:
            skip = False
            continue
        name, eq, _ = word.partition("=")
        if name not in table:
            return f"No such option '{name}' (of {path})."
        skip = takes_value(table[name]) and not eq
    return None


PLACEHOLDER = re.compile(r"[A-Z][A-Z0-9_]*")


def prepare(ctx: click.Context, command: click.Command, args: list[str]) -> list[str]:
    """ARGS less what no static parse can judge: a bare `$VAR` word that is not a flag's value,
    and a flag (one the command has) whose value is an ALL-CAPS placeholder where a number or a
    choice goes."""
    table = option_table(ctx, command)
    out: list[str] = []
    i = 0
    while i < len(args):
        word = args[i]
        name, eq, value = word.partition("=")
        option = table.get(name) if word.startswith("-") else None
        if option is not None and takes_value(option):
            value = value if eq else (args[i + 1] if i + 1 < len(args) else None)
            width = 1 if eq else 2
            if value is not None and PLACEHOLDER.fullmatch(value) and not isinstance(
                    option.type, (click.types.StringParamType, click.Path)):
                i += width
                continue
            out += args[i:i + width]
            i += width
            continue
        if not re.fullmatch(r"\$(\w+|\{\w+\})", word):
            out.append(word)
        i += 1
    return out


def parse(command: DocCommand) -> str | None:
    """None when click parses the command line, else click's message."""
    if command.synopsis:
        return check_names(command)
    cmd: click.Command = ROOTS[command.prog]
    name, args, parent = command.prog, list(command.args), None
    try:
        while isinstance(cmd, click.Group):
            ctx = cmd.make_context(name, args, parent=parent, resilient_parsing=False)
            rest = [*(ctx._protected_args if hasattr(ctx, "_protected_args") else ctx.protected_args), *ctx.args]
            if not rest:
                return None  # the group alone: its help
            name, cmd, args = cmd.resolve_command(ctx, rest)
            parent = ctx
        probe = click.Context(cmd, info_name=name, parent=parent, **cmd.context_settings)
        args = prepare(probe, cmd, args)
        try:
            cmd.make_context(name, list(args), parent=parent, resilient_parsing=False)
        except click.BadOptionUsage as err:
            # A mention that ends at a flag: `pttrain pssl --guard`.
            if command.kind == "inline" and args and err.option_name == args[-1]:
                cmd.make_context(name, args[:-1], parent=parent, resilient_parsing=False)
            else:
                raise
    except click.MissingParameter as err:
        if command.kind == "inline":
            return None
        return err.format_message()
    except click.exceptions.NoArgsIsHelpError:
        return None
    except click.exceptions.Exit:  # --help, --version
        return None
    except click.UsageError as err:
        return err.format_message()
    return None


def all_doc_commands() -> list[DocCommand]:
    return [c for path in doc_files() for c in doc_commands(path)]


DOC_COMMANDS = all_doc_commands()


def ids(found: list[DocCommand]) -> list[str]:
    seen: dict[str, int] = {}
    out = []
    for c in found:
        seen[c.where] = seen.get(c.where, 0) + 1
        out.append(c.where if seen[c.where] == 1 else f"{c.where}#{seen[c.where]}")
    return out


def test_the_docs_have_command_lines():
    blocks = [c for c in DOC_COMMANDS if c.kind == "block"]
    assert len(blocks) >= 30 and {c.prog for c in blocks} == {"ptgen", "pttrain"}


@pytest.mark.parametrize("command", DOC_COMMANDS, ids=ids(DOC_COMMANDS))
def test_doc_command_line_parses(command: DocCommand, capsys):
    error = parse(command)
    assert error is None, f"{command.where}: {command.text}\n  {command.prog}: error: {error}"


# --- the checker itself: it finds command lines, and it can fail -------------------------------

CHECKER_DOC = """\
Prose with `ptgen synth --per-class 5` and a mention of `pttrain pssl --guard`; `ptgen pseudo` too.

```bash
$ ptgen synth --classes 100 --out shards/c100   # a comment --bogus
CUDA_VISIBLE_DEVICES=0 pttrain pp --shards DIR \\
    --epochs 2 --out runs/pp
torchrun --nproc_per_node 2 -m generate synth --out s && srun -n 2 python -m train eval --run R --data D
python -m benchmarks.reproduce run --bogus
RESUME=$([ -f x ] && echo --resume)
srun pttrain pp --shards DIR --out $RUN $RESUME
ptgen synth ... --rank R
```

```json
{"ptgen synth --bogus": 1}
```
"""


def test_checker_finds_the_command_lines():
    found = doc_commands(Path("CHECKER.md"), CHECKER_DOC)
    assert [(c.where, c.kind, c.prog, c.args) for c in found] == [
        ("CHECKER.md:4", "block", "ptgen", ("synth", "--classes", "100", "--out", "shards/c100")),
        ("CHECKER.md:5", "block", "pttrain", ("pp", "--shards", "DIR", "--epochs", "2", "--out", "runs/pp")),
        ("CHECKER.md:7", "block", "ptgen", ("synth", "--out", "s")),
        ("CHECKER.md:7", "block", "pttrain", ("eval", "--run", "R", "--data", "D")),
        ("CHECKER.md:10", "block", "pttrain", ("pp", "--shards", "DIR", "--out", "$RUN", "$RESUME")),
        ("CHECKER.md:11", "block", "ptgen", ("synth", "...", "--rank", "R")),
        ("CHECKER.md:1", "inline", "ptgen", ("synth", "--per-class", "5")),
        ("CHECKER.md:1", "inline", "pttrain", ("pssl", "--guard")),
        ("CHECKER.md:1", "inline", "ptgen", ("pseudo",)),
    ]
    assert all(parse(c) is None for c in found)


@pytest.mark.parametrize("kind, line, message", [
    ("block", "ptgen synth --per-class 5 --bogus", "No such option '--bogus'"),
    ("block", "ptgen synth --per-class 0", "'--per-class'"),
    ("block", "ptgen synth --image-format gif", "'--image-format'"),
    ("block", "ptgen synthesize --classes 10", "No such command 'synthesize'"),
    ("block", "ptgen pseudo --out x", "Missing option '--target'"),
    ("block", "pttrain pp --shards s extra", "unexpected extra argument"),
    ("block", "pttrain data digits --out d --labels-per-class many", "'--labels-per-class'"),
    ("block", "pttrain pssl --data d --unlabeled u --init none --guard", "requires an argument"),
    ("inline", "pttrain pssl --gaurd", "No such option '--gaurd'"),
    ("inline", "ptgen synth ... --rnak 1", "No such option '--rnak'"),
    ("block", "torchrun --nproc_per_node 2 -m train pp --shards s --wd-norm-bias=no", "--wd-norm-bias"),
])
def test_checker_refuses(kind, line, message, capsys):
    text = f"`{line}`\n" if kind == "inline" else f"```bash\n{line}\n```\n"
    (found,) = doc_commands(Path("BAD.md"), text)
    error = parse(found)
    assert error is not None and message in error, error
