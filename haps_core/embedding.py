"""Embedding a log's queries once, with the on-disk cache, for training and evaluation."""

import logging
import time

import numpy as np

from haps_core.encoders import QueryEncoder, load_encoder
from haps_core.paths import CACHE_ENV, default_cache_dir

logger = logging.getLogger(__name__)

__all__ = ["CACHE_ENV", "default_cache_dir", "embed_texts", "embedding_encoder"]


def embedding_encoder(
    name_or_path: str | None = None, device: str = "auto", cache: bool = True, **kwargs
) -> QueryEncoder:
    """The encoder used for routing features, wrapped with the embedding cache when asked."""
    cache_dir = default_cache_dir() / "embeddings" if cache else None
    return load_encoder(name_or_path, device=device, cache_dir=cache_dir, **kwargs)


def embed_texts(encoder: QueryEncoder, texts: list[str], batch_size: int = 32) -> np.ndarray:
    """[n, d] float32 embeddings, logging how long it took (the dominant cost on a CPU)."""
    start = time.perf_counter()
    out = encoder.encode(texts, batch_size=batch_size).numpy().astype(np.float32)
    logger.info(
        "embedded %d texts in %.1f s with %s", len(texts), time.perf_counter() - start, encoder.encoder_id
    )
    return out
