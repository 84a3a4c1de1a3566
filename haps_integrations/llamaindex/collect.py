"""`collect_backend`: a LlamaIndex LLM as a backend of `haps collect` (a `BackendSpec`).

Each call is ``llm.chat([system message, user message])`` (no system message for the default
style) with the cell's parameters applied the way the LLM takes them (`apply_parameters`). Token
usage comes from the response's ``raw`` usage (OpenAI-style ``prompt_tokens``/``completion_tokens``
or ``input_tokens``/``output_tokens``), else from the LLM's tokenizer, else a length estimate.
"""

import logging
import time
from collections.abc import Mapping, Sequence
from typing import Any

from llama_index.core.base.llms.types import ChatMessage, MessageRole

from haps_core.catalog import ParamValue
from haps_core.collect.backends import BackendSpec, CallResult, adapter_spec, estimate_tokens
from haps_integrations.llamaindex.params import apply_parameters

logger = logging.getLogger(__name__)


def _get(obj: Any, key: str) -> Any:
    return obj.get(key) if isinstance(obj, Mapping) else getattr(obj, key, None)


def _raw_usage(response: Any) -> tuple[float, float] | None:
    raw = getattr(response, "raw", None)
    usage = _get(raw, "usage") if raw is not None else None
    for source in (usage, getattr(response, "additional_kwargs", None)):
        if source is None:
            continue
        for k_in, k_out in (("prompt_tokens", "completion_tokens"), ("input_tokens", "output_tokens")):
            tin, tout = _get(source, k_in), _get(source, k_out)
            if tin is not None and tout is not None:
                return float(tin), float(tout)
    return None


def _count(llm: Any, text: str) -> int:
    tokenizer = getattr(llm, "_tokenizer", None) or getattr(llm, "tokenizer", None)
    if tokenizer is not None and hasattr(tokenizer, "encode"):
        return len(tokenizer.encode(text))
    return estimate_tokens(text)


def collect_backend(
    name: str,
    llm: Any,
    *,
    prompt_styles: Mapping[str, str] | None = None,
    prices: tuple[float, float] = (0.0, 0.0),
    grid: Mapping[str, Sequence[ParamValue]] | None = None,
    **spec_options: Any,
) -> BackendSpec:
    """A `BackendSpec` that calls a LlamaIndex LLM (``OpenAILike``, ``HuggingFaceLLM``, ...).

    Args:
        name: the backend's name in the log and the router's catalog.
        llm: any LlamaIndex LLM.
        prices: (input, output) USD per 1M tokens.
        grid: searched parameters besides the prompt style, e.g. ``{"temperature": [0.0, 0.7]}``.
        prompt_styles: style name -> system text (default: the ``default`` style only).
        spec_options: `BackendSpec` options (max_concurrency, rate_limit, timeout_s, ...).

    Raises:
        ValueError: a grid parameter that cannot reach this LLM.
    """

    def call(system: str | None, query: str, params: Mapping[str, ParamValue]) -> CallResult:
        applied = apply_parameters(llm, dict(params))
        messages = [ChatMessage(role=MessageRole.SYSTEM, content=system)] if system else []
        messages.append(ChatMessage(role=MessageRole.USER, content=query))
        start = time.perf_counter()
        response = applied.backend.chat(messages, **applied.kwargs)
        latency = time.perf_counter() - start
        text = str(response.message.content or "")
        usage = _raw_usage(response)
        if usage is None:
            usage = (float(_count(llm, (system or "") + "\n" + query)), float(_count(llm, text)))
        return CallResult(text, usage[0], usage[1], latency)

    def reaches(param: str, value: ParamValue) -> bool:
        return apply_parameters(llm, {param: value}).mechanisms.get(param) != "not_applied"

    return adapter_spec(name, call, llm, reaches, prices, grid, prompt_styles, spec_options)
