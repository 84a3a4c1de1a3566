"""Every fenced code block of README.md runs, so the README cannot drift from the code (issue 7).

How a block is checked, by its language:

- ```python: the block alone, in a fresh interpreter (this venv's python), in a fresh temporary
  directory. Each block must run on its own (its imports and set-up included): blocks are not
  chained. The script is padded so that line numbers in a traceback are README.md line numbers.
- ```bash (or sh, shell): the block as one script (``set -euo pipefail``) in a fresh temporary
  directory, with this venv's ``bin`` first on ``PATH``, so ``haps`` is the installed console
  script and runs exactly as written. A failing command is reported with its README.md line.
- ```json: parsed. ```text: not code, not checked. Any other language (or none) fails the test
  until this module says how to check it.

Besides, every ``--flag`` the README names, in prose too, must be an option of a ``haps``
sub-command or of a script in ``benchmarks/``.

Every block runs offline (``HF_HUB_OFFLINE=1``, no Hub token), with one torch thread and with
``HAPS_DATA_DIR`` pointing at the haps-bench data. The temporary directory stands in for the
repository root the README's commands are run from: it holds symlinks to the repository's
top-level entries (``cookbook/``, ``benchmarks/``, ...), so paths such as
``cookbook/sample_queries.jsonl`` resolve, while everything a block writes (``out/...``,
``my-router/``, ``decisions.jsonl``) lands in the temporary directory, never in the checkout.

Files the README presents as the reader's own (``queries.jsonl``, ``my_logs.jsonl``, ...) are put
in that directory by `USER_FILES`, built from the cookbook's sample queries and from the haps-bench
data; ``my_logs.jsonl`` is a small dense slice of haps-bench (100 queries x 8 actions) so that
``haps train`` and ``haps eval --router`` on it take seconds, not minutes. A test checks that every
one of them is still named by some block.

A block that cannot run here carries a marker, an HTML comment (invisible on GitHub) on the line
right before its opening fence, with a reason:

- ``<!-- readme-test: skip="make; pip install" reason="..." -->`` (shell blocks): the commands that
  start with one of these prefixes are not run; the others in the block still run. Only the
  prefixes of `SKIPPABLE` may be skipped (commands that install packages, call ``make``, which
  sets up a venv, or upload to the Hub); CI's ``make test`` exercises the set-up itself. Skipped
  commands are still checked statically: a ``make`` target must exist in the Makefile, a ``pip
  install`` must name existing extras and the torch pin of the Makefile, and a ``haps`` command's
  arguments must pass the ``haps`` argument parser.
- ``<!-- readme-test: syntax-only reason="..." -->``: the block is not run (it needs the network,
  or takes minutes). A Python block is compiled, its imports must resolve and the calls it makes
  on the imported names (and on what their annotated return values are) must fit their
  signatures; a shell block is checked by ``bash -n`` and its ``haps``
  commands by the argument parser. At most `MAX_SYNTAX_ONLY` blocks may be marked so.
"""

import argparse
import ast
import contextlib
import gzip
import importlib
import inspect
import io
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
import typing
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
VENV_BIN = Path(sys.executable).parent
RUN_TIMEOUT_S = 600

SHELL_LANGS = {"bash", "sh", "shell"}
PYTHON_LANGS = {"python", "py"}
# command prefixes a `skip` marker may name: they install, set up a venv, or upload
SKIPPABLE = ("make", "pip install", "git clone", "haps push")
MAX_SKIPPED_COMMANDS = 10
MAX_SYNTAX_ONLY = 2

_FENCE = re.compile(r"^(?P<fence>`{3,}|~{3,})\s*(?P<lang>[\w+-]*)")
_MARKER = re.compile(r"^<!--\s*readme-test:(?P<body>.*?)-->\s*$")
_ATTR = re.compile(r'(?P<key>[\w-]+)(?:="(?P<value>[^"]*)")?')
_MARKER_KEYS = {"skip", "syntax-only", "reason"}


