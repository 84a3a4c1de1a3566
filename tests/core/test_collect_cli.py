"""Issue 16: `haps collect` and `haps_core.collect` over backends defined in a Python file:
questions files and their errors, the CLI's one-line errors, dry runs, retries, timeouts, a
backend that keeps failing, scorer exceptions, and the catalog of the log.

The backends here are deterministic stand-ins defined in the test's backends file (they test our
loop, not a model); real models are in tests/integrations/test_collect_e2e.py.
"""

import json
import textwrap
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from haps_core.cli import main
from haps_core.collect import (
    BackendSpec,
    CallResult,
    QuestionsError,
    collect,
    load_backends,
    load_questions,
    read_collected,
    routing_space,
)
from haps_core.collect.store import failures_path

BACKENDS = """
import os, time
from haps_core.collect import BackendSpec, CallResult

CALLS = os.environ.get("HAPS_TEST_CALLS")

def _record(name):
    if CALLS:
        with open(CALLS, "a") as fh:
            fh.write(name + "\\n")

def smart(system, query, params):
    _record("smart")
    letter = query.split("correct:")[1].strip()[0]
    return CallResult(f"Answer: {letter}", len(query) / 4, 5)

def dumb(system, query, params):
    _record("dumb")
    return CallResult("Answer: A" if params["temperature"] == 0 else "no idea", len(query) / 4, 3)

BACKENDS = [
    BackendSpec("smart", smart, input_price=5.0, output_price=15.0,
                prompt_styles={"default": "", "terse": "Answer with the letter only."},
                max_output_tokens=64),
    BackendSpec("dumb", dumb, input_price=0.1, output_price=0.2, grid={"temperature": [0.0, 0.7]},
                max_output_tokens=64),
]
"""


def _questions(path: Path, n: int = 12) -> Path:
    with open(path, "w") as fh:
        for i in range(n):
            letter = "ABCD"[i % 4]
            fh.write(
                json.dumps(
                    {
                        "id": f"q{i}",
                        "query": f"Question {i}? correct: {letter}",
                        "reference": letter,
                        "task": "t" + str(i % 2),
                    }
                )
                + "\n"
            )
    return path


@pytest.fixture
def files(tmp_path, monkeypatch):
    backends = tmp_path / "backends.py"
    backends.write_text(BACKENDS)
    calls = tmp_path / "calls.txt"
    monkeypatch.setenv("HAPS_TEST_CALLS", str(calls))
    return _questions(tmp_path / "q.jsonl"), backends, calls


def _err_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert err[0].startswith("haps collect: error: ")
    return err[0]


