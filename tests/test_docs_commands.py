"""The documentation cannot drift from the code: every command shown in README.md and docs/*.md parses against
the real command line, and every relative link points to a file (and heading) that exists.

Commands: every line of a fenced code block tagged bash / sh / shell / console (and of an untagged fenced block
whose lines run lfdn-edge or a tool), plus every inline code span that starts with ``lfdn-edge ``, is split like
a shell would split it (backslash continuations, comments, ``&&`` / ``||`` / ``;`` / ``|`` chains, subshells,
redirections, environment prefixes such as ``OMP_NUM_THREADS=1``, ``sudo``, ``torchrun``), and each invocation of

* ``lfdn-edge SUB ...`` / ``python -m lfdn_edge SUB ...`` is checked against the subcommand's real argparse
  parser (``lfdn_edge.cli.COMMANDS`` and each module's ``build_parser()``): SUB exists and every ``--flag`` /
  ``-f`` (also ``--flag=value``) is one of its options;
* ``python tools/X.py ...``: a wrapper of a subcommand (``run("build", ...)``) is checked like that subcommand;
  any other tool's parser is captured by running the tool in a child process with ``ArgumentParser.parse_args``
  patched to hand the parser over (the real parser, not its help text); should that fail, the options are read
  from the ``add_argument`` calls in its source;
* ``tools/X.sh ...``: every flag must appear in the script.

Placeholders (``<engine>``, ``ckpt.pt``, ``SUB``, ``...``) are positional arguments and are not checked;
the check is --help-level (the subcommand and each flag exist), not a dry run.
The tests at the end break the docs on purpose (a misspelled flag, a renamed flag in a copy of the README, a flag
renamed in the code, a broken link) and check that each is reported with file, line, command and flag.
"""

from __future__ import annotations

import ast
import difflib
import functools
import importlib
import json
import os
import re
import shlex
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SHELL_LANGS = {"bash", "sh", "shell", "console", "zsh", "shell-session"}
RUNNERS = re.compile(r"^\s*(\$\s+)?(\S+=\S*\s+)*(sudo\s+)?(lfdn-edge|python3?|torchrun|bash|tools/)\b")


def doc_files(root: Path = ROOT) -> list[Path]:
    return [root / "README.md", *sorted((root / "docs").glob("*.md"))]


# ----------------------------------------------------------------------------------------------- markdown reading
@dataclass
class Block:
    lang: str
    lines: list[tuple[int, str]]  # (1-based line number, text with the fence's indentation removed)


FENCE = re.compile(r"^(?P<indent>\s*)(?P<fence>`{3,}|~{3,})\s*(?P<info>[^`\s]*)")


def split_markdown(text: str) -> tuple[list[Block], list[tuple[int, str]]]:
    """The fenced code blocks, and the remaining lines (the prose, with their line numbers)."""
    blocks, prose = [], []
    lines = text.split("\n")
    i = 0
    while i < len(lines):
        m = FENCE.match(lines[i])
        if not m:
            prose.append((i + 1, lines[i]))
            i += 1
            continue
        indent, fence = len(m.group("indent")), m.group("fence")
        body = []
        i += 1
        while i < len(lines) and not re.match(rf"^\s*{re.escape(fence[0])}{{{len(fence)},}}\s*$", lines[i]):
            line = lines[i]
            body.append((i + 1, line[indent:] if line[:indent].strip() == "" else line.lstrip()))
            i += 1
        blocks.append(Block(m.group("info").lower(), body))
        i += 1  # the closing fence
    return blocks, prose


def inline_code(prose: list[tuple[int, str]]) -> list[tuple[int, str]]:
    """Single-backtick code spans of the prose (a span may run over a line break)."""
    text = "\n".join(line for _, line in prose)
    starts, pos = [], 0
    for no, line in prose:
        starts.append((pos, no))
        pos += len(line) + 1
    out = []
    for m in re.finditer(r"(?<!`)`([^`]+)`(?!`)", text):
        no = max(n for p, n in starts if p <= m.start())
        out.append((no, " ".join(m.group(1).split())))
    return out


