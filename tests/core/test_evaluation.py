"""The evaluation harness on a synthetic log.

Faked here: the query embeddings are hand-made (a one-hot of the query's kind plus noise) instead
of a real encoder, so these tests check the harness logic quickly; the CLI test uses real MiniLM.
"""

import numpy as np
import pytest

from haps_core.baselines import ConstantRouter, KNNRouter, LinearRouter, RandomRouter
from haps_core.evaluation import (
    _peel_to_full,
    find_blocks,
    format_report,
    plot_report,
    run_evaluation,
    training_set,
)
from haps_core.logs import read_logs, split_queries
from tests.helpers.logs import synthetic_rows, write_jsonl


@pytest.fixture
def setup(tmp_path):
    log = read_logs(write_jsonl(tmp_path / "s.jsonl", synthetic_rows(500)))
    rng = np.random.default_rng(0)
    kinds = np.array([1.0 if "Compute" in q else 0.0 for q in log.queries])
    emb = np.stack([kinds, 1 - kinds], 1) + 0.05 * rng.standard_normal((log.n_queries, 2))
    emb = (emb / np.linalg.norm(emb, axis=1, keepdims=True)).astype(np.float32)
    test = split_queries(log.query_ids, 0.3, seed=0)
    return log, emb, test


def test_peel_finds_full_block():
    mask = np.array([[1, 1, 1, 0], [1, 1, 1, 0], [1, 1, 1, 1], [0, 0, 1, 0]], dtype=bool)
    rows, cols = _peel_to_full(mask)
    assert rows.tolist() == [0, 1, 2] and cols.tolist() == [0, 1, 2]


def test_blocks_on_a_log_with_missing_cells(setup):
    log, _, test = setup
    keep = ~((log.row_action == 0) & (log.row_query % 3 == 0))  # action 0 unobserved for 1/3
    log.row_query, log.row_action = log.row_query[keep], log.row_action[keep]
    log.score, log.cost, log.groups = log.score[keep], log.cost[keep], log.groups[keep]
    (block,) = find_blocks(log, test)
    assert block.score.shape == (block.n_queries, len(block.action_idx))
    # either action 0 was dropped, or the queries that miss it were
    _, _, mask = log.outcomes().dense(block.query_idx, block.action_idx)
    assert mask.all()


def test_routers_beat_zero_router_on_a_learnable_log(setup):
    log, emb, test = setup
    routers = {
        "random": RandomRouter(),
        "constant": ConstantRouter(),
        "knn": KNNRouter(),
        "linear": LinearRouter(steps=150),
    }
    report = run_evaluation(log, emb, test, routers, compare=[("knn", "random")], n_boot=200)
    (block,) = report.blocks
    zero = block.zero.aiq
    knn = block.routers["knn"].metrics
    # the log is built so that reading the query pays: knn must beat fixed-action mixtures
    assert knn.aiq > zero + 0.03
    assert block.routers["constant"].metrics.aiq <= zero + 1e-9
    assert report.pooled["knn"]["aiq"] == pytest.approx(knn.aiq)
    comp = report.pooled_comparisons["knn vs random"]
    assert comp["diff"] > 2 * comp["se"]
    # model-only: one configuration per backend, so it cannot pick the low temperature on math
    assert "knn-model-only" in block.routers
    assert block.routers["knn-model-only"].metrics.aiq < knn.aiq
    text = format_report(report)
    assert "== block synth" in text and "paired bootstrap knn vs random" in text


def test_best_single_is_chosen_on_training_split(setup):
    log, emb, test = setup
    train = training_set(log, ~test, emb)
    report = run_evaluation(log, emb, test, {"constant": ConstantRouter()}, n_boot=10)
    block = report.blocks[0]
    q_train, _ = train.action_means()
    assert block.best_action == int(np.argmax(q_train[block.block.action_idx]))


def test_plot_is_written(setup, tmp_path):
    log, emb, test = setup
    report = run_evaluation(log, emb, test, {"knn": KNNRouter(k=5)}, n_boot=10)
    out = tmp_path / "f.png"
    plot_report(report, str(out))
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_no_block_is_a_clear_error(setup):
    log, emb, _ = setup
    with pytest.raises(ValueError, match="no evaluation block"):
        run_evaluation(
            log,
            emb,
            np.zeros(log.n_queries, dtype=bool) | (np.arange(log.n_queries) < 3),
            {"knn": KNNRouter(k=3)},
        )
