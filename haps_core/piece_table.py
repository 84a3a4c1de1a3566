"""WordPiece ids of a whole batch at once: short ASCII words looked up by a packed key in numpy.

`haps_core.wordpiece` tokenises a text as its pieces (whitespace-separated runs, each ASCII
punctuation character apart) and remembers each piece's ids. Splitting and looking pieces up one
by one in Python was most of a routing call's time on a large batch. Here the batch's code points
(`haps_core.charstats.char_batch`, shared with the character statistics) give every piece's span
with a few array operations, and a piece of at most `KEY_CHARS` ASCII letters and digits, most
pieces of English text, packs exactly into one integer (a byte a character, case folded: the
bundled tokenizer lowercases, so "The" and "the" have the same ids); so does a punctuation
character. Those are looked up in a sorted key table with one `searchsorted`; the few other
pieces (longer words, other scripts) go through the per-piece table as before. The ids equal
those of tokenising each text whole (tests check it on random text).
"""

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from haps_core.charstats import SPACE, CharBatch

KEY_CHARS = 8  # characters one key holds: a byte each
_EMPTY = np.zeros(0, dtype=np.int64)
_ALPHABET = "0123456789abcdefghijklmnopqrstuvwxyz"
_PUNCTUATION = "".join(
    chr(c) for lo, hi in ((33, 47), (58, 64), (91, 96), (123, 126)) for c in range(lo, hi + 1)
)
# each code point below 256 as a key byte: letters and digits 1-36 (case folded), the punctuation
# `haps_core.wordpiece` splits apart (``[!-/:-@\[-`{-~]``) 37-68, anything else 0
_SYMBOL = np.zeros(256, dtype=np.uint8)
for _i, _ch in enumerate(_ALPHABET + _PUNCTUATION, start=1):
    _SYMBOL[ord(_ch)] = _SYMBOL[ord(_ch.upper())] = _i
_TEXT = "\0" + _ALPHABET + _PUNCTUATION  # a key byte's character
_FIRST_PUNCT = len(_ALPHABET) + 1
# the low `L` bytes of a key: a piece of L characters
_MASKS = np.array([(1 << (8 * n)) - 1 for n in range(KEY_CHARS)] + [(1 << 64) - 1], dtype=np.uint64)


_KEY_TRANSLATION = dict(enumerate(_TEXT))


def key_text(key: int) -> str:
    """The piece a key stands for (lowercase: the ids are those of any casing)."""
    return key.to_bytes(KEY_CHARS, "little").rstrip(b"\0").decode("latin-1").translate(_KEY_TRANSLATION)


def _firsts(lengths: np.ndarray) -> np.ndarray:
    """Where each of consecutive spans of these lengths starts."""
    out = np.zeros(len(lengths), dtype=np.int64)
    np.cumsum(lengths[:-1], out=out[1:])
    return out