# ------------------------------------------------------------------------------------------------- shell reading
@dataclass
class Invocation:
    file: str
    line: int
    text: str        # the whole command line as written (continuations joined)
    kind: str        # "cli", "tool", "script"
    target: str      # subcommand, or the tool's path
    args: list[str] = field(default_factory=list)


def logical_lines(block: Block) -> list[tuple[int, str]]:
    """Backslash continuations joined; in console blocks with prompts, only the prompted lines."""
    lines = block.lines
    prompted = block.lang == "console" and any(t.lstrip().startswith("$ ") for _, t in lines)
    out, cur, start = [], "", None
    for no, t in lines:
        if prompted and cur == "":
            if not t.lstrip().startswith("$ "):
                continue
            t = t.lstrip()[2:]
        if start is None:
            start = no
        if t.rstrip().endswith("\\"):
            cur += t.rstrip()[:-1] + " "
            continue
        out.append((start, cur + t))
        cur, start = "", None
    if cur:
        out.append((start, cur))
    return out


SEPARATORS = {";", "&&", "||", "|", "&", "(", ")", ";;", "|&"}
REDIRECTS = {">", ">>", "<", "<<", "<<<", ">&", "&>", "&>>", "<&", ">|"}


def strip_comment(line: str) -> str:
    """The line without its shell comment: a # that starts a word outside quotes (not the # inside a word)."""
    quote, prev, i = None, " ", 0
    while i < len(line):
        c = line[i]
        if c == "\\" and quote != "'":   # an escaped character is part of a word
            prev, i = "x", i + 2
            continue
        if quote:
            if c == quote:
                quote = None
        elif c in "'\"":
            quote = c
        elif c == "#" and (prev.isspace() or prev in ";&|()"):
            return line[:i]
        prev, i = c, i + 1
    return line


def shell_commands(line: str) -> list[list[str]]:
    """Split one logical shell line into simple commands (lists of words)."""
    line = strip_comment(line)
    line = re.sub(r"<([A-Za-z][\w .,/:|-]*)>", lambda m: "PLACEHOLDER_" + re.sub(r"\W", "_", m.group(1)), line)
    line = re.sub(r"\$\([^()]*\)", "SUBST", line)   # $(...) command substitution, not nested
    line = re.sub(r"`[^`]*`", "SUBST", line)
    lex = shlex.shlex(line, posix=True, punctuation_chars=True)
    lex.whitespace_split = True
    lex.commenters = ""   # done above: shlex would also cut a word at a # inside it
    tokens = list(lex)  # ValueError on unbalanced quotes: reported by the caller
    commands, cur, skip = [], [], False
    for tok in tokens:
        if skip:
            skip = False
            continue
        if tok in SEPARATORS:
            if cur:
                commands.append(cur)
            cur = []
        elif tok in REDIRECTS:
            if cur and cur[-1].isdigit():
                cur.pop()   # 2>/dev/null: the 2 belongs to the redirection
            skip = True
        else:
            cur.append(tok)
    if cur:
        commands.append(cur)
    return commands


ASSIGNMENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*=")
PYTHON = re.compile(r"^(.*/)?python(3(\.\d+)?)?$")
TORCHRUN_NO_VALUE = {"--standalone", "--no-python", "--no_python", "--run-path", "--run_path", "--monitor-interval"}


def _program(words: list[str]) -> tuple[str, list[str]] | None:
    """What a simple command runs, past environment assignments and wrappers: (program, its arguments)."""
    i = 0
    while i < len(words):
        w = words[i]
        if ASSIGNMENT.match(w):
            i += 1
        elif w in ("sudo", "env", "exec", "nohup", "time", "command"):
            i += 1
            while i < len(words) and words[i].startswith("-"):
                i += 1
        elif w == "timeout":
            i += 2
        else:
            return w, words[i + 1:]
    return None


