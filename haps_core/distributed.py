"""Deprecated: data-parallel training lives in `haps_core.training.distributed`."""

import warnings

from haps_core.training.distributed import (
    TORCHRUN_ENV,
    DistContext,
    all_reduce_gradients,
    all_reduce_sum,
    barrier,
    broadcast_parameters,
    broadcast_value,
    cleanup,
    dist,
    get_rank,
    get_world_size,
    gradient_scale,
    init_distributed,
    is_distributed,
    is_main_process,
    launched_by_torchrun,
    main_process_first,
    save_on_main,
    shard_batch,
    shard_bounds,
    shard_queries,
)

warnings.warn(
    "haps_core.distributed is deprecated: import from haps_core.training.distributed",
    DeprecationWarning,
    stacklevel=2,
)

__all__ = [
    "TORCHRUN_ENV",
    "DistContext",
    "all_reduce_gradients",
    "all_reduce_sum",
    "barrier",
    "broadcast_parameters",
    "broadcast_value",
    "cleanup",
    "dist",
    "get_rank",
    "get_world_size",
    "gradient_scale",
    "init_distributed",
    "is_distributed",
    "is_main_process",
    "launched_by_torchrun",
    "main_process_first",
    "save_on_main",
    "shard_batch",
    "shard_bounds",
    "shard_queries",
]
