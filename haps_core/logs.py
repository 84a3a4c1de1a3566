"""Routing log format v1: read, validate and pivot logged outcomes.

A log holds one record per (query, action) outcome. Reading validates *every* row and reports
*all* errors of a file at once (file, line, field, value, what is allowed), because a user
fixing a 50,000-row export one error per run would give up. Nothing is dropped silently: bad rows
fail the load unless ``skip_invalid=True`` is given, in which case the number skipped is logged
and kept on the result.

The pivot to a queries x actions outcome table is kept sparse (one entry per observed cell,
sorted by query then action, with CSR-style offsets), so a log with a million rows and hundreds
of actions never materialises a dense matrix; dense blocks are cut out only for the (small)
query/action subsets that evaluation needs.
"""

import csv
import gzip
import hashlib
import io
import json
import logging
import math
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from haps_core.catalog import DEFAULT_PROMPT_STYLE, Action, RoutingSpace
from haps_core.text import SURROGATE

logger = logging.getLogger(__name__)

SUPPORTED_SUFFIXES = (".jsonl", ".jsonl.gz", ".json.gz", ".ndjson", ".csv", ".csv.gz", ".parquet")
REQUIRED_FIELDS = ("query_id", "query", "model", "score")
KNOWN_FIELDS = (
    *REQUIRED_FIELDS,
    "temperature",
    "prompt_style",
    "cost",
    "input_tokens",
    "output_tokens",
    "dataset",
    "task",
    "n_samples",
    "majority_score",
)
# Fields that describe what happened *after* routing (the answer's quality, its tokens). They
# must never become router features; listing them keeps that rule explicit.
OUTCOME_FIELDS = ("score", "cost", "input_tokens", "output_tokens", "n_samples", "majority_score")
DUPLICATE_POLICIES = ("mean", "error")
MAX_REPORTED_ERRORS = 50


@dataclass(frozen=True)
class RowError:
    """One problem in one row of a log file."""

    file: str
    line: int
    field: str
    value: Any
    problem: str

    def __str__(self) -> str:
        value = repr(self.value)
        if len(value) > 80:
            value = value[:77] + "..."
        return f"{self.file}:{self.line}: field `{self.field}` = {value}: {self.problem}"


class LogValidationError(ValueError):
    """A log file has invalid rows; `errors` lists every one of them."""

    def __init__(self, file: str, errors: Sequence[RowError], n_rows: int) -> None:
        self.file = file
        self.errors = list(errors)
        shown = "\n".join(f"  {e}" for e in self.errors[:MAX_REPORTED_ERRORS])
        more = len(self.errors) - MAX_REPORTED_ERRORS
        tail = ""
        if more > 0:  # past the detailed ones, still name every bad line (compactly)
            lines = sorted({e.line for e in self.errors})
            tail = f"\n  ... and {more} more; all {len(lines)} invalid line(s): " + ", ".join(
                str(n) for n in lines
            )
        msg = (
            f"{len(self.errors)} invalid value(s) in {file} ({n_rows} rows read); nothing was "
            f"loaded. Fix them, or pass skip_invalid=True (--skip-invalid) to drop those rows:\n"
            f"{shown}{tail}"
        )
        super().__init__(msg)


# ---------------------------------------------------------------------------------------------
# Raw row readers: each yields (line number, dict of raw values, is_text_format).


def _open_text(path: Path) -> io.TextIOBase:
    """A CSV file as text. Bytes that are not UTF-8 become unpaired surrogates
    (``surrogateescape``), which field validation reports with their line, instead of the
    whole file failing on the first one."""
    if path.name.endswith(".gz"):
        return io.TextIOWrapper(
            gzip.open(path, "rb"), encoding="utf-8-sig", errors="surrogateescape", newline=""
        )
    return open(path, encoding="utf-8-sig", errors="surrogateescape", newline="")


def _open_binary(path: Path) -> io.BufferedIOBase:
    return gzip.open(path, "rb") if path.name.endswith(".gz") else open(path, "rb")  # type: ignore[return-value]


def _lines(fh: Iterable[bytes]) -> Iterator[bytes]:
    """A binary file's lines, ended by \\n, \\r\\n or a lone \\r (as text mode reads them)."""
    for raw in fh:
        if b"\r" in raw.rstrip(b"\r\n"):
            yield from raw.splitlines(keepends=True)
        else:
            yield raw


