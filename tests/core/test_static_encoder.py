"""Issue 18: the static query encoder distilled from the bundled MiniLM, and routing without transformers.

The distillations here are real (the bundled MiniLM run over the first tokens of its vocabulary)
but small, so the tests stay fast; tokens past the distilled range map to [UNK].
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from haps_core.encoders import load_encoder
from haps_core.encoders.distill import distill
from haps_core.encoders.load import default_model_path
from haps_core.encoders.static import _CACHE_NAME, STATIC_ENCODER_ID, StaticEncoder, static_encoder_dir

VOCAB = 4000  # covers [UNK], the characters and the ~2000 most frequent word pieces
TEXTS = ["What is the capital of France?", "Write a python function that sorts a list", "the the the"]
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def cache_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A HAPS cache holding a small real distillation where the static encoder is looked up."""
    root = tmp_path_factory.mktemp("haps-cache")
    distill(default_model_path(), root / _CACHE_NAME, dims=64, vocab_limit=VOCAB, source_id="minilm")
    return root


@pytest.fixture(scope="module")
def encoder(cache_root: Path) -> StaticEncoder:
    return StaticEncoder(static_encoder_dir(cache_root))


def test_issue18_distillation_is_deterministic(tmp_path: Path) -> None:
    a = distill(default_model_path(), tmp_path / "a", dims=16, vocab_limit=1200)
    b = distill(default_model_path(), tmp_path / "b", dims=16, vocab_limit=1200)
    for name in ("model.safetensors", "config.json", "tokenizer.json"):
        assert (a / name).read_bytes() == (b / name).read_bytes(), name
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary left behind


def test_issue18_static_vectors_are_unit_norm_and_batch_invariant(encoder: StaticEncoder) -> None:
    batch = encoder.encode([*TEXTS, "", "   "])
    assert batch.shape == (5, 64) and batch.dtype == torch.float32
    torch.testing.assert_close(batch.norm(dim=1), torch.ones(5))
    alone = torch.cat([encoder.encode([t]) for t in TEXTS])
    torch.testing.assert_close(batch[:3], alone)
    assert float(batch[0] @ batch[1]) < 0.99  # different queries, different vectors


def test_issue18_static_vector_is_the_mean_of_its_token_rows(encoder: StaticEncoder) -> None:
    ids = encoder.token_ids(TEXTS)
    assert all(row for row in ids)
    for text, row in zip(TEXTS, ids, strict=True):
        expected = encoder.embeddings[torch.tensor(row)].mean(dim=0)
        torch.testing.assert_close(encoder.encode([text])[0], expected / expected.norm())


def test_issue18_loaded_by_name_and_fingerprinted_apart_from_minilm(
    cache_root: Path, monkeypatch: pytest.MonkeyPatch, encoder: StaticEncoder
) -> None:
    monkeypatch.setenv("HAPS_CACHE_DIR", str(cache_root))
    by_name = load_encoder(STATIC_ENCODER_ID, device="cpu")
    assert isinstance(by_name, StaticEncoder) and by_name.encoder_id == STATIC_ENCODER_ID
    assert by_name.fingerprint == encoder.fingerprint
    minilm = load_encoder("default", device="cpu")
    assert by_name.fingerprint != minilm.fingerprint
    sha = json.loads((cache_root / _CACHE_NAME / "config.json").read_text())["sha256"]
    assert sha in by_name.fingerprint  # other weights, another cache key


def test_issue18_bad_inputs_raise_clear_errors(
    cache_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, encoder: StaticEncoder
) -> None:
    monkeypatch.setenv("HAPS_CACHE_DIR", str(cache_root))
    with pytest.raises(ValueError, match="revision='v1' is not supported for the static encoder"):
        load_encoder(STATIC_ENCODER_ID, revision="v1")
    with pytest.raises(ValueError, match="device='cuda:0'.*CPU only"):
        load_encoder(STATIC_ENCODER_ID, device="cuda:0")
    with pytest.raises(ValueError, match=r"takes no options, got \['max_length'\]"):
        load_encoder(STATIC_ENCODER_ID, max_length=12)
    with pytest.raises(ValueError, match="is not a static encoder: missing model.safetensors"):
        StaticEncoder(tmp_path)
    with pytest.raises(TypeError, match="single str"):
        encoder.encode("one query")
    with pytest.raises(ValueError, match="dims must be <= 384"):
        distill(default_model_path(), tmp_path / "x", dims=999, vocab_limit=1200)
    with pytest.raises(ValueError, match="has no tokenizer.json"):
        distill(tmp_path, tmp_path / "y")


ROUTE_SCRIPT = """
import json, sys
from haps_core.cli import main
code = main(["route", "--router", sys.argv[1], "--query", "What is 2 + 2?", "--cost-weight", "0"])
print(json.dumps({"code": code, "transformers": "transformers" in sys.modules}))
"""


def test_issue18_routing_with_a_static_router_never_imports_transformers(
    cache_root: Path, tmp_path: Path, encoder: StaticEncoder, synthetic_log_file: Path
) -> None:
    from haps_core.model import RouterConfig
    from haps_core.training import TrainingConfig, fit

    router = fit(
        synthetic_log_file,
        encoder=encoder,
        router_config=RouterConfig(hidden=16, members=1),
        training_config=TrainingConfig(epochs=2, progress=False, skip_warmup_steps=60),
        device="cpu",
    )
    router.save_pretrained(tmp_path / "router")
    assert json.loads((tmp_path / "router" / "config.json").read_text())["encoder"]["id"] == STATIC_ENCODER_ID
    env = {**os.environ, "HAPS_CACHE_DIR": str(cache_root), "PYTHONPATH": str(REPO)}
    out = subprocess.run(
        [sys.executable, "-c", ROUTE_SCRIPT, str(tmp_path / "router")],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=True,
    )
    lines = out.stdout.strip().splitlines()
    assert json.loads(lines[0])["backend"] in router.space.backend_names  # a real decision line
    assert json.loads(lines[-1]) == {"code": 0, "transformers": False}, out.stderr
