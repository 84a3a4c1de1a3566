"""Where the bundled benchmark data lives (haps-bench), and a clear error when it is absent."""

import os
from pathlib import Path

DATA_DIR_ENV = "HAPS_DATA_DIR"
_DEFAULT_RELATIVE = Path("..") / "shared" / "data" / "haps-bench"


class DataNotFoundError(FileNotFoundError):
    """The benchmark data a command needs is not where HAPS looked for it."""


def data_dir(required: bool = True) -> Path | None:
    """Returns the haps-bench folder.

    Looks at ``$HAPS_DATA_DIR`` first, then ``../shared/data/haps-bench`` relative to the current
    directory and to the source checkout. The data is never copied into the package: it has its
    own licence and size, so commands that need it point at it instead.

    Args:
        required: raise `DataNotFoundError` (saying how to point at the data) when not found;
            otherwise return None.
    """
    env = os.environ.get(DATA_DIR_ENV)
    candidates = [Path(env)] if env else []
    candidates += [Path.cwd() / _DEFAULT_RELATIVE, Path(__file__).resolve().parents[1] / _DEFAULT_RELATIVE]
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
    return data_dir() / "logs.jsonl.gz"  # type: ignore[operator]


def bench_prices() -> Path:
    """Path of the haps-bench price table."""
    return data_dir() / "prices.json"  # type: ignore[operator]
