"""Router checkpoints: save, load (local folder, shipped default, or Hugging Face Hub), push.

A checkpoint is a folder with ``config.json`` (format version, catalog with prices and grids,
prompt-style templates, encoder id and revision, hyper-parameters, training-data summary,
library version), ``model.safetensors`` (the router's tensors; never pickle) and a generated
``README.md`` model card. The encoder is referenced by id, not copied: at load time it is
resolved from the installed encoder package when the id matches, else through the Hub cache.
An end-to-end fine-tuned encoder is the exception: its weights are saved under ``encoder/``
(safetensors too).

Loading is strict: missing or unexpected tensors, shape mismatches, a catalog that disagrees
with the weights, a newer format version, or any pickle-format file in the folder raise
`CheckpointError` saying what was expected and what was found.
"""

import json
import logging
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

logger = logging.getLogger(__name__)

FORMAT_VERSION = 1
CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
CARD_NAME = "README.md"
ENCODER_DIR = "encoder"
DEFAULT_ROUTER_NAMES = ("haps-default", "default")
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".pkl", ".pickle", ".ckpt", ".joblib", ".npy")
ALLOW_PATTERNS = [CONFIG_NAME, WEIGHTS_NAME, CARD_NAME, f"{ENCODER_DIR}/*"]


def default_router_dir() -> Path:
    """The router shipped inside the package (trained by `make default-router`)."""
    return Path(__file__).resolve().parent / "default_router"


def _library_version() -> str:
    from haps_core import __version__

    return __version__


def router_config_dict(router: HAPSRouter) -> dict[str, Any]:
    """The JSON config of a router's checkpoint."""
    return {
        "format_version": FORMAT_VERSION,
        "library": "haps",
        "library_version": _library_version(),
        "space": router.space.to_dict(),
        "router_config": router.config.to_dict(),
        "prompt_style_order": router.styles,
        "encoder": router.encoder_info,
        "has_cost": router.has_cost,
        "default_cost_weight": router.default_cost_weight,
        "training": router.training_summary,
        "evaluation": router.evaluation,
    }