def test_issue16_questions_file_errors_name_their_lines(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text(
        '{"id": 1, "query": "a", "reference": "b"}\n{"id": 2, "query": "c"}\nnot json\n'
        '{"id": 1, "query": "d", "reference": "e"}\n'
    )
    with pytest.raises(QuestionsError) as err:
        load_questions(bad)
    text = str(err.value)
    assert "line 2: `reference` is missing" in text and "line 3: not JSON" in text
    assert "line 4: id '1' repeats the id of line 1" in text
    csv_file = tmp_path / "q.csv"
    csv_file.write_text("id,query,reference,dataset\nx,What?,A,mmlu\ny,,B,mmlu\n")
    with pytest.raises(QuestionsError, match="line 3: `query` is missing"):
        load_questions(csv_file)
    table = pa.table({"id": ["a", "b"], "query": ["q1", "q2"], "reference": ["1", "2"]})
    pq.write_table(table, tmp_path / "q.parquet")
    assert [q.id for q in load_questions(tmp_path / "q.parquet")] == ["a", "b"]
    (tmp_path / "hf").mkdir()
    with pytest.raises(QuestionsError, match="datasets"):
        load_questions(tmp_path / "hf")


def test_issue16_cli_one_line_errors(files, tmp_path, capsys):
    questions, backends, _ = files
    bad_q = tmp_path / "bad.jsonl"
    bad_q.write_text('{"id": "a", "query": "x"}\n')
    base = ["collect", "--backends", str(backends), "--output", str(tmp_path / "o.jsonl")]
    assert main([*base, "--questions", str(bad_q)]) == 2
    assert "line 1: `reference` is missing" in _err_line(capsys)

    unknown = tmp_path / "unknown.py"
    unknown.write_text(BACKENDS + '\nGRID = {"smrt": {"temperature": [0.0]}}\n')
    assert main(["collect", "--backends", str(unknown), "--questions", str(questions), "--dry-run"]) == 2
    assert "unknown backend(s) ['smrt']; known: ['dumb', 'smart']" in _err_line(capsys)

    styleless = tmp_path / "styleless.py"
    styleless.write_text(BACKENDS.replace('"terse": "Answer with the letter only."', '"terse": ""'))
    assert main(["collect", "--backends", str(styleless), "--questions", str(questions), "--dry-run"]) == 2
    assert "prompt style 'terse' has no system text" in _err_line(capsys)

    assert main([*base, "--questions", str(questions), "--budget-usd", "0.0000001"]) == 2
    assert "is below one call" in _err_line(capsys)
    assert main([*base, "--questions", str(questions), "--scorer", "bleu"]) == 2
    assert "allowed: ['contains', 'exact_match'" in _err_line(capsys)
    assert not (tmp_path / "calls.txt").exists()


def test_issue16_dry_run_prints_the_plan_and_calls_nothing(files, capsys):
    questions, backends, calls = files
    args = ["collect", "--backends", str(backends), "--questions", str(questions), "--dry-run"]
    assert main([*args, "--budget-calls", "10", "--strategy", "uniform"]) == 0
    out = capsys.readouterr().out
    assert "plan (uniform, budget 10 calls): 10 of 48 cells" in out
    plan = collect(questions, backends, dry_run=True)
    assert plan.planned_cells == plan.cells_available == 48  # 12 questions x (2 styles + 2 temperatures)
    assert plan.planned_usd == pytest.approx(plan.full_grid_usd)
    assert not calls.exists()


def test_issue16_cli_collects_and_the_catalog_is_exactly_the_backends(files, tmp_path, capsys):
    questions, backends, calls = files
    out = tmp_path / "log.jsonl"
    args = [
        "collect",
        "--backends",
        str(backends),
        "--questions",
        str(questions),
        "--scorer",
        "multiple_choice",
        "--output",
        str(out),
    ]
    assert main(args) == 0
    summary = capsys.readouterr().out
    assert "smart|prompt_style=terse" in summary and "48 cells (48 new)" in summary
    log = read_collected(out)
    assert log.space == routing_space(load_backends(backends))
    assert log.space.prompt_style_text("terse") == "Answer with the letter only."
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    by = {}
    for r in rows:
        by.setdefault(r["action"], []).append(r["score"])
    assert set(by["smart|prompt_style=default"]) == {1.0}
    assert sum(by["dumb|prompt_style=default|temperature=0.0"]) == 3.0  # "A" is right for 3 of 12
    assert set(by["dumb|prompt_style=default|temperature=0.7"]) == {0.0}
    assert all(r["propensity"] == 1.0 and r["cost"] > 0 and "output" in r for r in rows)
    assert len(calls.read_text().split()) == 48
    assert main(args) == 0  # a rerun resumes: nothing left to call
    assert len(calls.read_text().split()) == 48
    assert "48 cells (0 new)" in capsys.readouterr().out


def _spec(name, call, **kw):
    return BackendSpec(name, call, input_price=1.0, output_price=2.0, max_output_tokens=32, **kw)


def test_issue16_retries_timeouts_failing_backend_and_scorer_errors(tmp_path):
    questions = load_questions(_questions(tmp_path / "q.jsonl", n=10))
    attempts: dict[str, int] = {}

    def flaky(system, query, params):  # the first attempt of every cell drops its connection
        attempts[query] = attempts.get(query, 0) + 1
        if attempts[query] == 1:
            raise ConnectionError("reset by peer")
        return CallResult("Answer: " + query.split("correct: ")[1], 10, 2)

    def down(system, query, params):
        raise ConnectionError("no route to host")

    def slow(system, query, params):
        import time

        time.sleep(0.5)
        return CallResult("A", 1, 1)

    def scorer(query, reference, output):
        if reference == "B":
            raise RuntimeError("cannot parse")
        return float(output.endswith(reference))

    specs = [_spec("flaky", flaky), _spec("down", down), _spec("slow", slow, timeout_s=0.05)]
    out = tmp_path / "log.jsonl"
    result = collect(
        questions,
        specs,
        scorer,
        output=out,
        backoff_s=0.0,
        retries=2,
        max_backend_failures=3,
        concurrency=4,
        batch_size=4,
    )
    assert result.cells == 10 - 3  # flaky's cells, minus the three whose reference is B
    assert result.scorer_errors == 3
    assert set(result.skipped_backends) == {"down", "slow"}
    assert result.failures["down"] >= 3 and result.failures["slow"] >= 3
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert {r["model"] for r in rows} == {"flaky"}  # a failing backend is never scored 0
    fails = [json.loads(line) for line in failures_path(out).read_text().splitlines()]
    kinds = {(f["model"], f["kind"]) for f in fails}
    assert ("flaky", "scorer") in kinds and ("down", "backend") in kinds and ("slow", "backend") in kinds
    assert any("CallTimeoutError" in f["error"] for f in fails if f["model"] == "slow")
    assert "skipped after repeated failures: ['down', 'slow']" in result.table()


def test_issue16_yaml_backends_need_known_styles(tmp_path):
    pytest.importorskip("yaml")
    y = tmp_path / "b.yaml"
    y.write_text(
        textwrap.dedent("""
        prompt_styles: {cot: "Think step by step."}
        backends:
          - {name: m, factory: "builtins:dict", prompt_styles: [cot, expert]}
    """)
    )
    with pytest.raises(ValueError, match=r"prompt styles without a text: \['expert'\]"):
        load_backends(y)
