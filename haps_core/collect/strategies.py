"""Which (question, action) cells to collect next: the shared state and `full`, `uniform`, `thompson`.

`adaptive`, the recommended search, lives in `haps_core.collect.informative`; `make_strategy` (in
`haps_core.collect.registry`) builds any of them by name.

Strategies work in rounds. A round's choices are a deterministic function of the seed, the round
number and the outcomes of earlier rounds (fed back in plan order), never of the order calls
finish in: this is what lets a killed collection resume into exactly the cells an uninterrupted
run collects. Each choice carries its propensity: the probability that the strategy picked that
action for that question at that step.
"""

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

logger = logging.getLogger(__name__)

Fits = Callable[[int, int], bool]
"""``fits(question, action)``: whether the cell still fits the round's remaining budget."""


@dataclass(frozen=True)
class Choice:
    """One chosen cell and the probability the strategy chose its action for its question."""

    question: int
    action: int
    propensity: float


class Strategy:
    """Shared state: the cells not yet collected (``open``), per question.

    Args:
        available: per question, the action indices that may be collected for it.
        seed: the seed of every random choice.
    """

    name = "full"

    def __init__(self, available: Sequence[Sequence[int]], seed: int = 0) -> None:
        self.seed = int(seed)
        self.open: list[list[int]] = [sorted(set(a)) for a in available]
        self.n_observed = np.zeros(len(self.open), dtype=np.int64)

    def discard(self, question: int, action: int) -> None:
        if action in self.open[question]:
            self.open[question].remove(action)

    def discard_actions(self, actions: set[int]) -> None:
        """Drops every open cell of these actions (a backend that keeps failing)."""
        self.open = [[a for a in acts if a not in actions] for acts in self.open]

    def observe(self, question: int, action: int, score: float | None) -> None:
        """An outcome of a chosen cell (None: it could not be scored); call in plan order."""
        self.discard(question, action)
        if score is not None:
            self.n_observed[question] += 1

    def propose(self, round_index: int, k: int, fits: Fits) -> list[Choice]:
        """Up to `k` cells for this round; cells that do not fit the budget are dropped."""
        out: list[Choice] = []
        for q, acts in enumerate(self.open):
            for a in list(acts):
                if len(out) == k:
                    return out
                if fits(q, a):
                    out.append(Choice(q, a, 1.0))
                self.discard(q, a)
        return out


class UniformStrategy(Strategy):
    """Cells in one seeded random order; an action's propensity is 1 / the question's open cells."""

    name = "uniform"

    def __init__(self, available: Sequence[Sequence[int]], seed: int = 0) -> None:
        super().__init__(available, seed)
        cells = [(q, a) for q, acts in enumerate(self.open) for a in acts]
        order = np.random.default_rng(self.seed).permutation(len(cells))
        self._queue = [cells[i] for i in order]
        self._pos = 0

    def propose(self, round_index: int, k: int, fits: Fits) -> list[Choice]:
        out: list[Choice] = []
        while len(out) < k and self._pos < len(self._queue):
            q, a = self._queue[self._pos]
            self._pos += 1
            if a not in self.open[q]:
                continue
            if fits(q, a):
                out.append(Choice(q, a, 1.0 / len(self.open[q])))
            self.discard(q, a)
        return out


