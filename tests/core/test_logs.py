import csv
import gzip
import json

import numpy as np
import pytest

from haps_core.logs import LogValidationError, load_prices, read_logs, split_queries
from haps_core.paths import data_dir
from tests.helpers.logs import synthetic_rows, write_jsonl

GOOD = {"query_id": "q1", "query": "What is 2+2?", "model": "m", "score": 1.0, "cost": 0.001}


def _bad(tmp_path, rows, **kw):
    path = write_jsonl(tmp_path / "bad.jsonl", rows)
    with pytest.raises(LogValidationError) as info:
        read_logs(path, **kw)
    return info.value


@pytest.mark.parametrize(
    ("field", "value", "expected"),
    [
        ("score", "high", "a number in \\[0, 1\\]"),  # wrong type
        ("score", 1.5, "a number in \\[0, 1\\]"),  # outside [0, 1]
        ("score", -0.1, "a number in \\[0, 1\\]"),
        ("cost", -0.5, "a finite number >= 0"),  # negative cost
        ("temperature", "hot", "a finite number >= 0"),
        ("query", 42.5, "a non-empty string"),
        ("n_samples", 2.5, "an integer >= 1"),
    ],
)
def test_bad_value_names_file_line_field_value(tmp_path, field, value, expected):
    err = _bad(tmp_path, [GOOD, {**GOOD, "query_id": "q2", field: value}])
    assert len(err.errors) == 1
    e = err.errors[0]
    assert (e.line, e.field, e.value) == (2, field, value)
    assert "bad.jsonl:2" in str(err) and f"`{field}`" in str(err)
    import re

    assert re.search(expected, str(err))


def test_missing_required_field_and_all_errors_collected(tmp_path):
    rows = [GOOD, {k: v for k, v in GOOD.items() if k != "model"}, {**GOOD, "query_id": "q3", "score": 9}]
    err = _bad(tmp_path, rows)
    assert [(e.line, e.field) for e in err.errors] == [(2, "model"), (3, "score")]
    assert "required field is missing" in str(err)
    assert "2 invalid value(s)" in str(err)


def test_skip_invalid_reports_count(tmp_path, caplog):
    rows = [GOOD, {**GOOD, "query_id": "q2", "score": 3}, {**GOOD, "query_id": "q3"}]
    log = read_logs(write_jsonl(tmp_path / "x.jsonl", rows), skip_invalid=True)
    assert log.n_rows == 2 and log.n_skipped == 1
    assert "skipped 1 invalid row" in caplog.text


def test_unknown_extension_and_empty_file(tmp_path):
    (tmp_path / "log.txt").write_text("x")
    with pytest.raises(ValueError, match=r"unsupported extension; allowed: .jsonl"):
        read_logs(tmp_path / "log.txt")
    (tmp_path / "empty.jsonl").write_text("\n")
    with pytest.raises(ValueError, match="is empty"):
        read_logs(tmp_path / "empty.jsonl")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        read_logs(tmp_path / "missing.jsonl")


def test_duplicates_averaged_or_refused(tmp_path):
    rows = [GOOD, {**GOOD, "score": 0.0, "cost": 0.003}]
    log = read_logs(write_jsonl(tmp_path / "d.jsonl", rows))
    table = log.outcomes()
    assert table.n_cells == 1 and table.count[0] == 2
    assert table.score[0] == pytest.approx(0.5) and table.cost[0] == pytest.approx(0.002)
    err = _bad(tmp_path, rows, duplicates="error")
    assert "duplicate (query, action) row" in str(err) and "line 1" in str(err)


def test_conflicting_query_text(tmp_path):
    err = _bad(tmp_path, [GOOD, {**GOOD, "model": "n", "query": "other text"}])
    assert "appeared before with a different text" in str(err)


def test_cost_from_tokens_and_prices(tmp_path):
    row = {k: v for k, v in GOOD.items() if k != "cost"} | {"input_tokens": 1000, "output_tokens": 500}
    log = read_logs(write_jsonl(tmp_path / "t.jsonl", [row]), prices={"m": (2.0, 10.0)})
    assert log.cost[0] == pytest.approx((1000 * 2 + 500 * 10) / 1e6)
    assert log.has_cost
    assert log.space.backend("m").input_price == 2.0


