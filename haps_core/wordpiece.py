"""The bundled MiniLM's WordPiece tokenizer, shared by the static encoder and the input-cost counts.

Both tokenise the same query texts with the same vocabulary in one routing call: the ids of the
last batch are kept (`haps_core.memo.last_batch`), so a batch is tokenised once. And a text's ids
are its pieces' ids end to end (BERT's normaliser works character by character and its
pre-tokeniser splits on whitespace and around each punctuation character first), so each
distinct piece (a word, mostly) is tokenised once and remembered: most of a query's words have
been seen before, and looking them up costs a fraction of tokenising them. Texts holding one of
the few characters on which Python's whitespace and BERT's disagree are tokenised whole. Read
with the Rust ``tokenizers`` library, not transformers: routing must not import it.
"""

import functools
import re
from collections.abc import Sequence
from itertools import chain
from pathlib import Path
from typing import Any

from haps_core.memo import last_batch

# Python splits on these control characters; BERT's normaliser deletes them (joining the words).
_SPLIT_DIFFERS = re.compile("[\x0b\x0c\x1c-\x1f\x85]")
# A text's pieces: whitespace-separated runs, with each ASCII punctuation character on its own
# (BERT's pre-tokeniser isolates every one of them too), so "answer." and "(answer" share "answer".
_PIECE = re.compile(r"[!-/:-@\[-`{-~]|[^\s!-/:-@\[-`{-~]+")
_ASCII_PUNCT = re.compile(r"[!-/:-@\[-`{-~]")
# Chunks remembered at most (a few tens of MB when full); then a new table starts.
MAX_CHUNKS = 200_000
_chunks: list[dict[str, list[int]]] = [{}]


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


@last_batch
def wordpiece_ids(texts: Sequence[str]) -> list[list[int]]:
    """Each text's WordPiece ids, without special tokens (texts must hold no unpaired surrogate),
    equal to tokenising it whole. The returned lists must not be modified."""
    table = _chunks[0]
    if len(table) > MAX_CHUNKS:  # a new table; a call still using the old one keeps it whole
        table = {}
        _chunks[0] = table
    added = _lookup()[2]  # "[CLS]" in a text is that token: its pieces would not be

    def needs_whole(text: str) -> bool:
        return bool(_SPLIT_DIFFERS.search(text)) or ("[" in text and any(a in text for a in added))

    whole = [i for i, t in enumerate(texts) if needs_whole(t)]
    split = list(map(pieces, texts))
    missing = list({c for chunks in split for c in chunks if c not in table})
    if missing:
        table.update(zip(missing, _encode_pieces(missing), strict=True))
    get = table.__getitem__
    out = [list(chain.from_iterable(map(get, chunks))) for chunks in split]
    if whole:
        for i, ids in zip(whole, _encode([texts[i] for i in whole]), strict=True):
            out[i] = ids
    return out


def clear_chunks() -> None:
    """Forgets every remembered chunk (benchmarks time tokenising from an empty table with it)."""
    _chunks[0] = {}
