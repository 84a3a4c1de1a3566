"""The bundled MiniLM's WordPiece tokenizer, shared by the static encoder and the input-cost counts.

Both tokenise the same query texts with the same vocabulary in one routing call: the ids of the
last batch are kept (`haps_core.memo.last_batch`), so a batch is tokenised once. And a text's ids
are its pieces' ids end to end (BERT's normaliser works character by character and its
pre-tokeniser splits on whitespace and around each punctuation character first), so each
distinct piece (a word, mostly) is tokenised once and remembered: most of a query's words have
been seen before, and looking them up costs a fraction of tokenising them (a large batch looks
its short words up all at once, by a packed key: `haps_core.piece_table`). Texts holding one of
the few characters on which Python's whitespace and BERT's disagree are tokenised whole. Read
with the Rust ``tokenizers`` library, not transformers: routing must not import it.
"""

import functools
import re
from collections.abc import Sequence
from itertools import chain
from pathlib import Path
from typing import Any

import numpy as np

from haps_core.charstats import CharBatch, char_batch
from haps_core.memo import last_batch
from haps_core.piece_table import KeyTable, batch_ids, split_pieces

# Python splits on these control characters; BERT's normaliser deletes them (joining the words).
_SPLIT_DIFFERS = re.compile("[\x0b\x0c\x1c-\x1f\x85]")
# A text's pieces: whitespace-separated runs, with each ASCII punctuation character on its own
# (BERT's pre-tokeniser isolates every one of them too), so "answer." and "(answer" share "answer".
_PIECE = re.compile(r"[!-/:-@\[-`{-~]|[^\s!-/:-@\[-`{-~]+")
_ASCII_PUNCT = re.compile(r"[!-/:-@\[-`{-~]")
# Chunks remembered at most (a few tens of MB when full); then a new table starts.
MAX_CHUNKS = 200_000
_chunks: list[dict[str, list[int]]] = [{}]
# Batches of at least this many characters look their short words up by key, all at once.
KEYED_CHARS = 2048
_keys: list[KeyTable] = [KeyTable.empty()]


def tokenizer_path() -> Path:
    """The bundled MiniLM's ``tokenizer.json``."""
    from haps_core.encoders.local import default_model_path

    return default_model_path() / "tokenizer.json"


@functools.lru_cache(maxsize=1)
def wordpiece_tokenizer() -> Any:
    """The bundled MiniLM's WordPiece tokenizer, with no padding and no truncation."""
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(tokenizer_path()))
    tokenizer.no_padding()
    tokenizer.no_truncation()
    return tokenizer


def pieces(text: str) -> list[str]:
    """The pieces a text's ids are looked up by (whitespace-separated, punctuation apart)."""
    return _PIECE.findall(text)


def _encode(texts: list[str]) -> list[list[int]]:
    # encode_batch_fast: the same ids as encode_batch, without computing character offsets
    return [e.ids for e in wordpiece_tokenizer().encode_batch_fast(texts, add_special_tokens=False)]


@functools.lru_cache(maxsize=1)
def _lookup() -> tuple[dict[str, int], int, tuple[str, ...]]:
    """The vocabulary, WordPiece's longest word, and the added tokens' texts."""
    tokenizer = wordpiece_tokenizer()
    added = tuple(t.content for t in tokenizer.get_added_tokens_decoder().values())
    return tokenizer.get_vocab(), int(tokenizer.model.max_input_chars_per_word), added


def _encode_pieces(items: list[str]) -> list[list[int]]:
    """Each piece's ids. An ASCII word (letters and digits) or punctuation character whose
    lowercase is in the vocabulary is that one token: BERT only lowercases it, and WordPiece's
    longest match from its start is the whole of it. Every other piece goes to the tokenizer."""
    vocab, longest, _ = _lookup()
    out: list[list[int]] = []
    rest: list[int] = []
    for i, piece in enumerate(items):
        direct = None
        if piece.isascii() and len(piece) <= longest and (piece.isalnum() or _ASCII_PUNCT.fullmatch(piece)):
            direct = vocab.get(piece.lower())
        if direct is None:
            rest.append(i)
        out.append([] if direct is None else [direct])
    for i, ids in zip(rest, _encode([items[i] for i in rest]), strict=True):
        out[i] = ids
    return out


