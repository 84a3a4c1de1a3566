"""A query's decision never depends on the other queries routed with it (`HAPSRouter.route`).

REAL: the shipped default router (OOD policy and evidence on), haps-bench dev queries and the
hand-written sample queries, the decision routine with its per-row tie-break towards cheaper
actions. `haps route --input` relies on this to route a whole file in one call per pool.
"""

import json
from pathlib import Path

import numpy as np
import pytest

from haps_core import HAPSRouter
from haps_core.logs import read_logs, split_queries
from haps_core.paths import bench_logs
from haps_core.utility import choose


@pytest.mark.parametrize("weight", [0.0, 20.0, 200.0])
def test_route_of_a_batch_equals_routing_each_query_alone(weight):
    router = HAPSRouter.from_pretrained("haps-default")
    log = read_logs([bench_logs()])
    dev = split_queries(log.query_ids, 0.2, seed=0)
    samples = [
        json.loads(line)["query"] for line in Path("cookbook/sample_queries.jsonl").read_text().splitlines()
    ]
    texts = samples + [log.queries[i] for i in np.flatnonzero(dev)[:40]]
    together = router.route(texts, weight)
    alone = [router.route([t], weight)[0] for t in texts]
    assert [d.action_index for d in together] == [d.action_index for d in alone]
    assert [d.ood for d in together] == [d.ood for d in alone]
    assert [[a.action_index for a in d.alternatives] for d in together] == [
        [a.action_index for a in d.alternatives] for d in alone
    ]


def test_the_cheaper_tie_break_is_per_row():
    """Two exactly tied actions: the cheaper wins in each row, whatever the other rows cost."""
    quality = np.array([[0.5, 0.5], [0.5, 0.5]])
    cost = np.array([[2e-6, 1e-6], [200.0, 300.0]])  # row 2's costs dwarf row 1's
    assert choose(quality, cost, 0.0).tolist() == [1, 0]
    assert choose(quality[:1], cost[:1], 0.0).tolist() == [1]
