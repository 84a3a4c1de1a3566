"""The collection loop behind `haps_core.collect` and `haps collect`.

Rounds of cells come from the strategy; each round's cells run concurrently (a thread pool, a
semaphore and an optional rate limit per backend), with retries and backoff on transient errors
(tenacity) and a timeout per call. Budget reservations happen before every call. Scored cells are
appended to the log as they finish; a round's outcomes go back to the strategy in plan order.
"""

import logging
import math
import threading
from collections import defaultdict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
from tenacity import Retrying, retry_if_exception, stop_after_attempt, wait_exponential

from haps_core.catalog import RoutingSpace
from haps_core.collect.budget import Budget, Reservation
from haps_core.collect.calls import BudgetSpent, RateLimiter, is_transient, with_timeout
from haps_core.collect.questions import Question
from haps_core.collect.replay import Outcome
from haps_core.collect.report import CollectResult, per_action_summary
from haps_core.collect.scorers import Scorer, check_score
from haps_core.collect.store import CollectStore, DoneCell
from haps_core.collect.strategies import Choice, Strategy
from haps_core.errors import CallTimeoutError

logger = logging.getLogger(__name__)


class World(Protocol):
    """Where outcomes come from: `LiveWorld` (real backends) or `ReplayWorld` (a complete log)."""

    space: RoutingSpace
    questions: list[Question]

    def available(self) -> list[list[int]]: ...
    def backend_of(self, action: int) -> str: ...
    def estimate(self, question: int, action: int) -> float: ...
    def reservation(self, question: int, action: int) -> float: ...
    def action_costs(self) -> np.ndarray: ...
    def execute(self, question: int, action: int) -> Outcome: ...


@dataclass
class RunSettings:
    """How the loop runs (none of these change which cells are collected)."""

    concurrency: int = 8
    retries: int = 3
    backoff_s: float = 1.0
    max_backend_failures: int = 5
    keep_outputs: bool = True
    progress: bool = True
    limits: dict[str, tuple[int, float | None, float | None]] = field(default_factory=dict)


