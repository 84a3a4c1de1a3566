"""The one decision routine: `route_from_predictions` (predictions are hand-written arrays)."""

import numpy as np
import pytest

from haps_core.catalog import Action, RoutingSpace
from haps_core.decision import route_from_predictions

SPACE = RoutingSpace.from_actions(
    [Action.make(b, temperature=t) for b in ("a", "b", "c") for t in (0.0, 1.0)]
)


def test_allowed_actions_bound_the_choice_and_the_runner_ups_even_when_predictions_are_nan():
    n = len(SPACE.actions)
    quality = np.full((2, n), np.nan)
    cost = np.ones((2, n))
    allowed = np.array([a.backend == "b" for a in SPACE.actions])
    quality[:, ~allowed] = 0.9  # the excluded actions look best
    for d in route_from_predictions(SPACE, quality, cost, cost_weight=0.0, allowed=allowed):
        assert d.backend == "b"
        assert all(alt.backend == "b" for alt in d.alternatives)


def test_allowed_mask_per_query_and_an_empty_row_is_refused():
    n = len(SPACE.actions)
    quality = np.tile(np.linspace(0.1, 0.9, n), (2, 1))
    cost = np.zeros((2, n))
    allowed = np.zeros((2, n), dtype=bool)
    allowed[0, 0] = allowed[1, 2] = True
    d0, d1 = route_from_predictions(SPACE, quality, cost, cost_weight=0.0, allowed=allowed)
    assert (d0.action_index, d1.action_index) == (0, 2)
    assert d0.alternatives == () and d1.alternatives == ()
    allowed[1] = False
    with pytest.raises(ValueError, match="excludes every action"):
        route_from_predictions(SPACE, quality, cost, cost_weight=0.0, allowed=allowed)


def test_cost_weight_and_target_mean_cost_are_exclusive():
    # a cost weight and a target mean cost both set the trade-off; the hard cap combines with either
    q, c = np.ones((1, len(SPACE.actions))), np.ones((1, len(SPACE.actions)))
    with pytest.raises(ValueError, match="not both"):
        route_from_predictions(SPACE, q, c, cost_weight=1.0, target_mean_cost=1.0, reference=(q, c))
    (d,) = route_from_predictions(SPACE, q, c, cost_weight=1.0, max_cost_per_query=1.0)
    assert d.predicted_cost <= 1.0 and not d.over_budget
