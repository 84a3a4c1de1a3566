"""The one featuriser: query features (embedding + cheap structural text features) and action
features (a configuration described by its values, so an unseen value still gets a representation).

Query features describe only what the user sends; nothing from a log's outcome columns reaches them.
"""

import math
import re
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import torch

from haps_core.catalog import Action, RoutingSpace
from haps_core.charstats import ARABIC, CJK, CYRILLIC, MATH_CHARS, char_bits, char_stats, is_small_batch

STRUCTURAL_FEATURES = (
    "log_chars",
    "log_words",
    "log_lines",
    "digit_frac",
    "math_symbols",
    "latex_or_dollar",
    "code_markers",
    "question_marks",
    "wh_question",
    "multiple_choice",
    "has_context",
    "upper_frac",
    "non_ascii_frac",
    "cjk_frac",
    "cyrillic_frac",
    "arabic_frac",
)

_WH = re.compile(r"\b(what|which|who|whom|whose|when|where|why|how)\b", re.IGNORECASE)
# Choice lines: r"(^|\n)\s*(\(?[A-Ea-e][\):.]|choices?:)" (IGNORECASE) counted. A match starts at
# the text's start or a newline and skips all the whitespace after it (the item starts with
# none), so it needs the item at a line's first non-whitespace position (`CharStats.line_heads`;
# line starts in one run of whitespace share it, and the first one's match holds the others);
# the item holds no newline. So the count is that of line heads where the item matches.
_CHOICE_ITEM = re.compile(r"\(?[A-Ea-e][\):.]|choices?:", re.IGNORECASE)
# "3 x 4": the part of the math-symbol count that is not a single character (=+-*/^<>%, which
# `charstats` counts); the two never share a character, so their counts add up.
_TIMES = re.compile("\\d\\s*[x\u00d7]\\s*\\d")
# Code markers: r"```|\bdef |\bclass |\breturn\b|;\s*$|\{|\}|#include|=>" (MULTILINE) counted
# alternative by alternative. They start with different characters and no match of one holds
# the start of another's, so the counts add up to the whole expression's; the literals are
# counted with str.count, the others by `_code_words`.
_CODE_LITERALS = ("```", "{", "}", "#include", "=>")
# Latex: r"\$|\\frac|\\sqrt|\\begin" searched, i.e. one of its four literals in the text.


def _regex_features(text: str) -> tuple[int, bool, int, bool]:
    """(`3 x 4` products, latex, code markers, context) of one text.

    Each count equals its regular expression's; the expressions run only where a cheap test
    (a substring, or a character's neighbours) says a match may exist, and the code markers that
    are a literal beside a word boundary are counted with ``str.find`` (the same result, without
    scanning most texts with `re`, which costs more than tokenising them).
    """
    low = text.lower()
    times = _times_count(text) if ("x" in text or "\u00d7" in text) else 0
    code = sum(map(text.count, _CODE_LITERALS)) + _code_words(text)
    latex = "$" in text or "\\frac" in text or "\\sqrt" in text or "\\begin" in text
    return times, latex, code, "context:" in low or "passage" in low


def _is_word(ch: str) -> bool:
    return ch.isalnum() or ch == "_"  # `\w` of a str pattern


def _occurrences(text: str, literal: str) -> Iterator[int]:
    i = text.find(literal)
    while i >= 0:
        yield i
        i = text.find(literal, i + 1)


def _times_count(text: str) -> int:
    """`_TIMES` matches; the expression runs only on a text with an x (or U+00D7) that has a digit or
    whitespace on both sides, as every match has."""
    n = len(text)
    for sign in ("x", "\u00d7"):
        for i in _occurrences(text, sign):
            before, after = text[i - 1 : i], text[i + 1 : i + 2]
            if (
                0 < i < n - 1
                and (before.isdigit() or before.isspace())
                and (after.isdigit() or after.isspace())
            ):
                return len(_TIMES.findall(text))
    return 0


