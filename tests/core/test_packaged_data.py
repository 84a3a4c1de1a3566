"""The haps-bench data ships inside the package and is found with no env var and no ../shared."""

import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import haps_core.paths as paths
from haps_core.errors import DataNotFoundError

ROOT = Path(__file__).resolve().parents[2]
SOURCE = ROOT.parent / "shared" / "data" / "haps-bench"  # the team's copy beside the checkout


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_finding_11_data_found_without_env_var_or_shared(tmp_path, monkeypatch):
    monkeypatch.delenv(paths.DATA_DIR_ENV, raising=False)
    monkeypatch.chdir(tmp_path)  # no ../shared beside the working directory
    found = paths.data_dir()
    assert found == (ROOT / "haps_core" / "data" / "haps_bench").resolve()
    assert paths.bench_logs().is_file() and paths.bench_prices().is_file()
    assert (found / "LICENSE").is_file() and (found / "README.md").is_file()


def test_finding_11_clean_copy_without_shared_finds_its_packaged_data(tmp_path):
    """A copy of the package placed where no ../shared exists: a fresh interpreter finds the data."""
    copy = tmp_path / "clone"
    copy.mkdir()
    # a real copy (not a link, which would resolve back beside this checkout's ../shared)
    shutil.copytree(
        ROOT / "haps_core", copy / "haps_core", ignore=shutil.ignore_patterns("default_router", "__pycache__")
    )
    assert not (tmp_path / "shared").exists()
    env = {k: v for k, v in os.environ.items() if k != paths.DATA_DIR_ENV}
    env["PYTHONPATH"] = str(copy)
    code = "from haps_core.paths import bench_logs, bench_prices; print(bench_logs()); print(bench_prices())"
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=copy, env=env, capture_output=True, text=True, check=True
    ).stdout.split()
    assert [Path(p).name for p in out] == ["logs.jsonl.gz", "prices.json"]
    assert all(Path(p).is_file() and Path(p).is_relative_to(copy) for p in out)


def test_finding_11_env_var_still_overrides(tmp_path, monkeypatch):
    other = tmp_path / "my-bench"
    other.mkdir()
    (other / "logs.jsonl.gz").write_bytes(b"")
    monkeypatch.setenv(paths.DATA_DIR_ENV, str(other))
    assert paths.data_dir() == other.resolve()
    assert paths.bench_logs() == other.resolve() / "logs.jsonl.gz"
    # a wrong setting is an error naming the variable, never a silent fallback to the packaged copy
    monkeypatch.setenv(paths.DATA_DIR_ENV, str(tmp_path / "nowhere"))
    assert paths.data_dir(required=False) is None
    with pytest.raises(DataNotFoundError, match=paths.DATA_DIR_ENV):
        paths.data_dir()


@pytest.mark.parametrize("name", ["logs.jsonl.gz", "prices.json", "LICENSE"])
def test_finding_11_packaged_files_equal_the_source_copy(name):
    packaged = ROOT / "haps_core" / "data" / "haps_bench" / name
    if not SOURCE.is_dir():
        pytest.skip("the team's source copy of haps-bench is not on this machine")
    assert _sha256(packaged) == _sha256(SOURCE / name)


def test_finding_11_packaged_data_goes_into_the_wheel():
    """hatch ships every file under the listed packages; nothing in .gitignore excludes the data."""
    import tomllib

    if not (ROOT / ".git").exists():
        pytest.skip("not a git checkout (e.g. a git archive copy): .gitignore cannot be consulted")
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert "haps_core" in config["tool"]["hatch"]["build"]["targets"]["wheel"]["packages"]
    ignored = subprocess.run(
        ["git", "-C", str(ROOT), "check-ignore", "haps_core/data/haps_bench/logs.jsonl.gz"],
        capture_output=True,
        text=True,
    )
    assert ignored.returncode == 1, "the packaged data must not be git-ignored (hatch honours .gitignore)"
