"""Routing with the router's knowledge of its limits: risk, out-of-distribution policy, evidence.

`HAPSRouter.route` comes here when the router stores training statistics (`haps_core.model.ood`),
when ``risk`` is set, or when an explanation is asked for. Decisions are made through
`haps_core.decision.route_from_predictions` as always; this module adds the ensemble spread (the
lower confidence bound ``quality - risk * spread``), the OOD policy (flagged queries get the
OOD action, the model's own choice becomes the first runner-up), and each decision's
confidence, coverage, margin, OOD score and optional `Explanation`.
"""

import dataclasses
import logging
import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from haps_core.decision import Alternative, RoutingDecision, cap_mask, route_from_predictions
from haps_core.model.coverage import check_coverage_prior, shrink_to_coverage
from haps_core.model.explain import build_explanation
from haps_core.model.fused import ensemble_mean, spread_of
from haps_core.model.input_cost import text_counts
from haps_core.model.ood import Evidence, evidence, neighbours, unit_embeddings

if TYPE_CHECKING:
    from haps_core.model.router import HAPSRouter

logger = logging.getLogger(__name__)
NEIGHBOURS_SHOWN = 3


def check_risk(risk: float) -> float:
    """Validates the `risk` knob: a finite number >= 0 (0: decide on the mean prediction)."""
    if isinstance(risk, bool) or not isinstance(risk, int | float) or not math.isfinite(risk) or risk < 0:
        msg = f"`risk` must be a finite number >= 0 (0: neutral), got {risk!r}"
        raise ValueError(msg)
    return float(risk)


@torch.inference_mode()
def member_spread(router: "HAPSRouter", features: torch.Tensor | np.ndarray) -> np.ndarray:
    """[n, A] standard deviation of the ensemble members' predicted quality (0 for one member)."""
    x = torch.as_tensor(features, dtype=torch.float32, device=router.feature_mean.device)
    q, _ = router._inference_heads().member_outputs(x)
    return spread_of(torch.sigmoid(q).float()).cpu().numpy()