@dataclass
class Block:
    lang: str
    line: int  # README.md line of the opening fence (1-based)
    code: str
    marker: dict[str, str] = field(default_factory=dict)
    marker_line: int | None = None

    @property
    def first_code_line(self) -> int:
        return self.line + 1

    @property
    def id(self) -> str:
        return f"L{self.line}-{self.lang}"

    @property
    def skip_prefixes(self) -> list[str]:
        return [p.strip() for p in self.marker.get("skip", "").split(";") if p.strip()]


def parse_marker(text: str) -> dict[str, str] | None:
    m = _MARKER.match(text.strip())
    if m is None:
        return None
    return {a["key"]: a["value"] if a["value"] is not None else "" for a in _ATTR.finditer(m["body"])}


def readme_blocks(text: str | None = None) -> list[Block]:
    lines = (README.read_text(encoding="utf-8") if text is None else text).splitlines()
    blocks, i = [], 0
    while i < len(lines):
        m = _FENCE.match(lines[i])
        if m is None:
            i += 1
            continue
        fence, start = m["fence"], i
        j = i + 1
        while j < len(lines) and not (
            lines[j].startswith(fence[0] * len(fence)) and not lines[j].strip(fence[0]).strip()
        ):
            j += 1
        if j == len(lines):
            raise AssertionError(f"README.md:{start + 1}: code fence never closed")
        block = Block(m["lang"].lower(), start + 1, "\n".join(lines[start + 1 : j]) + "\n")
        if start > 0 and (marker := parse_marker(lines[start - 1])) is not None:
            block.marker, block.marker_line = marker, start
        blocks.append(block)
        i = j + 1
    return blocks


BLOCKS = readme_blocks()
RUNNABLE = [b for b in BLOCKS if b.lang in PYTHON_LANGS | SHELL_LANGS]


# --- shell commands -----------------------------------------------------------------------------


@dataclass
class Command:
    line: int  # README.md line where the command starts
    n_lines: int
    text: str

    @property
    def argv(self) -> list[str]:
        return shlex.split(self.text, comments=True)

    def starts_with(self, prefix: str) -> bool:
        words = prefix.split()
        return self.argv[: len(words)] == words


def shell_commands(block: Block) -> list[Command]:
    """The block's commands (backslash continuations joined), blank and comment lines left out."""
    commands, pending, start = [], [], 0
    for offset, raw in enumerate(block.code.splitlines()):
        if not pending:
            start = offset
        if raw.rstrip().endswith("\\"):
            pending.append(raw.rstrip()[:-1])
            continue
        pending.append(raw)
        text = " ".join(pending)
        if shlex.split(text, comments=True):
            commands.append(Command(block.first_code_line + start, len(pending), text))
        pending = []
    return commands


def skipped_commands(block: Block) -> list[Command]:
    return [c for c in shell_commands(block) if any(c.starts_with(p) for p in block.skip_prefixes)]


def haps_parser_error(argv: list[str]) -> str | None:
    """What the `haps` argument parser says about `haps ARGV` (None: it accepts them)."""
    from haps_core.cli import build_parser

    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        try:
            build_parser().parse_args(argv)
        except SystemExit as exc:
            return err.getvalue().strip() or f"exit {exc.code}"
    return None


def makefile_targets() -> set[str]:
    text = (ROOT / "Makefile").read_text(encoding="utf-8")
    return {m[1] for m in re.finditer(r"^([\w.-]+)\s*:(?!=)", text, flags=re.M)}


def static_problems(cmd: Command) -> list[str]:
    """Checks a command that is not run: what can be checked without running it."""
    argv, where = cmd.argv, f"README.md:{cmd.line}: `{cmd.text.strip()}`"
    problems = []
    if argv[0] == "haps":
        if (error := haps_parser_error(argv[1:])) is not None:
            problems.append(f"{where}: the haps parser rejects it: {error}")
    elif argv[0] == "make":
        targets = makefile_targets()
        problems += [f"{where}: no target {t!r} in the Makefile" for t in argv[1:] if t not in targets]
    elif argv[:2] == ["pip", "install"]:
        extras = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"])
        makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
        for arg in argv[2:]:
            if m := re.fullmatch(r"\.\[([\w,-]+)\]", arg):
                missing = [e for e in m[1].split(",") if e not in extras]
                problems += [f"{where}: no extra {e!r} in pyproject.toml" for e in missing]
            elif "==" in arg and arg not in makefile:
                problems.append(f"{where}: the Makefile does not pin {arg}")
    return problems


