"""The collection's output: an append-only routing log (format v1) that survives being killed.

Each finished cell is one JSON line (`query_id`, `query`, `model`, the action's parameters,
`score`, `input_tokens`, `output_tokens`, `cost`, `latency_s`, `propensity`, ...). Lines are
flushed as they are written and fsynced per batch. Beside the log, ``<log>.collect.json`` holds
the run's settings and catalog (a restart with other settings is refused rather than mixed in),
and ``<log>.failures.jsonl`` the cells whose output could not be scored. On a restart the log is
read back, a line cut short by the kill is dropped, and the cells it holds are not called again.
"""

import dataclasses
import json
import logging
import math
import os
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from haps_core.catalog import RoutingSpace

logger = logging.getLogger(__name__)

FSYNC_EVERY = 256
"""Lines written between two fsyncs within a batch (each line is flushed to the OS at once; every
batch ends with an fsync)."""


@dataclass(frozen=True)
class DoneCell:
    """A cell an earlier (or this) run finished: where it sat in its round's plan, and its outcome."""

    round: int
    slot: int
    score: float | None  # None: the output could not be scored (see the failures file)
    cost: float


def meta_path(log: Path) -> Path:
    return log.with_name(log.name + ".collect.json")


def failures_path(log: Path) -> Path:
    return log.with_name(log.name + ".failures.jsonl")


def _read_lines(path: Path) -> list[dict[str, Any]]:
    """The complete JSON lines of `path`; a last line cut short by a kill is cut off the file."""
    if not path.exists():
        return []
    data = path.read_bytes()
    end = data.rfind(b"\n") + 1
    if end < len(data):
        logger.warning(
            "%s: dropping a last line cut short (%d bytes) by an interrupted run", path, len(data) - end
        )
        with open(path, "r+b") as fh:
            fh.truncate(end)
            fh.flush()
            os.fsync(fh.fileno())
    rows = []
    for i, line in enumerate(data[:end].splitlines(), start=1):
        if line.strip():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as exc:
                msg = f"{path}: line {i} is not JSON ({exc.msg}); this file was not written by `haps collect`"
                raise ValueError(msg) from None
    return rows


