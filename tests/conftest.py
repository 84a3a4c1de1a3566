"""Shared fixtures. The Hub is unreachable here: every test runs with HF_HUB_OFFLINE=1."""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# One intra-op thread per pytest-xdist worker (and for the subprocesses, kernels and CLI runs it
# starts, which inherit the environment): `make test` runs as many workers as the machine has
# cores, and torch's default of one OpenMP thread per core then puts two spinning thread teams on
# each core. Measured on a 2-core machine, 2 workers: five training-heavy test files took 136 s
# with torch's default and 44 s with one thread. HAPS_TEST_THREADS overrides it.
if os.environ.get("PYTEST_XDIST_WORKER"):
    os.environ.setdefault("OMP_NUM_THREADS", os.environ.get("HAPS_TEST_THREADS", "1"))

from pathlib import Path

import pytest

from tests.helpers.logs import synthetic_rows, write_jsonl


@pytest.fixture
def synthetic_log_file(tmp_path: Path) -> Path:
    return write_jsonl(tmp_path / "logs.jsonl", synthetic_rows())
