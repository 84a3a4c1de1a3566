"""A router's state to and from a checkpoint folder, through `haps_core.hub`.

The hub works on config dicts and tensors; this module turns a router into those and back (a router
built from the config alone, then strictly compared with the saved tensors). It never imports the
router class: the class to build is passed in, as huggingface's ModelHubMixin does.
"""

import logging
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Protocol, TypeVar

import torch

from haps_core.catalog import RoutingSpace
from haps_core.encoders import QueryEncoder
from haps_core.errors import CheckpointError
from haps_core.hub import card, encoder_ref, files, reading, remote
from haps_core.model import ood
from haps_core.model.config import RouterConfig

logger = logging.getLogger(__name__)


class CheckpointRouter(Protocol):
    """What a checkpoint stores of a router, and what loading sets on a new one."""

    space: RoutingSpace
    config: RouterConfig
    styles: list[str]
    encoder: QueryEncoder | None
    encoder_info: dict[str, Any]
    has_cost: bool
    default_cost_weight: float
    training_summary: dict[str, Any]
    evaluation: dict[str, Any]
    reference_features: torch.Tensor
    reference_counts: torch.Tensor
    ood_stats: Any

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state_dict: Mapping[str, Any], strict: bool = True) -> Any: ...

    def eval(self) -> Any: ...

    def attach_encoder(self, encoder: QueryEncoder) -> Any: ...


R = TypeVar("R", bound=CheckpointRouter)
# Tensors that checkpoints written before the input-cost model lack (loaded with their defaults).
LEGACY_OPTIONAL = ("reference_counts", "input_intercept", "input_coef", "input_fitted")
# ... and those written before the training statistics (OOD, coverage, explanations): disabled.
# Builds an untrained router from its catalog, hyper-parameters and prompt-style embeddings.
RouterFactory = Callable[[RoutingSpace, RouterConfig, torch.Tensor], R]


def router_config_dict(router: CheckpointRouter) -> dict[str, Any]:
    """The JSON config of a router's checkpoint (strict JSON: NaN is written as null)."""
    config = files.checkpoint_config(
        space=router.space.to_dict(),
        router_config=router.config.to_dict(),
        prompt_style_order=list(router.styles),
        encoder=encoder_ref.encoder_reference(router.encoder_info, router.encoder),
        has_cost=bool(router.has_cost),
        default_cost_weight=float(router.default_cost_weight),
        training=router.training_summary or {},
        evaluation=router.evaluation or {},
    )
    if router.ood_stats is not None:
        config["ood"] = router.ood_stats.to_dict()
    return config


def save_router(
    router: CheckpointRouter, directory: str | os.PathLike[str], repo_id: str | None = None
) -> Path:
    """Writes the checkpoint atomically (see `haps_core.hub.files.write_checkpoint`).

    A crash or an error mid-save leaves the previous checkpoint (if any) intact, and a reader
    never sees a half-written one. The model card is regenerated from the new config.

    Args:
        router: the router to save.
        directory: the checkpoint folder; it must be new, empty, or an existing HAPS checkpoint
            (anything else is refused rather than replaced).
        repo_id: the Hub repo the checkpoint is meant for, named in the card's loading snippet.

    Raises:
        ValueError: `directory` is a file or a non-empty folder that is not a HAPS checkpoint.
        CheckpointError: the router has non-finite weights (such a checkpoint could not load).
    """
    target = files.check_save_target(directory)
    tensors = {k: v.detach().cpu().contiguous() for k, v in router.state_dict().items()}
    files.check_finite(tensors)
    config = router_config_dict(router)
    text = card.render_model_card(config, load_name=files.card_load_name(target, repo_id))
    return files.write_checkpoint(target, tensors, config, text, router.encoder)


