"""The replay world: answers each (question, action) from an existing complete log.

Collecting against it costs nothing and calls nothing, so strategies and budgets can be compared
offline on real outcomes: a cell's score, tokens and cost are the logged ones. Optional injected
transient failures (`failure_rate`) exercise the retry and budget paths without a network.
"""

import logging
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from haps_core.catalog import RoutingSpace
from haps_core.collect.questions import Question
from haps_core.logs import RoutingLog, load_prices, read_logs

logger = logging.getLogger(__name__)


class ReplayTransientError(ConnectionError):
    """An injected transient failure of the replay world (retried like a dropped connection)."""


@dataclass(frozen=True)
class Outcome:
    """What one call gave: its text (None in replay), score (None: to be scored), usage and cost."""

    text: str | None
    score: float | None
    input_tokens: float
    output_tokens: float
    cost: float
    latency_s: float = 0.0


class ReplayWorld:
    """Outcomes of a complete log, looked up per (question, action).

    Args:
        log: a `RoutingLog`, or the path of a log file (read with `prices`, by default the
            ``prices.json`` beside it when there is one).
        prices: backend -> (input, output) USD per 1M tokens, or a prices.json path.
        failure_rate: probability that a call raises `ReplayTransientError` (a test knob).
        seed: seed of the injected failures.
    """

    def __init__(
        self,
        log: RoutingLog | str | Path,
        prices: Mapping[str, tuple[float, float]] | str | Path | None = None,
        failure_rate: float = 0.0,
        seed: int = 0,
    ) -> None:
        if not 0.0 <= failure_rate < 1.0:
            msg = f"`failure_rate` must be in [0, 1), got {failure_rate!r}"
            raise ValueError(msg)
        if not isinstance(log, RoutingLog):
            path = Path(log)
            if prices is None and (path.parent / "prices.json").is_file():
                prices = path.parent / "prices.json"
            log = read_logs(path, prices=prices)
        self.log = log
        self.space: RoutingSpace = log.space
        prices_map = dict(load_prices(prices)) if isinstance(prices, str | Path) else dict(prices or {})
        for b in log.space.backends:
            prices_map.setdefault(b.name, (b.input_price, b.output_price))
        self.prices = prices_map
        groups = [str(g) for g in log.groups]
        first_group: dict[int, str] = {}
        sums: dict[tuple[int, int], list[float]] = {}
        in_tok = log.input_tokens if log.input_tokens is not None else np.full(log.n_rows, np.nan)
        for r in range(log.n_rows):
            q, a = int(log.row_query[r]), int(log.row_action[r])
            first_group.setdefault(q, groups[r])
            acc = sums.setdefault((q, a), [0.0, 0.0, 0.0, 0.0])
            tokens = float(in_tok[r]) if np.isfinite(in_tok[r]) else 0.0
            acc[0] += float(log.score[r])
            acc[1] += float(log.cost[r])
            acc[2] += tokens
            acc[3] += 1.0
        self.cells: dict[tuple[int, int], tuple[float, float, float, float]] = {}
        max_out = np.zeros(len(self.space))
        for (q, a), (s, c, t, n) in sums.items():
            backend = self.space.actions[a].backend
            p_in, p_out = self.prices.get(backend, (0.0, 0.0))
            score, cost, tin = s / n, c / n, t / n
            tout = max(0.0, (cost * 1e6 - tin * p_in) / p_out) if p_out > 0 else 0.0
            self.cells[(q, a)] = (score, cost, tin, tout)
            max_out[a] = max(max_out[a], tout)
        self.max_output_tokens = max_out
        self.questions = [
            Question(qid, text, "", first_group.get(i, ""), "")
            for i, (qid, text) in enumerate(zip(log.query_ids, log.queries, strict=True))
        ]
        avail: list[list[int]] = [[] for _ in self.questions]
        for q, a in sorted(self.cells):
            avail[q].append(a)
        self._available = avail
        self.failure_rate = failure_rate
        self._rng = np.random.default_rng(seed)
        self._rng_lock = threading.Lock()

    def available(self) -> list[list[int]]:
        """Per question, the actions the log observed for it (the only ones replay can answer)."""
        return [list(a) for a in self._available]

    def backend_of(self, action: int) -> str:
        return self.space.actions[action].backend

    def estimate(self, question: int, action: int) -> float:
        """The expected USD of the cell (the logged cost: replay knows it)."""
        return self.cells[(question, action)][1]

    def reservation(self, question: int, action: int) -> float:
        """An upper bound of the cell's USD: its input tokens and the action's most output tokens."""
        _, cost, tin, _ = self.cells[(question, action)]
        p_in, p_out = self.prices.get(self.backend_of(action), (0.0, 0.0))
        bound = (tin * p_in + self.max_output_tokens[action] * p_out) / 1e6
        return max(bound, cost) * (1 + 1e-9)

    def action_costs(self) -> np.ndarray:
        """Mean logged USD per action (what strategies weigh quality against)."""
        tot = np.zeros(len(self.space))
        cnt = np.zeros(len(self.space))
        for (_, a), (_, c, _, _) in self.cells.items():
            tot[a] += c
            cnt[a] += 1
        return tot / np.maximum(cnt, 1)

    def execute(self, question: int, action: int) -> Outcome:
        """The logged outcome of the cell (or an injected transient failure)."""
        if self.failure_rate:
            with self._rng_lock:
                fail = self._rng.random() < self.failure_rate
            if fail:
                msg = "injected transient failure (replay world)"
                raise ReplayTransientError(msg)
        score, cost, tin, tout = self.cells[(question, action)]
        return Outcome(None, score, tin, tout, cost, 0.0)

    def subset(
        self, question_ids: set[str], failure_rate: float | None = None, seed: int | None = None
    ) -> "ReplayWorld":
        """This world restricted to the given question ids (e.g. a train split), optionally with
        another injected failure rate and seed."""
        keep = [i for i, q in enumerate(self.questions) if q.id in question_ids]
        pos = {old: new for new, old in enumerate(keep)}
        world = object.__new__(ReplayWorld)
        world.__dict__.update(self.__dict__)
        world.questions = [self.questions[i] for i in keep]
        world.cells = {(pos[q], a): v for (q, a), v in self.cells.items() if q in pos}
        world._available = [self._available[i] for i in keep]
        world._rng = np.random.default_rng(int(self._rng.integers(1 << 31)) if seed is None else seed)
        if failure_rate is not None:
            world.failure_rate = failure_rate
        world._rng_lock = threading.Lock()
        return world
