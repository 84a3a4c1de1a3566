"""`collect(...)`: collect (question, action) outcomes over backends and settings, on a budget,
into a routing log (the function behind `haps collect`)."""

import hashlib
import json
import logging
import math
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from haps_core.collect.backends import BackendSpec, load_backends
from haps_core.collect.budget import Budget, BudgetError
from haps_core.collect.live import LiveWorld
from haps_core.collect.questions import Question, QuestionsError, load_questions
from haps_core.collect.registry import STRATEGIES, make_strategy
from haps_core.collect.replay import ReplayWorld
from haps_core.collect.report import CollectResult, Plan
from haps_core.collect.run import Collector, RunSettings, World
from haps_core.collect.scorers import Scorer, get_scorer
from haps_core.collect.store import CollectStore
from haps_core.collect.strategies import Strategy, cluster_questions

logger = logging.getLogger(__name__)

QuestionsArg = str | Path | Iterable[Question | Mapping[str, Any]]


def _world(
    questions: QuestionsArg | None,
    backends: str | Path | Sequence[BackendSpec] | None,
    replay: ReplayWorld | str | Path | None,
    prices: Any,
) -> World:
    if replay is not None:
        if backends is not None:
            msg = "give `backends` (real calls) or `replay` (answers from a log), not both"
            raise ValueError(msg)
        world = replay if isinstance(replay, ReplayWorld) else ReplayWorld(replay, prices=prices)
        if questions is not None:
            wanted = [q.id for q in load_questions(questions)]
            known = {q.id for q in world.questions}
            missing = [q for q in wanted if q not in known]
            if missing:
                msg = (
                    f"`questions` names {len(missing)} id(s) the replay log does not hold, e.g. {missing[:3]}"
                )
                raise QuestionsError(msg)
            world = world.subset(set(wanted))
        return world
    if backends is None:
        msg = "`backends` is required (a backends file or BackendSpec list), or give `replay`"
        raise ValueError(msg)
    if questions is None:
        msg = "`questions` is required when collecting from real backends"
        raise ValueError(msg)
    specs = load_backends(backends) if isinstance(backends, str | Path) else list(backends)
    return LiveWorld(specs, load_questions(questions))


def _digest(world: World) -> str:
    h = hashlib.sha256()
    for q in world.questions:
        h.update(json.dumps([q.id, q.query, q.reference]).encode())
    return h.hexdigest()[:16]


