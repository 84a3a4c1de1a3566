"""Issue 14, finding 7: log validation reports a missing column once (with the column that
looks like it), groups identical row errors, reports missing prices once per backend together
with the row errors, and lists unknown columns in one notice instead of ignoring them silently.

Real files and the real reader; nothing is faked.
"""

import csv
import logging
import re

import pytest

from haps_core.logs import LogValidationError, read_logs
from tests.helpers.logs import synthetic_rows, write_jsonl

N_ROWS = 360  # synthetic_rows(90): 90 queries x 4 actions


def _write_csv(path, rows, rename=None, extra=None):
    rename = rename or {}
    fields = [rename.get(k, k) for k in rows[0]] + list(extra or {})
    with open(path, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=fields)
        writer.writeheader()
        for row in rows:
            writer.writerow({rename.get(k, k): v for k, v in row.items()} | dict(extra or {}))
    return path


def _error(*args, **kw) -> LogValidationError:
    with pytest.raises(LogValidationError) as info:
        read_logs(*args, **kw)
    return info.value


def test_finding_7_csv_header_typo_is_one_error_naming_score(tmp_path):
    rows = synthetic_rows(90)
    assert len(rows) == N_ROWS
    path = _write_csv(tmp_path / "typo.csv", rows, rename={"score": "scroe"})
    err = _error(path)
    message = str(err)
    assert "required field is missing" not in message
    assert message.count("`score`") == 2  # the column, and "did you mean `score`?"
    assert "`scroe`: did you mean `score`?" in message and str(path) in message
    assert [(e.kind, e.field) for e in err.errors] == [("header", "score")]
    assert err.header_errors == err.errors
    assert len(message.splitlines()) == 2
    # skip_invalid cannot make a log without its score column usable: the same one error
    assert str(_error(path, skip_invalid=True)) == message


def test_finding_7_header_error_comes_before_row_errors(tmp_path):
    rows = synthetic_rows(10)
    rows[3]["cost"] = -1.0
    err = _error(_write_csv(tmp_path / "both.csv", rows, rename={"model": "modle"}))
    assert err.errors[0].kind == "header" and err.errors[0].field == "model"
    assert [e.kind for e in err.errors[1:]] == ["row"] and err.errors[1].line == 5
    message = str(err)
    assert message.index("did you mean `model`?") < message.index("`cost`: expected a finite number")


def test_finding_7_unknown_jsonl_keys_are_flagged(tmp_path, caplog):
    rows = [{("scor" if k == "score" else k): v for k, v in r.items()} for r in synthetic_rows(5)]
    err = _error(write_jsonl(tmp_path / "typo.jsonl", rows))
    assert [(e.kind, e.field) for e in err.errors] == [("header", "score")]
    assert "`scor`: did you mean `score`?" in str(err)
    assert "required field is missing" not in str(err)

    # a key missing on some rows only stays a row error (the key exists elsewhere)
    rows = synthetic_rows(5)
    del rows[2]["score"]
    err = _error(write_jsonl(tmp_path / "some.jsonl", rows))
    assert [(e.kind, e.line, e.field) for e in err.errors] == [("row", 3, "score")]

    # unknown keys on a valid log: one notice naming them
    caplog.set_level(logging.INFO, logger="haps_core.logs")
    rows = [r | {"latency_ms": 12, "trace": "t"} for r in synthetic_rows(5)]
    read_logs(write_jsonl(tmp_path / "extra.jsonl", rows))
    notices = [r for r in caplog.records if "ignored column(s)" in r.getMessage()]
    assert len(notices) == 1 and "`latency_ms`, `trace`" in notices[0].getMessage()


