"""Two processes that need a cache entry at once build it once (`haps_core.build_lock`).

FAKED: the builds. Each child process replaces the static encoder's distillation (a minute of
MiniLM) or the SmolLM2 conversion (~25 s) with a stand-in that records that it ran, sleeps 1 s so
the two processes overlap, and writes the entry's config file. REAL: `static_encoder_dir` and
`smollm2_dir`, their file lock and the re-check after waiting, in two real processes started
together on one fresh cache folder.
"""

import subprocess
import sys
from pathlib import Path

import pytest

from haps_core.build_lock import building

CHILD = """
import sys, time
from pathlib import Path
import haps_core.encoders.{module} as mod

root, log = Path(sys.argv[1]), Path(sys.argv[2])

def fake_build(*args, **kwargs):
    target = Path(args[-1])  # distill(source, target, ...) and _convert_smollm2(target)
    with log.open("a") as f:
        f.write("built\\n")
    time.sleep(1.0)
    target.mkdir(parents=True)
    (target / "config.json").write_text("{{}}")
    return target

{patch}
print(mod.{function}(root))
"""
CASES = {
    "static": {
        "module": "static",
        "function": "static_encoder_dir",
        "patch": "import haps_core.encoders.distill as d; d.distill = fake_build",
    },
    "smollm2": {"module": "local", "function": "smollm2_dir", "patch": "mod._convert_smollm2 = fake_build"},
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_two_processes_build_a_missing_cache_entry_once(tmp_path: Path, case: str) -> None:
    log = tmp_path / "builds.txt"
    code = CHILD.format(**CASES[case])
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", code, str(tmp_path / "cache"), str(log)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    outs = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [err for _, err in outs]
    assert log.read_text().splitlines() == ["built"]  # the second process waited, then found it
    paths = {out.strip() for out, _ in outs}
    assert len(paths) == 1 and (Path(paths.pop()) / "config.json").is_file()


def test_building_creates_the_parent_and_leaves_only_its_lock_file(tmp_path: Path) -> None:
    target = tmp_path / "deep" / "entry"
    with building(target):
        assert target.parent.is_dir() and not target.exists()
    assert [p.name for p in target.parent.iterdir()] == [".entry.lock"]
