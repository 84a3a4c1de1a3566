"""Shared fixtures. The Hub is unreachable here: every test runs with HF_HUB_OFFLINE=1."""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from pathlib import Path

import pytest

from tests.helpers.logs import synthetic_rows, write_jsonl


@pytest.fixture
def synthetic_log_file(tmp_path: Path) -> Path:
    return write_jsonl(tmp_path / "logs.jsonl", synthetic_rows())