def test_finding_7_missing_prices_once_per_backend_alongside_row_errors(tmp_path):
    rows = synthetic_rows(30)
    for r in rows:
        if r["model"] == "large":
            del r["cost"]  # tokens remain, but `prices` has no entry for "large"
        if r["model"] == "small" and r["temperature"] == 1.0:
            del r["cost"], r["input_tokens"], r["output_tokens"]  # nothing to price
    rows[0]["score"] = 2.0  # a row error in the same file
    err = _error(write_jsonl(tmp_path / "p.jsonl", rows), prices={"small": (0.5, 1.0)})
    message = str(err)
    n_large = sum(r["model"] == "large" for r in rows)
    n_small = sum(r["model"] == "small" and "cost" not in r for r in rows)
    large = [ln for ln in message.splitlines() if "no price for backend 'large'" in ln]
    small = [ln for ln in message.splitlines() if "rows of backend 'small' have no `cost`" in ln]
    assert len(large) == 1 and f"({n_large} rows;" in large[0] and "--prices" in large[0]
    assert len(small) == 1 and f"({n_small} rows;" in small[0] and "`cost` column" in small[0]
    assert "`score`: expected a number in [0, 1] (1 row; line 1)" in message
    kinds = [e.kind for e in err.errors]
    assert kinds.count("row") == 1 and kinds.count("price") == n_large + n_small  # every row kept


def test_finding_7_identical_errors_are_grouped(tmp_path):
    rows = synthetic_rows(90)
    for r in rows:
        r["score"] = 5
    err = _error(_write_csv(tmp_path / "s.csv", rows))
    message = str(err)
    assert len(err.errors) == N_ROWS  # every row error is still on the exception
    assert sorted(e.line for e in err.errors) == list(range(2, N_ROWS + 2))
    assert f"`score`: expected a number in [0, 1] ({N_ROWS} rows; lines 2, 3, 4, 5, 6, ...)" in message
    assert len(re.findall(r"field `score` = '5'", message)) <= 3  # a few examples, not 360
    assert len(message.splitlines()) < 10
    assert f"all {N_ROWS} invalid line(s): 2, 3, 4" in message


def test_finding_7_bookkeeping_columns_give_one_notice(tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="haps_core.logs")
    rows = synthetic_rows(20)
    path = _write_csv(tmp_path / "b.csv", rows, extra={"run_id": "r1", "latency_ms": "30"})
    log = read_logs(path)
    assert log.n_rows == len(rows)
    notices = [r for r in caplog.records if "ignored column(s)" in r.getMessage()]
    assert len(notices) == 1 and notices[0].levelno == logging.INFO
    assert "`latency_ms`, `run_id`" in notices[0].getMessage()

    # a declared parameter is read, not listed as ignored
    caplog.clear()
    read_logs(path, parameters=["run_id"])
    notices = [r.getMessage() for r in caplog.records if "ignored column(s)" in r.getMessage()]
    assert len(notices) == 1 and "`latency_ms`" in notices[0] and "run_id" not in notices[0]

    # a column that looks like an optional field is a WARNING with the hint
    caplog.clear()
    read_logs(_write_csv(tmp_path / "t.csv", rows, rename={"temperature": "temprature"}))
    warned = [r for r in caplog.records if "ignored column(s)" in r.getMessage()]
    assert len(warned) == 1 and warned[0].levelno == logging.WARNING
    assert "`temprature` looks like `temperature`" in warned[0].getMessage()


def test_finding_7_catalog_parameters_are_columns_not_bookkeeping(tmp_path, caplog):
    rows = [r | {"top_p": 0.9 if i % 2 else 1.0, "run_id": "r"} for i, r in enumerate(synthetic_rows(10))]
    path = write_jsonl(tmp_path / "c.jsonl", rows)
    space = read_logs(path, parameters=["top_p"]).space
    assert "top_p" in space.parameter_names
    caplog.set_level(logging.INFO, logger="haps_core.logs")
    caplog.clear()
    log = read_logs(path, space=space)  # the catalog declares top_p: read as a parameter
    assert log.n_rows == len(rows)
    notices = [r.getMessage() for r in caplog.records if "ignored column(s)" in r.getMessage()]
    assert len(notices) == 1 and "`run_id`" in notices[0] and "top_p" not in notices[0]
