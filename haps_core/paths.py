"""Where HAPS keeps and finds files: its cache, the shipped default router, the packaged haps-bench data."""

import os
from pathlib import Path

from haps_core.errors import DataNotFoundError

CACHE_ENV = "HAPS_CACHE_DIR"
DATA_DIR_ENV = "HAPS_DATA_DIR"
_PACKAGE = Path(__file__).resolve().parent
_PACKAGED_DATA = _PACKAGE / "data" / "haps_bench"


def default_cache_dir() -> Path:
    """``$HAPS_CACHE_DIR`` or ``~/.cache/haps``: where embeddings and converted models are kept."""
    env = os.environ.get(CACHE_ENV)
    return Path(env) if env else Path.home() / ".cache" / "haps"


def default_router_dir() -> Path:
    """The router shipped inside the package (trained by `make default-router`)."""
    return _PACKAGE / "default_router"


def minilm_router_dir() -> Path:
    """The shipped MiniLM-encoder variant of the default router (``"haps-default-minilm"``)."""
    return _PACKAGE / "default_router_minilm"


def packaged_data_dir() -> Path:
    """The copy of haps-bench shipped inside the package (logs, prices, licence, dataset card)."""
    return _PACKAGED_DATA


def data_dir(required: bool = True) -> Path | None:
    """Returns the haps-bench folder.

    ``$HAPS_DATA_DIR`` when set (and then only there: a wrong setting is an error, not a silent
    fallback), otherwise the copy shipped inside the package.

    Args:
        required: raise `DataNotFoundError` (saying how to point at the data) when not found;
            otherwise return None.
    """
    env = os.environ.get(DATA_DIR_ENV)
    path = Path(env) if env else _PACKAGED_DATA
    if (path / "logs.jsonl.gz").is_file():
        return path.resolve()
    if not required:
        return None
    where = f"{DATA_DIR_ENV}={env}" if env else f"the packaged copy {path}"
    msg = (
        f"haps-bench data not found (looked in {where}). Set {DATA_DIR_ENV} to the folder that "
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
