"""The speed paths give what the plain definitions give.

- fused router heads == HAPSRouter.forward (every architecture, 1 and several members, chunks),
  and HAPSRouter.predict_features uses them, rebuilt when weights change;
- HAPSRouter.decide's early-stopping scan == the full-sort definition (ties included);
- optimize_encoder: same encoder id, its own cache fingerprint, embeddings close to float32.
"""

import numpy as np
import pytest
import torch

from haps_core.catalog import Action, RoutingSpace
from haps_core.decision import choose
from haps_core.encoders import CachedEncoder, bf16_supported, load_encoder, optimize_encoder
from haps_core.model import HAPSRouter, RouterConfig, fuse_heads
from tests.helpers.random_routers import uneven_router
from tests.helpers.tiny_models import make_tiny_bert


def _space() -> RoutingSpace:
    actions = [Action.make("solo", temperature=0.0, prompt_style="answer_only")]
    actions += [
        Action.make(b, temperature=t, prompt_style=s)
        for b in ("a", "b")
        for t in (0.0, 0.7, 1.0)
        for s in ("cot", "answer_only")
    ]
    return RoutingSpace.from_actions(actions, {"a": (0.5, 1.5), "b": (3.0, 15.0), "solo": (0.1, 0.2)})


def _router(arch: str, members: int, seed: int = 0) -> HAPSRouter:
    torch.manual_seed(seed)
    space = _space()
    cfg = RouterConfig(embed_dim=12, hidden=24, members=members, architecture=arch, pgn_hidden=5)
    router = HAPSRouter(space, cfg, torch.randn(2, 12))
    with torch.no_grad():  # move every weight off its initialisation (zeros included)
        for p in router.parameters():
            p.add_(0.1 * torch.randn_like(p))
        router.feature_mean.normal_()
        router.feature_std.uniform_(0.5, 2.0)
    return router.eval()


@pytest.mark.parametrize("arch", ["haps", "flat", "no_pgn"])
@pytest.mark.parametrize("members", [1, 3])
def test_fused_heads_match_the_router(arch, members):
    router = _router(arch, members)
    x = torch.randn(37, router.config.input_dim)
    # several chunks, the last one partial; backends hold 1 and 6 actions, so the per-backend
    # action layout of the low-level heads is padded
    fused = fuse_heads(router, chunk_size=8)
    with torch.no_grad():
        q0, c0 = router(x)
        q1, c1 = fused(x)
    # float32 rounding only (the weights here are large on purpose, so logits are too)
    torch.testing.assert_close(q1, q0, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(c1, c0, atol=1e-4, rtol=1e-4)
    quality, cost = fused.predict_features(x.numpy())
    ref_q, ref_c = router.predict_features(x)
    np.testing.assert_allclose(quality, ref_q, atol=1e-4)
    np.testing.assert_allclose(cost, ref_c, rtol=1e-4)
    # a snapshot: training the router afterwards does not change the fused heads
    with torch.no_grad():
        next(router.parameters()).add_(1.0)
    q2, _ = fused(x)
    torch.testing.assert_close(q2, q1)


def test_fused_heads_reject_a_bad_chunk_size():
    with pytest.raises(ValueError, match="chunk_size"):
        fuse_heads(_router("haps", 1), chunk_size=0)


def _reference_decide(router, quality, cost, w, n):
    """The plain definition: sort every action by utility (ties to the cheaper action's index
    as `choose` breaks them), other backends' first appearances first, then the rest."""
    chosen = choose(quality, cost, w)
    out = []
    for i, a in enumerate(chosen):
        order = [j for j in np.argsort(-(quality[i] - w * cost[i]), kind="stable") if j != a]
        seen, firsts, rest = {router.space.actions[a].backend}, [], []
        for j in order:
            b = router.space.actions[j].backend
            (firsts if b not in seen else rest).append(int(j))
            seen.add(b)
        out.append((int(a), (firsts + rest)[:n]))
    return out


def test_decide_keeps_the_best_other_backends_first():
    """`HAPSRouter.decide` (early-stopping scan) == the plain full-sort definition."""
    router = _router("haps", 2)
    rng = np.random.default_rng(0)
    n_a = len(router.space)
    quality, cost = rng.random((50, n_a)), rng.random((50, n_a)) * 1e-2
    for q, c in ((quality, cost), (np.round(quality, 1), np.round(cost, 3))):  # ties too
        for w in (0.0, 3.0, 1e4):
            for n in (0, 1, 3, 6, 50):
                decisions = router.decide(q, c, w, n)
                got = [(d.action_index, [alt.action_index for alt in d.alternatives]) for d in decisions]
                assert got == _reference_decide(router, q, c, w, n)
    with pytest.raises(ValueError, match="cost_weight"):
        router.decide(quality, cost, -1.0)
    with pytest.raises(ValueError, match="n_alternatives"):
        router.decide(quality, cost, 0.0, -1)


def test_router_predictions_use_the_fused_heads_and_follow_weight_changes():
    """predict_features goes through the fused path, rebuilt when a weight changes in place."""
    router = _router("haps", 2)
    x = torch.randn(5, router.config.input_dim)
    q1, _ = router.predict_features(x)
    with torch.no_grad():
        expected = torch.sigmoid(router(x)[0]).numpy()
    np.testing.assert_allclose(q1, expected, atol=1e-5)
    fused = router.__dict__["_fused_heads"][1]
    assert router.predict_features(x)[0] is not None and router.__dict__["_fused_heads"][1] is fused
    with torch.no_grad():
        router.members[0].skip.bias.add_(1.0)
    q2, _ = router.predict_features(x)
    assert router.__dict__["_fused_heads"][1] is not fused
    with torch.no_grad():
        np.testing.assert_allclose(q2, torch.sigmoid(router(x)[0]).numpy(), atol=1e-5)
    assert not np.allclose(q1, q2)


@pytest.fixture(scope="module")
def tiny_encoder(tmp_path_factory):
    return load_encoder(str(make_tiny_bert(tmp_path_factory.mktemp("bert"), hidden=64)), device="cpu")


def test_int8_encoder_keeps_id_changes_fingerprint_and_stays_close(tiny_encoder, tmp_path):
    texts = ["the cat sat on the mat", "a cheap router query", "model dog"]
    ref = tiny_encoder.encode(texts)
    fast = optimize_encoder(tiny_encoder, "int8")
    assert fast.encoder_id == tiny_encoder.encoder_id and fast.dim == tiny_encoder.dim
    assert fast.fingerprint != tiny_encoder.fingerprint and "int8" in fast.fingerprint
    got = fast.encode(texts)
    assert got.shape == ref.shape and got.dtype == torch.float32
    assert float((got * ref).sum(1).min()) > 0.9
    assert tiny_encoder.model is not fast.model  # the original is untouched
    quantized = [m for m in fast.model.modules() if "quantized.dynamic" in type(m).__module__]
    assert quantized and all(type(m).__name__ == "Linear" for m in quantized)
    # an embedding cache keeps int8 and float32 vectors apart
    assert CachedEncoder(fast, tmp_path).directory != CachedEncoder(tiny_encoder, tmp_path).directory
    with pytest.raises(ValueError, match="already optimised"):
        optimize_encoder(fast, "bf16")
    with pytest.raises(ValueError, match="precision"):
        optimize_encoder(tiny_encoder, "fp8")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="HFEncoder"):
        optimize_encoder(CachedEncoder(tiny_encoder, tmp_path), "int8")  # type: ignore[arg-type]


