"""Issue 16: the collection budget is never exceeded, in-flight calls included.

The floor: 100 randomised collections on the replay world (the real haps-bench outcomes), with
concurrency 8 and injected transient failures (the replay world's own failure knob, our logic).
"""

import json
import math
import threading

import numpy as np
import pytest

from haps_core.collect import Budget, BudgetError, ReplayWorld, collect
from haps_core.collect.store import failures_path
from haps_core.paths import bench_logs


@pytest.fixture(scope="module")
def world() -> ReplayWorld:
    return ReplayWorld(bench_logs())


def test_issue16_budget_reservations_never_overrun_under_threads():
    budget = Budget(usd=1.0, calls=500)
    granted = []

    def worker(seed: int) -> None:
        rng = np.random.default_rng(seed)
        for _ in range(200):
            r = budget.reserve(float(rng.uniform(0, 0.02)))
            if r is None:
                continue
            granted.append(r)
            budget.settle(r, r.usd * float(rng.uniform(0.2, 1.0)))

    threads = [threading.Thread(target=worker, args=(s,)) for s in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert budget.peak_committed_usd <= 1.0
    assert budget.spent_usd <= 1.0 and budget.spent_calls <= 500
    assert len(granted) == budget.spent_calls


def test_issue16_budget_refuses_bad_limits():
    with pytest.raises(BudgetError, match="budget_usd"):
        Budget(usd=0)
    with pytest.raises(BudgetError, match="budget_calls"):
        Budget(calls=0)


@pytest.mark.slow
def test_issue16_budget_never_exceeded_over_100_randomised_replay_runs(world, tmp_path):
    rng = np.random.default_rng(16)
    ids = [q.id for q in world.questions]
    worst = 0.0
    for run in range(100):
        chosen = set(rng.choice(ids, size=int(rng.integers(20, 60)), replace=False).tolist())
        sub = world.subset(chosen, failure_rate=float(rng.uniform(0.05, 0.3)), seed=run)
        full = math.fsum(sub.estimate(q, a) for q, acts in enumerate(sub.available()) for a in acts)
        budget_usd = float(full * rng.uniform(0.05, 0.6))
        budget_calls = int(rng.integers(50, 400)) if rng.random() < 0.5 else None
        strategy = ["full", "uniform", "adaptive", "thompson"][run % 4]
        out = tmp_path / f"run{run}.jsonl"
        result = collect(
            replay=sub,
            output=out,
            strategy=strategy,
            seed=run,
            budget_usd=budget_usd,
            budget_calls=budget_calls,
            concurrency=8,
            batch_size=int(rng.integers(8, 64)),
            backoff_s=0.0,
            retries=2,
        )
        rows = [json.loads(line) for line in out.read_text().splitlines()]
        fails = [json.loads(line) for line in failures_path(out).read_text().splitlines()]
        logged = math.fsum(r["cost"] for r in rows)
        assert logged <= budget_usd, (run, logged, budget_usd)
        assert result.peak_committed_usd <= budget_usd * (1 + 1e-12), run
        assert result.spent_usd <= budget_usd
        if budget_calls is not None:
            assert result.calls <= budget_calls, (run, result.calls, budget_calls)
        assert result.overruns == 0
        assert all(f["kind"] in ("backend", "budget") for f in fails)
        assert len({(r["query_id"], r["action"]) for r in rows}) == len(rows)  # no duplicate cell
        worst = max(worst, result.peak_committed_usd / budget_usd)
    assert worst > 0.5  # the budgets were actually used, not trivially far from their limits
