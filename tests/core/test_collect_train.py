"""Issue 16: `haps collect --train DIR` collects on the replay world (40 real haps-bench
questions) and trains a router on the log it wrote; the router's catalog is the log's."""

import gzip
import json
import shutil

import pytest

from haps_core.cli import main
from haps_core.collect import read_collected
from haps_core.paths import bench_logs


@pytest.mark.slow
def test_issue16_cli_collect_then_train(tmp_path, capsys):
    keep: set[str] = set()
    replay = tmp_path / "logs.jsonl"
    with gzip.open(bench_logs(), "rt", encoding="utf-8") as src, open(replay, "w") as dst:
        for line in src:
            qid = json.loads(line)["query_id"]
            if qid in keep or len(keep) < 40:
                keep.add(qid)
                dst.write(line)
    shutil.copy(bench_logs().parent / "prices.json", tmp_path / "prices.json")
    out, router_dir = tmp_path / "log.jsonl", tmp_path / "router"
    args = [
        "collect",
        "--replay",
        str(replay),
        "--strategy",
        "uniform",
        "--budget-calls",
        "400",
        "--output",
        str(out),
        "--train",
        str(router_dir),
        "--epochs",
        "2",
        "--members",
        "1",
        "--device",
        "cpu",
    ]
    assert main(args) == 0
    assert "400 cells (400 new)" in capsys.readouterr().out

    from haps_core import HAPSRouter

    router = HAPSRouter.from_pretrained(router_dir)
    assert router.space == read_collected(out).space
    (decision,) = router.route("Question: What is 2 + 2?\nChoices:\n  A: 3\n  B: 4")
    assert router.space.actions[decision.action_index].backend == decision.backend
