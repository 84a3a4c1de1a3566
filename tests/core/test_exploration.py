"""Issue 17, item: exploration (`route(..., exploration=...)`), with propensities.

REAL: a HAPS router trained here (tiny random BERT written locally, synthetic log) routed through
`HAPSRouter.route`; the draws' frequencies are checked against the recorded propensities with
fixed predictions through `route_from_predictions` (our own decision logic, no model needed).
"""

import numpy as np
import pytest

from haps_core.catalog import Action, Backend, RoutingSpace
from haps_core.decision import route_from_predictions
from haps_core.exploration import Exploration
from tests.helpers.tiny_routers import TEXTS, tiny_router


@pytest.fixture(scope="module")
def router(tmp_path_factory):
    return tiny_router(tmp_path_factory.mktemp("explore"))[0]


def _space() -> RoutingSpace:
    backends = tuple(Backend(n, 1.0, p) for n, p in (("a", 1.0), ("b", 5.0), ("c", 50.0)))
    return RoutingSpace(backends, tuple(Action(b.name) for b in backends))


QUALITY = np.array([[0.5, 0.7, 0.9]])
COST = np.array([[0.001, 0.002, 0.05]])


def _draws(policy: Exploration, n: int = 4000, **kw):
    q, c = np.repeat(QUALITY, n, 0), np.repeat(COST, n, 0)
    return route_from_predictions(_space(), q, c, cost_weight=2.0, exploration=policy, **kw)


def test_issue17_exploration_off_by_default_is_greedy(router):
    plain = router.route(TEXTS * 5, cost_weight=10.0)
    none = router.route(TEXTS * 5, cost_weight=10.0, exploration=None)
    assert [d.to_dict() for d in plain] == [d.to_dict() for d in none]
    for d in plain:
        assert d.propensity == 1.0 and not d.explored
        assert "propensity" not in d.to_dict() and "explored" not in d.to_dict()


def test_issue17_epsilon_greedy_frequencies_match_propensities():
    # greedy at cost weight 2: U = 0.498, 0.696, 0.8 -> c (index 2)
    decisions = _draws(Exploration(epsilon=0.3, seed=0))
    picks = np.array([d.action_index for d in decisions])
    props = {d.action_index: d.propensity for d in decisions}
    assert props[2] == pytest.approx(0.7 + 0.1) and props[0] == pytest.approx(0.1)
    for a, p in props.items():
        assert abs((picks == a).mean() - p) < 4 * np.sqrt(p * (1 - p) / len(picks)) + 1e-9
    explored = [d for d in decisions if d.explored]
    assert explored and all(d.alternatives[0].action_index == 2 for d in explored)
    assert explored[0].to_dict()["explored"] is True


def test_issue17_softmax_propensities_follow_utilities():
    decisions = _draws(Exploration(kind="softmax", temperature=0.1, seed=1))
    u = QUALITY[0] - 2.0 * COST[0]
    expected = np.exp(u / 0.1) / np.exp(u / 0.1).sum()
    picks = np.array([d.action_index for d in decisions])
    for d in decisions[:50]:
        assert d.propensity == pytest.approx(expected[d.action_index])
    assert np.abs(np.bincount(picks, minlength=3) / len(picks) - expected).max() < 0.03


def test_issue17_cost_premium_bounds_the_exploration():
    # greedy at cost weight 20 is b (U: 0.48, 0.66, -0.1); c costs 0.048 more: never with premium 0.01
    q, c = np.repeat(QUALITY, 2000, 0), np.repeat(COST, 2000, 0)
    policy = Exploration(epsilon=1.0, max_cost_premium=0.01, seed=0)
    out = route_from_predictions(_space(), q, c, cost_weight=20.0, exploration=policy)
    assert {d.action_index for d in out} == {0, 1}
    assert all(d.propensity == pytest.approx(0.5) for d in out)
    capped = route_from_predictions(_space(), q, c, cost_weight=0.0, max_cost_per_query=0.0015,
                                    exploration=Exploration(epsilon=1.0, seed=0))  # fmt: skip
    assert {d.action_index for d in capped} == {0}  # the cap leaves a only


def test_issue17_exploration_is_seeded_and_reproducible(router):
    texts = TEXTS * 40
    a = router.route(texts, cost_weight=10.0, exploration=Exploration(epsilon=0.5, seed=7))
    b = router.route(texts, cost_weight=10.0, exploration={"epsilon": 0.5, "seed": 7})
    c = router.route(texts, cost_weight=10.0, exploration=Exploration(epsilon=0.5, seed=8))
    assert [d.to_dict() for d in a] == [d.to_dict() for d in b]
    assert [d.action_index for d in a] != [d.action_index for d in c]
    assert any(d.explored for d in a) and all(0 < d.propensity <= 1 for d in a)


def test_issue17_exploration_stays_in_the_pool(router):
    out = router.route(TEXTS * 30, cost_weight=10.0, backends=["small"],
                       exploration=Exploration(epsilon=1.0, seed=0))  # fmt: skip
    assert {d.backend for d in out} == {"small"}


@pytest.mark.parametrize(
    ("kwargs", "needle"),
    [({"kind": "ucb"}, "`kind`"), ({"epsilon": 1.5}, "`epsilon`"), ({"temperature": 0}, "`temperature`"),
     ({"max_cost_premium": -1}, "`max_cost_premium`")],
)  # fmt: skip
def test_issue17_exploration_rejects_bad_settings(kwargs, needle):
    with pytest.raises(ValueError, match=needle):
        Exploration(**kwargs)


def test_issue17_exploration_rejects_a_bad_policy_type(router):
    with pytest.raises(TypeError, match="`exploration`"):
        router.route(TEXTS, exploration=0.1)
