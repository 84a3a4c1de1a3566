"""Training HAPS routers: `fit` (logs in, a trained router out), the trainer and its parts.

`config` (settings), `batches` and `losses` (the objective), `providers` (features per batch),
`warmup` (the linear path), `trainer` (`train_router`), `fitting` (`fit`, `fit_router`),
`ablations`, and `distributed` (data-parallel training under torchrun).
"""

# `_chunks`, `_to_device` and `_warm_up_skip` stay importable from here, as when this package
# was one module; their home is the submodule (patch them there).
from haps_core.training import distributed
from haps_core.training.ablations import (
    Predictor,
    ablations,
    aligned_predictor,
    model_only_subset,
    subset_log,
)
from haps_core.training.batches import EVAL_BLOCK_QUERIES, MAX_DENSE_CELLS
from haps_core.training.batches import _chunks as _chunks
from haps_core.training.batches import _to_device as _to_device
from haps_core.training.config import TrainingConfig, TrainingResult
from haps_core.training.fitting import features_for, fit, fit_router, resolve_encoder
from haps_core.training.losses import dev_loss, dev_regret, policy_loss
from haps_core.training.providers import FeatureProvider, FineTunedEncoderFeatures, FrozenFeatures
from haps_core.training.trainer import build_router, fit_normalisation, train_router
from haps_core.training.warmup import SKIP_L2_CANDIDATES, SKIP_L2_SPLITS, interpolate_unseen_actions
from haps_core.training.warmup import _warm_up_skip as _warm_up_skip

__all__ = [
    "EVAL_BLOCK_QUERIES",
    "MAX_DENSE_CELLS",
    "SKIP_L2_CANDIDATES",
    "SKIP_L2_SPLITS",
    "FeatureProvider",
    "FineTunedEncoderFeatures",
    "FrozenFeatures",
    "Predictor",
    "TrainingConfig",
    "TrainingResult",
    "ablations",
    "aligned_predictor",
    "build_router",
    "dev_loss",
    "dev_regret",
    "distributed",
    "features_for",
    "fit",
    "fit_normalisation",
    "fit_router",
    "interpolate_unseen_actions",
    "model_only_subset",
    "policy_loss",
    "resolve_encoder",
    "subset_log",
    "train_router",
]