def collect(
    questions: QuestionsArg | None = None,
    backends: str | Path | Sequence[BackendSpec] | None = None,
    scorer: str | Scorer = "exact_match",
    *,
    output: str | Path | None = None,
    budget_usd: float | None = None,
    budget_calls: int | None = None,
    strategy: str = "full",
    seed: int = 0,
    replay: ReplayWorld | str | Path | None = None,
    prices: Mapping[str, tuple[float, float]] | str | Path | None = None,
    concurrency: int = 8,
    batch_size: int = 64,
    dry_run: bool = False,
    retries: int = 3,
    backoff_s: float = 1.0,
    max_backend_failures: int = 5,
    keep_outputs: bool = True,
    progress: bool = False,
) -> CollectResult | Plan:
    """Collects outcomes of (question, action) cells into a routing log (format v1).

    Args:
        questions: a questions file (JSONL/CSV/Parquet/HF folder) or Question/dict items; with
            `replay`, optionally the subset of the log's questions to collect on.
        backends: a backends file (Python or YAML) or `BackendSpec`s. Their grids are the catalog.
        scorer: a built-in scorer name or a callable (query, reference, output) -> [0, 1].
        output: the log to write (``.jsonl``); an existing one from the same arguments resumes.
        budget_usd, budget_calls: limits (None: no limit); never exceeded, in-flight calls included.
        strategy: "full", "uniform", "adaptive" or "thompson" (see `haps_core.collect.registry`).
        seed: seed of every random choice (the same seed and outcomes give the same cells).
        replay: a complete log (path or `ReplayWorld`) that answers instead of real backends.
        prices: prices for a replay log without them beside it (backend -> (in, out) per 1M).
        concurrency: calls in flight at once (each backend's `max_concurrency` also applies).
        batch_size: cells per round (part of the plan: keep it when resuming).
        dry_run: return the `Plan` (estimated cells and spend) and call nothing. The plan runs the
            strategy as if every cell cost its estimate; `adaptive` learns nothing there (no
            outcomes), so its planned cell count is rougher than its planned spend.
        retries, backoff_s: retries of a transient error, with exponential backoff.
        max_backend_failures: failed cells in a row after which a backend is skipped.
        keep_outputs: write each raw output into the log (`output` column).
        progress: show a progress bar (tqdm) with spend, remaining budget, rate and ETA.

    Returns:
        A `CollectResult` (or a `Plan` for a dry run).

    Raises:
        QuestionsError, ValueError, BudgetError: bad questions, backends, settings, or a budget
            below the cheapest call.
    """
    if strategy not in STRATEGIES:
        msg = f"`strategy` must be one of {list(STRATEGIES)}, got {strategy!r}"
        raise ValueError(msg)
    for name, value, low in (
        ("concurrency", concurrency, 1),
        ("batch_size", batch_size, 1),
        ("retries", retries, 0),
    ):
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            msg = f"`{name}` must be an integer >= {low}, got {value!r}"
            raise ValueError(msg)
    Budget(budget_usd, budget_calls)  # validates the limits
    world = _world(questions, backends, replay, prices)
    score_fn = get_scorer(scorer) if isinstance(world, LiveWorld) else None
    available = world.available()
    cheapest = cheapest_call(world, available)
    if budget_usd is not None and cheapest > budget_usd:
        msg = f"`budget_usd` ${budget_usd:g} is below one call: the cheapest call reserves ${cheapest:.6g}"
        raise BudgetError(msg)
    groups = [q.task or q.dataset for q in world.questions]
    clusters = cluster_questions([q.query for q in world.questions], groups, seed)
    costs = world.action_costs()
    action_backends = world.space.backend_index()

    def new_strategy() -> Any:
        return make_strategy(strategy, available, seed, clusters, costs, action_backends)

    if dry_run:
        cells = plan_cells(world, new_strategy(), budget_usd, budget_calls, batch_size)
        per: dict[str, list[float]] = defaultdict(lambda: [0, 0.0])
        for q, a in cells:
            entry = per[world.backend_of(a)]
            entry[0] += 1
            entry[1] += world.estimate(q, a)
        full = math.fsum(world.estimate(q, a) for q, acts in enumerate(available) for a in acts)
        return Plan(
            strategy,
            sum(map(len, available)),
            full,
            len(cells),
            math.fsum(v[1] for v in per.values()),
            budget_usd,
            budget_calls,
            {k: (int(v[0]), v[1]) for k, v in per.items()},
        )
    if output is None:
        msg = "`output` is required: the .jsonl log to write (or give dry_run=True)"
        raise ValueError(msg)
    settings = {
        "strategy": strategy,
        "seed": seed,
        "budget_usd": budget_usd,
        "budget_calls": budget_calls,
        "batch_size": batch_size,
        "questions": _digest(world),
        "scorer": scorer if isinstance(scorer, str) else getattr(scorer, "__name__", "callable"),
    }
    store = CollectStore(output, settings, world.space)
    budget = Budget(budget_usd, budget_calls, spent_usd=store.spent_usd, spent_calls=len(store.done))
    limits: dict[str, tuple[int, float | None, float | None]] = {}
    if isinstance(world, LiveWorld):
        limits = {n: (s.max_concurrency, s.rate_limit, s.timeout_s) for n, s in world.specs.items()}
    run = RunSettings(concurrency, retries, backoff_s, max_backend_failures, keep_outputs, progress, limits)
    collector = Collector(world, new_strategy(), budget, store, score_fn, batch_size, run)
    bar = _progress_bar(progress, available, budget_usd, budget_calls, world, len(store.done))
    try:
        collector.run(bar)
    finally:
        store.close()
        if bar is not None:
            bar.close()
    result = collector.result(budget_usd, budget_calls)
    logger.info("collected into %s:\n%s", output, result.table())
    return result


def _progress_bar(
    progress: bool,
    available: list[list[int]],
    budget_usd: float | None,
    budget_calls: int | None,
    world: World,
    done: int,
) -> Any:
    if not progress:
        return None
    try:
        from tqdm.auto import tqdm  # type: ignore[import-untyped]  # tqdm ships no type hints
    except ImportError:
        logger.info("install tqdm for a progress bar")
        return None
    total = sum(map(len, available))
    if budget_calls is not None:
        total = min(total, budget_calls)
    if budget_usd is not None:
        n = sum(map(len, available))
        mean = math.fsum(world.estimate(q, a) for q, acts in enumerate(available) for a in acts) / max(n, 1)
        if mean > 0:
            total = min(total, int(budget_usd / mean))
    return tqdm(total=total, initial=min(done, total), unit="cell", desc="collect")


def plan_cells(
    world: World, strategy: Strategy, budget_usd: float | None, budget_calls: int | None, batch_size: int
) -> list[tuple[int, int]]:
    """The cells a run would collect if each cost its estimate (a dry run; nothing is called)."""
    cells: list[tuple[int, int]] = []
    spent = 0.0
    rnd = 0
    while True:
        usd_left = math.inf if budget_usd is None else budget_usd - spent
        calls_left = math.inf if budget_calls is None else budget_calls - len(cells)
        acc = [0.0, 0]

        def fits(
            q: int, a: int, usd_left: float = usd_left, calls_left: float = calls_left, acc: list = acc
        ) -> bool:
            usd = world.reservation(q, a)
            if acc[0] + usd > usd_left or acc[1] + 1 > calls_left:
                return False
            acc[0] += usd
            acc[1] += 1
            return True

        plan = strategy.propose(rnd, batch_size, fits)
        if not plan:
            return cells
        for c in plan:
            cells.append((c.question, c.action))
            spent += world.estimate(c.question, c.action)
            strategy.observe(c.question, c.action, None)
        rnd += 1


def cheapest_call(world: World, available: Sequence[Sequence[int]]) -> float:
    return min((world.reservation(q, a) for q, acts in enumerate(available) for a in acts), default=math.inf)
