"""Where HAPS keeps and finds files: its cache, the shipped default router, the haps-bench data."""

import os
from pathlib import Path

from haps_core.errors import DataNotFoundError

CACHE_ENV = "HAPS_CACHE_DIR"
DATA_DIR_ENV = "HAPS_DATA_DIR"
_PACKAGE = Path(__file__).resolve().parent
_DEFAULT_RELATIVE = Path("..") / "shared" / "data" / "haps-bench"


def default_cache_dir() -> Path:
    """``$HAPS_CACHE_DIR`` or ``~/.cache/haps``: where embeddings and converted models are kept."""
    env = os.environ.get(CACHE_ENV)
    return Path(env) if env else Path.home() / ".cache" / "haps"


def default_router_dir() -> Path:
    """The router shipped inside the package (trained by `make default-router`)."""
    return _PACKAGE / "default_router"


def data_dir(required: bool = True) -> Path | None:
    """Returns the haps-bench folder.

    Looks at ``$HAPS_DATA_DIR`` first, then ``../shared/data/haps-bench`` relative to the current
    directory and to the source checkout.

    Args:
        required: raise `DataNotFoundError` (saying how to point at the data) when not found;
            otherwise return None.
    """
    env = os.environ.get(DATA_DIR_ENV)
    candidates = [Path(env)] if env else []
    candidates += [Path.cwd() / _DEFAULT_RELATIVE, _PACKAGE.parent / _DEFAULT_RELATIVE]
    for path in candidates:
        if (path / "logs.jsonl.gz").is_file():
            return path.resolve()
    if not required:
        return None
    where = ", ".join(str(p) for p in candidates)
    msg = (
        f"haps-bench data not found (looked in: {where}). Set {DATA_DIR_ENV} to the folder that "
        "holds logs.jsonl.gz and prices.json, or pass --logs/--prices explicitly."
    )
    raise DataNotFoundError(msg)


def bench_logs() -> Path:
    """Path of the haps-bench routing log."""
    folder = data_dir()
    assert folder is not None  # required=True raises instead
    return folder / "logs.jsonl.gz"


def bench_prices() -> Path:
    """Path of the haps-bench price table."""
    folder = data_dir()
    assert folder is not None
    return folder / "prices.json"
