"""`collect_backend`: a LangChain chat model as a backend of `haps collect` (a `BackendSpec`).

Each call sends ``[SystemMessage(style text), HumanMessage(query)]`` (no system message for the
default style) with the cell's parameters applied the way the model takes them (`apply_parameters`:
pipeline kwargs for a local ``ChatHuggingFace``, a per-call copy for ``ChatOpenAI``...), and reads
the token usage from the reply's ``usage_metadata``; without one, tokens are counted with the
model's tokenizer when it has one, else estimated from the text length.
"""

import logging
import time
from collections.abc import Mapping, Sequence
from typing import Any

from langchain_core.messages import BaseMessage, HumanMessage, SystemMessage

from haps_core.catalog import ParamValue
from haps_core.collect.backends import BackendSpec, CallResult, adapter_spec, estimate_tokens
from haps_integrations.langchain.params import apply_parameters

logger = logging.getLogger(__name__)


def _text(message: Any) -> str:
    content = getattr(message, "content", message)
    if isinstance(content, str):
        return content
    if isinstance(content, list):  # content blocks
        return "".join(b if isinstance(b, str) else str(b.get("text", "")) for b in content)
    return str(content)


def _count(model: Any, text: str) -> int:
    tokenizer = getattr(model, "tokenizer", None)
    if tokenizer is not None and hasattr(tokenizer, "encode"):
        return len(tokenizer.encode(text, add_special_tokens=False))
    return estimate_tokens(text)


def _usage(model: Any, reply: BaseMessage, messages: Sequence[BaseMessage], text: str) -> tuple[float, float]:
    usage = getattr(reply, "usage_metadata", None) or {}
    if usage.get("input_tokens") is not None and usage.get("output_tokens") is not None:
        return float(usage["input_tokens"]), float(usage["output_tokens"])
    sent = "\n".join(_text(m) for m in messages)
    return float(_count(model, sent)), float(_count(model, text))


def collect_backend(
    name: str,
    chat_model: Any,
    prices: tuple[float, float] = (0.0, 0.0),
    grid: Mapping[str, Sequence[ParamValue]] | None = None,
    prompt_styles: Mapping[str, str] | None = None,
    forwards_kwargs: bool = False,
    **spec_options: Any,
) -> BackendSpec:
    """A `BackendSpec` that calls a LangChain chat model.

    Args:
        name: the backend's name in the log and the router's catalog.
        chat_model: any LangChain chat model (``ChatOpenAI(base_url=...)``, ``ChatHuggingFace``...).
        prices: (input, output) USD per 1M tokens.
        grid: searched parameters besides the prompt style, e.g. ``{"temperature": [0.0, 0.7]}``.
        prompt_styles: style name -> system text (default: the ``default`` style only).
        forwards_kwargs: pass parameters the model has no field for as invoke kwargs.
        spec_options: `BackendSpec` options (max_concurrency, rate_limit, timeout_s, ...).

    Raises:
        ValueError: a grid parameter that cannot reach this model (pass forwards_kwargs=True for
            a model whose invoke forwards unknown keyword arguments).
    """

    def call(system: str | None, query: str, params: Mapping[str, ParamValue]) -> CallResult:
        applied = apply_parameters(chat_model, dict(params), forwards_kwargs)
        messages: list[BaseMessage] = [SystemMessage(system)] if system else []
        messages.append(HumanMessage(query))
        config: Any = {"configurable": applied.configurable} if applied.configurable else None
        start = time.perf_counter()
        reply = applied.backend.invoke(messages, config=config, **applied.kwargs)
        latency = time.perf_counter() - start
        text = _text(reply)
        tokens_in, tokens_out = _usage(chat_model, reply, messages, text)
        return CallResult(text, tokens_in, tokens_out, latency)

    def reaches(param: str, value: ParamValue) -> bool:
        applied = apply_parameters(chat_model, {param: value}, forwards_kwargs)
        return applied.mechanisms.get(param) != "not_applied"

    return adapter_spec(name, call, chat_model, reaches, prices, grid, prompt_styles, spec_options)
