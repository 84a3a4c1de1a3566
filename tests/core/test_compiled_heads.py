"""The router heads compiled for ONNX Runtime (`haps_core.model.compiled`) give the eager heads'
predictions, and the runtime policy does what it says.

REAL: ONNX Runtime running the graph built from the routers' own buffers; the shipped default
router on the pinned sample queries. The small routers have random weights (nothing trained:
`tests.helpers.random_routers`); the import and build failures are simulated by replacing
`onnxruntime_available` and `CompiledHeads` (faked), so the fallback code itself runs.
"""

import json
import logging

import numpy as np
import pytest
import torch

from haps_core.model import compiled
from haps_core.model.compiled import COMPILE_AFTER, CompiledHeads, check_heads_runtime, fast_predictions
from haps_core.model.small_batch import small_batch_heads
from tests.helpers.random_routers import uneven_router


@pytest.mark.parametrize("arch", ["haps", "flat"])
@pytest.mark.parametrize("members", [1, 3])
@pytest.mark.parametrize("linear_only", [(), (1,), (0, 1, 2)])
def test_issue18_compiled_heads_match_the_torch_heads(arch, members, linear_only):
    """Quality, cost and spread equal the fused torch heads' at batch 1, 2 and 7 (members with
    and without deep heads, backends whose groups reorder them, one member without spread)."""
    router = uneven_router(arch, members, linear_only)
    heads = router._inference_heads()
    session = CompiledHeads(small_batch_heads(heads), threads=1)
    for n in (1, 2, 7):
        x = 2 * torch.randn(n, router.config.input_dim)
        with torch.inference_mode():
            want = heads.predictions(x)
        got = session.predictions(x.numpy())
        for a, b in zip(got, want, strict=True):
            assert a.shape == b.shape == (n, len(router.space))
            np.testing.assert_allclose(a, b, atol=1e-5, rtol=1e-5)
        if members == 1:
            assert not got[2].any()


def test_issue18_auto_compiles_a_snapshot_after_its_warm_up_and_eager_never():
    router = uneven_router("haps", 3)
    x = torch.randn(1, router.config.input_dim)
    router.heads_runtime = "eager"
    eager = router.predict_with_spread(x)
    for _ in range(COMPILE_AFTER + 5):
        router.predict_with_spread(x)
    assert "_compiled" not in router._inference_heads().__dict__
    router.heads_runtime = "auto"
    for _ in range(COMPILE_AFTER):
        router.predict_with_spread(x)
        assert "_compiled" not in router._inference_heads().__dict__  # a short-lived process never pays
    got = router.predict_with_spread(x)
    assert isinstance(router._inference_heads().__dict__["_compiled"], CompiledHeads)
    for a, b in zip(got, eager, strict=True):
        np.testing.assert_allclose(a, b, atol=1e-5, rtol=1e-5)
    with torch.no_grad():  # new weights: a new snapshot, compiled again only after its own warm-up
        router.members[1].skip.bias.add_(1.0)
    moved = router.predict_with_spread(x)
    assert "_compiled" not in router._inference_heads().__dict__
    assert not np.allclose(moved[0], got[0])
    router.heads_runtime = "eager"  # a compiled snapshot is not used once eager is asked for
    router.heads_runtime = "onnxruntime"
    np.testing.assert_allclose(router.predict_with_spread(x)[0], moved[0], atol=1e-5, rtol=1e-5)
    assert isinstance(router._inference_heads().__dict__["_compiled"], CompiledHeads)


def test_issue18_bad_heads_runtime_names_the_parameter_and_the_choices():
    router = uneven_router("haps", 2)
    router.heads_runtime = "tensorrt"
    with pytest.raises(ValueError, match=r"`heads_runtime` must be one of .*'auto'.*got 'tensorrt'"):
        router.predict_with_spread(torch.randn(1, router.config.input_dim))
    assert check_heads_runtime("eager") == "eager"


def test_issue18_without_the_onnx_extra_auto_stays_eager_and_onnxruntime_says_what_to_install(monkeypatch):
    monkeypatch.setattr(compiled, "onnxruntime_available", lambda: False)  # faked: the extra "missing"
    router = uneven_router("haps", 2)
    x = torch.randn(2, router.config.input_dim)
    heads = router._inference_heads()
    outs = [fast_predictions(heads, x, "auto", 1) for _ in range(COMPILE_AFTER + 3)]
    assert heads.__dict__["_compiled"] is False  # looked for once, then not again
    np.testing.assert_allclose(outs[-1][0], outs[0][0])
    fresh = uneven_router("haps", 2)
    fresh.heads_runtime = "onnxruntime"
    with pytest.raises(ImportError, match=r'pip install "haps\[onnx\]"'):
        fresh.predict_with_spread(x)


