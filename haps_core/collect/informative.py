"""The `adaptive` collection strategy: the cells that teach a router most per dollar.

A router learns how each action's score varies across queries, so a cell is worth what its
outcome is still uncertain given everything collected, per unit of its cost. Three things make
a cell uninformative, and this strategy measures each from the outcomes it has collected:

- its action's score barely varies in the question's cluster (always right or always wrong);
- the same backend was already observed on the same question under other settings: settings of
  one backend on one question are correlated (temperature sweeps are nearly repeated draws,
  prompt styles less so), with a correlation estimated per backend from the collected pairs;
- other backends were observed on the question: they share its difficulty (a correlation
  estimated the same way, across backends).

The value of a cell is its predictive standard deviation given those observations (the two
correlations' variance reductions multiplied, an approximation), divided by
the square root of its cost: sampling in proportion to it is the Neyman allocation, which
minimises the total variance of what is learnt for a fixed spend. A round draws its cells in
proportion to that value (Gumbel top-k, seeded per round), so every open cell keeps a non-zero
chance and each choice records its propensity: the chance of its action among the question's open
cells under the round's values.
"""

import logging
from collections.abc import Sequence

import numpy as np

from haps_core.collect.strategies import Choice, Fits, Strategy

logger = logging.getLogger(__name__)


def _equicorrelated_factor(m: np.ndarray, rho: np.ndarray) -> np.ndarray:
    """Var(x_new | m observed) / Var(x) for equicorrelated cells with correlation `rho`."""
    m = m.astype(np.float64)
    return (1.0 - rho) * (1.0 + m * rho) / np.maximum(1.0 + (m - 1.0) * rho, 1e-12)


