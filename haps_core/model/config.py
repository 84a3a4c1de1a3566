"""RouterConfig: the hyper-parameters of a router's network, saved in checkpoints' config.json."""

import logging
from dataclasses import asdict, dataclass, field
from typing import Any

from haps_core.features import STRUCTURAL_FEATURES

logger = logging.getLogger(__name__)

ARCHITECTURES = ("haps", "flat", "no_pgn")
FEATURE_CLIP = 10.0  # standard deviations; see HAPSRouter.normalise


@dataclass
class RouterConfig:
    """Hyper-parameters of a router's network (saved in checkpoints' config.json).

    Args:
        embed_dim: size of the query embedding from the encoder.
        use_structural: append the structural text features to the embedding.
        hidden: trunk width.
        backend_dim: learned backend embedding size (input of the PGN).
        style_dim: projection size of the prompt-style text embedding.
        pgn_hidden: width of the generated low-level head.
        dropout: dropout in the trunk (training only).
        architecture: "haps", or an ablation: "flat" or "no_pgn".
        tau: temperature of the policy softmax over utilities (quality units).
        members: ensemble size; members differ in seed and early-stopping split, and their
            predictions are averaged (variance, not bias, dominates with few queries per action).
    """

    embed_dim: int = 384
    use_structural: bool = True
    hidden: int = 256
    backend_dim: int = 16
    style_dim: int = 16
    pgn_hidden: int = 16
    dropout: float = 0.2
    input_dropout: float = 0.1
    architecture: str = "haps"
    tau: float = 0.05
    members: int = 5
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.architecture not in ARCHITECTURES:
            msg = f"`architecture` must be one of {ARCHITECTURES}, got {self.architecture!r}"
            raise ValueError(msg)
        for name in ("embed_dim", "hidden", "backend_dim", "style_dim", "pgn_hidden", "members"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                msg = f"`{name}` must be a positive integer, got {value!r}"
                raise ValueError(msg)
        if not 0.0 <= self.dropout < 1.0:
            msg = f"`dropout` must be in [0, 1), got {self.dropout!r}"
            raise ValueError(msg)
        if not self.tau > 0:
            msg = f"`tau` must be > 0, got {self.tau!r}"
            raise ValueError(msg)

    @property
    def input_dim(self) -> int:
        return self.embed_dim + (len(STRUCTURAL_FEATURES) if self.use_structural else 0)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "RouterConfig":
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(data) - known)
        if unknown:
            logger.warning("ignoring unknown router config keys %s (saved by a newer HAPS?)", unknown)
        return cls(**{k: v for k, v in data.items() if k in known})
