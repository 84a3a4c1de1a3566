"""Baseline routers behind one small interface, so HAPS is always measured against them.

`ConstantRouter` (each action's training mean), `RandomRouter`, `KNNRouter` (k nearest training
queries, k picked on an inner split) and `LinearRouter` (per-action logistic regression, L2 picked
on an inner split) map query embeddings to predicted quality and cost of every action.
"""

import abc
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from haps_core.catalog import RoutingSpace
from haps_core.logs import split_queries

logger = logging.getLogger(__name__)


@dataclass
class TrainingSet:
    """Dense training outcomes of a (small enough) set of queries, with their embeddings.

    Attributes:
        embeddings: [n, d] query embeddings (float32, L2-normalised).
        texts: the n query texts.
        query_ids: the n query ids (used for deterministic inner splits).
        score, cost: [n, A] observed outcomes (0 where unobserved).
        mask: [n, A] True where observed.
        space: the routing space of the A actions.
    """

    embeddings: np.ndarray
    texts: list[str]
    query_ids: list[str]
    score: np.ndarray
    cost: np.ndarray
    mask: np.ndarray
    space: RoutingSpace

    def subset(self, rows: np.ndarray) -> "TrainingSet":
        return TrainingSet(
            self.embeddings[rows],
            [self.texts[i] for i in rows],
            [self.query_ids[i] for i in rows],
            self.score[rows],
            self.cost[rows],
            self.mask[rows],
            self.space,
        )

    def action_means(self) -> tuple[np.ndarray, np.ndarray]:
        """Per-action mean observed score and cost (global means where never observed)."""
        counts = self.mask.sum(0)
        g_score = self.score[self.mask].mean() if self.mask.any() else 0.5
        g_cost = self.cost[self.mask].mean() if self.mask.any() else 0.0
        with np.errstate(invalid="ignore", divide="ignore"):
            q = np.where(counts > 0, (self.score * self.mask).sum(0) / counts, g_score)
            c = np.where(counts > 0, (self.cost * self.mask).sum(0) / counts, g_cost)
        return q, c


