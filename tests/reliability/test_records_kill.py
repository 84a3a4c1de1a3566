"""Issue 17 acceptance: a process SIGKILLed while writing records leaves a usable store.

Real parts only: a child Python process writes decision records through the real stores as fast
as it can and prints each id once its write returned (for SQLite: once its transaction
committed); the test kills it with SIGKILL mid-stream. The SQLite file must then open and hold
every id the child printed; the JSONL file must parse line by line, except at most a torn last
line, which reading detects and skips with a warning.
"""

import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from haps_core.feedback import JSONLStore, SQLiteStore, give_feedback

ROOT = Path(__file__).resolve().parents[2]

CHILD = r"""
import sys
from haps_core.feedback import make_record, open_store
from tests.helpers.fake_router import FakeRouter

store = open_store(sys.argv[1])
router = FakeRouter()
(decision,) = router.route(["a hard question"])
haps = {"parameters": dict(decision.parameters), "served_by": {"backend": decision.backend, "parameters": {}}}
i = 0
while True:
    batch = [make_record(decision, f"query {i + k}", [], haps=haps, output="x" * 20000) for k in range(5)]
    store.write(batch)
    i += len(batch)
    print(" ".join(r.decision_id for r in batch), flush=True)
"""


def _write_then_kill(spec: Path, wanted: int = 60) -> list[str]:
    """Runs the child until it printed ``wanted`` committed batches, SIGKILLs it, returns the ids."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(spec)], stdout=subprocess.PIPE, text=True, env=env, cwd=ROOT
    )
    committed: list[str] = []
    deadline = time.monotonic() + 120
    try:
        assert child.stdout is not None
        while len(committed) < wanted * 5 and time.monotonic() < deadline:
            line = child.stdout.readline()
            if not line:
                break
            committed += line.split()
        os.kill(child.pid, signal.SIGKILL)  # mid-write: the child never stops on its own
    finally:
        child.kill()
        child.wait()
    assert child.returncode == -signal.SIGKILL
    assert len(committed) >= wanted * 5, "the child did not get going"
    return committed


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs POSIX signals")
def test_issue17_sigkilled_writer_leaves_sqlite_with_every_committed_record(tmp_path):
    path = tmp_path / "records.db"
    committed = _write_then_kill(path)
    store = SQLiteStore(path)  # opens (recovering the WAL) after the kill
    held = {r.decision_id for r in store.records()}
    assert set(committed) <= held
    give_feedback(store, committed[-1], 1.0)  # and stays writable
    assert [e.decision_id for e in store.feedback_entries()] == [committed[-1]]


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs POSIX signals")
def test_issue17_sigkilled_writer_leaves_jsonl_whose_lines_parse(tmp_path, caplog):
    path = tmp_path / "records.jsonl"
    committed = _write_then_kill(path)
    data = path.read_bytes()
    lines = data.split(b"\n")
    torn = not data.endswith(b"\n")
    store = JSONLStore(path)
    with caplog.at_level(logging.WARNING):
        held = [r.decision_id for r in store.records()]
    assert set(committed) <= set(held)
    assert len(held) == len([x for x in lines if x.strip()]) - torn  # every complete line parsed
    assert ("torn last line" in caplog.text) == torn
    # a torn tail, should the kill not have made one, is made here the way a kill makes it
    path.write_bytes(data + b'{"type": "record", "decision_id": "cut-sh')
    with caplog.at_level(logging.WARNING):
        assert [r.decision_id for r in store.records()] == held
    assert "torn last line" in caplog.text