def _suffix(path: Path) -> str:
    name = path.name.lower()
    for suffix in sorted(SUPPORTED_SUFFIXES, key=len, reverse=True):
        if name.endswith(suffix):
            return suffix
    msg = f"`logs` file {str(path)!r} has an unsupported extension; allowed: {', '.join(SUPPORTED_SUFFIXES)}"
    raise ValueError(msg)


def _iter_raw(path: Path, errors: list[RowError]) -> Iterator[tuple[int, dict[str, Any], bool]]:
    suffix = _suffix(path)
    if suffix == ".parquet":
        try:
            import pyarrow.parquet as pq
        except ImportError as exc:  # pragma: no cover - pyarrow is a core dependency
            msg = "reading Parquet logs needs pyarrow: pip install pyarrow"
            raise ImportError(msg) from exc
        for i, row in enumerate(pq.read_table(path).to_pylist(), start=1):
            yield i, row, False
        return
    if suffix.startswith(".csv"):
        with _open_text(path) as fh:
            reader = csv.DictReader(fh)
            for row in reader:
                yield reader.line_num, {k: v for k, v in row.items() if k is not None}, True
        return
    # JSON lines are decoded one by one, so a line that is not UTF-8 is one bad row, not a crash.
    with _open_binary(path) as fh:
        for i, raw in enumerate(_lines(fh), start=1):
            try:
                line = raw.decode("utf-8-sig" if i == 1 else "utf-8")
            except UnicodeDecodeError as exc:
                problem = f"not UTF-8 text ({exc.reason} at byte {exc.start} of the line)"
                errors.append(RowError(str(path), i, "<line>", raw.strip()[:80], problem))
                continue
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                errors.append(RowError(str(path), i, "<line>", line.strip()[:80], f"not JSON: {exc}"))
                continue
            if not isinstance(row, dict):
                errors.append(RowError(str(path), i, "<line>", row, "expected a JSON object"))
                continue
            yield i, row, False


# ---------------------------------------------------------------------------------------------
# Field parsing. Text formats (CSV) carry every value as a string; JSON and Parquet are typed,
# and a wrong type there is an error rather than something to coerce silently.


def _missing(value: Any) -> bool:
    return (
        value is None
        or (isinstance(value, str) and value.strip() == "")
        or (isinstance(value, float) and math.isnan(value))
    )


def _number(value: Any, text: bool) -> float:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if text and isinstance(value, str):
        return float(value.strip())
    msg = f"not a number: {type(value).__name__}"
    raise TypeError(msg)


def _string(value: Any, text: bool) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    msg = f"not a string: {type(value).__name__}"
    raise TypeError(msg)


_NUMERIC_RULES: dict[str, tuple[float, float, str]] = {
    "score": (0.0, 1.0, "a number in [0, 1]"),
    "majority_score": (0.0, 1.0, "a number in [0, 1]"),
    "temperature": (0.0, math.inf, "a finite number >= 0"),
    "cost": (0.0, math.inf, "a finite number >= 0 (USD for one call)"),
    "input_tokens": (0.0, math.inf, "a finite number >= 0"),
    "output_tokens": (0.0, math.inf, "a finite number >= 0"),
    "n_samples": (1.0, math.inf, "an integer >= 1"),
}
_STRING_FIELDS = ("query_id", "query", "model", "prompt_style", "dataset", "task")


def _parse_field(name: str, value: Any, text: bool) -> Any:
    """Returns the parsed value or raises ValueError with what is allowed."""
    if name in _NUMERIC_RULES:
        low, high, allowed = _NUMERIC_RULES[name]
        try:
            number = _number(value, text)
        except (TypeError, ValueError):
            number = math.nan
        bad_int = name == "n_samples" and math.isfinite(number) and number != int(number)
        if not math.isfinite(number) or number < low or number > high or bad_int:
            raise ValueError(allowed)
        return number
    if name in _STRING_FIELDS:
        allowed = "a non-empty string" if name in ("query_id", "query", "model") else "a string"
        try:
            s = _string(value, text)
        except TypeError:
            s = ""
        if (
            not isinstance(value, str | int)
            or isinstance(value, bool)
            or (allowed.startswith("a non-empty") and not s.strip())
        ):
            raise ValueError(allowed)
        bad = SURROGATE.search(s)
        if bad:  # a JSON "\udXXX" escape, or a CSV byte that is not UTF-8: no tokenizer takes it
            where = f"U+{ord(bad.group()):04X} at character {bad.start()}"
            msg = f"{allowed} of valid Unicode (found an unpaired surrogate, {where})"
            raise ValueError(msg)
        return s
    # A parameter the catalog declares beyond temperature and prompt style.
    allowed = "a finite number, a string or a boolean"
    if not isinstance(value, bool | int | float | str) or (
        isinstance(value, float) and not math.isfinite(value)
    ):
        raise ValueError(allowed)
    if text and isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return value
    return value


