"""Deprecated: the steps from logs to a trained router live in `haps_core.training`."""

import warnings

from haps_core.training import (
    FineTunedEncoderFeatures,
    TrainingConfig,
    ablations,
    aligned_predictor,
    build_router,
    features_for,
    fit_router,
    model_only_subset,
    subset_log,
    train_router,
)

warnings.warn(
    "haps_core.pipeline is deprecated: import from haps_core.training", DeprecationWarning, stacklevel=2
)

__all__ = [
    "FineTunedEncoderFeatures",
    "TrainingConfig",
    "ablations",
    "aligned_predictor",
    "build_router",
    "features_for",
    "fit_router",
    "model_only_subset",
    "subset_log",
    "train_router",
]
