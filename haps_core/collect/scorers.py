"""Scorers for `haps collect`: turn (query, reference, output) into a score in [0, 1].

Built-ins are looked up by name (`get_scorer`); any Python callable with the same signature works,
and `llm_judge` builds one from any text generator and a rubric.
"""

import logging
import math
import re
import string
from collections import Counter
from collections.abc import Callable

logger = logging.getLogger(__name__)

Scorer = Callable[[str, str, str], float]
"""``scorer(query, reference, output) -> score in [0, 1]``."""

_LETTERS = "ABCDEFGHIJ"
_MC_PATTERNS = (
    # "Answer: B", "the answer is (C)", "final answer: d"
    re.compile(r"answer\s*(?:is|:)?\s*[:\-]?\s*\(?\**([A-J])\b\)?", re.IGNORECASE),
    re.compile(r"^\s*\(?([A-J])\)?(?:[.:)\s]|$)"),  # an output that starts with the letter
    re.compile(r"\(([A-J])\)", re.IGNORECASE),
    re.compile(r"\b([A-J])\b"),  # the last standalone capital letter
)
_NUMBER = re.compile(r"-?\d[\d,]*(?:\.\d+)?(?:[eE][-+]?\d+)?|-?\.\d+")


def normalize_text(text: str) -> str:
    """Lower case, no punctuation, articles or extra white space (the SQuAD normalisation)."""
    text = text.lower()
    text = "".join(ch for ch in text if ch not in set(string.punctuation))
    text = re.sub(r"\b(a|an|the)\b", " ", text)
    return " ".join(text.split())


def exact_match(query: str, reference: str, output: str) -> float:
    """1 when the normalised output equals the normalised reference."""
    return float(normalize_text(output) == normalize_text(reference))


def contains(query: str, reference: str, output: str) -> float:
    """1 when the normalised reference occurs in the normalised output."""
    ref = normalize_text(reference)
    return float(bool(ref) and f" {ref} " in f" {normalize_text(output)} ")


def regex(query: str, reference: str, output: str) -> float:
    """1 when the reference, read as a regular expression, matches somewhere in the output."""
    return float(re.search(reference, output, flags=re.IGNORECASE | re.MULTILINE) is not None)


def extract_choice(output: str) -> str | None:
    """The multiple-choice letter an output gives (A-J), or None."""
    for i, pattern in enumerate(_MC_PATTERNS):
        found = pattern.findall(output)
        if found:
            return (found[-1] if i in (0, 3) else found[0]).upper()
    return None


def multiple_choice(query: str, reference: str, output: str) -> float:
    """1 when the letter the output gives equals the reference letter (``B``, ``(B)``, ``b``)."""
    ref = reference.strip().strip("()").strip().upper()[:1]
    if ref not in _LETTERS:
        msg = f"multiple_choice: the reference must be a letter A-J, got {reference!r}"
        raise ValueError(msg)
    return float(extract_choice(output) == ref)


def _parse_number(text: str) -> float | None:
    found = _NUMBER.findall(text)
    if not found:
        return None
    try:
        return float(found[-1].replace(",", ""))
    except ValueError:
        return None


def numeric(query: str, reference: str, output: str) -> float:
    """1 when the last number in the output equals the reference number (relative tolerance 1e-6)."""
    ref = _parse_number(reference)
    if ref is None:
        msg = f"numeric: the reference must hold a number, got {reference!r}"
        raise ValueError(msg)
    got = _parse_number(output)
    return float(got is not None and math.isclose(got, ref, rel_tol=1e-6, abs_tol=1e-9))


def token_f1(query: str, reference: str, output: str) -> float:
    """The F1 of the normalised tokens of output and reference (the SQuAD F1)."""
    ref, out = normalize_text(reference).split(), normalize_text(output).split()
    if not ref or not out:
        return float(ref == out)
    common = sum((Counter(ref) & Counter(out)).values())
    if common == 0:
        return 0.0
    precision, recall = common / len(out), common / len(ref)
    return 2 * precision * recall / (precision + recall)


BUILTIN_SCORERS: dict[str, Scorer] = {
    "exact_match": exact_match,
    "multiple_choice": multiple_choice,
    "numeric": numeric,
    "contains": contains,
    "regex": regex,
    "token_f1": token_f1,
}

DEFAULT_RUBRIC = (
    "Rate how well the response answers the question, given the reference answer. "
    "1 means fully correct, 0 means wrong or missing."
)
_JUDGE_TEMPLATE = (
    "{rubric}\n\nQuestion:\n{query}\n\nReference answer:\n{reference}\n\nResponse:\n{output}\n\n"
    "Reply with a single score between 0 and 1 on the last line, as `Score: <number>`."
)
_SCORE = re.compile(r"score\s*[:=]\s*(\d+(?:\.\d+)?)\s*(?:/\s*(\d+(?:\.\d+)?))?", re.IGNORECASE)


def parse_judge_score(text: str) -> float:
    """The score a judge's reply gives: ``Score: 0.8``, ``Score: 4/5``, else its last number.

    Raises ValueError when no score in [0, 1] (or a fraction of one) is found.
    """
    found = _SCORE.findall(text)
    if found:
        value, scale = found[-1]
        score = float(value) / float(scale) if scale else float(value)
    else:
        number = _parse_number(text)
        if number is None:
            msg = f"the judge's reply holds no score: {text[:120]!r}"
            raise ValueError(msg)
        score = number
    if not 0.0 <= score <= 1.0:
        msg = f"the judge's score {score!r} is outside [0, 1] (reply: {text[:120]!r})"
        raise ValueError(msg)
    return score


def llm_judge(generate: Callable[[str], str], rubric: str = DEFAULT_RUBRIC) -> Scorer:
    """A scorer that asks an LLM: ``generate(prompt) -> reply`` (wrap any chat model, e.g.
    ``lambda p: chat.invoke(p).content``); the reply's score is parsed (`parse_judge_score`)."""
    if not callable(generate):
        msg = f"`generate` must be a callable prompt -> text, got {type(generate).__name__}"
        raise TypeError(msg)

    def judge(query: str, reference: str, output: str) -> float:
        prompt = _JUDGE_TEMPLATE.format(rubric=rubric, query=query, reference=reference, output=output)
        return parse_judge_score(str(generate(prompt)))

    judge.__name__ = "llm_judge"
    return judge


def get_scorer(scorer: "str | Scorer") -> Scorer:
    """A scorer by built-in name, or the callable itself.

    Raises:
        ValueError: for an unknown name (the message lists the allowed names).
        TypeError: for something that is neither a name nor a callable.
    """
    if isinstance(scorer, str):
        found = BUILTIN_SCORERS.get(scorer.strip().lower().replace("-", "_"))
        if found is None:
            msg = f"unknown scorer {scorer!r}; allowed: {sorted(BUILTIN_SCORERS)} or a Python callable"
            raise ValueError(msg)
        return found
    if callable(scorer):
        return scorer
    msg = f"`scorer` must be a name or a callable (query, reference, output) -> float, got {scorer!r}"
    raise TypeError(msg)


def check_score(value: object) -> float:
    """The scorer's result as a float in [0, 1], or ValueError saying what it returned."""
    if isinstance(value, bool):
        return float(value)
    if not isinstance(value, int | float) or not math.isfinite(value) or not 0.0 <= value <= 1.0:
        msg = f"the scorer returned {value!r}; a score must be a number in [0, 1]"
        raise ValueError(msg)
    return float(value)
