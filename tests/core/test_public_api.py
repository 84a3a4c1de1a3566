"""The public API: a flat, pinned `haps_core` namespace that imports nothing heavy until used."""

import subprocess
import sys

import haps_core

EXPECTED_ALL = [
    "Action",
    "AllBackendsFailedError",
    "Backend",
    "CallTimeoutError",
    "CheckpointError",
    "HAPSError",
    "HAPSRouter",
    "LogValidationError",
    "OutcomeTable",
    "RouterConfig",
    "RoutingDecision",
    "RoutingError",
    "RoutingLog",
    "RoutingSpace",
    "StreamInterruptedError",
    "TrainingConfig",
    "__version__",
    "collect",
    "fit",
    "read_logs",
    "split_queries",
]


def test_all_is_pinned():
    assert sorted(haps_core.__all__) == EXPECTED_ALL


def test_every_public_name_resolves_to_its_real_object():
    from haps_core.decision import RoutingDecision
    from haps_core.model import HAPSRouter
    from haps_core.training import fit

    for name in EXPECTED_ALL:
        assert getattr(haps_core, name) is not None, name
    assert haps_core.HAPSRouter is HAPSRouter
    assert haps_core.RoutingDecision is RoutingDecision
    assert haps_core.fit is fit
    assert callable(fit)


def test_unknown_names_are_an_attribute_error():
    try:
        haps_core.NoSuchThing  # noqa: B018
    except AttributeError as exc:
        assert "NoSuchThing" in str(exc)
    else:
        raise AssertionError("expected AttributeError")


def test_import_haps_core_is_light_until_a_heavy_name_is_used():
    code = (
        "import sys, haps_core\n"
        "heavy = [m for m in ('torch', 'transformers') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
        "from haps_core import RoutingSpace, read_logs\n"
        "assert 'transformers' not in sys.modules\n"
        "from haps_core import HAPSRouter, RouterConfig, TrainingConfig, fit, RoutingDecision\n"
        "assert 'torch' in sys.modules\n"
        "print('ok')\n"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "ok"
