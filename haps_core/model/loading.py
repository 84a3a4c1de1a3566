"""Loading a router as functions (`HAPSRouter.from_pretrained` and `HAPSRouter.from_folder`)."""

import os

from haps_core.model.router import HAPSRouter


def load_router_folder(
    folder: str | os.PathLike[str],
    device: str = "cpu",
    load_encoder: bool = True,
    local_files_only: bool = False,
) -> HAPSRouter:
    """Loads a checkpoint folder strictly into a `HAPSRouter` (see `HAPSRouter.from_folder`)."""
    return HAPSRouter.from_folder(folder, device, load_encoder, local_files_only)


def from_pretrained(
    name_or_path: str | os.PathLike[str] = "haps-default",
    revision: str | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
    token: str | bool | None = None,
    local_files_only: bool = False,
    device: str = "cpu",
) -> HAPSRouter:
    """`HAPSRouter.from_pretrained` as a function."""
    return HAPSRouter.from_pretrained(name_or_path, revision, cache_dir, token, local_files_only, device)
