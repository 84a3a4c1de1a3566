"""What a router knows of its training queries: out-of-distribution score, evidence, examples.

`fit_ood` stores, in the router's checkpoint, a bounded sample of its training queries in the
router's input space (unit-length query embeddings), which actions each of them observed, the
observed scores and texts of the first of them (for explanations), and per-action summaries of
the training log. A query's OOD score is its Mahalanobis distance (squared) to the training
queries' embeddings, under a covariance shrunk toward a multiple of the identity: it holds up on
static (bag-of-tokens) embeddings, where the cosine distance to the nearest training queries
separates chat from exam questions poorly. Checkpoints fitted with the older ``knn`` score (mean
cosine distance to the `k` nearest stored queries) keep it. The threshold is a high quantile of
the scores of training queries held out of the fit, so about ``1 - quantile`` of
in-distribution queries are flagged.
"""

import logging
from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from haps_core.logs import RoutingLog, split_queries
from haps_core.model.compiled_evidence import compiled_evidence
from haps_core.model.coverage import backend_columns, common_ratios

if TYPE_CHECKING:
    from haps_core.model.router import HAPSRouter

logger = logging.getLogger(__name__)

# Tensors a checkpoint written before these statistics lacks (loaded empty: OOD disabled).
STATISTICS_TENSORS = ("ood_bank", "ood_observed", "sample_scores", "action_stats")
# ... and those of the Mahalanobis score, which a checkpoint with the ``knn`` score lacks.
MAHALANOBIS_TENSORS = ("ood_mean", "ood_precision")
OOD_METHODS = ("mahalanobis", "knn")
SNIPPET_CHARS = 160


@dataclass(frozen=True)
class OODStats:
    """The JSON side of a router's training statistics (the tensors are router buffers).

    Attributes:
        k: neighbours averaged in the OOD score (and counted in the coverage).
        quantile: the quantile of held-out training queries' scores used as the threshold.
        threshold: queries scoring above it are out of distribution.
        calibration_queries: held-out training queries the threshold was calibrated on.
        min_share: actions observed on fewer than this share of training queries are rare:
            never the default OOD action, and named in the training warning.
        rare_actions: indices of those actions.
        sample_texts: snippets of the first stored training queries (explanations).
        method: the OOD score, ``"mahalanobis"`` or ``"knn"`` (checkpoints before the former).
        shrinkage: the Mahalanobis covariance's shrinkage toward the identity (0: none).
    """

    k: int
    quantile: float
    threshold: float
    calibration_queries: int
    min_share: float
    rare_actions: list[int] = field(default_factory=list)
    sample_texts: list[str] = field(default_factory=list)
    method: str = "knn"
    shrinkage: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "OODStats":
        try:
            return cls(
                k=int(data["k"]),
                quantile=float(data["quantile"]),
                threshold=float(data["threshold"]),
                calibration_queries=int(data["calibration_queries"]),
                min_share=float(data["min_share"]),
                rare_actions=[int(a) for a in data.get("rare_actions", [])],
                sample_texts=[str(t) for t in data.get("sample_texts", [])],
                method=_check_method(str(data.get("method", "knn"))),
                shrinkage=float(data.get("shrinkage", 0.0)),
            )
        except (KeyError, TypeError, ValueError) as exc:
            msg = f"invalid `ood` statistics in the checkpoint config: {exc}"
            raise ValueError(msg) from None


def _check_method(method: str) -> str:
    if method not in OOD_METHODS:
        msg = f"`method` must be one of {list(OOD_METHODS)}, got {method!r}"
        raise ValueError(msg)
    return method


def register_statistics_buffers(router: torch.nn.Module, embed_dim: int, n_actions: int) -> None:
    """Empty statistics buffers (a router without them has OOD and coverage disabled)."""
    router.register_buffer("ood_bank", torch.zeros(0, embed_dim))
    router.register_buffer("ood_observed", torch.zeros(0, n_actions, dtype=torch.uint8))
    router.register_buffer("sample_scores", torch.zeros(0, n_actions))
    router.register_buffer("action_stats", torch.zeros(0, n_actions))  # [3, A] when fitted
    router.register_buffer("ood_mean", torch.zeros(0, embed_dim))  # [1, D] (Mahalanobis)
    router.register_buffer("ood_precision", torch.zeros(0, embed_dim))  # [D, D] (Mahalanobis)


