"""Checkpoint files: their names, the format version, and the atomic, durable way they are written.

A checkpoint is a folder with ``config.json``, ``model.safetensors`` (never pickle), a ``README.md``
model card, and ``encoder/`` for a fine-tuned encoder. It is written into a temporary sibling folder,
flushed to disk and renamed into place, so a crash never leaves a half-written checkpoint behind.
"""

import json
import logging
import math
import os
import shutil
import tempfile
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any, TypeGuard

import torch
from safetensors.torch import save_file

from haps_core import paths
from haps_core.encoders import QueryEncoder
from haps_core.encoders.static import StaticEncoder
from haps_core.errors import CheckpointError

logger = logging.getLogger(__name__)

FORMAT_VERSION = 1
CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
CARD_NAME = "README.md"
ENCODER_DIR = "encoder"
DEFAULT_ROUTER_NAMES = ("haps-default", "default")
DEFAULT_ROUTER_NAME = DEFAULT_ROUTER_NAMES[0]
MINILM_ROUTER_NAME = "haps-default-minilm"  # the same router over the MiniLM transformer encoder
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".pkl", ".pickle", ".ckpt", ".joblib", ".npy", ".npz")
ALLOW_PATTERNS = [CONFIG_NAME, WEIGHTS_NAME, CARD_NAME, f"{ENCODER_DIR}/*"]
CONFIG_KEYS = frozenset(
    {
        "format_version",
        "library",
        "library_version",
        "framework_versions",
        "space",
        "ood",  # training statistics (haps_core.model.ood), optional
        "router_config",
        "prompt_style_order",
        "encoder",
        "has_cost",
        "default_cost_weight",
        "training",
        "evaluation",
    }
)
# Tensors the router derives from the catalog: the saved values must equal what the config's
# catalog gives, or the config describes a different catalog than the weights were trained on.
CATALOG_TENSORS = ("action_values", "backend_prices")


def library_version() -> str:
    """The installed haps version (what ``haps_core.__version__`` reports)."""
    try:
        return version("haps")
    except PackageNotFoundError:  # running from a source tree without installing
        return "0.0.0"


def framework_versions() -> dict[str, str]:
    """Versions of haps and the frameworks a checkpoint depends on, as recorded in its config."""
    out = {"haps": library_version()}
    for name in ("torch", "transformers", "huggingface_hub", "safetensors"):
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            continue
    return out


def _jsonable(value: Any, where: str) -> Any:
    """`value` as strict JSON: numpy scalars unwrapped, NaN/inf as null, paths as strings.

    Strict because config.json is read by other tools too (the Hub, JavaScript): a bare ``NaN``
    is not JSON.
    """
    if isinstance(value, dict):
        return {str(k): _jsonable(v, f"{where}.{k}") for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v, f"{where}[{i}]") for i, v in enumerate(value)]
    if hasattr(value, "item") and callable(value.item) and getattr(value, "ndim", 0) == 0:
        value = value.item()  # numpy / torch scalars
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    msg = f"`{where}` holds a {type(value).__name__} ({value!r:.80}), which a JSON config cannot store"
    raise ValueError(msg)


def checkpoint_config(
    *,
    space: dict[str, Any],
    router_config: dict[str, Any],
    prompt_style_order: list[str],
    encoder: dict[str, Any],
    has_cost: bool,
    default_cost_weight: float,
    training: dict[str, Any],
    evaluation: dict[str, Any],
) -> dict[str, Any]:
    """The JSON config of a checkpoint (strict JSON: NaN is written as null)."""
    config = {
        "format_version": FORMAT_VERSION,
        "library": "haps",
        "library_version": library_version(),
        "framework_versions": framework_versions(),
        "space": space,
        "router_config": router_config,
        "prompt_style_order": prompt_style_order,
        "encoder": encoder,
        "has_cost": has_cost,
        "default_cost_weight": default_cost_weight,
        "training": training,
        "evaluation": evaluation,
    }
    return _jsonable(config, "config")


