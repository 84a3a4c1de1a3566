"""Issue 18: the static encoder refined on the routing objective (`haps_core.encoders.refine`).

REAL: a small distillation of the bundled MiniLM (as in test_static_encoder.py), torch training
of the token vectors on a synthetic routing log, the router trained on the refined encoder, and
its checkpoint saved (carrying the encoder's files) and loaded back by path.
"""

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from haps_core.encoders import load_encoder
from haps_core.encoders.distill import distill
from haps_core.encoders.load import default_model_path
from haps_core.encoders.refine import REFINED_ENCODER_ID, refine_static
from haps_core.encoders.static import StaticEncoder
from haps_core.logs import read_logs


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> StaticEncoder:
    folder = distill(default_model_path(), tmp_path_factory.mktemp("s") / "static", dims=32, vocab_limit=4000)
    return StaticEncoder(folder)


def test_refining_moves_only_the_training_tokens_and_is_its_own_encoder(
    base: StaticEncoder, synthetic_log_file: Path, tmp_path: Path
) -> None:
    log = read_logs(synthetic_log_file)
    train = np.zeros(log.n_queries, dtype=bool)
    train[: log.n_queries // 2] = True
    refined = refine_static(base, log, train, tmp_path / "refined", epochs=3, seed=0)
    assert refined.encoder_id == REFINED_ENCODER_ID
    assert refined.fingerprint != base.fingerprint
    info = refined.config["refined"]
    assert info["from_sha256"] == base.config["sha256"] and np.isfinite(info["held_out_loss"])
    seen = np.unique(np.concatenate([base.token_ids([log.queries[i]])[0] for i in np.flatnonzero(train)]))
    moved = (refined.embeddings - base.embeddings).abs().sum(1) > 0
    assert moved.any() and set(np.flatnonzero(moved.numpy()).tolist()) <= set(seen.tolist())
    unseen = np.setdiff1d(np.arange(len(base.embeddings)), seen)
    torch.testing.assert_close(refined.embeddings[unseen], base.embeddings[unseen], rtol=0, atol=0)
    again = load_encoder(str(tmp_path / "refined"))  # a static folder loads by path, as itself
    assert again.encoder_id == REFINED_ENCODER_ID
    torch.testing.assert_close(again.encode(["a query"]), refined.encode(["a query"]))
    with pytest.raises(ValueError, match="target="):
        refine_static(base, log, train, tmp_path / "refined", epochs=1)
    with pytest.raises(ValueError, match="holdout="):
        refine_static(base, log, train, tmp_path / "other", holdout=0.0)


def test_a_router_on_the_refined_encoder_carries_its_files(
    base: StaticEncoder, synthetic_log_file: Path, tmp_path: Path
) -> None:
    from haps_core.model import HAPSRouter, RouterConfig
    from haps_core.training import TrainingConfig, fit

    log = read_logs(synthetic_log_file)
    refined = refine_static(base, log, np.ones(log.n_queries, dtype=bool), tmp_path / "refined", epochs=2)
    router = fit(
        log,
        encoder=refined,
        router_config=RouterConfig(hidden=16, members=1),
        training_config=TrainingConfig(epochs=2, progress=False, skip_warmup_steps=60),
        device="cpu",
        cache=False,
    )
    router.save_pretrained(tmp_path / "router")
    encoder_entry = json.loads((tmp_path / "router" / "config.json").read_text())["encoder"]
    assert encoder_entry["id"] == REFINED_ENCODER_ID and encoder_entry["fine_tuned"] is True
    assert (tmp_path / "router" / "encoder" / "model.safetensors").is_file()
    (tmp_path / "refined" / "model.safetensors").unlink()  # the checkpoint needs no outside copy
    loaded = HAPSRouter.from_pretrained(str(tmp_path / "router"))
    torch.testing.assert_close(loaded.encoder.embeddings, refined.embeddings)
    texts = log.queries[:5]
    assert [d.action_index for d in loaded.route(texts)] == [d.action_index for d in router.route(texts)]
    from haps_core.encoders import CachedEncoder

    router.attach_encoder(CachedEncoder(refined, tmp_path / "cache"))  # wrapped, as training caches it
    router.save_pretrained(tmp_path / "router-cached")
    again = HAPSRouter.from_pretrained(str(tmp_path / "router-cached"))  # saved from memory
    torch.testing.assert_close(again.encoder.embeddings, refined.embeddings)
