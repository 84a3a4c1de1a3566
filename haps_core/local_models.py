"""Deprecated: use `haps_core.encoders` (the SmolLM2 helpers live in `haps_core.encoders.local`)."""

import warnings

from haps_core.encoders.local import (
    SMOLLM2_CACHE_NAME,
    SMOLLM2_GGUF,
    SMOLLM2_ID,
    smollm2_dir,
    smollm2_gguf_folder,
)

warnings.warn(
    "haps_core.local_models is deprecated: import from haps_core.encoders", DeprecationWarning, stacklevel=2
)

__all__ = ["SMOLLM2_CACHE_NAME", "SMOLLM2_GGUF", "SMOLLM2_ID", "smollm2_dir", "smollm2_gguf_folder"]