# ---------------------------------------------------------------------------------------------


def load_prices(path: str | Path) -> dict[str, tuple[float, float]]:
    """Reads a price table: ``{"models": {name: {"input": $, "output": $}}}`` in USD per 1M tokens.

    The bare form ``{name: {"input": ..., "output": ...}}`` is accepted too.
    """
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        msg = f"`prices` file {str(path)!r} does not exist"
        raise FileNotFoundError(msg) from None
    except json.JSONDecodeError as exc:
        msg = f"`prices` file {str(path)!r} is not valid JSON: {exc}"
        raise ValueError(msg) from None
    table = data.get("models", data) if isinstance(data, dict) else None
    if not isinstance(table, dict):
        msg = f"`prices` file {str(path)!r} must hold a JSON object of models"
        raise ValueError(msg)
    prices: dict[str, tuple[float, float]] = {}
    for name, entry in table.items():
        if not isinstance(entry, dict) or not {"input", "output"} <= set(entry):
            msg = (
                f"`prices` entry {name!r} in {str(path)!r} must be an object with `input` and "
                f"`output` (USD per 1M tokens), got {entry!r}"
            )
            raise ValueError(msg)
        values = (entry["input"], entry["output"])
        if not all(isinstance(v, int | float) and v >= 0 for v in values):
            msg = f"`prices` entry {name!r} in {str(path)!r} has a negative or non-numeric price"
            raise ValueError(msg)
        prices[name] = (float(values[0]), float(values[1]))
    return prices


