"""Distilling a static query encoder from the bundled MiniLM, offline and deterministically.

Every vocabulary token is run through the transformer alone (``[CLS] token [SEP]``, mean pooled
like MiniLM itself pools), the vectors are reduced with PCA and weighted by a Zipf estimate of
token frequency (the BERT vocabulary is roughly frequency-ordered), as model2vec does; a query's
vector is then the mean of its tokens' vectors. transformers is needed only here, once: the
result (safetensors + tokenizer.json + config.json) is read by `haps_core.encoders.static`.
"""

import hashlib
import json
import logging
import shutil
import tempfile
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file

from haps_core.encoders.base import check_positive_int

logger = logging.getLogger(__name__)

RECIPE_VERSION = 1
DEFAULT_DIMS = 256
SIF_COEFFICIENT = 1e-4
WEIGHTS_FILE = "model.safetensors"
CONFIG_FILE = "config.json"
TOKENIZER_FILE = "tokenizer.json"
# BERT's frequency-ordered word pieces start after the [unused] slots and single characters.
_FIRST_RANKED_ID = 1996


def zipf_weights(vocab_size: int) -> torch.Tensor:
    """Per-token weights ``a / (a + p(rank))`` with a Zipf ``p`` over the vocabulary order (float64).

    Frequent tokens ("the", "of") get small weights, rare ones weights near 1: the
    smooth-inverse-frequency weighting of sentence embeddings, with ranks for counts.
    """
    check_positive_int("vocab_size", vocab_size)
    ranks = torch.arange(vocab_size, dtype=torch.float64)
    ranks = (ranks - _FIRST_RANKED_ID).clamp(min=0) + 2  # the characters share the top rank
    inv = 1.0 / ranks
    proba = inv / inv.sum()
    return SIF_COEFFICIENT / (SIF_COEFFICIENT + proba)


def pca(vectors: torch.Tensor, dims: int) -> torch.Tensor:
    """Project centred ``vectors`` on their first ``dims`` principal axes (float64, sign-fixed).

    Each axis' sign is chosen so its largest-magnitude loading is positive: SVD signs are
    arbitrary, and fixing them keeps rebuilds identical.
    """
    check_positive_int("dims", dims)
    if dims > min(vectors.shape):
        msg = f"dims must be <= {min(vectors.shape)} (the vectors' rank bound), got {dims}"
        raise ValueError(msg)
    x = vectors.to(torch.float64)
    x = x - x.mean(dim=0, keepdim=True)
    _, _, vh = torch.linalg.svd(x, full_matrices=False)
    axes = vh[:dims]
    signs = torch.sign(axes.gather(1, axes.abs().argmax(dim=1, keepdim=True)))
    return x @ (axes * signs).T


def token_vectors(
    model_dir: Path, token_ids: list[int], cls_id: int, sep_id: int, batch_size: int = 512
) -> torch.Tensor:
    """The transformer's mean-pooled output for each token alone, ``[len(token_ids), hidden]``."""
    from transformers import AutoModel  # only here: building is the one place that needs it

    model = AutoModel.from_pretrained(model_dir, local_files_only=True, dtype=torch.float32).eval()
    out = []
    with torch.no_grad():
        for start in range(0, len(token_ids), batch_size):
            ids = torch.tensor(token_ids[start : start + batch_size], dtype=torch.long)
            batch = torch.stack([torch.full_like(ids, cls_id), ids, torch.full_like(ids, sep_id)], dim=1)
            hidden = model(input_ids=batch, attention_mask=torch.ones_like(batch)).last_hidden_state
            out.append(hidden.mean(dim=1))
    return torch.cat(out).float()


def distill(
    source_dir: Path,
    target: Path,
    dims: int = DEFAULT_DIMS,
    vocab_limit: int | None = None,
    source_id: str = "",
) -> Path:
    """Build the static encoder from the transformer in ``source_dir`` into ``target``, atomically.

    Args:
        source_dir: a local BERT-style model folder with ``tokenizer.json``.
        target: the folder to create (written next to it, then renamed: never half-built).
        dims: PCA dimensions of the token vectors.
        vocab_limit: distil only the first ``vocab_limit`` tokens (tests); None: all.
        source_id: the source model's name, recorded in the config.

    Raises:
        ValueError: bad ``dims`` / ``vocab_limit``, or ``source_dir`` has no tokenizer.json.
    """
    tokenizer_path = Path(source_dir) / TOKENIZER_FILE
    if not tokenizer_path.is_file():
        msg = f"source_dir={str(source_dir)!r} has no {TOKENIZER_FILE}: a fast tokenizer is needed"
        raise ValueError(msg)
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(tokenizer_path))
    cls_id, sep_id = tokenizer.token_to_id("[CLS]"), tokenizer.token_to_id("[SEP]")
    if cls_id is None or sep_id is None:
        msg = f"source_dir={str(source_dir)!r}: the tokenizer has no [CLS]/[SEP] (a BERT vocabulary)"
        raise ValueError(msg)
    vocab_size = tokenizer.get_vocab_size()
    if vocab_limit is not None:
        check_positive_int("vocab_limit", vocab_limit)
        vocab_size = min(vocab_size, vocab_limit)
    logger.info("distilling a static encoder from %s (%d tokens, %d dims)", source_dir, vocab_size, dims)
    vectors = token_vectors(Path(source_dir), list(range(vocab_size)), cls_id, sep_id)
    reduced = pca(vectors, dims) * zipf_weights(vocab_size)[:, None]
    embeddings = reduced.to(torch.float32).contiguous()
    config: dict[str, Any] = {
        "recipe_version": RECIPE_VERSION,
        "source": source_id or str(source_dir),
        "dims": dims,
        "vocab_size": vocab_size,
        "pooling": "mean",
        "sif_coefficient": SIF_COEFFICIENT,
    }
    return write_static_folder(Path(target), embeddings, tokenizer_path, config)


def write_static_folder(
    target: Path, embeddings: torch.Tensor, tokenizer_file: Path, config: dict[str, Any]
) -> Path:
    """Writes a static encoder folder (`embeddings`, a copy of `tokenizer_file`, `config` with the
    table's sha256) atomically: built beside `target`, then renamed into place. An existing
    `target` is kept (another process built it first)."""
    embeddings = embeddings.detach().to(torch.float32).contiguous()
    digest = hashlib.sha256(embeddings.numpy().tobytes()).hexdigest()
    config = {**config, "sha256": digest}
    tokenizer_path = Path(tokenizer_file)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
    try:
        save_file({"embeddings": embeddings}, str(tmp / WEIGHTS_FILE), metadata={"sha256": digest})
        shutil.copyfile(tokenizer_path, tmp / TOKENIZER_FILE)
        (tmp / CONFIG_FILE).write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
        for path in (tmp, *tmp.iterdir()):  # mkdtemp makes it private; the cache is shared
            path.chmod(0o755 if path.is_dir() else 0o644)
        try:
            tmp.rename(target)
        except OSError:
            if not (target / CONFIG_FILE).is_file():  # not a lost race with another process
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    logger.info("static encoder written to %s (sha256 %s)", target, digest[:12])
    return target
