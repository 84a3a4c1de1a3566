"""LangChain integration: `HAPSRunnable` (a Runnable) and `ChatHAPS` (a chat model).

Both route every call with a HAPS router, which picks a backend *and* its generation parameters
(temperature, prompt style, ...), then call that backend the way it accepts those parameters,
retrying transient errors and falling back to the next-best backend (`haps_core.dispatch`).

* `HAPSRunnable` is the primary surface. It is a chain run whose child is the backend's own run,
  tagged ``haps:<backend>``, so traces show which model answered and why; ``batch``/``abatch``
  route a whole batch in one router forward pass; ``stream``/``astream`` pass the backend's tokens
  through as they come.
* `ChatHAPS` is the same routing as a `BaseChatModel`, for code that insists on a chat model. A
  chat-model run is a leaf in LangChain's tracing model, so there the backend call is not a
  separate child run; the decision is in ``response_metadata["haps"]`` either way.

How a parameter reaches a backend depends on the backend, and HAPS records the mechanism it used
per parameter (``response_metadata["haps"]["applied"]``, and `HAPSRunnable.check_backends`):

=================  ============================================================================
``pipeline_kwargs``  ``ChatHuggingFace`` over a local ``HuggingFacePipeline``: the only per-call
                   route that reaches ``generate`` (its ``temperature`` field is ignored there).
                   Temperature 0 becomes greedy decoding (``do_sample=False``).
``configurable``   a backend made with ``.configurable_fields(temperature=ConfigurableField(...))``.
``model_copy``     a backend with a pydantic field of that name (``ChatOpenAI.temperature``):
                   a per-call copy, so the shared instance is never mutated.
``invoke_kwargs``  passed as invoke keyword arguments (like ``.bind``), only for the backends
                   listed in ``forwards_kwargs``: many chat models silently drop unknown kwargs.
``system_message`` the prompt style: its text is prepended as a system message (or appended to
                   the input's own system message).
``not_applied``    no known route: the parameter does NOT reach the model (logged at start-up).
=================  ============================================================================
"""

import logging
from collections import defaultdict
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Annotated, Any

try:
    from langchain_core.callbacks import (
        AsyncCallbackManagerForLLMRun,
        CallbackManagerForLLMRun,
    )
    from langchain_core.language_models import BaseChatModel, LanguageModelInput
    from langchain_core.language_models.base import LangSmithParams
    from langchain_core.messages import (
        AIMessage,
        AIMessageChunk,
        BaseMessage,
        BaseMessageChunk,
        HumanMessage,
        SystemMessage,
        convert_to_messages,
    )
    from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult
    from langchain_core.prompt_values import PromptValue
    from langchain_core.runnables import (
        ConfigurableField,
        Runnable,
        RunnableBinding,
        RunnableConfig,
        RunnableSerializable,
    )
    from langchain_core.runnables.config import (
        ensure_config,
        get_async_callback_manager_for_config,
        get_callback_manager_for_config,
        get_config_list,
        get_executor_for_config,
        patch_config,
        run_in_executor,
    )
    from langchain_core.runnables.configurable import RunnableConfigurableFields
    from langchain_core.runnables.utils import gather_with_concurrency
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    _msg = (
        "haps_integrations.langchain needs LangChain (langchain-core), which is not installed: "
        'pip install "haps[langchain]"'
    )
    raise ImportError(_msg) from exc

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    SecretStr,
    ValidationInfo,
    field_validator,
    model_validator,
)

from haps_core.decision import Alternative, RoutingDecision, check_cost_weight, fallback_order
from haps_core.dispatch import (
    PROMPT_STYLE,
    Attempt,
    acall_with_fallback,
    call_costs,
    call_with_fallback,
    check_attempts,
    check_call_timeout,
    check_max_backends,
    check_router,
    checked_prompt_styles,
    decision_record,
    interrupted_stream,
    parameter_report,
    route_checked,
    served_candidate,
    system_message_for,
    warn_unreachable,
)
from haps_core.errors import RoutingError, StreamInterruptedError

logger = logging.getLogger(__name__)

__all__ = [
    "COST_WEIGHT_KEY",
    "MAX_COST_KEY",
    "ChatHAPS",
    "HAPSRunnable",
    "extract_query_text",
]

COST_WEIGHT_KEY = "haps_cost_weight"
"""``config["configurable"]`` key that sets the cost weight (lambda) of one call."""
MAX_COST_KEY = "haps_max_cost_per_query"
"""``config["configurable"]`` key that sets the per-query USD budget of one call."""

# Generation parameters that a transformers text-generation pipeline takes per call.
_PIPELINE_PARAMS = {
    "temperature": "temperature",
    "max_tokens": "max_new_tokens",
    "max_new_tokens": "max_new_tokens",
    "top_p": "top_p",
    "top_k": "top_k",
    "repetition_penalty": "repetition_penalty",
}

MECHANISMS = (
    "pipeline_kwargs",
    "configurable",
    "model_copy",
    "invoke_kwargs",
    "system_message",
    "default",
    "not_applied",
)
"""Every mechanism name that ``applied`` and `HAPSRunnable.check_backends` may report."""


# -- input handling -------------------------------------------------------------------------------
def to_messages(value: LanguageModelInput | BaseMessage) -> list[BaseMessage]:
    """A chat-model input (str, PromptValue, message or list of message-likes) as messages."""
    if isinstance(value, PromptValue):
        return value.to_messages()
    if isinstance(value, str):
        return [HumanMessage(content=value)]
    if isinstance(value, BaseMessage):
        return [value]
    if isinstance(value, Sequence):
        return convert_to_messages(value)
    msg = (
        f"HAPS input must be a str, a PromptValue, a message or a list of messages, "
        f"got {type(value).__name__}: {value!r:.200}"
    )
    raise TypeError(msg)


def _content_text(content: str | list[str | dict[str, Any]]) -> str:
    if isinstance(content, str):
        return content
    parts = []
    for part in content:
        if isinstance(part, str):
            parts.append(part)
        elif isinstance(part, dict) and part.get("type") == "text" and isinstance(part.get("text"), str):
            parts.append(part["text"])
    return "\n".join(parts)


def extract_query_text(messages: Sequence[BaseMessage]) -> str:
    """The text the router reads: the last human message's text parts (images etc. skipped).

    The router was trained on user queries, so system prompts and earlier turns are not part of
    what it scores. An input with no human message, or one with no text, is an error rather
    than a guess (the router cannot score an empty query).
    """
    for message in reversed(messages):
        if isinstance(message, HumanMessage):
            text = _content_text(message.content)
            if not text.strip():
                msg = (
                    "HAPS routes on the last human message's text, which is empty or whitespace-only "
                    f"(no text parts with content: {len(text)} characters in its text parts); "
                    "nothing to route on"
                )
                raise ValueError(msg)
            return text
    kinds = [type(m).__name__ for m in messages]
    msg = f"HAPS routes on the last human message, but the input has none (message types: {kinds})"
    raise ValueError(msg)


