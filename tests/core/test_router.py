"""The HAPS router end to end on CPU with a tiny randomly initialised encoder (fast).

Real parts: torch training, a real transformers encoder (tiny, random weights, written locally),
real safetensors checkpoints. The log is synthetic (tests/helpers/logs.py) with a learnable rule.
"""

import json

import numpy as np
import pytest
import torch

from haps_core import RouterConfig
from haps_core.catalog import Action, RoutingSpace
from haps_core.encoders import load_encoder
from haps_core.errors import CheckpointError
from haps_core.logs import read_logs
from haps_core.training import (
    TrainingConfig,
    features_for,
    fit_router,
    model_only_subset,
    policy_loss,
    subset_log,
)
from tests.helpers.logs import synthetic_rows, write_jsonl
from tests.helpers.tiny_models import make_tiny_bert


@pytest.fixture(scope="module")
def tiny_encoder(tmp_path_factory):
    return load_encoder(str(make_tiny_bert(tmp_path_factory.mktemp("bert"))), device="cpu")


@pytest.fixture(scope="module")
def trained(tmp_path_factory, tiny_encoder):
    path = write_jsonl(tmp_path_factory.mktemp("logs") / "l.jsonl", synthetic_rows(80))
    log = read_logs(path)
    cfg = RouterConfig(embed_dim=tiny_encoder.dim, hidden=32, members=2)
    feats = features_for(tiny_encoder, log.queries, cfg.use_structural)
    router = fit_router(log, tiny_encoder, feats, None, cfg, TrainingConfig(epochs=8, progress=False))
    return log, router, feats


@pytest.mark.parametrize("arch", ["haps", "flat", "no_pgn"])
def test_every_architecture_trains_and_routes(tiny_encoder, trained, arch):
    log, _, feats = trained
    cfg = RouterConfig(embed_dim=tiny_encoder.dim, hidden=16, members=1, architecture=arch)
    router = fit_router(log, tiny_encoder, feats, None, cfg, TrainingConfig(epochs=3, progress=False))
    (d,) = router.route(["Compute 17 * 23 + 4 and explain #1"], cost_weight=0.0)
    assert d.backend in ("small", "large")
    assert 0 <= d.predicted_quality <= 1 and d.predicted_cost > 0
    assert router.training_summary["epochs_run"] >= 1


def test_training_is_deterministic_on_cpu(tiny_encoder, trained):
    log, _, feats = trained
    cfg = RouterConfig(embed_dim=tiny_encoder.dim, hidden=16, members=1)
    tc = TrainingConfig(epochs=3, progress=False, seed=3)
    a = fit_router(log, tiny_encoder, feats, None, cfg, tc)
    b = fit_router(log, tiny_encoder, feats, None, cfg, tc)
    for (k, v), (_, w) in zip(a.state_dict().items(), b.state_dict().items()):
        assert torch.equal(v, w), k


def test_route_decisions_and_cost_weight(trained):
    _, router, _ = trained
    texts = ["Who wrote Hamlet? #3", "Compute 17 * 23 + 4 and explain #5"]
    free = router.route(texts, cost_weight=0.0)
    stingy = router.route(texts, cost_weight=1e6)
    assert all(d.cost_weight == 1e6 for d in stingy)
    # at a huge cost weight the router takes the cheapest predicted action
    q, c = router.predict(texts)
    assert [d.action_index for d in stingy] == list(c.argmin(1))
    assert [d.action_index for d in free] == list((q - 1e-9 * c / c.max()).argmax(1))
    d = free[0]
    assert d.backend == router.space.actions[d.action_index].backend
    # runner-ups: other backends first, never the chosen action
    assert d.alternatives and d.alternatives[0].backend != d.backend
    assert all(a.action_index != d.action_index for a in d.alternatives)
    json.dumps(d.to_dict())


