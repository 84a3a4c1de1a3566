"""Strict checkpoint reading: every inconsistency is a `CheckpointError` saying what was expected.

A router that loads "successfully" with a wrong catalog or random weights routes real traffic
wrongly and silently: mismatched or non-finite tensors, a catalog that disagrees with the weights,
an unknown prompt style, a newer format, a pickle file or a link leaving the folder are refused.
"""

import json
import logging
import math
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file

from haps_core.catalog import RoutingSpace
from haps_core.errors import CheckpointError
from haps_core.hub.files import (
    CATALOG_TENSORS,
    CONFIG_KEYS,
    CONFIG_NAME,
    FORMAT_VERSION,
    PICKLE_SUFFIXES,
    WEIGHTS_NAME,
    interrupted_save_backups,
    library_version,
)

logger = logging.getLogger(__name__)


def _hub_blobs_dir(root: Path) -> Path | None:
    """The blobs folder of a Hugging Face cache snapshot folder, where its files link to."""
    if root.parent.name == "snapshots" and root.parent.parent.name.startswith("models--"):
        return root.parent.parent / "blobs"
    return None


def check_folder(folder: Path) -> None:
    """Refuses pickle-format files and links that leave the folder, before reading anything."""
    if not folder.is_dir():
        msg = f"checkpoint folder {folder} does not exist"
        backups = [] if folder.exists() else interrupted_save_backups(folder)
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


def read_config(folder: Path) -> dict[str, Any]:
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
            f"(installed {library_version()})"
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


def check_prompt_styles(path: Path, config: dict[str, Any], space: RoutingSpace) -> list[str]:
    """Every action's prompt style must be listed in the config (with its text, or null for a
    style that has none), in the recorded order."""
    templates = config["space"].get("prompt_styles", {})
    texts_ok = isinstance(templates, dict) and all(
        v is None or isinstance(v, str) for v in templates.values()
    )
    if not texts_ok:
        msg = f"{path}: `space.prompt_styles` must map style names to system-message texts (or null)"
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


def load_tensors(path: Path) -> dict[str, torch.Tensor]:
    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        size = path.stat().st_size if path.exists() else 0
        msg = f"{path} ({size} bytes) is not a readable safetensors file (truncated or corrupt?): {exc}"
        raise CheckpointError(msg) from None


def check_tensors(
    path: Path, expected: dict[str, torch.Tensor], tensors: dict[str, torch.Tensor], described: str
) -> None:
    """Strict comparison of the saved tensors with the state dict the config's router expects.

    Args:
        path: the weights file (named in every message).
        expected: the state dict of a router built from the config alone.
        tensors: what the file holds.
        described: what the config describes (catalog size, architecture, members), for the
            message about missing or unexpected tensors.
    """
    missing = sorted(set(expected) - set(tensors))
    unexpected = sorted(set(tensors) - set(expected))
    if missing or unexpected:
        msg = (
            f"{path} does not match its config ({described}): missing tensors {missing}, "
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


def read_cost_settings(path: Path, config: dict[str, Any]) -> tuple[bool, float]:
    """The config's ``has_cost`` and ``default_cost_weight``, checked.

    Raises:
        CheckpointError: `has_cost` is not a bool, or the weight is not a finite number >= 0.
    """
    has_cost = config.get("has_cost", True)
    weight = config.get("default_cost_weight", 0.0)
    if not isinstance(has_cost, bool):
        msg = f"{path}: `has_cost` must be true or false, found {has_cost!r}"
        raise CheckpointError(msg)
    number = isinstance(weight, int | float) and not isinstance(weight, bool)
    if not number or not math.isfinite(weight) or weight < 0:
        msg = f"{path}: `default_cost_weight` must be a finite number >= 0, found {weight!r}"
        raise CheckpointError(msg)
    return has_cost, float(weight)
