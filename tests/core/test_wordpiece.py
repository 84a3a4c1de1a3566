"""WordPiece ids by remembered whitespace chunks equal tokenising each text whole.

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