def test_bf16_encoder_where_the_cpu_has_it(tiny_encoder, monkeypatch):
    texts = ["the cat sat on the mat", "a cheap router query"]
    if bf16_supported():
        fast = optimize_encoder(tiny_encoder, "bf16")
        assert next(fast.model.parameters()).dtype == torch.bfloat16
        assert float((fast.encode(texts) * tiny_encoder.encode(texts)).sum(1).min()) > 0.99
    monkeypatch.setattr("haps_core.encoders.optimized.bf16_supported", lambda: False)
    with pytest.raises(ValueError, match="no native bfloat16"):
        optimize_encoder(tiny_encoder, "bf16")


def test_router_encoder_precision_switch(tmp_path):
    """set_encoder_precision swaps in an int8 copy (cache kept, own fingerprint) and back."""
    router = _router("haps", 1)  # expects 12-dim embeddings: a matching tiny encoder
    enc = load_encoder(str(make_tiny_bert(tmp_path / "bert12", hidden=12)), device="cpu")
    cached = CachedEncoder(enc, tmp_path / "cache")
    router.attach_encoder(cached)
    texts = ["the cat sat on the mat", "a cheap router query"]
    before = router.route(texts, cost_weight=0.0)
    router.set_encoder_precision("int8")
    assert isinstance(router.encoder, CachedEncoder) and router.encoder.encoder.precision == "int8"
    assert router.encoder.directory != cached.directory and router.encoder.encoder_id == enc.encoder_id
    assert len(router.route(texts, cost_weight=0.0)) == 2
    router.set_encoder_precision("fp32")
    assert router.encoder.encoder is enc
    assert router.route(texts, cost_weight=0.0) == before
    with pytest.raises(ValueError, match="precision"):
        router.set_encoder_precision("fp8")