class BaselineRouter(abc.ABC):
    """Predicts quality and cost of every action for each query."""

    name: str = "router"

    @abc.abstractmethod
    def fit(self, train: TrainingSet) -> "BaselineRouter":
        """Learns from training outcomes; returns self."""

    @abc.abstractmethod
    def predict(self, embeddings: np.ndarray, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """Returns (quality, cost), each [n, A]."""


class ConstantRouter(BaselineRouter):
    """Every query gets the training means: the best fixed action for each cost weight."""

    name = "constant"

    def fit(self, train: TrainingSet) -> "ConstantRouter":
        self.q_, self.c_ = train.action_means()
        return self

    def predict(self, embeddings: np.ndarray, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        n = len(embeddings)
        return np.tile(self.q_, (n, 1)), np.tile(self.c_, (n, 1))


class RandomRouter(BaselineRouter):
    """A uniformly random action per query (seeded), whatever the cost weight."""

    name = "random"

    def __init__(self, seed: int = 0) -> None:
        self.seed = seed

    def fit(self, train: TrainingSet) -> "RandomRouter":
        self.n_actions_ = train.score.shape[1]
        return self

    def predict(self, embeddings: np.ndarray, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        rng = np.random.default_rng(self.seed)
        n = len(embeddings)
        return rng.random((n, self.n_actions_)), np.zeros((n, self.n_actions_))


def _inner_split(train: TrainingSet, seed: int) -> tuple[np.ndarray, np.ndarray]:
    held = split_queries(train.query_ids, 0.2, seed=seed + 1000)
    return np.flatnonzero(~held), np.flatnonzero(held)


def _masked_mse(pred: np.ndarray, target: np.ndarray, mask: np.ndarray) -> float:
    return float(((pred - target) ** 2 * mask).sum() / max(mask.sum(), 1))


class KNNRouter(BaselineRouter):
    """Mean observed outcomes of the k most similar training queries (cosine similarity).

    Each action's estimate is shrunk towards its training mean with one pseudo-observation, so an
    action none of the neighbours observed gets the mean rather than nothing.
    """

    name = "knn"

    def __init__(self, k: int | None = None, candidates: Sequence[int] = (5, 10, 20, 40, 80), seed: int = 0):
        if k is not None and k < 1:
            msg = f"`k` must be >= 1, got {k!r}"
            raise ValueError(msg)
        self.k = k
        self.candidates = tuple(candidates)
        self.seed = seed

    def _predict_with(self, train: TrainingSet, emb: np.ndarray, k: int, exclude_self: bool = False):
        k = min(k, len(train.embeddings))
        sims = emb @ train.embeddings.T
        idx = np.argpartition(-sims, kth=k - 1, axis=1)[:, :k]
        m = train.mask[idx]  # [n, k, A]
        q0, c0 = train.action_means()
        counts = m.sum(1) + 1.0
        q = ((train.score[idx] * m).sum(1) + q0) / counts
        c = ((train.cost[idx] * m).sum(1) + c0) / counts
        return q, c

    def fit(self, train: TrainingSet) -> "KNNRouter":
        self.train_ = train
        if self.k is None:
            fit_rows, held_rows = _inner_split(train, self.seed)
            inner, held = train.subset(fit_rows), train.subset(held_rows)
            errors = {}
            for k in self.candidates:
                q, _ = self._predict_with(inner, held.embeddings, k)
                errors[k] = _masked_mse(q, held.score, held.mask)
            self.k_ = min(errors, key=lambda k: errors[k])
            logger.info("knn: chose k=%d on the inner split (mse %s)", self.k_, errors)
        else:
            self.k_ = self.k
        return self

    def predict(self, embeddings: np.ndarray, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        return self._predict_with(self.train_, embeddings, self.k_)


class LinearRouter(BaselineRouter):
    """Per-action logistic regression for quality and a per-action linear model of log cost."""

    name = "linear"

    def __init__(
        self,
        l2: float | None = None,
        candidates: Sequence[float] = (1e-4, 1e-3, 1e-2),
        steps: int = 300,
        seed: int = 0,
    ):
        self.l2 = l2
        self.candidates = tuple(candidates)
        self.steps = steps
        self.seed = seed

    def _fit_params(self, train: TrainingSet, l2: float) -> tuple[torch.nn.Linear, torch.nn.Linear]:
        torch.manual_seed(self.seed)
        x = torch.as_tensor(train.embeddings, dtype=torch.float32)
        y = torch.as_tensor(train.score, dtype=torch.float32)
        m = torch.as_tensor(train.mask, dtype=torch.float32)
        logc = torch.log(torch.as_tensor(train.cost, dtype=torch.float32).clamp_min(1e-9))
        n_actions = y.shape[1]
        quality, cost = torch.nn.Linear(x.shape[1], n_actions), torch.nn.Linear(x.shape[1], n_actions)
        _, c0 = train.action_means()
        with torch.no_grad():
            cost.bias.copy_(torch.log(torch.as_tensor(np.maximum(c0, 1e-9), dtype=torch.float32)))
        opt = torch.optim.Adam([*quality.parameters(), *cost.parameters()], lr=0.02)
        denom = m.sum().clamp_min(1.0)
        for _ in range(self.steps):
            opt.zero_grad()
            bce = torch.nn.functional.binary_cross_entropy_with_logits(quality(x), y, reduction="none")
            mse = (cost(x) - logc) ** 2
            loss = ((bce + mse) * m).sum() / denom
            loss = loss + l2 * (quality.weight.pow(2).sum() + cost.weight.pow(2).sum())
            loss.backward()
            opt.step()
        return quality, cost

    @staticmethod
    def _apply(models: tuple[torch.nn.Linear, torch.nn.Linear], emb: np.ndarray):
        with torch.no_grad():
            x = torch.as_tensor(emb, dtype=torch.float32)
            return torch.sigmoid(models[0](x)).numpy(), torch.exp(models[1](x)).numpy()

    def fit(self, train: TrainingSet) -> "LinearRouter":
        if self.l2 is None:
            fit_rows, held_rows = _inner_split(train, self.seed)
            inner, held = train.subset(fit_rows), train.subset(held_rows)
            errors = {}
            for l2 in self.candidates:
                q, _ = self._apply(self._fit_params(inner, l2), held.embeddings)
                errors[l2] = _masked_mse(q, held.score, held.mask)
            self.l2_ = min(errors, key=lambda l2: errors[l2])
            logger.info("linear: chose l2=%g on the inner split (mse %s)", self.l2_, errors)
        else:
            self.l2_ = self.l2
        self.models_ = self._fit_params(train, self.l2_)
        return self

    def predict(self, embeddings: np.ndarray, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        return self._apply(self.models_, embeddings)


BASELINES: dict[str, Callable[..., BaselineRouter]] = {
    "constant": ConstantRouter,
    "random": RandomRouter,
    "knn": KNNRouter,
    "linear": LinearRouter,
}