class InformativeStrategy(Strategy):
    """Cells drawn in proportion to predictive standard deviation / sqrt(cost) (see module doc).

    Args:
        available: per question, the action indices that may be collected for it.
        seed: the seed of every random choice.
        clusters: a cluster index per question (its task or a text cluster).
        action_costs: mean USD of each action's call.
        action_backends: a backend index per action (settings of one backend share outcomes).
        cost_power: the exponent of the cost in the denominator (0.5: Neyman allocation).
        prior_rho: the correlations assumed before any pair is observed.
        prior_weight: pseudo-pairs behind `prior_rho` and pseudo-cells behind each variance prior.
    """

    name = "adaptive"

    def __init__(
        self,
        available: Sequence[Sequence[int]],
        seed: int = 0,
        clusters: "Sequence[int] | np.ndarray | None" = None,
        action_costs: "Sequence[float] | np.ndarray | None" = None,
        action_backends: "Sequence[int] | np.ndarray | None" = None,
        cost_power: float = 0.5,
        prior_rho: float = 0.3,
        prior_weight: float = 4.0,
    ) -> None:
        super().__init__(available, seed)
        n_q = len(self.open)
        cells = [(q, a) for q, acts in enumerate(self.open) for a in acts]
        self.cell_q = np.asarray([q for q, _ in cells], dtype=np.int64)
        self.cell_a = np.asarray([a for _, a in cells], dtype=np.int64)
        self.cell_index = {c: i for i, c in enumerate(cells)}
        self.is_open = np.ones(len(cells), dtype=bool)
        n_a = 1 + int(self.cell_a.max()) if len(cells) else 1
        self.clusters = (
            np.zeros(n_q, dtype=np.int64) if clusters is None else np.asarray(clusters, dtype=np.int64)
        )
        n_c = int(self.clusters.max()) + 1 if n_q else 1
        costs = np.ones(n_a) if action_costs is None else np.asarray(action_costs, dtype=np.float64)
        self.costs = np.maximum(costs, 1e-12)
        self.backends = (
            np.arange(n_a) if action_backends is None else np.asarray(action_backends, dtype=np.int64)
        )
        n_b = int(self.backends.max()) + 1
        self.cost_power = float(cost_power)
        self.prior_rho = float(prior_rho)
        self.prior_weight = float(prior_weight)
        self.s = np.zeros((n_c, n_a))
        self.ss = np.zeros((n_c, n_a))
        self.n = np.zeros((n_c, n_a))
        self.seen_qb = np.zeros((n_q, n_b), dtype=np.int64)
        self.seen_q = np.zeros(n_q, dtype=np.int64)
        # outcomes in plan order (each cell is collected at most once)
        self._obs = np.zeros((len(cells), 3))
        self._n_obs = 0

    def discard(self, question: int, action: int) -> None:
        super().discard(question, action)
        i = self.cell_index.get((question, action))
        if i is not None:
            self.is_open[i] = False

    def discard_actions(self, actions: set[int]) -> None:
        super().discard_actions(actions)
        self.is_open &= ~np.isin(self.cell_a, sorted(actions))

    def observe(self, question: int, action: int, score: float | None) -> None:
        super().observe(question, action, score)
        if score is None:
            return
        c = self.clusters[question]
        self.s[c, action] += score
        self.ss[c, action] += score * score
        self.n[c, action] += 1
        self.seen_qb[question, self.backends[action]] += 1
        self.seen_q[question] += 1
        if self._n_obs < len(self._obs):
            self._obs[self._n_obs] = (question, action, score)
            self._n_obs += 1

    def _means_and_variances(self) -> tuple[np.ndarray, np.ndarray]:
        """Per (cluster, action): the shrunk mean score and the variance of one cell's score."""
        k = self.prior_weight
        tot_n, tot_s, tot_ss = self.n.sum(0), self.s.sum(0), self.ss.sum(0)
        g_mean = (tot_s + 0.5 * k) / (tot_n + k)
        g_var = (tot_ss - tot_n * g_mean**2 + 0.25 * k) / (tot_n + k)
        mean = (self.s + k * g_mean) / (self.n + k)
        var = (self.ss - self.n * mean**2 + k * g_var) / (self.n + k)
        return mean, np.clip(var, 1e-6, 0.25)

    def _correlations(self, mean: np.ndarray, var: np.ndarray) -> tuple[np.ndarray, float]:
        """Within-backend correlation per backend, and the across-backend one, of one question."""
        n_b = self.seen_qb.shape[1]
        if not self._n_obs:
            return np.full(n_b, self.prior_rho), self.prior_rho
        obs = self._obs[: self._n_obs]
        q, a, s = obs[:, 0].astype(np.int64), obs[:, 1].astype(np.int64), obs[:, 2]
        c = self.clusters[q]
        r = (s - mean[c, a]) / np.sqrt(var[c, a])
        b = self.backends[a]
        n_q = len(self.open)
        key = q * n_b + b
        sum_qb = np.bincount(key, r, n_q * n_b)
        sq_qb = np.bincount(key, r * r, n_q * n_b)
        cnt_qb = np.bincount(key, None, n_q * n_b)
        cross_qb = (sum_qb**2 - sq_qb) / 2.0  # sum over within-group pairs of r_i r_j
        pairs_qb = cnt_qb * (cnt_qb - 1) / 2.0
        k = self.prior_weight
        within_num = np.bincount(np.arange(n_q * n_b) % n_b, cross_qb, n_b)
        within_den = np.bincount(np.arange(n_q * n_b) % n_b, pairs_qb, n_b)
        rho_b = (within_num + k * self.prior_rho) / (within_den + k)
        sum_q = np.bincount(q, r, n_q)
        sq_q = np.bincount(q, r * r, n_q)
        cnt_q = np.bincount(q, None, n_q)
        all_cross = (sum_q**2 - sq_q) / 2.0
        all_pairs = cnt_q * (cnt_q - 1) / 2.0
        across_num = all_cross.sum() - cross_qb.sum()
        across_den = all_pairs.sum() - pairs_qb.sum()
        rho_0 = (across_num + k * self.prior_rho) / (across_den + k)
        return np.clip(rho_b, 0.0, 0.95), float(np.clip(rho_0, 0.0, 0.95))

    def correlations(self) -> tuple[np.ndarray, float]:
        """The correlations learnt so far: per backend within a question, and across backends."""
        return self._correlations(*self._means_and_variances())

    def values(self) -> np.ndarray:
        """The value of every cell (0 for closed ones): predictive sd / cost ** cost_power."""
        mean, var = self._means_and_variances()
        rho_b, rho_0 = self._correlations(mean, var)
        q, a = self.cell_q, self.cell_a
        b = self.backends[a]
        same = self.seen_qb[q, b]
        other = self.seen_q[q] - same
        factor = _equicorrelated_factor(same, rho_b[b]) * _equicorrelated_factor(
            other, np.full(len(q), rho_0)
        )
        value = np.sqrt(var[self.clusters[q], a] * factor) / self.costs[a] ** self.cost_power
        return np.where(self.is_open, value, 0.0)

    def propose(self, round_index: int, k: int, fits: Fits) -> list[Choice]:
        value = self.values()
        open_idx = np.flatnonzero(self.is_open)
        if not len(open_idx):
            return []
        rng = np.random.default_rng([self.seed, round_index])
        keys = np.log(np.maximum(value[open_idx], 1e-300)) + rng.gumbel(size=len(open_idx))
        per_question = np.bincount(self.cell_q, value, len(self.open))
        out: list[Choice] = []
        for i in open_idx[np.argsort(-keys, kind="stable")]:
            if len(out) == k:
                break
            q, a = int(self.cell_q[i]), int(self.cell_a[i])
            propensity = float(value[i] / per_question[q]) if per_question[q] > 0 else 1.0
            self.discard(q, a)
            if fits(q, a):
                out.append(Choice(q, a, propensity))
        return out