def save_router(router: HAPSRouter, directory: str | os.PathLike[str]) -> Path:
    """Writes the checkpoint atomically: into a temporary sibling folder, then renamed.

    A crash mid-save therefore leaves the previous checkpoint (if any) intact.
    """
    from haps_core.model_card import render_model_card

    target = Path(directory)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        tensors = {k: v.detach().cpu().contiguous() for k, v in router.state_dict().items()}
        save_file(tensors, str(tmp / WEIGHTS_NAME), metadata={"format": "pt", "library": "haps"})
        config = router_config_dict(router)
        (tmp / CONFIG_NAME).write_text(json.dumps(config, indent=2, sort_keys=True), encoding="utf-8")
        (tmp / CARD_NAME).write_text(render_model_card(config), encoding="utf-8")
        encoder = router.encoder
        if router.encoder_info.get("fine_tuned") and encoder is not None:
            encoder.model.save_pretrained(tmp / ENCODER_DIR, safe_serialization=True)
            encoder.tokenizer.save_pretrained(tmp / ENCODER_DIR)
        backup = None
        if target.exists():
            backup = target.with_name(f".{target.name}.old")
            if backup.exists():
                shutil.rmtree(backup)
            target.rename(backup)
        tmp.rename(target)
        if backup is not None:
            shutil.rmtree(backup, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    logger.info("saved router to %s", target)
    return target


def _check_folder(folder: Path) -> None:
    """Refuses pickle-format files and links that leave the folder, before reading anything."""
    root = folder.resolve()
    for path in folder.rglob("*"):
        if path.is_symlink():
            resolved = path.resolve()
            # the Hub cache stores snapshot files as links into its blobs folder: allowed
            blobs = root.parent.parent / "blobs"
            if not (resolved.is_relative_to(root) or resolved.is_relative_to(blobs)):
                msg = (
                    f"checkpoint file {path.name!r} is a link to {resolved}, outside the checkpoint: refused"
                )
                raise CheckpointError(msg)
        if path.suffix.lower() in PICKLE_SUFFIXES:
            msg = (
                f"checkpoint {folder} contains {path.relative_to(folder)}, a pickle-format file: "
                "HAPS never loads pickles (safetensors and JSON only); remove it"
            )
            raise CheckpointError(msg)
    for name in (CONFIG_NAME, WEIGHTS_NAME):
        if not (folder / name).is_file():
            msg = f"checkpoint {folder} has no {name} (expected {CONFIG_NAME} and {WEIGHTS_NAME})"
            raise CheckpointError(msg)


def _read_config(folder: Path) -> dict[str, Any]:
    try:
        config = json.loads((folder / CONFIG_NAME).read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        msg = f"{folder / CONFIG_NAME} is not valid JSON: {exc}"
        raise CheckpointError(msg) from None
    version = config.get("format_version")
    if not isinstance(version, int):
        msg = f"{folder / CONFIG_NAME} has no integer `format_version` (found {version!r})"
        raise CheckpointError(msg)
    if version > FORMAT_VERSION:
        msg = (
            f"checkpoint format version {version} is newer than this HAPS supports "
            f"({FORMAT_VERSION}); upgrade haps (installed {_library_version()})"
        )
        raise CheckpointError(msg)
    for key in ("space", "router_config", "encoder"):
        if key not in config:
            msg = f"{folder / CONFIG_NAME} lacks `{key}`"
            raise CheckpointError(msg)
    return config


def load_router_folder(
    folder: str | os.PathLike[str],
    device: str = "cpu",
    load_encoder: bool = True,
) -> HAPSRouter:
    """Loads a checkpoint folder strictly (see the module docstring)."""
    folder = Path(folder)
    _check_folder(folder)
    config = _read_config(folder)
    try:
        space = RoutingSpace.from_dict(config["space"])
        rconfig = RouterConfig.from_dict(config["router_config"])
    except (ValueError, TypeError, KeyError) as exc:
        msg = f"{folder / CONFIG_NAME}: invalid catalog or router config: {exc}"
        raise CheckpointError(msg) from None
    styles = sorted({a.prompt_style for a in space.actions})
    if config.get("prompt_style_order", styles) != styles:
        msg = (
            f"{folder / CONFIG_NAME}: prompt styles {config.get('prompt_style_order')} do not match "
            f"the catalog's {styles}"
        )
        raise CheckpointError(msg)
    try:
        tensors = load_file(str(folder / WEIGHTS_NAME))
    except (SafetensorError, OSError, ValueError) as exc:
        msg = f"{folder / WEIGHTS_NAME} is not a readable safetensors file: {exc}"
        raise CheckpointError(msg) from None
    router = HAPSRouter(space, rconfig, tensors.get("style_embeddings"))
    if "reference_features" in tensors:
        router.reference_features = torch.zeros_like(tensors["reference_features"])
    expected = router.state_dict()
    missing = sorted(set(expected) - set(tensors))
    unexpected = sorted(set(tensors) - set(expected))
    if missing or unexpected:
        msg = (
            f"{folder / WEIGHTS_NAME} does not match its config (catalog of {len(space)} actions, "
            f"architecture {rconfig.architecture!r}): missing tensors {missing}, unexpected {unexpected}"
        )
        raise CheckpointError(msg)
    for name, value in expected.items():
        if tuple(tensors[name].shape) != tuple(value.shape):
            msg = (
                f"{folder / WEIGHTS_NAME}: tensor {name!r} has shape {tuple(tensors[name].shape)}, "
                f"expected {tuple(value.shape)} from the config's catalog and hyper-parameters"
            )
            raise CheckpointError(msg)
        if tensors[name].is_floating_point() and not torch.isfinite(tensors[name]).all():
            msg = f"{folder / WEIGHTS_NAME}: tensor {name!r} contains NaN or infinite values"
            raise CheckpointError(msg)
    router.load_state_dict(tensors, strict=True)
    router.eval()
    router.has_cost = bool(config.get("has_cost", True))
    router.default_cost_weight = float(config.get("default_cost_weight", 0.0))
    router.training_summary = config.get("training", {})
    router.evaluation = config.get("evaluation", {})
    router.encoder_info = dict(config["encoder"])
    if load_encoder:
        router.attach_encoder(resolve_encoder(router.encoder_info, folder, device))
    return router


def resolve_encoder(info: dict[str, Any], folder: Path, device: str = "cpu") -> Any:
    """The checkpoint's encoder: its fine-tuned copy, the installed package, or the Hub cache."""
    from haps_core.encoders import DEFAULT_ENCODER_ID, load_encoder

    kwargs = dict(info.get("kwargs", {}))
    if info.get("fine_tuned"):
        return load_encoder(str(folder / ENCODER_DIR), device=device, local_files_only=True, **kwargs)
    encoder_id = info.get("id", DEFAULT_ENCODER_ID)
    if encoder_id == DEFAULT_ENCODER_ID:
        return load_encoder(None, device=device, **kwargs)
    return load_encoder(encoder_id, device=device, revision=info.get("revision"), **kwargs)


def from_pretrained(
    name_or_path: str | os.PathLike[str],
    revision: str | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
    token: str | bool | None = None,
    local_files_only: bool = False,
    device: str = "cpu",
) -> HAPSRouter:
    """Loads a router from a local folder, the shipped default, or a Hub repo id."""
    if str(name_or_path) in DEFAULT_ROUTER_NAMES:
        folder = default_router_dir()
        if not (folder / CONFIG_NAME).is_file():
            msg = f"the shipped default router is missing from {folder}: run `make default-router`"
            raise CheckpointError(msg)
        return load_router_folder(folder, device=device)
    path = Path(name_or_path)
    if path.is_dir():
        return load_router_folder(path, device=device)
    if path.exists() or str(name_or_path).startswith((".", "/")) or str(name_or_path).count("/") != 1:
        msg = (
            f"router {str(name_or_path)!r} is neither a checkpoint folder nor a Hub repo id "
            "of the form 'org/name' (or 'haps-default')"
        )
        raise CheckpointError(msg)
    folder = _download(str(name_or_path), revision, cache_dir, token, local_files_only)
    return load_router_folder(folder, device=device)


def _download(repo_id: str, revision: str | None, cache_dir: Any, token: Any, local_files_only: bool) -> Path:
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import (
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    offline = local_files_only or os.environ.get("HF_HUB_OFFLINE", "0").lower() in ("1", "true", "yes")
    try:
        return Path(
            snapshot_download(
                repo_id,
                revision=revision,
                cache_dir=cache_dir,
                token=token,
                local_files_only=offline,
                allow_patterns=ALLOW_PATTERNS,
            )
        )
    except LocalEntryNotFoundError:
        where = f"revision {revision!r}" if revision else "the default revision"
        msg = (
            f"router {repo_id!r} ({where}) is not in the local Hugging Face cache and downloads are "
            f"off (HF_HUB_OFFLINE=1 or local_files_only=True). Fetch it once with network access: "
            f"HAPSRouter.from_pretrained({repo_id!r}, revision={revision!r}) or "
            f"`hf download {repo_id}`"
        )
        raise CheckpointError(msg) from None
    except RevisionNotFoundError:
        msg = f"router {repo_id!r} has no revision {revision!r} on the Hub"
        raise CheckpointError(msg) from None
    except RepositoryNotFoundError:
        msg = f"router repo {repo_id!r} does not exist on the Hub (or is private: pass `token`)"
        raise CheckpointError(msg) from None


def push_router(
    router: HAPSRouter,
    repo_id: str,
    revision: str | None = None,
    private: bool | None = None,
    commit_message: str = "Upload HAPS router",
    token: str | None = None,
) -> str:
    """Saves the router to a temporary folder and uploads it with huggingface_hub's HfApi."""
    from huggingface_hub import HfApi

    if not isinstance(repo_id, str) or repo_id.count("/") != 1:
        msg = f"`repo_id` must look like 'org/name', got {repo_id!r}"
        raise ValueError(msg)
    api = HfApi(token=token)
    api.create_repo(repo_id, repo_type="model", private=private, exist_ok=True)
    if revision is not None:
        api.create_branch(repo_id, branch=revision, repo_type="model", exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        folder = save_router(router, Path(tmp) / "router")
        card = render_card_for_repo(folder, repo_id)
        (folder / CARD_NAME).write_text(card, encoding="utf-8")
        info = api.upload_folder(
            repo_id=repo_id,
            folder_path=str(folder),
            repo_type="model",
            revision=revision,
            commit_message=commit_message,
            allow_patterns=ALLOW_PATTERNS,
        )
    url = getattr(info, "commit_url", None) or str(info)
    logger.info("pushed router to %s (%s)", repo_id, url)
    return url


def render_card_for_repo(folder: Path, repo_id: str) -> str:
    """The model card with the repo id in its loading snippet."""
    from haps_core.model_card import render_model_card

    config = json.loads((folder / CONFIG_NAME).read_text(encoding="utf-8"))
    return render_model_card(config, load_name=repo_id)
