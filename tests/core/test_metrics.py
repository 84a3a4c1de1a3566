"""Tests of haps_core.metrics against hand-computed cost-quality frontiers and metrics."""

import math

import numpy as np
import pytest

from haps_core.metrics import (
    BootstrapResult,
    Frontier,
    RouterMetrics,
    aiq,
    effective_cost_at,
    effective_quality,
    oracle_point,
    paired_bootstrap,
    points_from_choices,
    router_metrics,
    single_action_points,
    zero_router_metrics,
)

LOG2 = math.log10(2.0)
LN10 = math.log(10.0)

# A 4-query, 3-action block with per-action constant costs 1, 2, 4.
#   action:     a0  a1  a2
#   q0 scores:   1   1   1
#   q1 scores:   0   1   1
#   q2 scores:   0   0   1
#   q3 scores:   1   0   0
# Means: a0 = (1, 0.5), a1 = (2, 0.5) (dominated by a0), a2 = (4, 0.75).
# Oracle: q0 -> a0 (tie, cheapest, cost 1), q1 -> a1 (cost 2), q2 -> a2 (cost 4), q3 -> a0 (1):
#   Q_oracle = 1, C_oracle = (1 + 2 + 4 + 1) / 4 = 2.
# Best single action (as if chosen on training logs): a2, so C_best = 4, Q_best = 0.75.
# Zero frontier: vertices (1, 0.5), (4, 0.75): F0(c) = 0.5 + (c - 1) / 12 on [1, 4].
S_BLOCK = np.array([[1, 1, 1], [0, 1, 1], [0, 0, 1], [1, 0, 0]], dtype=float)
C_BLOCK = np.tile(np.array([1.0, 2.0, 4.0]), (4, 1))
BEST = 2


def _log_integral_linear(c1: float, c2: float, g1: float, g2: float) -> float:
    """Integral over x = log10(c) in [log10 c1, log10 c2] of the line through (c1,g1), (c2,g2).

    g(c) = g1 + m (c - c1) and integral of 10**x dx = 10**x / ln 10.
    """
    m = (g2 - g1) / (c2 - c1)
    dx = math.log10(c2) - math.log10(c1)
    return g1 * dx + m * ((c2 - c1) / LN10 - c1 * dx)


# ------------------------------------------------------------------------------------------
# Frontier
# ------------------------------------------------------------------------------------------


def test_hull_drops_dominated_and_non_convex_points() -> None:
    # (2, 0.55) lies below the chord (1, 0.5)-(3, 0.8), which gives 0.65 at c = 2: dropped.
    # (4, 0.7) is dominated by (3, 0.8): dropped. (3, 0.6) loses to (3, 0.8) at the same cost.
    # Remaining slopes 0.15 then 0.05: concave, so vertices (1, .5), (3, .8), (5, .9).
    f = Frontier.from_points([4, 2, 1, 3, 5, 3], [0.7, 0.55, 0.5, 0.8, 0.9, 0.6])
    np.testing.assert_allclose(f.costs, [1, 3, 5])
    np.testing.assert_allclose(f.qualities, [0.5, 0.8, 0.9])


def test_hull_drops_collinear_middle_point() -> None:
    # (2, 0.6) lies exactly on the chord (1, 0.5)-(3, 0.7): not a vertex.
    f = Frontier.from_points([1, 2, 3], [0.5, 0.6, 0.7])
    np.testing.assert_allclose(f.costs, [1, 3])


def test_frontier_is_flat_right_of_maximum() -> None:
    # (4, 0.5) is dominated by (2, 0.9); beyond c = 2 the frontier stays at 0.9.
    f = Frontier.from_points([1, 2, 4], [0.2, 0.9, 0.5])
    np.testing.assert_allclose(f.costs, [1, 2])
    assert f.quality_at(4.0) == pytest.approx(0.9)
    assert f.quality_at(1e6) == pytest.approx(0.9)
    assert f.max_quality == pytest.approx(0.9)
    assert f.min_cost == pytest.approx(1.0)