class Collector:
    """One collection: a world, a strategy, a budget and a store, run round by round."""

    def __init__(
        self,
        world: World,
        strategy: Strategy,
        budget: Budget,
        store: CollectStore,
        scorer: Scorer | None,
        batch_size: int,
        settings: RunSettings,
    ) -> None:
        self.world, self.strategy, self.budget, self.store = world, strategy, budget, store
        self.scorer, self.batch_size, self.settings = scorer, batch_size, settings
        self.keys = [a.key for a in world.space.actions]
        self.failures: dict[str, int] = defaultdict(int)
        self.streak: dict[str, int] = defaultdict(int)
        self.down: set[str] = set()
        self.scorer_errors = 0
        self.new_cells = 0
        self.calls = 0
        self.lock = threading.Lock()
        names = world.space.backend_names
        lim = settings.limits
        self.sema = {b: threading.Semaphore(lim.get(b, (settings.concurrency, None, None))[0]) for b in names}
        self.rate = {b: RateLimiter(lim.get(b, (0, None, None))[1]) for b in names}
        self.timeouts = {b: lim.get(b, (0, None, None))[2] for b in names}

    # -- one cell -----------------------------------------------------------------------------
    def _attempts(self, q: int, a: int, reservation: Reservation) -> Outcome:
        backend = self.world.backend_of(a)
        first = True

        def attempt() -> Outcome:
            nonlocal first
            if not first and not self.budget.add_call(reservation):
                raise BudgetSpent
            first = False
            with self.lock:
                self.calls += 1
            self.rate[backend].wait()
            return with_timeout(lambda: self.world.execute(q, a), backend, self.timeouts[backend])

        retrying = Retrying(
            stop=stop_after_attempt(self.settings.retries + 1),
            wait=wait_exponential(multiplier=self.settings.backoff_s, max=30.0)
            if self.settings.backoff_s
            else (lambda _s: 0.0),
            retry=retry_if_exception(is_transient),
            reraise=True,
        )
        return retrying(attempt)

    def _run_cell(self, round_index: int, slot: int, choice: Choice) -> float | None:
        q, a = choice.question, choice.action
        backend = self.world.backend_of(a)
        question = self.world.questions[q]
        base = {
            "query_id": question.id,
            "action": self.keys[a],
            "model": backend,
            "collect_round": round_index,
            "collect_slot": slot,
        }
        if backend in self.down:
            return None
        reservation = self.budget.reserve(self.world.reservation(q, a))
        if reservation is None:
            self.store.append_failure(
                {**base, "kind": "budget", "error": "the budget cannot pay for this call"}, None
            )
            return None
        with self.sema[backend]:
            try:
                outcome = self._attempts(q, a, reservation)
            except Exception as exc:  # reported per backend, never scored
                timed_out = isinstance(exc, CallTimeoutError)
                self.budget.settle(reservation, reservation.usd if timed_out else 0.0)
                with self.lock:
                    self.failures[backend] += 1
                    self.streak[backend] += 1
                    if (
                        self.streak[backend] >= self.settings.max_backend_failures
                        and backend not in self.down
                    ):
                        self.down.add(backend)
                        logger.error(
                            "backend %r failed %d cells in a row (last: %r): skipping it",
                            backend,
                            self.streak[backend],
                            exc,
                        )
                self.store.append_failure(
                    {**base, "kind": "backend", "error": f"{type(exc).__name__}: {exc}"}, None
                )
                return None
        self.budget.settle(reservation, outcome.cost)
        with self.lock:
            self.streak[backend] = 0
        score = outcome.score
        row = self._row(question, a, outcome, choice.propensity, base)
        if score is None:
            try:
                score = (
                    check_score(self.scorer(question.query, question.reference, outcome.text or ""))
                    if self.scorer
                    else None
                )
            except Exception as exc:  # recorded per cell, reported at the end
                with self.lock:
                    self.scorer_errors += 1
                fail = {
                    **row,
                    "kind": "scorer",
                    "error": f"{type(exc).__name__}: {exc}",
                    "output": outcome.text,
                }
                self.store.append_failure(fail, DoneCell(round_index, slot, None, outcome.cost))
                return None
        row["score"] = score
        self.store.append(row, DoneCell(round_index, slot, score, outcome.cost))
        with self.lock:
            self.new_cells += 1
        return score

    def _row(
        self, question: Question, a: int, outcome: Outcome, propensity: float, base: dict[str, Any]
    ) -> dict[str, Any]:
        row: dict[str, Any] = {
            "query_id": question.id,
            "query": question.query,
            "model": base["model"],
            "score": None,
        }
        row.update(dict(self.world.space.actions[a].params))
        row.update(
            {
                "input_tokens": outcome.input_tokens,
                "output_tokens": outcome.output_tokens,
                "cost": outcome.cost,
                "latency_s": round(outcome.latency_s, 6),
                "propensity": propensity,
            }
        )
        if question.dataset:
            row["dataset"] = question.dataset
        if question.task:
            row["task"] = question.task
        if self.settings.keep_outputs and outcome.text is not None:
            row["output"] = outcome.text
        row.update({k: base[k] for k in ("action", "collect_round", "collect_slot")})
        return row

    # -- rounds -------------------------------------------------------------------------------
    def _fits_factory(self, spent_usd: float, spent_cells: int) -> Callable[[int, int], bool]:
        usd_left = math.inf if self.budget.usd_limit is None else self.budget.usd_limit - spent_usd
        calls_left = math.inf if self.budget.calls_limit is None else self.budget.calls_limit - spent_cells
        acc = [0.0, 0]

        def fits(q: int, a: int) -> bool:
            if self.world.backend_of(a) in self.down:
                return False
            usd = self.world.reservation(q, a)
            if acc[0] + usd > usd_left or acc[1] + 1 > calls_left:
                return False
            acc[0] += usd
            acc[1] += 1
            return True

        return fits

    def run(self, bar: Any = None) -> None:
        qpos = {q.id: i for i, q in enumerate(self.world.questions)}
        apos = {k: i for i, k in enumerate(self.keys)}
        by_round: dict[int, dict[tuple[int, int], DoneCell]] = defaultdict(dict)
        for (qid, key), d in self.store.done.items():
            if qid not in qpos or key not in apos:
                msg = (
                    f"`output` {str(self.store.path)!r} holds cell ({qid!r}, {key!r}), "
                    "which this collection does not have"
                )
                raise ValueError(msg)
            by_round[d.round][(qpos[qid], apos[key])] = d
        costs: list[float] = []
        n_cells = 0
        round_index = 0
        with ThreadPoolExecutor(
            max_workers=self.settings.concurrency, thread_name_prefix="haps-collect"
        ) as pool:
            while True:
                fits = self._fits_factory(math.fsum(costs), n_cells)
                plan = self.strategy.propose(round_index, self.batch_size, fits)
                if not plan:
                    break
                done = by_round.pop(round_index, {})
                planned = {(c.question, c.action) for c in plan}
                if set(done) - planned:
                    msg = (
                        f"`output` {str(self.store.path)!r} does not match this collection's plan at round "
                        f"{round_index}; it was made with other settings or another version"
                    )
                    raise ValueError(msg)
                futures = {}
                for slot, choice in enumerate(plan):
                    if (choice.question, choice.action) not in done:
                        futures[slot] = pool.submit(self._run_cell, round_index, slot, choice)
                scores: list[float | None] = []
                for slot, choice in enumerate(plan):
                    cell = (choice.question, choice.action)
                    if cell in done:
                        d = done[cell]
                        scores.append(d.score)
                        costs.append(d.cost)
                        n_cells += 1
                    else:
                        scores.append(futures[slot].result())
                        d2 = self.store.done.get((self.world.questions[cell[0]].id, self.keys[cell[1]]))
                        if d2 is not None:
                            costs.append(d2.cost)
                            n_cells += 1
                        if bar is not None:
                            bar.update(1)
                            bar.set_postfix_str(self._postfix(), refresh=False)
                self.store.sync()
                for choice, score in zip(plan, scores, strict=True):
                    self.strategy.observe(choice.question, choice.action, score)
                if self.down:
                    self.strategy.discard_actions(
                        {i for i, a in enumerate(self.world.space.actions) if a.backend in self.down}
                    )
                round_index += 1
        if by_round:
            logger.warning(
                "%d cells of %s lie beyond this collection's plan",
                sum(map(len, by_round.values())),
                self.store.path,
            )

    def _postfix(self) -> str:
        spent = self.budget.spent_usd
        left = self.budget.remaining_usd()
        parts = [f"${spent:.4f} spent"]
        if math.isfinite(left):
            parts.append(f"${left:.4f} left")
        calls_left = self.budget.remaining_calls()
        if math.isfinite(calls_left):
            parts.append(f"{int(calls_left)} calls left")
        return ", ".join(parts)

    def result(self, budget_usd: float | None, budget_calls: int | None) -> CollectResult:
        rows = [(key, d.score, d.cost) for (_, key), d in self.store.done.items() if d.score is not None]
        return CollectResult(
            output=self.store.path,
            cells=len(rows),
            new_cells=self.new_cells,
            spent_usd=math.fsum(d.cost for d in self.store.done.values()),
            calls=self.calls,
            failures=dict(self.failures),
            scorer_errors=self.scorer_errors,
            skipped_backends=sorted(self.down),
            overruns=self.budget.overruns,
            per_action=per_action_summary(rows),
            budget_usd=budget_usd,
            budget_calls=budget_calls,
            peak_committed_usd=self.budget.peak_committed_usd,
        )
