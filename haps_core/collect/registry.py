"""The collection strategies by name: `full`, `uniform`, `adaptive` (the default search) and
`thompson` (the earlier adaptive strategy, kept for comparison)."""

from collections.abc import Sequence

import numpy as np

from haps_core.collect.informative import InformativeStrategy
from haps_core.collect.strategies import Strategy, ThompsonStrategy, UniformStrategy

STRATEGIES = ("full", "uniform", "adaptive", "thompson")


def make_strategy(
    name: str,
    available: Sequence[Sequence[int]],
    seed: int,
    clusters: "Sequence[int] | np.ndarray | None" = None,
    action_costs: "Sequence[float] | np.ndarray | None" = None,
    action_backends: "Sequence[int] | np.ndarray | None" = None,
) -> Strategy:
    """A strategy by name; ValueError for an unknown one (listing the allowed names)."""
    if name == "full":
        return Strategy(available, seed)
    if name == "uniform":
        return UniformStrategy(available, seed)
    if name == "adaptive":
        return InformativeStrategy(available, seed, clusters, action_costs, action_backends)
    if name == "thompson":
        return ThompsonStrategy(available, seed, clusters, action_costs)
    msg = f"`strategy` must be one of {list(STRATEGIES)}, got {name!r}"
    raise ValueError(msg)
