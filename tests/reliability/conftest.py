"""Shared pieces of the reliability suite: the fakes of tests/integrations, small real routers,
and the ledger every test writes its counts to.

The ledger is what `scripts/reliability_report.py` turns into the README table: each test records,
under one category, how many faults it injected, how many calls it made through HAPS's public
API, how many of those calls were lost (ended with neither exactly one result nor one HAPS
error), and how many distinct inputs it tried. With ``HAPS_RELIABILITY_JSON=<path>`` set, the
records and every test's outcome are written there when the session ends.
"""

import json
import os
import sys
import time
from dataclasses import asdict
from pathlib import Path

import pytest

# The FAKE router and backends live beside the integration tests; import them, do not copy them.
_INTEGRATIONS = str(Path(__file__).resolve().parents[1] / "integrations")
if _INTEGRATIONS not in sys.path:
    sys.path.insert(0, _INTEGRATIONS)

from tests.helpers.reliability_ledger import CATEGORIES, REPORT_ENV, Ledger  # noqa: E402

_LEDGER = Ledger()


@pytest.fixture
def ledger(request):
    """``ledger(category, faults=..., calls=..., lost=..., inputs=...)`` for the running test."""

    def record(category: str, *, faults: int, calls: int, lost: int, inputs: int) -> None:
        _LEDGER.record(request.node.nodeid, category, faults=faults, calls=calls, lost=lost, inputs=inputs)

    return record


def pytest_runtest_logreport(report):
    if "tests/reliability/" not in report.nodeid.replace("\\", "/"):
        return
    if report.when == "call" or (report.when == "setup" and report.outcome != "passed"):
        outcome = "xfailed" if hasattr(report, "wasxfail") and report.skipped else report.outcome
        if hasattr(report, "wasxfail") and report.passed:
            outcome = "xpassed"
        _LEDGER.outcomes.append(
            {"test": report.nodeid, "outcome": outcome, "xfail_reason": getattr(report, "wasxfail", None)}
        )


def pytest_sessionfinish(session, exitstatus):
    path = os.environ.get(REPORT_ENV)
    if not path:
        return
    data = {
        "categories": list(CATEGORIES),
        "records": [asdict(r) for r in _LEDGER.records],
        "outcomes": _LEDGER.outcomes,
        "seconds": time.perf_counter() - _LEDGER.start,
        "exitstatus": int(exitstatus),
    }
    Path(path).write_text(json.dumps(data, indent=1), encoding="utf-8")


# -- small real routers -----------------------------------------------------------------------
@pytest.fixture(scope="session")
def tiny_router(tmp_path_factory):
    """A REAL `HAPSRouter` trained in a second: tiny random BERT encoder, synthetic log.

    Backends "small" and "large" (temperatures 0.0 and 1.0, prompt style "cot"), like the FAKE
    router's catalog names, so the same fake backends serve both.
    """
    from haps_core.encoders import load_encoder
    from haps_core.logs import read_logs
    from haps_core.model import RouterConfig
    from haps_core.training import TrainingConfig, features_for, fit_router
    from haps_core.training.styles import with_prompt_styles
    from tests.helpers.logs import synthetic_rows, write_jsonl
    from tests.helpers.tiny_models import make_tiny_bert

    root = tmp_path_factory.mktemp("tiny-router")
    encoder = load_encoder(str(make_tiny_bert(root / "bert")), device="cpu")
    log = read_logs(write_jsonl(root / "log.jsonl", synthetic_rows(40)))
    log = with_prompt_styles(log, "builtin")  # the "cot" style with its built-in text, opted into
    config = RouterConfig(embed_dim=encoder.dim, hidden=16, members=2)
    features = features_for(encoder, log.queries, config.use_structural)
    training = TrainingConfig(epochs=3, skip_warmup_steps=20, progress=False)
    router = fit_router(log, encoder, features, None, config, training)
    router.default_cost_weight = 50.0
    return router


@pytest.fixture(scope="session")
def shipped_router(tmp_path_factory):
    """The REAL shipped default router's weights (haps_core/default_router: 9 backends, 162
    actions) with a tiny random BERT of the router's embedding width in place of its encoder
    (FAKE encoder, for speed): the checkpoint's feature normalisation and heads are the ones
    users get."""
    from haps_core.encoders import load_encoder
    from haps_core.model import load_router_folder
    from haps_core.paths import default_router_dir
    from tests.helpers.tiny_models import make_tiny_bert

    router = load_router_folder(default_router_dir(), load_encoder=False)
    width = router.config.embed_dim
    encoder = load_encoder(str(make_tiny_bert(tmp_path_factory.mktemp("bert"), hidden=width)), device="cpu")
    return router.attach_encoder(encoder)