def test_budget_calibration(trained):
    _, router, feats = trained
    q, c = router.predict_features(feats)
    cheapest = c.min(1).mean()
    w = router.calibrate_cost_weight(cheapest * 1.5, feats)
    chosen = [d.action_index for d in router.decide(q, c, w)]
    assert c[np.arange(len(c)), chosen].mean() <= cheapest * 1.5
    with pytest.raises(ValueError, match="below the cheapest action"):
        router.calibrate_cost_weight(cheapest * 0.5, feats)
    with pytest.raises(ValueError, match="`target_mean_cost`"):
        router.calibrate_cost_weight(-1.0)
    with pytest.raises(ValueError, match="`max_cost_per_query`"):
        router.route(["Who wrote Hamlet? #2"], max_cost_per_query=-1.0)
    # a target mean cost is calibrated on the stored reference queries, alone or in a batch
    assert len(router.reference_features) > 0
    (d,) = router.route(["Who wrote Hamlet? #2"], target_mean_cost=float(c.max(1).mean()))
    assert d.cost_weight >= 0
    # a cap is per query: the chosen action's predicted cost never exceeds it
    cap = float(np.median(c))
    texts = [f"Who wrote Hamlet? #{i}" for i in range(20)]
    _, costs = router.predict(texts)
    for d, row in zip(router.route(texts, max_cost_per_query=cap), costs):
        assert d.over_budget == (row.min() > cap)
        assert d.predicted_cost <= cap or d.predicted_cost == pytest.approx(row.min())


def test_bad_route_input(trained):
    _, router, _ = trained
    with pytest.raises(ValueError, match=r"`texts\[1\]` is empty"):
        router.route(["ok", "   "])
    with pytest.raises(TypeError, match=r"`texts\[0\]` must be a string"):
        router.route([3])  # type: ignore[list-item]
    with pytest.raises(ValueError, match="`cost_weight`"):
        router.route(["x"], cost_weight=-1.0)


def test_save_load_round_trip_identical_decisions(trained, tmp_path):
    _, router, _ = trained
    router.save_pretrained(tmp_path / "ckpt")
    files = sorted(p.name for p in (tmp_path / "ckpt").iterdir())
    assert files == ["README.md", "config.json", "model.safetensors"]
    # the checkpoint references its encoder; give the loader the same tiny one
    info = json.loads((tmp_path / "ckpt" / "config.json").read_text())["encoder"]
    assert info["id"] == router.encoder.encoder_id
    from haps_core.model import load_router_folder

    loaded = load_router_folder(tmp_path / "ckpt", load_encoder=False).attach_encoder(router.encoder)
    texts = [f"Who wrote Hamlet? #{i}" if i % 2 else f"Compute {i} * 3 #{i}" for i in range(100)]
    for w in (0.0, 50.0, 1e4):
        a = [(d.action_index, round(d.predicted_quality, 6)) for d in router.route(texts, cost_weight=w)]
        b = [(d.action_index, round(d.predicted_quality, 6)) for d in loaded.route(texts, cost_weight=w)]
        assert a == b