def apply_system_message(messages: Sequence[BaseMessage], text: str | None) -> list[BaseMessage]:
    """Adds a prompt style's text: prepended as a system message, or appended to the first one.

    Appending keeps the caller's own system instructions first and in charge; a second system
    message would be rejected or reordered by several chat templates.
    """
    out = list(messages)
    if not text:
        return out
    for i, message in enumerate(out):
        if isinstance(message, SystemMessage):
            content = message.content
            if isinstance(content, str):
                new: Any = f"{content}\n\n{text}" if content else text
            else:
                new = [*content, {"type": "text", "text": text}]
            out[i] = message.model_copy(update={"content": new})
            return out
    return [SystemMessage(content=text), *out]


# -- parameter application ------------------------------------------------------------------------
def _class_names(obj: Any) -> set[str]:
    return {cls.__name__ for cls in type(obj).__mro__}


def _is_hf_pipeline_chat(backend: Any) -> bool:
    """A ``ChatHuggingFace`` over a local ``HuggingFacePipeline`` (checked without importing it)."""
    return "ChatHuggingFace" in _class_names(backend) and "HuggingFacePipeline" in _class_names(
        getattr(backend, "llm", None)
    )


def _pydantic_field(backend: Any, param: str) -> str | None:
    """The name of ``backend``'s pydantic field called (or aliased) ``param``, if any."""
    if not isinstance(backend, BaseModel):
        return None
    fields = type(backend).model_fields
    if param in fields:
        return param
    for name, info in fields.items():
        if info.alias == param:
            return name
    return None


@dataclass
class _Prepared:
    """A backend ready to call for one candidate action."""

    runnable: Any
    messages: list[BaseMessage]
    kwargs: dict[str, Any] = field(default_factory=dict)
    configurable: dict[str, Any] = field(default_factory=dict)
    applied: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class _Plan:
    """One routed input: its decision, its messages and the budget it was routed with."""

    decision: RoutingDecision
    messages: list[BaseMessage]
    max_cost: float | None


_Configure = Callable[[Alternative, _Prepared, int], tuple[RunnableConfig, dict[str, Any]]]
"""``(candidate, prepared, attempt_number) -> (config, kwargs)`` of one backend call."""


def _apply(
    backend: Any, params: Mapping[str, Any], forwards_kwargs: bool
) -> tuple[Any, dict[str, Any], dict[str, Any], dict[str, str]]:
    """Applies ``params`` to ``backend``; returns (runnable, invoke kwargs, configurable, applied)."""
    if not params:
        return backend, {}, {}, {}
    if _is_hf_pipeline_chat(backend):
        pipeline_kwargs: dict[str, Any] = {}
        applied: dict[str, str] = {}
        for param, value in params.items():
            if param not in _PIPELINE_PARAMS:
                applied[param] = "not_applied"
            elif param == "temperature":
                # transformers rejects do_sample=True with temperature 0: 0 means greedy.
                t = float(value)
                pipeline_kwargs.update(
                    {"do_sample": True, "temperature": t} if t > 0 else {"do_sample": False}
                )
                applied[param] = "pipeline_kwargs"
            else:
                pipeline_kwargs[_PIPELINE_PARAMS[param]] = value
                applied[param] = "pipeline_kwargs"
        return backend, ({"pipeline_kwargs": pipeline_kwargs} if pipeline_kwargs else {}), {}, applied
    if isinstance(backend, RunnableConfigurableFields):
        configurable, rest, applied = {}, {}, {}
        for param, value in params.items():
            spec = backend.fields.get(param)
            if isinstance(spec, ConfigurableField):
                configurable[spec.id] = value
                applied[param] = "configurable"
            else:
                rest[param] = value
        inner, kwargs, conf2, applied2 = _apply(backend.default, rest, forwards_kwargs)
        if inner is not backend.default:
            backend = backend.model_copy(update={"default": inner})
        return backend, kwargs, {**configurable, **conf2}, {**applied, **applied2}
    if isinstance(backend, RunnableBinding):
        inner, kwargs, configurable, applied = _apply(backend.bound, params, forwards_kwargs)
        for key, value in kwargs.items():  # merge, e.g., our pipeline_kwargs into bound ones
            if isinstance(value, dict) and isinstance(backend.kwargs.get(key), dict):
                kwargs[key] = {**backend.kwargs[key], **value}
        if inner is not backend.bound:
            backend = backend.model_copy(update={"bound": inner})
        return backend, kwargs, configurable, applied
    update, kwargs, applied = {}, {}, {}
    for param, value in params.items():
        name = _pydantic_field(backend, param)
        if name is not None:
            update[name] = value
            applied[param] = "model_copy"
        elif forwards_kwargs:
            kwargs[param] = value
            applied[param] = "invoke_kwargs"
        else:
            applied[param] = "not_applied"
    if update:
        backend = backend.model_copy(update=update)
    return backend, kwargs, {}, applied


_DETAILS = {
    "pipeline_kwargs": "passed per call as pipeline_kwargs to the transformers pipeline",
    "configurable": "set per call through the backend's configurable field",
    "model_copy": "set on a per-call copy of the backend (its pydantic field of that name)",
    "invoke_kwargs": "passed as an invoke keyword argument (backend listed in forwards_kwargs)",
    "system_message": "sent as a system message",
    "default": "the default style: no system message is added",
    "not_applied": "no known way to pass it to this backend: it does NOT reach the model",
}