def test_issue18_a_graph_that_fails_to_build_is_logged_once_and_the_eager_path_serves(monkeypatch, caplog):
    def broken(*args, **kwargs):
        raise RuntimeError("unsupported opset")  # faked: an old ONNX Runtime

    monkeypatch.setattr(compiled, "CompiledHeads", broken)
    monkeypatch.setattr(compiled, "_warned", set())
    router = uneven_router("haps", 2)
    x = torch.randn(1, router.config.input_dim)
    router.heads_runtime = "eager"
    want = router.predict_with_spread(x)
    router.heads_runtime = "auto"
    with caplog.at_level(logging.WARNING, logger="haps_core.model.compiled"):
        for _ in range(COMPILE_AFTER + 4):
            got = router.predict_with_spread(x)
    assert [r.getMessage() for r in caplog.records if "could not run" in r.getMessage()] == [
        "ONNX Runtime could not run the router heads (unsupported opset); using numpy/torch"
    ]
    np.testing.assert_allclose(got[0], want[0])
    router.heads_runtime = "onnxruntime"  # asked for by name: the error is the caller's
    with torch.no_grad():
        router.members[0].skip.bias.add_(0.5)
    with pytest.raises(RuntimeError, match="unsupported opset"):
        router.predict_with_spread(x)


def test_issue18_no_pgn_heads_keep_their_torch_path():
    router = uneven_router("no_pgn", 2)
    router.heads_runtime = "onnxruntime"
    x = torch.randn(3, router.config.input_dim)
    with torch.inference_mode():
        want = router._inference_heads().predictions(x)
    got = router.predict_with_spread(x)
    assert "_compiled" not in router._inference_heads().__dict__
    np.testing.assert_allclose(got[0], want[0])


def test_issue18_default_router_decides_the_same_on_onnxruntime_as_pinned():
    """The shipped router on ONNX Runtime: every pinned decision's action and runners-up, and
    its numbers to float32 rounding (the pins were made on the eager paths)."""
    from haps_core import HAPSRouter
    from tests.helpers.pins import DECISIONS, pinned_decisions_text

    router = HAPSRouter.from_pretrained("haps-default")
    router.heads_runtime = "onnxruntime"
    got, want = json.loads(pinned_decisions_text(router)), json.loads(DECISIONS.read_text())
    assert isinstance(router._inference_heads().__dict__["_compiled"], CompiledHeads)
    assert len(got) == len(want) == 18
    for g, w in zip(got, want, strict=True):
        gd, wd = g["decision"], w["decision"]
        assert gd["action_index"] == wd["action_index"]
        runners_up = [[a["action_index"] for a in d["alternatives"]] for d in (gd, wd)]
        assert runners_up[0] == runners_up[1]
        for key in ("predicted_quality", "predicted_cost", "confidence"):
            assert gd[key] == pytest.approx(wd[key], rel=1e-4, abs=1e-6)


def test_issue18_compiled_evidence_equals_the_numpy_evidence():
    """Where the heads run compiled, so does the OOD evidence: the same neighbours, flags,
    coverage and backend support as numpy's, the score to float32 rounding (haps-bench dev
    queries, and chat and code queries the router flags); rebuilt when the statistics change."""
    from haps_core import HAPSRouter
    from haps_core.logs import read_logs, split_queries
    from haps_core.model.compiled_evidence import CompiledEvidence
    from haps_core.model.ood import evidence
    from haps_core.paths import bench_logs, bench_prices

    log = read_logs(bench_logs(), prices=bench_prices())
    dev = split_queries(log.query_ids, 0.2, seed=0)
    texts = [log.queries[i] for i in np.flatnonzero(dev)][:120]
    texts += ["Write a haiku about autumn rain", "My Python script throws KeyError: 'id', why?"]
    router = HAPSRouter.from_pretrained("haps-default")
    router.heads_runtime = "eager"
    features = router.featurize(texts)
    want = evidence(router, features)
    assert "_compiled_evidence" not in router.__dict__  # eager heads: numpy evidence
    router.heads_runtime = "onnxruntime"
    router.predict(texts[:1])  # compiles the heads
    got = evidence(router, features)
    held = router.__dict__["_compiled_evidence"]
    assert isinstance(held[1], CompiledEvidence)
    assert want.flagged.any() and np.array_equal(got.flagged, want.flagged)
    assert np.array_equal(got.index, want.index)
    np.testing.assert_allclose(got.similarity, want.similarity, atol=1e-5)
    np.testing.assert_allclose(got.coverage, want.coverage, atol=1e-6)
    np.testing.assert_array_equal(got.backend_support, want.backend_support)
    np.testing.assert_allclose(got.score, want.score, rtol=1e-5)
    with torch.no_grad():
        router.ood_bank[0] = -router.ood_bank[0]  # statistics changed in place: rebuilt
    evidence(router, features[:1])
    assert router.__dict__["_compiled_evidence"][0] is not held[0]


def test_issue18_an_evidence_graph_that_fails_to_build_falls_back_to_numpy(monkeypatch, caplog):
    from haps_core import HAPSRouter
    from haps_core.model import compiled_evidence as module
    from haps_core.model.ood import evidence

    def broken(*args, **kwargs):
        raise RuntimeError("no TopK here")  # faked: an old ONNX Runtime

    router = HAPSRouter.from_pretrained("haps-default")
    features = router.featurize(["What is 17 * 23?"])
    router.heads_runtime = "eager"
    want = evidence(router, features)
    monkeypatch.setattr(module, "CompiledEvidence", broken)
    router.heads_runtime = "onnxruntime"
    router.predict(["What is 2 + 2?"])
    with caplog.at_level(logging.WARNING, logger="haps_core.model.compiled_evidence"):
        got = evidence(router, features)
        evidence(router, features)
    assert [r.getMessage() for r in caplog.records] == [
        "ONNX Runtime could not run the OOD evidence (no TopK here); using numpy"
    ]
    assert np.array_equal(got.index, want.index) and np.array_equal(got.score, want.score)
