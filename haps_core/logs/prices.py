"""Prices (USD per 1M tokens) and the per-row cost of a log: given, or computed from tokens."""

import json
import logging
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from haps_core.catalog import Action
from haps_core.logs.report import LogValidationError, RowError

logger = logging.getLogger(__name__)


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
        where = [(*row_where[i], actions[i].backend, row_tokens[i] is not None) for i in missing]
        errors = price_errors(where)
        raise LogValidationError(errors[0].file, errors, len(row_costs))
    return out, True


def price_problem(backend: str, has_tokens: bool) -> str:
    """Why a row's cost is unknown, and what fixes it (the same text for every row of a backend,
    so a report groups them into one line per backend)."""
    if has_tokens:
        return (
            f"required when other rows carry cost: no price for backend {backend!r} in `prices`; "
            f"give its prices with --prices (prices=), or log a `cost` column"
        )
    return (
        f"required when other rows carry cost: rows of backend {backend!r} have no `cost` and no "
        f"`input_tokens`/`output_tokens`; log a `cost` column, or token counts with --prices"
    )


def price_errors(where: list[tuple[str, int, str, bool]]) -> list[RowError]:
    """One `price` error per row (file, line, backend, has token counts) whose cost is unknown."""
    return [
        RowError(file, line, "cost", None, price_problem(backend, has_tokens), kind="price")
        for file, line, backend, has_tokens in where
    ]
