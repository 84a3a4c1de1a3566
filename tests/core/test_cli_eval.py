"""`haps eval` end to end with the real default encoder (MiniLM from its PyPI package)."""

import json

from haps_core.cli import main
from tests.helpers.logs import synthetic_rows, write_jsonl


def test_eval_on_any_v1_log(tmp_path, capsys):
    logs = write_jsonl(tmp_path / "s.jsonl", synthetic_rows(120))
    out_json, out_png = tmp_path / "m.json", tmp_path / "f.png"
    rc = main(
        [
            "eval",
            "--logs",
            str(logs),
            "--dev-fraction",
            "0.3",
            "--n-boot",
            "50",
            "--no-cache",
            "--json",
            str(out_json),
            "--plot",
            str(out_png),
        ]
    )
    assert rc == 0
    text = capsys.readouterr().out
    assert "zero-router" in text and "knn" in text and "paired bootstrap linear vs knn" in text
    data = json.loads(out_json.read_text())
    assert set(data["pooled"]) >= {"zero-router", "knn", "linear", "random", "oracle"}
    assert data["summary"]["encoder"] == "sentence-transformers/all-MiniLM-L6-v2"
    assert out_png.stat().st_size > 1000


def test_eval_bad_input_exit_2_and_no_output(tmp_path, capsys):
    out_json = tmp_path / "m.json"
    rc = main(["eval", "--logs", str(tmp_path / "nope.jsonl"), "--json", str(out_json)])
    assert rc == 2 and not out_json.exists()
    assert "does not exist" in capsys.readouterr().err
    rc = main(["eval", "--logs", str(tmp_path / "x.jsonl"), "--baselines", "knn,magic"])
    assert rc == 2
    assert "unknown names ['magic']" in capsys.readouterr().err


def test_missing_bench_data_says_how_to_point_at_it(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("HAPS_DATA_DIR", str(tmp_path / "nowhere"))
    monkeypatch.chdir(tmp_path)
    import haps_core.paths as paths

    monkeypatch.setattr(paths, "_PACKAGED_DATA", tmp_path / "also-nowhere")
    rc = main(["eval"])
    assert rc == 2
    assert "HAPS_DATA_DIR" in capsys.readouterr().err
