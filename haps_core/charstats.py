"""Per-text character statistics of a batch in one vectorised pass (what the text features count).

The structural features and the input-cost counts are counts of character classes and of runs
of them (``\\w+``, ``\\d+``, ``[^\\w\\s]+``, whitespace-separated words). Counted text by text in
Python they cost more than tokenising; here the batch's code points go through one class table
(ASCII from a fixed table, any other character classified once per batch by the same ``str``
predicates the regular expressions use), and counts and runs come from cumulative sums. The
result equals the per-text regular-expression counts exactly (tests check it on random text).
"""

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from haps_core.memo import last_batch

# Class bits of a character; each is the predicate the old per-text code (and `re`) applies.
SPACE = 1 << 0  # str.isspace: `\s`, and what str.split() splits on
WORD = 1 << 1  # str.isalnum or "_": `\w`
DECIMAL = 1 << 2  # str.isdecimal: `\d`
DIGIT = 1 << 3  # str.isdigit
ALPHA = 1 << 4  # str.isalpha
UPPER = 1 << 5  # str.isupper
MATH = 1 << 6  # one of =+-*/^<>%
CJK = 1 << 7  # a letter whose Unicode name starts with CJK, HIRAGANA, KATAKANA or HANGUL
CYRILLIC = 1 << 8
ARABIC = 1 << 9
MATH_CHARS = frozenset("=+-*/^<>%")


def char_bits(ch: str) -> int:
    """The class bits of one character (see the module constants)."""
    import unicodedata

    bits = (
        SPACE * ch.isspace()
        | WORD * (ch.isalnum() or ch == "_")
        | DECIMAL * ch.isdecimal()
        | DIGIT * ch.isdigit()
        | ALPHA * ch.isalpha()
        | UPPER * ch.isupper()
        | MATH * (ch in MATH_CHARS)
    )
    if ch.isalpha() and ord(ch) > 127:
        name = unicodedata.name(ch, "")
        bits |= (
            CJK * name.startswith(("CJK", "HIRAGANA", "KATAKANA", "HANGUL"))
            | CYRILLIC * name.startswith("CYRILLIC")
            | ARABIC * name.startswith("ARABIC")
        )
    return bits


# Below this many characters in a batch, counting text by text (`str` methods and `re`) is the
# faster way: the vectorised pass costs some forty numpy calls whatever the batch's size.
SMALL_BATCH_CHARS = 1024


def is_small_batch(texts: Sequence[str]) -> bool:
    """Whether `texts` are better counted one by one than in the vectorised pass."""
    return sum(map(len, texts)) < SMALL_BATCH_CHARS


_ASCII_BITS = np.array([char_bits(chr(c)) for c in range(128)], dtype=np.uint16)


@dataclass(frozen=True)
class CharStats:
    """Counts per text, each an int64 array of shape [n] (a run never crosses two texts)."""

    chars: np.ndarray
    words: np.ndarray  # whitespace-separated words: len(text.split())
    newlines: np.ndarray
    question_marks: np.ndarray
    non_ascii: np.ndarray  # code points > 127
    ascii_upper: np.ndarray  # [A-Z]
    word_chars: np.ndarray  # `\w`
    word_runs: np.ndarray  # `\w+` matches
    punctuation: np.ndarray  # `[^\w\s]` matches
    punctuation_runs: np.ndarray  # `[^\w\s]+` matches
    decimals: np.ndarray  # `\d` matches
    decimal_runs: np.ndarray  # `\d+` matches
    long_word_excess: np.ndarray  # sum over `\w+` runs of max(len - 6, 0)
    very_long_word_excess: np.ndarray  # sum over `\w+` runs of max(len - 10, 0)
    short_words: np.ndarray  # `\w+` runs of at most 3 characters
    digits: np.ndarray  # str.isdigit
    alpha: np.ndarray  # str.isalpha
    upper: np.ndarray  # str.isupper
    math_chars: np.ndarray  # one of =+-*/^<>%
    non_ascii_alpha: np.ndarray
    cjk: np.ndarray
    cyrillic: np.ndarray
    arabic: np.ndarray
    # every `\w+` run of the batch, in order: its text, its first position in `joined`, its length
    run_owner: np.ndarray
    run_begin: np.ndarray
    run_length: np.ndarray
    joined: str  # the texts end to end
    code_points: np.ndarray  # [len(joined)] uint32
    text_starts: np.ndarray  # each text's span in `joined`
    text_ends: np.ndarray
    # where each line's content starts: the first non-whitespace position at or after a text's
    # start or a newline, within the text (distinct positions, in order), and its text
    line_heads: np.ndarray
    line_head_owner: np.ndarray