def invocation(words: list[str], file: str, line: int, text: str) -> Invocation | None:
    prog = _program(words)
    if prog is None:
        return None
    name, args = prog
    base = name.rsplit("/", 1)[-1]
    if base == "lfdn-edge":
        return _cli(args, file, line, text)
    if PYTHON.match(name):
        return _python(args, file, line, text)
    if base == "torchrun" or name == "torch.distributed.run":
        i = 0
        while i < len(args):
            a = args[i]
            if a == "-m":
                return _module(args[i + 1:], file, line, text)
            if a.startswith("-"):
                i += 1 if ("=" in a or a in TORCHRUN_NO_VALUE) else 2
                continue
            return _script(a, args[i + 1:], file, line, text)
        return None
    if base in ("bash", "sh") and args and not args[0].startswith("-"):
        return _script(args[0], args[1:], file, line, text)
    if name.endswith(".sh") or name.endswith(".py"):
        return _script(name, args, file, line, text)
    return None


def _cli(args, file, line, text):
    return Invocation(file, line, text, "cli", args[0] if args else "", args[1:])


def _module(args, file, line, text):
    if args and args[0] in ("lfdn_edge", "lfdn_edge.cli", "lfdn_edge.__main__"):
        return _cli(args[1:], file, line, text)
    return None


def _python(args, file, line, text):
    i = 0
    while i < len(args):
        a = args[i]
        if a == "-m":
            return _module(args[i + 1:], file, line, text)
        if a == "-c" or a == "-":
            return None
        if a in ("-X", "-W"):
            i += 2
            continue
        if a.startswith("-"):
            i += 1
            continue
        return _script(a, args[i + 1:], file, line, text)
    return None


def _script(path, args, file, line, text):
    p = path[2:] if path.startswith("./") else path
    if p.startswith("tools/") and (p.endswith(".py") or p.endswith(".sh")):
        return Invocation(file, line, text, "tool" if p.endswith(".py") else "script", p, args)
    return None


def invocations(path: Path, text: str | None = None, root: Path = ROOT) -> tuple[list[Invocation], list[str]]:
    """Every lfdn-edge / tool invocation shown in one markdown file, and the lines that could not be split."""
    text = path.read_text(encoding="utf-8") if text is None else text
    try:
        rel = str(path.relative_to(root))
    except ValueError:
        rel = str(path)
    blocks, prose = split_markdown(text)
    candidates = []
    for b in blocks:
        if b.lang in SHELL_LANGS or (b.lang == "" and any(RUNNERS.match(t) for _, t in b.lines)):
            candidates += logical_lines(b)
    candidates += [(no, code) for no, code in inline_code(prose) if code.startswith("lfdn-edge ")]
    found, bad = [], []
    for no, line in candidates:
        try:
            commands = shell_commands(line)
        except ValueError as e:
            bad.append(f"{rel}:{no}: cannot split as a shell command ({e}): {line.strip()}")
            continue
        for words in commands:
            inv = invocation(words, rel, no, line.strip())
            if inv is not None:
                found.append(inv)
    return found, bad


# ------------------------------------------------------------------------------------------------- real options
def cli_options() -> dict[str, set[str]]:
    """Subcommand -> option strings, from the real parsers (lfdn_edge.cli.COMMANDS + each build_parser())."""
    cli = importlib.import_module("lfdn_edge.cli")
    out = {}
    for name, (module, _) in cli.COMMANDS.items():
        parser = importlib.import_module(f"lfdn_edge.cli.{module}").build_parser(f"lfdn-edge {name}")
        out[name] = set(parser._option_string_actions)
    return out