@pytest.mark.parametrize("arch", ["haps", "flat"])
@pytest.mark.parametrize("linear_only", [(0, 2), (0, 1, 2)])
def test_fused_heads_skip_members_that_are_their_linear_path(arch, linear_only):
    """Members whose deep output layers are zero (early stopping kept the linear path) run only
    that path in the fused heads; the result still equals the router's forward."""
    from haps_core.model.fused import _deep_heads_are_zero

    router = _router(arch, 3)
    with torch.no_grad():
        for i in linear_only:
            net = router.members[i]
            if arch == "flat":
                net.flat_head.weight.zero_()
                net.flat_head.bias.zero_()
            else:
                m, k = net._pgn_shapes
                net.high_head.weight.zero_()
                net.high_head.bias.zero_()
                net.low_base[m * k + k :] = 0.0
                net.pgn[-1].weight[m * k + k :] = 0.0
                net.pgn[-1].bias[m * k + k :] = 0.0
    assert [_deep_heads_are_zero(net, arch) for net in router.members] == [i in linear_only for i in range(3)]
    fused = fuse_heads(router, chunk_size=8)
    assert fused.n_deep == 3 - len(linear_only)
    x = torch.randn(21, router.config.input_dim)
    with torch.no_grad():
        q0, c0 = router(x)
        q1, c1 = fused(x)
    torch.testing.assert_close(q1, q0, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(c1, c0, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("arch", ["haps", "flat"])
@pytest.mark.parametrize("members", [1, 3])
@pytest.mark.parametrize("linear_only", [(), (1,)])
def test_small_batch_numpy_heads_match_the_torch_heads(arch, members, linear_only):
    """The numpy twin used for one or two queries gives the fused heads' outputs (members with
    and without deep heads; backends whose groups reorder them), and `predict_with_spread`
    gives the same predictions whichever path a batch takes."""
    from haps_core.model.small_batch import SMALL_BATCH, ensemble_predictions, small_batch_heads

    router = uneven_router(arch, members, linear_only)
    router.heads_runtime = "eager"  # the numpy and torch paths (ONNX Runtime: test_compiled_heads)
    heads = router._inference_heads()
    if arch == "haps":
        assert [g[2] for g in heads.slot_groups] == [9, 3]  # "big" alone; "y" and "x" padded to 3
    twin = small_batch_heads(heads)
    assert twin is not None and small_batch_heads(heads) is twin  # made once
    x = 2 * torch.randn(5, router.config.input_dim)
    with torch.no_grad():
        q0, c0 = heads.member_outputs(x)
    q1, c1 = twin.member_outputs(x.numpy())
    np.testing.assert_allclose(q1, q0.numpy(), atol=1e-5, rtol=1e-5)
    np.testing.assert_allclose(c1, c0.numpy(), atol=1e-5, rtol=1e-5)
    quality, _, spread = ensemble_predictions(q1, c1)
    if members == 1:
        assert not spread.any()
    together = router.predict_with_spread(x)  # torch: 5 > SMALL_BATCH
    assert len(x) > SMALL_BATCH
    for i in range(len(x)):
        alone = router.predict_with_spread(x[i : i + 1])  # numpy
        for a, b in zip(alone, together, strict=True):
            np.testing.assert_allclose(a[0], b[i], atol=1e-5, rtol=1e-5)
    np.testing.assert_allclose(quality, together[0], atol=1e-5, rtol=1e-5)


def test_inference_cache_sees_replaced_parameters():
    """A parameter replaced by a new object (not changed in place) also rebuilds the fused heads."""
    router = _router("haps", 2)
    x = torch.randn(4, router.config.input_dim)
    q1, _ = router.predict_features(x)
    router.members[1].skip.weight = torch.nn.Parameter(router.members[1].skip.weight.detach() + 1.0)
    q2, _ = router.predict_features(x)
    with torch.no_grad():
        np.testing.assert_allclose(q2, torch.sigmoid(router(x)[0]).numpy(), atol=1e-5)
    assert not np.allclose(q1, q2)
    router.train()  # the mode does not matter to the fused path (no dropout there)
    np.testing.assert_allclose(router.predict_features(x)[0], q2, atol=1e-6)


def test_with_fields_is_dataclasses_replace():
    """The request path's copy-with-changes equals ``dataclasses.replace`` (and checks names)."""
    import dataclasses

    from haps_core.decision import RoutingDecision
    from haps_core.model.guarded import with_fields

    d = RoutingDecision("a", {"temperature": 0.5}, 0.7, 0.01, 2.0, 3)
    changes = {"confidence": 0.9, "margin": None, "ood": False, "ood_score": 1.5, "coverage": 0.2}
    new = with_fields(d, **changes)
    assert (
        new == dataclasses.replace(d, **changes)
        and new.to_dict() == dataclasses.replace(d, **changes).to_dict()
    )
    assert d.confidence is None  # the original is unchanged
    with pytest.raises(TypeError, match="no field"):
        with_fields(d, confidance=0.9)
