"""The collection strategies' own logic (issue 16), on synthetic worlds driven directly.

What is synthetic: the outcomes (a seeded function of question and action) and the budget (a
sum of action costs); the strategies, their values and their propensities are the real code.
Collection end to end, resume and budget safety are tested in the other test_collect_* files.
"""

from collections.abc import Callable

import numpy as np
import pytest

from haps_core.collect.informative import InformativeStrategy
from haps_core.collect.registry import STRATEGIES, make_strategy
from haps_core.collect.strategies import Choice, Strategy


def drive(
    strategy: Strategy, score: Callable[[int, int], float], cost: np.ndarray, budget: float, k: int = 32
) -> list[Choice]:
    """Runs rounds of `k` cells until the budget is spent, feeding outcomes back in plan order."""
    spent = 0.0
    chosen: list[Choice] = []
    for rnd in range(10_000):
        left = budget - spent

        def fits(q: int, a: int, left: float = left) -> bool:
            return cost[a] <= left

        plan = strategy.propose(rnd, k, fits)
        if not plan:
            break
        for c in plan:
            if spent + cost[c.action] > budget:
                break
            spent += cost[c.action]
            strategy.observe(c.question, c.action, score(c.question, c.action))
            chosen.append(c)
    return chosen


def test_settings_of_one_backend_that_repeat_each_other_are_not_collected_twice_per_question() -> None:
    # Backend 0 has 8 settings whose outcomes on a question are the same draw (a temperature sweep
    # of pure noise); backend 1 has one setting. Equal costs. Once a question has one cell of
    # backend 0, its other settings there teach almost nothing: the adaptive strategy should spend
    # on more (question, backend) pairs than uniform does, having learnt that correlation.
    n_q, rng = 200, np.random.default_rng(0)
    p = rng.random((n_q, 2))
    draws = rng.random((n_q, 2))
    backends = np.asarray([0] * 8 + [1])
    cost = np.ones(9)

    def score(q: int, a: int) -> float:
        return float(draws[q, backends[a]] < p[q, backends[a]])

    available = [list(range(9))] * n_q
    budget = 0.2 * n_q * 9
    pairs = {}
    for name in ("uniform", "adaptive"):
        strategy = make_strategy(name, available, 0, None, cost, backends)
        chosen = drive(strategy, score, cost, budget)
        pairs[name] = len({(c.question, int(backends[c.action])) for c in chosen}) / len(chosen)
        assert len(chosen) == budget
    assert isinstance(strategy, InformativeStrategy)
    rho_b, rho_0 = strategy.correlations()
    assert rho_b[0] > 0.8 and rho_0 < 0.2  # replicates within backend 0; backends independent
    # distinct pairs per cell (seeds 0-2): uniform 0.54-0.58, adaptive 0.65-0.69. A cell's value
    # is its own conditional sd, so a fresh pair of backend 0 still draws 8x as often as one of
    # backend 1 (its settings are 8 actions to learn); what falls is the value of repeats.
    assert pairs["adaptive"] > pairs["uniform"] + 0.05


def test_cheap_actions_get_more_cells_as_the_square_root_of_the_cost_ratio() -> None:
    # Two actions of equal outcome variance, one 16x the price: Neyman allocation gives the cheap
    # one sqrt(16) = 4x the cells; the draws make it approximate.
    n_q, rng = 600, np.random.default_rng(1)
    draws = rng.random((n_q, 2))
    cost = np.asarray([1.0, 16.0])
    strategy = InformativeStrategy([[0, 1]] * n_q, seed=3, action_costs=cost)
    chosen = drive(strategy, lambda q, a: float(draws[q, a] < 0.5), cost, budget=0.25 * n_q * cost.sum())
    counts = np.bincount([c.action for c in chosen], minlength=2)
    assert 2.5 < counts[0] / counts[1] < 6.5, counts


def test_an_action_that_never_varies_gets_few_cells() -> None:
    # Action 0 always scores 1, action 1 is a coin flip: the first has nothing left to teach.
    n_q, rng = 400, np.random.default_rng(2)
    flips = rng.random(n_q) < 0.5
    cost = np.ones(2)
    strategy = InformativeStrategy([[0, 1]] * n_q, seed=0, action_costs=cost)
    chosen = drive(strategy, lambda q, a: 1.0 if a == 0 else float(flips[q]), cost, budget=0.4 * n_q * 2)
    counts = np.bincount([c.action for c in chosen], minlength=2)
    assert counts[1] > 2 * counts[0] > 0, counts


def test_propensities_are_the_value_share_of_each_question_and_the_plan_is_reproducible() -> None:
    rng = np.random.default_rng(4)
    n_q, n_a = 50, 5
    cost = np.asarray([1.0, 2.0, 4.0, 8.0, 16.0])
    outcomes = rng.random((n_q, n_a))
    runs = []
    for _ in range(2):
        s = InformativeStrategy([list(range(n_a))] * n_q, seed=7, action_costs=cost)
        first = s.values()
        plan = s.propose(0, 10, lambda q, a: True)
        for c in plan:
            row = first[s.cell_q == c.question]
            assert c.propensity == pytest.approx(first[s.cell_index[(c.question, c.action)]] / row.sum())
            assert 0.0 < c.propensity <= 1.0
        runs.append(plan + drive(s, lambda q, a: float(outcomes[q, a]), cost, budget=60.0))
    assert runs[0] == runs[1]
    cells = [(c.question, c.action) for c in runs[0]]
    assert len(cells) == len(set(cells))  # no cell twice


def test_strategy_names_and_unknown_name_error() -> None:
    assert STRATEGIES == ("full", "uniform", "adaptive", "thompson")
    for name in STRATEGIES:
        assert make_strategy(name, [[0, 1]], 0).name == name
    with pytest.raises(ValueError, match=r"`strategy` must be one of .*'adaptive'.* got 'greedy'"):
        make_strategy("greedy", [[0, 1]], 0)