class CharBatch:
    """The concatenated code points of a batch, their class bits and each text's span
    (shared, through `char_batch`, by the character statistics and the WordPiece lookup)."""

    def __init__(self, texts: Sequence[str]) -> None:
        lengths = np.fromiter(map(len, texts), dtype=np.int64, count=len(texts))
        self.starts = np.zeros(len(texts), dtype=np.int64)
        np.cumsum(lengths[:-1], out=self.starts[1:])
        self.ends = self.starts + lengths
        self.bounds = np.append(self.starts, self.ends[-1] if len(lengths) else 0)
        joined = "".join(texts)
        self.joined = joined
        # utf-32 holds any str, unpaired surrogates included ("surrogatepass")
        self.cp = np.frombuffer(joined.encode("utf-32-le", "surrogatepass"), dtype=np.uint32)
        high = self.cp > 127
        bits = _ASCII_BITS[np.where(high, 0, self.cp)]
        if high.any():
            codes, inverse = np.unique(self.cp[high], return_inverse=True)
            table = np.array([char_bits(chr(c)) for c in codes.tolist()], dtype=np.uint16)
            bits[high] = table[inverse]
        self.bits = bits
        self.high = high
        n = len(self.cp)
        # first and last positions of each non-empty text: where a run must start or stop
        self.first = np.zeros(n, dtype=bool)
        self.last = np.zeros(n, dtype=bool)
        nonempty = lengths > 0
        self.first[self.starts[nonempty]] = True
        self.last[self.ends[nonempty] - 1] = True

    def count(self, mask: np.ndarray) -> np.ndarray:
        """Per text, how many positions of `mask` are set (where the set positions fall among the
        texts' spans: several times faster than a cumulative sum, empty texts included)."""
        return np.diff(np.searchsorted(np.flatnonzero(mask), self.bounds)).astype(np.int64)

    def has(self, bit: int) -> np.ndarray:
        return (self.bits & bit) != 0

    def run_starts(self, mask: np.ndarray) -> np.ndarray:
        prev = np.zeros_like(mask)
        prev[1:] = mask[:-1]
        return mask & (~prev | self.first)

    def runs(self, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Each run's text index, first position and length (runs in order)."""
        nxt = np.zeros_like(mask)
        nxt[:-1] = mask[1:]
        begin = np.flatnonzero(self.run_starts(mask))
        end = np.flatnonzero(mask & (~nxt | self.last))
        owner = np.searchsorted(self.starts, begin, side="right") - 1
        return owner, begin, end - begin + 1


@last_batch
def char_batch(texts: Sequence[str]) -> CharBatch:
    """The `CharBatch` of `texts` (the last batch's is reused when asked again: do not modify it)."""
    return CharBatch(texts)


@last_batch
def char_stats(texts: Sequence[str]) -> CharStats:
    """The `CharStats` of `texts` (the last batch's result is reused when asked again)."""
    n = len(texts)
    b = char_batch(texts)
    space, word = b.has(SPACE), b.has(WORD)
    punct = ~space & ~word
    decimal = b.has(DECIMAL)
    alpha = b.has(ALPHA)
    owner, begin, length = b.runs(word)

    def per_text(weights: np.ndarray) -> np.ndarray:
        return np.bincount(owner, weights=weights, minlength=n).astype(np.int64)

    return CharStats(
        chars=b.ends - b.starts,
        words=b.count(b.run_starts(~space)),
        newlines=b.count(b.cp == 10),
        question_marks=b.count(b.cp == 63),
        non_ascii=b.count(b.high),
        ascii_upper=b.count((b.cp >= 65) & (b.cp <= 90)),
        word_chars=b.count(word),
        word_runs=np.bincount(owner, minlength=n).astype(np.int64),
        punctuation=b.count(punct),
        punctuation_runs=b.count(b.run_starts(punct)),
        decimals=b.count(decimal),
        decimal_runs=b.count(b.run_starts(decimal)),
        long_word_excess=per_text(np.maximum(length - 6, 0)),
        very_long_word_excess=per_text(np.maximum(length - 10, 0)),
        short_words=per_text((length <= 3).astype(np.int64)),
        digits=b.count(b.has(DIGIT)),
        alpha=b.count(alpha),
        upper=b.count(b.has(UPPER)),
        math_chars=b.count(b.has(MATH)),
        non_ascii_alpha=b.count(alpha & b.high),
        cjk=b.count(b.has(CJK)),
        cyrillic=b.count(b.has(CYRILLIC)),
        arabic=b.count(b.has(ARABIC)),
        run_owner=owner,
        run_begin=begin,
        run_length=length,
        joined=b.joined,
        code_points=b.cp,
        text_starts=b.starts,
        text_ends=b.ends,
        **_line_heads(b, space),
    )


def _line_heads(b: CharBatch, space: np.ndarray) -> dict[str, np.ndarray]:
    line_starts = np.concatenate([b.starts, np.flatnonzero(b.cp == 10) + 1])
    owner = np.searchsorted(b.starts, line_starts, side="right") - 1
    solid = np.flatnonzero(~space)
    nxt = np.searchsorted(solid, line_starts)  # the first non-whitespace position after each
    found = nxt < len(solid)
    heads = solid[np.minimum(nxt, len(solid) - 1)] if len(solid) else np.zeros(len(nxt), dtype=np.int64)
    keep = found & (owner >= 0) & (heads < b.ends[np.maximum(owner, 0)])
    heads, first = np.unique(heads[keep], return_index=True)
    return {"line_heads": heads, "line_head_owner": owner[keep][first]}