def _code_words(text: str) -> int:
    """The code markers that are not literals: ``\\bdef `` and ``\\bclass `` (no word character before),
    ``\\breturn\\b`` (none before or after) and ``;\\s*$`` with MULTILINE (a semicolon whose
    following whitespace reaches a newline or the end). None of them can overlap itself."""
    n = len(text)
    count = 0
    for literal in ("def ", "class "):
        count += sum(1 for i in _occurrences(text, literal) if i == 0 or not _is_word(text[i - 1]))
    count += sum(
        1
        for i in _occurrences(text, "return")
        if (i == 0 or not _is_word(text[i - 1])) and (i + 6 == n or not _is_word(text[i + 6]))
    )
    for i in _occurrences(text, ";"):
        j = i + 1
        while j < n and text[j] != "\n" and text[j].isspace():
            j += 1
        count += j == n or text[j] == "\n"
    return count


def _choice_lines(st: Any, n: int) -> np.ndarray:
    """[n] per text, how many lines start with a choice item (see `_CHOICE_ITEM`)."""
    counts = np.zeros(n, dtype=np.int64)
    match, joined, ends = _CHOICE_ITEM.match, st.joined, st.text_ends
    for q, t in zip(st.line_heads.tolist(), st.line_head_owner.tolist(), strict=True):
        if match(joined, q, int(ends[t])) is not None:
            counts[t] += 1
    return counts


_WH_FIRST = np.array([ord(c) for c in "wWhH"], dtype=np.uint32)


def _wh_questions(st: Any, n: int) -> np.ndarray:
    """[n] whether each text has a WH word: `_WH` searched, through the batch's `\\w+` runs.

    A match of ``\\b(what|...|how)\\b`` is a whole `\\w+` run (its letters are word characters
    and both ends are word boundaries) of 3 to 5 characters starting with w or h in either case
    (nothing else folds to them), so only such runs are tried, with the same expression.
    """
    found = np.zeros(n, dtype=bool)
    begin, length = st.run_begin, st.run_length
    maybe = (length >= 3) & (length <= 5) & np.isin(st.code_points[begin], _WH_FIRST)
    joined = st.joined
    for i in np.flatnonzero(maybe).tolist():
        if not found[st.run_owner[i]]:
            b = int(begin[i])  # sliced: with pos, `\\b` would look at the previous text's last character
            found[st.run_owner[i]] = _WH.fullmatch(joined[b : b + int(length[i])]) is not None
    return found


_CHOICE = re.compile(r"(^|\n)\s*(\(?[A-Ea-e][\):.]|choices?:)", re.IGNORECASE)


def _script_fractions(text: str) -> tuple[float, float, float, float]:
    if text.isascii():  # no letter beyond ASCII: every fraction is 0 (the common case, fast)
        return 0.0, 0.0, 0.0, 0.0
    letters = list(filter(str.isalpha, text))
    if not letters:
        return 0.0, 0.0, 0.0, 0.0
    n = len(letters)
    bits = [char_bits(ch) for ch in letters if ord(ch) > 127]
    return (
        len(bits) / n,
        sum(b & CJK != 0 for b in bits) / n,
        sum(b & CYRILLIC != 0 for b in bits) / n,
        sum(b & ARABIC != 0 for b in bits) / n,
    )


def _structural_one(text: str) -> tuple[float, ...]:
    """One text's structural features, by the definitions (the path for small batches)."""
    n_chars = len(text)
    letters = sum(map(str.isalpha, text)) or 1
    times, latex, code, context = _regex_features(text)
    return (
        math.log1p(n_chars),
        math.log1p(len(text.split())),
        math.log1p(text.count("\n")),
        sum(map(str.isdigit, text)) / max(n_chars, 1),
        math.log1p(sum(map(MATH_CHARS.__contains__, text)) + times),
        float(latex),
        math.log1p(code),
        math.log1p(text.count("?")),
        float(bool(_WH.search(text))),
        math.log1p(len(_CHOICE.findall(text))),
        float(context),
        sum(map(str.isupper, text)) / letters,
        *_script_fractions(text),
    )


