"""Adding backends to a trained router: a wider catalog, the old weights kept, a prior for the new.

`extend_router` maps a trained router onto a routing space that holds its actions and more (the
same backends with more settings, or new backends). Every weight with an action or backend axis
keeps its old rows; a new action's rows start at the mean of the old actions' rows (a new
backend's at the mean of the old backends'), then its quality-logit bias is shifted so that its
mean predicted quality over the router's reference queries is the `prior` (default: the catalog's
mean, a neutral prior) and its cost bias so that its predicted cost is the old actions' mean
token use at the new backend's prices.

`add_backend` (`HAPSRouter.add_backend`) builds the space from a name, prices and a grid and
holds the new backend to exploration: it is listed in ``config.extra["explore_only"]`` (saved in
the checkpoint) with the number of observations it needs, so `route` never chooses it greedily
and serves it only through an `Exploration` draw (with its propensity). `warm_start` releases it
once the training log holds that many rows of it (`release_explore_only`).
"""

import copy
import dataclasses
import itertools
import logging
import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

import numpy as np
import torch

from haps_core.catalog import Action, Backend, ParamValue, RoutingSpace
from haps_core.features import style_text
from haps_core.model.config import RouterConfig
from haps_core.model.input_cost import InputTokenModel

if TYPE_CHECKING:
    from haps_core.model.router import HAPSRouter

logger = logging.getLogger(__name__)

EXPLORE_ONLY = "explore_only"
DEFAULT_MIN_OBSERVATIONS = 50
_ACTION_ROWS = ("skip.weight", "skip.bias", "flat_head.weight", "flat_head.bias")
_BACKEND_ROWS = ("high_head.weight", "high_head.bias")


def explore_only_mask(router: "HAPSRouter") -> np.ndarray | None:
    """[A] mask of the actions held to exploration (None when none is)."""
    held = router.config.extra.get(EXPLORE_ONLY) or {}
    if not held:
        return None
    return np.array([a.backend in held for a in router.space.actions], dtype=bool)


def release_explore_only(router: "HAPSRouter", counts: Mapping[str, int]) -> list[str]:
    """Releases the held backends with at least their needed observations in `counts`
    (backend -> rows); returns the released names."""
    held = dict(router.config.extra.get(EXPLORE_ONLY) or {})
    released = [b for b, need in held.items() if counts.get(b, 0) >= need]
    for b in released:
        del held[b]
        logger.info("backend %r has enough evidence: no longer held to exploration", b)
    router.config.extra[EXPLORE_ONLY] = held
    return released


def _rows(old: torch.Tensor, new: torch.Tensor, mapping: Sequence[int], blocks: int) -> torch.Tensor:
    """`new` with old rows placed at `mapping` (per block of the first axis), new rows the old mean."""
    n_old, n_new = old.shape[0] // blocks, new.shape[0] // blocks
    out = new.clone()
    for k in range(blocks):
        part = old[k * n_old : (k + 1) * n_old]
        fresh = part.mean(0)
        out[k * n_new : (k + 1) * n_new] = fresh
        out[k * n_new + torch.as_tensor(list(mapping), dtype=torch.long)] = part
    return out


def _member_state(
    old_net: torch.nn.Module, new_net: torch.nn.Module, amap: list[int], bmap: list[int]
) -> None:
    old_state, new_state = old_net.state_dict(), new_net.state_dict()
    for name, tensor in old_state.items():
        if name in _ACTION_ROWS:
            new_state[name] = _rows(tensor, new_state[name], amap, 2)
        elif name in _BACKEND_ROWS:
            new_state[name] = _rows(tensor, new_state[name], bmap, 2)
        elif name == "backend_embedding.weight":
            new_state[name] = _rows(tensor, new_state[name], bmap, 1)
        elif name.startswith("low_heads."):  # no_pgn: one head per backend, renumbered
            _, b, rest = name.split(".", 2)
            new_state[f"low_heads.{bmap[int(b)]}.{rest}"] = tensor
        elif new_state[name].shape == tensor.shape:
            new_state[name] = tensor
        else:
            msg = (
                f"cannot carry weight {name!r} of shape {list(tensor.shape)} to {list(new_state[name].shape)}"
            )
            raise ValueError(msg)
    new_net.load_state_dict(new_state)