# --- Python blocks that are not run ---------------------------------------------------------------


def _returned_class(func: Callable) -> type | None:
    try:
        hint = typing.get_type_hints(func).get("return")
    except Exception:
        return None
    return hint if isinstance(hint, type) else None


def _signature_problem(func: object, call: ast.Call, bound_to_instance: bool) -> str | None:
    if any(isinstance(a, ast.Starred) for a in call.args) or any(k.arg is None for k in call.keywords):
        return None
    try:
        sig = inspect.signature(func)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    args = [None] * (len(call.args) + bound_to_instance)
    try:
        sig.bind(*args, **{k.arg: None for k in call.keywords if k.arg})
    except TypeError as exc:
        return f"does not fit {getattr(func, '__qualname__', func)}{sig}: {exc}"
    return None


def python_name_problems(source: str, first_line: int) -> list[str]:
    """Imports must resolve; attributes and calls on the imported names must exist and fit.

    Follows one step of assignment: ``x = Name.method(...)`` types ``x`` by the method's return
    annotation, so ``x.other(...)`` is checked against that class too.
    """
    tree = ast.parse(source)
    names: dict[str, object] = {}  # name -> module, class or function
    instances: dict[str, type] = {}  # name -> class of the instance bound to it
    problems = []

    def where(node: ast.AST) -> str:
        return f"README.md:{first_line + getattr(node, 'lineno', 1) - 1}"

    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                try:
                    module = importlib.import_module(alias.name)
                except ImportError as exc:
                    problems.append(f"{where(node)}: import {alias.name}: {exc}")
                    continue
                names[alias.asname or alias.name.split(".")[0]] = (
                    module if alias.asname else importlib.import_module(alias.name.split(".")[0])
                )
        elif isinstance(node, ast.ImportFrom) and node.module:
            try:
                module = importlib.import_module(node.module)
            except ImportError as exc:
                problems.append(f"{where(node)}: from {node.module} import ...: {exc}")
                continue
            for alias in node.names:
                if not hasattr(module, alias.name):
                    problems.append(f"{where(node)}: {node.module} has no {alias.name!r}")
                else:
                    names[alias.asname or alias.name] = getattr(module, alias.name)

    def resolve(node: ast.expr) -> tuple[object | None, bool]:
        """The object an expression names (None: unknown) and whether it is an instance's."""
        if isinstance(node, ast.Name):
            if node.id in instances:
                return instances[node.id], True
            return names.get(node.id), False
        if isinstance(node, ast.Attribute):
            base, of_instance = resolve(node.value)
            if base is None:
                return None, False
            if not hasattr(base, node.attr):
                if not of_instance:  # instance attributes set in __init__ are not on the class
                    problems.append(f"{where(node)}: {getattr(base, '__name__', base)} has no {node.attr!r}")
                return None, False
            attr = inspect.getattr_static(base, node.attr) if of_instance else None
            bound = of_instance and not isinstance(attr, classmethod | staticmethod)
            return getattr(base, node.attr), bound
        return None, False

    for node in ast.walk(tree):
        if isinstance(node, ast.Assign) and isinstance(node.value, ast.Call):
            func, _ = resolve(node.value.func)
            cls = func if isinstance(func, type) else _returned_class(func) if callable(func) else None
            for target in node.targets:
                if isinstance(target, ast.Name) and cls is not None:
                    instances[target.id] = cls
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            if isinstance(node.func, ast.Attribute):  # a method called on an instance must exist
                base, of_instance = resolve(node.func.value)
                if of_instance and base is not None and not hasattr(base, node.func.attr):
                    problems.append(f"{where(node)}: {base.__name__} has no method {node.func.attr!r}")
            func, bound = resolve(node.func)
            if func is not None and (problem := _signature_problem(func, node, bound)):
                problems.append(f"{where(node)}: {ast.unparse(node)[:80]} {problem}")
    return problems


# --- the reader's own files -----------------------------------------------------------------------