@dataclass(frozen=True)
class KeyTable:
    """Sorted piece keys and each key's ids (a span of `ids`). Immutable: a batch that adds
    pieces builds a new table and swaps it in, so a concurrent reader keeps a consistent one."""

    keys: np.ndarray  # uint64, sorted
    offsets: np.ndarray  # int64, each key's first position in `ids`
    lengths: np.ndarray  # int64, each key's number of ids
    ids: np.ndarray  # int64

    @classmethod
    def empty(cls) -> "KeyTable":
        return cls(np.zeros(0, dtype=np.uint64), _EMPTY, _EMPTY, _EMPTY)

    def __len__(self) -> int:
        return len(self.keys)

    def with_pieces(self, keys: np.ndarray, ids: list[list[int]]) -> "KeyTable":
        """This table and `keys` (new, distinct) with their `ids`."""
        lengths = np.fromiter(map(len, ids), dtype=np.int64, count=len(ids))
        flat = np.fromiter((i for row in ids for i in row), dtype=np.int64, count=int(lengths.sum()))
        offsets = len(self.ids) + _firsts(lengths)
        at = np.searchsorted(self.keys, keys)
        return KeyTable(
            np.insert(self.keys, at, keys),
            np.insert(self.offsets, at, offsets),
            np.insert(self.lengths, at, lengths),
            np.concatenate([self.ids, flat]),
        )

    def find(self, keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Each key's position in the table (clipped to it) and whether the table holds it."""
        if not len(self.keys):
            return np.zeros(len(keys), dtype=np.int64), np.zeros(len(keys), dtype=bool)
        at = np.minimum(np.searchsorted(self.keys, keys), len(self.keys) - 1)
        return at, self.keys[at] == keys


@dataclass(frozen=True)
class Pieces:
    """A batch's pieces in order: the text each belongs to, its first position and length in
    the batch's joined text, and its key (0 where it has none: looked up by its text)."""

    owner: np.ndarray
    begin: np.ndarray
    length: np.ndarray
    key: np.ndarray


def split_pieces(b: CharBatch) -> Pieces:
    """Every piece of the batch (see the module docstring), with the keys of those that have one."""
    n = len(b.cp)
    symbol = _SYMBOL[np.where(b.high, 0, b.cp).astype(np.uint8)]
    punct = symbol >= _FIRST_PUNCT
    solid = (b.bits & SPACE) == 0
    # a piece starts at a solid character after a non-solid one, at a text's start, and at or
    # after a punctuation character; it ends symmetrically
    joins = solid & ~punct
    start = solid & (punct | b.first)
    start[1:] |= solid[1:] & ~joins[:-1]
    stop = solid & (punct | b.last)
    stop[:-1] |= solid[:-1] & ~joins[1:]
    if n:
        start[0], stop[-1] = solid[0], solid[-1]
    begin = np.flatnonzero(start)
    if not len(begin):
        return Pieces(_EMPTY, _EMPTY, _EMPTY, np.zeros(0, dtype=np.uint64))
    length = np.flatnonzero(stop) - begin + 1
    owner = np.searchsorted(b.starts, begin, side="right") - 1
    # a key: the piece's key bytes read as one little-endian integer, cut to its length
    padded = np.concatenate([symbol, np.zeros(KEY_CHARS, dtype=np.uint8)])
    window = np.ascontiguousarray(np.lib.stride_tricks.sliding_window_view(padded, KEY_CHARS)[begin])
    key = window.view("<u8")[:, 0] & _MASKS[np.minimum(length, KEY_CHARS)]
    # none for a longer piece or one holding a character without a key byte (another script)
    keyed = length <= KEY_CHARS
    odd = np.flatnonzero(solid & (symbol == 0))
    if len(odd):
        keyed[np.searchsorted(begin, odd, side="right") - 1] = False
    return Pieces(owner, begin, length, np.where(keyed, key, 0).astype(np.uint64))


def batch_ids(
    b: CharBatch,
    table: KeyTable,
    lookup: Callable[[list[str]], list[list[int]]],
    max_keys: int,
) -> tuple[np.ndarray, np.ndarray, KeyTable]:
    """All texts' ids end to end, each text's count, and the key table (grown by this batch's
    new keys, or started over once it holds more than `max_keys`).

    `lookup` gives the ids of pieces by their text (the per-piece table and the tokenizer)."""
    pieces = split_pieces(b)
    n_texts = len(b.starts)
    if not len(pieces.key):
        return _EMPTY, np.zeros(n_texts, dtype=np.int64), table
    keyed = pieces.key != 0
    keys = pieces.key[keyed]
    if len(table) > max_keys:
        table = KeyTable.empty()
    at, found = table.find(keys)
    if not found.all():
        new = np.unique(keys[~found])
        table = table.with_pieces(new, lookup([key_text(int(k)) for k in new.tolist()]))
        at = np.searchsorted(table.keys, keys)
    offsets = np.empty(len(pieces.key), dtype=np.int64)
    lengths = np.empty(len(pieces.key), dtype=np.int64)
    offsets[keyed], lengths[keyed] = table.offsets[at], table.lengths[at]
    source = table.ids
    others = np.flatnonzero(~keyed)
    if len(others):
        spans = zip(pieces.begin[others].tolist(), pieces.length[others].tolist(), strict=True)
        texts = [b.joined[s : s + n] for s, n in spans]
        rows = lookup(texts)
        counts = np.fromiter(map(len, rows), dtype=np.int64, count=len(rows))
        extra = np.fromiter((i for row in rows for i in row), dtype=np.int64, count=int(counts.sum()))
        offsets[others] = len(source) + _firsts(counts)
        lengths[others] = counts
        source = np.concatenate([source, extra])
    total = int(lengths.sum())
    gather = np.repeat(offsets - _firsts(lengths), lengths) + np.arange(total)
    per_text = np.bincount(pieces.owner, weights=lengths, minlength=n_texts).astype(np.int64)
    return source[gather], per_text, table
