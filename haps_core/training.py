"""The reward-augmented trainer of HAPS routers.

Objective per batch of queries (ARCHITECTURE section 1, item 4):

- supervised: binary cross-entropy of the predicted quality against every observed score
  (soft targets in [0, 1]) and squared error of the predicted log-cost against every observed
  cost, both masked where a (query, action) cell is unobserved;
- policy: a cost weight lambda is sampled per batch (log-uniform over the range that matters for
  the catalog's costs, sometimes 0), rewards are ``score - lambda * cost``, and the policy
  pi = softmax(U / tau) over the hierarchical choice is trained to maximise the expected reward:
  exactly (a sum over actions) when a query's outcome row is fully observed, and with REINFORCE
  with a baseline (samples from the policy restricted to the observed actions, baseline = the
  policy's expected reward over them) when only some are;
- regularisers: an entropy bonus on the policy (keeps it from collapsing onto one backend early)
  and AdamW weight decay.

Early stopping watches the decision quality on a held-out part of the training queries: the
realised reward of the router's choice among each query's observed actions, averaged over a grid
of cost weights. Training is seeded and deterministic on CPU; on CUDA it uses bf16 autocast and
pinned host memory for the per-batch outcome tensors. Under torchrun (see
`haps_core.distributed`) each rank trains on its slice of every global batch, gradients are
averaged across ranks, and early stopping follows rank 0.
"""

import abc
import copy
import dataclasses
import logging
import math
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch
from torch.nn.utils import clip_grad_norm_

from haps_core import distributed as ddp
from haps_core.decision import cost_weight_grid
from haps_core.encoders import resolve_device
from haps_core.logs import OutcomeTable, split_queries
from haps_core.model import HAPSRouter

logger = logging.getLogger(__name__)


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


def _seed_everything(seed: int) -> None:
    torch.manual_seed(seed)
    np.random.seed(seed % 2**32)


