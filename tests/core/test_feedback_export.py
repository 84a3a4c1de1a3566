"""Issue 17: records + feedback -> routing log v1 that `haps_core.logs` reads and `haps train` trains on.

Real parts: `RecordingRouter` over the FAKE rule router (tests/helpers/fake_router.py: our own
decision code, rule predictions), a SQLite store, `read_logs`, the `haps` CLI (`feedback`,
`logs export`, `train` with a tiny randomly initialised local encoder).
"""

import json

import pytest

from haps_core.cli import main
from haps_core.feedback import RecordingRouter, decision_id_of, export_log, open_store
from haps_core.logs import read_logs
from tests.helpers.fake_router import FakeRouter
from tests.helpers.tiny_models import make_tiny_bert

QUESTIONS = [f"{'a hard' if i % 2 else 'an easy'} question number {i}" for i in range(40)]


def _served(tmp_path, n=None):
    """Routes ``n`` questions at two cost weights through a RecordingRouter; feedback on each."""
    store = open_store(tmp_path / "records.db")
    router = RecordingRouter(FakeRouter(), store)
    ids = []
    for i, text in enumerate(QUESTIONS if n is None else QUESTIONS[:n]):
        (decision,) = router.route([text], cost_weight=0.0 if i % 4 < 2 else 100.0)
        ids.append(decision_id_of(decision))
        router.feedback(ids[-1], 0.0 if decision.backend == "small" and "hard" in text else 1.0)
    router.flush()
    return store, router, ids


def test_issue17_recording_router_writes_one_record_per_query(tmp_path):
    store, router, ids = _served(tmp_path, 6)
    records = store.records()
    assert [r.decision_id for r in records] == ids
    assert {r.source for r in records} == {"router"}
    assert [r.query for r in records] == QUESTIONS[:6]
    decisions = router.route(["plain"], record=False)
    with pytest.raises(ValueError, match="no decision_id"):
        decision_id_of(decisions[0])
    router.record(decisions[0], "plain", output="hello", latency_s=0.2)
    router.flush()
    last = store.get(decision_id_of(decisions[0]))
    assert (last.response, last.latency_s) == ("hello", 0.2)


def test_issue17_export_is_read_by_haps_core_logs(tmp_path):
    store, _, ids = _served(tmp_path)
    out = tmp_path / "export.jsonl"
    summary = export_log(store, out)
    assert summary.rows == len(QUESTIONS) and summary.without_feedback == 0
    log = read_logs(out)
    assert log.n_rows == len(QUESTIONS) and log.n_queries == len(QUESTIONS)
    assert log.propensity is not None and set(log.propensity.tolist()) == {1.0}
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["decision_id"] for r in rows] == ids
    backends = {r["model"] for r in rows}
    assert backends == {"small", "large"}  # both cost weights served
    for row in rows:
        expected = 0.0 if row["model"] == "small" and "hard" in row["query"] else 1.0
        assert row["score"] == expected


def test_issue17_cli_feedback_export_and_train(tmp_path, capsys):
    store, _, ids = _served(tmp_path)
    db = str(tmp_path / "records.db")
    assert main(["feedback", "--store", db, "--id", ids[0], "--score", "down"]) == 0
    assert capsys.readouterr().out.split() == [ids[0], "0", "thumbs"]
    assert main(["feedback", "--store", db, "--id", "nope", "--score", "1"]) == 2
    assert "no decision record with decision_id 'nope'" in capsys.readouterr().err
    assert main(["feedback", "--store", db, "--id", ids[1], "--score", "7"]) == 2
    assert "[0, 1]" in capsys.readouterr().err
    log = tmp_path / "export.jsonl"
    assert main(["logs", "export", "--store", db, "--output", str(log)]) == 0
    assert f"wrote {len(QUESTIONS)} rows" in capsys.readouterr().err
    first = json.loads(log.read_text().splitlines()[0])
    assert (first["decision_id"], first["score"]) == (ids[0], 0.0)  # the latest feedback wins
    enc = make_tiny_bert(tmp_path / "enc")
    out = tmp_path / "router"
    argv = ["train", "--logs", str(log), "--output", str(out), "--encoder", str(enc)]
    assert main([*argv, "--epochs", "2", "--members", "1", "--no-cache", "--holdout-fraction", "0.25"]) == 0
    config = json.loads((out / "config.json").read_text())
    assert {a["backend"] for a in config["space"]["actions"]} == {"small", "large"}
