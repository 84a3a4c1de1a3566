"""Deprecated: use `haps_core.hub` (the model card lives in `haps_core.hub.card`)."""

import warnings

from haps_core.hub.card import (
    CARD_TAGS,
    METRIC_LEGEND,
    METRIC_TITLES,
    PLACEHOLDER_REPO_ID,
    TEMPLATE_NAME,
    TRAINING_ORDER,
    HAPSModelCardData,
    card_template,
    render_model_card,
)

warnings.warn(
    "haps_core.model_card is deprecated: import from haps_core.hub", DeprecationWarning, stacklevel=2
)

__all__ = [
    "CARD_TAGS",
    "METRIC_LEGEND",
    "METRIC_TITLES",
    "PLACEHOLDER_REPO_ID",
    "TEMPLATE_NAME",
    "TRAINING_ORDER",
    "HAPSModelCardData",
    "card_template",
    "render_model_card",
]