# -- the shared routing core ----------------------------------------------------------------------
class _Dispatcher:
    """The routing and calling logic shared by `HAPSRunnable` and `ChatHAPS` (no pydantic)."""

    def __init__(
        self,
        router: Any,
        backends: Mapping[str, Any],
        prompt_styles: Mapping[str, str] | None,
        forwards_kwargs: Sequence[str],
        pinned: Mapping[str, Any] | None = None,
    ) -> None:
        check_router(router)
        if not isinstance(backends, Mapping) or not backends:
            msg = f"`backends` must be a non-empty dict of name -> chat model, got {backends!r:.200}"
            raise TypeError(msg)
        for name, backend in backends.items():
            if not isinstance(backend, Runnable):
                msg = (
                    f"`backends[{name!r}]` must be a LangChain chat model or Runnable, "
                    f"got {type(backend).__name__}"
                )
                raise TypeError(msg)
        self.router = router
        self.space = router.space
        catalog, given = set(self.space.backend_names), set(backends)
        if catalog != given:
            msg = (
                "`backends` must match the router's catalog exactly: "
                f"catalog backends without a runnable: {sorted(catalog - given)}; "
                f"runnables without a catalog entry: {sorted(given - catalog)} "
                f"(catalog: {sorted(catalog)}; given: {sorted(given)})"
            )
            raise ValueError(msg)
        unknown = sorted(set(forwards_kwargs) - given)
        if unknown:
            msg = f"`forwards_kwargs` names unknown backends {unknown}; backends: {sorted(given)}"
            raise ValueError(msg)
        self.backends = dict(backends)
        self.styles = checked_prompt_styles(self.space, prompt_styles)
        self.forwards = frozenset(forwards_kwargs)
        self.pinned = dict(pinned or {})
        kinds = {name: type(backend).__name__ for name, backend in self.backends.items()}
        warn_unreachable(self.check(), kinds, "check_backends")

    # -- routing ---------------------------------------------------------------------------
    def costs(
        self, configurable: Mapping[str, Any], cost_weight: float | None, max_cost: float | None
    ) -> tuple[float | None, float | None]:
        """The call's (cost weight, budget): the ``configurable`` keys, else the instance's fields.

        See `haps_core.dispatch.call_costs`: at most one of the two is set, a per-call setting
        replaces the instance's entirely, and with nothing set the router's default is used.
        """
        return call_costs(
            self.router,
            configurable.get(COST_WEIGHT_KEY),
            configurable.get(MAX_COST_KEY),
            (cost_weight, max_cost),
            (f"configurable[{COST_WEIGHT_KEY!r}]", f"configurable[{MAX_COST_KEY!r}]"),
        )

    def route(
        self, texts: list[str], cost_weight: float | None, max_cost: float | None
    ) -> list[RoutingDecision]:
        """One router forward pass for ``texts``; checks the router's answer."""
        return route_checked(self.router, texts, cost_weight, max_cost, self.backends)

    # -- calling ---------------------------------------------------------------------------
    def prepare(self, cand: Alternative, messages: Sequence[BaseMessage]) -> _Prepared:
        """The backend of ``cand`` with its parameters applied and its prompt style added."""
        if cand.backend not in self.backends:
            msg = f"candidate backend {cand.backend!r} has no runnable (have: {sorted(self.backends)})"
            raise RoutingError(msg)
        params = {k: v for k, v in cand.parameters.items() if k != PROMPT_STYLE}
        params.update(self.pinned)
        runnable, kwargs, configurable, applied = _apply(
            self.backends[cand.backend], params, cand.backend in self.forwards
        )
        style = cand.parameters.get(PROMPT_STYLE)
        text = system_message_for(style, self.styles)
        if style is not None:
            applied[PROMPT_STYLE] = "system_message" if text else "default"
        return _Prepared(runnable, apply_system_message(messages, text), kwargs, configurable, applied)

    def call(
        self, plan: _Plan, configure: _Configure, send: Callable[..., Any], **fallback: Any
    ) -> tuple[Any, dict[str, Any], list[Attempt]]:
        """Calls the plan's decision with retries and fallback (`call_with_fallback`).

        Per attempt, the candidate's backend is prepared (`prepare`), ``configure(cand,
        prepared, attempt_number)`` gives the backend call's ``(config, kwargs)`` and
        ``send(runnable, messages, config, kwargs)`` calls it.

        Returns:
            ``(output, record, attempts)``: what ``send`` returned, ``response_metadata["haps"]``
            (`record`) and every attempt.
        """

        def attempt(cand: Alternative, n: int) -> tuple[_Prepared, Any]:
            prepared = self.prepare(cand, plan.messages)
            config, kwargs = configure(cand, prepared, n)
            return prepared, send(prepared.runnable, prepared.messages, config, kwargs)

        (prepared, output), attempts = call_with_fallback(plan.decision, attempt, **fallback)
        return output, self.record(plan, prepared, attempts), attempts

    async def acall(
        self,
        plan: _Plan,
        configure: _Configure,
        send: Callable[..., Awaitable[Any]],
        **fallback: Any,
    ) -> tuple[Any, dict[str, Any], list[Attempt]]:
        """The async twin of `call`: ``send`` is awaited (`acall_with_fallback`)."""

        async def attempt(cand: Alternative, n: int) -> tuple[_Prepared, Any]:
            prepared = self.prepare(cand, plan.messages)
            config, kwargs = configure(cand, prepared, n)
            return prepared, await send(prepared.runnable, prepared.messages, config, kwargs)

        (prepared, output), attempts = await acall_with_fallback(plan.decision, attempt, **fallback)
        return output, self.record(plan, prepared, attempts), attempts

    def record(self, plan: _Plan, prepared: _Prepared, attempts: list[Attempt]) -> dict[str, Any]:
        """What goes into ``response_metadata["haps"]``: `decision_record`, plus ``pinned``."""
        served = served_candidate(plan.decision, attempts)
        record = decision_record(plan.decision, served, prepared.applied, attempts, plan.max_cost)
        if self.pinned:
            record["pinned"] = dict(self.pinned)
        return record

    def check(self) -> dict[str, dict[str, dict[str, Any]]]:
        """Per backend and catalog parameter: the mechanism and whether it reaches the model."""

        def applied(backend: str, params: dict[str, Any]) -> dict[str, str]:
            _, _, _, mechanisms = _apply(self.backends[backend], params, backend in self.forwards)
            return mechanisms

        return parameter_report(self.space, applied, _DETAILS, self.pinned)


def _child_metadata(
    config: RunnableConfig, cand: Alternative, prepared: _Prepared, number: int
) -> dict[str, Any]:
    return {
        **(config.get("metadata") or {}),
        "haps_backend": cand.backend,
        "haps_parameters": dict(cand.parameters),
        "haps_temperature": cand.temperature,
        "haps_prompt_style": cand.prompt_style,
        "haps_action_index": cand.action_index,
        "haps_attempt": number,
        "haps_applied": dict(prepared.applied),
    }


def _merge_kwargs(caller: Mapping[str, Any], haps: Mapping[str, Any]) -> dict[str, Any]:
    """The caller's invoke kwargs plus HAPS's; dict values (``pipeline_kwargs``) are merged."""
    merged = dict(caller)
    for key, value in haps.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = {**merged[key], **value}
        else:
            merged[key] = value
    return merged