class ThompsonStrategy(Strategy):
    """Thompson sampling per question cluster, over a random trade-off between score and cost.

    Each (cluster, action) has a Beta posterior of its score (shrunk towards the action's mean
    over all clusters). A round first serves the questions with the fewest outcomes; for each, a
    cost weight ``lam ~ U(0, 1)`` and posterior draws pick the open action with the highest
    ``draw - lam * log-cost rank``, so the whole quality/cost front gets explored. Actions whose
    upper bound lies below the lower bound of a cheaper action in the cluster (clearly dominated)
    are dropped there. The propensity is the frequency of the chosen action over
    `propensity_draws` repetitions of that draw.

    This was `adaptive` before the informative strategy replaced it. It collects where the
    apparent best actions are; on the replay world it beats uniform at 10% of the grid's cost
    but not beyond noise at 25% (`python benchmarks/collect.py`).
    """

    name = "thompson"

    def __init__(
        self,
        available: Sequence[Sequence[int]],
        seed: int = 0,
        clusters: "Sequence[int] | np.ndarray | None" = None,
        action_costs: "Sequence[float] | np.ndarray | None" = None,
        propensity_draws: int = 256,
        prior_strength: float = 2.0,
        min_dominance_obs: int = 3,
        max_misses: int = 64,
    ) -> None:
        super().__init__(available, seed)
        n_q = len(self.open)
        n_a = 1 + max((a for acts in self.open for a in acts), default=0)
        self.clusters = (
            np.zeros(n_q, dtype=np.int64) if clusters is None else np.asarray(clusters, dtype=np.int64)
        )
        n_c = int(self.clusters.max()) + 1 if n_q else 1
        costs = np.ones(n_a) if action_costs is None else np.asarray(action_costs, dtype=np.float64)
        logc = np.log(np.maximum(costs, 1e-12))
        span = logc.max() - logc.min()
        self.cost_rank = (logc - logc.min()) / span if span > 0 else np.zeros(n_a)
        self.costs = costs
        self.s = np.zeros((n_c, n_a))  # summed scores
        self.n = np.zeros((n_c, n_a))  # outcomes
        self.draws = int(propensity_draws)
        self.prior_strength = float(prior_strength)
        self.min_obs = int(min_dominance_obs)
        self.max_misses = int(max_misses)

    def observe(self, question: int, action: int, score: float | None) -> None:
        super().observe(question, action, score)
        if score is not None:
            c = self.clusters[question]
            self.s[c, action] += score
            self.n[c, action] += 1

    def _posterior(self, c: int) -> tuple[np.ndarray, np.ndarray]:
        tot_n, tot_s = self.n.sum(axis=0), self.s.sum(axis=0)
        prior = (tot_s + 1.0) / (tot_n + 2.0)  # each action's mean over all clusters
        alpha = 1.0 + self.s[c] + self.prior_strength * prior
        beta = 1.0 + (self.n[c] - self.s[c]) + self.prior_strength * (1.0 - prior)
        return alpha, beta

    def _dominated(self, c: int, alpha: np.ndarray, beta: np.ndarray) -> np.ndarray:
        mean = alpha / (alpha + beta)
        sd = np.sqrt(alpha * beta / ((alpha + beta) ** 2 * (alpha + beta + 1.0)))
        lower, upper = mean - 2 * sd, mean + 2 * sd
        seen = self.n[c] >= self.min_obs
        out = np.zeros(len(mean), dtype=bool)
        for a in np.flatnonzero(seen):
            cheaper = seen & (self.costs <= self.costs[a])
            cheaper[a] = False
            out[a] = bool(np.any(lower[cheaper] > upper[a]))
        return out

    def propose(self, round_index: int, k: int, fits: Fits) -> list[Choice]:
        rng = np.random.default_rng([self.seed, round_index])
        tiebreak = rng.random(len(self.open))
        order = np.lexsort((tiebreak, self.n_observed))
        out: list[Choice] = []
        cache: dict[int, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}
        progress = True
        misses = 0  # cells in a row that did not fit: past `max_misses` the budget is spent
        while len(out) < k and progress and misses < self.max_misses:
            progress = False
            for q in order:
                if len(out) == k or misses >= self.max_misses:
                    break
                q = int(q)
                c = int(self.clusters[q])
                if c not in cache:
                    alpha, beta = self._posterior(c)
                    cache[c] = (alpha, beta, self._dominated(c, alpha, beta))
                alpha, beta, dominated = cache[c]
                while self.open[q]:
                    acts = np.asarray(self.open[q])
                    keep = acts[~dominated[acts]]
                    cand = keep if len(keep) else acts
                    lam = rng.random((self.draws, 1))
                    theta = rng.beta(alpha[cand], beta[cand], size=(self.draws, len(cand)))
                    wins = np.argmax(theta - lam * self.cost_rank[cand], axis=1)
                    a = int(cand[wins[0]])
                    propensity = float(np.mean(wins == wins[0]))
                    self.discard(q, a)
                    if fits(q, a):
                        out.append(Choice(q, a, propensity))
                        progress = True
                        misses = 0
                        break
                    misses += 1
                    if misses >= self.max_misses:
                        break
        return out


def cluster_questions(
    texts: Sequence[str], groups: Sequence[str], seed: int = 0, max_clusters: int = 16
) -> np.ndarray:
    """A cluster index per question: its `task` (or `dataset`) when every question has one, else
    k-means over hashed character trigrams (numpy only: no encoder needed)."""
    if groups and all(groups):
        names = sorted(set(groups))
        pos = {g: i for i, g in enumerate(names)}
        return np.asarray([pos[g] for g in groups], dtype=np.int64)
    n = len(texts)
    k = max(1, min(max_clusters, n // 20))
    if k == 1:
        return np.zeros(n, dtype=np.int64)
    dim = 256
    x = np.zeros((n, dim))
    for i, text in enumerate(texts):
        t = text.lower()
        for j in range(max(0, len(t) - 2)):
            x[i, hash_trigram(t[j : j + 3]) % dim] += 1.0
    x /= np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
    rng = np.random.default_rng(seed)
    centers = x[rng.choice(n, size=k, replace=False)]
    labels = np.zeros(n, dtype=np.int64)
    for _ in range(20):
        labels = np.argmax(x @ centers.T, axis=1)
        for c in range(k):
            members = x[labels == c]
            if len(members):
                centers[c] = members.mean(axis=0)
    return labels


def hash_trigram(s: str) -> int:
    """A stable hash (Python's `hash` of str changes per process)."""
    h = 2166136261
    for ch in s:
        h = ((h ^ ord(ch)) * 16777619) & 0xFFFFFFFF
    return h
