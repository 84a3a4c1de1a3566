"""Issue 18: the shipped default router (static-minilm encoder) and its MiniLM variant by name.

REAL: both shipped checkpoints, their encoders (the static one distilled from the bundled MiniLM
into the HAPS cache on first use), `fit_ood`'s argument checks.
"""

import pytest

from haps_core import HAPSRouter
from haps_core.model.ood import fit_ood

SAMPLES = ["Write a Python function that reverses a linked list.", "Question: what is 2 + 2?\nA: 3\nB: 4"]


def test_issue18_default_router_uses_the_static_encoder_with_mahalanobis_ood():
    router = HAPSRouter.from_pretrained("haps-default")
    assert router.encoder_info["id"] == "static-minilm"
    assert router.ood_stats is not None and router.ood_stats.method == "mahalanobis"
    dim = router.config.embed_dim
    assert tuple(router.ood_precision.shape) == (dim, dim) and tuple(router.ood_mean.shape) == (1, dim)
    coding, exam = router.route(SAMPLES, cost_weight=0.0)
    assert coding.ood and not exam.ood


def test_issue18_minilm_variant_loads_by_name_with_its_knn_ood_statistics():
    router = HAPSRouter.from_pretrained("haps-default-minilm")
    assert "MiniLM" in router.encoder_info["id"]
    assert len(router.space) == len(HAPSRouter.from_pretrained("haps-default").space)
    assert router.ood_stats is not None and router.ood_stats.method == "knn"  # saved before Mahalanobis
    assert len(router.ood_precision) == 0
    assert len(router.route(SAMPLES, cost_weight=20.0)) == 2
    with pytest.raises(ValueError, match="revision"):
        HAPSRouter.from_pretrained("haps-default-minilm", revision="main")


def test_issue18_fit_ood_rejects_unknown_methods_and_bad_shrinkage():
    router = HAPSRouter.from_pretrained("haps-default")
    with pytest.raises(ValueError, match="`method` must be one of"):
        fit_ood(router, None, method="lof")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="`shrinkage` must be a finite number > 0, got 0"):
        fit_ood(router, None, shrinkage=0.0)  # type: ignore[arg-type]


def test_issue18_encoder_precision_on_the_static_router_is_a_clear_error():
    router = HAPSRouter.from_pretrained("haps-default")
    with pytest.raises(ValueError, match="`precision`='int8' applies to transformer encoders.*static-minilm"):
        router.set_encoder_precision("int8")
