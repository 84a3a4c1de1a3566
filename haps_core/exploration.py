"""Safe exploration: serve a non-greedy action now and then, and record its probability.

A router trained on its own served calls only ever sees the actions it already prefers; to
learn about the others (and about a backend added with `HAPSRouter.add_backend`) it must
sometimes serve them. An `Exploration` policy replaces the greedy choice of
`haps_core.decision.route_from_predictions` by a draw:

- ``"epsilon"``: with probability `epsilon` a uniform draw among the candidates (the greedy
  action included), else the greedy action;
- ``"softmax"``: a draw from softmax(U / temperature) over the candidates' utilities
  ``U = quality - cost_weight * cost`` (the greedy action is the likeliest).

The candidates are the allowed actions (pool, hard cap) whose predicted cost is at most
`max_cost_premium` USD above the greedy action's (None: no bound), plus the greedy action.
Every decision carries the probability of the action it got (`RoutingDecision.propensity`):
what off-policy training (`TrainingConfig.propensity_clip`) and evaluation
(`haps_core.evaluation.offpolicy`) need. Draws come from one seeded numpy generator, so a
policy built with the same seed gives the same decisions for the same calls.
"""

import dataclasses
import logging
import math
import threading
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from haps_core.decision import Alternative, RoutingDecision

logger = logging.getLogger(__name__)

__all__ = ["KINDS", "Exploration", "check_exploration"]

KINDS = ("epsilon", "softmax")


def _check_number(name: str, value: Any, low: float, high: float, open_low: bool = False) -> float:
    bad = isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value)
    if bad or value > high or value < low or (open_low and value == low):
        side = "(" if open_low else "["
        msg = f"`{name}` must be a number in {side}{low:g}, {high:g}], got {value!r}"
        raise ValueError(msg)
    return float(value)


@dataclass
class Exploration:
    """An exploration policy for `HAPSRouter.route(..., exploration=...)`.

    Args:
        kind: "epsilon" (epsilon-greedy) or "softmax" (over predicted utilities).
        epsilon: the share of calls drawn uniformly among the candidates ("epsilon").
        temperature: the softmax temperature in quality points ("softmax"); smaller is greedier.
        max_cost_premium: the most (USD per call) a candidate's predicted cost may exceed the
            greedy action's; None: no bound (the pool and `max_cost_per_query` still apply).
        seed: seeds the generator (None: fresh entropy; decisions are then not reproducible).
        generator: a numpy generator to draw from instead (shared state: reproducible streams).
    """

    kind: str = "epsilon"
    epsilon: float = 0.1
    temperature: float = 0.05
    max_cost_premium: float | None = None
    seed: int | None = None
    generator: np.random.Generator | None = field(default=None, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            msg = f"`kind` must be one of {KINDS}, got {self.kind!r}"
            raise ValueError(msg)
        self.epsilon = _check_number("epsilon", self.epsilon, 0.0, 1.0)
        self.temperature = _check_number("temperature", self.temperature, 0.0, math.inf, open_low=True)
        if self.max_cost_premium is not None:
            self.max_cost_premium = _check_number("max_cost_premium", self.max_cost_premium, 0.0, math.inf)
        if self.generator is None:
            self.generator = np.random.default_rng(self.seed)
        elif not isinstance(self.generator, np.random.Generator):
            msg = f"`generator` must be a numpy.random.Generator, got {type(self.generator).__name__}"
            raise TypeError(msg)

    def probabilities(
        self, quality: np.ndarray, cost: np.ndarray, cost_weight: float, greedy: int, candidates: np.ndarray
    ) -> np.ndarray:
        """[A] probability of serving each action of one query (0 outside the candidates)."""
        cand = candidates.copy()
        if self.max_cost_premium is not None:
            with np.errstate(invalid="ignore"):
                cand &= cost <= cost[greedy] + self.max_cost_premium
        cand[greedy] = True
        p = np.zeros(len(cand))
        if self.kind == "epsilon":
            p[cand] = self.epsilon / cand.sum()
            p[greedy] += 1.0 - self.epsilon
            return p
        u = np.where(cand, quality - cost_weight * cost, -np.inf)
        z = np.where(cand, np.exp((u - u[greedy]) / self.temperature), 0.0)
        return z / z.sum()

    def draw(self, p: np.ndarray) -> int:
        """One action index drawn with probabilities `p` (thread-safe on the shared generator)."""
        assert self.generator is not None
        with self._lock:
            u = float(self.generator.random())
        cdf = np.cumsum(p)
        return int(min(np.searchsorted(cdf, u * cdf[-1], side="right"), len(p) - 1))

    def apply(
        self,
        space: Any,
        decisions: list[RoutingDecision],
        quality: np.ndarray,
        cost: np.ndarray,
        candidates: np.ndarray,
    ) -> list[RoutingDecision]:
        """The greedy `decisions` of a batch, each replaced by a draw (see the module docstring).

        `candidates` ([n, A] booleans) are the actions a query may be served: the pool and cap
        of the call, with actions held to exploration (`HAPSRouter.add_backend`) included. An
        explored decision keeps the greedy action as its first runner-up.
        """
        out = []
        for i, d in enumerate(decisions):
            p = self.probabilities(quality[i], cost[i], d.cost_weight, d.action_index, candidates[i])
            a = self.draw(p)
            if a == d.action_index:
                out.append(dataclasses.replace(d, propensity=float(p[a])))
                continue
            greedy = Alternative(
                d.backend, d.parameters, d.predicted_quality, d.predicted_cost, d.action_index
            )
            alts = [greedy, *(x for x in d.alternatives if x.action_index != a)]
            action = space.actions[a]
            out.append(
                dataclasses.replace(
                    d,
                    backend=action.backend,
                    parameters=action.parameters,
                    predicted_quality=float(quality[i, a]),
                    predicted_cost=float(cost[i, a]),
                    action_index=a,
                    alternatives=tuple(alts[: len(d.alternatives)]),
                    propensity=float(p[a]),
                    explored=True,
                )
            )
        return out


def check_exploration(exploration: Any) -> Exploration | None:
    """`exploration` as a policy: None (greedy), an `Exploration`, or a dict of its arguments."""
    if exploration is None or isinstance(exploration, Exploration):
        return exploration
    if isinstance(exploration, dict):
        return Exploration(**exploration)
    msg = (
        "`exploration` must be None (greedy), an Exploration or a dict of its arguments "
        f"(kind, epsilon, temperature, max_cost_premium, seed), got {type(exploration).__name__}"
    )
    raise TypeError(msg)
