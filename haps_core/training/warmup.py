"""The warm-up of each member's direct linear path, its L2 choice, and unseen actions.

A per-action linear model fitted to convergence first is a strong, stable base with few
observations per action; the deep heads then learn corrections to it under early stopping.
"""

import logging
from collections.abc import Callable
from typing import Any, Literal, overload

import numpy as np
import torch

from haps_core.logs import OutcomeTable
from haps_core.model import HAPSRouter
from haps_core.training.batches import _batch_tensors, _chunks
from haps_core.training.config import TrainingConfig
from haps_core.training.losses import _heldout_loss, _supervised_loss
from haps_core.training.prior import SKIP_PRIOR_RATIOS, HierarchicalLinear
from haps_core.training.providers import FeatureProvider

logger = logging.getLogger(__name__)

SKIP_L2_CANDIDATES = (1e-5, 1e-4, 1e-3, 1e-2)
# The linear path's L2 is chosen on the summed held-out loss of this many members' splits: one
# split of ~150 queries is a noisy judge (it flipped the choice between seeds).
SKIP_L2_SPLITS = 3


@overload
def _warm_up_skip(
    router: HAPSRouter,
    member: int,
    provider: FeatureProvider,
    table: OutcomeTable,
    fit_q: np.ndarray,
    config: TrainingConfig,
    device: torch.device,
    stop_q: np.ndarray | None = None,
    return_losses: Literal[False] = False,
) -> float: ...


@overload
def _warm_up_skip(
    router: HAPSRouter,
    member: int,
    provider: FeatureProvider,
    table: OutcomeTable,
    fit_q: np.ndarray,
    config: TrainingConfig,
    device: torch.device,
    stop_q: np.ndarray | None,
    return_losses: Literal[True],
) -> dict[Any, float]: ...


def _warm_up_skip(
    router: HAPSRouter,
    member: int,
    provider: FeatureProvider,
    table: OutcomeTable,
    fit_q: np.ndarray,
    config: TrainingConfig,
    device: torch.device,
    stop_q: np.ndarray | None = None,
    return_losses: bool = False,
) -> float | dict[Any, float]:
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
    skip = router.members[member].skip  # the member's direct linear path
    assert isinstance(skip, torch.nn.Linear)
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

    bias, seen = _starting_biases(router, skip, table, len(parts), block, device)

    hierarchical = config.skip_prior == "hierarchical"
    ratio_now = [config.skip_prior_ratio or SKIP_PRIOR_RATIOS[0]]
    prior: list[HierarchicalLinear] = []

    def fit(l2: float, steps: int | None = None, restart: bool = True) -> None:
        if hierarchical:  # the path's weights are global + backend + style + action parts
            if restart or not prior:
                prior[:] = [
                    HierarchicalLinear(router.backend_of, router.style_of, skip.in_features, bias, seen)
                ]
            params = list(prior[0].parameters())
        else:
            if restart:
                with torch.no_grad():
                    skip.weight.zero_()
                    skip.bias.copy_(bias)
            params = list(skip.parameters())
        opt = torch.optim.Adam(params, lr=config.skip_lr)
        for step in range(config.skip_warmup_steps if steps is None else steps):
            x, score, cost, mask = block(step % len(parts))
            out = prior[0](x) if hierarchical else skip(x)
            q, c = out[:, :n_actions], out[:, n_actions:]
            loss = _supervised_loss(q, c, score, cost, mask, table.has_cost, config.cost_loss_weight)
            if hierarchical:
                loss = loss + prior[0].penalty(l2, ratio_now[0])
            else:
                loss = loss + l2 * skip.weight.pow(2).sum()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        if hierarchical:
            prior[0].write_to(skip)

    def fill_unseen() -> None:
        if not seen.all():
            with torch.no_grad():
                interpolate_unseen_actions(router, skip, seen)

    no_stop = stop_q is None or len(stop_q) == 0
    ratios = (
        [None]
        if not hierarchical
        else [config.skip_prior_ratio]
        if config.skip_prior_ratio
        else SKIP_PRIOR_RATIOS
    )
    if return_losses and no_stop:
        return {}
    if ((config.skip_l2 is not None and len(ratios) == 1) or no_stop) and not return_losses:
        l2 = config.skip_l2 if config.skip_l2 is not None else 1e-4
        ratio_now[0] = ratios[0] or ratio_now[0]
        fit(l2)
        fill_unseen()
        return float(l2)
    assert stop_q is not None  # no_stop is False here
    x_stop = router.normalise(provider.features(stop_q, grad=False))

    def skip_forward(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        out = skip(x)
        return out[:, :n_actions], out[:, n_actions:]

    # A regularisation path: the strongest penalty first, from scratch, then each weaker one
    # continuing from the previous solution with a third of the steps (it starts close); with
    # the hierarchical prior, one path per ratio of the deviations' penalty.
    l2s = [config.skip_l2] if config.skip_l2 is not None else sorted(SKIP_L2_CANDIDATES, reverse=True)
    losses: dict[Any, float] = {}
    for ratio in ratios:
        ratio_now[0] = ratio or ratio_now[0]
        for i, l2 in enumerate(l2s):
            fit(l2, None if i == 0 else max(1, config.skip_warmup_steps // 3), restart=i == 0)
            loss = _heldout_loss(skip_forward, x_stop, table, stop_q, config.cost_loss_weight, device)
            losses[l2 if ratio is None else (l2, ratio)] = loss
    if return_losses:
        return losses
    chosen = min(losses, key=losses.__getitem__)
    logger.debug("member %d: linear path l2 %s (held-out losses %s)", member, chosen, losses)
    if isinstance(chosen, tuple):
        chosen, ratio_now[0] = chosen
    fit(chosen)
    fill_unseen()
    return float(chosen)


def _starting_biases(
    router: HAPSRouter,
    skip: torch.nn.Linear,
    table: OutcomeTable,
    n_blocks: int,
    block: Callable[[int], tuple[torch.Tensor, ...]],
    device: torch.device,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The linear path's biases at each action's observed mean quality (as a logit) and mean
    log-cost over the fit split, a block at a time, and which actions were observed at all."""
    n_actions = len(router.space)
    sums = torch.zeros(3, n_actions, device=device)
    for k in range(n_blocks):
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
        bias = skip.bias.detach().clone()
        bias[:n_actions] = bias_q
        if table.has_cost:
            bias[n_actions:] = bias_c
    return bias, seen


def init_biases(
    router: HAPSRouter,
    member: int,
    table: OutcomeTable,
    fit_q: np.ndarray,
    device: torch.device,
) -> None:
    """Starts a member trained jointly (no warm-up) from the observed means: its linear path's
    weights at zero and its biases at each action's mean quality and log-cost. From a zero
    bias the log-cost head would start at $1 a call and spend its epochs walking down to it."""
    skip = router.members[member].skip
    assert isinstance(skip, torch.nn.Linear)
    parts = _chunks(len(fit_q), len(router.space))

    def block(k: int) -> tuple[torch.Tensor, ...]:
        idx = fit_q[parts[k]]
        return (torch.empty(0), *_batch_tensors(table, idx, device))

    bias, _ = _starting_biases(router, skip, table, len(parts), block, device)
    with torch.no_grad():
        skip.weight.zero_()
        skip.bias.copy_(bias)


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
