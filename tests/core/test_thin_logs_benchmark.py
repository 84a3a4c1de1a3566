"""Issue 15, items 2 and 7: the thin-log benchmark and the linear path's hierarchical prior.

Real parts: the benchmark's thinning on a real (synthetic, tests/helpers/logs.py) routing log,
torch training with a real tiny transformers encoder, and the benchmark itself run as a script
on the haps-bench data (`--quick`: tiny training, a smoke test of the whole pipeline).
"""

import dataclasses
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from haps_core.features import query_features
from haps_core.logs import read_logs, split_queries
from haps_core.model import RouterConfig
from haps_core.training import TrainingConfig, fit_router
from haps_core.training.prior import HierarchicalLinear
from tests.helpers.logs import synthetic_rows, write_jsonl
from tests.helpers.tiny_models import make_tiny_bert

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "benchmarks" / "thin_logs.py"


def _bench():
    spec = importlib.util.spec_from_file_location("thin_logs", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def parts(tmp_path_factory):
    root = tmp_path_factory.mktemp("thin")
    from haps_core.encoders import load_encoder

    encoder = load_encoder(str(make_tiny_bert(root / "enc")), device="cpu")
    log = read_logs(write_jsonl(root / "logs.jsonl", synthetic_rows(120)))
    return encoder, log, query_features(encoder, log.queries, True)


def _cells(log, rows):
    return {(int(log.row_query[r]), int(log.row_action[r])) for r in rows}


def test_issue15_thin_cells_keeps_a_quarter_and_the_test_queries(parts):
    _, log, _ = parts
    bench = _bench()
    test = split_queries(log.query_ids, 0.2, seed=0)
    thin, rows = bench.thin_cells(log, ~test, 0.25, seed=0)
    train_rows = np.flatnonzero(~test[log.row_query])
    kept = _cells(log, [r for r in rows if not test[log.row_query[r]]])
    share = len(kept) / len(_cells(log, train_rows))
    assert 0.25 <= share < 0.45  # 0.25 of the cells, plus one where a query would have none
    per_query = np.bincount([q for q, _ in kept], minlength=log.n_queries)
    assert (per_query[~test] >= 1).all()
    test_rows = np.flatnonzero(test[log.row_query])
    assert _cells(thin, np.flatnonzero(test[thin.row_query])) == _cells(log, test_rows)
    assert thin.space == log.space and thin.n_rows == len(rows)
    again, rows2 = bench.thin_cells(log, ~test, 0.25, seed=0)
    assert np.array_equal(rows, rows2)  # seeded


def test_issue15_bandit_log_is_one_action_per_query_with_its_propensity(parts):
    _, log, _ = parts
    bench = _bench()
    test = split_queries(log.query_ids, 0.2, seed=0)
    bandit, propensity = bench.one_per_query(log, ~test, seed=1)
    train = ~test[bandit.row_query]
    assert np.bincount(bandit.row_query[train], minlength=log.n_queries)[~test].tolist() == [1] * int(
        (~test).sum()
    )
    n_observed = {
        q: len({a for qq, a in _cells(log, range(log.n_rows)) if qq == q}) for q in range(log.n_queries)
    }
    expected = [1.0 / n_observed[int(q)] for q in bandit.row_query[train]]
    assert np.allclose(propensity[train], expected)
    assert np.isnan(propensity[~train]).all()
    assert (~train).sum() == test[log.row_query].sum()  # the test rows are complete


def test_issue15_hierarchical_prior_shares_within_a_backend():
    """An action with no data of its own gets its backend's part, not the global one."""
    backend_of = torch.tensor([0, 0, 1, 1])
    style_of = torch.tensor([0, 0, 0, 0])
    seen = torch.tensor([True, True, True, False])
    prior = HierarchicalLinear(backend_of, style_of, 3, torch.zeros(8), seen)
    x = torch.eye(3)
    target = torch.tensor([1.0, 1.0, -1.0])  # actions 0..2: action 2 (backend 1) differs
    opt = torch.optim.Adam(prior.parameters(), lr=0.05)
    for _ in range(400):
        out = prior(x)[:, :4]
        loss = ((out[:, :3] - target[:, None] * torch.tensor([1.0, 1.0, -1.0])) ** 2).mean()
        loss = loss + prior.penalty(1e-3, 30.0)
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        w, _ = prior.weight_and_bias()
    # the unseen action 3 follows its backend-mate 2, not the other backend
    assert torch.nn.functional.cosine_similarity(w[3], w[2], dim=0) > 0.9
    assert torch.nn.functional.cosine_similarity(w[3], w[0], dim=0) < 0
    linear = torch.nn.Linear(3, 8)
    prior.write_to(linear)
    assert torch.allclose(linear(x), prior(x), atol=1e-6)


def _fit(parts, training):
    encoder, log, features = parts
    cfg = RouterConfig(embed_dim=encoder.dim, hidden=16, members=2)
    return fit_router(log, encoder, features, None, cfg, training)


def test_issue15_hierarchical_prior_trains_and_is_deterministic(parts):
    training = TrainingConfig(
        epochs=2, progress=False, seed=3, device="cpu", skip_warmup_steps=20, skip_prior="hierarchical"
    )
    a, b = _fit(parts, training), _fit(parts, training)
    for k, v in a.state_dict().items():
        assert torch.equal(v, b.state_dict()[k]), k
    plain = _fit(parts, dataclasses.replace(training, skip_prior="none"))
    assert not torch.equal(a.members[0].skip.weight, plain.members[0].skip.weight)
    assert a.training_summary["training_config"]["skip_prior"] == "hierarchical"
    assert a.training_summary["skip_l2"] is not None
    _, log, features = parts
    quality, _ = a.predict_features(features[:5])
    assert np.isfinite(quality).all() and ((quality > 0) & (quality < 1)).all()


@pytest.mark.parametrize(
    ("kwargs", "needle"),
    [
        ({"skip_prior": "bayes"}, "`skip_prior` must be 'none' or 'hierarchical', got 'bayes'"),
        ({"skip_prior_ratio": 0.0}, "`skip_prior_ratio` must be None"),
        ({"skip_prior_ratio": float("nan")}, "`skip_prior_ratio` must be None"),
    ],
)
def test_issue15_hierarchical_prior_config_errors(kwargs, needle):
    with pytest.raises(ValueError, match=needle.replace("(", r"\(").replace(")", r"\)")):
        TrainingConfig(**kwargs)


@pytest.mark.slow  # about a minute on a free CPU: reads haps-bench, embeds (cached) and trains tiny routers
def test_issue15_thin_logs_benchmark_quick(tmp_path):
    from haps_core.paths import bench_logs, bench_prices

    out = tmp_path / "thin.json"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1"}
    cmd = [sys.executable, str(SCRIPT), "--quick", "--logs", "bandit", "--variants", "haps,flat"]
    proc = subprocess.run([*cmd, "--json", str(out)], env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "#### summary" in proc.stdout and "| linear |" in proc.stdout
    data = json.loads(out.read_text())["results"]
    assert set(data) == {"bandit"}
    log = read_logs(bench_logs(), prices=bench_prices())
    train = ~split_queries(log.query_ids, 0.2, seed=0)
    n_train = len(set(log.row_query[train[log.row_query]].tolist()))
    assert data["bandit"]["train_cells"] == data["bandit"]["train_rows"] == n_train  # one row per query
    for name in ("haps", "flat", "linear", "knn", "zero-router"):
        assert 0.3 < data["bandit"]["pooled"][name]["aiq"] < 1.0
    assert {"haps vs linear", "haps vs knn", "haps vs flat"} <= set(data["bandit"]["comparisons"])
