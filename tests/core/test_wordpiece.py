"""WordPiece ids by remembered pieces (by key in large batches, by text in small ones) equal
tokenising each text whole.

REAL: the bundled MiniLM tokenizer (Rust ``tokenizers``), haps-bench queries and random text
drawn from awkward characters (`tests.core.test_charstats.random_texts`), including the control
characters Python splits on but BERT deletes (those texts are tokenised whole).
"""

import pytest

from haps_core import wordpiece
from haps_core.memo import clear_all
from haps_core.text import replace_surrogates
from haps_core.wordpiece import clear_chunks, wordpiece_ids, wordpiece_tokenizer
from tests.core.test_charstats import bench_queries, random_texts


def _whole(texts: list[str]) -> list[list[int]]:
    return [e.ids for e in wordpiece_tokenizer().encode_batch(texts, add_special_tokens=False)]


@pytest.mark.parametrize("source", ["random", "haps-bench"])
def test_ids_by_chunk_equal_the_whole_text_ids(source: str) -> None:
    texts = random_texts(800, seed=7) if source == "random" else bench_queries(600)
    texts = [replace_surrogates(t) for t in texts]
    texts += ["a\x0bb c", "x\x1cy", "p\x85q", "no\u2028break", "nb\u00a0sp", "zero\u200bwidth", ""]
    # every whitespace kind `str.split` splits chunks on, beside punctuation
    texts += ["a.\u3000(b", "x\u1680y,\u2000z", "p\u205fq\u2029r", "tab\tnl\nret\r!", "  lead trail  "]
    # added tokens are matched in the raw text (case-sensitive); long words are [UNK]
    texts += ["x[CLS]y [MASK] [cls]", "[SEP]", "[UNK]x", "a" * 100, "b" * 101]
    texts += ["Caf\u00e9 na\u00efve", "__init__", "ALL CAPS 123 x2"]
    clear_chunks()
    clear_all()
    cold = wordpiece_ids(texts)
    assert cold == _whole(texts)
    clear_all()  # the batch memo forgotten: now every chunk comes from the table
    assert wordpiece_ids(texts) == cold
    clear_all()
    assert wordpiece_ids(list(reversed(texts))) == list(reversed(cold))


def test_a_full_chunk_table_starts_over(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(wordpiece, "MAX_CHUNKS", 5)
    clear_chunks()
    texts = [f"word{i} other{i} more{i}" for i in range(4)]
    for i in range(4):
        clear_all()
        assert wordpiece_ids(texts[i : i + 1]) == _whole(texts[i : i + 1])
    assert len(wordpiece._chunks[0]) <= 5 + 3  # replaced once it held more than 5
    clear_chunks()


def test_large_and_small_batches_agree_and_flat_ids_match_the_lists() -> None:
    # a large batch goes through the key table (`haps_core.piece_table`), each text alone through
    # the per-piece table: both must give the tokenizer's ids, and `wordpiece_flat` the same, flat
    texts = [replace_surrogates(t) for t in random_texts(300, seed=11)] + bench_queries(100)
    assert wordpiece._by_keys(texts) and not wordpiece._by_keys(texts[:1])
    clear_chunks()
    clear_all()
    flat, counts = wordpiece.wordpiece_flat(texts)
    rows = _whole(texts)
    assert counts.tolist() == [len(r) for r in rows]
    assert flat.tolist() == [i for r in rows for i in r]
    for t, r in zip(texts[:60], rows[:60], strict=True):
        clear_all()
        assert wordpiece_ids([t]) == [r]
        assert wordpiece.wordpiece_flat([t])[0].tolist() == r


def test_keys_pack_short_words_exactly_case_folded() -> None:
    from haps_core.charstats import CharBatch
    from haps_core.piece_table import KEY_CHARS, key_text, split_pieces

    texts = ["The THE the tHe", "a.b,c", "abcdefgh abcdefghi x9 Z", "caf\u00e9 na\u00efve \x01ctl", ""] * 3
    pieces = split_pieces(CharBatch(texts))
    joined = "".join(texts)
    got = [joined[s : s + n] for s, n in zip(pieces.begin.tolist(), pieces.length.tolist(), strict=True)]
    assert got == [p for t in texts for p in wordpiece.pieces(t)]
    for text, key in zip(got, pieces.key.tolist(), strict=True):
        short_word = text.isascii() and text.isalnum() and len(text) <= KEY_CHARS
        if short_word or (len(text) == 1 and wordpiece._ASCII_PUNCT.fullmatch(text)):
            assert key_text(key) == text.lower()
        else:  # long, or holding a character without a key byte: looked up by its text
            assert key == 0
    the = pieces.key[:4]
    assert len(set(the.tolist())) == 1 and the[0] != 0


def test_a_full_key_table_starts_over(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(wordpiece, "MAX_CHUNKS", 50)
    monkeypatch.setattr(wordpiece, "KEYED_CHARS", 1)
    clear_chunks()
    batches = [[f"w{i}x{j} u{i}y{j}" for j in range(40)] for i in range(3)]
    sizes = []
    for texts in batches:
        clear_all()
        assert wordpiece_ids(texts) == _whole(texts)
        sizes.append(len(wordpiece._keys[0]))
    assert sizes[0] == 80 and sizes[1] == 80  # the second batch found 80 > 50 keys: started over
    clear_chunks()
