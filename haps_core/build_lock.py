"""One builder per cache entry across processes: a file lock beside the entry.

The static encoder and the dense SmolLM2 copy take from 20 s to a minute to build on first use.
Two processes starting together on a fresh machine (two test workers, two serving workers) would
otherwise both build it, and the second would throw its work away at the final rename.
"""

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from filelock import FileLock


@contextmanager
def building(target: Path) -> Iterator[None]:
    """Holds the lock of cache entry `target` (the file ``.<name>.lock`` beside it) while the
    caller checks for the entry and, if it is still missing, builds it."""
    target.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(target.parent / f".{target.name}.lock")):
        yield
