"""The bundled MiniLM's WordPiece tokenizer, shared by the static encoder and the input-cost counts.

Both tokenise the same query texts with the same vocabulary in one routing call: the ids of the
last batch are kept (`haps_core.memo.last_batch`), so a batch is tokenised once. Read with the
Rust ``tokenizers`` library, not transformers: routing must not import it.
"""

import functools
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from haps_core.memo import last_batch


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


@last_batch
def wordpiece_ids(texts: Sequence[str]) -> list[list[int]]:
    """Each text's WordPiece ids, without special tokens (texts must hold no unpaired surrogate).

    The returned lists are shared with later calls for the same batch: do not modify them.
    """
    # encode_batch_fast: the same ids as encode_batch, without computing character offsets
    return [e.ids for e in wordpiece_tokenizer().encode_batch_fast(list(texts), add_special_tokens=False)]
