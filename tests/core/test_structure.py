"""The package's shape: no import cycle in haps_core, small modules, integrations that share no code.

Static checks on the source tree (AST and text, nothing faked): every `import` counts, including
function-level ones; only `if TYPE_CHECKING:` blocks are left out, since they never run.
"""

import ast
import io
import re
import tokenize
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
MAX_LINES = 400


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _modules(package: str) -> dict[str, Path]:
    return {_module_name(p): p for p in sorted((ROOT / package).rglob("*.py"))}


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(tree: ast.AST, module: str, is_package: bool, modules: set[str]) -> list[str]:
    """Every module name imported anywhere in `tree`, TYPE_CHECKING blocks aside.

    ``from pkg import sub`` of a submodule counts as importing ``pkg.sub`` (as ``import pkg.sub``
    does): initialising a parent package first is how every import works, not an edge of its own.
    """
    found: list[str] = []

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _is_type_checking(node):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import):
            found.extend(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = module.split(".") if is_package else module.split(".")[:-1]
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            names = [alias.name for alias in node.names]
            subs = [f"{base}.{name}" for name in names if f"{base}.{name}" in modules]
            found.extend(subs)
            if len(subs) < len(names):  # some names are attributes of `base` itself
                found.append(base)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return found


def import_graph(package: str = "haps_core") -> dict[str, set[str]]:
    modules = _modules(package)
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        targets = _imports(tree, name, path.name == "__init__.py", set(modules))
        graph[name] = {t for t in targets if t in modules and t != name}
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def dfs(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return [*stack[stack.index(nxt) :], nxt]
            if nxt not in state and (cycle := dfs(nxt)):
                return cycle
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := dfs(node)):
            return cycle
    return None


def test_the_cycle_finder_finds_a_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_no_import_cycle_in_haps_core():
    graph = import_graph("haps_core")
    assert len(graph) > 20  # the walk really saw the package
    assert find_cycle(graph) is None, " -> ".join(find_cycle(graph) or [])


def test_no_library_module_over_400_lines():
    too_long = {}
    for package in ("haps_core", "haps_integrations"):
        for path in (ROOT / package).rglob("*.py"):
            n = len(path.read_text(encoding="utf-8").splitlines())
            if n > MAX_LINES:
                too_long[str(path.relative_to(ROOT))] = n
    assert not too_long, too_long


def _shape(line: str) -> str:
    """A line with names, strings and numbers abstracted: lines of the same shape compare equal."""
    out = []
    try:
        for tok in tokenize.generate_tokens(io.StringIO(line).readline):
            if tok.type == tokenize.NAME:
                out.append(tok.string if tok.string in _KEYWORDS else "N")
            elif tok.type == tokenize.STRING:
                out.append("S")
            elif tok.type == tokenize.NUMBER:
                out.append("0")
            elif tok.type == tokenize.OP:
                out.append(tok.string)
    except (tokenize.TokenError, IndentationError):
        return re.sub(r"\w+", "N", line.strip())
    return " ".join(out)


_KEYWORDS = set(__import__("keyword").kwlist)


def _code_lines(package: Path) -> list[tuple[str, int, str]]:
    """(file, line number, shape) of every line that is code: no blanks, comments, imports,
    docstrings or `__all__` lists (a package's export list is data, not shared logic)."""
    rows = []
    for path in sorted(package.rglob("*.py")):
        text = path.read_text(encoding="utf-8")
        tree = ast.parse(text)
        skip: set[int] = set()
        for node in ast.walk(tree):
            is_all = isinstance(node, ast.Assign) and any(
                isinstance(t, ast.Name) and t.id == "__all__" for t in node.targets
            )
            if isinstance(node, ast.Import | ast.ImportFrom) or is_all:
                skip.update(range(node.lineno, (node.end_lineno or node.lineno) + 1))
            body = getattr(node, "body", None)
            if isinstance(body, list) and body and isinstance(body[0], ast.Expr):
                first = body[0].value
                if isinstance(first, ast.Constant) and isinstance(first.value, str):  # a docstring
                    skip.update(range(body[0].lineno, (body[0].end_lineno or body[0].lineno) + 1))
        for i, line in enumerate(text.splitlines(), start=1):
            s = line.strip()
            if i in skip or not s or s.startswith("#"):
                continue
            shape = _shape(line)
            if "N" not in shape.split():  # pure data (literals, brackets): tables, not logic
                continue
            rows.append((path.name, i, shape))
    return rows


def shared_runs(a: Path, b: Path, run: int = 6) -> list[tuple[str, int, str, int]]:
    """Places where `run` consecutive code lines of `a` have the same shape as `run` of `b`."""
    rows_a, rows_b = _code_lines(a), _code_lines(b)
    windows: dict[tuple[str, ...], tuple[str, int]] = {}
    for i in range(len(rows_b) - run + 1):
        if len({r[0] for r in rows_b[i : i + run]}) == 1:
            windows.setdefault(tuple(r[2] for r in rows_b[i : i + run]), rows_b[i][:2])
    hits = []
    for i in range(len(rows_a) - run + 1):
        chunk = rows_a[i : i + run]
        if len({r[0] for r in chunk}) != 1:
            continue
        other = windows.get(tuple(r[2] for r in chunk))
        if other is not None:
            hits.append((chunk[0][0], chunk[0][1], *other))
    return hits


def test_the_shared_run_finder_sees_renamed_copies(tmp_path):
    body = "def f(x, y):\n    z = x + 1\n    if z > y:\n        return z\n    w = [z, y]\n    return w\n"
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    (tmp_path / "a" / "m.py").write_text(body)
    (tmp_path / "b" / "m.py").write_text(body.replace("x", "q").replace("1", "7"))
    assert shared_runs(tmp_path / "a", tmp_path / "b")
    (tmp_path / "b" / "m.py").write_text("def g(a):\n    return a\n")
    assert not shared_runs(tmp_path / "a", tmp_path / "b")


def test_the_integrations_share_no_code():
    lc, li = ROOT / "haps_integrations" / "langchain", ROOT / "haps_integrations" / "llamaindex"
    assert lc.is_dir() and li.is_dir()
    hits = shared_runs(lc, li)
    assert not hits, hits[:10]