def _data_dir() -> Path | None:
    from haps_core.paths import data_dir

    return data_dir(required=False)


def _my_logs(dest: Path) -> None:
    """100 queries of haps-bench's renze-concise-cot, each with all 8 of its actions observed.

    Dense, so a 20% hold-out leaves one evaluation block of >= 20 queries for `haps eval --router`.
    """
    lines_by_query: dict[str, list[str]] = {}
    actions: dict[str, set] = {}
    with gzip.open(_data_dir() / "logs.jsonl.gz", "rt", encoding="utf-8") as fh:  # type: ignore[operator]
        for line in fh:
            row = json.loads(line)
            if row.get("dataset") != "renze-concise-cot":
                continue
            lines_by_query.setdefault(row["query_id"], []).append(line)
            actions.setdefault(row["query_id"], set()).add(
                (row["model"], row.get("prompt_style"), row.get("temperature"))
            )
    full = max(len(a) for a in actions.values())
    dense = [q for q in lines_by_query if len(actions[q]) == full][:100]
    assert len(dense) == 100, f"haps-bench has only {len(dense)} fully observed renze-concise-cot queries"
    dest.write_text("".join(line for q in dense for line in lines_by_query[q]), encoding="utf-8")


# file name -> (needs the haps-bench data, writes it into the given path)
USER_FILES: dict[str, tuple[bool, Callable[[Path], object]]] = {
    "queries.jsonl": (False, lambda p: shutil.copyfile(ROOT / "cookbook" / "sample_queries.jsonl", p)),
    "logs.jsonl.gz": (True, lambda p: shutil.copyfile(_data_dir() / "logs.jsonl.gz", p)),  # type: ignore[operator]
    "prices.json": (True, lambda p: shutil.copyfile(_data_dir() / "prices.json", p)),  # type: ignore[operator]
    "my_logs.jsonl": (True, _my_logs),
}


def _names(block: Block, name: str) -> bool:
    return re.search(rf"(?<![\w./-]){re.escape(name)}(?![\w-])", block.code) is not None


@pytest.fixture(scope="session")
def user_files(tmp_path_factory: pytest.TempPathFactory) -> Callable[[Block, Path], None]:
    made = tmp_path_factory.mktemp("readme-user-files")

    def provide(block: Block, workdir: Path) -> None:
        for name, (needs_data, make) in USER_FILES.items():
            if not _names(block, name):
                continue
            if needs_data and _data_dir() is None:
                pytest.skip(f"README.md:{block.line} uses {name}, made from haps-bench ($HAPS_DATA_DIR)")
            if not (made / name).exists():
                make(made / name)
            if (workdir / name).is_symlink():  # never write through a link into the checkout
                (workdir / name).unlink()
            shutil.copyfile(made / name, workdir / name)

    return provide


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    """A temporary stand-in for the repository root: its top-level entries, symlinked."""
    for entry in ROOT.iterdir():
        if entry.name.startswith(".") or entry.name in {"out", "build", "dist", "__pycache__"}:
            continue
        (tmp_path / entry.name).symlink_to(entry)
    return tmp_path


def block_env() -> dict[str, str]:
    env = dict(os.environ)
    for name in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "OPENAI_API_KEY", "ANTHROPIC_API_KEY"):
        env.pop(name, None)
    env.update(
        PATH=f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}",
        HF_HUB_OFFLINE="1",
        HF_HUB_DISABLE_PROGRESS_BARS="1",
        TOKENIZERS_PARALLELISM="false",
        OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", "1"),
        MPLBACKEND="Agg",
        PYTHONUNBUFFERED="1",
    )
    if (data := _data_dir()) is not None:
        env["HAPS_DATA_DIR"] = str(data)
    return env


def _tail(text: str, n: int = 6000) -> str:
    return text if len(text) <= n else "...\n" + text[-n:]


# --- the tests ------------------------------------------------------------------------------------


def test_the_readme_has_runnable_blocks():
    assert len([b for b in RUNNABLE if b.lang in PYTHON_LANGS]) >= 3
    assert len([b for b in RUNNABLE if b.lang in SHELL_LANGS]) >= 3
    assert any("haps route" in b.code for b in RUNNABLE if b.lang in SHELL_LANGS)


