"""Checkpoints: each tampering is refused with a named error; a crash mid-save loses nothing.

REAL: the tiny trained `HAPSRouter` of conftest.py, its safetensors + JSON checkpoint,
``HAPSRouter.from_pretrained``/``save_pretrained``, and, for the crashes, a separate Python
process that kills itself with SIGKILL (no exception handler or ``finally`` runs, as in a power
cut or an OOM kill). The tamperings are the REFUSALS table of tests/helpers/checkpoints.py
(shared with tests/core/test_hub.py): the attacks the issue lists, each through the public loader.
"""

import os
import shutil
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from haps_core.errors import CheckpointError
from haps_core.model import HAPSRouter
from tests.helpers.checkpoints import REFUSALS
from tests.helpers.reliability_ledger import CHECKPOINTS

ATTACKS = {
    "truncated safetensors": "truncated safetensors",
    "config with wrong shapes": "config shape mismatch",
    "config with an unknown prompt style": "unknown prompt style",
    "NaN in the weights": "NaN in weights",
    "pickle file planted": "pickle .bin",
    "pickle file planted in a subfolder": "pickle .pkl in subfolder",
    "symlink pointing outside": "link outside the folder",
}


@pytest.fixture(scope="module")
def saved(tmp_path_factory, tiny_router):
    """Two checkpoints of the REAL tiny router: v1, and v2 with other weights and cost weight."""
    import torch

    from haps_core.model import load_router_folder

    root = tmp_path_factory.mktemp("checkpoints")
    v1 = tiny_router.save_pretrained(root / "v1")
    other = load_router_folder(v1, load_encoder=False)
    with torch.no_grad():
        other.members[0].skip.bias.add_(0.25)
    other.default_cost_weight = 7.0
    v2 = other.save_pretrained(root / "v2")
    return v1, v2


def files(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


@pytest.mark.parametrize("attack", list(ATTACKS))
def test_tampered_checkpoint_is_refused_with_a_named_error(attack, saved, tmp_path, ledger):
    """REAL checkpoint, tampered as tests/core/test_hub.py does. Expected: `CheckpointError` whose
    message names the file and the problem; no router is returned."""
    ckpt = Path(shutil.copytree(saved[0], tmp_path / "ckpt"))
    tamper, pattern = REFUSALS[ATTACKS[attack]]
    tamper(ckpt)
    with pytest.raises(CheckpointError, match=pattern) as info:
        HAPSRouter.from_pretrained(ckpt)
    assert str(ckpt) in str(info.value)
    ledger(CHECKPOINTS, faults=1, calls=1, lost=0, inputs=1)


CRASHING_SAVE = textwrap.dedent(
    """
    import os, signal, sys
    from pathlib import Path
    from haps_core.hub import files as hub_files
    from haps_core.model import load_router_folder

    new = load_router_folder(sys.argv[1], load_encoder=False)
    target, point = Path(sys.argv[2]), sys.argv[3]

    def crash():
        os.kill(os.getpid(), signal.SIGKILL)  # no handler, no finally: like a power cut

    if point == "mid-weights":
        real_save = hub_files.save_file
        def save_file(tensors, path, metadata=None):
            real_save(tensors, path, metadata=metadata)
            data = Path(path).read_bytes()
            Path(path).write_bytes(data[: len(data) // 2])  # half of the new weights on disk
            crash()
        hub_files.save_file = save_file
    elif point == "between-renames":
        real_rename = Path.rename
        def rename(self, destination):
            moved = real_rename(self, destination)
            if self == target:  # the previous checkpoint has just been moved aside
                crash()
            return moved
        Path.rename = rename
    new.save_pretrained(target)
    print("the save completed: the crash was not reached")
    """
)


def crash_while_saving(new: Path, target: Path, point: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    done = subprocess.run(
        [sys.executable, "-c", CRASHING_SAVE, str(new), str(target.absolute()), point],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        cwd=Path(__file__).resolve().parents[2],
    )
    assert done.returncode == -signal.SIGKILL, (done.returncode, done.stdout, done.stderr[-2000:])
    return done


def test_a_process_killed_mid_save_leaves_the_previous_checkpoint_intact(saved, tmp_path, ledger):
    """REAL save in a REAL process, killed by SIGKILL right after writing half of the new weights.

    Expected: the checkpoint folder still holds the previous checkpoint byte for byte, it loads,
    and a later save (not killed) replaces it.
    """
    ckpt = Path(shutil.copytree(saved[0], tmp_path / "ckpt"))
    before = files(ckpt)
    crash_while_saving(saved[1], ckpt, "mid-weights")
    assert files(ckpt) == before
    assert HAPSRouter.from_pretrained(ckpt).default_cost_weight == 50.0
    HAPSRouter.from_pretrained(saved[1]).save_pretrained(ckpt)
    assert HAPSRouter.from_pretrained(ckpt).default_cost_weight == 7.0
    ledger(CHECKPOINTS, faults=1, calls=4, lost=0, inputs=1)


def test_a_process_killed_between_the_two_renames_loses_nothing(saved, tmp_path, ledger):
    """REAL save in a REAL process, killed by SIGKILL in the one window where the folder's path
    is empty: the previous checkpoint moved aside, the new one not yet renamed in.

    Expected: the previous checkpoint is intact (byte for byte) under the hidden name the save
    gave it, and loading the path names it and the command that restores it.
    """
    ckpt = Path(shutil.copytree(saved[0], tmp_path / "ckpt"))
    before = files(ckpt)
    crash_while_saving(saved[1], ckpt, "between-renames")
    assert not ckpt.exists()
    (backup,) = tmp_path.glob(".ckpt.old-*")
    assert files(backup) == before
    with pytest.raises(
        CheckpointError, match=r"interrupted .* intact at .*\.ckpt\.old-.*: restore it with `mv "
    ):
        HAPSRouter.from_pretrained(ckpt)
    backup.rename(ckpt)
    assert HAPSRouter.from_pretrained(ckpt).default_cost_weight == 50.0
    ledger(CHECKPOINTS, faults=1, calls=3, lost=0, inputs=1)
