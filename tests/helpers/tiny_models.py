"""Tiny randomly initialised models written in-process (no downloads), shared by tests."""

import string
from pathlib import Path

import torch
from transformers import BertConfig, BertModel, BertTokenizerFast

WORDS = ["the", "a", "cat", "dog", "sat", "on", "mat", "router", "query", "model", "cheap"]


def make_tiny_bert(path: Path, hidden: int = 32) -> Path:
    """A 2-layer BERT with random weights and a local WordPiece vocab, saved to `path`."""
    path.mkdir(parents=True, exist_ok=True)
    letters = list(string.ascii_lowercase)
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS, *letters]
    vocab += [f"##{c}" for c in letters]  # so every lowercase word splits into known pieces
    vocab_file = path / "vocab.txt"
    vocab_file.write_text("\n".join(vocab) + "\n", encoding="utf-8")
    BertTokenizerFast(vocab_file=str(vocab_file), model_max_length=64).save_pretrained(path)
    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=len(vocab),
        hidden_size=hidden,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=2 * hidden,
        max_position_embeddings=64,
    )
    BertModel(config).save_pretrained(path)
    return path