def load_router_folder(
    build: RouterFactory[R],
    folder: str | os.PathLike[str],
    device: str = "cpu",
    load_encoder: bool = True,
    local_files_only: bool = False,
) -> R:
    """Loads a checkpoint folder strictly (see `haps_core.hub.reading`) into a router from `build`.

    Args:
        build: the router class (or any factory with its constructor's signature).
        folder: the checkpoint folder.
        device: where the encoder runs.
        load_encoder: resolve and attach the referenced encoder (False: attach one yourself).
        local_files_only: resolve a Hub-hosted encoder from the cache only.

    Raises:
        CheckpointError: the checkpoint is missing, malformed or inconsistent, or its encoder
            cannot be resolved.
    """
    folder = Path(folder)
    reading.check_folder(folder)
    config = reading.read_config(folder)
    path = folder / files.CONFIG_NAME
    try:
        space = RoutingSpace.from_dict(config["space"])
        rconfig = RouterConfig.from_dict(config["router_config"])
    except (ValueError, TypeError, KeyError, AttributeError) as exc:
        msg = f"{path}: invalid catalog or router config: {exc}"
        raise CheckpointError(msg) from None
    reading.check_prompt_styles(path, config, space)
    weights = folder / files.WEIGHTS_NAME
    tensors = reading.load_tensors(weights)
    reference = tensors.get("reference_features")
    n_reference = reference.shape[0] if reference is not None and reference.dim() == 2 else 0
    try:
        # Built from the config alone, so every expected shape comes from the config.
        n_styles = len({a.prompt_style for a in space.actions})
        router = build(space, rconfig, torch.zeros(n_styles, rconfig.embed_dim))
        router.reference_features = torch.zeros(n_reference, rconfig.input_dim)
        counts = tensors.get("reference_counts")
        if counts is not None and counts.dim() == 2:
            router.reference_counts = torch.zeros(counts.shape, dtype=torch.float64)
        ood.resize_statistics_buffers(router, tensors)  # type: ignore[arg-type]
    except (ValueError, RuntimeError, TypeError) as exc:
        msg = f"{path}: cannot build the router its config describes: {exc}"
        raise CheckpointError(msg) from None
    described = (
        f"catalog of {len(space)} actions, architecture {rconfig.architecture!r}, {rconfig.members} member(s)"
    )
    expected = router.state_dict()
    legacy = [k for k in LEGACY_OPTIONAL if k not in tensors and k in expected]
    if legacy:  # saved before the input side of cost was modelled: the head predicts all of it
        logger.info("%s predates input-cost modelling: its whole cost is predicted", weights)
        tensors = {**tensors, **{k: expected[k] for k in legacy}}
    knn_only = [k for k in ood.MAHALANOBIS_TENSORS if k not in tensors and k in expected]
    if knn_only:  # statistics saved before the Mahalanobis OOD score: the kNN score is used
        tensors = {**tensors, **{k: expected[k] for k in knn_only}}
    if not any(k in tensors for k in ood.STATISTICS_TENSORS):  # saved before training statistics
        logger.info("%s has no training statistics: OOD detection and coverage are disabled", weights)
        tensors = {**tensors, **{k: expected[k] for k in ood.STATISTICS_TENSORS if k in expected}}
    reading.check_tensors(weights, expected, tensors, described)
    router.load_state_dict(tensors, strict=True)
    router.eval()
    router.has_cost, router.default_cost_weight = reading.read_cost_settings(path, config)
    router.training_summary = config.get("training") or {}
    router.evaluation = config.get("evaluation") or {}
    if isinstance(config.get("ood"), dict) and len(tensors.get("ood_bank", ())):
        try:
            router.ood_stats = ood.OODStats.from_dict(config["ood"])
        except ValueError as exc:
            msg = f"{path}: {exc}"
            raise CheckpointError(msg) from None
    router.encoder_info = dict(config["encoder"])
    if load_encoder:
        encoder = encoder_ref.resolve_encoder(
            router.encoder_info, folder, device, local_files_only=local_files_only
        )
        try:
            router.attach_encoder(encoder)
        except ValueError as exc:
            msg = f"{path}: {exc}"
            raise CheckpointError(msg) from None
    logger.info("loaded router from %s (%d actions)", folder, len(space))
    return router


def from_pretrained(
    build: RouterFactory[R],
    name_or_path: str | os.PathLike[str],
    revision: str | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
    token: str | bool | None = None,
    local_files_only: bool = False,
    device: str = "cpu",
) -> R:
    """Loads a router from the shipped default, a local folder, or a Hub repo id.

    Args:
        build: the router class (or any factory with its constructor's signature).
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
    folder, offline = remote.resolve_router_folder(name_or_path, revision, cache_dir, token, local_files_only)
    return load_router_folder(build, folder, device=device, local_files_only=offline)


def push_router(
    router: CheckpointRouter,
    repo_id: str,
    revision: str | None = None,
    private: bool | None = None,
    commit_message: str = "Upload HAPS router",
    token: str | None = None,
) -> str:
    """Uploads the router's checkpoint to a Hub model repo (see `haps_core.hub.push_checkpoint`)."""

    def save(folder: Path, repo: str) -> Path:
        return save_router(router, folder, repo_id=repo)

    return remote.push_checkpoint(save, repo_id, revision, private, commit_message, token)
