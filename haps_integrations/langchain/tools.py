"""Tools for `ChatHAPS`: backend capabilities, the tool-bound pool, and the agent turn.

`ChatHAPS.bind_tools` binds the tools on every backend that can call tools and routes only among
those (the pool is the action mask: actions of other backends are never chosen); the messages of a
tool loop pass through unchanged, and `read_turn` says whether a call continues one.
"""

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from typing import Any, TypeVar

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, ToolMessage
from langchain_core.runnables import RunnableBinding
from langchain_core.runnables.configurable import RunnableConfigurableFields

from haps_core.capabilities import Capabilities
from haps_core.decision import RouterLike
from haps_core.dispatch import Prepared
from haps_core.dispatch.turns import Turn
from haps_integrations.langchain.params import merge_kwargs

logger = logging.getLogger(__name__)

T = TypeVar("T")


def _model_of(backend: Any) -> Any:
    """The chat model inside bindings and configurable wrappers."""
    while True:
        if isinstance(backend, RunnableBinding):
            backend = backend.bound
        elif isinstance(backend, RunnableConfigurableFields):
            backend = backend.default
        else:
            return backend


def capabilities_of(backend: Any) -> Capabilities:
    """What a LangChain backend object shows it can do (``None`` where it cannot tell).

    Tool calling: its class overrides `BaseChatModel.bind_tools` (the base raises). Structured
    output: it can call tools (the base `with_structured_output` uses them) or overrides
    `with_structured_output`. A model that is not a `BaseChatModel` tells nothing.
    """
    model = _model_of(backend)
    if not isinstance(model, BaseChatModel):
        return Capabilities()
    tools = type(model).bind_tools is not BaseChatModel.bind_tools
    structured = tools or type(model).with_structured_output is not BaseChatModel.with_structured_output
    return Capabilities(tool_calling=tools, structured_output=structured)


def pool_capabilities(router: RouterLike, backends: Mapping[str, Any]) -> dict[str, Capabilities]:
    """Per backend of the pool: the catalog's capabilities, the unknown ones filled from the object."""
    out = {}
    for name, backend in backends.items():
        declared = router.space.backend(name).capabilities
        out[name] = declared.filled(capabilities_of(backend))
    return out


def capable_pool(
    router: RouterLike, backends: Mapping[str, Any], capability: str, purpose: str
) -> dict[str, Any]:
    """The backends of the pool that have ``capability``; a ValueError naming every backend and
    its capabilities when none has."""
    caps = pool_capabilities(router, backends)
    capable = {name: backend for name, backend in backends.items() if getattr(caps[name], capability)}
    if not capable:
        listed = ", ".join(f"{name!r}: {caps[name].to_dict() or 'unknown'}" for name in sorted(caps))
        msg = (
            f"cannot {purpose}: no backend in the pool has `{capability}` (backends and their "
            f"capabilities: {listed}). Give a backend that supports it, or declare it in the catalog "
            f"(`Backend(capabilities=Capabilities({capability}=True))`)"
        )
        raise ValueError(msg)
    left = sorted(set(backends) - set(capable))
    if left:
        logger.info("HAPS: %s routes among %s only (%s lack %s)", purpose, sorted(capable), left, capability)
    return capable


def bind_pool(
    router: RouterLike,
    backends: Mapping[str, Any],
    tools: Sequence[Any],
    tool_choice: Any,
    kwargs: Mapping[str, Any],
) -> dict[str, Any]:
    """Every tool-capable backend with ``tools`` bound by its own ``bind_tools``."""
    capable = capable_pool(router, backends, "tool_calling", "bind tools")
    extra = {"tool_choice": tool_choice} if tool_choice is not None else {}
    return {name: _bind(backend, tools, {**extra, **kwargs}) for name, backend in capable.items()}


def _bind(backend: Any, tools: Sequence[Any], kwargs: Mapping[str, Any]) -> Any:
    """``backend.bind_tools(...)``, looking through bindings (their kwargs are kept)."""
    if isinstance(backend, RunnableBinding):
        inner = _bind(backend.bound, tools, kwargs)
        return inner.bind(**backend.kwargs) if backend.kwargs else inner
    return backend.bind_tools(list(tools), **kwargs)


def _haps_backend(message: AIMessage) -> str | None:
    record = (message.response_metadata or {}).get("haps") or {}
    served = record.get("served_by") or {}
    backend = served.get("backend", record.get("backend"))
    return backend if isinstance(backend, str) else None


def read_turn(messages: Sequence[BaseMessage], context_chars: int) -> Turn:
    """The conversation's features, and whether its trailing messages continue a tool loop.

    A call continues a tool loop when, after the last human message, the conversation holds a
    model turn with tool calls and ends in tool results (the agent calls the model again).
    """
    last_user = max((i for i, m in enumerate(messages) if isinstance(m, HumanMessage)), default=-1)
    trailing = messages[last_user + 1 :]
    model_turns = [m for m in trailing if isinstance(m, AIMessage)]
    in_loop = (
        bool(trailing) and isinstance(trailing[-1], ToolMessage) and any(m.tool_calls for m in model_turns)
    )
    loop_backend = _haps_backend(model_turns[-1]) if in_loop else None
    return Turn(
        user_turns=sum(isinstance(m, HumanMessage) for m in messages),
        tool_calls=sum(len(m.tool_calls) for m in messages if isinstance(m, AIMessage)),
        tool_results=sum(isinstance(m, ToolMessage) for m in messages),
        messages=len(messages),
        context_chars=context_chars,
        in_tool_loop=in_loop,
        loop_backend=loop_backend,
    )


def unbound(send: Callable[[Any, Prepared[Any, Any]], T]) -> Callable[[Any, Prepared[Any, Any]], T]:
    """``send`` with plain bindings (``bind_tools``' kind) opened: their model is called with their
    kwargs. A binding merges its own config with the caller's context, which would re-attach the
    chat-model run's callbacks to a backend call that `ChatHAPS` makes as a leaf."""

    def call(cand: Any, prepared: Prepared[Any, Any]) -> T:
        backend, kwargs = prepared.backend, dict(prepared.kwargs)
        while isinstance(backend, RunnableBinding) and not backend.config and not backend.config_factories:
            kwargs = merge_kwargs(backend.kwargs, kwargs)
            backend = backend.bound
        return send(cand, replace(prepared, backend=backend, kwargs=kwargs))

    return call
