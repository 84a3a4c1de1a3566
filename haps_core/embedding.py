"""Deprecated: use `haps_core.encoders` (embedding_encoder, embed_texts) and `haps_core.paths`."""

import warnings

from haps_core.encoders.load import embed_texts, embedding_encoder
from haps_core.paths import CACHE_ENV, default_cache_dir

warnings.warn(
    "haps_core.embedding is deprecated: import from haps_core.encoders", DeprecationWarning, stacklevel=2
)

__all__ = ["CACHE_ENV", "default_cache_dir", "embed_texts", "embedding_encoder"]