@dataclass
class RoutingLog:
    """Validated log rows, column-wise, against a routing space.

    Attributes:
        space: the actions the log's rows use (inferred, or the catalog given to `read_logs`).
        query_ids: the distinct query ids, in order of first appearance.
        queries: the query text of each id (same order).
        row_query: per row, index into `query_ids`.
        row_action: per row, index into `space.actions`.
        score: per row, the observed score.
        cost: per row, USD of one call (0 when the log has no cost information).
        groups: per row, the `dataset` value ("" when absent): logs that join sources with
            different action sets are evaluated one block per group.
        has_cost: whether cost was given or computable for the rows.
        n_skipped: rows dropped because ``skip_invalid=True`` was asked for.
        files: the files read.
    """

    space: RoutingSpace
    query_ids: list[str]
    queries: list[str]
    row_query: np.ndarray
    row_action: np.ndarray
    score: np.ndarray
    cost: np.ndarray
    groups: np.ndarray
    has_cost: bool = True
    n_skipped: int = 0
    files: list[str] = field(default_factory=list)

    @property
    def n_rows(self) -> int:
        return int(self.score.shape[0])

    @property
    def n_queries(self) -> int:
        return len(self.query_ids)

    def summary(self) -> dict[str, Any]:
        """Shape of the log, for reports and checkpoints' training-data summary."""
        return {
            "files": [Path(f).name for f in self.files],
            "rows": self.n_rows,
            "queries": self.n_queries,
            "backends": len(self.space.backends),
            "actions": len(self.space),
            "observed_cells": int(self.outcomes().n_cells),
            "has_cost": self.has_cost,
            "groups": sorted({str(g) for g in self.groups}),
            "rows_skipped": self.n_skipped,
        }

    def outcomes(self, rows: np.ndarray | None = None) -> "OutcomeTable":
        """Pivots (a subset of) the rows into a sparse queries x actions outcome table.

        Repeated observations of a cell are averaged; `OutcomeTable.count` keeps how many.
        """
        rows = slice(None) if rows is None else rows
        q = self.row_query[rows].astype(np.int64)
        a = self.row_action[rows].astype(np.int64)
        n_actions = len(self.space)
        keys = q * n_actions + a
        uniq, inverse = np.unique(keys, return_inverse=True)
        count = np.bincount(inverse, minlength=len(uniq)).astype(np.int64)
        score = np.bincount(inverse, weights=self.score[rows], minlength=len(uniq)) / count
        cost = np.bincount(inverse, weights=self.cost[rows], minlength=len(uniq)) / count
        return OutcomeTable(
            space=self.space,
            query_ids=self.query_ids,
            queries=self.queries,
            cell_query=(uniq // n_actions).astype(np.int64),
            cell_action=(uniq % n_actions).astype(np.int64),
            score=score,
            cost=cost,
            count=count,
            has_cost=self.has_cost,
        )

    def group_rows(self, group: str) -> np.ndarray:
        return np.flatnonzero(self.groups == group)


@dataclass
class OutcomeTable:
    """Sparse outcome table: one entry per observed (query, action) cell, sorted by query.

    Unobserved cells are missing, never zero. ``indptr[q]:indptr[q+1]`` are query q's cells.
    """

    space: RoutingSpace
    query_ids: list[str]
    queries: list[str]
    cell_query: np.ndarray
    cell_action: np.ndarray
    score: np.ndarray
    cost: np.ndarray
    count: np.ndarray
    has_cost: bool = True

    def __post_init__(self) -> None:
        self.indptr = np.searchsorted(self.cell_query, np.arange(len(self.query_ids) + 1))

    @property
    def n_cells(self) -> int:
        return int(self.score.shape[0])

    @property
    def shape(self) -> tuple[int, int]:
        return (len(self.query_ids), len(self.space))

    def observed_queries(self) -> np.ndarray:
        """Indices of queries with at least one observed cell."""
        return np.flatnonzero(np.diff(self.indptr) > 0)

    def dense(
        self, query_idx: Sequence[int] | np.ndarray, action_idx: Sequence[int] | np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Dense (score, cost, observed mask) for the given queries x actions.

        Only ever called on subsets (a batch, an evaluation block), so memory stays bounded by
        what the caller asks for.
        """
        query_idx = np.asarray(query_idx, dtype=np.int64)
        if action_idx is None:
            action_idx = np.arange(len(self.space))
        action_idx = np.asarray(action_idx, dtype=np.int64)
        n_q, n_a = len(query_idx), len(action_idx)
        score = np.zeros((n_q, n_a))
        cost = np.zeros((n_q, n_a))
        mask = np.zeros((n_q, n_a), dtype=bool)
        action_pos = np.full(len(self.space), -1, dtype=np.int64)
        action_pos[action_idx] = np.arange(n_a)
        starts, ends = self.indptr[query_idx], self.indptr[query_idx + 1]
        lengths = ends - starts
        if lengths.sum() == 0:
            return score, cost, mask
        rows = np.repeat(np.arange(n_q), lengths)
        cells = np.concatenate([np.arange(s, e) for s, e in zip(starts, ends, strict=True)])
        cols = action_pos[self.cell_action[cells]]
        keep = cols >= 0
        rows, cols, cells = rows[keep], cols[keep], cells[keep]
        score[rows, cols] = self.score[cells]
        cost[rows, cols] = self.cost[cells]
        mask[rows, cols] = True
        return score, cost, mask

    def action_counts(self, query_idx: np.ndarray | None = None) -> np.ndarray:
        """Number of observed queries per action (over all queries or the given subset)."""
        cells = np.arange(self.n_cells)
        if query_idx is not None:
            keep = np.zeros(len(self.query_ids), dtype=bool)
            keep[np.asarray(query_idx)] = True
            cells = cells[keep[self.cell_query]]
        return np.bincount(self.cell_action[cells], minlength=len(self.space))


# ---------------------------------------------------------------------------------------------


def _resolve_files(logs: str | Path | Iterable[str | Path]) -> list[Path]:
    files = [Path(logs)] if isinstance(logs, str | Path) else [Path(p) for p in logs]
    if not files:
        msg = "`logs` is empty: give at least one log file"
        raise ValueError(msg)
    for f in files:
        _suffix(f)
        if not f.is_file():
            msg = f"`logs` file {str(f)!r} does not exist"
            raise FileNotFoundError(msg)
    return files


def read_logs(
    logs: str | Path | Iterable[str | Path],
    prices: Mapping[str, tuple[float, float]] | str | Path | None = None,
    space: RoutingSpace | None = None,
    parameters: Sequence[str] = (),
    duplicates: str = "mean",
    skip_invalid: bool = False,
) -> RoutingLog:
    """Reads and validates routing logs in format v1 (JSONL, JSONL.gz, CSV or Parquet).

    Args:
        logs: one file or several; they are concatenated.
        prices: backend -> (input, output) USD per 1M tokens, or a prices.json path. Used for
            rows without `cost` but with token counts, and as the catalog's prices.
        space: a catalog to validate against: rows naming another backend or parameter value
            are errors. Without it the space is inferred from the rows.
        parameters: extra columns to keep as action parameters (beyond temperature and
            prompt_style); other unknown columns are bookkeeping and are ignored (logged once).
        duplicates: "mean" averages repeated observations of a (query, action) cell (they are
            independent draws of one call's quality); "error" reports them as bad rows.
        skip_invalid: drop invalid rows (and log how many) instead of failing the load.

    Raises:
        LogValidationError: when any row is invalid (every error of the file is listed).
    """
    if duplicates not in DUPLICATE_POLICIES:
        msg = f"`duplicates` must be one of {DUPLICATE_POLICIES}, got {duplicates!r}"
        raise ValueError(msg)
    if isinstance(prices, str | Path):
        prices = load_prices(prices)
    prices = dict(prices or {})
    files = _resolve_files(logs)
    params = tuple(p for p in parameters if p not in ("temperature", "prompt_style"))
    reserved = set(KNOWN_FIELDS) & set(params)
    if reserved:
        msg = f"`parameters` may not name log fields with a fixed meaning: {sorted(reserved)}"
        raise ValueError(msg)

    qid_pos: dict[str, int] = {}
    query_texts: list[str] = []
    actions: list[Action] = []
    row_q: list[int] = []
    row_costs: list[float | None] = []
    row_tokens: list[tuple[float, float] | None] = []
    row_scores: list[float] = []
    row_groups: list[str] = []
    row_where: list[tuple[str, int]] = []
    n_skipped = 0
    ignored_columns: set[str] = set()

    for path in files:
        errors: list[RowError] = []
        seen_cells: dict[tuple[str, Action], int] = {}
        n_rows = 0
        fname = str(path)
        for line, raw, text in _iter_raw(path, errors):
            n_rows += 1
            row_errors: list[RowError] = []
            values: dict[str, Any] = {}
            for name in REQUIRED_FIELDS:
                if name not in raw or _missing(raw[name]):
                    row_errors.append(RowError(fname, line, name, raw.get(name), "required field is missing"))
            for name, value in raw.items():
                if name not in KNOWN_FIELDS and name not in params:
                    ignored_columns.add(name)
                    continue
                if _missing(value):
                    continue
                try:
                    values[name] = _parse_field(name, value, text)
                except ValueError as exc:
                    row_errors.append(RowError(fname, line, name, value, f"expected {exc}"))
            if not row_errors:
                qid, model = values["query_id"], values["model"]
                if space is not None and model not in space.backend_names:
                    row_errors.append(
                        RowError(
                            fname, line, "model", model, f"unknown backend; known: {space.backend_names}"
                        )
                    )
                action_params: dict[str, Any] = {
                    "prompt_style": values.get("prompt_style", DEFAULT_PROMPT_STYLE)
                }
                if "temperature" in values:
                    action_params["temperature"] = values["temperature"]
                for p in params:
                    if p in values:
                        action_params[p] = values[p]
                action = Action(model, tuple(action_params.items()))
                if space is not None and not row_errors:
                    try:
                        space.index(action)
                    except KeyError:
                        row_errors.append(
                            RowError(fname, line, "model", action.key, "action is not in the catalog")
                        )
                if qid in qid_pos and query_texts[qid_pos[qid]] != values["query"]:
                    row_errors.append(
                        RowError(
                            fname,
                            line,
                            "query",
                            values["query"],
                            f"query_id {qid!r} appeared before with a different text",
                        )
                    )
                cell = (qid, action)
                if duplicates == "error" and cell in seen_cells:
                    row_errors.append(
                        RowError(
                            fname,
                            line,
                            "query_id",
                            qid,
                            f"duplicate (query, action) row: {action.key} was already observed "
                            f"for this query at line {seen_cells[cell]}",
                        )
                    )
                seen_cells.setdefault(cell, line)
            if row_errors:
                errors.extend(row_errors)
                continue
            if qid not in qid_pos:
                qid_pos[qid] = len(query_texts)
                query_texts.append(values["query"])
            row_q.append(qid_pos[qid])
            actions.append(action)
            row_scores.append(values["score"])
            row_costs.append(values.get("cost"))
            tokens = None
            if "input_tokens" in values or "output_tokens" in values:
                tokens = (values.get("input_tokens", 0.0), values.get("output_tokens", 0.0))
            row_tokens.append(tokens)
            row_groups.append(values.get("dataset", ""))
            row_where.append((fname, line))
        if n_rows == 0 and not errors:
            msg = f"`logs` file {fname!r} is empty: it holds no rows"
            raise ValueError(msg)
        if errors:
            bad_lines = {e.line for e in errors}
            if not skip_invalid:
                raise LogValidationError(fname, errors, n_rows)
            n_skipped += len(bad_lines)
            logger.warning("skipped %d invalid row(s) of %s (first: %s)", len(bad_lines), fname, errors[0])

    if not row_q:
        msg = f"no valid rows in {[str(f) for f in files]}"
        raise ValueError(msg)
    if ignored_columns:
        logger.info(
            "columns kept as bookkeeping, not as parameters (declare them with `parameters` to "
            "route on them): %s",
            sorted(ignored_columns),
        )

    cost, has_cost = _resolve_costs(row_costs, row_tokens, actions, prices, row_where)
    if space is None:
        space = RoutingSpace.from_actions(actions, prices)
    action_pos = {a: i for i, a in enumerate(space.actions)}
    result = RoutingLog(
        space=space,
        query_ids=list(qid_pos),
        queries=query_texts,
        row_query=np.asarray(row_q, dtype=np.int32),
        row_action=np.asarray([action_pos[a] for a in actions], dtype=np.int32),
        score=np.asarray(row_scores, dtype=np.float64),
        cost=cost,
        groups=np.asarray(row_groups, dtype=object),
        has_cost=has_cost,
        n_skipped=n_skipped,
        files=[str(f) for f in files],
    )
    logger.info(
        "read %d rows: %d queries x %d actions (%d backends)",
        result.n_rows,
        result.n_queries,
        len(space),
        len(space.backends),
    )
    return result


def _resolve_costs(
    row_costs: list[float | None],
    row_tokens: list[tuple[float, float] | None],
    actions: list[Action],
    prices: Mapping[str, tuple[float, float]],
    row_where: list[tuple[str, int]],
) -> tuple[np.ndarray, bool]:
    """Per-row USD cost: given, or computed from tokens and prices, or absent for the whole log."""
    out = np.zeros(len(row_costs))
    missing: list[int] = []
    for i, (c, tok, action) in enumerate(zip(row_costs, row_tokens, actions, strict=True)):
        if c is not None:
            out[i] = c
        elif tok is not None and action.backend in prices:
            p_in, p_out = prices[action.backend]
            out[i] = (tok[0] * p_in + tok[1] * p_out) / 1e6
        else:
            missing.append(i)
    if len(missing) == len(row_costs):
        logger.warning(
            "the log has no cost information (no `cost`, or tokens with prices): routing will be "
            "by quality alone"
        )
        return out, False
    if missing:
        errors = []
        for i in missing:
            fname, line = row_where[i]
            backend = actions[i].backend
            hint = (
                f"no price for backend {backend!r} in `prices`"
                if row_tokens[i] is not None
                else "no `cost` and no `input_tokens`/`output_tokens`"
            )
            errors.append(RowError(fname, line, "cost", None, f"required when other rows carry cost: {hint}"))
        raise LogValidationError(errors[0].file, errors, len(row_costs))
    return out, True


def split_queries(query_ids: Sequence[str], dev_fraction: float = 0.2, seed: int = 0) -> np.ndarray:
    """Deterministic query-level split: returns a boolean mask, True for the dev split.

    Hashing the id (not shuffling positions) keeps a query on the same side whatever the row
    order, file split or subset of the log, so a query never leaks from dev into train.
    """
    if not 0.0 < dev_fraction < 1.0:
        msg = f"`dev_fraction` must be in (0, 1), got {dev_fraction!r}"
        raise ValueError(msg)
    out = np.zeros(len(query_ids), dtype=bool)
    for i, qid in enumerate(query_ids):
        digest = hashlib.sha256(f"{seed}:{qid}".encode()).digest()
        out[i] = int.from_bytes(digest[:8], "big") / 2**64 < dev_fraction
    return out
