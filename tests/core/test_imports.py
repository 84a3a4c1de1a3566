"""`haps_core` must never import LangChain or LlamaIndex (they are optional extras)."""

import pathlib
import subprocess
import sys

CODE = r"""
import builtins, importlib, pkgutil, sys
real = builtins.__import__
def guard(name, *a, **k):
    if name.split('.')[0] in ('langchain', 'langchain_core', 'llama_index'):
        raise ImportError('haps_core imported ' + name)
    return real(name, *a, **k)
builtins.__import__ = guard
import warnings
warnings.simplefilter('ignore', DeprecationWarning)  # the old-path shims warn on import
import haps_core
mods = [m.name for m in pkgutil.walk_packages(haps_core.__path__, 'haps_core.')]
for name in mods:
    importlib.import_module(name)
bad = [m for m in sys.modules if m.split('.')[0] in ('langchain', 'langchain_core', 'llama_index')]
assert not bad, bad
print('ok', len(mods))
"""


def test_haps_core_imports_no_framework():
    res = subprocess.run([sys.executable, "-c", CODE], capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    assert res.stdout.startswith("ok")


def test_no_framework_import_statements_in_source():
    root = pathlib.Path(__file__).resolve().parents[2] / "haps_core"
    for path in root.rglob("*.py"):
        for line in path.read_text().splitlines():
            s = line.strip()
            assert not s.startswith(
                ("import langchain", "from langchain", "import llama_index", "from llama_index")
            ), f"{path.relative_to(root)}: {s}"
