"""Router checkpoints on disk and on the Hugging Face Hub, independent of the router class.

`files` writes checkpoints atomically, `reading` reads them strictly, `encoder_ref` records and
resolves the referenced encoder, `remote` downloads and pushes, `card` renders the model card.
They work on config dicts and tensors; `haps_core.model.checkpoint` calls them for a router.
"""

from haps_core.hub.card import HAPSModelCardData, card_template, render_card_for_repo, render_model_card
from haps_core.hub.encoder_ref import encoder_reference, is_local_path, resolve_encoder
from haps_core.hub.files import (
    ALLOW_PATTERNS,
    CARD_NAME,
    CATALOG_TENSORS,
    CONFIG_KEYS,
    CONFIG_NAME,
    DEFAULT_ROUTER_NAME,
    DEFAULT_ROUTER_NAMES,
    ENCODER_DIR,
    FORMAT_VERSION,
    PICKLE_SUFFIXES,
    WEIGHTS_NAME,
    card_load_name,
    check_finite,
    check_save_target,
    checkpoint_config,
    framework_versions,
    interrupted_save_backups,
    library_version,
    write_checkpoint,
)
from haps_core.hub.reading import (
    check_folder,
    check_prompt_styles,
    check_tensors,
    load_tensors,
    read_config,
    read_cost_settings,
)
from haps_core.hub.remote import (
    download_router,
    hub_offline,
    is_repo_id,
    push_checkpoint,
    resolve_router_folder,
)
from haps_core.paths import default_router_dir

__all__ = [
    "ALLOW_PATTERNS",
    "CARD_NAME",
    "CATALOG_TENSORS",
    "CONFIG_KEYS",
    "CONFIG_NAME",
    "DEFAULT_ROUTER_NAME",
    "DEFAULT_ROUTER_NAMES",
    "ENCODER_DIR",
    "FORMAT_VERSION",
    "PICKLE_SUFFIXES",
    "WEIGHTS_NAME",
    "HAPSModelCardData",
    "card_load_name",
    "card_template",
    "check_finite",
    "check_folder",
    "check_prompt_styles",
    "check_save_target",
    "check_tensors",
    "checkpoint_config",
    "default_router_dir",
    "download_router",
    "encoder_reference",
    "framework_versions",
    "hub_offline",
    "interrupted_save_backups",
    "is_local_path",
    "is_repo_id",
    "library_version",
    "load_tensors",
    "push_checkpoint",
    "read_config",
    "read_cost_settings",
    "render_card_for_repo",
    "render_model_card",
    "resolve_encoder",
    "resolve_router_folder",
    "write_checkpoint",
]
