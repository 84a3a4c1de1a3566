"""The cookbook notebooks run top to bottom, offline, and are committed without outputs.

Each notebook is executed by a real Jupyter kernel (nbclient, the venv's ``python3`` kernelspec
from ipykernel) with the working directory ``cookbook/``, as a user would run it. The kernel
inherits this process's environment, so it runs with ``HF_HUB_OFFLINE=1`` and without
``HF_TOKEN`` (the Hub cell of 04 then only says it is skipped), and with one torch thread
(``OMP_NUM_THREADS=1``; ``HAPS_NOTEBOOK_THREADS`` overrides it). The kernel talks to nbclient over
TCP on loopback, hence ``enable_socket`` for pytest-socket.

The executed copy stays in memory: the files on disk keep no outputs, which the second test checks.
"""

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
COOKBOOK = ROOT / "cookbook"
NOTEBOOKS = sorted(COOKBOOK.glob("*.ipynb"))
# notebooks that build their example from the haps-bench data and cannot run without it
# (01 runs without it too: it says so and skips its evaluation section)
NEEDS_DATA = {"04_train_your_own.ipynb"}


def test_the_cookbook_has_notebooks():
    assert [p.name for p in NOTEBOOKS][:4] == [
        "01_quickstart.ipynb",
        "02_langchain.ipynb",
        "03_llamaindex.ipynb",
        "04_train_your_own.ipynb",
    ]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_is_committed_without_outputs(path):
    nbformat = pytest.importorskip("nbformat")
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    assert nb.metadata.get("kernelspec", {}).get("name") == "python3"
    for i, cell in enumerate(nb.cells):
        if cell.cell_type != "code":
            continue
        where = f"{path.name} cell {i} ({cell.source.splitlines()[0][:40] if cell.source else ''!r})"
        assert cell.outputs == [], f"{where} has outputs: clear them before committing"
        assert cell.execution_count is None, f"{where} has an execution count"
        assert "execution" not in cell.metadata, f"{where} has execution timings in its metadata"


@pytest.mark.slow
@pytest.mark.enable_socket
@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_runs_top_to_bottom(path, monkeypatch):
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    pytest.importorskip("ipykernel")
    if path.name in NEEDS_DATA:
        from haps_core.paths import data_dir

        if data_dir(required=False) is None:
            pytest.skip(f"{path.name} needs the haps-bench data ($HAPS_DATA_DIR)")
    # the kernel inherits the environment: offline, no Hub token, quiet tokenizers
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TOKENIZERS_PARALLELISM", "false")
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.delenv("HUGGING_FACE_HUB_TOKEN", raising=False)
    # One torch thread: the notebooks run small models (token-by-token decoding of a 135M LM,
    # MiniLM on short batches), where a second thread gains little on an idle machine but, on a
    # busy 2-core CI runner, makes every op wait for a preempted thread (SmolLM2 decoding 48
    # tokens: 5 s with one thread, 25-30 s with two, measured under load).
    monkeypatch.setenv("OMP_NUM_THREADS", os.environ.get("HAPS_NOTEBOOK_THREADS", "1"))

    nb = nbformat.read(path, as_version=4)
    client = nbclient.NotebookClient(
        nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(COOKBOOK)}}
    )
    try:
        client.execute()
    except nbclient.exceptions.CellExecutionError as exc:
        pytest.fail(f"{path.name} failed:\n{exc}", pytrace=False)
    errors = [
        f"cell {i}: {out.ename}: {out.evalue}"
        for i, cell in enumerate(nb.cells)
        if cell.cell_type == "code"
        for out in cell.outputs
        if out.output_type == "error"
    ]
    assert not errors, errors
    ran = [c for c in nb.cells if c.cell_type == "code"]
    assert all(c.execution_count is not None for c in ran), "some code cells did not run"
