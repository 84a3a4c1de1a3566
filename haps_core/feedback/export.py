"""Records + feedback -> routing-log rows (format v1 with ``propensity``), for `haps train`.

One row per served record that has feedback: the query, the action that answered (backend,
temperature, prompt style, other parameters), the latest feedback as ``score``, the actual
tokens and cost, the latency and the propensity. A row whose call fell back carries no
propensity: the policy chose another action, and what served it was the fallback order.
Records without feedback, failed calls and records kept without their text are left out and
counted in the `ExportSummary`.
"""

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from haps_core.feedback.base import Store

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ExportSummary:
    """What an export wrote and left out."""

    rows: int
    records: int
    without_feedback: int
    failed: int
    without_text: int


def export_rows(store: Store) -> tuple[list[dict[str, Any]], ExportSummary]:
    """Routing-log rows of ``store`` (see the module docstring) and what was left out."""
    latest: dict[str, tuple[float, float]] = {}
    for entry in store.feedback_entries():
        if entry.decision_id not in latest or entry.ts >= latest[entry.decision_id][0]:
            latest[entry.decision_id] = (entry.ts, entry.score)
    rows: list[dict[str, Any]] = []
    records = store.records()
    failed = without_feedback = without_text = 0
    for r in records:
        if r.status != "ok" or r.served_backend is None:
            failed += 1
            continue
        if r.decision_id not in latest:
            without_feedback += 1
            continue
        if r.query is None:
            without_text += 1
            continue
        params = dict(r.served_parameters or {})
        row: dict[str, Any] = {
            "query_id": f"q-{r.query_hash[:16]}",
            "query": r.query,
            "model": r.served_backend,
            "score": latest[r.decision_id][1],
        }
        if params.get("temperature") is not None:
            row["temperature"] = params.pop("temperature")
        params.pop("temperature", None)
        row["prompt_style"] = params.pop("prompt_style", "default")
        row.update(params)
        for key in ("cost", "input_tokens", "output_tokens", "latency_s"):
            if getattr(r, key) is not None:
                row[key] = getattr(r, key)
        if not r.fallback:
            row["propensity"] = r.propensity
        row["decision_id"] = r.decision_id
        rows.append(row)
    summary = ExportSummary(len(rows), len(records), without_feedback, failed, without_text)
    if without_text:
        logger.warning(
            "%d record(s) of %s were kept without their text (store_text=False) and are not exported",
            without_text,
            store.name,
        )
    return rows, summary


def export_log(store: Store, output: str | Path) -> ExportSummary:
    """Writes the routing log of ``store`` to ``output`` (JSONL), atomically.

    Raises:
        ValueError: no record has feedback yet (an empty log cannot be trained on).
    """
    rows, summary = export_rows(store)
    if not rows:
        msg = (
            f"store {store.name} has no served record with feedback to export "
            f"({summary.records} records, {summary.without_feedback} without feedback, "
            f"{summary.failed} failed, {summary.without_text} without text)"
        )
        raise ValueError(msg)
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    tmp = output.with_name(output.name + ".tmp")
    with open(tmp, "w", encoding="utf-8") as fh:
        for row in rows:
            fh.write(json.dumps(row, ensure_ascii=False) + "\n")
    tmp.replace(output)
    return summary
