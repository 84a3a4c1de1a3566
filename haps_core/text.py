"""Text hygiene shared by logs, encoders and dispatch: unpaired surrogates (invalid UTF-8)."""

import re

# Unpaired surrogates (U+D800-U+DFFF) are what undecodable bytes become under Python's
# ``surrogateescape`` or what a JSON "\udXXX" escape gives; they cannot be encoded as UTF-8.
SURROGATE = re.compile("[\ud800-\udfff]")


def count_surrogates(text: str) -> int:
    """How many unpaired surrogates `text` holds."""
    return len(SURROGATE.findall(text))


def replace_surrogates(text: str) -> str:
    """`text` with each unpaired surrogate replaced by U+FFFD, as a UTF-8 decoder with
    ``errors="replace"`` would have done."""
    return SURROGATE.sub("\ufffd", text)
