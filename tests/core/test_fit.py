"""`haps_core.fit`: routing logs in, a trained router out, in one call.

It must give the router that `fit_router` gives on the same (hand-featurised) inputs, and the one
`haps train` saves with the same settings and seed. Real parts: torch training, a real (tiny,
randomly initialised, locally written) transformers encoder, the CLI, safetensors checkpoints.
The log is synthetic (tests/helpers/logs.py).
"""

import pytest
import torch

import haps_core
from haps_core.cli import main
from haps_core.encoders import load_encoder
from haps_core.features import query_features
from haps_core.logs import read_logs
from haps_core.model import HAPSRouter, RouterConfig, load_router_folder
from haps_core.training import TrainingConfig, fit, fit_router
from tests.helpers.logs import synthetic_rows, write_jsonl
from tests.helpers.tiny_models import make_tiny_bert

TEXTS = ["Who wrote Hamlet? #3", "Compute 17 * 23 + 4 and explain #5", "the cat sat on the mat"]


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("fit")
    return make_tiny_bert(root / "enc"), write_jsonl(root / "logs.jsonl", synthetic_rows(80))


def assert_same_weights(a: HAPSRouter, b: HAPSRouter) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    assert list(sa) == list(sb)
    for k in sa:
        assert torch.equal(sa[k], sb[k]), k


def decisions(router: HAPSRouter, weight: float) -> list[tuple[int, float]]:
    return [(d.action_index, d.predicted_quality) for d in router.route(TEXTS, cost_weight=weight)]


def test_fit_is_fit_router_on_the_same_inputs(files):
    enc_path, logs = files
    encoder = load_encoder(str(enc_path), device="cpu")
    log = read_logs(logs)
    training = TrainingConfig(epochs=3, progress=False, seed=2, device="cpu", skip_warmup_steps=60)
    features = query_features(encoder, log.queries, True)
    cfg = RouterConfig(embed_dim=encoder.dim, hidden=16, members=2)
    expected = fit_router(log, encoder, features, None, cfg, training)
    # the encoder named once, by path; embed_dim comes from it
    router = fit(logs, encoder=str(enc_path), router_config=RouterConfig(hidden=16, members=2),
                 training_config=training, cache=False)  # fmt: skip
    assert router.config == expected.config and router.config.embed_dim == encoder.dim
    assert_same_weights(router, expected)
    for weight in (0.0, 50.0, 1e6):
        assert decisions(router, weight) == decisions(expected, weight)
    assert router.training_summary["train_queries"] == log.n_queries
    assert router.training_summary["heldout"] == {}
    assert router.encoder_info["id"] == encoder.encoder_id


def test_fit_gives_the_router_haps_train_saves(files, tmp_path, capsys):
    enc_path, logs = files
    out = tmp_path / "router"
    argv = ["train", "--logs", str(logs), "--output", str(out), "--encoder", str(enc_path),
            "--epochs", "3", "--members", "2", "--hidden", "32", "--seed", "1",
            "--holdout-fraction", "0.3", "--device", "cpu", "--no-cache"]  # fmt: skip
    assert main(argv) == 0
    assert "trained a haps router" in capsys.readouterr().out
    router = fit(
        str(logs),
        encoder=enc_path,  # a path object does as well as a name
        router_config=RouterConfig(members=2, hidden=32),
        training_config=TrainingConfig(epochs=3, seed=1),
        holdout_fraction=0.3,
        device="cpu",
        cache=False,
    )
    saved = load_router_folder(out, load_encoder=False).attach_encoder(router.encoder)
    assert saved.config == router.config and saved.config.hidden == 32
    assert_same_weights(saved, router)
    assert router.training_summary["heldout"] == {"fraction": 0.3, "seed": 0}
    assert router.training_summary["training_config"]["device"] == "cpu"
    for weight in (0.0, 1e6):
        assert decisions(router, weight) == decisions(saved, weight)


def test_haps_train_rejects_a_bad_width(files, tmp_path, capsys):
    enc_path, logs = files
    argv = ["train", "--logs", str(logs), "--output", str(tmp_path / "r"), "--encoder", str(enc_path),
            "--hidden", "0", "--epochs", "1", "--device", "cpu", "--no-cache"]  # fmt: skip
    assert main(argv) != 0
    err = capsys.readouterr().err
    assert "hidden" in err and "0" in err and "positive integer" in err
    assert not (tmp_path / "r").exists()


def test_fit_takes_a_routing_log_and_an_encoder(files):
    """A log without costs: the router routes by quality alone, whatever the cost weight."""
    enc_path, _ = files
    rows = [
        {k: v for k, v in r.items() if k not in ("cost", "input_tokens", "output_tokens")}
        for r in synthetic_rows(30)
    ]
    log = read_logs(write_jsonl(enc_path.parent / "nocost.jsonl", rows))
    encoder = load_encoder(str(enc_path), device="cpu")
    router = fit(
        log,
        encoder=encoder,
        router_config=RouterConfig(hidden=16, members=1, use_structural=False),
        training_config=TrainingConfig(epochs=2, progress=False, skip_warmup_steps=60),
        device="cpu",
    )
    assert router.encoder is encoder and router.config.input_dim == encoder.dim
    assert not router.has_cost and router.default_cost_weight == 0.0
    assert [d.action_index for d in router.route(TEXTS, cost_weight=0.0)] == [
        d.action_index for d in router.route(TEXTS, cost_weight=1e9)
    ]


def test_fit_bad_arguments(files):
    enc_path, logs = files
    log = read_logs(logs)
    with pytest.raises(ValueError, match="`prices` and `skip_invalid` apply to reading log files"):
        fit(log, encoder=str(enc_path), prices={"small": (1.0, 1.0)})
    with pytest.raises(TypeError, match="`encoder` must be a QueryEncoder, a name or a path"):
        fit(log, encoder=3)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="`dev_fraction` must be in"):
        fit(log, encoder=str(enc_path), holdout_fraction=1.5, cache=False)


def test_fit_is_the_public_one_call_api():
    assert haps_core.fit is fit
    assert "fit" in haps_core.__all__