def _style_embeddings(router: "HAPSRouter", space: RoutingSpace, styles: list[str]) -> torch.Tensor:
    old = dict(zip(router.styles, router.style_embeddings, strict=True))
    missing = [s for s in styles if s not in old]
    if missing and router.encoder is None:
        msg = (
            f"the new actions use prompt styles {missing} the router has no embedding of: attach its encoder"
        )
        raise ValueError(msg)
    if missing:
        assert router.encoder is not None
        fresh = router.encoder.encode([style_text(space, s) for s in missing]).float()
        old.update(zip(missing, fresh, strict=True))
    return torch.stack([old[s] for s in styles])


def _input_model(
    router: "HAPSRouter", space: RoutingSpace, amap: list[int], bmap: list[int]
) -> InputTokenModel:
    old, new = router.input_model, InputTokenModel.empty(space)
    new.intercept[amap], new.coef[bmap], new.fitted[bmap] = old.intercept, old.coef, old.fitted
    if old.fitted.any():  # a new priced backend: the old backends' mean token model
        fresh_b = sorted(set(range(len(space.backends))) - set(bmap))
        for b in fresh_b:
            if space.backends[b].input_price > 0:
                new.coef[b], new.fitted[b] = old.coef[old.fitted].mean(0), True
        for j in sorted(set(range(len(space))) - set(amap)):
            new.intercept[j] = float(np.median(old.intercept))
    return new


def _skip_biases(router: "HAPSRouter") -> list[torch.Tensor]:
    """Each member's linear-path bias ([2A]: quality logits, then log-costs)."""
    return [net.get_parameter("skip.bias") for net in router.members]


@torch.no_grad()
def _calibrate_new(
    router: "HAPSRouter", new: list[int], prior: Mapping[str, float], price_of: np.ndarray
) -> None:
    """Shifts the new actions' biases: mean predicted quality = the prior, cost = the old actions'
    mean (head-side) tokens at the new prices."""
    ref = router.reference_features
    if not len(ref):
        ref = torch.zeros(1, router.config.input_dim)
    old = np.setdiff1d(np.arange(len(router.space)), new)
    n_a = len(router.space)
    for _ in range(8):
        q, c = router(ref)
        quality = torch.sigmoid(q).mean(0).double().numpy()
        for j in new:
            target = min(max(prior[router.space.actions[j].backend], 1e-3), 1 - 1e-3)
            shift = math.log(target / (1 - target)) - math.log(quality[j] / (1 - quality[j]))
            for bias in _skip_biases(router):
                bias[j] += shift
    q, c = router(ref)
    head_cost = torch.exp(c).mean(0).double().numpy()
    priced = old[price_of[old] > 0]
    if router.has_cost and not len(priced):
        logger.warning("the catalog has no prices: the new actions' predicted cost is the catalog's mean")
    if router.has_cost and len(priced):
        tokens = float(np.mean(head_cost[priced] / price_of[priced]))
        for j in new:
            if price_of[j] > 0:
                shift = math.log(tokens * price_of[j]) - math.log(head_cost[j])
                for bias in _skip_biases(router):
                    bias[n_a + j] += shift


def extend_router(
    router: "HAPSRouter", space: RoutingSpace, prior: float | Mapping[str, float] | None = None
) -> "HAPSRouter":
    """A copy of `router` over `space` (a superset of its actions); see the module docstring.

    Args:
        router: a trained router.
        space: the wider catalog: every action of the router's, and the new ones.
        prior: the new actions' mean quality (one number, or per new backend); None: the
            catalog's mean (the mean predicted quality of the old actions on reference queries).
    """
    missing = [a.key for a in router.space.actions if a not in set(space.actions)]
    if missing:
        msg = f"`space` must hold every action of the router; it lacks {missing[:5]}"
        raise ValueError(msg)
    amap = [space.index(a) for a in router.space.actions]
    bmap = [space.backend_names.index(n) for n in router.space.backend_names]
    new_actions = sorted(set(range(len(space))) - set(amap))
    styles = sorted({a.prompt_style for a in space.actions})
    config = RouterConfig.from_dict(copy.deepcopy(router.config.to_dict()))
    out = type(router)(space, config, _style_embeddings(router, space, styles))
    for old_net, new_net in zip(router.members, out.members, strict=True):
        _member_state(old_net, new_net, amap, bmap)
    for name in ("feature_mean", "feature_std", "reference_features", "reference_counts", "ood_bank"):
        setattr(out, name, getattr(router, name).clone())
    out.set_input_model(_input_model(router, space, amap, bmap))
    for name in ("encoder", "encoder_info", "has_cost", "default_cost_weight", "ood_action"):
        setattr(out, name, getattr(router, name))
    out.training_summary = copy.deepcopy(router.training_summary)
    out.evaluation = copy.deepcopy(router.evaluation)
    with torch.no_grad():
        q_old, _ = router(router.reference_features) if len(router.reference_features) else (None, None)
    neutral = float(torch.sigmoid(q_old).mean()) if q_old is not None else 0.5
    new_backends = {space.actions[j].backend for j in new_actions}
    if prior is None or isinstance(prior, int | float):
        value = neutral if prior is None else float(prior)
        if not 0.0 < value < 1.0:
            msg = f"`prior` must be a mean quality in (0, 1), got {prior!r}"
            raise ValueError(msg)
        prior = dict.fromkeys(new_backends, value)
    elif unknown := sorted(new_backends - set(prior)):
        msg = f"`prior` gives no mean quality for the new backend(s) {unknown}"
        raise ValueError(msg)
    out.eval()
    if new_actions:
        _calibrate_new(out, new_actions, prior, _head_prices(out))
    _carry_statistics(router, out, amap, new_actions, prior)
    return out