def test_quality_at_interpolates_linearly() -> None:
    f = Frontier.from_points([1, 3, 5], [0.5, 0.8, 0.9])
    # c = 2: halfway between (1, .5) and (3, .8) -> 0.65; c = 4: halfway to (5, .9) -> 0.85.
    assert f.quality_at(2.0) == pytest.approx(0.65)
    assert f.quality_at(4.0) == pytest.approx(0.85)
    assert f.quality_at(1.0) == pytest.approx(0.5)
    assert math.isnan(f.quality_at(0.5))
    out = f.quality_at(np.array([0.5, 2.0, 6.0]))
    assert isinstance(out, np.ndarray)
    assert math.isnan(out[0])
    np.testing.assert_allclose(out[1:], [0.65, 0.9])


def test_cost_at_inverts_frontier() -> None:
    f = Frontier.from_points([1, 3, 5], [0.5, 0.8, 0.9])
    # 0.65 on the first segment: 1 + (0.65 - 0.5) / 0.15 = 2; 0.85 on the second: 3 + 1 = 4.
    assert f.cost_at(0.65) == pytest.approx(2.0)
    assert f.cost_at(0.85) == pytest.approx(4.0)
    assert f.cost_at(0.9) == pytest.approx(5.0)
    # At or below the first vertex's quality: the first vertex's cost.
    assert f.cost_at(0.5) == pytest.approx(1.0)
    assert f.cost_at(0.1) == pytest.approx(1.0)
    # Never reached.
    assert math.isnan(f.cost_at(0.95))


def test_frontier_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="same length"):
        Frontier.from_points([1, 2], [0.5])
    with pytest.raises(ValueError, match="non-empty"):
        Frontier.from_points([], [])
    with pytest.raises(ValueError, match="finite"):
        Frontier.from_points([1, float("nan")], [0.5, 0.6])
    with pytest.raises(ValueError, match=">= 0"):
        Frontier.from_points([-1, 2], [0.5, 0.6])
    with pytest.raises(ValueError, match="strictly increasing"):
        Frontier(np.array([2.0, 1.0]), np.array([0.5, 0.6]))
    with pytest.raises(ValueError, match="non-decreasing"):
        Frontier(np.array([1.0, 2.0]), np.array([0.6, 0.5]))


# ------------------------------------------------------------------------------------------
# Effective frontier and AIQ
# ------------------------------------------------------------------------------------------


def test_effective_quality_uses_zero_left_of_router_and_router_after() -> None:
    zero = Frontier.from_points([1, 4], [0.5, 0.75])  # F0(c) = 0.5 + (c - 1) / 12
    router = Frontier.from_points([2], [0.5])
    # c = 1.9 < c_r_min = 2: zero, 0.5 + 0.9 / 12 = 0.575. From c = 2 on: the router's own 0.5,
    # not the union with the single actions (the contract's rule).
    assert effective_quality(router, zero, 1.9) == pytest.approx(0.575)
    assert effective_quality(router, zero, 2.0) == pytest.approx(0.5)
    assert effective_quality(router, zero, 10.0) == pytest.approx(0.5)
    # Left of the cheapest action the zero frontier is clamped to its first quality.
    assert effective_quality(router, zero, 0.1) == pytest.approx(0.5)
    assert effective_quality(None, zero, 2.5) == pytest.approx(0.625)
    np.testing.assert_allclose(effective_quality(router, zero, np.array([1.9, 3.0])), [0.575, 0.5])


def test_effective_cost_at() -> None:
    zero = Frontier.from_points([1, 4], [0.5, 0.75])
    # Router from c = 2 at quality 1: 0.55 is reached by the zero part at 1 + 0.05 * 12 = 1.6 < 2;
    # 0.7 would need 1 + 0.2 * 12 = 3.4 >= 2 on the zero part, so the router's 2 wins.
    router = Frontier.from_points([2], [1.0])
    assert effective_cost_at(router, zero, 0.55) == pytest.approx(1.6)
    assert effective_cost_at(router, zero, 0.7) == pytest.approx(2.0)
    assert math.isnan(effective_cost_at(Frontier.from_points([2], [0.6]), zero, 0.7))
    # A router cheaper than every single action starts the effective frontier itself.
    cheap = Frontier.from_points([0.5, 1.5], [0.6, 0.8])
    assert effective_cost_at(cheap, zero, 0.4) == pytest.approx(0.5)
    assert effective_cost_at(cheap, zero, 0.7) == pytest.approx(1.0)