def _as_message(output: Any) -> BaseMessage:
    if isinstance(output, BaseMessage):
        return output
    if isinstance(output, str):  # an LLM (text in, text out) used as a backend
        return AIMessage(content=output)
    msg = f"HAPS backend returned {type(output).__name__}, expected a message or a string"
    raise TypeError(msg)


def _with_haps(
    message: BaseMessage, meta: dict[str, Any], *, clear_id: bool = False, model_name: str | None = None
) -> BaseMessage:
    """A copy of ``message`` with the decision under ``response_metadata["haps"]``.

    ``model_name`` fills ``response_metadata["model_name"]`` when the backend left it empty.
    ``clear_id`` drops the backend run's message id so that the caller's run assigns its own.
    """
    response_metadata = {**message.response_metadata, "haps": meta}
    if model_name is not None and not response_metadata.get("model_name"):
        response_metadata["model_name"] = model_name
    update: dict[str, Any] = {"response_metadata": response_metadata}
    if clear_id:
        update["id"] = None
    return message.model_copy(update=update)


def _add(total: Any, chunk: Any) -> Any:
    if total is None:
        return chunk
    try:
        return total + chunk
    except TypeError:
        return total


def _close(iterator: Any) -> None:
    close = getattr(iterator, "close", None)
    if close is not None:
        close()


async def _aclose(iterator: Any) -> None:
    aclose = getattr(iterator, "aclose", None)
    if aclose is not None:
        await aclose()


# -- calling a backend: the ``send`` functions of `_Dispatcher.call` ------------------------------
def _invoke(
    runnable: Any, messages: list[BaseMessage], config: RunnableConfig, kwargs: dict[str, Any]
) -> Any:
    return runnable.invoke(messages, config, **kwargs)


async def _ainvoke(
    runnable: Any, messages: list[BaseMessage], config: RunnableConfig, kwargs: dict[str, Any]
) -> Any:
    try:
        return await runnable.ainvoke(messages, config, **kwargs)
    except NotImplementedError:
        # e.g. ChatHuggingFace over a local pipeline has no async path: run it in a thread
        return await run_in_executor(config, runnable.invoke, messages, config, **kwargs)


def _open_stream(
    runnable: Any, messages: list[BaseMessage], config: RunnableConfig, kwargs: dict[str, Any]
) -> tuple[Any, Iterator[Any]]:
    """Starts the backend's stream: ``(first chunk or None, iterator)``.

    Taking the first chunk inside the fallback loop means a backend that fails before its first
    token is retried / fallen back from like in ``invoke``.
    """
    iterator = iter(runnable.stream(messages, config, **kwargs))
    return next(iterator, None), iterator


async def _aopen_stream(
    runnable: Any, messages: list[BaseMessage], config: RunnableConfig, kwargs: dict[str, Any]
) -> tuple[Any, AsyncIterator[Any]]:
    """The async twin of `_open_stream`."""
    iterator = runnable.astream(messages, config, **kwargs)
    try:
        first = await iterator.__anext__()
    except StopAsyncIteration:
        first = None
    return first, iterator


class _Relay:
    """The rest of a backend's stream, after its first chunk, passed on as it comes.

    ``partial`` is the sum of the chunks so far (the first included) and ``last`` the latest. A
    failure raises `StreamInterruptedError` with ``partial``: falling back mid-stream would splice
    two answers. ``clear_id`` drops each chunk's message id (so that the caller's run assigns its
    own). Iterate it with ``for`` or ``async for``, matching the backend's iterator.
    """

    def __init__(self, iterator: Any, attempts: list[Attempt], first: Any, *, clear_id: bool = False) -> None:
        self.iterator = iterator
        self.attempts = attempts
        self.clear_id = clear_id
        self.partial = self.last = first

    def _take(self, chunk: Any) -> Any:
        if self.clear_id:
            chunk = chunk.model_copy(update={"id": None})
        self.last, self.partial = chunk, _add(self.partial, chunk)
        return chunk

    def _interrupted(self, exc: Exception) -> StreamInterruptedError:
        return interrupted_stream(self.attempts[-1].backend, self.partial, self.attempts, exc)

    def __iter__(self) -> "_Relay":
        return self

    def __next__(self) -> Any:
        try:
            chunk = next(self.iterator)
        except StopIteration:
            raise
        except Exception as exc:
            raise self._interrupted(exc) from exc
        return self._take(chunk)

    def __aiter__(self) -> "_Relay":
        return self

    async def __anext__(self) -> Any:
        try:
            chunk = await self.iterator.__anext__()
        except StopAsyncIteration:
            raise
        except Exception as exc:
            raise self._interrupted(exc) from exc
        return self._take(chunk)


# -- settings shared by the two classes -----------------------------------------------------------
def _optional_cost(value: float | None, info: ValidationInfo) -> float | None:
    return None if value is None else check_cost_weight(value, info.field_name)


_OptionalCost = Annotated[float | None, AfterValidator(_optional_cost)]
"""A cost weight or budget field: None, or a finite number >= 0."""
_MaxBackends = Annotated[int | None, AfterValidator(check_max_backends)]
"""``max_backends``: None (every backend of the decision) or an int >= 1."""


def _check_one_cost_setting(cost_weight: float | None, max_cost: float | None) -> None:
    if cost_weight is not None and max_cost is not None:
        msg = (
            f"give either `cost_weight` ({cost_weight!r}) or `max_cost_per_query` ({max_cost!r}), "
            "not both: a budget is turned into a cost weight by the router"
        )
        raise ValueError(msg)


