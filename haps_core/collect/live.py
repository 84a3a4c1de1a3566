"""The live world: each (question, action) is one call of a real backend (`BackendSpec.call`).

It prices cells before the call (an estimate for plans, an upper bound for budget reservations)
and after it (from the usage the backend reported); scoring is left to the collection loop.
"""

import logging
import time
from collections.abc import Sequence

import numpy as np

from haps_core.catalog import RoutingSpace
from haps_core.collect.backends import (
    CALL_OVERHEAD_TOKENS,
    BackendSpec,
    estimate_tokens,
    max_tokens_of,
    routing_space,
)
from haps_core.collect.questions import Question
from haps_core.collect.replay import Outcome

logger = logging.getLogger(__name__)


class LiveWorld:
    """Calls `specs` on `questions`; every action of the catalog is open for every question."""

    def __init__(self, specs: Sequence[BackendSpec], questions: Sequence[Question]) -> None:
        self.specs = {s.name: s for s in specs}
        self.space: RoutingSpace = routing_space(specs)
        self.questions = list(questions)
        self._systems = [self.specs[a.backend].system_text(a) for a in self.space.actions]

    def available(self) -> list[list[int]]:
        return [list(range(len(self.space))) for _ in self.questions]

    def backend_of(self, action: int) -> str:
        return self.space.actions[action].backend

    def spec(self, action: int) -> BackendSpec:
        return self.specs[self.backend_of(action)]

    def _input(self, question: int, action: int) -> str:
        return (self._systems[action] or "") + self.questions[question].query

    def estimate(self, question: int, action: int) -> float:
        spec = self.spec(action)
        tokens = estimate_tokens(self._input(question, action)) + CALL_OVERHEAD_TOKENS
        return spec.estimate_usd(tokens, spec.output_tokens_estimate)

    def reservation(self, question: int, action: int) -> float:
        spec = self.spec(action)
        tokens = max_tokens_of(self._input(question, action)) + CALL_OVERHEAD_TOKENS
        return spec.estimate_usd(tokens, spec.max_output_tokens)

    def action_costs(self) -> np.ndarray:
        n = len(self.questions)
        return np.asarray([np.mean([self.estimate(q, a) for q in range(n)]) for a in range(len(self.space))])

    def timeout(self, backend: str) -> float | None:
        return self.specs[backend].timeout_s

    def execute(self, question: int, action: int) -> Outcome:
        spec = self.spec(action)
        act = self.space.actions[action]
        params = {k: v for k, v in act.params if k != "prompt_style"}
        start = time.perf_counter()
        result = spec.call(self._systems[action], self.questions[question].query, params)
        latency = result.latency_s or (time.perf_counter() - start)
        cost = spec.estimate_usd(result.input_tokens, result.output_tokens)
        return Outcome(
            str(result.text), None, float(result.input_tokens), float(result.output_tokens), cost, latency
        )