def test_strict_loading_refuses_pickles_and_mismatches(trained, tmp_path):
    _, router, _ = trained
    from haps_core.model import load_router_folder

    d = router.save_pretrained(tmp_path / "c")
    (d / "extra.bin").write_bytes(b"pickle")
    with pytest.raises(CheckpointError, match="pickle-format file"):
        load_router_folder(d, load_encoder=False)
    (d / "extra.bin").unlink()
    cfg = json.loads((d / "config.json").read_text())
    cfg["router_config"]["hidden"] = 64
    (d / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(CheckpointError, match="has shape"):
        load_router_folder(d, load_encoder=False)
    cfg["router_config"]["hidden"] = 32
    cfg["format_version"] = 99
    (d / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(CheckpointError, match="newer than this HAPS supports"):
        load_router_folder(d, load_encoder=False)


def test_unseen_parameter_values_get_scores(tiny_encoder):
    # "large" is observed at temperature 0 and 1 only; 0.5 is in its grid but never logged.
    rows = synthetic_rows(40)
    log = read_logs(write_jsonl_tmp(rows))
    actions = [*log.space.actions, Action.make("large", temperature=0.5, prompt_style="cot")]
    space = RoutingSpace.from_actions(actions)
    log2 = read_logs(write_jsonl_tmp(rows), space=space)
    cfg = RouterConfig(embed_dim=tiny_encoder.dim, hidden=16, members=1)
    feats = features_for(tiny_encoder, log2.queries, True)
    router = fit_router(log2, tiny_encoder, feats, None, cfg, TrainingConfig(epochs=5, progress=False))
    q, _ = router.predict_features(feats)
    i05 = space.index(Action.make("large", temperature=0.5, prompt_style="cot"))
    i0 = space.index(Action.make("large", temperature=0.0, prompt_style="cot"))
    i1 = space.index(Action.make("large", temperature=1.0, prompt_style="cot"))
    # the unseen temperature is scored from its value: between (or near) its neighbours
    lo, hi = np.minimum(q[:, i0], q[:, i1]), np.maximum(q[:, i0], q[:, i1])
    assert np.mean((q[:, i05] >= lo - 0.1) & (q[:, i05] <= hi + 0.1)) > 0.9


def write_jsonl_tmp(rows):
    import tempfile
    from pathlib import Path

    return write_jsonl(Path(tempfile.mkdtemp()) / "x.jsonl", rows)


def test_model_only_subset_and_log_without_cost(tiny_encoder, trained):
    log, _, feats = trained
    keep = model_only_subset(log, np.ones(log.n_queries, dtype=bool))
    sub = subset_log(log, keep)
    assert len(sub.space) == 2 and {a.backend for a in sub.space.actions} == {"small", "large"}
    rows = [
        {k: v for k, v in r.items() if k not in ("cost", "input_tokens", "output_tokens")}
        for r in synthetic_rows(20)
    ]
    nolog = read_logs(write_jsonl_tmp(rows))
    cfg = RouterConfig(embed_dim=tiny_encoder.dim, hidden=16, members=1)
    f2 = features_for(tiny_encoder, nolog.queries, True)
    router = fit_router(nolog, tiny_encoder, f2, None, cfg, TrainingConfig(epochs=2, progress=False))
    assert not router.has_cost
    a = router.route(["Who wrote Hamlet? #1"], cost_weight=0.0)[0]
    b = router.route(["Who wrote Hamlet? #1"], cost_weight=1e9)[0]
    assert a.action_index == b.action_index and a.predicted_cost == 0


def test_policy_loss_exact_and_reinforce():
    utility = torch.tensor([[0.2, 0.8], [0.5, 0.1]], requires_grad=True)
    reward = torch.tensor([[0.0, 1.0], [1.0, 0.0]])
    full = torch.tensor([[True, True], [True, True]])
    loss, _ = policy_loss(utility, reward, full, tau=0.1, samples=4)
    p = torch.softmax(utility.detach() / 0.1, 1)
    assert float(loss) == pytest.approx(float(-(p * reward).sum(1).mean()), abs=1e-6)
    loss.backward()
    assert utility.grad[0, 1] < 0  # raising the better action's utility lowers the loss
    partial = torch.tensor([[True, False], [True, True]])
    loss2, ent = policy_loss(
        utility, reward, partial, tau=0.1, samples=8, generator=torch.Generator().manual_seed(0)
    )
    assert torch.isfinite(loss2) and ent >= 0


def test_fine_tuning_the_encoder_end_to_end(tmp_path, trained):
    """The encoder's weights change with the routing objective and are saved (safetensors)."""
    log, _, _ = trained
    enc = load_encoder(str(make_tiny_bert(tmp_path / "ft-bert")), device="cpu")
    before = {k: v.clone() for k, v in enc.model.state_dict().items()}
    cfg = RouterConfig(embed_dim=enc.dim, hidden=16, members=2)
    feats = features_for(enc, log.queries, True)
    # No linear warm-up: the untrained-deep-heads state is then not an early-stopping candidate,
    # so the kept state is one the encoder was trained into (with it, held-out loss may keep
    # the encoder as it was on this tiny log, which is right but not what is tested here).
    tc = TrainingConfig(epochs=2, progress=False, skip_warmup_steps=0)
    router = fit_router(log, enc, feats, None, cfg, tc, fine_tune=True, encoder_lr=1e-3)
    assert len(router.members) == 1  # one member shares the tuned encoder
    after = enc.model.state_dict()
    assert any(not torch.equal(before[k], after[k]) for k in before)
    d = router.save_pretrained(tmp_path / "ft")
    assert (d / "encoder" / "model.safetensors").is_file()
    assert not list(d.rglob("*.bin"))
    from haps_core.model import load_router_folder

    loaded = load_router_folder(d)
    texts = ["Who wrote Hamlet? #1", "Compute 17 * 23 + 4 and explain #2"]
    assert [x.action_index for x in loaded.route(texts, cost_weight=1.0)] == [
        x.action_index for x in router.route(texts, cost_weight=1.0)
    ]


def test_untrained_deep_heads_predict_the_linear_path(tiny_encoder, trained):
    """Deep heads start at zero: an untrained member is exactly its linear path, so early
    stopping can keep the linear path alone when the deep heads do not help on held-out data."""
    from haps_core.training import build_router

    log, _, feats = trained
    for arch in ("haps", "flat", "no_pgn"):
        cfg = RouterConfig(embed_dim=tiny_encoder.dim, hidden=16, members=1, architecture=arch)
        router = build_router(log.space, cfg, tiny_encoder).eval()
        with torch.no_grad():
            router.members[0].skip.weight.normal_()
            router.members[0].skip.bias.normal_()
            q, c = router(feats, member=0)
            skip = router.members[0].skip(router.normalise(feats))
        n = len(log.space)
        torch.testing.assert_close(q, skip[:, :n])
        torch.testing.assert_close(c, skip[:, n:])


def test_linear_path_l2_is_chosen_once_on_held_out_queries(tiny_encoder, trained):
    from haps_core.training import SKIP_L2_CANDIDATES

    log, _, feats = trained
    cfg = RouterConfig(embed_dim=tiny_encoder.dim, hidden=16, members=2)
    router = fit_router(log, tiny_encoder, feats, None, cfg, TrainingConfig(epochs=2, progress=False))
    chosen = router.training_summary["skip_l2"]
    assert chosen in SKIP_L2_CANDIDATES
    fixed = fit_router(
        log, tiny_encoder, feats, None, cfg, TrainingConfig(epochs=2, progress=False, skip_l2=0.5)
    )
    assert fixed.training_summary["skip_l2"] == 0.5
    with pytest.raises(ValueError, match="skip_l2"):
        TrainingConfig(skip_l2=-1.0)


def test_outcomes_are_densified_a_block_at_a_time(tiny_encoder, trained, monkeypatch):
    """Held-out loss and regret computed in blocks of queries equal the one-block figures, and
    training runs when every step sees only a block (what keeps memory flat on huge logs)."""
    from haps_core.training import batches, losses

    log, router, feats = trained
    table = log.outcomes(np.arange(len(log.row_query)))
    idx = np.arange(log.n_queries)
    weights = np.array([0.0, 10.0, 1000.0])
    whole = (
        losses.dev_loss(router, feats, table, idx, 0.5),
        losses.dev_regret(router, feats, table, idx, weights),
    )
    monkeypatch.setattr(batches, "MAX_DENSE_CELLS", 3 * len(log.space))  # 3 queries per block
    assert len(batches._chunks(len(idx), len(log.space))) > 10
    blocked = (
        losses.dev_loss(router, feats, table, idx, 0.5),
        losses.dev_regret(router, feats, table, idx, weights),
    )
    np.testing.assert_allclose(blocked, whole, rtol=1e-5)
    cfg = RouterConfig(embed_dim=tiny_encoder.dim, hidden=16, members=1)
    small = fit_router(log, tiny_encoder, feats, None, cfg, TrainingConfig(epochs=2, progress=False))
    (d,) = small.route(["Who wrote Hamlet? #1"], cost_weight=0.0)
    assert d.backend in ("small", "large")


def test_the_old_pipeline_module_warns_and_re_exports(monkeypatch):
    import importlib
    import sys

    monkeypatch.delitem(sys.modules, "haps_core.pipeline", raising=False)
    match = "haps_core.pipeline is deprecated: import from haps_core.training"
    with pytest.warns(DeprecationWarning, match=match):
        old = importlib.import_module("haps_core.pipeline")
    assert old.fit_router is fit_router and old.features_for is features_for
    assert old.subset_log is subset_log and old.model_only_subset is model_only_subset


def test_joint_training_starts_from_the_observed_means(tiny_encoder, trained):
    """Without the warm-up, each member's linear path starts at the observed mean quality and
    log-cost of every action (not at zero, where the cost head says $1 a call). The learning
    rate is ~0 here, so the predictions are the starting point itself."""
    log, _, feats = trained
    cfg = RouterConfig(embed_dim=tiny_encoder.dim, hidden=16, members=1)
    tc = TrainingConfig(epochs=1, progress=False, skip_warmup_steps=0, lr=1e-9, policy_weight=0.0)
    router = fit_router(log, tiny_encoder, feats, None, cfg, tc)
    q, c = router.predict(log.queries)
    for a in range(len(router.space)):
        rows = log.row_action == a
        assert abs(float(q[:, a].mean()) - float(log.score[rows].mean())) < 0.1
        ratio = float(np.median(c[:, a])) / float(np.median(log.cost[rows]))
        assert 0.5 < ratio < 2.0, (a, ratio)