def _looks_like_checkpoint(folder: Path) -> bool:
    """Whether an existing folder may be replaced by a save: empty, or a HAPS checkpoint."""
    entries = [p for p in folder.iterdir() if p.name != ".DS_Store"]
    if not entries:
        return True
    try:
        config = json.loads((folder / CONFIG_NAME).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(config, dict) and config.get("library") == "haps"


def _fsync_tree(folder: Path) -> None:
    """Flushes the files of a finished checkpoint to disk before it is renamed into place."""
    for path in folder.rglob("*"):
        if path.is_file():
            with path.open("rb") as fh:
                os.fsync(fh.fileno())


def _fsync_dir(folder: Path) -> None:
    """Flushes a folder's entries (the renames into it) to disk, where the OS supports it."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:  # not supported for folders on this platform or file system
        pass
    finally:
        os.close(fd)


def _backup_prefix(target: Path) -> str:
    return f".{target.name}.old-"


def interrupted_save_backups(folder: Path) -> list[Path]:
    """Complete previous checkpoints that an interrupted save left beside ``folder``, newest first.

    A save moves the previous checkpoint aside, then renames the new one into place. A crash
    (power cut, SIGKILL) between those two renames leaves no folder at the path, and the previous
    checkpoint, intact, under this hidden name.
    """
    parent = folder.parent
    if not parent.is_dir():
        return []
    found = [
        p
        for p in parent.glob(f"{_backup_prefix(folder)}*")
        if (p / CONFIG_NAME).is_file() and (p / WEIGHTS_NAME).is_file()
    ]
    return sorted(found, key=lambda p: p.stat().st_mtime, reverse=True)


def _share_permissions(folder: Path) -> None:
    """Gives the checkpoint ordinary permissions (mkdtemp makes it private, 0700).

    A checkpoint is read by other users and processes (a shipped package, a shared cache), so
    folders get 0755 and files 0644, less the process umask.
    """
    umask = os.umask(0)
    os.umask(umask)
    for path in [folder, *folder.rglob("*")]:
        os.chmod(path, (0o755 if path.is_dir() else 0o644) & ~umask)


def check_save_target(directory: str | os.PathLike[str]) -> Path:
    """The absolute checkpoint folder to save into: new, empty, or an existing HAPS checkpoint.

    Raises:
        ValueError: `directory` is a file or a non-empty folder that is not a HAPS checkpoint
            (anything else is refused rather than replaced).
    """
    target = Path(directory).expanduser().absolute()
    if target.exists() and not target.is_dir():
        msg = f"`directory`={str(directory)!r} exists and is not a folder: a checkpoint is a folder"
        raise ValueError(msg)
    if target.is_dir() and not _looks_like_checkpoint(target):
        found = sorted(p.name for p in target.iterdir())[:8]
        msg = (
            f"`directory`={str(directory)!r} is a non-empty folder that is not a HAPS checkpoint "
            f"(it holds {found}): refusing to replace it; save into a new or empty folder"
        )
        raise ValueError(msg)
    return target


def check_finite(tensors: dict[str, torch.Tensor]) -> None:
    """Refuses to save non-finite weights (such a checkpoint could not load).

    Raises:
        CheckpointError: some floating-point tensor holds NaN or an infinity.
    """
    bad = [k for k, v in tensors.items() if v.is_floating_point() and not torch.isfinite(v).all()]
    if bad:
        msg = f"the router's tensors {bad} contain NaN or infinite values: refusing to save them"
        raise CheckpointError(msg)


def card_load_name(target: Path, repo_id: str | None) -> str | None:
    """What the card's loading snippet names: `repo_id`, or the shipped default's name for its folder."""
    if repo_id is None and target == paths.default_router_dir():
        return DEFAULT_ROUTER_NAME
    if repo_id is None and target == paths.minilm_router_dir():
        return MINILM_ROUTER_NAME
    return repo_id


def bundles_static_files(encoder: object) -> TypeGuard[StaticEncoder]:
    """Whether a checkpoint must carry the (unwrapped) encoder's files: a static encoder refined
    on logs (`haps_core.encoders.refine`), which no package or cache can rebuild."""
    return isinstance(encoder, StaticEncoder) and "refined" in encoder.config


def write_checkpoint(
    target: Path,
    tensors: dict[str, torch.Tensor],
    config: dict[str, Any],
    card: str,
    encoder: QueryEncoder | None = None,
) -> Path:
    """Writes a checkpoint atomically: into a temporary sibling folder, then renamed into place.

    A crash or an error mid-save therefore leaves the previous checkpoint (if any) intact, and a
    reader never sees a half-written one. The one window where the folder's path is empty is
    between the two renames (previous checkpoint aside, new one in): a crash exactly there leaves
    the previous checkpoint intact under a hidden ``.<name>.old-*`` sibling, and loading the path
    says so and how to restore it. `encoder`'s weights are written under ``encoder/`` when the
    config marks it fine-tuned.

    Raises:
        CheckpointError: the config marks the encoder fine-tuned but no transformers encoder is given.
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
    backup: Path | None = None
    try:
        save_file(tensors, str(tmp / WEIGHTS_NAME), metadata={"format": "pt", "library": "haps"})
        text = json.dumps(config, indent=2, sort_keys=True, allow_nan=False) + "\n"
        (tmp / CONFIG_NAME).write_text(text, encoding="utf-8")
        (tmp / CARD_NAME).write_text(card, encoding="utf-8")
        inner = getattr(encoder, "encoder", encoder)  # unwrap a CachedEncoder
        if config["encoder"].get("fine_tuned") and bundles_static_files(inner):
            inner.save(tmp / ENCODER_DIR)
        elif config["encoder"].get("fine_tuned"):
            if inner is None or not hasattr(inner, "model") or not hasattr(inner, "tokenizer"):
                msg = "the router's encoder is marked fine-tuned but no transformers encoder is attached"
                raise CheckpointError(msg)
            inner.model.save_pretrained(tmp / ENCODER_DIR)
            inner.tokenizer.save_pretrained(tmp / ENCODER_DIR)
        _share_permissions(tmp)
        _fsync_tree(tmp)
        if target.exists():
            backup = Path(tempfile.mkdtemp(prefix=_backup_prefix(target), dir=target.parent))
            backup.rmdir()
            target.rename(backup)
        try:
            tmp.rename(target)
        except BaseException:
            if backup is not None:
                backup.rename(target)
                backup = None
            raise
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    _fsync_dir(target.parent)
    if backup is not None:
        shutil.rmtree(backup, ignore_errors=True)
    logger.info("saved router to %s", target)
    return target
