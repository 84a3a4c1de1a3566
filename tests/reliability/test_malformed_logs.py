"""Routing logs with 10% malformed rows: every bad line reported, nothing loaded partially,
unless ``skip_invalid`` / ``--skip-invalid``, which then says how many rows it dropped.

Nothing is faked: real files (JSONL, gzip-free, and CSV) written byte by byte, read by the real
`read_logs` and the real ``haps train`` command (with a tiny random BERT encoder for speed).
"""

import json
import logging
import re

import pytest

from haps_core.cli import main
from haps_core.logs import LogValidationError, read_logs
from tests.helpers.logs import synthetic_rows
from tests.helpers.reliability_ledger import LOGS
from tests.helpers.tiny_models import make_tiny_bert

N_ROWS = 1000  # synthetic_rows(250): 250 queries x 4 actions


def _row_bytes(row: dict) -> bytes:
    return json.dumps(row).encode("utf-8")


# Ten ways a JSONL line can be bad, one error each: line number -> the broken bytes.
JSONL_BREAKS = [
    ("not UTF-8", lambda r: _row_bytes(r).replace(b"#", b"\xff\xfe#", 1)),
    ("not JSON", lambda r: _row_bytes(r)[:-7]),
    ("not an object", lambda r: json.dumps(list(r.values())).encode()),
    ("score out of range", lambda r: _row_bytes({**r, "score": 1.7})),
    ("query missing", lambda r: _row_bytes({k: v for k, v in r.items() if k != "query"})),
    ("negative cost", lambda r: _row_bytes({**r, "cost": -0.01})),
    ("score not a number", lambda r: _row_bytes({**r, "score": "high"})),
    ("unpaired surrogate", lambda r: _row_bytes(r).replace(b"#", b"\\ud800#", 1)),
    ("blank query", lambda r: _row_bytes({**r, "query": "   "})),
    ("model null", lambda r: _row_bytes({**r, "model": None})),
]


def write_jsonl_with_bad_rows(path):
    """A 1,000-row log whose every 10th line (100 lines) is broken one of ten ways."""
    lines, bad = [], []
    for number, row in enumerate(synthetic_rows(250), start=1):
        if number % 10 == 0:
            _, breaker = JSONL_BREAKS[(number // 10) % len(JSONL_BREAKS)]
            lines.append(breaker(row))
            bad.append(number)
        else:
            lines.append(_row_bytes(row))
    path.write_bytes(b"\n".join(lines) + b"\n")
    return bad


CSV_FIELDS = ["query_id", "query", "model", "score", "temperature", "prompt_style", "cost", "dataset"]


def write_csv_with_bad_rows(path):
    """The same log as CSV (header on line 1); every 10th data row broken one of five ways."""

    def cell(value) -> bytes:
        text = str(value)
        return ('"' + text.replace('"', '""') + '"').encode() if "," in text else text.encode()

    lines = [",".join(CSV_FIELDS).encode()]
    bad = []
    for number, row in enumerate(synthetic_rows(250), start=1):
        values = [cell(row[f]) for f in CSV_FIELDS]
        if number % 10 == 0:
            kind = (number // 10) % 5
            if kind == 0:
                values[1] = values[1].replace(b"#", b"\xe9\xff#", 1)  # Latin-1 bytes: not UTF-8
            elif kind == 1:
                values[3] = b"1.5"
            elif kind == 2:
                values[3] = b"n/a"
            elif kind == 3:
                values[6] = b"-3"
            else:
                values[2] = b""
            bad.append(number + 1)  # the header is line 1
        lines.append(b",".join(values))
    path.write_bytes(b"\r\n".join(lines) + b"\r\n")
    return bad


@pytest.mark.parametrize("fmt", ["jsonl", "csv"])
def test_every_bad_line_is_reported_and_nothing_is_loaded(fmt, tmp_path, ledger):
    """REAL files and reader. Expected: one `LogValidationError` listing exactly the broken
    lines (its message names every one of them, even past the 50 shown in detail); the same
    with a good file read first (no partial load of several files either)."""
    path = tmp_path / f"logs.{fmt}"
    bad = (write_jsonl_with_bad_rows if fmt == "jsonl" else write_csv_with_bad_rows)(path)
    with pytest.raises(LogValidationError) as info:
        read_logs(path)
    err = info.value
    assert sorted(e.line for e in err.errors) == bad
    assert len(bad) == N_ROWS // 10
    message = str(err)
    assert "nothing was loaded" in message and str(path) in message
    named = {int(n) for n in re.findall(r"\b(\d+)\b", message.split("invalid line(s):")[-1])}
    assert set(bad) <= named | {e.line for e in err.errors[:50]}
    if fmt == "jsonl":
        assert "not UTF-8 text" in message and "unpaired surrogate, U+D800" in message
    else:
        assert "unpaired surrogate, U+DCE9" in message  # the Latin-1 byte 0xE9, reported on its line

    good = tmp_path / "good.jsonl"
    good.write_text("\n".join(json.dumps(r) for r in synthetic_rows(10)) + "\n")
    with pytest.raises(LogValidationError):
        read_logs([good, path])
    ledger(LOGS, faults=len(bad), calls=2, lost=0, inputs=N_ROWS)


@pytest.mark.parametrize("fmt", ["jsonl", "csv"])
def test_skip_invalid_drops_exactly_the_bad_rows_and_says_how_many(fmt, tmp_path, caplog, ledger):
    """REAL files and reader. Expected with ``skip_invalid=True``: the 900 good rows load, the
    100 bad ones are dropped, and the warning says 100."""
    path = tmp_path / f"logs.{fmt}"
    bad = (write_jsonl_with_bad_rows if fmt == "jsonl" else write_csv_with_bad_rows)(path)
    caplog.set_level(logging.WARNING, logger="haps_core.logs")
    log = read_logs(path, skip_invalid=True)
    assert (log.n_rows, log.n_skipped) == (N_ROWS - len(bad), len(bad))
    assert f"skipped {len(bad)} invalid row(s)" in caplog.text
    ledger(LOGS, faults=len(bad), calls=1, lost=0, inputs=N_ROWS)


def test_haps_train_refuses_the_log_then_skips_with_a_count(tmp_path, capsys, ledger):
    """REAL ``haps train`` (tiny random encoder). Expected: without ``--skip-invalid`` exit code
    2, every bad line on stderr, no checkpoint written; with it, a checkpoint trained on the 900
    good rows and "skipped 100 invalid row(s)" on stderr."""
    path = tmp_path / "logs.jsonl"
    bad = write_jsonl_with_bad_rows(path)
    encoder = make_tiny_bert(tmp_path / "bert")
    out = tmp_path / "router"
    argv = ["train", "--logs", str(path), "--output", str(out), "--encoder", str(encoder)]
    argv += ["--epochs", "1", "--members", "1", "--no-cache"]
    assert main(argv) == 2
    stderr = capsys.readouterr().err
    assert f"{len(bad)} invalid value(s)" in stderr
    listed = stderr.split("invalid line(s):")[-1]
    assert all(re.search(rf"\b{n}\b", listed) or f"logs.jsonl:{n}:" in stderr for n in bad)
    assert not out.exists()

    assert main([*argv, "--skip-invalid"]) == 0
    assert f"skipped {len(bad)} invalid row(s)" in capsys.readouterr().err
    config = json.loads((out / "config.json").read_text())
    assert (config["training"]["rows"], config["training"]["rows_skipped"]) == (N_ROWS - len(bad), len(bad))
    ledger(LOGS, faults=len(bad), calls=2, lost=0, inputs=N_ROWS)
