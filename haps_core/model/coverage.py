"""Coverage shrinkage: a backend seldom observed near a query is predicted nearer the local mean.

A router extrapolates every action's quality to every query, including queries unlike any on
which that action was observed. A backend logged only on a few queries (a new model tried on a
handful of questions, or one whose logs hold only its best results) is then predicted from its
intercept, at the quality it showed there, on every query, and takes all traffic. Issue 15 asks
that poorly covered actions be shrunk toward their prior; this module does it at decision time,
from the evidence the router already stores (`haps_core.model.ood`: the `k` nearest stored
training queries of each query and which actions each of them observed):

- a backend is poorly covered at a query when it is both rare in the training log (observed on
  a smaller share of the training queries than the median backend: its global ratio ``g``) and
  rare near the query (fewer of the `k` nearest training queries observed it, any of its
  configurations, than observed the best-supported backend there: its local ratio ``l``); its
  support is ``rho = max(g, l)``, 1 for a backend as common as the typical one or as well
  observed here as any other;
- its quality is shrunk toward the local mean, the mean predicted quality of the actions those
  neighbours observed (weighted by how many observed each), with weight
  ``w = rho k / (rho k + prior) * (k + prior) / k`` (1 at full support: a complete log routes
  exactly as before; ``prior`` is in pseudo-neighbours of the local mean; 0 turns it off).

Both ratios are needed. The local one alone shrinks the backends of a log whose datasets were run
on different subsets of backends (haps-bench: 40% of its queries observed only the two GPT
models), and, on a bandit log (one action per query), shrinks every backend by chance; the
global one alone would shrink a new backend on the queries it was observed on too. Support is
counted per backend, not per configuration: evaluation logs often try a backend's non-default
settings on a small share of queries by design, and those are learned jointly through the
parameter generation network. Measured with `python benchmarks/sparse_new_model.py` and, for
the AIQ it costs (none beyond noise on complete, 25%-thinned and bandit logs), in the README.
"""

import math

import numpy as np

# pseudo-neighbours of the local mean a backend's quality is shrunk toward (`HAPSRouter.coverage_prior`)
COVERAGE_PRIOR = 3.0


def check_coverage_prior(value: object) -> float:
    """`value` as the shrinkage's prior strength: a finite number >= 0, else a ValueError."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or value < 0:
        msg = (
            "`coverage_prior` must be a finite number >= 0 (pseudo-neighbours of the local mean a "
            f"poorly covered backend is shrunk toward; 0: no shrinkage), got {value!r}"
        )
        raise ValueError(msg)
    return float(value)


def backend_columns(backend_of: np.ndarray, n_backends: int) -> np.ndarray:
    """[A, n_backends] 0/1 matrix: which backend each action belongs to."""
    out = np.zeros((len(backend_of), n_backends), dtype=np.float64)
    out[np.arange(len(backend_of)), backend_of] = 1.0
    return out


def common_ratios(backend_share: np.ndarray) -> np.ndarray:
    """[B] each backend's share of the training queries over the median backend's, at most 1
    (the global ratio of the module docstring; 1 for all when the median backend has none)."""
    typical = float(np.median(backend_share)) if len(backend_share) else 0.0
    if typical <= 0:
        return np.ones_like(backend_share, dtype=np.float64)
    return np.minimum(np.asarray(backend_share, dtype=np.float64) / typical, 1.0)


def shrink_to_coverage(
    quality: np.ndarray,
    coverage: np.ndarray,
    backend_support: np.ndarray,
    common: np.ndarray,
    backend_of: np.ndarray,
    k: int,
    prior: float,
) -> np.ndarray:
    """[n, A] quality shrunk by coverage (see the module docstring); `quality` itself where every
    backend is fully supported (the usual case on a complete log: no array is copied).

    Args:
        quality: [n, A] predicted quality.
        coverage: [n, A] the share of each query's `k` nearest training queries that observed
            each action (the weights of the local mean).
        backend_support: [n, B] how many of them observed each backend (any of its configurations).
        common: [B] each backend's global ratio (`common_ratios`).
        backend_of: [A] each action's backend index.
        k: the number of neighbours counted.
        prior: the prior's strength in neighbours (0: `quality` unchanged).
    """
    if not prior or k < 1:
        return quality
    best = backend_support.max(axis=1, keepdims=True).astype(np.float64)
    near = np.divide(backend_support, best, out=np.ones(backend_support.shape), where=best > 0)
    rho = np.maximum(near, common[None, :])  # [n, B]
    if rho.min() >= 1.0:
        return quality
    by_backend = np.minimum(rho * k / (rho * k + prior) * ((k + prior) / k), 1.0)  # [n, B]
    weight = by_backend[:, backend_of]
    seen = coverage.sum(axis=1, keepdims=True)
    mean = quality.mean(axis=1, keepdims=True)
    local = np.divide((coverage * quality).sum(axis=1, keepdims=True), seen, out=mean, where=seen > 0)
    return (weight * quality + (1.0 - weight) * local).astype(quality.dtype, copy=False)