def test_aiq_of_flat_frontier_is_its_quality() -> None:
    flat = Frontier.from_points([1.0], [0.7])
    assert aiq(flat, flat, 1.0, 100.0) == pytest.approx(0.7)
    assert aiq(None, flat, 1.0, 100.0, n_grid=2001) == pytest.approx(0.7)


def test_aiq_two_actions_log_axis_matches_closed_form() -> None:
    # F(c) = (c - 1) / 99 on [1, 100]; with x = log10 c on [0, 2]:
    # AIQ = (1/2) * integral_0^2 (10**x - 1) / 99 dx = (1/2) * ((100 - 1) / ln 10 - 2) / 99
    #     = 0.5 / ln 10 - 1 / 99 ~= 0.207046.
    expected = 0.5 * ((100.0 - 1.0) / LN10 - 2.0) / 99.0
    assert expected == pytest.approx(0.207046, abs=1e-6)
    zero = Frontier.from_points([1.0, 100.0], [0.0, 1.0])
    assert aiq(None, zero, 1.0, 100.0) == pytest.approx(expected, abs=1e-12)
    assert aiq(None, zero, 1.0, 100.0, n_grid=2001) == pytest.approx(expected, abs=1e-6)
    # The same through the block-level API.
    s = np.array([[0.0, 1.0], [0.0, 1.0]])
    c = np.array([[1.0, 100.0], [1.0, 100.0]])
    assert zero_router_metrics(s, c, best_action=1).aiq == pytest.approx(expected, abs=1e-12)


def test_aiq_degenerate_cost_ranges() -> None:
    # All costs zero: routing by quality alone, AIQ = max quality 0.8.
    s = np.array([[0.2, 0.8]])
    m = zero_router_metrics(s, np.zeros((1, 2)), best_action=1)
    assert m.aiq == pytest.approx(0.8)
    assert math.isnan(m.saving)  # C_best = 0: saving undefined
    # Costs 0 and 1: the log axis starts at eps = 1e-6 instead of 0, a log range of 6.
    # F(c) = 0.2 + 0.6 c and integral of 10**x dx over [-6, 0] = (1 - eps) / ln 10, so
    # AIQ = (0.2 * 6 + 0.6 * (1 - eps) / ln 10) / 6 ~= 0.243429.
    zero = Frontier.from_points([0.0, 1.0], [0.2, 0.8])
    eps = 1e-6
    expected = (0.2 * 6.0 + 0.6 * (1 - eps) / LN10) / 6.0
    assert expected == pytest.approx(0.243429, abs=1e-6)
    assert aiq(None, zero, 0.0, 1.0) == pytest.approx(expected, abs=1e-12)
    assert aiq(None, zero, 0.0, 1.0, n_grid=4001) == pytest.approx(expected, abs=1e-6)
    with pytest.raises(ValueError, match="c_max"):
        aiq(None, zero, 2.0, 1.0)
    with pytest.raises(ValueError, match="c_min"):
        aiq(None, zero, -1.0, 1.0)
    with pytest.raises(ValueError, match="n_grid"):
        aiq(None, zero, 1.0, 2.0, n_grid=1)


# ------------------------------------------------------------------------------------------
# Points
# ------------------------------------------------------------------------------------------


def test_single_action_points_and_oracle() -> None:
    costs, quals = single_action_points(S_BLOCK, C_BLOCK)
    np.testing.assert_allclose(costs, [1, 2, 4])
    np.testing.assert_allclose(quals, [0.5, 0.5, 0.75])
    assert oracle_point(S_BLOCK, C_BLOCK) == pytest.approx((2.0, 1.0))