# -- HAPSRunnable ---------------------------------------------------------------------------------
class HAPSRunnable(RunnableSerializable[LanguageModelInput, BaseMessage]):
    """Routes each call to the best backend and parameters for the query, then calls it.

    Args:
        router: a HAPS router: ``.space`` (its `RoutingSpace`) and
            ``.route(texts, cost_weight=..., max_cost_per_query=...)``.
        backends: backend name -> chat model (or any Runnable taking messages). Must match the
            router's catalog exactly (missing or extra names are a ValueError).
        cost_weight: lambda, quality points per USD (>= 0). None: the router's
            ``default_cost_weight`` (0.0 if it has none). Per call:
            ``config={"configurable": {"haps_cost_weight": x}}``.
        max_cost_per_query: USD budget per query the router calibrates a cost weight from.
            Per call: ``config={"configurable": {"haps_max_cost_per_query": x}}``.
        prompt_styles: style name -> system-message text, overriding or extending the router's.
        max_attempts: calls of one backend before falling back (transient errors only; a
            permanent error such as a 401 falls back at once).
        max_backends: how many distinct backends to try per call (None: all in the decision).
        forwards_kwargs: backends whose ``invoke`` forwards extra keyword arguments into the
            model request; parameters with no other route are bound as kwargs for these only.
        retry_wait: tenacity wait strategy between retries (default: jittered exponential,
            0.05 s to 2 s). Tests pass ``tenacity.wait_none()``.
        call_timeout: seconds one backend call may take (for a stream: until its first chunk);
            None (default): no limit. A call that takes longer fails with
            `haps_core.errors.CallTimeoutError`, a transient error (retried, then fallen back
            from). Prefer the backend's own request timeout where it has one; this bounds the
            backends that have none, or ignore it.

    Example:
        .. code-block:: python

            haps = HAPSRunnable(router=router, backends={"small": small_llm, "large": large_llm})
            chain = prompt | haps | StrOutputParser()
            chain.invoke({"question": "..."}, config={"configurable": {"haps_cost_weight": 50.0}})

    Per-call cost settings are best passed as ``configurable`` keys (above): `batch` reads them
    per input and routes each distinct setting in one pass. ``.configurable_fields(cost_weight=
    ConfigurableField(id="haps_cost_weight"))`` works too, but LangChain's configurable wrapper
    then rebuilds the runnable per input and batches input by input (one router pass each).

    The returned message carries ``response_metadata["haps"]``: the decision (backend,
    parameters, predicted quality and cost, cost weight, alternatives), which backend served it
    (``served_by``, after any fallback), the mechanism used per parameter (``applied``) and every
    attempt (``attempts``).
    """

    router: Any
    backends: dict[str, Any]
    cost_weight: _OptionalCost = None
    max_cost_per_query: _OptionalCost = None
    prompt_styles: dict[str, str] | None = None
    max_attempts: int = 3
    max_backends: _MaxBackends = None
    forwards_kwargs: list[str] = Field(default_factory=list)
    retry_wait: Any = None
    call_timeout: float | None = None

    model_config = ConfigDict(arbitrary_types_allowed=True)

    _dispatcher: _Dispatcher = PrivateAttr()

    @field_validator("max_attempts")
    @classmethod
    def _check_max_attempts(cls, value: int) -> int:
        return check_attempts(value, "max_attempts")

    @field_validator("call_timeout")
    @classmethod
    def _check_call_timeout(cls, value: float | None) -> float | None:
        return check_call_timeout(value)

    @model_validator(mode="after")
    def _build(self) -> "HAPSRunnable":
        _check_one_cost_setting(self.cost_weight, self.max_cost_per_query)
        self._dispatcher = _Dispatcher(self.router, self.backends, self.prompt_styles, self.forwards_kwargs)
        return self

    # -- public helpers --------------------------------------------------------------------
    def check_backends(self) -> dict[str, dict[str, dict[str, Any]]]:
        """For each backend and each parameter of its catalog grid, how HAPS sets it.

        Returns:
            ``{backend: {parameter: {"mechanism": ..., "reaches_model": bool, "detail": ...}}}``.
            ``reaches_model`` is False for ``not_applied`` (e.g. a fake chat model with no
            ``temperature`` field): the router's choice of that parameter is then ignored.
        """
        return self._dispatcher.check()

    def route(
        self, inputs: Sequence[LanguageModelInput], config: RunnableConfig | None = None
    ) -> list[RoutingDecision]:
        """The decisions for ``inputs`` without calling any backend (one router pass)."""
        config = ensure_config(config)
        cw, mc = self._costs(config)
        texts = [extract_query_text(to_messages(x)) for x in inputs]
        return self._dispatcher.route(texts, cw, mc)

    # -- internals -------------------------------------------------------------------------
    def _costs(self, config: RunnableConfig) -> tuple[float | None, float | None]:
        return self._dispatcher.costs(
            config.get("configurable") or {}, self.cost_weight, self.max_cost_per_query
        )

    def _plan(self, input: LanguageModelInput, config: RunnableConfig) -> _Plan:
        """Routes one input (one router forward pass)."""
        messages = to_messages(input)
        cw, mc = self._costs(config)
        (decision,) = self._dispatcher.route([extract_query_text(messages)], cw, mc)
        return _Plan(decision, messages, mc)

    def _plan_batch(
        self, inputs: list[Any], configs: list[RunnableConfig], results: list[Any]
    ) -> list[_Plan | None]:
        """Routes a batch: one router pass per distinct (cost weight, budget) of the inputs.

        An input that cannot be routed gets its exception in ``results`` and no plan.
        """
        messages: list[Any] = [None] * len(inputs)
        groups: dict[tuple[float | None, float | None], list[tuple[int, str]]] = defaultdict(list)
        for i, (input_, config) in enumerate(zip(inputs, configs)):
            try:
                messages[i] = to_messages(input_)
                text = extract_query_text(messages[i])
                costs = self._costs(config)
            except Exception as e:
                results[i] = e
                continue
            groups[costs].append((i, text))
        plans: list[_Plan | None] = [None] * len(inputs)
        for (cw, mc), members in groups.items():
            try:
                decisions = self._dispatcher.route([text for _, text in members], cw, mc)
            except Exception as e:
                for i, _ in members:
                    results[i] = e
                continue
            for (i, _), decision in zip(members, decisions):
                plans[i] = _Plan(decision, messages[i], mc)
        return plans

    def _fallback_kwargs(self) -> dict[str, Any]:
        return {
            "max_attempts_per_backend": self.max_attempts,
            "max_backends": self.max_backends,
            "wait": self.retry_wait,
            "call_timeout": self.call_timeout,
        }

    def _start(self, input: Any, config: RunnableConfig) -> Any:
        return get_callback_manager_for_config(config).on_chain_start(
            None, input, name=config.get("run_name") or self.get_name(), run_id=config.pop("run_id", None)
        )

    async def _astart(self, input: Any, config: RunnableConfig) -> Any:
        return await get_async_callback_manager_for_config(config).on_chain_start(
            None, input, name=config.get("run_name") or self.get_name(), run_id=config.pop("run_id", None)
        )

    def _configure(self, config: RunnableConfig, run_manager: Any, kwargs: dict[str, Any]) -> _Configure:
        """The backend calls of one run: child runs tagged ``haps:<backend>``, caller's kwargs."""

        def configure(
            cand: Alternative, prepared: _Prepared, n: int
        ) -> tuple[RunnableConfig, dict[str, Any]]:
            child = patch_config(
                config,
                callbacks=run_manager.get_child(tag=f"haps:{cand.backend}"),
                configurable=prepared.configurable or None,
            )
            child["metadata"] = _child_metadata(config, cand, prepared, n)
            return child, _merge_kwargs(kwargs, prepared.kwargs)

        return configure

    def _call(
        self, plan: _Plan, config: RunnableConfig, run_manager: Any, kwargs: dict[str, Any]
    ) -> BaseMessage:
        output, record, _ = self._dispatcher.call(
            plan, self._configure(config, run_manager, kwargs), _invoke, **self._fallback_kwargs()
        )
        return _with_haps(_as_message(output), record)

    async def _acall(
        self, plan: _Plan, config: RunnableConfig, run_manager: Any, kwargs: dict[str, Any]
    ) -> BaseMessage:
        output, record, _ = await self._dispatcher.acall(
            plan, self._configure(config, run_manager, kwargs), _ainvoke, **self._fallback_kwargs()
        )
        return _with_haps(_as_message(output), record)

    # -- Runnable API ----------------------------------------------------------------------
    def invoke(
        self, input: LanguageModelInput, config: RunnableConfig | None = None, **kwargs: Any
    ) -> BaseMessage:
        """Routes ``input`` and returns the chosen backend's message (see the class docstring)."""
        config = ensure_config(config)
        run_manager = self._start(input, config)
        try:
            output = self._call(self._plan(input, config), config, run_manager, kwargs)
        except BaseException as e:
            run_manager.on_chain_error(e)
            raise
        run_manager.on_chain_end(output)
        return output

    async def ainvoke(
        self, input: LanguageModelInput, config: RunnableConfig | None = None, **kwargs: Any
    ) -> BaseMessage:
        """Async `invoke`: the router runs in an executor, the backend's ``ainvoke`` is awaited."""
        config = ensure_config(config)
        run_manager = await self._astart(input, config)
        try:
            plan = await run_in_executor(config, self._plan, input, config)
            output = await self._acall(plan, config, run_manager, kwargs)
        except BaseException as e:
            await run_manager.on_chain_error(e)
            raise
        await run_manager.on_chain_end(output)
        return output

    def batch(
        self,
        inputs: list[LanguageModelInput],
        config: RunnableConfig | list[RunnableConfig] | None = None,
        *,
        return_exceptions: bool = False,
        **kwargs: Any,
    ) -> list[BaseMessage]:
        """Routes all inputs in ONE router pass, then calls the backends concurrently.

        Inputs with different cost settings (per-input configs) are routed in one pass per
        distinct setting. Backend calls run on a thread pool bounded by ``max_concurrency``;
        the output order is the input order.
        """
        if not inputs:
            return []
        configs = get_config_list(config, len(inputs))
        run_managers = [self._start(x, c) for x, c in zip(inputs, configs)]
        results: list[Any] = [None] * len(inputs)
        plans = self._plan_batch(inputs, configs, results)

        def run(i: int) -> None:
            if (plan := plans[i]) is None:
                return
            try:
                results[i] = self._call(plan, configs[i], run_managers[i], kwargs)
            except Exception as e:
                results[i] = e

        with get_executor_for_config(configs[0]) as executor:
            list(executor.map(run, range(len(inputs))))
        for result, run_manager in zip(results, run_managers):
            if isinstance(result, Exception):
                run_manager.on_chain_error(result)
            else:
                run_manager.on_chain_end(result)
        return _raise_or_return(results, return_exceptions)

    async def abatch(
        self,
        inputs: list[LanguageModelInput],
        config: RunnableConfig | list[RunnableConfig] | None = None,
        *,
        return_exceptions: bool = False,
        **kwargs: Any,
    ) -> list[BaseMessage]:
        """Async `batch`: one router pass (in an executor), then awaited backend calls."""
        if not inputs:
            return []
        configs = get_config_list(config, len(inputs))
        run_managers = [await self._astart(x, c) for x, c in zip(inputs, configs)]
        results: list[Any] = [None] * len(inputs)
        plans = await run_in_executor(configs[0], self._plan_batch, inputs, configs, results)

        async def run(i: int) -> None:
            if (plan := plans[i]) is None:
                return
            try:
                results[i] = await self._acall(plan, configs[i], run_managers[i], kwargs)
            except Exception as e:
                results[i] = e

        await gather_with_concurrency(
            configs[0].get("max_concurrency"), *(run(i) for i in range(len(inputs)))
        )
        for result, run_manager in zip(results, run_managers):
            if isinstance(result, Exception):
                await run_manager.on_chain_error(result)
            else:
                await run_manager.on_chain_end(result)
        return _raise_or_return(results, return_exceptions)

    def stream(
        self, input: LanguageModelInput, config: RunnableConfig | None = None, **kwargs: Any
    ) -> Iterator[BaseMessageChunk]:
        """Streams the chosen backend's chunks as they come.

        A backend that fails before its first chunk is retried / fallen back from like in
        `invoke`. One that fails after it raises `StreamInterruptedError` with the chunks so far
        in ``.partial_output`` (falling back then would splice two answers). The first chunk
        carries ``response_metadata["haps"]``.
        """
        config = ensure_config(config)
        run_manager = self._start(input, config)
        final: Any = None
        iterator: Any = None
        try:
            plan = self._plan(input, config)
            configure = self._configure(config, run_manager, kwargs)
            (first, iterator), record, attempts = self._dispatcher.call(
                plan, configure, _open_stream, **self._fallback_kwargs()
            )
            if first is not None:
                relay = _Relay(iterator, attempts, _with_haps(first, record))
                yield relay.partial
                yield from relay
                final = relay.partial
        except BaseException as e:
            if iterator is not None:
                _close(iterator)
            run_manager.on_chain_error(e)
            raise
        run_manager.on_chain_end(final)

    async def astream(
        self, input: LanguageModelInput, config: RunnableConfig | None = None, **kwargs: Any
    ) -> AsyncIterator[BaseMessageChunk]:
        """Async `stream`, with the same fallback rules."""
        config = ensure_config(config)
        run_manager = await self._astart(input, config)
        final: Any = None
        iterator: Any = None
        try:
            plan = await run_in_executor(config, self._plan, input, config)
            configure = self._configure(config, run_manager, kwargs)
            (first, iterator), record, attempts = await self._dispatcher.acall(
                plan, configure, _aopen_stream, **self._fallback_kwargs()
            )
            if first is not None:
                relay = _Relay(iterator, attempts, _with_haps(first, record))
                yield relay.partial
                async for chunk in relay:
                    yield chunk
                final = relay.partial
        except BaseException as e:
            if iterator is not None:
                await _aclose(iterator)
            await run_manager.on_chain_error(e)
            raise
        await run_manager.on_chain_end(final)


