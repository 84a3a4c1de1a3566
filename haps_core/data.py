"""Deprecated: use `haps_core.paths` (kept for one release)."""

import warnings

from haps_core.errors import DataNotFoundError
from haps_core.paths import DATA_DIR_ENV, bench_logs, bench_prices, data_dir

warnings.warn(
    "haps_core.data is deprecated: import from haps_core.paths instead", DeprecationWarning, stacklevel=2
)

__all__ = ["DATA_DIR_ENV", "DataNotFoundError", "bench_logs", "bench_prices", "data_dir"]