def resize_statistics_buffers(router: torch.nn.Module, tensors: dict[str, torch.Tensor]) -> None:
    """Gives a freshly built router's statistics buffers the saved shapes (before loading)."""
    for name in STATISTICS_TENSORS + MAHALANOBIS_TENSORS:
        saved = tensors.get(name)
        if saved is not None and saved.dim() == 2:
            setattr(router, name, torch.zeros(saved.shape, dtype=getattr(router, name).dtype))


def unit_embeddings(router: "HAPSRouter", features: torch.Tensor | np.ndarray) -> np.ndarray:
    """[n, embed_dim] unit-length query embeddings (the embedding part of the router's input)."""
    x = torch.as_tensor(features)[:, : router.config.embed_dim].detach().cpu().numpy()
    x = x.astype(np.float32)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def neighbours(bank: np.ndarray, emb: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices and cosine similarities of each row's `k` nearest bank rows, nearest first."""
    k = min(k, len(bank))
    sim = emb @ bank.T
    idx = np.argpartition(-sim, k - 1, axis=1)[:, :k]
    part = np.take_along_axis(sim, idx, axis=1)
    order = np.argsort(-part, axis=1, kind="stable")
    return np.take_along_axis(idx, order, axis=1), np.take_along_axis(part, order, axis=1)


@dataclass(frozen=True)
class Evidence:
    """Per query: OOD score and flag, nearest stored training queries, coverage of each action."""

    score: np.ndarray  # [n]
    flagged: np.ndarray  # [n] bool
    index: np.ndarray  # [n, k] into the stored sample
    similarity: np.ndarray  # [n, k]
    coverage: np.ndarray  # [n, A]: share of the k nearest that observed the action
    backend_support: np.ndarray  # [n, B]: how many of the k nearest observed the backend
    backend_common: np.ndarray  # [B]: its share of the stored queries over the median backend's


def evidence(router: "HAPSRouter", features: torch.Tensor | np.ndarray) -> Evidence | None:
    """The OOD scores and coverage of queries (None when the router stores no statistics)."""
    stats = router.ood_stats
    if stats is None or not len(router.ood_bank):
        return None
    arrays = _statistics_arrays(router)
    compiled = compiled_evidence(router, arrays, stats)  # where the heads run compiled
    if compiled is not None:
        score, idx, sim, coverage, support = compiled.run(features)
        return Evidence(score, score > stats.threshold, idx, sim, coverage, support, arrays.backend_common)
    emb = unit_embeddings(router, features)
    idx, sim = neighbours(arrays.bank, emb, stats.k)
    if stats.method == "mahalanobis" and arrays.precision is not None:
        score = mahalanobis(emb, arrays.mean, arrays.precision)
    else:
        score = 1.0 - sim.mean(axis=1)
    coverage = arrays.observed[idx].mean(axis=1)
    support = arrays.backend_observed[idx].sum(axis=1)
    return Evidence(score, score > stats.threshold, idx, sim, coverage, support, arrays.backend_common)


@dataclass(frozen=True)
class _StatisticsArrays:
    """The statistics buffers as the numpy arrays `evidence` computes with (converted once)."""

    tensors: tuple[torch.Tensor, ...]  # the buffers converted (held: compared by identity)
    versions: tuple[int, ...]
    bank: np.ndarray  # [N, D] float32
    observed: np.ndarray  # [N, A] float64
    backend_observed: np.ndarray  # [N, B] float64: 1 where any of the backend's actions was
    backend_common: np.ndarray  # [B]: `haps_core.model.coverage.common_ratios` of its mean
    mean: np.ndarray  # [1, D] float64
    precision: np.ndarray | None  # [D, D] float64, None without Mahalanobis statistics


def _statistics_arrays(router: "HAPSRouter") -> _StatisticsArrays:
    """The router's statistics as numpy arrays, rebuilt only when a buffer changed (converting
    them costs more than scoring one query)."""
    tensors = (router.ood_bank, router.ood_observed, router.ood_mean, router.ood_precision)
    versions = tuple(t._version for t in tensors)
    held = router.__dict__.get("_statistics_arrays")
    if (
        held is not None
        and held.versions == versions
        and all(a is b for a, b in zip(held.tensors, tensors, strict=True))
    ):
        return held
    observed = router.ood_observed.detach().cpu().numpy().astype(np.float64)
    by_backend = backend_columns(router.backend_of.cpu().numpy(), len(router.space.backends))
    backend_observed = np.minimum(observed @ by_backend, 1.0)
    arrays = _StatisticsArrays(
        tensors,
        versions,
        router.ood_bank.detach().cpu().numpy(),
        observed,
        backend_observed,
        common_ratios(
            backend_observed.mean(axis=0) if len(backend_observed) else np.zeros(by_backend.shape[1])
        ),
        router.ood_mean.detach().cpu().numpy().astype(np.float64),
        router.ood_precision.detach().cpu().numpy().astype(np.float64) if len(router.ood_precision) else None,
    )
    router.__dict__["_statistics_arrays"] = arrays
    return arrays


def mahalanobis(emb: np.ndarray, mean: np.ndarray, precision: np.ndarray) -> np.ndarray:
    """[n] squared Mahalanobis distances of rows of `emb` to `mean` ([1, D]) under `precision`."""
    d = emb.astype(np.float64) - mean.astype(np.float64, copy=False)
    return np.einsum("ij,ij->i", d @ precision.astype(np.float64, copy=False), d)


def gaussian_fit(emb: np.ndarray, shrinkage: float) -> tuple[np.ndarray, np.ndarray]:
    """Mean [1, D] and precision [D, D] of `emb` under a covariance shrunk toward the identity:
    ``cov + shrinkage * mean(diag(cov)) * I`` (well conditioned with fewer rows than dims)."""
    x = emb.astype(np.float64)
    mean = x.mean(axis=0, keepdims=True)
    cov = np.cov((x - mean).T)
    cov = cov + shrinkage * float(np.trace(cov)) / cov.shape[0] * np.eye(cov.shape[0])
    return mean, np.linalg.inv(cov)


def observed_scores(log: RoutingLog, queries: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """[len(queries), A] observed mask and mean observed score (0 where unobserved)."""
    pos = np.full(log.n_queries, -1)
    pos[queries] = np.arange(len(queries))
    rows = np.flatnonzero(pos[log.row_query] >= 0)
    r, a = pos[log.row_query[rows]], log.row_action[rows]
    total = np.zeros((len(queries), len(log.space)))
    count = np.zeros_like(total)
    np.add.at(total, (r, a), log.score[rows])
    np.add.at(count, (r, a), 1.0)
    return count > 0, np.divide(total, count, out=np.zeros_like(total), where=count > 0)


def action_summary(log: RoutingLog, train: np.ndarray) -> np.ndarray:
    """[3, A]: per action the mean observed score, mean observed cost, and the share of the
    training queries on which it was observed."""
    rows = np.flatnonzero(train[log.row_query])
    n_a = len(log.space)
    count = np.bincount(log.row_action[rows], minlength=n_a).astype(np.float64)
    score = np.bincount(log.row_action[rows], weights=log.score[rows], minlength=n_a)
    cost = np.bincount(log.row_action[rows], weights=log.cost[rows], minlength=n_a)
    seen = np.zeros((log.n_queries, n_a), dtype=bool)
    seen[log.row_query[rows], log.row_action[rows]] = True
    share = seen[train].sum(axis=0) / max(int(train.sum()), 1)
    safe = np.maximum(count, 1.0)
    return np.stack([score / safe, cost / safe, share]).astype(np.float32)


RARE_KEYS_SHOWN = 8


def rare_actions(router: "HAPSRouter", min_share: float = 0.05) -> list[str]:
    """Keys of the actions observed on fewer than `min_share` of the router's training queries,
    rarest first (from the statistics its checkpoint stores; [] when it has none)."""
    if not len(router.action_stats):
        return []
    share = router.action_stats[2].cpu().numpy()
    rare = np.flatnonzero(share < min_share)
    return [router.space.actions[int(a)].key for a in rare[np.argsort(share[rare], kind="stable")]]


def _rare_text(keys: list[str], min_share: float) -> str:
    """Per backend how many of its actions are rare, and the first few keys: a log line stays
    readable when a thin log leaves 100+ actions rare; `rare_actions` gives them all."""
    per_backend = Counter(key.split("|", 1)[0] for key in keys)
    text = ", ".join(f"{b}: {n}" for b, n in sorted(per_backend.items()))
    shown = ", ".join(keys[:RARE_KEYS_SHOWN])
    more = len(keys) - RARE_KEYS_SHOWN
    if more > 0:
        shown += f" and {more} more (all: haps_core.model.ood.rare_actions(router, {min_share:g}))"
    return f"{text}; {shown}"


def fit_ood(
    router: "HAPSRouter",
    log: RoutingLog,
    train_mask: np.ndarray | None = None,
    *,
    features: torch.Tensor | np.ndarray | None = None,
    k: int = 5,
    quantile: float = 0.99,
    calibration_fraction: float = 0.2,
    bank_size: int = 1024,
    sample_size: int = 256,
    min_share: float = 0.05,
    seed: int = 0,
    method: str = "mahalanobis",
    shrinkage: float = 0.1,
) -> "HAPSRouter":
    """Computes and stores the router's training statistics from its training log (in place).

    Args:
        router: a trained router over the log's catalog (with an encoder, unless `features`).
        log: its training log.
        train_mask: per log query, True where it was trained on (default: all).
        features: [n_queries, input_dim] router features of all the log's queries (default:
            computed with the router's encoder).
        k: neighbours in the OOD score and the coverage.
        quantile: threshold = this quantile of held-out training queries' scores.
        calibration_fraction: share of the training queries held out to calibrate on.
        bank_size, sample_size: at most this many stored training queries; the first
            `sample_size` of them also store their snippet and observed scores.
        min_share: actions observed on fewer than this share of training queries are rare.
        seed: seed of the held-out split and of the sample.
        method: the OOD score: ``"mahalanobis"`` (default) or ``"knn"`` (mean cosine distance
            to the `k` nearest stored queries).
        shrinkage: with ``"mahalanobis"``, the covariance's shrinkage toward the identity.
    """
    _check_method(method)
    if not shrinkage > 0.0 or not np.isfinite(shrinkage):
        msg = f"`shrinkage` must be a finite number > 0, got {shrinkage!r}"
        raise ValueError(msg)
    if not 0.0 < quantile < 1.0:
        msg = f"`quantile` must be in (0, 1), got {quantile!r}"
        raise ValueError(msg)
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        msg = f"`k` must be an integer >= 1, got {k!r}"
        raise ValueError(msg)
    if len(log.space) != len(router.space):
        msg = f"`log` has {len(log.space)} actions but the router's catalog {len(router.space)}"
        raise ValueError(msg)
    train = np.ones(log.n_queries, dtype=bool) if train_mask is None else np.asarray(train_mask, bool)
    train_idx = np.flatnonzero(train)
    held = split_queries([log.query_ids[i] for i in train_idx], calibration_fraction, seed=seed + 1)
    cal_idx, bank_idx = train_idx[held], train_idx[~held]
    if len(bank_idx) < k or len(cal_idx) < 10:
        msg = f"too few training queries for OOD statistics ({len(train_idx)}); need >= {k + 10}"
        raise ValueError(msg)
    if len(bank_idx) > bank_size:
        bank_idx = np.sort(np.random.default_rng(seed).choice(bank_idx, bank_size, replace=False))
    needed = np.concatenate([bank_idx, cal_idx])
    if features is None:
        feats = unit_embeddings(router, router.featurize([log.queries[i] for i in needed]))
    else:
        feats = unit_embeddings(router, torch.as_tensor(features)[torch.as_tensor(needed)])
    bank, cal = feats[: len(bank_idx)], feats[len(bank_idx) :]
    if method == "mahalanobis":
        mean, precision = gaussian_fit(bank, shrinkage)
        cal_scores = mahalanobis(cal, mean, precision)
    else:
        mean, precision = np.zeros((0, bank.shape[1])), np.zeros((0, bank.shape[1]))
        cal_scores = 1.0 - neighbours(bank, cal, k)[1].mean(axis=1)
    threshold = float(np.quantile(cal_scores, quantile))
    observed, scores = observed_scores(log, bank_idx)
    summary = action_summary(log, train)
    n_sample = min(sample_size, len(bank_idx))
    router.ood_bank = torch.as_tensor(bank)
    router.ood_observed = torch.as_tensor(observed.astype(np.uint8))
    router.sample_scores = torch.as_tensor(scores[:n_sample].astype(np.float32))
    router.action_stats = torch.as_tensor(summary)
    rare = [int(a) for a in np.flatnonzero(summary[2] < min_share)]
    if rare:
        logger.warning(
            "%d action(s) observed on fewer than %.0f%% of the training queries (their predictions "
            "rest on little evidence): %s",
            len(rare),
            100 * min_share,
            _rare_text(rare_actions(router, min_share), min_share),
        )
    texts = [" ".join(log.queries[i].split())[:SNIPPET_CHARS] for i in bank_idx[:n_sample]]
    router.ood_mean = torch.as_tensor(mean.astype(np.float32))
    router.ood_precision = torch.as_tensor(precision.astype(np.float32))
    router.ood_stats = OODStats(
        k,
        quantile,
        threshold,
        len(cal_idx),
        min_share,
        rare,
        texts,
        method,
        shrinkage if method != "knn" else 0.0,
    )
    logger.info(
        "OOD threshold %.4f (%.3g quantile of %d held-out queries)", threshold, quantile, len(cal_idx)
    )
    return router