def member_predictions(
    router: "HAPSRouter", features: torch.Tensor | np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Each member's predicted quality [M, n, A] and the ensemble's [n, A] (its mean)."""
    x = torch.as_tensor(features, dtype=torch.float32, device=router.feature_mean.device)
    with torch.inference_mode():
        q, c = router._inference_heads().member_outputs(x)
        mean, _ = ensemble_mean(q, c)
    return torch.sigmoid(q).float().cpu().numpy(), torch.sigmoid(mean).float().cpu().numpy()


def ood_actions(
    router: "HAPSRouter",
    ood_action: str | int | None,
    cost_weight: float,
    pool: np.ndarray | None = None,
) -> np.ndarray:
    """[A] mask of the actions a flagged query may get: `ood_action` (a backend name, an action
    key or index), else the router's `ood_action`, else the best single action of the training
    log at this cost weight (mean observed score - cost weight x mean cost; rare actions excluded)
    among the `pool` of allowed actions."""
    choice = ood_action if ood_action is not None else router.ood_action
    space, n_a = router.space, len(router.space)
    if choice is None:
        mean_score, mean_cost, share = router.action_stats.cpu().numpy().astype(np.float64)
        stats = router.ood_stats
        allowed = np.ones(n_a, dtype=bool) if pool is None else pool
        eligible = allowed & (share >= (stats.min_share if stats is not None else 0.0))
        utility = np.where(
            eligible if eligible.any() else allowed, mean_score - cost_weight * mean_cost, -np.inf
        )
        out = np.zeros(n_a, dtype=bool)
        out[int(np.argmax(utility))] = True
        return out
    if isinstance(choice, int) and not isinstance(choice, bool) and 0 <= choice < n_a:
        return np.arange(n_a) == choice
    if isinstance(choice, str):
        by_backend = np.array([a.backend == choice for a in space.actions])
        if by_backend.any():
            return by_backend
        by_key = np.array([a.key == choice for a in space.actions])
        if by_key.any():
            return by_key
    msg = (
        f"`ood_action` must be a backend of the router's catalog {sorted(space.backend_names)}, an "
        f"action key (e.g. {space.actions[0].key!r}) or an action index in [0, {n_a}), got {choice!r}"
    )
    raise ValueError(msg)


def covered_quality(
    router: "HAPSRouter", quality: np.ndarray, ev: Evidence | None, prior: float | None = None
) -> np.ndarray:
    """`quality` [n, A] with coverage shrinkage applied as `route()` applies it
    (`haps_core.model.coverage`), from the queries' `evidence`; unchanged without evidence or
    with a zero `prior` (None: the router's `coverage_prior`)."""
    prior = check_coverage_prior(router.coverage_prior if prior is None else prior)
    if ev is None or not prior:
        return quality
    k, backend_of = ev.index.shape[1], _backend_of(router)
    return shrink_to_coverage(
        quality, ev.coverage, ev.backend_support, ev.backend_common, backend_of, k, prior
    )


def _backend_of(router: "HAPSRouter") -> np.ndarray:
    """[A] each action's backend index, as numpy (converted once per router)."""
    got = router.__dict__.get("_backend_of_np")
    if got is None or len(got) != len(router.backend_of):
        got = router.backend_of.cpu().numpy()
        router.__dict__["_backend_of_np"] = got
    return got


def with_fields(decision: RoutingDecision, **changes: Any) -> RoutingDecision:
    """``dataclasses.replace`` for the request path: a copy of `decision` with `changes` set.

    ``replace`` re-runs the generated ``__init__`` (one frozen ``__setattr__`` per field: some
    20 us a decision); the copy here sets the instance dictionary directly. Only known field
    names are accepted, as ``replace`` would check.
    """
    unknown = set(changes) - _DECISION_FIELDS
    if unknown:
        msg = f"RoutingDecision has no field(s) {sorted(unknown)}; fields: {sorted(_DECISION_FIELDS)}"
        raise TypeError(msg)
    new = object.__new__(RoutingDecision)
    new.__dict__.update(decision.__dict__, **changes)
    return new


_DECISION_FIELDS = frozenset(f.name for f in dataclasses.fields(RoutingDecision))


def _apply_ood(
    router: "HAPSRouter",
    decisions: list[RoutingDecision],
    quality: np.ndarray,
    cost: np.ndarray,
    flagged: np.ndarray,
    pool: np.ndarray | None,
    ood_action: str | int | None,
    kw: dict[str, Any],
) -> list[RoutingDecision]:
    rows = np.flatnonzero(flagged)
    lam = decisions[0].cost_weight
    target = ood_actions(router, ood_action, lam, pool)
    if pool is not None:
        target = target & pool
        if not target.any():
            msg = f"`ood_action`={ood_action!r} has no action among the allowed `backends`"
            raise ValueError(msg)
    if not router.__dict__.get("_ood_warned"):
        router.__dict__["_ood_warned"] = True
        logger.warning(
            "query out of distribution (OOD score above %.3f): routed to the OOD action instead of "
            "the model's choice (logged once per router; see decision.ood)",
            router.ood_stats.threshold if router.ood_stats is not None else float("nan"),
        )
    n_alt = int(kw["n_alternatives"])
    cap = kw.get("max_cost_per_query")
    default = ood_action is None and router.ood_action is None
    out = list(decisions)
    for r in rows.tolist():
        mine = target
        if default and cap is not None:  # the best single action that fits the hard cap, if any
            fits = cost[r] <= cap if pool is None else (cost[r] <= cap) & pool
            if fits.any():
                mine = ood_actions(router, None, lam, fits)
        (new,) = route_from_predictions(
            router.space, quality[r : r + 1], cost[r : r + 1], cost_weight=lam,
            max_cost_per_query=cap, allowed=mine, n_alternatives=n_alt,
        )  # fmt: skip
        own = decisions[r]
        first = Alternative(
            own.backend, own.parameters, own.predicted_quality, own.predicted_cost, own.action_index
        )
        alts = [
            a
            for a in (first, *own.alternatives)
            if a.action_index != new.action_index and (cap is None or a.predicted_cost <= cap)
        ]
        out[r] = with_fields(new, alternatives=tuple(alts[:n_alt]))
    return out


def guarded_route(
    router: "HAPSRouter",
    texts: Sequence[str],
    input_texts: Sequence[str] | None,
    *,
    cost_weight: float | None,
    pool: np.ndarray | None,
    risk: float,
    ood_action: str | int | None,
    explain: bool,
    coverage_prior: float | None = None,
    **kw: Any,
) -> list[RoutingDecision]:
    """`HAPSRouter.route` with risk, coverage shrinkage, the OOD policy and evidence (see the
    module docstring and `haps_core.model.coverage`).

    `kw` are `route_from_predictions`'s budget arguments (cap, target, reference, default
    cost weight, n_alternatives).
    """
    risk = check_risk(risk)
    prior = check_coverage_prior(router.coverage_prior if coverage_prior is None else coverage_prior)
    if ood_action is not None:  # a bad one is an error even when no query of this call is flagged
        ood_actions(router, ood_action, 0.0)
    features = router.featurize(texts)
    quality, cost, spread = router.predict_with_spread(features, text_counts(input_texts or texts))
    ev = evidence(router, features)
    quality = covered_quality(router, quality, ev, prior)
    used = np.clip(quality - risk * spread, 0.0, 1.0) if risk else quality
    decisions = route_from_predictions(router.space, used, cost, cost_weight=cost_weight, allowed=pool, **kw)
    if ev is not None and ev.flagged.any():
        decisions = _apply_ood(router, decisions, used, cost, ev.flagged, pool, ood_action, kw)
    mask = (
        np.ones(np.shape(quality), dtype=bool) if pool is None else np.broadcast_to(pool, np.shape(quality))
    )
    if kw.get("max_cost_per_query") is not None:
        mask, _ = cap_mask(cost, float(kw["max_cost_per_query"]), mask)
    rows = np.arange(len(decisions))
    chosen = np.array([d.action_index for d in decisions], dtype=np.int64)
    lam = np.array([d.cost_weight for d in decisions], dtype=np.float64)
    # each row's utilities over its allowed actions, and the best of the others (the margin)
    utility = np.where(mask, used - lam[:, None] * cost, -np.inf)
    own = utility[rows, chosen]
    utility[rows, chosen] = -np.inf
    runner_up = utility.max(axis=1, initial=-np.inf)
    margins = own - runner_up
    confidence = np.clip(1.0 - 2.0 * spread[rows, chosen], 0.0, 1.0)
    out = []
    for i, d in enumerate(decisions):
        extra: dict[str, Any] = {
            "confidence": float(confidence[i]),
            "margin": float(margins[i]) if np.isfinite(runner_up[i]) else None,
        }
        if ev is not None:
            a = d.action_index
            extra.update(
                coverage=float(ev.coverage[i, a]), ood=bool(ev.flagged[i]), ood_score=float(ev.score[i])
            )
        if explain:
            extra["explanation"] = _explanation(
                router, texts[i], d, used[i], cost[i], spread[i], mask[i], ev, i, features, risk
            )
        out.append(with_fields(d, **extra))
    return out


def _explanation(
    router: "HAPSRouter",
    text: str,
    d: RoutingDecision,
    quality: np.ndarray,
    cost: np.ndarray,
    spread: np.ndarray,
    mask: np.ndarray,
    ev: Evidence | None,
    i: int,
    features: torch.Tensor,
    risk: float,
) -> Any:
    keys = [a.key for a in router.space.actions]
    near: list[tuple[str, float, int]] = []
    ood = None
    stats = router.ood_stats
    if ev is not None and stats is not None:
        ood = (float(ev.score[i]), stats.threshold, bool(ev.flagged[i]))
        n_sample = len(router.sample_scores)
        if n_sample:
            bank = router.ood_bank[:n_sample].cpu().numpy()
            idx, sim = neighbours(bank, unit_embeddings(router, features[i : i + 1]), NEIGHBOURS_SHOWN)
            near = [(stats.sample_texts[j], float(s), int(j)) for j, s in zip(idx[0], sim[0], strict=True)]
    return build_explanation(
        text,
        keys,
        d.action_index,
        d.cost_weight,
        quality,
        cost,
        spread,
        mask,
        coverage=None if ev is None else ev.coverage[i],
        ood=ood,
        neighbours=near,
        observed=router.ood_observed.cpu().numpy().astype(bool),
        sample_scores=router.sample_scores.cpu().numpy(),
        risk=risk,
    )
