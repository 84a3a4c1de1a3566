"""Splitting a log's cost into its known input side and the output side the router learns.

With input token counts in the log, the input side is modelled exactly from the text
(`haps_core.model.input_cost`) and the router's head learns only the output side; a backend
without them (a log with `cost` only) has its whole cost learnt by the head, as before.
"""

import dataclasses
import logging
from typing import Any

import numpy as np

from haps_core.logs import OutcomeTable, RoutingLog
from haps_core.model.input_cost import InputTokenModel, text_counts

logger = logging.getLogger(__name__)


def cost_split_table(
    log: RoutingLog, rows: np.ndarray
) -> tuple[OutcomeTable, InputTokenModel, dict[str, Any]]:
    """The training table of `rows` (cost = the side the head learns), the input-token model
    fitted on those rows, and a summary of the fit for the checkpoint's training record."""
    counts = text_counts(log.queries)
    space = log.space
    model = InputTokenModel.empty(space)
    if log.has_cost and log.input_tokens is not None:
        row_counts = counts[log.row_query[rows]]
        model = InputTokenModel.fit(space, log.row_action[rows], row_counts, log.input_tokens[rows])
    names = [b.name for b in space.backends]
    modelled = [n for n, f in zip(names, model.fitted, strict=True) if f]
    if not log.has_cost:
        return log.outcomes(rows), model, {}
    if not model.active:
        logger.warning(
            "the log has no `input_tokens` with input prices: the router predicts each call's "
            "whole cost, so long prompts are not priced by their length (log `input_tokens` and "
            "give prices to price them exactly)"
        )
        return log.outcomes(rows), model, {"modelled_backends": []}
    if len(modelled) < len(names):
        logger.warning(
            "no `input_tokens` or input price for %s: their whole cost is predicted",
            ", ".join(n for n in names if n not in modelled),
        )
    backend_of = np.asarray(space.backend_index())
    price = np.asarray([b.input_price for b in space.backends])[backend_of] / 1e6
    q, a = log.row_query, log.row_action
    predicted = np.zeros(log.n_rows)
    for start in range(0, log.n_rows, 65536):  # bounded memory on large logs
        part = slice(start, start + 65536)
        predicted[part] = model.tokens(space, counts[q[part]])[np.arange(len(q[part])), a[part]]
    logged = log.input_tokens if log.input_tokens is not None else np.full(log.n_rows, np.nan)
    actual = np.where(np.isfinite(logged), logged, predicted) * price[a]
    head_cost = log.cost - actual
    if (bad := int((head_cost[rows] < -0.01 * actual[rows]).sum())) > 0:
        logger.warning(
            "%d row(s) cost less than their input tokens at the catalog's input price: "
            "check the prices (their output side is taken as 0)",
            bad,
        )
    head_cost = np.maximum(head_cost, 0.0)
    table = dataclasses.replace(log, cost=head_cost).outcomes(rows)
    table.input_cost = dataclasses.replace(log, cost=predicted * price[a]).outcomes(rows).cost
    table.input_counts = counts
    with_tokens = rows[np.isfinite(logged[rows]) & np.isin(backend_of[a[rows]], np.flatnonzero(model.fitted))]
    rel = np.abs(predicted[with_tokens] - logged[with_tokens]) / np.maximum(logged[with_tokens], 1.0)
    summary = {
        "modelled_backends": modelled,
        "rows": len(with_tokens),
        "median_relative_error": round(float(np.median(rel)), 4) if len(rel) else None,
        "p95_relative_error": round(float(np.percentile(rel, 95)), 4) if len(rel) else None,
    }
    return table, model, summary