def _piece_table() -> dict[str, list[int]]:
    table = _chunks[0]
    if len(table) > MAX_CHUNKS:  # a new table; a call still using the old one keeps it whole
        table = {}
        _chunks[0] = table
    return table


def _remember(table: dict[str, list[int]], items: Sequence[str]) -> None:
    """Adds to the piece table the ids of the pieces among `items` it lacks (tokenised once each)."""
    missing = list({c for c in items if c not in table})
    if missing:
        table.update(zip(missing, _encode_pieces(missing), strict=True))


def _pieces_ids(items: list[str]) -> list[list[int]]:
    """Each piece's ids, from the piece table (tokenising the pieces it lacks)."""
    table = _piece_table()
    _remember(table, items)
    return [table[c] for c in items]


def _whole_texts(texts: Sequence[str]) -> list[int]:
    """The texts that must be tokenised whole: "[CLS]" in a text is that token (its pieces would
    not be), and Python splits on a few control characters that BERT deletes."""
    added = _lookup()[2]

    def needs_whole(text: str) -> bool:
        return bool(_SPLIT_DIFFERS.search(text)) or ("[" in text and any(a in text for a in added))

    if not needs_whole("".join(texts)):  # one pass over the batch first: these texts are rare
        return []
    return [i for i, t in enumerate(texts) if needs_whole(t)]


def _ids_by_piece(texts: Sequence[str]) -> list[list[int]]:
    """Each text's ids, piece by piece through the piece table (the path for small batches)."""
    table = _piece_table()
    split = list(map(pieces, texts))
    _remember(table, list(chain.from_iterable(split)))
    get = table.__getitem__
    out = [list(chain.from_iterable(map(get, chunks))) for chunks in split]
    whole = _whole_texts(texts)
    if whole:
        for i, ids in zip(whole, _encode([texts[i] for i in whole]), strict=True):
            out[i] = ids
    return out


def _by_keys(texts: Sequence[str]) -> bool:
    """Whether a batch goes through the key table (`haps_core.piece_table`): large enough for its
    fixed cost (some forty array operations) to pay."""
    return sum(map(len, texts)) >= KEYED_CHARS


@last_batch
def wordpiece_flat(texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """Every text's WordPiece ids end to end (int64) and each text's number of ids: the
    `wordpiece_ids` of the batch, flat. The arrays are shared: they must not be modified."""
    if not _by_keys(texts):
        rows = _ids_by_piece(texts)
        counts = np.fromiter(map(len, rows), dtype=np.int64, count=len(rows))
        return np.fromiter(chain.from_iterable(rows), dtype=np.int64, count=int(counts.sum())), counts
    flat, counts, table = batch_ids(char_batch(texts), _keys[0], _pieces_ids, MAX_CHUNKS)
    _keys[0] = table
    whole = _whole_texts(texts)
    if whole:  # rare: those texts' ids replaced by the tokenizer's
        parts = np.split(flat, np.cumsum(counts)[:-1])
        for i, ids in zip(whole, _encode([texts[i] for i in whole]), strict=True):
            parts[i] = np.asarray(ids, dtype=np.int64)
            counts[i] = len(ids)
        flat = np.concatenate(parts)
    return flat, counts


@last_batch
def wordpiece_ids(texts: Sequence[str]) -> list[list[int]]:
    """Each text's WordPiece ids, without special tokens (texts must hold no unpaired surrogate),
    equal to tokenising it whole. The returned lists must not be modified."""
    if not _by_keys(texts):
        return _ids_by_piece(texts)
    flat, counts = wordpiece_flat(texts)
    return [row.tolist() for row in np.split(flat, np.cumsum(counts)[:-1])]


def remembered_share(texts: Sequence[str]) -> float:
    """Share of the pieces of `texts` whose ids are already remembered (by key or by text)."""
    b = CharBatch(texts)
    found = split_pieces(b)
    table, by_text = _keys[0], _chunks[0]
    keyed = found.key != 0
    hits = int(table.find(found.key[keyed])[1].sum())
    for s, n in zip(found.begin[~keyed].tolist(), found.length[~keyed].tolist(), strict=True):
        hits += b.joined[s : s + n] in by_text
    return hits / max(len(found.key), 1)


def clear_chunks() -> None:
    """Forgets every remembered piece (benchmarks time tokenising from an empty table with it)."""
    _chunks[0] = {}
    _keys[0] = KeyTable.empty()
