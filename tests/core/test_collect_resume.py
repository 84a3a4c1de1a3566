"""Issue 16: crash safety. A replay collection of >= 2,000 cells, SIGKILLed at 5 random moments
(a real `python -m haps_core.cli collect --replay ...` subprocess) and restarted each time with the
same arguments, ends with exactly the cells of an uninterrupted run with the same seed."""

import gzip
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from haps_core.collect import read_collected
from haps_core.paths import bench_logs

ROOT = Path(__file__).resolve().parents[2]
N_QUERIES = 240


@pytest.fixture(scope="module")
def replay_log(tmp_path_factory) -> Path:
    """The first N_QUERIES questions of haps-bench (all their logged cells), with its prices."""
    folder = tmp_path_factory.mktemp("replay")
    keep: set[str] = set()
    with gzip.open(bench_logs(), "rt", encoding="utf-8") as src, open(folder / "logs.jsonl", "w") as dst:
        for line in src:
            qid = json.loads(line)["query_id"]
            if qid not in keep and len(keep) >= N_QUERIES:
                continue
            keep.add(qid)
            dst.write(line)
    shutil.copy(bench_logs().parent / "prices.json", folder / "prices.json")
    return folder / "logs.jsonl"


def _cmd(replay: Path, output: Path, strategy: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "haps_core.cli",
        "-q",
        "collect",
        "--replay",
        str(replay),
        "--strategy",
        strategy,
        "--seed",
        "7",
        "--budget-usd",
        "12",
        "--batch-size",
        "48",
        "--concurrency",
        "8",
        "--output",
        str(output),
    ]


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT)}


def _cells(path: Path) -> list[tuple]:
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    return [
        (
            r["query_id"],
            r["action"],
            r["score"],
            r["cost"],
            r["propensity"],
            r["collect_round"],
            r["collect_slot"],
        )
        for r in rows
    ]


def _lines(path: Path) -> int:
    try:
        with open(path, "rb") as fh:
            return sum(1 for _ in fh)
    except FileNotFoundError:
        return 0


@pytest.mark.slow
@pytest.mark.parametrize("strategy", ["adaptive", "uniform"])
def test_issue16_sigkilled_collection_resumes_to_the_uninterrupted_cells(replay_log, tmp_path, strategy):
    clean = tmp_path / "clean.jsonl"
    subprocess.run(_cmd(replay_log, clean, strategy), env=_env(), check=True, timeout=600)
    reference = _cells(clean)
    assert len(reference) >= 2000, len(reference)

    out = tmp_path / "killed.jsonl"
    rng = np.random.default_rng(16)
    targets = sorted(rng.choice(np.arange(50, len(reference) - 50), size=5, replace=False).tolist())
    kills = []
    for target in targets:
        proc = subprocess.Popen(_cmd(replay_log, out, strategy), env=_env())
        while proc.poll() is None and _lines(out) < target:
            time.sleep(0.002)
        time.sleep(float(rng.uniform(0, 0.02)))  # a random moment, mid-write most likely
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=60)
        kills.append((target, proc.returncode, _lines(out)))
    assert sum(rc == -signal.SIGKILL for _, rc, _ in kills) >= 5, kills
    subprocess.run(_cmd(replay_log, out, strategy), env=_env(), check=True, timeout=600)

    resumed = _cells(out)
    assert len(resumed) == len(set(resumed)), "a cell was written twice"
    assert sorted(resumed) == sorted(reference)
    log = read_collected(out)  # the log reads back, catalog = the replay world's
    assert log.n_rows == len(reference)
