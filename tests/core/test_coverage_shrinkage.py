"""Issue 15, item 3: poorly covered backends are shrunk toward the local mean at decision time
(`haps_core.model.coverage`).

REAL: a router trained here on the haps-bench log (a small one, 1 member, 2 epochs) with one
backend kept only on its best 10% of train queries (`benchmarks/sparse_new_model.py`'s
thinning), routing the dev queries through `HAPSRouter.route`; the shipped default router. The
unit tests give `shrink_to_coverage` hand-made supports (no router).
"""

import numpy as np
import pytest

from haps_core.model.coverage import check_coverage_prior, common_ratios, shrink_to_coverage

BACKEND_OF = np.array([0, 0, 1, 2])  # backend 0 has two actions
K = 5


def _shrink(quality, action_support, backend_support, share, prior=3.0):
    q = np.asarray(quality, dtype=np.float32)[None, :]
    coverage = np.asarray(action_support, float)[None, :] / K
    return shrink_to_coverage(
        q, coverage, np.asarray(backend_support, float)[None, :], common_ratios(np.asarray(share, float)),
        BACKEND_OF, K, prior,
    )[0]  # fmt: skip


def test_issue15_fully_supported_backends_are_left_as_they_are():
    q = [0.9, 0.4, 0.7, 0.2]
    got = _shrink(q, [5, 5, 5, 5], [5, 5, 5], [0.6, 0.6, 0.6])
    np.testing.assert_array_equal(got, np.asarray(q, dtype=np.float32))
    assert common_ratios(np.array([0.3, 0.6, 0.9])).tolist() == [0.5, 1.0, 1.0]
    assert common_ratios(np.zeros(3)).tolist() == [1.0, 1.0, 1.0]  # no typical share to compare to


def test_issue15_a_rare_backend_unsupported_here_moves_toward_the_local_mean():
    q = np.array([0.6, 0.5, 0.8, 0.99], dtype=np.float32)
    support = [5, 1, 5, 0]  # backend 2 (action 3) observed by no neighbour ...
    share = [0.6, 0.6, 0.06]  # ... and on a tenth of the typical backend's share of the log
    got = _shrink(q, support, [5, 5, 0], share)
    local = (5 * 0.6 + 1 * 0.5 + 5 * 0.8) / 11
    rho = 0.06 / 0.6
    w = rho * K / (rho * K + 3.0) * (K + 3.0) / K
    assert got[3] == pytest.approx(w * 0.99 + (1 - w) * local, rel=1e-6)
    np.testing.assert_allclose(got[:3], q[:3], rtol=1e-6)  # the others keep their predictions
    assert got[3] < got[2]  # it no longer wins here
    stronger = _shrink(q, support, [5, 5, 0], share, prior=10.0)
    assert stronger[3] < got[3]
    assert _shrink(q, support, [5, 5, 0], share, prior=0.0)[3] == pytest.approx(0.99)


def test_issue15_each_ratio_alone_keeps_a_backend_unshrunk():
    q = [0.6, 0.5, 0.7, 0.99]
    # as common as the typical backend, though no neighbour observed it (another dataset's backend)
    common = _shrink(q, [5, 5, 5, 0], [5, 5, 0], [0.6, 0.6, 0.6])
    assert common[3] == pytest.approx(0.99)
    # rare in the log, but observed by every neighbour of this query
    near = _shrink(q, [5, 5, 5, 5], [5, 5, 5], [0.6, 0.6, 0.06])
    assert near[3] == pytest.approx(0.99)


def test_issue15_bad_coverage_prior_names_the_parameter():
    for bad in (-1.0, float("nan"), float("inf"), True, "3"):
        with pytest.raises(ValueError, match=r"`coverage_prior` must be a finite number >= 0.*got"):
            check_coverage_prior(bad)
    assert check_coverage_prior(0) == 0.0


def test_issue15_route_rejects_a_bad_coverage_prior_and_reports_the_shrunk_quality():
    from haps_core import HAPSRouter

    router = HAPSRouter.from_pretrained("haps-default")
    with pytest.raises(ValueError, match="coverage_prior"):
        router.route(["What is 2 + 2?"], coverage_prior=-1.0)
    query = ["Topic: Math\nQuestion: What is 17 * 23?"]
    (off,) = router.route(query, cost_weight=0.0, coverage_prior=0.0)
    (on,) = router.route(query, cost_weight=0.0)
    raw = router.predict(query)[0][0]
    assert off.predicted_quality == pytest.approx(float(raw[off.action_index]), rel=1e-6)
    assert 0.0 < on.predicted_quality <= 1.0


def test_issue15_a_backend_logged_only_on_its_best_queries_no_longer_takes_the_traffic():
    """Trained on haps-bench with gpt-35-turbo kept only on its best 10% of train queries: with
    shrinkage off it takes nearly all dev traffic at cost weight 0 (the failure issue 15 names);
    by default it takes a small share, as the complete-data router gives it almost none."""
    from haps_core import RouterConfig
    from haps_core.encoders import embedding_encoder
    from haps_core.logs import read_logs, split_queries
    from haps_core.paths import bench_logs, bench_prices
    from haps_core.training import TrainingConfig, features_for, fit_router
    from tests.core.test_sparse_benchmark import _benchmark

    bench = _benchmark()
    log = read_logs(bench_logs(), prices=bench_prices())
    dev = split_queries(log.query_ids, 0.2, seed=0)
    encoder = embedding_encoder("static-minilm")
    config = RouterConfig(embed_dim=encoder.dim, members=1, hidden=32)
    features = features_for(encoder, log.queries, config.use_structural)
    training = TrainingConfig(progress=False, seed=0, epochs=2)
    backend = "gpt-35-turbo"
    thin = bench.best_queries_only(log, ~dev, backend, np.random.default_rng(0))
    router = fit_router(thin, encoder, features, ~dev, config, training)
    texts = [log.queries[i] for i in np.flatnonzero(dev)]

    def share(**kw):
        return np.mean([d.backend == backend for d in router.route(texts, cost_weight=0.0, **kw)])

    off, default = share(coverage_prior=0.0), share()
    assert off > 0.8
    assert default < 0.2
    assert share(coverage_prior=10.0) <= default