class CollectStore:
    """The log file of one collection, opened for appending (and resuming).

    Args:
        path: the log to write (``.jsonl``).
        settings: what must match for a restart to resume (strategy, seed, budget, ...).
        space: the catalog, saved beside the log.
    """

    def __init__(self, path: str | Path, settings: Mapping[str, Any], space: RoutingSpace) -> None:
        self.path = Path(path)
        if not self.path.name.endswith(".jsonl"):
            msg = f"`output` must be a .jsonl file, got {str(self.path)!r}"
            raise ValueError(msg)
        self.settings = json.loads(json.dumps(dict(settings)))
        self.space = space
        self._lock = threading.Lock()
        self._unsynced = 0
        self.done: dict[tuple[str, str], DoneCell] = {}
        self._check_meta()
        self._load()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # Both stay open for the whole run (appended to per cell) and are closed by close().
        self._log = open(self.path, "a", encoding="utf-8")  # noqa: SIM115
        self._failures = open(failures_path(self.path), "a", encoding="utf-8")  # noqa: SIM115

    def _check_meta(self) -> None:
        meta = {"format": "haps-collect/1", "settings": self.settings, "space": self.space.to_dict()}
        path = meta_path(self.path)
        if path.exists():
            old = json.loads(path.read_text(encoding="utf-8"))
            if old.get("settings") != meta["settings"] or old.get("space") != meta["space"]:
                changed = sorted(
                    k
                    for k in {**old.get("settings", {}), **meta["settings"]}
                    if old.get("settings", {}).get(k) != meta["settings"].get(k)
                )
                if old.get("space") != meta["space"]:
                    changed.append("backends/grid")
                msg = (
                    f"`output` {str(self.path)!r} holds a collection made with other settings "
                    f"(changed: {changed}); restart with the same arguments to resume, "
                    "or give another --output"
                )
                raise ValueError(msg)
        elif self.path.exists() and self.path.stat().st_size:
            msg = (
                f"`output` {str(self.path)!r} exists but was not written by `haps collect` "
                f"(no {path.name}); give another --output"
            )
            raise ValueError(msg)
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(path.name + ".tmp")
            tmp.write_text(json.dumps(meta, indent=2, sort_keys=True), encoding="utf-8")
            os.replace(tmp, path)

    def _load(self) -> None:
        for row in _read_lines(self.path):
            key = (str(row["query_id"]), str(row["action"]))
            self.done[key] = DoneCell(
                int(row["collect_round"]), int(row["collect_slot"]), float(row["score"]), float(row["cost"])
            )
        for row in _read_lines(failures_path(self.path)):
            if row.get("kind") == "scorer":
                key = (str(row["query_id"]), str(row["action"]))
                self.done.setdefault(
                    key,
                    DoneCell(int(row["collect_round"]), int(row["collect_slot"]), None, float(row["cost"])),
                )
        if self.done:
            logger.info("resuming %s: %d cells already collected", self.path, len(self.done))

    @property
    def spent_usd(self) -> float:
        return math.fsum(d.cost for d in self.done.values())

    def _write(self, fh: Any, row: Mapping[str, Any]) -> None:
        fh.write(json.dumps(row, ensure_ascii=False, sort_keys=False) + "\n")
        fh.flush()
        self._unsynced += 1
        if self._unsynced >= FSYNC_EVERY:
            self._sync()

    def _sync(self) -> None:
        for fh in (self._log, self._failures):
            fh.flush()
            os.fsync(fh.fileno())
        self._unsynced = 0

    def append(self, row: Mapping[str, Any], done: DoneCell) -> None:
        """Writes one scored cell (thread-safe)."""
        with self._lock:
            self._write(self._log, row)
            self.done[(str(row["query_id"]), str(row["action"]))] = done

    def append_failure(self, row: Mapping[str, Any], done: DoneCell | None) -> None:
        """Writes one failed cell; `done` when it counts as collected (a scorer failure)."""
        with self._lock:
            self._write(self._failures, row)
            if done is not None:
                self.done[(str(row["query_id"]), str(row["action"]))] = done

    def sync(self) -> None:
        """Flushes and fsyncs what is written (the end of a batch)."""
        with self._lock:
            self._sync()

    def close(self) -> None:
        with self._lock:
            if not self._log.closed:
                self._sync()
                self._log.close()
                self._failures.close()


def read_collected(path: str | Path) -> Any:
    """The collected log as a `RoutingLog` whose catalog is exactly the collection's backends,
    its rows (and so its queries' order) in plan order: concurrent calls finish, and are
    written, in any order, and a router trained on the log must not depend on which finished
    first (`fit` with one seed on one collection gives one router)."""
    from haps_core.logs import read_logs

    path = Path(path)
    meta = json.loads(meta_path(path).read_text(encoding="utf-8"))
    space = RoutingSpace.from_dict(meta["space"])
    return in_plan_order(read_logs(path, space=space), path)


def in_plan_order(log: Any, path: Path) -> Any:
    """`log` (read from the collection log `path`) with rows sorted by their (round, slot) and
    queries renumbered by first appearance in that order; rows without a place keep theirs, last."""
    place: dict[tuple[str, str], tuple[float, float]] = {}
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            if line.strip():
                raw = json.loads(line)
                if "collect_round" in raw and "collect_slot" in raw:
                    place[(raw["query_id"], raw["action"])] = (raw["collect_round"], raw["collect_slot"])
    keys = [a.key for a in log.space.actions]
    where = [
        place.get((log.query_ids[q], keys[a]), (math.inf, math.inf))
        for q, a in zip(log.row_query.tolist(), log.row_action.tolist(), strict=True)
    ]
    order = np.asarray(sorted(range(log.n_rows), key=lambda r: where[r]), dtype=np.int64)
    if np.array_equal(order, np.arange(log.n_rows)):
        return log
    first = dict.fromkeys(log.row_query[order].tolist())
    renumber = np.zeros(log.n_queries, dtype=np.int64)
    renumber[list(first)] = np.arange(len(first))
    queries = list(first)
    per_row = {
        name: getattr(log, name)[order]
        for name in ("row_action", "score", "cost", "groups", "input_tokens", "propensity")
        if getattr(log, name) is not None
    }
    return dataclasses.replace(
        log,
        query_ids=[log.query_ids[q] for q in queries],
        queries=[log.queries[q] for q in queries],
        row_query=renumber[log.row_query[order]],
        **per_row,
    )
