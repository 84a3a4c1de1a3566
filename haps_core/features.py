"""The one featuriser: query features (embedding + cheap structural text features) and action
features (a configuration described by its values, so an unseen value still gets a representation).

Query features describe only what the user sends; nothing from a log's outcome columns reaches them.
"""

import math
import re
import unicodedata
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from haps_core.catalog import Action, RoutingSpace

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
_CHOICE = re.compile(r"(^|\n)\s*(\(?[A-Ea-e][\):.]|choices?:)", re.IGNORECASE)
_MATH = re.compile(r"[=+\-*/^<>%]|\d\s*[x\u00d7]\s*\d")
_CODE = re.compile(r"```|\bdef |\bclass |\breturn\b|;\s*$|\{|\}|#include|=>", re.MULTILINE)
_LATEX = re.compile(r"\$|\\frac|\\sqrt|\\begin")


def _script_fractions(text: str) -> tuple[float, float, float, float]:
    if text.isascii():  # no letter beyond ASCII: every fraction is 0 (the common case, fast)
        return 0.0, 0.0, 0.0, 0.0
    letters = list(filter(str.isalpha, text))
    if not letters:
        return 0.0, 0.0, 0.0, 0.0
    n = len(letters)
    non_ascii = sum(ord(ch) > 127 for ch in letters) / n
    names = [unicodedata.name(ch, "") for ch in letters if ord(ch) > 127]
    cjk = sum(nm.startswith(("CJK", "HIRAGANA", "KATAKANA", "HANGUL")) for nm in names) / n
    cyr = sum(nm.startswith("CYRILLIC") for nm in names) / n
    arab = sum(nm.startswith("ARABIC") for nm in names) / n
    return non_ascii, cjk, cyr, arab


def structural_features(texts: Sequence[str]) -> np.ndarray:
    """[n, len(STRUCTURAL_FEATURES)] float32 features of the query texts (unnormalised)."""
    out = np.zeros((len(texts), len(STRUCTURAL_FEATURES)), dtype=np.float32)
    for i, text in enumerate(texts):
        n_chars = len(text)
        letters = sum(map(str.isalpha, text)) or 1  # map over a builtin: the same counts, faster
        out[i] = (
            math.log1p(n_chars),
            math.log1p(len(text.split())),
            math.log1p(text.count("\n")),
            sum(map(str.isdigit, text)) / max(n_chars, 1),
            math.log1p(len(_MATH.findall(text))),
            float(bool(_LATEX.search(text))),
            math.log1p(len(_CODE.findall(text))),
            math.log1p(text.count("?")),
            float(bool(_WH.search(text))),
            math.log1p(len(_CHOICE.findall(text))),
            float("context:" in text.lower() or "passage" in text.lower()),
            sum(map(str.isupper, text)) / letters,
            *_script_fractions(text),
        )
    return out


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