def test_the_block_parser():
    text = (
        'intro\n\n<!-- readme-test: skip="make" reason="sets up" -->\n```bash\nmake demo \\\n'
        "  --x   # c\n# only a comment\n\nhaps route --query hi\n```\n\n````python\n```\nx = 1\n````\n"
    )
    bash, python = readme_blocks(text)
    assert (bash.lang, bash.line, bash.marker) == ("bash", 4, {"skip": "make", "reason": "sets up"})
    cmds = shell_commands(bash)
    assert [(c.line, c.n_lines, c.argv) for c in cmds] == [
        (5, 2, ["make", "demo", "--x"]),
        (9, 1, ["haps", "route", "--query", "hi"]),
    ]
    assert [c.line for c in skipped_commands(bash)] == [5]
    assert (python.lang, python.line, python.code) == ("python", 12, "```\nx = 1\n")


def test_every_block_has_a_language_this_test_handles():
    handled = PYTHON_LANGS | SHELL_LANGS | {"json", "text"}
    unknown = [f"README.md:{b.line}: ```{b.lang}" for b in BLOCKS if b.lang not in handled]
    assert not unknown, f"blocks of a language tests/docs/test_readme.py does not check: {unknown}"
    for b in BLOCKS:
        if b.lang == "json":
            json.loads(b.code)


def test_markers_are_few_explained_and_attached():
    text = README.read_text(encoding="utf-8").splitlines()
    attached = {b.marker_line for b in BLOCKS if b.marker_line}
    for n, line in enumerate(text, start=1):
        if "<!--" in line and "readme-test" in line:
            assert parse_marker(line) is not None, f"README.md:{n}: malformed readme-test marker: {line}"
            assert n in attached, f"README.md:{n}: a readme-test marker must sit right before a code fence"
    skipped = 0
    for b in BLOCKS:
        if not b.marker:
            continue
        where = f"README.md:{b.marker_line}"
        assert set(b.marker) <= _MARKER_KEYS, f"{where}: unknown marker keys {set(b.marker) - _MARKER_KEYS}"
        assert b.marker.get("reason", "").strip(), f'{where}: a readme-test marker needs a reason="..."'
        one_mode = ("skip" in b.marker) != ("syntax-only" in b.marker)
        assert one_mode, f"{where}: give one of skip=... or syntax-only"
        if "skip" in b.marker:
            assert b.lang in SHELL_LANGS, f"{where}: skip=... is for shell blocks; use syntax-only"
            for prefix in b.skip_prefixes:
                assert prefix in SKIPPABLE, f"{where}: {prefix!r} may not be skipped (only {SKIPPABLE})"
                used = any(c.starts_with(prefix) for c in shell_commands(b))
                assert used, f"{where}: no {prefix!r} command in the block"
            skipped += len(skipped_commands(b))
    assert skipped <= MAX_SKIPPED_COMMANDS, f"{skipped} README commands are skipped: run more of them"
    syntax_only = [b.id for b in BLOCKS if "syntax-only" in b.marker]
    assert len(syntax_only) <= MAX_SYNTAX_ONLY, f"too many syntax-only blocks: {syntax_only}"


def test_every_user_file_is_named_by_a_block():
    unused = [name for name in USER_FILES if not any(_names(b, name) for b in RUNNABLE)]
    assert not unused, f"USER_FILES the README no longer uses (drop them): {unused}"