CAPTURE = r"""
import argparse, json, os, runpy, sys

class _Captured(BaseException):  # BaseException: a tool's `except Exception` must not swallow it
    pass

def _capture(self, *args, **kwargs):
    raise _Captured(self)

argparse.ArgumentParser.parse_args = _capture
argparse.ArgumentParser.parse_known_args = _capture
path = sys.argv[1]
sys.argv = [path, "--help"]
sys.path.insert(0, os.path.dirname(os.path.abspath(path)))
try:
    runpy.run_path(path, run_name="__main__")
except _Captured as c:
    print("@@OPTIONS@@" + json.dumps(sorted(c.args[0]._option_string_actions)))
    sys.exit(0)
sys.exit(3)
"""


def _options_from_source(source: str) -> set[str]:
    """Option strings of every add_argument(...) call with literal names in a tool's source."""
    opts = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Call) and getattr(node.func, "attr", None) == "add_argument":
            opts |= {a.value for a in node.args if isinstance(a, ast.Constant) and isinstance(a.value, str)
                     and a.value.startswith("-")}
    return opts | {"-h", "--help"}


@functools.lru_cache(maxsize=None)
def tool_options(tool: str, root: str = str(ROOT)) -> tuple[str, frozenset[str]]:
    """(how they were read, option strings) of tools/X.py: a subcommand wrapper's are the subcommand's."""
    path = Path(root) / tool
    source = path.read_text(encoding="utf-8")
    wrapper = re.search(r"\brun\(\s*[\"']([\w-]+)[\"']", source)
    if wrapper:
        return f"wrapper of lfdn-edge {wrapper.group(1)}", frozenset(cli_options_cached()[wrapper.group(1)])
    try:
        res = subprocess.run([sys.executable, "-c", CAPTURE, str(path)], cwd=root, capture_output=True, text=True, encoding="utf-8",
                             timeout=300)
        for line in res.stdout.splitlines():
            if line.startswith("@@OPTIONS@@"):
                return "its argparse parser", frozenset(json.loads(line[len("@@OPTIONS@@"):]))
    except subprocess.TimeoutExpired:
        pass
    return "the add_argument calls in its source", frozenset(_options_from_source(source))


@functools.lru_cache(maxsize=None)
def cli_options_cached() -> dict[str, frozenset[str]]:
    return {k: frozenset(v) for k, v in cli_options().items()}


# ------------------------------------------------------------------------------------------------------- checker
NUMBER = re.compile(r"^-\d|^-\.\d")


def _flags(args: list[str]) -> list[str]:
    flags = []
    for a in args:
        if a == "--":
            break
        if a.startswith("--") and len(a) > 2:
            flags.append(a.split("=", 1)[0])
        elif a.startswith("-") and len(a) > 1 and not NUMBER.match(a) and a != "-":
            flags.append(a[:2])
    return flags


def _unknown(flag: str, options, what: str) -> str:
    near = difflib.get_close_matches(flag, sorted(options), n=1)
    return f"unknown option {flag!r} of {what}" + (f" (did you mean {near[0]!r}?)" if near else "")


def check_invocations(invs: list[Invocation], cli: dict[str, frozenset[str]] | None = None,
                      tools=tool_options, root: Path = ROOT) -> list[str]:
    """One message per problem: 'FILE:LINE: PROBLEM: COMMAND'."""
    cli = cli_options_cached() if cli is None else cli
    errors = []

    def report(inv, problem):
        errors.append(f"{inv.file}:{inv.line}: {problem}: {inv.text}")

    for inv in invs:
        if inv.kind == "cli":
            sub = inv.target
            if sub in ("", "-h", "--help", "--version"):
                continue
            if sub not in cli:
                if re.fullmatch(r"[a-z][a-z0-9-]*", sub):
                    near = difflib.get_close_matches(sub, sorted(cli), n=1)
                    report(inv, f"unknown subcommand {sub!r} of lfdn-edge"
                                + (f" (did you mean {near[0]!r}?)" if near else ""))
                continue  # SUB, COMMAND, ...: a placeholder
            for flag in _flags(inv.args):
                if flag not in cli[sub]:
                    report(inv, _unknown(flag, cli[sub], f"lfdn-edge {sub}"))
        elif inv.kind == "tool":
            if not (root / inv.target).is_file():
                report(inv, f"no such tool {inv.target!r}")
                continue
            how, options = tools(inv.target)
            for flag in _flags(inv.args):
                if flag not in options:
                    report(inv, _unknown(flag, options, f"{inv.target} (read from {how})"))
        elif inv.kind == "script":
            path = root / inv.target
            if not path.is_file():
                report(inv, f"no such script {inv.target!r}")
                continue
            source = path.read_text(encoding="utf-8")
            for flag in _flags(inv.args):
                if not re.search(rf"(?<![\w-]){re.escape(flag)}(?![\w-])", source):
                    report(inv, f"unknown option {flag!r} of {inv.target} (not in the script)")
    return errors


