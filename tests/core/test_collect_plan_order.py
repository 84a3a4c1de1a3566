"""Issue 16: a collected log is read in plan order, so a router trained on it does not depend on
which of the concurrent calls finished first.

Real parts: a replay collection of haps-bench questions (concurrency 8) through `collect`, the
store's file, `read_collected`. The completion order is made adversarial by hand: the log's lines
are written back in a shuffled order, as a run whose calls finished in that order would have.
"""

import json
import random
import shutil
from pathlib import Path

import numpy as np

from haps_core.collect import ReplayWorld, collect, read_collected
from haps_core.collect.store import meta_path
from haps_core.logs import read_logs
from haps_core.paths import bench_logs, bench_prices


def test_a_collection_reads_the_same_whatever_order_its_calls_finished_in(tmp_path: Path) -> None:
    log = read_logs(bench_logs(), prices=bench_prices())
    world = ReplayWorld(log, prices=bench_prices()).subset(set(log.query_ids[:120]))
    out = tmp_path / "a.jsonl"
    collect(replay=world, strategy="adaptive", seed=3, budget_calls=400, batch_size=32, output=out)
    lines = out.read_text(encoding="utf-8").splitlines(keepends=True)
    shuffled = tmp_path / "b.jsonl"
    random.Random(0).shuffle(lines)
    shuffled.write_text("".join(lines), encoding="utf-8")
    shutil.copy(meta_path(out), meta_path(shuffled))

    a, b = read_collected(out), read_collected(shuffled)
    assert read_logs(shuffled).query_ids != a.query_ids  # the raw file order does differ
    assert a.query_ids == b.query_ids and a.queries == b.queries
    for name in ("row_query", "row_action", "score", "cost", "groups", "input_tokens", "propensity"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name), err_msg=name)
    # plan order: rounds ascending, slots ascending within a round
    places = [(r["collect_round"], r["collect_slot"]) for r in map(json.loads, lines)]
    assert a.n_rows == len(places) == 400
    first = a.query_ids[a.row_query[0]]
    assert first == min((p, json.loads(line)["query_id"]) for p, line in zip(places, lines, strict=True))[1]