def _to_device(array: np.ndarray, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """A host array on `device`; on CUDA through pinned memory with a non-blocking copy, so
    the copy of one batch's outcomes overlaps the GPU work already queued."""
    if device.type != "cuda":
        return torch.as_tensor(array, dtype=dtype, device=device)
    return torch.as_tensor(array, dtype=dtype).pin_memory().to(device, non_blocking=True)


def _batch_tensors(
    table: OutcomeTable, query_idx: np.ndarray, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    score, cost, mask = table.dense(query_idx)
    return (
        _to_device(score, torch.float32, device),
        _to_device(cost, torch.float32, device),
        _to_device(mask, torch.bool, device),
    )


# Outcomes are densified a block of queries at a time, never a whole split: at most this many
# (query, action) cells at once (about 40 MB for scores, costs and mask), so memory stays flat
# on logs with millions of queries.
MAX_DENSE_CELLS = 1 << 22
# Held-out evaluation also runs the network a block of queries at a time: the PGN's activations
# grow with queries x actions x backends (see RouterNet.forward).
EVAL_BLOCK_QUERIES = 1024


def _chunks(n_queries: int, n_actions: int, max_queries: int | None = None) -> list[slice]:
    """Position ranges covering `n_queries` rows with at most MAX_DENSE_CELLS cells (and at
    most `max_queries` rows) each."""
    step = max(1, MAX_DENSE_CELLS // max(n_actions, 1))
    if max_queries is not None:
        step = max(1, min(step, max_queries))
    return [slice(s, min(s + step, n_queries)) for s in range(0, n_queries, step)]


def policy_loss(
    utility: torch.Tensor,
    reward: torch.Tensor,
    mask: torch.Tensor,
    tau: float,
    samples: int,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Negative expected reward of pi = softmax(utility / tau), and the policy entropy.

    Rows whose every action is observed use the exact expectation; other rows use REINFORCE
    with a baseline over the observed actions (the policy renormalised to them).
    """
    logits = utility / tau
    full = mask.all(dim=1)
    losses = []
    entropy = torch.zeros((), device=utility.device)
    if full.any():
        p = torch.softmax(logits[full], dim=1)
        losses.append(-(p * reward[full]).sum(1))
        entropy = entropy + (-(p * torch.log_softmax(logits[full], 1)).sum(1)).sum()
    part = ~full & mask.any(dim=1)
    if part.any():
        lg = logits[part].masked_fill(~mask[part], float("-inf"))
        logp = torch.log_softmax(lg, dim=1)
        p = logp.exp()
        r = reward[part].masked_fill(~mask[part], 0.0)
        baseline = (p * r).sum(1, keepdim=True).detach()
        draws = torch.multinomial(p.detach().float(), samples, replacement=True, generator=generator)
        adv = (r.gather(1, draws) - baseline).detach()
        losses.append(-(adv * logp.gather(1, draws)).mean(1))
        ent = -(p * logp.masked_fill(~mask[part], 0.0)).sum(1)
        entropy = entropy + ent.sum()
    n = int(full.sum() + part.sum())
    if not losses:
        zero = utility.sum() * 0.0
        return zero, zero
    return torch.cat(losses).mean(), entropy / max(n, 1)


def _member_predict(router: HAPSRouter, features: torch.Tensor, member: int | None):
    q_logit, log_c = router(features, member=member)
    quality = torch.sigmoid(q_logit.float()).cpu().numpy()
    cost = torch.exp(log_c.float()).cpu().numpy() if router.has_cost else np.zeros_like(quality)
    return quality, cost


@torch.no_grad()
def dev_regret(
    router: HAPSRouter,
    features: torch.Tensor,
    table: OutcomeTable,
    query_idx: np.ndarray,
    weights: np.ndarray,
    member: int | None = None,
) -> float:
    """Mean regret of the router's choice among each query's observed actions, over cost weights.

    `features` are those of the `query_idx` queries (one row each).

    Regret = best realised reward among the observed actions minus the realised reward of the
    action the router prefers among them (0 is perfect).
    """
    was_training = router.training
    router.eval()
    totals = np.zeros(len(weights))
    for part in _chunks(len(query_idx), len(table.space), EVAL_BLOCK_QUERIES):
        score, cost, mask = table.dense(query_idx[part])
        quality, pred_cost = _member_predict(router, features[part], member)
        rows = np.arange(len(score))
        for k, w in enumerate(weights):
            pick = np.where(mask, quality - w * pred_cost, -np.inf).argmax(1)
            realised = score[rows, pick] - w * cost[rows, pick]
            best = np.where(mask, score - w * cost, -np.inf).max(1)
            totals[k] += float((best - realised).sum())
    if was_training:
        router.train()
    return float(totals.mean() / max(len(query_idx), 1))


def _supervised_sums(
    q_logit: torch.Tensor,
    log_c: torch.Tensor,
    score: torch.Tensor,
    cost: torch.Tensor,
    mask: torch.Tensor,
    has_cost: bool,
    cost_loss_weight: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(sum over observed cells of the supervised loss, number of observed cells)."""
    m = mask.float()
    bce = torch.nn.functional.binary_cross_entropy_with_logits(q_logit, score, reduction="none")
    total = (bce * m).sum()
    if has_cost:
        err = (log_c - torch.log(cost.clamp_min(1e-9))) ** 2
        total = total + cost_loss_weight * (err * m).sum()
    return total, m.sum()


def _supervised_loss(
    q_logit: torch.Tensor,
    log_c: torch.Tensor,
    score: torch.Tensor,
    cost: torch.Tensor,
    mask: torch.Tensor,
    has_cost: bool,
    cost_loss_weight: float,
) -> torch.Tensor:
    """Masked BCE on observed scores + weighted squared error of log-cost on observed costs."""
    total, n = _supervised_sums(q_logit, log_c, score, cost, mask, has_cost, cost_loss_weight)
    return total / n.clamp_min(1.0)


@torch.no_grad()
def _heldout_loss(
    forward: Any,
    features: torch.Tensor,
    table: OutcomeTable,
    query_idx: np.ndarray,
    cost_loss_weight: float,
    device: torch.device,
) -> float:
    """Supervised loss of `forward(features) -> (quality logits, log-costs)` on held-out
    queries, a block of queries at a time. `features` are those queries' rows, in order."""
    total, n = 0.0, 0.0
    for part in _chunks(len(query_idx), len(table.space), EVAL_BLOCK_QUERIES):
        score, cost, mask = _batch_tensors(table, query_idx[part], device)
        q_logit, log_c = forward(features[part])
        t, c = _supervised_sums(
            q_logit.float(), log_c.float(), score, cost, mask, table.has_cost, cost_loss_weight
        )
        total, n = total + float(t), n + float(c)
    return total / max(n, 1.0)


@torch.no_grad()
def dev_loss(
    router: HAPSRouter,
    features: torch.Tensor,
    table: OutcomeTable,
    query_idx: np.ndarray,
    cost_loss_weight: float,
    member: int | None = None,
) -> float:
    """Supervised loss on held-out queries (`features`: their rows, in order)."""
    was_training = router.training
    router.eval()
    loss = _heldout_loss(
        lambda x: router(x, member=member),
        features,
        table,
        query_idx,
        cost_loss_weight,
        router.feature_mean.device,
    )
    if was_training:
        router.train()
    return loss


def fit_normalisation(router: HAPSRouter, features: torch.Tensor) -> None:
    """Sets the router's input standardisation from training features.

    Embeddings are already on a common scale (unit norm), so only the extra (structural)
    features are standardised and the embedding geometry is kept.
    """
    mean = features.mean(0)
    std = features.std(0) if len(features) > 1 else torch.ones_like(mean)
    # A feature (nearly) constant in training, e.g. the share of Cyrillic letters in an English
    # log, keeps its raw scale: dividing by a tiny spread would put any query that has it
    # thousands of standard deviations out. Its weights never trained anyway.
    std = torch.where(std < 1e-3, torch.ones_like(std), std)
    d = router.config.embed_dim
    mean[:d] = 0.0
    std[:d] = 1.0
    router.feature_mean.copy_(mean)
    router.feature_std.copy_(std)


def _cost_weight_range(table: OutcomeTable) -> np.ndarray:
    """The cost weights the policy term samples from (and early stopping averages over)."""
    if not table.has_cost:
        return np.zeros(1)
    counts = np.bincount(table.cell_action, minlength=len(table.space))
    sums = np.bincount(table.cell_action, weights=table.cost, minlength=len(table.space))
    return cost_weight_grid(sums / np.maximum(counts, 1), n=12)


class FeatureProvider(abc.ABC):
    """Where a training step gets the router's input features for a batch of queries."""

    @abc.abstractmethod
    def features(self, query_idx: np.ndarray, grad: bool) -> torch.Tensor:
        """Features [len(query_idx), input_dim]; with gradients to trainable parts if `grad`."""

    def param_groups(self) -> list[dict[str, Any]]:
        return []

    def snapshot(self) -> None:  # noqa: B027 - optional hook; frozen features have no state
        """Remembers the current trainable state (called at the best early-stopping epoch)."""

    def restore(self) -> None:  # noqa: B027 - optional hook
        """Restores the state remembered by `snapshot`."""


class FrozenFeatures(FeatureProvider):
    """Precomputed features of a frozen encoder: a row lookup."""

    def __init__(self, features: torch.Tensor) -> None:
        self._features = features

    def features(self, query_idx: np.ndarray, grad: bool) -> torch.Tensor:
        return self._features[query_idx]


class FineTunedEncoderFeatures(FeatureProvider):
    """Features from an encoder trained end to end with the routing objective.

    Each batch runs the encoder (with gradients in training steps) on the batch's texts; the
    structural features are fixed and concatenated. On CUDA the encoder runs under bf16
    autocast. The encoder's learning rate is small: it starts from a good sentence encoder and
    only a few hundred or thousand queries are there to move it.
    """

    def __init__(
        self,
        encoder: Any,
        texts: Sequence[str],
        structural: torch.Tensor | None,
        lr: float = 2e-5,
        batch_size: int = 64,
    ) -> None:
        self.encoder = encoder
        self.texts = list(texts)
        self.structural = structural
        self.lr = lr
        self.batch_size = batch_size
        self._state: dict[str, torch.Tensor] | None = None

    def _encode(self, idx: np.ndarray) -> torch.Tensor:
        tok = self.encoder.tokenize([self.texts[i] for i in idx])
        device = self.encoder.device
        with torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
            emb = self.encoder.forward_features(tok["input_ids"], tok["attention_mask"])
        emb = emb.float()
        if self.structural is not None:
            emb = torch.cat([emb, self.structural[idx].to(emb.device)], dim=1)
        return emb

    def features(self, query_idx: np.ndarray, grad: bool) -> torch.Tensor:
        model = self.encoder.model
        if grad:
            model.train()
            return self._encode(query_idx)
        model.eval()
        with torch.no_grad():
            parts = [
                self._encode(query_idx[i : i + self.batch_size])
                for i in range(0, len(query_idx), self.batch_size)
            ]
        return torch.cat(parts)

    def param_groups(self) -> list[dict[str, Any]]:
        return [{"params": list(self.encoder.model.parameters()), "lr": self.lr, "weight_decay": 0.0}]

    def snapshot(self) -> None:
        self._state = copy.deepcopy(self.encoder.model.state_dict())

    def restore(self) -> None:
        if self._state is not None:
            self.encoder.model.load_state_dict(self._state)
        self.encoder.model.eval()


SKIP_L2_CANDIDATES = (1e-5, 1e-4, 1e-3, 1e-2)
# The linear path's L2 is chosen on the summed held-out loss of this many members' splits: one
# split of ~150 queries is a noisy judge (it flipped the choice between seeds).
SKIP_L2_SPLITS = 3


def _warm_up_skip(
    router: HAPSRouter,
    member: int,
    provider: "FeatureProvider",
    table: OutcomeTable,
    fit_q: np.ndarray,
    config: TrainingConfig,
    device: torch.device,
    stop_q: np.ndarray | None = None,
    return_losses: bool = False,
) -> Any:
    """Fits the member's direct linear path alone (the deep heads' outputs held at zero).

    With few observations per action, a per-action linear model trained to convergence is a
    strong, stable base (see the `linear` baseline); the hierarchical heads and the PGN then
    learn corrections to it under early stopping instead of racing it. Its L2 strength is
    `config.skip_l2`, or, when that is None, the candidate with the lowest loss on the
    member's early-stopping queries `stop_q`. Returns the strength used; with `return_losses`,
    the held-out loss of every candidate strength instead (the path is then left unfitted).

    Small logs take full-batch steps; when the fit split holds more than MAX_DENSE_CELLS
    (query, action) cells, each step takes the next block of queries instead, so the outcomes
    are never densified for the whole split.
    """
    net = router.members[member]
    n_actions = len(router.space)
    parts = _chunks(len(fit_q), n_actions)
    blocks: list[tuple[torch.Tensor, ...]] = []

    def block(k: int) -> tuple[torch.Tensor, ...]:
        if len(parts) == 1 and blocks:
            return blocks[0]
        idx = fit_q[parts[k]]
        out = (router.normalise(provider.features(idx, grad=False)), *_batch_tensors(table, idx, device))
        if len(parts) == 1:
            blocks.append(out)
        return out

    # Per-action starting biases: observed means over the whole fit split, a block at a time.
    sums = torch.zeros(3, n_actions, device=device)
    for k in range(len(parts)):
        _, score, cost, mask = block(k)
        m = mask.float()
        sums[0] += (score * m).sum(0)
        sums[1] += (torch.log(cost.clamp_min(1e-9)) * m).sum(0)
        sums[2] += m.sum(0)
    with torch.no_grad():
        seen = sums[2] > 0
        counts = sums[2].clamp_min(1.0)
        mean_q = (sums[0] / counts).clamp(0.02, 0.98)
        bias_q = torch.log(mean_q) - torch.log1p(-mean_q)
        bias_c = sums[1] / counts
        # An action never observed in training starts from its backend's average (else the
        # global one), so what it gets comes from the shared heads and its parameter values.
        for a in torch.nonzero(~seen).flatten().tolist():
            same = (router.backend_of == router.backend_of[a]) & seen
            pool = same if same.any() else seen
            if pool.any():
                bias_q[a], bias_c[a] = bias_q[pool].mean(), bias_c[pool].mean()
        bias = net.skip.bias.detach().clone()
        bias[:n_actions] = bias_q
        if table.has_cost:
            bias[n_actions:] = bias_c

    def fit(l2: float, steps: int | None = None, restart: bool = True) -> None:
        if restart:
            with torch.no_grad():
                net.skip.weight.zero_()
                net.skip.bias.copy_(bias)
        opt = torch.optim.Adam(net.skip.parameters(), lr=config.skip_lr)
        for step in range(config.skip_warmup_steps if steps is None else steps):
            x, score, cost, mask = block(step % len(parts))
            out = net.skip(x)
            q, c = out[:, :n_actions], out[:, n_actions:]
            loss = _supervised_loss(q, c, score, cost, mask, table.has_cost, config.cost_loss_weight)
            loss = loss + l2 * net.skip.weight.pow(2).sum()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()

    def fill_unseen() -> None:
        if not seen.all():
            with torch.no_grad():
                interpolate_unseen_actions(router, net.skip, seen)

    no_stop = stop_q is None or len(stop_q) == 0
    if return_losses and no_stop:
        return {}
    if (config.skip_l2 is not None or no_stop) and not return_losses:
        l2 = config.skip_l2 if config.skip_l2 is not None else 1e-4
        fit(l2)
        fill_unseen()
        return float(l2)
    x_stop = router.normalise(provider.features(stop_q, grad=False))

    def skip_forward(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        out = net.skip(x)
        return out[:, :n_actions], out[:, n_actions:]

    # A regularisation path: the strongest penalty first, from scratch, then each weaker one
    # continuing from the previous solution with a third of the steps (it starts close).
    losses = {}
    for i, l2 in enumerate(sorted(SKIP_L2_CANDIDATES, reverse=True)):
        fit(l2, None if i == 0 else max(1, config.skip_warmup_steps // 3), restart=i == 0)
        losses[l2] = _heldout_loss(skip_forward, x_stop, table, stop_q, config.cost_loss_weight, device)
    if return_losses:
        return losses
    chosen = min(losses, key=losses.get)
    logger.debug("member %d: linear path l2 %g (held-out losses %s)", member, chosen, losses)
    fit(chosen)
    fill_unseen()
    return float(chosen)


def interpolate_unseen_actions(router: HAPSRouter, skip: torch.nn.Linear, seen: torch.Tensor) -> None:
    """Gives each action never observed in training the linear path of its nearest observed
    configurations of the same backend (of any backend when it has none).

    An unobserved action gets no gradient from the data, so its linear path would stay a
    constant. Nearness is measured on what the router knows of a configuration: its parameter
    value features (temperature, declared parameters) and its prompt style's text embedding;
    the rows (quality and log-cost weights and biases) are averaged with inverse squared
    distance weights, so an unseen temperature between two logged ones lands between them.
    """
    n_actions = len(router.space)
    values = router.action_values.float()
    styles = torch.nn.functional.normalize(router.style_embeddings.float(), dim=1)[router.style_of]
    dist = torch.cdist(values, values) + 2.0 * (1.0 - styles @ styles.T).clamp_min(0.0)
    for a in torch.nonzero(~seen).flatten().tolist():
        pool = (router.backend_of == router.backend_of[a]) & seen
        if not pool.any():
            pool = seen
        if not pool.any():
            return
        idx = torch.nonzero(pool).flatten()
        w = 1.0 / (dist[a, idx] ** 2 + 1e-6)
        w = w / w.sum()
        for offset in (0, n_actions):  # quality row, then log-cost row
            skip.weight[offset + a] = w @ skip.weight[offset + idx]
            skip.bias[offset + a] = w @ skip.bias[offset + idx]


def _train_member(
    router: HAPSRouter,
    member: int,
    features: torch.Tensor,
    table: OutcomeTable,
    fit_q: np.ndarray,
    stop_q: np.ndarray,
    weights: np.ndarray,
    config: TrainingConfig,
    device: torch.device,
    progress: Any,
    provider: "FeatureProvider | None" = None,
) -> dict[str, Any]:
    seed = config.seed + 1000 * member
    rank, world = ddp.get_rank(), ddp.get_world_size()
    # Dropout and policy samples differ between ranks (they see different queries); the
    # shuffle generator `gen` is the same everywhere, so all ranks agree on the global batches.
    torch.manual_seed(seed + 100_003 * rank)
    net = router.members[member]
    provider = provider or FrozenFeatures(features)
    skip_l2 = None
    if config.skip_warmup_steps:
        skip_l2 = _warm_up_skip(router, member, provider, table, fit_q, config, device, stop_q)
    groups = [{"params": list(net.parameters()), "lr": config.lr}]
    groups += provider.param_groups()
    params = [p for g in groups for p in g["params"]]
    ddp.broadcast_parameters(params)  # every rank starts from rank 0's weights
    opt = torch.optim.AdamW(groups, lr=config.lr, weight_decay=config.weight_decay)
    gen = torch.Generator().manual_seed(seed)
    sample_gen = torch.Generator(device=device).manual_seed(seed + 100_003 * rank)
    positive = weights[weights > 0]
    log_lo, log_hi = (math.log(positive.min()), math.log(positive.max())) if positive.size else (0.0, 0.0)
    amp = device.type == "cuda"
    best_state, best_score, best_epoch, best_regret = None, math.inf, 0, math.nan
    history: list[dict[str, float]] = []
    epochs_run = 0
    if skip_l2 is not None:
        # The warmed-up linear path alone (the deep heads start at zero) is the first candidate.
        x_stop = provider.features(stop_q, grad=False)
        regret = dev_regret(router, x_stop, table, stop_q, weights, member)
        held = dev_loss(router, x_stop, table, stop_q, config.cost_loss_weight, member)
        if world > 1:
            regret, held = ddp.broadcast_value([regret, held])
        best_score = held if config.stop_on == "loss" else regret
        best_state, best_regret = copy.deepcopy(net.state_dict()), regret
        provider.snapshot()
    for epoch in range(config.epochs):
        epochs_run = epoch + 1
        router.train()
        order = fit_q[torch.randperm(len(fit_q), generator=gen).numpy()]
        sums = {"supervised": 0.0, "policy": 0.0, "n": 0}
        for s in range(0, len(order), config.batch_size):
            global_batch = order[s : s + config.batch_size]
            batch = ddp.shard_batch(global_batch, rank, world)
            # Drawn before any rank-dependent work, so `gen` stays in step on every rank.
            lam = 0.0
            if (
                config.policy_weight > 0
                and positive.size
                and float(torch.rand((), generator=gen)) >= config.zero_lambda_prob
            ):
                lam = math.exp(log_lo + (log_hi - log_lo) * float(torch.rand((), generator=gen)))
            opt.zero_grad(set_to_none=True)
            if len(batch) == 0:  # a last global batch smaller than the world: nothing here
                ddp.all_reduce_gradients(params)
                clip_grad_norm_(params, 5.0)
                opt.step()
                continue
            score, cost, mask = _batch_tensors(table, batch, device)
            with torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=amp):
                q_logit, log_c = router(provider.features(batch, grad=True), member=member)
            q_logit, log_c = q_logit.float(), log_c.float()
            loss_sup = _supervised_loss(
                q_logit, log_c, score, cost, mask, table.has_cost, config.cost_loss_weight
            )
            loss = loss_sup
            loss_pol = torch.zeros((), device=device)
            if config.policy_weight > 0:
                pred_cost = torch.exp(log_c) if table.has_cost else torch.zeros_like(log_c)
                utility = torch.sigmoid(q_logit) - lam * pred_cost
                loss_pol, entropy = policy_loss(
                    utility,
                    score - lam * cost,
                    mask,
                    router.config.tau,
                    config.reinforce_samples,
                    sample_gen,
                )
                loss = loss + config.policy_weight * loss_pol - config.entropy_weight * entropy
            if world > 1:  # averaged over ranks below: weight this slice by its share
                loss = loss * ddp.gradient_scale(len(batch), len(global_batch), world)
            loss.backward()
            ddp.all_reduce_gradients(params)
            clip_grad_norm_(params, 5.0)
            opt.step()
            sums["supervised"] += float(loss_sup.detach()) * len(batch)
            sums["policy"] += float(loss_pol.detach()) * len(batch)
            sums["n"] += len(batch)
        if world > 1:
            sums["supervised"], sums["policy"], sums["n"] = ddp.all_reduce_sum(
                [sums["supervised"], sums["policy"], sums["n"]]
            )
        x_stop = provider.features(stop_q, grad=False)
        regret = dev_regret(router, x_stop, table, stop_q, weights, member)
        held = dev_loss(router, x_stop, table, stop_q, config.cost_loss_weight, member)
        if world > 1:  # rank 0 decides: every rank stops at the same epoch
            regret, held = ddp.broadcast_value([regret, held])
        score_dev = held if config.stop_on == "loss" else regret
        history.append(
            {
                "member": member,
                "epoch": epoch + 1,
                "supervised": sums["supervised"] / max(sums["n"], 1),
                "policy": sums["policy"] / max(sums["n"], 1),
                "dev_loss": held,
                "dev_regret": regret,
            }
        )
        progress(member, epoch, history[-1])
        if score_dev < best_score - 1e-6:
            best_score, best_epoch, best_regret = score_dev, epoch + 1, regret
            best_state = copy.deepcopy(net.state_dict())
            provider.snapshot()
        elif epoch + 1 - best_epoch >= config.patience:
            break
    if best_state is not None:
        net.load_state_dict(best_state)
        provider.restore()
    return {
        "epochs_run": epochs_run,
        "best_epoch": best_epoch,
        "best_regret": best_regret,
        "skip_l2": skip_l2,
        "history": history,
    }


def train_router(
    router: HAPSRouter,
    features: torch.Tensor,
    table: OutcomeTable,
    train_queries: Sequence[int] | np.ndarray,
    config: TrainingConfig | None = None,
    provider: FeatureProvider | None = None,
) -> TrainingResult:
    """Trains `router` in place on the observed outcomes of `train_queries`.

    Each ensemble member is trained on its own deterministic split of the training queries
    (a different part held out for early stopping), so together they use every query.

    Args:
        router: a freshly built router (its space must be the table's space).
        features: [n_queries, input_dim] features of ALL the table's queries (row = query index).
        table: the sparse outcome table.
        train_queries: query indices to learn from.
        config: training settings.
        provider: where batches get their features; default: rows of `features` (frozen
            encoder). `FineTunedEncoderFeatures` trains the encoder end to end.
    """
    config = config or TrainingConfig()
    if router.space != table.space:
        msg = "the router's routing space differs from the outcome table's"
        raise ValueError(msg)
    start = time.perf_counter()
    _seed_everything(config.seed)
    device = resolve_device(config.device)
    if device.type == "cuda" and ddp.is_distributed():
        device = torch.device("cuda", torch.cuda.current_device())  # this rank's GPU
    train_queries = np.asarray(train_queries, dtype=np.int64)
    train_queries = train_queries[np.diff(table.indptr)[train_queries] > 0]
    if len(train_queries) < 2:
        msg = f"need at least 2 training queries with observed outcomes, got {len(train_queries)}"
        raise ValueError(msg)
    features = torch.as_tensor(features, dtype=torch.float32)
    fit_normalisation(router, features[train_queries])
    router.has_cost = table.has_cost
    router.to(device)
    features_dev = features.to(device)
    weights = _cost_weight_range(table)
    n_members = len(router.members)
    show = config.progress and sys.stderr.isatty() and ddp.is_main_process()

    def progress(member: int, epoch: int, row: dict[str, float]) -> None:
        if show:
            sys.stderr.write(
                f"\rtraining member {member + 1}/{n_members} epoch {epoch + 1}/{config.epochs} "
                f"loss {row['supervised']:.4f} held-out regret {row['dev_regret']:.4f}   "
            )

    ids = [table.query_ids[i] for i in train_queries]
    splits = []
    for member in range(n_members):
        held = split_queries(ids, config.early_stopping_fraction, seed=config.seed + 7 + member)
        if held.all() or not held.any():
            held = np.zeros(len(train_queries), dtype=bool)
            held[-max(1, len(train_queries) // 7) :] = True
        splits.append((train_queries[~held], train_queries[held]))
    member_config = config
    if config.skip_l2 is None and config.skip_warmup_steps:
        # One L2 for every member's linear path, chosen on several members' held-out queries
        # (each member's own choice on ~15% of the queries varied with the split).
        search = provider or FrozenFeatures(features_dev)
        total: dict[float, float] = {}
        for member, (fit_q, stop_q) in enumerate(splits[:SKIP_L2_SPLITS]):
            losses = _warm_up_skip(router, member, search, table, fit_q, config, device, stop_q, True)
            for l2, loss in losses.items():
                total[l2] = total.get(l2, 0.0) + loss
        if total:
            chosen = min(total, key=total.get)
            logger.info("linear path l2 %g (summed held-out losses %s)", chosen, total)
            member_config = dataclasses.replace(config, skip_l2=chosen)
    members = []
    for member in range(n_members):
        fit_q, stop_q = splits[member]
        members.append(
            _train_member(
                router,
                member,
                features_dev,
                table,
                fit_q,
                stop_q,
                weights,
                member_config,
                device,
                progress,
                provider,
            )
        )
    if show:
        sys.stderr.write("\n")
    router.eval()
    router.to("cpu")
    # A sample of training queries' features: the calibration reference for budgets.
    gen = torch.Generator().manual_seed(config.seed)
    ref_idx = train_queries[torch.randperm(len(train_queries), generator=gen).numpy()[:256]]
    router.reference_features = features[ref_idx].clone()
    result = TrainingResult(
        epochs_run=sum(m["epochs_run"] for m in members),
        best_epoch=int(np.median([m["best_epoch"] for m in members])),
        best_dev_regret=float(np.nanmean([m["best_regret"] for m in members])),
        seconds=round(time.perf_counter() - start, 2),
        device=str(device),
        history=[row for m in members for row in m["history"]],
        skip_l2=members[0]["skip_l2"],
    )
    logger.info(
        "trained %d members (%d epochs in all, median best epoch %d, held-out regret %.4f) in %.1f s on %s",
        n_members,
        result.epochs_run,
        result.best_epoch,
        result.best_dev_regret,
        result.seconds,
        device,
    )
    return result


def build_router(space: Any, router_config: Any, encoder: Any) -> HAPSRouter:
    """A fresh router for `space`, with prompt-style embeddings computed by `encoder`."""
    from haps_core.features import style_text

    styles = sorted({a.prompt_style for a in space.actions})
    style_emb = encoder.encode([style_text(space, s) for s in styles]).float()
    router = HAPSRouter(space, router_config, style_emb)
    router.attach_encoder(encoder)
    return router