def check_docs(files: list[Path], root: Path = ROOT, cli=None,
               tools=tool_options) -> tuple[list[Invocation], list[str]]:
    invs, errors = [], []
    for f in files:
        found, bad = invocations(f, root=root)
        invs += found
        errors += bad
    # read the tools' parsers in parallel: each is a child process that imports torch
    used = sorted({i.target for i in invs if i.kind == "tool" and (root / i.target).is_file()})
    if tools is tool_options and root == ROOT:
        with ThreadPoolExecutor(max_workers=min(4, os.cpu_count() or 1)) as pool:
            list(pool.map(tool_options, used))
    return invs, errors + check_invocations(invs, cli, tools, root)


# --------------------------------------------------------------------------------------------------------- links
def github_slug(heading: str) -> str:
    h = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading)   # [text](url) -> text
    h = h.replace("`", "").strip().lower()
    h = re.sub(r"[^\w\- ]", "", h)
    return h.replace(" ", "-")


def anchors(text: str) -> set[str]:
    _, prose = split_markdown(text)
    seen, out = {}, set()
    for _, line in prose:
        m = re.match(r"^#{1,6}\s+(.*?)\s*#*\s*$", line)
        if m:
            slug = github_slug(m.group(1))
            n = seen.get(slug, 0)
            seen[slug] = n + 1
            out.add(slug if n == 0 else f"{slug}-{n}")
    return out


def check_links(files: list[Path], root: Path = ROOT) -> tuple[int, list[str]]:
    """(links checked, problems): every relative link's file exists, and its #anchor is a heading there."""
    errors, count = [], 0
    for f in files:
        text = f.read_text(encoding="utf-8")
        rel = f.relative_to(root)
        _, prose = split_markdown(text)
        # link targets in the prose, code spans removed
        for no, line in prose:
            line = re.sub(r"`[^`]*`", "", line)
            targets = [m.group(1) for m in re.finditer(r"\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)", line)]
            targets += [m.group(1) for m in re.finditer(r"^\s*\[[^\]]+\]:\s*<?(\S+?)>?(\s|$)", line)]
            for target in targets:
                if re.match(r"^[a-z][a-z0-9+.-]*:", target, re.I):   # http:, https:, mailto:
                    continue
                count += 1
                path_part, _, anchor = target.partition("#")
                dest = (f.parent / path_part).resolve() if path_part else f
                if not dest.exists():
                    errors.append(f"{rel}:{no}: link to a missing file: {target}")
                    continue
                if anchor and dest.suffix == ".md" and anchor not in anchors(dest.read_text(encoding="utf-8")):
                    errors.append(f"{rel}:{no}: link to a missing heading #{anchor} in "
                                  f"{dest.relative_to(root) if dest.is_relative_to(root) else dest}: {target}")
    return count, errors


