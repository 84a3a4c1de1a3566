"""Deprecated: use `haps_core.encoders` (optimize_encoder) and `haps_core.model` (fuse_heads)."""

import warnings

from haps_core.encoders.optimized import (
    PRECISIONS,
    OptimizedEncoder,
    Precision,
    bf16_supported,
    optimize_encoder,
)
from haps_core.model.fused import FusedRouterHeads, _deep_heads_are_zero, fuse_heads

warnings.warn(
    "haps_core.speed is deprecated: import from haps_core.encoders and haps_core.model",
    DeprecationWarning,
    stacklevel=2,
)

__all__ = [
    "PRECISIONS",
    "FusedRouterHeads",
    "OptimizedEncoder",
    "Precision",
    "_deep_heads_are_zero",
    "bf16_supported",
    "fuse_heads",
    "optimize_encoder",
]
