"""`haps train`, `haps route` and `haps eval --router` end to end on CPU.

Real parts: argparse CLI, torch training, safetensors checkpoints, a real (tiny, randomly
initialised, locally written) transformers encoder instead of MiniLM for speed.
"""

import json

import pytest

from haps_core.cli import main
from haps_core.decision import EVIDENCE_FIELDS
from tests.helpers.logs import synthetic_rows, write_jsonl
from tests.helpers.tiny_models import make_tiny_bert


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli")
    enc = make_tiny_bert(root / "enc")
    logs = write_jsonl(root / "logs.jsonl", synthetic_rows(100))
    out = root / "router"
    rc = main(
        [
            "train",
            "--logs",
            str(logs),
            "--output",
            str(out),
            "--encoder",
            str(enc),
            "--epochs",
            "3",
            "--members",
            "2",
            "--no-cache",
            "--holdout-fraction",
            "0.3",
        ]
    )
    assert rc == 0
    return root, enc, logs, out


def test_train_writes_a_checkpoint(setup, capsys):
    _, _, _, out = setup
    assert sorted(p.name for p in out.iterdir()) == ["README.md", "config.json", "model.safetensors"]
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["training"]["heldout"] == {"fraction": 0.3, "seed": 0}
    assert len(cfg["space"]["actions"]) == 4


def test_route_query_and_decisions_file(setup, capsys):
    root, _, _, out = setup
    assert main(["route", "--router", str(out), "--query", "Who wrote Hamlet?"]) == 0
    line = json.loads(capsys.readouterr().out.strip())
    base = {
        "id",
        "cost_weight",
        "backend",
        "temperature",
        "prompt_style",
        "parameters",
        "predicted_quality",
        "predicted_cost",
    }
    # a router trained now stores OOD statistics: its decisions also carry their evidence
    assert set(line) == base | set(EVIDENCE_FIELDS)
    assert 0.0 <= line["coverage"] <= 1.0 and isinstance(line["ood"], bool)
    assert line["backend"] in ("small", "large")
    queries = root / "q.jsonl"
    queries.write_text(
        '{"id": "a", "query": "Who wrote Hamlet?"}\n'
        '{"id": "b", "query": "Compute 17 * 23", "backends": ["small"]}\n'
    )
    dec = root / "d.jsonl"
    assert (
        main(
            [
                "route",
                "--router",
                str(out),
                "--input",
                str(queries),
                "--output",
                str(dec),
                "--cost-weight",
                "0,1000000",
            ]
        )
        == 0
    )
    rows = [json.loads(x) for x in dec.read_text().splitlines()]
    assert [(r["id"], r["cost_weight"]) for r in rows] == [("a", 0.0), ("b", 0.0), ("a", 1e6), ("b", 1e6)]
    assert rows[1]["backend"] == "small" and rows[3]["backend"] == "small"  # restricted request
    assert rows[2]["backend"] == "small"  # the cheap one when cost dominates


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["--query", "x", "--cost-weight", "-1"], "`--cost-weight` must be a finite number >= 0"),
        (["--query", "x", "--target-mean-cost", "1e-12"], "below the cheapest action"),
        (["--query", "x", "--max-cost-per-query", "-1"], "`--max-cost-per-query` must be a positive number"),
        (["--query", "   "], "`--query` is empty"),
    ],
)
def test_route_bad_input_exit_2(setup, capsys, argv, expected):
    _, _, _, out = setup
    assert main(["route", "--router", str(out), *argv]) == 2
    assert expected in capsys.readouterr().err


def test_route_bad_files_write_nothing(setup, capsys):
    root, _, _, out = setup
    dec = root / "never.jsonl"
    empty = root / "empty.jsonl"
    empty.write_text("\n")
    assert main(["route", "--router", str(out), "--input", str(empty), "--output", str(dec)]) == 2
    assert "holds no queries" in capsys.readouterr().err
    bad = root / "bad.jsonl"
    bad.write_text('{"id": 1, "query": "hi", "backends": ["gpt-9"]}\n')
    assert main(["route", "--router", str(out), "--input", str(bad), "--output", str(dec)]) == 2
    assert "unknown backend(s) ['gpt-9']" in capsys.readouterr().err
    assert not dec.exists()


def test_train_bad_log_exit_2_no_output(setup, tmp_path, capsys):
    _, enc, _, _ = setup
    rows = [{k: v for k, v in r.items() if k != "score"} for r in synthetic_rows(3)]
    logs = write_jsonl(tmp_path / "bad.jsonl", rows)
    out = tmp_path / "never"
    assert main(["train", "--logs", str(logs), "--output", str(out), "--encoder", str(enc)]) == 2
    assert "column `score`" in capsys.readouterr().err and not out.exists()


def test_router_without_cost_says_so_once(setup, tmp_path, capsys):
    _, enc, _, _ = setup
    rows = [
        {k: v for k, v in r.items() if k not in ("cost", "input_tokens", "output_tokens")}
        for r in synthetic_rows(20)
    ]
    logs = write_jsonl(tmp_path / "nc.jsonl", rows)
    out = tmp_path / "nc"
    assert (
        main(
            [
                "train",
                "--logs",
                str(logs),
                "--output",
                str(out),
                "--encoder",
                str(enc),
                "--epochs",
                "2",
                "--members",
                "1",
                "--no-cache",
            ]
        )
        == 0
    )
    capsys.readouterr()
    assert main(["route", "--router", str(out), "--query", "Who?", "--cost-weight", "5,10"]) == 0
    captured = capsys.readouterr()
    assert captured.err.count("no effect") == 1
    lines = [json.loads(x) for x in captured.out.strip().splitlines()]
    assert [x["cost_weight"] for x in lines] == [5.0, 10.0]  # one line per weight (issue 14, finding 6)


def test_eval_router_with_ablations(setup, capsys):
    _, _, logs, out = setup
    rc = main(
        [
            "eval",
            "--router",
            str(out),
            "--logs",
            str(logs),
            "--n-boot",
            "50",
            "--no-cache",
            "--baselines",
            "knn,linear",
        ]
    )
    assert rc == 0
    text = capsys.readouterr().out
    for name in ("haps", "flat", "no-pgn", "model-only", "paired bootstrap haps vs linear"):
        assert name in text
    assert "dev fraction 0.3" in text  # the split the router held out


def test_shipped_default_router_routes_offline(capsys, monkeypatch):
    """The router shipped in the package loads by name with the Hub off and routes a query."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert main(["route", "--query", "What is the capital of Australia?", "--cost-weight", "0,1000"]) == 0
    lines = [json.loads(x) for x in capsys.readouterr().out.strip().splitlines()]
    assert len(lines) == 2
    from haps_core import HAPSRouter

    router = HAPSRouter.from_pretrained("haps-default")
    names = router.space.backend_names
    assert all(x["backend"] in names for x in lines)
    # a high cost weight never picks a pricier action than cost weight 0 does
    assert lines[1]["predicted_cost"] <= lines[0]["predicted_cost"]
    assert router.training_summary["heldout"] == {"fraction": 0.2, "seed": 0}


def test_route_with_an_int8_encoder(setup, capsys):
    _, _, _, out = setup
    args = ["route", "--router", str(out), "--query", "Who wrote Hamlet?", "--encoder-precision", "int8"]
    assert main(args) == 0
    line = json.loads(capsys.readouterr().out.strip())
    assert line["backend"] in ("small", "large")
