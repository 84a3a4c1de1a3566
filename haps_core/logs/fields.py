"""Fields of routing log format v1: their names, and how each value is parsed and checked
(a bad value raises ValueError saying what is allowed).

Text formats (CSV) carry every value as a string; JSON and Parquet are typed, and a wrong type
there is an error rather than something to coerce silently.
"""

import math
from typing import Any

from haps_core.text import SURROGATE

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
    "propensity",
)
# Fields that describe what happened *after* routing (the answer's quality, its tokens). They
# must never become router features; listing them keeps that rule explicit.
OUTCOME_FIELDS = ("score", "cost", "input_tokens", "output_tokens", "n_samples", "majority_score")
# How the logging policy chose the row's action (a bandit log): a training weight and what
# off-policy evaluation reweights by, never a router feature either.
POLICY_FIELDS = ("propensity",)


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
    # the logging policy's probability of the row's action for its query: 0 is excluded (an
    # action it never takes is never logged), and 1/propensity is the row's IPS weight
    "propensity": (0.0, 1.0, "a number in (0, 1] (the probability the logging policy chose this action)"),
}
_EXCLUSIVE_LOW = ("propensity",)
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
        too_low = number <= low if name in _EXCLUSIVE_LOW else number < low
        if not math.isfinite(number) or too_low or number > high or bad_int:
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
