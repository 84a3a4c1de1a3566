"""The settings of a training run and the record of what it did."""

import math
from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass
class TrainingConfig:
    """Settings of one training run.

    Args:
        epochs: maximum number of passes over the training queries.
        batch_size: queries per step.
        lr: AdamW learning rate of the router heads.
        weight_decay: AdamW weight decay.
        policy_weight: weight of the policy (reward) term; 0 trains the supervised heads only.
        cost_loss_weight: weight of the log-cost regression term.
        entropy_weight: entropy bonus of the policy.
        zero_lambda_prob: share of batches trained at cost weight 0 (quality only).
        reinforce_samples: policy samples per partially observed query.
        patience: epochs without improvement on the early-stopping split before stopping.
        early_stopping_fraction: share of training queries held out for early stopping.
        seed: seeds torch, the shuffling and the split.
        device: "auto", "cpu" or "cuda".
        progress: show a progress bar on stderr (when it is a terminal).
        stop_on: early-stopping criterion on the held-out queries: "loss" (the supervised loss:
            smooth, the default) or "regret" (the decision regret over cost weights: noisier).
        skip_warmup_steps: full-batch steps that first fit each member's direct linear path
            (per-action quality and log-cost from the query features) alone, to convergence,
            before the deep heads train on what it leaves; 0 skips the warm-up.
        skip_lr: learning rate of that warm-up.
        skip_l2: L2 penalty of the linear path in the warm-up; None chooses it from
            `SKIP_L2_CANDIDATES` by the summed loss on the early-stopping queries of the first
            `SKIP_L2_SPLITS` members, and every member uses it (the right strength depends on
            the log's size and noise, so it is picked on held-out queries rather than fixed).
        propensity_clip: the largest inverse-propensity weight min(1 / p, clip) a bandit row
            (one with a logged `propensity`) gets in the policy term; a finite number >= 1.
        skip_prior: the linear path's prior in the warm-up: "none" (an L2 on each action's
            weights: a per-action logistic regression) or "hierarchical" (each action = global +
            backend + (backend, prompt style) + action parts, the finer parts under a
            `skip_prior_ratio` times stronger L2: actions observed a few times borrow from
            their backend's other configurations; `haps_core.training.prior`).
        skip_prior_ratio: that ratio; None chooses it with `skip_l2` on held-out queries from
            `SKIP_PRIOR_RATIOS`.
    """

    epochs: int = 60
    batch_size: int = 64
    lr: float = 2e-3
    weight_decay: float = 1e-2
    policy_weight: float = 0.5
    cost_loss_weight: float = 0.5
    entropy_weight: float = 0.01
    zero_lambda_prob: float = 0.2
    reinforce_samples: int = 4
    patience: int = 8
    early_stopping_fraction: float = 0.15
    seed: int = 0
    device: str = "auto"
    progress: bool = True
    stop_on: str = "loss"
    skip_warmup_steps: int = 300
    skip_lr: float = 0.02
    skip_l2: float | None = None
    propensity_clip: float = 20.0
    skip_prior: str = "none"
    skip_prior_ratio: float | None = None

    def __post_init__(self) -> None:
        for name in ("epochs", "batch_size", "reinforce_samples", "patience"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                msg = f"`{name}` must be a positive integer, got {value!r}"
                raise ValueError(msg)
        for name in ("lr", "weight_decay", "policy_weight", "cost_loss_weight", "entropy_weight"):
            value = getattr(self, name)
            if not isinstance(value, int | float) or not math.isfinite(value) or value < 0:
                msg = f"`{name}` must be a finite number >= 0, got {value!r}"
                raise ValueError(msg)
        if self.skip_l2 is not None and (
            not isinstance(self.skip_l2, int | float) or not math.isfinite(self.skip_l2) or self.skip_l2 < 0
        ):
            msg = f"`skip_l2` must be None (chosen on held-out data) or a number >= 0, got {self.skip_l2!r}"
            raise ValueError(msg)
        clip = self.propensity_clip
        if isinstance(clip, bool) or not isinstance(clip, int | float) or not math.isfinite(clip) or clip < 1:
            msg = f"`propensity_clip` must be a finite number >= 1 (the largest 1 / p weight), got {clip!r}"
            raise ValueError(msg)
        if self.skip_prior not in ("none", "hierarchical"):
            msg = f"`skip_prior` must be 'none' or 'hierarchical', got {self.skip_prior!r}"
            raise ValueError(msg)
        ratio = self.skip_prior_ratio
        if ratio is not None and (
            not isinstance(ratio, int | float) or not math.isfinite(ratio) or ratio <= 0
        ):
            msg = f"`skip_prior_ratio` must be None (chosen on held-out data) or a number > 0, got {ratio!r}"
            raise ValueError(msg)
        if not 0 <= self.zero_lambda_prob <= 1:
            msg = f"`zero_lambda_prob` must be in [0, 1], got {self.zero_lambda_prob!r}"
            raise ValueError(msg)
        if self.stop_on not in ("loss", "regret"):
            msg = f"`stop_on` must be 'loss' or 'regret', got {self.stop_on!r}"
            raise ValueError(msg)
        if not 0 < self.early_stopping_fraction < 1:
            msg = f"`early_stopping_fraction` must be in (0, 1), got {self.early_stopping_fraction!r}"
            raise ValueError(msg)


@dataclass
class TrainingResult:
    """What a run did: epochs, best early-stopping score, time, the loss history."""

    epochs_run: int
    best_epoch: int
    best_dev_regret: float
    seconds: float
    device: str
    history: list[dict[str, float]] = field(default_factory=list)
    skip_l2: float | None = None  # the linear path's L2 strength (None: no warm-up)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