def test_no_cost_at_all_routes_by_quality(tmp_path, caplog):
    row = {k: v for k, v in GOOD.items() if k != "cost"}
    log = read_logs(write_jsonl(tmp_path / "n.jsonl", [row]))
    assert not log.has_cost and log.cost[0] == 0
    assert "no cost information" in caplog.text


def test_partial_cost_is_an_error(tmp_path):
    row = {k: v for k, v in GOOD.items() if k != "cost"} | {"query_id": "q2", "input_tokens": 5}
    err = _bad(tmp_path, [GOOD, row])
    assert "no price for backend 'm'" in str(err)


def test_catalog_validation(tmp_path):
    base = read_logs(write_jsonl(tmp_path / "a.jsonl", [GOOD]))
    err = _bad(tmp_path, [{**GOOD, "model": "other"}], space=base.space)
    assert "unknown backend; known: ['m']" in str(err)


def test_only_model_varies_gives_default_configuration(tmp_path):
    rows = [GOOD, {**GOOD, "model": "n"}]
    log = read_logs(write_jsonl(tmp_path / "m.jsonl", rows))
    assert [a.key for a in log.space.actions] == ["m|prompt_style=default", "n|prompt_style=default"]


def test_csv_parquet_and_gzip_agree(tmp_path):
    rows = synthetic_rows(6)
    j = read_logs(write_jsonl(tmp_path / "s.jsonl.gz", rows))
    with open(tmp_path / "s.csv", "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    c = read_logs(tmp_path / "s.csv")
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "s.parquet")
    p = read_logs(tmp_path / "s.parquet")
    for other in (c, p):
        assert other.space == j.space
        np.testing.assert_allclose(other.score, j.score)
        np.testing.assert_allclose(other.cost, j.cost)
        assert other.query_ids == j.query_ids


def test_csv_errors_carry_csv_line_numbers(tmp_path):
    path = tmp_path / "b.csv"
    path.write_text("query_id,query,model,score\nq1,hi,m,0.5\nq2,hi there,m,abc\n")
    with pytest.raises(LogValidationError, match=r"b.csv:3: field `score` = 'abc'"):
        read_logs(path)


def test_pivot_keeps_missing_cells_missing(tmp_path):
    rows = [GOOD, {**GOOD, "model": "n", "score": 0.0}, {**GOOD, "query_id": "q2", "query": "x"}]
    table = read_logs(write_jsonl(tmp_path / "p.jsonl", rows)).outcomes()
    score, cost, mask = table.dense([0, 1])
    assert mask.tolist() == [[True, True], [True, False]]
    assert score.tolist() == [[1.0, 0.0], [1.0, 0.0]]
    assert table.indptr.tolist() == [0, 2, 3]
    # a subset of actions only
    s2, _, m2 = table.dense([1], [1])
    assert m2.tolist() == [[False]] and s2.tolist() == [[0.0]]


def test_split_is_deterministic_and_query_level():
    ids = [f"q{i}" for i in range(2000)]
    a = split_queries(ids, 0.2, seed=0)
    assert a.tolist() == split_queries(list(reversed(ids)), 0.2, seed=0)[::-1].tolist()
    assert 0.17 < a.mean() < 0.23
    assert a.tolist() != split_queries(ids, 0.2, seed=1).tolist()
    with pytest.raises(ValueError, match="`dev_fraction`"):
        split_queries(ids, 1.5)


def test_prices_file_errors(tmp_path):
    (tmp_path / "p.json").write_text(json.dumps({"models": {"m": {"input": 1}}}))
    with pytest.raises(ValueError, match="`input` and `output`"):
        load_prices(tmp_path / "p.json")


def test_haps_bench_loads_with_its_prices():
    root = data_dir(required=True)
    log = read_logs(root / "logs.jsonl.gz", prices=root / "prices.json")
    assert (log.n_rows, log.n_queries, len(log.space), len(log.space.backends)) == (32488, 1301, 162, 9)
    assert log.outcomes().n_cells == 32488 - 2900
    assert log.space.backend("gpt-4").input_price == 30.0
    assert abs(log.score.mean() - 0.605) < 0.001


def test_gzip_jsonl_with_bad_json_line(tmp_path):
    path = tmp_path / "g.jsonl.gz"
    with gzip.open(path, "wt") as fh:
        fh.write(json.dumps(GOOD) + "\n{not json\n")
    with pytest.raises(LogValidationError, match="g.jsonl.gz:2: field `<line>`"):
        read_logs(path)
