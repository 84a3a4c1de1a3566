"""The vectorised text statistics equal the per-text regular-expression definitions, exactly.

`text_counts` and `structural_features` count character classes and runs of them in one pass over
a batch (`haps_core.charstats`). The references below are those definitions written text by text
with `re` and `str` predicates, as the features were first computed: every value must match
bit for bit, on haps-bench queries and on random text drawn from awkward characters (scripts,
digits of other systems, unpaired surrogates, control characters, empty texts).
"""

import math
import random
import re
import unicodedata

import numpy as np
import pytest

from haps_core.charstats import char_stats, is_small_batch
from haps_core.features import STRUCTURAL_FEATURES, structural_features
from haps_core.logs import read_logs
from haps_core.memo import last_batch
from haps_core.model.input_cost import TEXT_COUNTS, text_counts
from haps_core.paths import bench_logs, bench_prices

_WORD_RUN = re.compile(r"\w+")
_PUNCT = re.compile(r"[^\w\s]")
_PUNCT_RUN = re.compile(r"[^\w\s]+")
_DIGIT = re.compile(r"\d")
_DIGIT_RUN = re.compile(r"\d+")
_UPPER = re.compile(r"[A-Z]")
_NON_ASCII = re.compile(r"[^\x00-\x7f]")
_WH = re.compile(r"\b(what|which|who|whom|whose|when|where|why|how)\b", re.IGNORECASE)
_CHOICE = re.compile(r"(^|\n)\s*(\(?[A-Ea-e][\):.]|choices?:)", re.IGNORECASE)
_MATH = re.compile(r"[=+\-*/^<>%]|\d\s*[x\u00d7]\s*\d")
_CODE = re.compile(r"```|\bdef |\bclass |\breturn\b|;\s*$|\{|\}|#include|=>", re.MULTILINE)
_LATEX = re.compile(r"\$|\\frac|\\sqrt|\\begin")


def reference_counts(t: str) -> list[float]:
    runs = _WORD_RUN.findall(t)
    lengths = np.array([len(w) for w in runs], dtype=np.int64)
    return [
        len(t),
        len(t.split()),
        len(runs),
        len(_PUNCT.findall(t)),
        len(_DIGIT.findall(t)),
        t.count("\n"),
        len(_NON_ASCII.findall(t)),
        len(_UPPER.findall(t)),
        len(_DIGIT_RUN.findall(t)),
        len(_PUNCT_RUN.findall(t)),
        np.maximum(lengths - 6, 0).sum(),
        np.maximum(lengths - 10, 0).sum(),
        (lengths <= 3).sum(),
    ]


def reference_scripts(text: str) -> tuple[float, float, float, float]:
    letters = [ch for ch in text if ch.isalpha()]
    if not letters:
        return 0.0, 0.0, 0.0, 0.0
    n = len(letters)
    names = [unicodedata.name(ch, "") for ch in letters if ord(ch) > 127]
    return (
        sum(ord(ch) > 127 for ch in letters) / n,
        sum(nm.startswith(("CJK", "HIRAGANA", "KATAKANA", "HANGUL")) for nm in names) / n,
        sum(nm.startswith("CYRILLIC") for nm in names) / n,
        sum(nm.startswith("ARABIC") for nm in names) / n,
    )


def reference_structural(text: str) -> list[float]:
    n_chars = len(text)
    letters = sum(ch.isalpha() for ch in text) or 1
    return [
        math.log1p(n_chars),
        math.log1p(len(text.split())),
        math.log1p(text.count("\n")),
        sum(ch.isdigit() for ch in text) / max(n_chars, 1),
        math.log1p(len(_MATH.findall(text))),
        float(bool(_LATEX.search(text))),
        math.log1p(len(_CODE.findall(text))),
        math.log1p(text.count("?")),
        float(bool(_WH.search(text))),
        math.log1p(len(_CHOICE.findall(text))),
        float("context:" in text.lower() or "passage" in text.lower()),
        sum(ch.isupper() for ch in text) / letters,
        *reference_scripts(text),
    ]


ALPHABET = (
    "abcxyzABCXYZ what How WHICH who's_ def class return;  \n\t\r\x0b\x0c\x1c\x85\u2028\u00a0"
    "0123456789 3 x 4 5\u00d76 =+-*/^<>% {}`$\\frac#include=>()[].,:;!?'\"_"
    "\u00e9\u00c9\u00df\u0130\u0131\u017f\u212a\u01c5"  # accents, case oddities, titlecase
    "\u4e2d\u6587\u3072\u30ab\ud55c"  # CJK, hiragana, katakana, hangul
    "\u0416\u0436\u0627\u0644\u0661\u0662\u0966\u00b2\u2460\u2155"  # cyrillic, arabic, other digits
    "\U0001f600\u200b\ufeff\x00\x07\ud800\udfff"  # emoji, zero-width, controls, lone surrogates
)