def structural_features(texts: Sequence[str]) -> np.ndarray:
    """[n, len(STRUCTURAL_FEATURES)] float32 features of the query texts (unnormalised).

    Character counts come from one vectorised pass over the batch (`haps_core.charstats`); the
    few pattern features run per text. A small batch is computed text by text (the same values).
    """
    n = len(texts)
    if not n:
        return np.zeros((0, len(STRUCTURAL_FEATURES)), dtype=np.float32)
    if is_small_batch(texts):
        return np.array([_structural_one(t) for t in texts], dtype=np.float64).astype(np.float32)
    st = char_stats(texts)
    rx = np.array([_regex_features(t) for t in texts], dtype=np.float64).reshape(n, 4)
    wh = _wh_questions(st, n).astype(np.float64)
    choices = _choice_lines(st, n).astype(np.float64)
    chars = st.chars.astype(np.float64)
    letters = np.maximum(st.alpha, 1).astype(np.float64)
    script_letters = letters  # the script fractions are shares of the letters (0 without any)
    out = np.stack(
        [
            np.log1p(chars),
            np.log1p(st.words),
            np.log1p(st.newlines),
            st.digits / np.maximum(chars, 1.0),
            np.log1p(st.math_chars + rx[:, 0]),
            rx[:, 1],
            np.log1p(rx[:, 2]),
            np.log1p(st.question_marks),
            wh,
            np.log1p(choices),
            rx[:, 3],
            st.upper / letters,
            st.non_ascii_alpha / script_letters,
            st.cjk / script_letters,
            st.cyrillic / script_letters,
            st.arabic / script_letters,
        ],
        axis=1,
    )
    return out.astype(np.float32)


# ---------------------------------------------------------------------------------------------
# Action (configuration) features


TEMPERATURE_CENTRES = (0.0, 0.5, 1.0, 1.5)


def temperature_features(t: float | None) -> list[float]:
    """Has-temperature flag, the value, and smooth bumps around typical values (width 0.35)."""
    if t is None:
        return [0.0, 0.0] + [0.0] * len(TEMPERATURE_CENTRES)
    return [1.0, t] + [math.exp(-((t - c) ** 2) / (2 * 0.35**2)) for c in TEMPERATURE_CENTRES]


N_HASH_BUCKETS = 8


def _hash_bucket(value: str) -> int:
    import hashlib

    return int.from_bytes(hashlib.sha256(value.encode()).digest()[:4], "big") % N_HASH_BUCKETS


def extra_param_names(space: RoutingSpace) -> list[str]:
    return [p for p in space.parameter_names if p not in ("temperature", "prompt_style")]


def action_value_features(space: RoutingSpace) -> np.ndarray:
    """[A, f] numeric features of each action's temperature and extra declared parameters.

    Numeric extra parameters are scaled by their range over the catalog; string values are
    hashed into a few buckets (so an unseen value still maps somewhere, shared with others).
    """
    extras = extra_param_names(space)
    ranges: dict[str, tuple[float, float]] = {}
    for p in extras:
        nums = [
            float(a.parameters[p])
            for a in space.actions
            if p in a.parameters and not isinstance(a.parameters[p], str)
        ]
        ranges[p] = (min(nums), max(nums)) if nums else (0.0, 1.0)
    rows = []
    for a in space.actions:
        row = temperature_features(a.temperature)
        for p in extras:
            row += _param_features(a, p, ranges[p])
        rows.append(row)
    return np.asarray(rows, dtype=np.float32)


def _param_features(action: Action, param: str, value_range: tuple[float, float]) -> list[float]:
    if param not in action.parameters:
        return [0.0, 0.0] + [0.0] * N_HASH_BUCKETS
    value = action.parameters[param]
    onehot = [0.0] * N_HASH_BUCKETS
    if isinstance(value, str):
        onehot[_hash_bucket(value)] = 1.0
        return [1.0, 0.0, *onehot]
    lo, hi = value_range
    return [1.0, (float(value) - lo) / (hi - lo) if hi > lo else 0.0, *onehot]


def style_text(space: RoutingSpace, style: str) -> str:
    """The text that represents a prompt style for the encoder: its name and its template."""
    template = dict(space.prompt_styles).get(style, "")
    return f"prompt style {style.replace('_', ' ')}. {template}".strip()


def query_features(encoder: Any, texts: Sequence[str], use_structural: bool) -> torch.Tensor:
    """THE router input features of query texts: the encoder's embedding (+ structural features).

    Training, evaluation and routing all featurise through here, so they cannot drift apart.
    """
    emb = encoder.encode(list(texts)).float()
    if use_structural:
        emb = torch.cat([emb, torch.as_tensor(structural_features(texts))], dim=1)
    return emb