def _raise_or_return(results: list[Any], return_exceptions: bool) -> list[Any]:
    if not return_exceptions:
        for r in results:
            if isinstance(r, Exception):
                raise r
    return results


# -- ChatHAPS -------------------------------------------------------------------------------------
class ChatHAPS(BaseChatModel):
    """HAPS routing as a LangChain chat model.

    Every call is routed: the router picks a backend chat model and its parameters
    (temperature, prompt style, ...), HAPS applies them (see the module docstring for how), calls
    the backend, retries transient errors and falls back to the next-best backend.

    Setup:
        .. code-block:: bash

            pip install "haps[langchain]"

    Key init args:
        router: a HAPS router (``.space``, ``.route(...)``).
        backends: backend name -> chat model; must match the router's catalog exactly.
        cost_weight / max_cost_per_query: the cost trade-off (see `HAPSRunnable`). Per call:
            ``.invoke(x, haps_cost_weight=50.0)`` (or ``haps_max_cost_per_query=0.01``),
            ``.bind(haps_cost_weight=50.0)``, or
            ``.configurable_fields(cost_weight=ConfigurableField(id="haps_cost_weight"))``.
        prompt_styles, max_backends, forwards_kwargs, retry_wait, call_timeout: as in
            `HAPSRunnable`.
        model: a name for traces (``ls_model_name``), default ``"haps"``.
        temperature / max_tokens / timeout: when set, PIN that parameter for every call,
            overriding the router's choice (applied to the backend like a routed parameter).
            Leave them None (the default) to let HAPS choose.
        stop: stop sequences passed to the backend.
        max_retries: retries of a transient error on one backend before falling back.
        api_key: accepted for interface compatibility and unused: backends hold their own keys.
        streaming: stream from the backend even on ``invoke``.

    Instantiate:
        .. code-block:: python

            from haps_integrations.langchain import ChatHAPS

            llm = ChatHAPS(router=router, backends={"small": small_llm, "large": large_llm})

    Invoke:
        .. code-block:: python

            msg = llm.invoke("What is 17 * 23?")
            msg.response_metadata["haps"]["backend"], msg.response_metadata["haps"]["temperature"]

    Stream:
        .. code-block:: python

            for chunk in llm.stream("Tell me a joke"):
                print(chunk.content, end="")

    Async:
        .. code-block:: python

            await llm.ainvoke("...")
            async for chunk in llm.astream("..."):
                ...

    Response metadata:
        ``response_metadata["haps"]``: the decision, ``served_by`` (after fallback), ``applied``
        (mechanism per parameter), ``attempts`` and ``pinned`` parameters. In a stream it rides
        on the first chunk.

    Tracing: a chat-model run is a leaf in LangChain, so the backend call is made with no
    callbacks and does not appear as a separate child run (tokens are reported on this run).
    Use `HAPSRunnable` when you want the backend's run nested in the trace. Message ids are this
    run's, not the backend's.
    """

    router: Any
    backends: dict[str, Any]
    model_name: str = Field(default="haps", alias="model")
    """A name for this router in traces (``ls_model_name``)."""
    cost_weight: _OptionalCost = None
    """Lambda: quality points per USD (>= 0); None uses the router's default."""
    max_cost_per_query: _OptionalCost = None
    """USD budget per query; the router calibrates a cost weight from it."""
    prompt_styles: dict[str, str] | None = None
    """Style name -> system-message text, overriding or extending the router's."""
    temperature: float | None = None
    """Pins the sampling temperature (overrides the router's choice); None lets HAPS choose."""
    max_tokens: int | None = None
    """Pins the maximum number of generated tokens, applied to the chosen backend."""
    timeout: float | None = None
    """Pins a request timeout in seconds, applied to the chosen backend where it has one."""
    stop: list[str] | None = None
    """Stop sequences passed to the backend."""
    max_retries: int = 2
    """Retries of a transient error on one backend before falling back to the next."""
    api_key: SecretStr | None = None
    """Unused: accepted for interface compatibility; each backend holds its own credentials."""
    streaming: bool = False
    """Whether to stream from the backend even on ``invoke``."""
    max_backends: _MaxBackends = None
    """How many distinct backends to try per call (None: every backend in the decision)."""
    forwards_kwargs: list[str] = Field(default_factory=list)
    """Backends whose invoke forwards unknown keyword arguments into the model request."""
    retry_wait: Any = None
    """tenacity wait strategy between retries (default: jittered exponential, 0.05 s to 2 s)."""
    call_timeout: float | None = None
    """Seconds one backend call may take (a stream: until its first chunk); None: no limit."""

    model_config = ConfigDict(populate_by_name=True, arbitrary_types_allowed=True)

    _dispatcher: _Dispatcher = PrivateAttr()

    @field_validator("max_retries")
    @classmethod
    def _check_max_retries(cls, value: int) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            msg = f"`max_retries` must be an int >= 0, got {value!r}"
            raise ValueError(msg)
        return value

    @field_validator("call_timeout")
    @classmethod
    def _check_call_timeout(cls, value: float | None) -> float | None:
        return check_call_timeout(value)

    @model_validator(mode="after")
    def _build(self) -> "ChatHAPS":
        _check_one_cost_setting(self.cost_weight, self.max_cost_per_query)
        pinned = {
            k: v
            for k, v in (
                ("temperature", self.temperature),
                ("max_tokens", self.max_tokens),
                ("timeout", self.timeout),
            )
            if v is not None
        }
        self._dispatcher = _Dispatcher(
            self.router, self.backends, self.prompt_styles, self.forwards_kwargs, pinned
        )
        return self

    @property
    def _llm_type(self) -> str:
        return "haps"

    @property
    def _identifying_params(self) -> dict[str, Any]:
        return {
            "model_name": self.model_name,
            "backends": sorted(self.backends),
            "cost_weight": self.cost_weight,
            "max_cost_per_query": self.max_cost_per_query,
        }

    def _get_ls_params(self, stop: list[str] | None = None, **kwargs: Any) -> LangSmithParams:
        params = LangSmithParams(
            ls_provider="haps",
            ls_model_name=kwargs.get("model", self.model_name),
            ls_model_type="chat",
            ls_temperature=kwargs.get("temperature", self.temperature),
        )
        if (max_tokens := kwargs.get("max_tokens", self.max_tokens)) is not None:
            params["ls_max_tokens"] = max_tokens
        if ls_stop := stop or kwargs.get("stop") or self.stop:
            params["ls_stop"] = ls_stop
        return params

    def check_backends(self) -> dict[str, dict[str, dict[str, Any]]]:
        """See `HAPSRunnable.check_backends` (pinned parameters are included)."""
        return self._dispatcher.check()

    # -- internals -------------------------------------------------------------------------
    def _plan(self, messages: list[BaseMessage], kwargs: dict[str, Any]) -> tuple[_Plan, dict[str, Any]]:
        """Routes ``messages``; pops HAPS's own per-call kwargs from ``kwargs``.

        ``model=<backend name>`` (the standard per-call model override) pins that backend: HAPS
        still picks its parameters (the backend's best action in the decision) but does not
        fall back to other backends, since the caller asked for that model.
        """
        configurable = {k: kwargs.pop(k) for k in (COST_WEIGHT_KEY, MAX_COST_KEY) if k in kwargs}
        model = kwargs.pop("model", None)
        cw, mc = self._dispatcher.costs(configurable, self.cost_weight, self.max_cost_per_query)
        (decision,) = self._dispatcher.route([extract_query_text(messages)], cw, mc)
        if model is not None and model != self.model_name:
            decision = _pin_backend(decision, model, sorted(self.backends))
        return _Plan(decision, messages, mc), kwargs

    def _configure(self, stop: list[str] | None, kwargs: dict[str, Any]) -> _Configure:
        """The backend calls of one run: no callbacks (a chat-model run is a leaf), caller's kwargs."""

        def configure(
            cand: Alternative, prepared: _Prepared, n: int
        ) -> tuple[RunnableConfig, dict[str, Any]]:
            config: RunnableConfig = {"callbacks": [], "metadata": _child_metadata({}, cand, prepared, n)}
            if prepared.configurable:
                config["configurable"] = dict(prepared.configurable)
            kw = _merge_kwargs(kwargs, prepared.kwargs)
            if (stop_ := stop or self.stop) is not None:
                kw["stop"] = stop_
            return config, kw

        return configure

    def _fallback_kwargs(self) -> dict[str, Any]:
        return {
            "max_attempts_per_backend": self.max_retries + 1,
            "max_backends": self.max_backends,
            "wait": self.retry_wait,
            "call_timeout": self.call_timeout,
        }

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        plan, kwargs = self._plan(messages, kwargs)
        output, record, attempts = self._dispatcher.call(
            plan, self._configure(stop, kwargs), _invoke, **self._fallback_kwargs()
        )
        return _chat_result(output, record, attempts)

    async def _agenerate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        plan, kwargs = await run_in_executor(None, self._plan, messages, kwargs)  # router off the loop
        output, record, attempts = await self._dispatcher.acall(
            plan, self._configure(stop, kwargs), _ainvoke, **self._fallback_kwargs()
        )
        return _chat_result(output, record, attempts)

    def _stream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> Iterator[ChatGenerationChunk]:
        plan, kwargs = self._plan(messages, kwargs)
        (first, iterator), record, attempts = self._dispatcher.call(
            plan, self._configure(stop, kwargs), _open_stream, **self._fallback_kwargs()
        )
        try:
            if first is None:
                yield _empty_stream(record)
                return
            relay = _Relay(iterator, attempts, _with_haps(first, record, clear_id=True), clear_id=True)
            yield ChatGenerationChunk(message=relay.partial)
            for chunk in relay:
                yield ChatGenerationChunk(message=chunk)
            yield from _closing_chunk(relay.last, relay.partial, attempts[-1].backend)
        finally:
            _close(iterator)

    async def _astream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> AsyncIterator[ChatGenerationChunk]:
        plan, kwargs = await run_in_executor(None, self._plan, messages, kwargs)  # router off the loop
        (first, iterator), record, attempts = await self._dispatcher.acall(
            plan, self._configure(stop, kwargs), _aopen_stream, **self._fallback_kwargs()
        )
        try:
            if first is None:
                yield _empty_stream(record)
                return
            relay = _Relay(iterator, attempts, _with_haps(first, record, clear_id=True), clear_id=True)
            yield ChatGenerationChunk(message=relay.partial)
            async for chunk in relay:
                yield ChatGenerationChunk(message=chunk)
            for closing in _closing_chunk(relay.last, relay.partial, attempts[-1].backend):
                yield closing
        finally:
            await _aclose(iterator)