# --------------------------------------------------------------------------------------------------------- tests
def test_every_documented_command_parses_against_the_real_cli():
    files = doc_files()
    assert all(f.is_file() for f in files)
    invs, errors = check_docs(files)
    assert not errors, "commands in the docs that the code does not accept:\n" + "\n".join(errors)
    # the check saw what it should: the Quick start, every subcommand, and the tools
    kinds = {(i.kind, i.target) for i in invs}
    subs = {t for k, t in kinds if k == "cli"}
    assert {"train", "evaluate", "build", "bench", "score", "serve", "export-triton"} <= subs, subs
    assert ("tool", "tools/quality_study.py") in kinds and ("tool", "tools/build_engine.py") in kinds, kinds
    assert ("script", "tools/gpu_check.sh") in kinds, kinds
    assert len(invs) > 50, len(invs)


def test_every_relative_link_in_the_docs_resolves():
    count, errors = check_links(doc_files())
    assert not errors, "broken links:\n" + "\n".join(errors)
    assert count > 20, count


def test_ci_runs_the_readme_tests_command():
    """.ci/run's last line is the command of README.md's Tests section (the contract CI relies on)."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("\n## Tests\n", 1)[1].split("\n## ", 1)[0]
    blocks, _ = split_markdown(section)
    commands = [t for b in blocks if b.lang in SHELL_LANGS for _, t in b.lines if t.strip()]
    assert len(commands) == 1, commands
    last = [line for line in (ROOT / ".ci" / "run").read_text(encoding="utf-8").splitlines() if line.strip()][-1]
    assert last == commands[0]


# ----------------------------------------------------------------------------------- the checks catch mistakes
SYNTHETIC = """# A page

```bash
lfdn-edge build runs/demo/ckpt.pt --backnd onnx --fp16        # misspelled flag
OMP_NUM_THREADS=1 lfdn-edge train --data fmnist-ood \\
    --epochs 3 --out=ckpt.pt --lr-max 3                       # unknown flag on a continuation line
lfdn-edge evaluate --ckpt <ckpt> --json r.json && lfdn-edge scor ckpt.engine x.npy
python tools/build_engine.py ckpt.pt --backend native --fp8
python -m lfdn_edge serve ckpt.engine --max-batch 64 --threshold -0.95 2>/dev/null | tee log
torchrun --nproc_per_node 2 tools/train.py --data fmnist-ood --dist-backend gloo --worldsize 2
curl -s localhost:8000/v2/models/lfdn_edge/ready --no-such-curl-flag   # not ours: not checked
```

Inline: `lfdn-edge bench --backends native --device cpu --warm-up 3`.

```
lfdn-edge score ckpt.engine x.npy --jsn out.json
```
"""


def test_the_checker_reports_misspelled_and_unknown_flags(tmp_path):
    """Mutation: a page with misspelled flags, an unknown subcommand and flags no parser has."""
    page = tmp_path / "page.md"
    page.write_text(SYNTHETIC, encoding="utf-8")
    invs, errors = invocations(page, root=tmp_path)
    errors += check_invocations(invs)   # tools/build_engine.py and tools/train.py: those of this repository
    text = "\n".join(errors)
    expected = [("page.md:4:", "'--backnd'", "did you mean '--backend'"),
                ("page.md:5:", "'--lr-max'", "lfdn-edge train"),
                ("page.md:7:", "unknown subcommand 'scor'", "did you mean 'score'"),
                ("page.md:8:", "'--fp8'", "tools/build_engine.py"),
                ("page.md:10:", "'--worldsize'", "tools/train.py"),
                ("page.md:14:", "'--warm-up'", "did you mean '--warmup'"),
                ("page.md:17:", "'--jsn'", "lfdn-edge score")]
    for where, what, detail in expected:
        assert any(where in e and what in e and detail in e for e in errors), (where, what, detail, text)
    # what is right is not reported: --out=ckpt.pt, --threshold -0.95, the redirection, the pipe, curl, <ckpt>
    assert not any(f"unknown option {s}" in text for s in ("'--out'", "'--threshold'", "'-0'", "'--json'",
                                                          "'--epochs'", "'--max-batch'", "'--dist-backend'",
                                                          "'--nproc_per_node'", "'--no-such-curl-flag'")), text
    assert len(errors) == len(expected), text


def test_a_renamed_flag_in_a_copy_of_the_readme_fails(tmp_path):
    """Mutation: the README with one flag renamed (--max-queue-delay-us -> --max-queue-delay) is reported, by line."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    target = next(n for n, line in enumerate(readme.split("\n"), 1) if "lfdn-edge serve " in line)
    mutated = readme.replace("lfdn-edge serve ckpt.native.bf16.engine --max-batch 64",
                             "lfdn-edge serve ckpt.native.bf16.engine --max-batch-size 64")
    assert mutated != readme
    (tmp_path / "README.md").write_text(mutated, encoding="utf-8")
    invs, errors = invocations(tmp_path / "README.md", root=tmp_path)
    errors += check_invocations(invs)
    assert len(errors) == 1, errors
    assert errors[0].startswith(f"README.md:{target}: unknown option '--max-batch-size' of lfdn-edge serve "
                                "(did you mean '--max-batch'?)"), errors


