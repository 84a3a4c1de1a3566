"""Shared fixtures of the integration tests: a REAL tiny trained router, and a recorder of what
reaches a REAL model (for the SmolLM2 tests, whose modules each provide ``smol``)."""

import pytest


@pytest.fixture(scope="session")
def real_router(tmp_path_factory):
    """A REAL `HAPSRouter`: a tiny randomly initialised BERT encoder (tests/helpers/tiny_models.py)
    trained for a few epochs (and few warm-up steps, for speed) on the synthetic log of
    tests/helpers/logs.py ("small" and "large", temperatures 0.0 and 1.0, with costs)."""
    from haps_core import RouterConfig
    from haps_core.encoders import load_encoder
    from haps_core.logs import read_logs
    from haps_core.training import TrainingConfig, features_for, fit_router
    from haps_core.training.styles import with_prompt_styles
    from tests.helpers.logs import synthetic_rows, write_jsonl
    from tests.helpers.tiny_models import make_tiny_bert

    encoder = load_encoder(str(make_tiny_bert(tmp_path_factory.mktemp("bert"))), device="cpu")
    log = read_logs(write_jsonl(tmp_path_factory.mktemp("logs") / "l.jsonl", synthetic_rows(40)))
    log = with_prompt_styles(log, "builtin")  # the "cot" style with its built-in text, opted into
    config = RouterConfig(embed_dim=encoder.dim, hidden=16, members=1)
    features = features_for(encoder, log.queries, config.use_structural)
    # Few warm-up steps where the trainer has them (300 by default): these tests need A trained
    # router, not a good one, and on a tiny log the warm-up dominates the time.
    fast = {"skip_warmup_steps": 5} if "skip_warmup_steps" in TrainingConfig.__dataclass_fields__ else {}
    return fit_router(log, encoder, features, None, config, TrainingConfig(epochs=4, progress=False, **fast))


@pytest.fixture(scope="module")
def recorded(smol):
    """Every ``model.generate`` call of the module's ``smol`` model: {"prompt": decoded input,
    "kwargs": its ``do_sample``, ``temperature`` and ``max_new_tokens``}."""
    model, tok = smol
    calls: list[dict] = []
    original = model.generate

    def generate(*args, **kwargs):
        ids = kwargs.get("input_ids", args[0] if args else None)
        keep = ("do_sample", "temperature", "max_new_tokens")
        calls.append({"prompt": tok.decode(ids[0]), "kwargs": {k: v for k, v in kwargs.items() if k in keep}})
        return original(*args, **kwargs)

    model.generate = generate
    yield calls
    del model.generate  # back to the class's method