def _chat_result(output: Any, record: dict[str, Any], attempts: list[Attempt]) -> ChatResult:
    """A backend's output as this chat model's result (this run's id, the decision attached)."""
    message = _with_haps(_as_message(output), record, clear_id=True, model_name=attempts[-1].backend)
    return ChatResult(generations=[ChatGeneration(message=message)])


def _empty_stream(record: dict[str, Any]) -> ChatGenerationChunk:
    """The one chunk of a stream whose backend sent nothing: empty, with the decision."""
    return _last_chunk(AIMessageChunk(content="", response_metadata={"haps": record}))


def _closing_chunk(last: Any, partial: Any, backend: str) -> Iterator[ChatGenerationChunk]:
    """An empty final chunk when the stream needs one: unmarked last chunk, or no model name."""
    named = bool(getattr(partial, "response_metadata", {}).get("model_name"))
    if not _is_last(last) or not named:
        extra = {} if named else {"model_name": backend}
        yield _last_chunk(AIMessageChunk(content=_empty_like(last), response_metadata=extra))


def _is_last(chunk: Any) -> bool:
    return getattr(chunk, "chunk_position", None) == "last"


def _empty_like(chunk: Any) -> Any:
    return "" if isinstance(chunk.content, str) else []


def _pin_backend(decision: RoutingDecision, backend: str, known: list[str]) -> RoutingDecision:
    """The decision restricted to ``backend``: its best candidate, no other backend to fall to."""
    if backend not in known:
        msg = f"`model` must name one of the backends {known} (or be this router's name), got {backend!r}"
        raise ValueError(msg)
    same = [c for c in fallback_order(decision) if c.backend == backend]
    if same:
        best = same[0]
        params, quality, cost, index = (
            best.parameters,
            best.predicted_quality,
            best.predicted_cost,
            best.action_index,
        )
    else:  # the router listed no action of this backend: call it with its own defaults
        logger.warning(
            "HAPS: model=%r pinned, but the decision has no action of it; using its defaults", backend
        )
        params, quality, cost, index = {}, float("nan"), float("nan"), -1
    return RoutingDecision(backend, dict(params), quality, cost, decision.cost_weight, index, tuple(same[1:]))


def _last_chunk(chunk: BaseMessageChunk) -> ChatGenerationChunk:
    """Marks the stream's final chunk (``chunk_position="last"``) so aggregators finalise it."""
    if isinstance(chunk, AIMessageChunk) and not chunk.chunk_position:
        chunk = chunk.model_copy(update={"chunk_position": "last"})
    return ChatGenerationChunk(message=chunk)
