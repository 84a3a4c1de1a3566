"""`ChatHAPS.with_structured_output`: a schema answered through tool calling or a backend's JSON mode.

``method="function_calling"`` (the default) binds the schema as the one forced tool
(`ChatHAPS.bind_tools`, so only tool-capable backends are routed to) and parses the tool call.
``method="json_mode"`` / ``"json_schema"`` route among the backends that can give structured
output, each asked through its OWN ``with_structured_output(schema, method=...)``; HAPS returns
that backend's parsed value (its raw message, with the decision, under ``include_raw=True``).
"""

import logging
from typing import TYPE_CHECKING, Any

from langchain_core.language_models import BaseChatModel, LanguageModelInput
from langchain_core.messages import AIMessage
from langchain_core.runnables import Runnable, RunnableLambda
from langchain_core.utils.function_calling import convert_to_json_schema

from haps_integrations.langchain.tools import capable_pool

if TYPE_CHECKING:
    from haps_integrations.langchain.chat_model import ChatHAPS

logger = logging.getLogger(__name__)

METHODS = ("function_calling", "json_mode", "json_schema")

_PARSED = "haps_parsed"  # where a backend's parsed value rides on its raw message, inside HAPS


def _raw_with_parsed(output: dict[str, Any]) -> AIMessage:
    """A backend's ``include_raw`` output as its raw message, carrying the parsed value."""
    raw = output["raw"]
    extra = {**raw.additional_kwargs, _PARSED: output.get("parsed")}
    if output.get("parsing_error") is not None:
        extra[_PARSED + "_error"] = output["parsing_error"]
    return raw.model_copy(update={"additional_kwargs": extra})


def _unpack(include_raw: bool) -> Runnable[AIMessage, Any]:
    def unpack(message: AIMessage) -> Any:
        extra = dict(message.additional_kwargs)
        parsed, error = extra.pop(_PARSED, None), extra.pop(_PARSED + "_error", None)
        raw = message.model_copy(update={"additional_kwargs": extra})
        if include_raw:
            return {"raw": raw, "parsed": parsed, "parsing_error": error}
        if error is not None:
            raise error
        return parsed

    return RunnableLambda(unpack, name="haps_structured_output")


def structured_output(
    chat: "ChatHAPS", schema: dict[str, Any] | type, method: str, include_raw: bool, kwargs: dict[str, Any]
) -> Runnable[LanguageModelInput, Any]:
    """The runnable of `ChatHAPS.with_structured_output` (see the module docstring).

    Raises:
        ValueError: an unknown ``method`` (the allowed ones are named), or no backend in the pool
            can answer this way (every backend and its capabilities are named).
    """
    if method not in METHODS:
        msg = f"`method` must be one of {list(METHODS)}, got {method!r}"
        raise ValueError(msg)
    if method == "function_calling":
        return BaseChatModel.with_structured_output(chat, schema, include_raw=include_raw, **kwargs)
    purpose = f"give structured output with method={method!r}"
    capable = capable_pool(chat.router, chat.backends, "structured_output", purpose)
    pool = {
        name: backend.with_structured_output(schema, method=method, include_raw=True, **kwargs)
        | RunnableLambda(_raw_with_parsed)
        for name, backend in capable.items()
    }
    ls_format = {"kwargs": {"method": method}, "schema": convert_to_json_schema(schema)}
    return chat.with_backends(pool).bind(ls_structured_output_format=ls_format) | _unpack(include_raw)