# Pieces the pattern features look for, and near misses of them, for texts built word by word.
TOKENS = (
    "What",
    "what's",
    "WHOM",
    "who",
    "whoever",
    "who\u017fe",  # long s: matches "whose" ignoring case
    "How",
    "show",
    "why_",
    "where",
    "Wh",
    " ",
    "  ",
    "\n",
    "\n\n",
    " \n ",
    "\t",
    "(A)",
    "A)",
    "b.",
    "(e:",
    "F)",
    "Choices:",
    "choice:",
    "choicess:",
    "def ",
    "undef ",
    "class ",
    "subclass ",
    "return",
    "returned",
    "return_",
    ";",
    "; \n",
    ";x",
    "{",
    "}",
    "```",
    "``",
    "#include",
    "=>",
    "=",
    "3 x 4",
    "5\u00d76",
    "2x",
    "x",
    "$",
    "\\frac",
    "context:",
    "Passage",
    "\u0130",
    "\u212a",
    "\x0b",
    "\x1c",
    "\ud800",
    "word",
    "12",
    "\u0661",
)


def random_texts(n: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    texts = ["", " ", "\n", "A", "a1", "(A) yes\nB) no\nchoices: x", "\n\n (B) x\n  c. y", "q\n\n"]
    for i in range(n):
        length = rng.choice([0, 1, 2, 5, 20, 200])
        if i % 2:
            texts.append("".join(rng.choice(ALPHABET) for _ in range(length)))
        else:
            texts.append("".join(rng.choice(TOKENS) for _ in range(length // 2 + 1)))
    return texts


def bench_queries(n: int) -> list[str]:
    log = read_logs(bench_logs(), prices=bench_prices())
    return list(dict.fromkeys(log.queries))[:n]


@pytest.mark.parametrize("source", ["random", "haps-bench"])
def test_text_counts_equal_the_regular_expression_counts(source: str) -> None:
    texts = random_texts(600, seed=1) if source == "random" else bench_queries(400)
    got = text_counts(texts)
    assert got.shape == (len(texts), len(TEXT_COUNTS))
    expected = np.array([reference_counts(t) for t in texts], dtype=np.float64)
    for j, name in enumerate(TEXT_COUNTS[:-1]):
        bad = np.flatnonzero(got[:, j] != expected[:, j])
        assert not len(bad), f"{name}: {texts[bad[0]]!r}: {got[bad[0], j]} != {expected[bad[0], j]}"


@pytest.mark.parametrize("source", ["random", "haps-bench"])
def test_structural_features_equal_the_per_text_definitions(source: str) -> None:
    texts = random_texts(600, seed=2) if source == "random" else bench_queries(400)
    got = structural_features(texts)
    expected = np.array([reference_structural(t) for t in texts], dtype=np.float32)
    for j, name in enumerate(STRUCTURAL_FEATURES):
        bad = np.flatnonzero(got[:, j] != expected[:, j])
        assert not len(bad), f"{name}: {texts[bad[0]]!r}: {got[bad[0], j]} != {expected[bad[0], j]}"


@pytest.mark.parametrize("source", ["random", "haps-bench"])
def test_small_batches_counted_text_by_text_give_the_same_values(source: str) -> None:
    texts = random_texts(300, seed=4) if source == "random" else bench_queries(100)
    small = [t for t in texts if is_small_batch([t])]
    assert len(small) > 50  # the text-by-text path is exercised
    counts = np.array([reference_counts(t) for t in small], dtype=np.float64)
    structural = np.array([reference_structural(t) for t in small], dtype=np.float32)
    for i, t in enumerate(small):
        np.testing.assert_array_equal(text_counts([t])[0, :-1], counts[i], err_msg=repr(t))
        np.testing.assert_array_equal(structural_features([t])[0], structural[i], err_msg=repr(t))


def test_a_text_counts_the_same_alone_and_in_any_batch() -> None:
    texts = random_texts(80, seed=3)
    together = text_counts(texts)[:, :-1]
    rng = np.random.default_rng(0)
    order = rng.permutation(len(texts))
    shuffled = text_counts([texts[i] for i in order])[:, :-1]
    np.testing.assert_array_equal(shuffled, together[order])
    for i in (0, 7, 41):
        np.testing.assert_array_equal(text_counts([texts[i]])[0, :-1], together[i])
    assert char_stats([]).chars.shape == (0,)
    assert structural_features([]).shape == (0, len(STRUCTURAL_FEATURES))


def test_last_batch_memo_reuses_only_an_equal_batch() -> None:
    calls: list[tuple[str, ...]] = []

    @last_batch
    def lengths(texts):  # the memo's own logic: a counting function stands in for real work
        calls.append(tuple(texts))
        return [len(t) for t in texts]

    assert lengths(["ab", "c"]) == [2, 1]
    assert lengths(["ab", "c"]) == [2, 1]  # equal batch (new list, equal strings): reused
    assert lengths(("ab", "c")) == [2, 1]
    assert lengths(["ab", "cd"]) == [2, 2]  # a different batch: computed
    assert lengths(["ab", "c"]) == [2, 1]  # only the last batch is kept
    assert calls == [("ab", "c"), ("ab", "cd"), ("ab", "c")]
