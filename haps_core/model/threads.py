"""Routing calls on few torch threads: the router's products are too small to share out.

A routing call is mostly Python and numpy work on the texts, with a few small torch products in
the middle. Spread over several OpenMP threads, each product costs a wake-up of the others, and
the woken threads spin after it, beside the single-threaded rest of the call. Measured with
`benchmarks/routing.py --floors-only` (2 vCPUs): one thread routes batches of 64 haps-bench
queries 1.5-1.6x faster than torch's default of two, and batches of 256 1.25-1.3x faster; single
queries take the numpy path and do not change.

`torch_threads` sets torch's thread count for the duration of a call and restores it after the
last concurrent call leaves (a count shared by threads that route at once, under a lock).
"""

import contextlib
import threading
from collections.abc import Iterator

import torch

# Threads a routing call uses unless the router says otherwise (`HAPSRouter.routing_threads`).
ROUTING_THREADS = 1

_lock = threading.Lock()
_state = {"inside": 0, "saved": 0}


def check_threads(value: object) -> int | None:
    """`value` if it is None (leave torch's setting) or an int >= 1, else a ValueError."""
    if value is None or (isinstance(value, int) and not isinstance(value, bool) and value >= 1):
        return value
    msg = f"`routing_threads` must be None (torch's own setting) or an int >= 1, got {value!r}"
    raise ValueError(msg)


@contextlib.contextmanager
def torch_threads(n: int | None) -> Iterator[None]:
    """Runs the block with torch on `n` threads (None: as it is), restoring the previous count
    when the last block that set it ends. A change made inside the block by other code is undone."""
    if n is None:
        yield
        return
    with _lock:
        if _state["inside"] == 0:
            _state["saved"] = torch.get_num_threads()
            if _state["saved"] != n:
                torch.set_num_threads(n)
        _state["inside"] += 1
    try:
        yield
    finally:
        with _lock:
            _state["inside"] -= 1
            if _state["inside"] == 0 and torch.get_num_threads() != _state["saved"]:
                torch.set_num_threads(_state["saved"])