def _head_prices(router: "HAPSRouter") -> np.ndarray:
    """[A] USD per token of the side of the cost the head predicts (output, or the mean price)."""
    fitted = router.input_model.fitted
    out = []
    for b in router.space.backend_index():
        backend = router.space.backends[b]
        side = backend.output_price if fitted[b] else (backend.input_price + backend.output_price) / 2
        out.append(side / 1e6)
    return np.asarray(out)


def _carry_statistics(
    router: "HAPSRouter", out: "HAPSRouter", amap: list[int], new: list[int], prior: Mapping[str, float]
) -> None:
    """OOD statistics over the wider catalog: the new actions never observed (rare)."""
    n_a = len(out.space)
    if len(router.ood_observed):
        observed = torch.zeros(len(router.ood_observed), n_a, dtype=router.ood_observed.dtype)
        observed[:, amap] = router.ood_observed
        out.ood_observed = observed
        scores = torch.zeros(len(router.sample_scores), n_a)
        scores[:, amap] = router.sample_scores
        out.sample_scores = scores
    if len(router.action_stats):
        stats = torch.zeros(3, n_a)
        stats[:, amap] = router.action_stats
        for j in new:
            stats[0, j] = prior[out.space.actions[j].backend]
            stats[1, j] = float(stats[1, amap].mean())
        out.action_stats = stats
    if router.ood_stats is not None:
        rare = sorted([amap[a] for a in router.ood_stats.rare_actions] + new)
        out.ood_stats = dataclasses.replace(router.ood_stats, rare_actions=rare)


def add_backend(
    router: "HAPSRouter",
    name: str,
    prices: tuple[float, float],
    grid: Mapping[str, Sequence[ParamValue]] | None = None,
    prior: float | None = None,
    min_observations: int = DEFAULT_MIN_OBSERVATIONS,
) -> "HAPSRouter":
    """A copy of `router` with backend `name` added (see the module docstring).

    Args:
        name: the new backend's name (not in the catalog yet).
        prices: (input, output) USD per 1M tokens.
        grid: parameter name -> values (every combination becomes an action); default: no
            parameters (one action).
        prior: its mean quality in (0, 1); None: the catalog's mean (neutral).
        min_observations: logged rows of it that `warm_start` needs before `route` may choose
            it greedily; until then only an exploration draw serves it.
    """
    if name in router.space.backend_names:
        msg = f"`name` {name!r} is already a backend of the router (catalog: {router.space.backend_names})"
        raise ValueError(msg)
    if len(prices) != 2:
        msg = f"`prices` must be (input, output) USD per 1M tokens, got {prices!r}"
        raise ValueError(msg)
    if isinstance(min_observations, bool) or not isinstance(min_observations, int) or min_observations < 0:
        msg = f"`min_observations` must be an integer >= 0, got {min_observations!r}"
        raise ValueError(msg)
    grid = dict(grid or {})
    backend = Backend(name, float(prices[0]), float(prices[1]), tuple((k, tuple(v)) for k, v in grid.items()))
    params = [[(k, v) for v in vs] for k, vs in backend.grid]
    actions = [Action(name, tuple(combo)) for combo in itertools.product(*params)]
    space = RoutingSpace(
        (*router.space.backends, backend), (*router.space.actions, *actions), router.space.prompt_styles
    )
    out = extend_router(router, space, prior)
    if min_observations:
        held = dict(out.config.extra.get(EXPLORE_ONLY) or {})
        held[name] = min_observations
        out.config.extra[EXPLORE_ONLY] = held
    logger.info("added backend %r (%d action(s)); held to exploration until %d observations",
                name, len(actions), min_observations)  # fmt: skip
    return out
