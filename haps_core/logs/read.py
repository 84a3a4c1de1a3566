"""Reading routing logs (JSONL, JSONL.gz, CSV, Parquet) into a validated `RoutingLog`.

Every row is validated and *all* errors of a file are reported at once (a missing column once,
identical row errors grouped), so a large export is fixed in one pass rather than one per run.
Nothing is dropped silently: bad rows fail the load unless ``skip_invalid=True`` is given, in
which case the number skipped is logged and kept on the result.
"""

import csv
import gzip
import io
import json
import logging
import math
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from haps_core.catalog import DEFAULT_PROMPT_STYLE, Action, RoutingSpace
from haps_core.logs.columns import MISSING_FIELD, drop_covered, header_errors, log_ignored_columns
from haps_core.logs.fields import KNOWN_FIELDS, REQUIRED_FIELDS, _missing, _parse_field
from haps_core.logs.prices import _resolve_costs, load_prices, price_errors
from haps_core.logs.report import LogValidationError, RowError
from haps_core.logs.tables import RoutingLog

logger = logging.getLogger(__name__)

SUPPORTED_SUFFIXES = (".jsonl", ".jsonl.gz", ".json.gz", ".ndjson", ".csv", ".csv.gz", ".parquet")
DUPLICATE_POLICIES = ("mean", "error")


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
    return gzip.open(path, "rb") if path.name.endswith(".gz") else open(path, "rb")


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
            prompt_style), besides those `space` declares; other unknown columns are
            bookkeeping and are ignored (one notice lists them).
        duplicates: "mean" averages repeated observations of a (query, action) cell (they are
            independent draws of one call's quality); "error" reports them as bad rows.
        skip_invalid: drop invalid rows (and log how many) instead of failing the load.

    Raises:
        LogValidationError: when a required column is missing, or any row is invalid, or rows
            lack a cost that other rows have (every error of the file is listed, grouped).
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
    if space is not None:  # the catalog's own parameters are columns to read, not bookkeeping
        params += tuple(p for p in space.parameter_names if p not in KNOWN_FIELDS and p not in params)

    qid_pos: dict[str, int] = {}
    query_texts: list[str] = []
    actions: list[Action] = []
    row_q: list[int] = []
    row_costs: list[float | None] = []
    row_tokens: list[tuple[float, float] | None] = []
    row_input_tokens: list[float] = []
    row_propensity: list[float] = []
    row_scores: list[float] = []
    row_groups: list[str] = []
    row_where: list[tuple[str, int]] = []
    n_skipped = 0
    ignored_columns: set[str] = set()
    any_cost = False  # whether a valid row so far carries (or can compute) its cost

    for path in files:
        errors: list[RowError] = []
        seen_cells: dict[tuple[str, Action], int] = {}
        n_rows = 0
        fname = str(path)
        columns: dict[str, None] = {}  # every column (CSV) or key (JSON) seen, in order
        is_text = False
        priceless: list[tuple[str, int, str, bool]] = []
        for line, raw, text in _iter_raw(path, errors):
            n_rows += 1
            is_text = text
            columns.update(dict.fromkeys(raw))
            row_errors: list[RowError] = []
            values: dict[str, Any] = {}
            for name in REQUIRED_FIELDS:
                if name not in raw or _missing(raw[name]):
                    row_errors.append(RowError(fname, line, name, raw.get(name), MISSING_FIELD))
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
            row_input_tokens.append(values.get("input_tokens", math.nan))
            row_propensity.append(values.get("propensity", math.nan))
            row_groups.append(values.get("dataset", ""))
            row_where.append((fname, line))
            if "cost" in values or (tokens is not None and model in prices):
                any_cost = True
            else:
                priceless.append((fname, line, model, tokens is not None))
        if n_rows == 0 and not errors:
            msg = f"`logs` file {fname!r} is empty: it holds no rows"
            raise ValueError(msg)
        header = header_errors(fname, list(columns), n_rows, params, is_text) if columns else []
        if header:  # no row is usable: this fails with or without skip_invalid
            raise LogValidationError(fname, drop_covered(errors, header), n_rows)
        if priceless and any_cost and not skip_invalid:
            errors += price_errors(priceless)  # with the row errors, grouped per backend
        if errors:
            bad_lines = {e.line for e in errors}
            if not skip_invalid:
                raise LogValidationError(fname, errors, n_rows)
            n_skipped += len(bad_lines)
            logger.warning("skipped %d invalid row(s) of %s (first: %s)", len(bad_lines), fname, errors[0])

    if not row_q:
        msg = f"no valid rows in {[str(f) for f in files]}"
        raise ValueError(msg)
    log_ignored_columns(ignored_columns, [str(f) for f in files])

    cost, has_cost = _resolve_costs(row_costs, row_tokens, actions, prices, row_where)
    if space is None:
        space = RoutingSpace.from_actions(actions, prices)
    action_pos = {a: i for i, a in enumerate(space.actions)}
    propensity = np.asarray(row_propensity, dtype=np.float64)
    result = RoutingLog(
        space=space,
        query_ids=list(qid_pos),
        queries=query_texts,
        row_query=np.asarray(row_q, dtype=np.int32),
        row_action=np.asarray([action_pos[a] for a in actions], dtype=np.int32),
        score=np.asarray(row_scores, dtype=np.float64),
        cost=cost,
        groups=np.asarray(row_groups, dtype=object),
        input_tokens=np.asarray(row_input_tokens, dtype=np.float64),
        propensity=propensity if np.isfinite(propensity).any() else None,
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