def test_oracle_breaks_ties_to_cheapest() -> None:
    # q0: actions 0 and 1 tie at 1 -> the cheaper action 1 (cost 2).
    # q1: all score 0 -> the cheapest action 1 (cost 4).
    # C_oracle = (2 + 4) / 2 = 3, Q_oracle = (1 + 0) / 2 = 0.5.
    s = np.array([[1.0, 1.0, 0.5], [0.0, 0.0, 0.0]])
    c = np.array([[3.0, 2.0, 1.0], [5.0, 4.0, 6.0]])
    assert oracle_point(s, c) == pytest.approx((3.0, 0.5))


def test_points_from_choices() -> None:
    # Row 0: always a0 -> (1, 0.5). Row 1: the oracle's choices [a0, a1, a2, a0] -> (2, 1).
    choices = np.array([[0, 0, 0, 0], [0, 1, 2, 0]])
    costs, quals = points_from_choices(S_BLOCK, C_BLOCK, choices)
    np.testing.assert_allclose(costs, [1.0, 2.0])
    np.testing.assert_allclose(quals, [0.5, 1.0])
    # A 1-D array is one operating point.
    costs1, quals1 = points_from_choices(S_BLOCK, C_BLOCK, np.array([0, 1, 2, 0]))
    np.testing.assert_allclose(costs1, [2.0])
    np.testing.assert_allclose(quals1, [1.0])


# ------------------------------------------------------------------------------------------
# Router metrics
# ------------------------------------------------------------------------------------------


def test_zero_router_metrics_by_hand() -> None:
    m = zero_router_metrics(S_BLOCK, C_BLOCK, best_action=BEST)
    assert isinstance(m, RouterMetrics)
    # Q@C_best = F0(4) = 0.75 = Q_best -> GR = 0 and saving = 1 - 4 / 4 = 0.
    assert m.q_at_c_best == pytest.approx(0.75)
    assert m.gap_recovered == pytest.approx(0.0)
    assert m.saving == pytest.approx(0.0)
    # 0.95 * 0.75 = 0.7125 is reached at 1 + (0.7125 - 0.5) * 12 = 3.55: saving95 = 0.1125.
    assert m.saving95 == pytest.approx(0.1125)
    # AIQ = mean over log10 c in [0, log10 4] of 0.5 + (c - 1) / 12
    #     = 0.5 + (3 / ln 10 / log10 4 - 1) / 12 = 0.5 + (3 / ln 4 - 1) / 12 ~= 0.597003.
    expected = 0.5 + (3.0 / math.log(4.0) - 1.0) / 12.0
    assert expected == pytest.approx(0.597003, abs=1e-6)
    assert m.aiq == pytest.approx(expected, abs=1e-12)
    assert m.max_quality == pytest.approx(0.75)
    assert m.min_cost == pytest.approx(1.0)
    assert set(m.to_dict()) == {
        "aiq",
        "q_at_c_best",
        "gap_recovered",
        "saving",
        "saving95",
        "max_quality",
        "min_cost",
    }


def test_router_never_reaching_q_best() -> None:
    # Router points (1, 0.5), (2, 0.6): flat at 0.6 from c = 2 on.
    m = router_metrics([1.0, 2.0], [0.5, 0.6], S_BLOCK, C_BLOCK, best_action=BEST)
    # Q@C_best = 0.6; GR = (0.6 - 0.75) / (1 - 0.75) = -0.6.
    assert m.q_at_c_best == pytest.approx(0.6)
    assert m.gap_recovered == pytest.approx(-0.6)
    assert m.gap_recovered < 0
    # Neither 0.75 nor 0.7125 is ever reached.
    assert math.isnan(m.saving)
    assert math.isnan(m.saving95)
    # AIQ: 0.5 + 0.1 (c - 1) on [1, 2], then 0.6 on [2, 4], divided by log10 4.
    area = _log_integral_linear(1.0, 2.0, 0.5, 0.6) + 0.6 * LOG2
    # By hand: 0.5 * 0.30103 + 0.1 * (1 / ln 10 - 0.30103) + 0.6 * 0.30103 ~= 0.344459.
    assert area == pytest.approx(0.344459, abs=1e-6)
    assert m.aiq == pytest.approx(area / math.log10(4.0), abs=1e-12)
    assert m.max_quality == pytest.approx(0.6)
    assert m.min_cost == pytest.approx(1.0)


