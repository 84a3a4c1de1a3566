"""What a collection reports: the plan of a dry run, and the closing summary of a run."""

import logging
import math
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Plan:
    """A dry run's answer: what the plan would collect and spend (estimates, nothing called)."""

    strategy: str
    cells_available: int
    full_grid_usd: float
    planned_cells: int
    planned_usd: float
    budget_usd: float | None
    budget_calls: int | None
    per_backend: dict[str, tuple[int, float]] = field(default_factory=dict)

    def table(self) -> str:
        rows = [f"{'backend':<32} {'cells':>7} {'est. USD':>12}"]
        rows += [f"{name:<32} {n:>7} {usd:>12.6f}" for name, (n, usd) in sorted(self.per_backend.items())]
        budget = (
            ", ".join(
                x
                for x in (
                    f"${self.budget_usd:g}" if self.budget_usd is not None else "",
                    f"{self.budget_calls} calls" if self.budget_calls is not None else "",
                )
                if x
            )
            or "none"
        )
        rows.append(
            f"plan ({self.strategy}, budget {budget}): {self.planned_cells} of {self.cells_available} cells, "
            f"estimated ${self.planned_usd:.6f} (the full grid: ${self.full_grid_usd:.6f})"
        )
        return "\n".join(rows)


@dataclass
class CollectResult:
    """A finished (or budget-stopped) collection.

    Attributes:
        output: the log written.
        cells: scored cells in the log (earlier runs of a resumed collection included).
        new_cells: cells collected by this run.
        spent_usd, calls: what the log's cells cost, and the calls this run made.
        failures: per backend, the cells that failed after retries (not in the log).
        scorer_errors: cells whose output the scorer could not score (in the failures file).
        skipped_backends: backends that kept failing and were skipped.
        overruns: calls that cost more than their reservation (the backend ignored its output cap).
        per_action: action key -> (cells, mean score, USD).
    """

    output: Path
    cells: int
    new_cells: int
    spent_usd: float
    calls: int
    failures: dict[str, int]
    scorer_errors: int
    skipped_backends: list[str]
    overruns: int
    per_action: dict[str, tuple[int, float, float]]
    budget_usd: float | None = None
    budget_calls: int | None = None
    peak_committed_usd: float = 0.0  # the most ever spent plus reserved at one moment

    def table(self) -> str:
        width = max([len("action"), *map(len, self.per_action)])
        rows = [f"{'action':<{width}} {'cells':>7} {'mean score':>10} {'USD':>12}"]
        for key, (n, mean, usd) in sorted(self.per_action.items()):
            rows.append(f"{key:<{width}} {n:>7} {mean:>10.3f} {usd:>12.6f}")
        limit = f" of ${self.budget_usd:g}" if self.budget_usd is not None else ""
        rows.append(
            f"{self.cells} cells ({self.new_cells} new), ${self.spent_usd:.6f}{limit} spent, "
            f"{self.calls} calls this run"
        )
        if self.failures:
            rows.append(
                "failed cells (not logged, retried on a restart): "
                + ", ".join(f"{b}: {n}" for b, n in sorted(self.failures.items()))
            )
        if self.skipped_backends:
            rows.append(f"skipped after repeated failures: {self.skipped_backends}")
        if self.scorer_errors:
            rows.append(f"scorer errors: {self.scorer_errors} cells (see {self.output.name}.failures.jsonl)")
        return "\n".join(rows)

    def read(self) -> Any:
        """The log as a `RoutingLog` with the collection's catalog."""
        from haps_core.collect.store import read_collected

        return read_collected(self.output)


def per_action_summary(rows: list[tuple[str, float, float]]) -> dict[str, tuple[int, float, float]]:
    """(action key, score, cost) rows -> action key -> (cells, mean score, USD)."""
    acc: dict[str, list[float]] = defaultdict(lambda: [0.0, 0.0, 0.0])
    for key, score, cost in rows:
        a = acc[key]
        a[0] += 1
        a[1] += score
        a[2] += cost
    return {k: (int(n), s / n if n else math.nan, c) for k, (n, s, c) in acc.items()}