def test_a_flag_renamed_in_the_code_fails_the_docs():
    """Mutation the other way round: the code renames evaluate's --json; every doc line that uses it is reported."""
    cli = {k: set(v) for k, v in cli_options_cached().items()}
    cli["evaluate"] = (cli["evaluate"] - {"--json"}) | {"--report"}
    invs, errors = check_docs(doc_files(), cli=cli)
    uses = [i for i in invs if i.kind == "cli" and i.target == "evaluate" and "--json" in _flags(i.args)]
    assert uses and len(errors) == len(uses), errors
    assert any(e.startswith("README.md:") and "unknown option '--json' of lfdn-edge evaluate" in e for e in errors)


def test_a_broken_link_is_reported(tmp_path):
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "A.md").write_text("# A page\n\n## Some heading: with `code`, and more\n", encoding="utf-8")
    (tmp_path / "README.md").write_text(
        "# R\n\nSee [a](docs/A.md), [b](docs/A.md#some-heading-with-code-and-more), [c](docs/B.md),\n"
        "[d](docs/A.md#no-such-heading), [e](https://example.com/x), `[f](docs/C.md)` and [g](#r).\n")
    count, errors = check_links(doc_files(tmp_path), root=tmp_path)
    assert count == 5, (count, errors)
    assert errors == ["README.md:3: link to a missing file: docs/B.md",
                      "README.md:4: link to a missing heading #no-such-heading in docs/A.md: docs/A.md#no-such-heading"]


@pytest.mark.parametrize("line,expected", [
    ("A=1 B=2 lfdn-edge build x.pt --fp16", [["A=1", "B=2", "lfdn-edge", "build", "x.pt", "--fp16"]]),
    ("cd x && lfdn-edge score <engine> f.npy # comment --nope", [["cd", "x"], ["lfdn-edge", "score",
                                                                              "PLACEHOLDER_engine", "f.npy"]]),
    ("( . venv/bin/activate && pip install -e '.[serve]' )", [[".", "venv/bin/activate"],
                                                              ["pip", "install", "-e", ".[serve]"]]),
    ("echo \"a\\\"#b\" \\# c # d", [["echo", 'a"#b', "#", "c"]]),
    ("curl -s 'x/#a' http://h/p#frag -o /dev/null -w '%{http_code}\\n' # done", [["curl", "-s", "x/#a",
                                                                             "http://h/p#frag", "-o", "/dev/null",
                                                                             "-w", "%{http_code}\\n"]]),
    ("lfdn-edge bench --json out-$(date +%F).json --quiet 2>&1 | tail", [["lfdn-edge", "bench", "--json",
                                                                         "out-SUBST.json", "--quiet"], ["tail"]]),
])
def test_shell_splitting(line, expected):
    assert shell_commands(line) == expected
