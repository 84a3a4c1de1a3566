"""The reliability suite's ledger: report categories and the per-test counts (see conftest.py)."""

import time
from dataclasses import dataclass

REPORT_ENV = "HAPS_RELIABILITY_JSON"

# Categories of the report, in the order the README table lists them.
TRANSIENT = "backend: transient errors (429, timeouts, connection reset, 5xx)"
PERMANENT = "backend: permanent errors (401, 400)"
HANG = "backend: hang beyond call_timeout"
STREAM = "backend: stream breaks before / after the first token"
DOWN = "backend: all backends down"
LOAD = "load: 1,000 concurrent async calls, 10% failing"
THREADS = "threads: one router shared by 8 threads (integrations and HAPSRouter.route)"
INPUTS = "inputs: empty, 1 MB, surrogates, control chars, scripts, messages"
CHECKPOINTS = "checkpoints: tampered files, crash mid-save"
LOGS = "logs: 10% malformed rows"
CATEGORIES = (TRANSIENT, PERMANENT, HANG, STREAM, DOWN, LOAD, THREADS, INPUTS, CHECKPOINTS, LOGS)


@dataclass
class Record:
    test: str
    category: str
    faults: int
    calls: int
    lost: int
    inputs: int


class Ledger:
    """The counts of the session (see the module docstring)."""

    def __init__(self) -> None:
        self.records: list[Record] = []
        self.outcomes: list[dict] = []
        self.start = time.perf_counter()

    def record(self, test: str, category: str, *, faults: int, calls: int, lost: int, inputs: int) -> None:
        if category not in CATEGORIES:
            raise ValueError(f"unknown reliability category {category!r}")
        self.records.append(Record(test, category, faults, calls, lost, inputs))
