"""Query encoders: turn query text into L2-normalised embeddings for the router.

`QueryEncoder` is the interface (`base`), `HFEncoder` wraps any Hugging Face model (`hf`),
`CachedEncoder` puts an on-disk cache in front of any encoder (`cache`), `optimize_encoder`
makes faster CPU copies (`optimized`), `StaticEncoder` is the static encoder distilled from
MiniLM (`static`, built by `distill`; no transformers at run time), and `load_encoder` picks
the right one by name (`load`).
"""

from haps_core.encoders.base import QueryEncoder, check_positive_int, check_texts, resolve_device, text_hash
from haps_core.encoders.cache import CachedEncoder
from haps_core.encoders.hf import HFEncoder
from haps_core.encoders.load import DEFAULT_ENCODER_ID, embed_texts, embedding_encoder, load_encoder
from haps_core.encoders.local import (
    SMOLLM2_CACHE_NAME,
    SMOLLM2_GGUF,
    SMOLLM2_ID,
    smollm2_dir,
    smollm2_gguf_folder,
)
from haps_core.encoders.optimized import (
    PRECISIONS,
    OptimizedEncoder,
    Precision,
    bf16_supported,
    optimize_encoder,
)
from haps_core.encoders.static import STATIC_ENCODER_ID, StaticEncoder, load_static_encoder

__all__ = [
    "DEFAULT_ENCODER_ID",
    "PRECISIONS",
    "SMOLLM2_CACHE_NAME",
    "SMOLLM2_GGUF",
    "SMOLLM2_ID",
    "STATIC_ENCODER_ID",
    "CachedEncoder",
    "HFEncoder",
    "OptimizedEncoder",
    "Precision",
    "QueryEncoder",
    "StaticEncoder",
    "bf16_supported",
    "check_positive_int",
    "check_texts",
    "embed_texts",
    "embedding_encoder",
    "load_encoder",
    "load_static_encoder",
    "optimize_encoder",
    "resolve_device",
    "smollm2_dir",
    "smollm2_gguf_folder",
    "text_hash",
]