@pytest.mark.parametrize("block", RUNNABLE, ids=lambda b: b.id)
def test_readme_block(block: Block, workdir: Path, user_files: Callable[[Block, Path], None]):
    where = f"README.md:{block.line} (```{block.lang})"
    if block.lang in PYTHON_LANGS:
        # padded so that traceback line numbers are README.md line numbers
        source = "\n" * (block.first_code_line - 1) + block.code
        compile(source, "README.md", "exec")  # a SyntaxError names the README line
        if "syntax-only" in block.marker:
            problems = python_name_problems(block.code, block.first_code_line)
            assert not problems, f"{where} (syntax-only: {block.marker['reason']}):\n" + "\n".join(problems)
            return
        user_files(block, workdir)
        script = workdir / f"readme_block_{block.line}.py"
        script.write_text(source, encoding="utf-8")
        argv = [sys.executable, script.name]
    else:
        commands = shell_commands(block)
        skipped = {c.line for c in skipped_commands(block)}
        syntax_only = "syntax-only" in block.marker
        problems = [p for c in commands if syntax_only or c.line in skipped for p in static_problems(c)]
        assert not problems, f"{where}: commands not run fail their static checks:\n" + "\n".join(problems)
        syntax = subprocess.run(["bash", "-n"], input=block.code, text=True, capture_output=True, check=False)
        assert syntax.returncode == 0, f"{where}: bash -n: {syntax.stderr}"
        if syntax_only:
            return
        assert (VENV_BIN / "haps").exists(), f"no haps console script next to {sys.executable}"
        lines = block.code.splitlines()
        for c in commands:  # skipped commands become no-ops; line numbers stay
            if c.line in skipped:
                start = c.line - block.first_code_line
                lines[start : start + c.n_lines] = [": skipped"] * c.n_lines
        # README line of a script line: the first code line is script line 2
        prelude = (
            "set -euo pipefail; "
            f"trap 'echo \"README.md:$(( LINENO + {block.first_code_line - 2} )): command failed\" >&2' ERR"
        )
        user_files(block, workdir)
        script = workdir / f"readme_block_{block.line}.sh"
        script.write_text(prelude + "\n" + "\n".join(lines) + "\n", encoding="utf-8")
        argv = ["bash", script.name]
    proc = subprocess.run(
        argv, cwd=workdir, env=block_env(), capture_output=True, text=True, timeout=RUN_TIMEOUT_S, check=False
    )
    if proc.returncode != 0:
        hint = "; traceback line numbers are README.md lines" if block.lang in PYTHON_LANGS else ""
        pytest.fail(
            f"{where} failed (exit {proc.returncode}) in {workdir}{hint}\n--- stderr\n{_tail(proc.stderr)}"
            f"\n--- stdout\n{_tail(proc.stdout, 2000)}",
            pytrace=False,
        )


def test_every_flag_the_readme_names_exists():
    """Flags in the prose too (`--holdout-fraction F`, ...): each is an option of a `haps`
    sub-command or of a script in benchmarks/."""
    from haps_core.cli import build_parser

    parser = build_parser()
    known = set(parser._option_string_actions)
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                known |= set(sub._option_string_actions)
    for script in (ROOT / "benchmarks").glob("*.py"):
        known |= set(re.findall(r'add_argument\(\s*"(--[\w-]+)"', script.read_text(encoding="utf-8")))
    text = README.read_text(encoding="utf-8")
    flags = re.finditer(r"(?<![\w-])(--[a-z][\w-]*)", text)
    named = {m[1]: text.count("\n", 0, m.start()) + 1 for m in flags}
    unknown = [f"README.md:{line}: {flag}" for flag, line in named.items() if flag not in known]
    assert not unknown, f"flags no haps sub-command or benchmark script has: {unknown}"


def test_static_checks_catch_drift():
    """The checks applied to blocks that are not run fail on a wrong flag, target or name."""
    block = Block("bash", 1, "haps push --router r --repo-id o/n --no-such-flag\nmake no-such-target\n")
    assert [len(static_problems(c)) for c in shell_commands(block)] == [1, 1]
    assert static_problems(shell_commands(Block("bash", 1, 'pip install -e ".[nope]"\n'))[0])
    good = "from haps_core.cli import build_parser\nparser = build_parser()\nparser.parse_args(['route'])\n"
    assert python_name_problems(good, 1) == []
    bad = (
        "from haps_core.cli import build_parser, nothing_here\n"
        "build_parser(prog='x')\n"
        "import argparse\nargparse.ArgumentParser(no_such_kw=1)\n"
    )
    bad += "parser = build_parser()\nparser.parse_argz([])\n"
    problems = python_name_problems(bad, 10)
    assert len(problems) == 4, problems
    assert problems[0].startswith("README.md:10: haps_core.cli has no 'nothing_here'")
