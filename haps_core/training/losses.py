"""The training objective's terms and the held-out scores that early stopping watches.

Supervised: masked BCE of quality and squared error of log-cost on observed cells. Policy: the
expected reward of softmax(U / tau), exact on fully observed rows, REINFORCE otherwise, and
clipped inverse-propensity weighted on bandit rows (rows with a logged propensity).
"""

from collections.abc import Callable

import numpy as np
import torch

from haps_core.decision import cost_weight_grid
from haps_core.logs import OutcomeTable
from haps_core.model import HAPSRouter
from haps_core.training.batches import EVAL_BLOCK_QUERIES, _batch_tensors, _chunks

Forward = Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]]


def ips_weights(propensity: torch.Tensor, mask: torch.Tensor, clip: float) -> torch.Tensor:
    """Per cell, the clipped inverse-propensity weight min(1 / p, clip) (0 where a cell is
    unobserved or has no propensity)."""
    known = mask & torch.isfinite(propensity) & (propensity > 0)
    safe = torch.where(known, propensity, torch.ones_like(propensity))
    return torch.where(known, (1.0 / safe).clamp_max(clip), torch.zeros_like(propensity))


def policy_loss(
    utility: torch.Tensor,
    reward: torch.Tensor,
    mask: torch.Tensor,
    tau: float,
    samples: int,
    generator: torch.Generator | None = None,
    propensity: torch.Tensor | None = None,
    clip: float = 20.0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Negative expected reward of pi = softmax(utility / tau), and the policy entropy.

    Rows whose every action is observed use the exact expectation; other rows use REINFORCE
    with a baseline over the observed actions (the policy renormalised to them). Bandit rows
    (not fully observed, with a logged `propensity` [B, A] on an observed cell, NaN elsewhere)
    use the clipped inverse-propensity estimate of the expected reward under the *whole* policy:
    the mean over those cells of min(1 / p, clip) * pi(a) * (r_a - b), with b the policy's
    expected predicted utility (detached, a control variate). Renormalising the policy to the
    observed actions would give a row with one observed action no gradient at all. Without
    propensities the result is exactly the one without the argument.
    """
    logits = utility / tau
    full = mask.all(dim=1)
    losses = []
    entropy = torch.zeros((), device=utility.device)
    bandit = torch.zeros_like(full)
    if propensity is not None:
        weight = ips_weights(propensity, mask, clip)
        bandit = ~full & (weight > 0).any(dim=1)
    if full.any():
        p = torch.softmax(logits[full], dim=1)
        losses.append(-(p * reward[full]).sum(1))
        entropy = entropy + (-(p * torch.log_softmax(logits[full], 1)).sum(1)).sum()
    part = ~full & ~bandit & mask.any(dim=1)
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
    if bandit.any():
        logp = torch.log_softmax(logits[bandit], dim=1)
        p = logp.exp()
        w = weight[bandit]
        baseline = (p * utility[bandit]).sum(1, keepdim=True).detach()
        adv = (reward[bandit] - baseline).masked_fill(w == 0, 0.0).detach()
        losses.append(-(w * p * adv).sum(1) / (w > 0).sum(1))
        entropy = entropy + (-(p * logp).sum(1)).sum()
    n = int(full.sum() + part.sum() + bandit.sum())
    if not losses:
        zero = utility.sum() * 0.0
        return zero, zero
    return torch.cat(losses).mean(), entropy / max(n, 1)


def _member_predict(
    router: HAPSRouter, features: torch.Tensor, member: int | None
) -> tuple[np.ndarray, np.ndarray]:
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
        known = table.dense_input_cost(query_idx[part])  # the input side, when split off
        cost, pred_cost = cost + known, pred_cost + known
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
    forward: Forward,
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


def _cost_weight_range(table: OutcomeTable) -> np.ndarray:
    """The cost weights the policy term samples from (and early stopping averages over)."""
    if not table.has_cost:
        return np.zeros(1)
    counts = np.bincount(table.cell_action, minlength=len(table.space))
    sums = np.bincount(table.cell_action, weights=table.full_cost(), minlength=len(table.space))
    return cost_weight_grid(sums / np.maximum(counts, 1), n=12)