def test_router_reaching_oracle_recovers_full_gap() -> None:
    # The oracle's choices as a router: one point (2, 1) = the oracle point.
    costs, quals = points_from_choices(S_BLOCK, C_BLOCK, np.array([[0, 1, 2, 0]]))
    m = router_metrics(costs, quals, S_BLOCK, C_BLOCK, best_action=BEST)
    # Q@C_best = 1 = Q_oracle -> GR = (1 - 0.75) / (1 - 0.75) = 1.
    assert m.q_at_c_best == pytest.approx(1.0)
    assert m.gap_recovered == pytest.approx(1.0)
    # 0.75 is reached at the router's first point c = 2 (the zero part would need c = 4 >= 2):
    # saving = 1 - 2 / 4 = 0.5; 0.7125 likewise (zero part needs 3.55 >= 2).
    assert m.saving == pytest.approx(0.5)
    assert m.saving95 == pytest.approx(0.5)
    # AIQ: zero's 0.5 + (c - 1) / 12 on [1, 2], then 1 on [2, 4].
    area = _log_integral_linear(1.0, 2.0, 0.5, 0.5 + 1.0 / 12.0) + 1.0 * LOG2
    assert m.aiq == pytest.approx(area / math.log10(4.0), abs=1e-12)


def test_gap_recovered_nan_when_oracle_equals_best() -> None:
    s = np.array([[0.0, 1.0], [0.0, 1.0]])
    c = np.array([[1.0, 100.0], [1.0, 100.0]])
    m = router_metrics([1.0, 100.0], [0.0, 1.0], s, c, best_action=1)
    assert math.isnan(m.gap_recovered)


