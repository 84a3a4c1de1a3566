"""Feedback: an outcome attached to a decision record later, by its ``decision_id``.

A score is a number in [0, 1], thumbs (``"up"``/``"down"``, True/False: 1 and 0), or a scorer
callable run on the stored response. Every feedback is kept with its time; the export uses the
latest per decision.
"""

import inspect
import logging
import math
from collections.abc import Callable
from typing import Any

from haps_core.feedback.base import FeedbackEntry, Store, UnknownDecisionError, feedback_time
from haps_core.feedback.record import DecisionRecord

logger = logging.getLogger(__name__)

THUMBS = {"up": 1.0, "down": 0.0, "thumbs_up": 1.0, "thumbs_down": 0.0}

Score = float | int | bool | str | Callable[..., Any]
"""What `feedback` takes: a number in [0, 1], thumbs, or a scorer (`resolve_score`)."""


def _checked(value: Any, what: str) -> float:
    if isinstance(value, bool):
        return 1.0 if value else 0.0
    if not isinstance(value, int | float) or not math.isfinite(value) or not 0.0 <= value <= 1.0:
        msg = f"{what} must be a number in [0, 1], 'up'/'down' or True/False, got {value!r}"
        raise ValueError(msg)
    return float(value)


def resolve_score(score: Score, record: DecisionRecord | None = None) -> tuple[float, str]:
    """``(score in [0, 1], kind)`` of a feedback value.

    Args:
        score: a number in [0, 1] (kind ``score``); ``"up"``/``"down"`` or True/False (kind
            ``thumbs``: 1.0 / 0.0); or a callable (kind ``scorer``) called with the stored
            response text, or with ``(response, record)`` when it takes two arguments, that
            returns one of the former.
        record: the decision's record (needed for a scorer).

    Raises:
        ValueError: a score outside [0, 1], an unknown thumbs word, or a scorer on a record
            without a stored response.
    """
    if isinstance(score, str):
        word = score.strip().lower()
        if word not in THUMBS:
            msg = f"`score` {score!r} is not a thumbs value; allowed: {sorted(THUMBS)}, or a number in [0, 1]"
            raise ValueError(msg)
        return THUMBS[word], "thumbs"
    if isinstance(score, bool):
        return _checked(score, "`score`"), "thumbs"
    if callable(score):
        if record is None or record.response is None:
            rid = None if record is None else record.decision_id
            msg = (
                f"a scorer needs the stored response of decision {rid!r}, and it has none "
                "(a failed call, or a store with store_text=False)"
            )
            raise ValueError(msg)
        try:
            takes_two = len(inspect.signature(score).parameters) >= 2
        except (TypeError, ValueError):
            takes_two = False
        value = score(record.response, record) if takes_two else score(record.response)
        if isinstance(value, str):
            return resolve_score(value)[0], "scorer"
        return _checked(value, f"the scorer's result for decision {record.decision_id!r}"), "scorer"
    return _checked(score, "`score`"), "score"


def give_feedback(store: Store, decision_id: str, score: Score) -> FeedbackEntry:
    """Attaches ``score`` to the record ``decision_id`` of ``store``; returns the entry kept.

    Feedback given twice is kept twice, each with its time; the export uses the latest.

    Raises:
        UnknownDecisionError: the store holds no record with that id (its message names the
            id and the store).
        ValueError: a bad score (`resolve_score`).
    """
    if not isinstance(decision_id, str) or not decision_id:
        msg = f"`decision_id` must be a non-empty string, got {decision_id!r}"
        raise ValueError(msg)
    record = None
    if callable(score) and not isinstance(score, str | bool):
        record = store.get(decision_id)
        if record is None:
            raise UnknownDecisionError(decision_id, store.name)
    value, kind = resolve_score(score, record)
    entry = FeedbackEntry(decision_id, feedback_time(), value, kind)
    store.add_feedback(entry)
    logger.debug("feedback %s = %.3f (%s) in %s", decision_id, value, kind, store.name)
    return entry
