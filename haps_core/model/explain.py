"""Explanations of routing decisions: why this action, how sure, and on what evidence.

An `Explanation` holds, for one query at one cost weight, the top actions by predicted utility
(quality, cost, utility, ensemble spread, coverage), the margin of the choice over the runner-up,
the OOD score, and the nearest stored training queries with the observed outcomes of the chosen
and runner-up actions. `HAPSRouter.explain` and ``route(..., explain=True)`` build them.
"""

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass(frozen=True)
class ActionView:
    """One action's predictions for the query."""

    action: str
    predicted_quality: float
    predicted_cost: float
    utility: float
    uncertainty: float
    coverage: float | None


@dataclass(frozen=True)
class Neighbour:
    """A stored training query near this one, and what the chosen and runner-up actions scored
    on it (None where that action was not observed)."""

    text: str
    similarity: float
    chosen_score: float | None
    runner_up_score: float | None


@dataclass(frozen=True)
class Explanation:
    """Why a router chose an action for a query (see the module docstring).

    Attributes:
        query: the query text (a snippet).
        cost_weight: the lambda of the utility ``quality - lambda * cost``.
        chosen, runner_up: the chosen action and the best other allowed action (keys).
        actions: every allowed action by utility, best first (`top` keeps `k`); the chosen one
            is first unless a policy overrode the utility (out of distribution, a cap).
        k: actions shown by ``str`` and `to_dict`.
        margin: utility of the choice minus that of the runner-up.
        ood_score, ood_threshold, ood: the OOD score, its threshold, and whether it is above.
        neighbours: nearest stored training queries (empty without training statistics).
        risk: the lower-confidence-bound knob the decision used (0: neutral).
    """

    query: str
    cost_weight: float
    chosen: str
    runner_up: str | None
    actions: tuple[ActionView, ...]
    margin: float | None
    ood_score: float | None
    ood_threshold: float | None
    ood: bool | None
    neighbours: tuple[Neighbour, ...]
    risk: float = 0.0
    k: int = 5

    def top(self, k: int) -> "Explanation":
        """The same explanation showing the top `k` actions."""
        if isinstance(k, bool) or not isinstance(k, int) or k < 1:
            msg = f"`k` must be an integer >= 1, got {k!r}"
            raise ValueError(msg)
        return dataclasses.replace(self, k=k)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (the top `k` actions only)."""
        d = dataclasses.asdict(self)
        d["actions"] = d["actions"][: self.k]
        d["neighbours"] = list(d["neighbours"])
        return d

    def __str__(self) -> str:
        lines = [f"query: {self.query!r}", f"cost weight {self.cost_weight:g}: chose {self.chosen}"]
        if self.runner_up is not None and self.margin is not None:
            lines.append(f"  runner-up {self.runner_up}, utility margin {self.margin:.4f}")
        if self.risk:
            lines.append(f"  decided on quality - {self.risk:g} x uncertainty")
        if self.ood_score is not None:
            verdict = "OUT OF DISTRIBUTION" if self.ood else "in distribution"
            lines.append(f"  OOD score {self.ood_score:.3f} (threshold {self.ood_threshold:.3f}): {verdict}")
        lines.append(f"  top {min(self.k, len(self.actions))} actions:")
        lines.append(f"    {'action':<58} {'quality':>7} {'+-':>6} {'cost $':>9} {'utility':>8} {'cover':>5}")
        for a in self.actions[: self.k]:
            cover = "" if a.coverage is None else f"{a.coverage:.2f}"
            lines.append(
                f"    {a.action[:58]:<58} {a.predicted_quality:>7.3f} {a.uncertainty:>6.3f} "
                f"{a.predicted_cost:>9.3g} {a.utility:>8.4f} {cover:>5}"
            )
        if self.neighbours:
            lines.append("  nearest training queries (similarity; observed score of chosen / runner-up):")
        for n in self.neighbours:
            chosen = "-" if n.chosen_score is None else f"{n.chosen_score:.2f}"
            runner = "-" if n.runner_up_score is None else f"{n.runner_up_score:.2f}"
            lines.append(f"    {n.similarity:.3f}  {chosen} / {runner}  {n.text[:80]!r}")
        return "\n".join(lines)


def _score(observed: np.ndarray, scores: np.ndarray, row: int, action: int | None) -> float | None:
    if action is None or row >= len(scores) or not observed[row, action]:
        return None
    return float(scores[row, action])


def build_explanation(
    query: str,
    action_keys: list[str],
    chosen: int,
    cost_weight: float,
    quality: np.ndarray,
    cost: np.ndarray,
    spread: np.ndarray,
    allowed: np.ndarray,
    *,
    coverage: np.ndarray | None = None,
    ood: tuple[float, float, bool] | None = None,
    neighbours: Sequence[tuple[str, float, int]] = (),
    observed: np.ndarray | None = None,
    sample_scores: np.ndarray | None = None,
    risk: float = 0.0,
) -> Explanation:
    """One query's explanation from its rows of predictions ([A] each) and evidence.

    `neighbours` are (snippet, similarity, stored-sample row) of the nearest stored queries;
    `observed` ([N, A]) and `sample_scores` ([S, A]) give their observed outcomes.
    """
    utility = quality - cost_weight * cost
    order = [int(j) for j in np.argsort(-np.where(allowed, utility, -np.inf), kind="stable") if allowed[j]]
    others = [j for j in order if j != chosen]
    runner = others[0] if others else None
    views = tuple(
        ActionView(
            action_keys[j],
            float(quality[j]),
            float(cost[j]),
            float(utility[j]),
            float(spread[j]),
            None if coverage is None else float(coverage[j]),
        )
        for j in order
    )
    near = tuple(
        Neighbour(
            text,
            float(sim),
            None
            if observed is None or sample_scores is None
            else _score(observed, sample_scores, row, chosen),
            None
            if observed is None or sample_scores is None
            else _score(observed, sample_scores, row, runner),
        )
        for text, sim, row in neighbours
    )
    margin = None if runner is None else float(utility[chosen] - utility[runner])
    return Explanation(
        query=" ".join(query.split())[:200],
        cost_weight=float(cost_weight),
        chosen=action_keys[chosen],
        runner_up=None if runner is None else action_keys[runner],
        actions=views,
        margin=margin,
        ood_score=None if ood is None else float(ood[0]),
        ood_threshold=None if ood is None else float(ood[1]),
        ood=None if ood is None else bool(ood[2]),
        neighbours=near,
        risk=float(risk),
    )