def test_router_metrics_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="same shape"):
        router_metrics([1.0], [0.5], S_BLOCK, C_BLOCK[:, :2], best_action=0)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        router_metrics([1.0], [0.5], S_BLOCK * 2, C_BLOCK, best_action=0)
    bad_c = C_BLOCK.copy()
    bad_c[0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        router_metrics([1.0], [0.5], S_BLOCK, bad_c, best_action=0)
    with pytest.raises(ValueError, match=">= 0"):
        router_metrics([1.0], [0.5], S_BLOCK, -C_BLOCK, best_action=0)
    with pytest.raises(ValueError, match="best_action"):
        router_metrics([1.0], [0.5], S_BLOCK, C_BLOCK, best_action=3)
    with pytest.raises(ValueError, match="2-D"):
        zero_router_metrics(S_BLOCK[0], C_BLOCK[0], best_action=0)


def test_points_from_choices_rejects_bad_choices() -> None:
    with pytest.raises(ValueError, match="action indices in"):
        points_from_choices(S_BLOCK, C_BLOCK, np.array([[0, 1, 3, 0]]))
    with pytest.raises(ValueError, match="action indices in"):
        points_from_choices(S_BLOCK, C_BLOCK, np.array([[0, -1, 2, 0]]))
    with pytest.raises(ValueError, match="n_queries=4"):
        points_from_choices(S_BLOCK, C_BLOCK, np.array([[0, 1, 2]]))
    with pytest.raises(ValueError, match="integer"):
        points_from_choices(S_BLOCK, C_BLOCK, np.array([[0, 1.5, 2, 0]]))


# ------------------------------------------------------------------------------------------
# Paired bootstrap
# ------------------------------------------------------------------------------------------


def _random_block(n_queries: int = 300, n_actions: int = 8, seed: int = 1) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    base_cost = np.geomspace(1e-4, 1e-2, n_actions)
    c = base_cost[None, :] * rng.uniform(0.5, 1.5, size=(n_queries, n_actions))
    skill = np.linspace(0.3, 0.8, n_actions)
    s = (rng.uniform(size=(n_queries, n_actions)) < skill[None, :]).astype(float)
    return s, c


def _cost_aware_oracle(s: np.ndarray, c: np.ndarray, lambdas: np.ndarray) -> np.ndarray:
    """Per cost weight, the per-query argmax of S - lambda * C / mean(C): a near-perfect router."""
    scale = c.mean()
    return np.stack([np.argmax(s - lam * c / scale, axis=1) for lam in lambdas])


def test_bootstrap_identical_routers() -> None:
    s, c = _random_block()
    choices = _cost_aware_oracle(s, c, np.geomspace(0.01, 3.0, 10))
    res = paired_bootstrap(s, c, choices, choices.copy(), best_action=7, n_boot=200)
    assert isinstance(res, BootstrapResult)
    assert res.diff == 0.0
    assert res.se == 0.0
    assert res.ci_low == 0.0
    assert res.ci_high == 0.0
    assert res.q_diff == 0.0
    assert res.q_se == 0.0
    assert res.aiq_a == res.aiq_b
    assert res.n_boot == 200
    # Default at_cost: C_best on the full block.
    assert res.at_cost == pytest.approx(c[:, 7].mean())


def test_bootstrap_clearly_better_router() -> None:
    s, c = _random_block()
    n_queries, n_actions = s.shape
    lambdas = np.geomspace(0.01, 3.0, 10)
    good = _cost_aware_oracle(s, c, lambdas)
    rng = np.random.default_rng(5)
    bad = rng.integers(0, n_actions, size=(len(lambdas), n_queries))
    res = paired_bootstrap(s, c, good, bad, best_action=7, n_boot=300, seed=3)
    # The full-sample AIQs are the router_metrics AIQs.
    m_good = router_metrics(*points_from_choices(s, c, good), s, c, best_action=7)
    m_bad = router_metrics(*points_from_choices(s, c, bad), s, c, best_action=7)
    assert res.aiq_a == pytest.approx(m_good.aiq, abs=1e-12)
    assert res.aiq_b == pytest.approx(m_bad.aiq, abs=1e-12)
    assert res.diff == pytest.approx(m_good.aiq - m_bad.aiq, abs=1e-12)
    assert res.diff > 0
    assert res.se > 0
    assert res.diff > 2 * res.se
    assert res.ci_low > 0
    assert res.ci_low <= res.diff <= res.ci_high
    assert res.q_diff == pytest.approx(m_good.q_at_c_best - m_bad.q_at_c_best, abs=1e-12)
    assert res.q_diff > 2 * res.q_se


def test_bootstrap_is_deterministic_with_seed() -> None:
    s, c = _random_block(n_queries=80)
    a = _cost_aware_oracle(s, c, np.geomspace(0.01, 3.0, 5))
    b = np.roll(a, 1, axis=1)
    r1 = paired_bootstrap(s, c, a, b, best_action=7, n_boot=100, seed=11, at_cost=0.003)
    r2 = paired_bootstrap(s, c, a, b, best_action=7, n_boot=100, seed=11, at_cost=0.003)
    r3 = paired_bootstrap(s, c, a, b, best_action=7, n_boot=100, seed=12, at_cost=0.003)
    assert r1 == r2
    assert r1.at_cost == 0.003
    assert r1.se != r3.se
    assert r1.diff == r3.diff  # the full-sample difference does not depend on the seed


def test_bootstrap_rejects_bad_input() -> None:
    choices = np.zeros((2, 4), dtype=int)
    with pytest.raises(ValueError, match="choices_b"):
        paired_bootstrap(S_BLOCK, C_BLOCK, choices, choices + 3, best_action=0)
    with pytest.raises(ValueError, match="choices_a"):
        paired_bootstrap(S_BLOCK, C_BLOCK, choices[:, :3], choices, best_action=0)
    with pytest.raises(ValueError, match="n_boot"):
        paired_bootstrap(S_BLOCK, C_BLOCK, choices, choices, best_action=0, n_boot=1)
    with pytest.raises(ValueError, match="at_cost"):
        paired_bootstrap(S_BLOCK, C_BLOCK, choices, choices, best_action=0, at_cost=-1.0)
    with pytest.raises(ValueError, match="best_action"):
        paired_bootstrap(S_BLOCK, C_BLOCK, choices, choices, best_action=-1)
