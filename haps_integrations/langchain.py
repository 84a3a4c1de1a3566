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
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

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

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, SecretStr, field_validator, model_validator

from haps_core.decision import Alternative, RoutingDecision, check_cost_weight, fallback_order
from haps_core.dispatch import (
    Attempt,
    acall_with_fallback,
    call_with_fallback,
    is_transient,
    resolve_prompt_styles,
    styles_without_text,
    system_message_for,
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

PROMPT_STYLE = "prompt_style"

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
                msg = "HAPS routes on the last human message's text, which is empty (no text parts)"
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


_WARNED: set[tuple[str, str, tuple[str, ...]]] = set()


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
        for attr in ("space", "route"):
            if not hasattr(router, attr):
                msg = (
                    f"`router` must have `.space` and `.route(texts, cost_weight=..., "
                    f"max_cost_per_query=...)` (a HAPSRouter); {type(router).__name__} has no `.{attr}`"
                )
                raise TypeError(msg)
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
        self.styles = resolve_prompt_styles(self.space, prompt_styles)
        missing = styles_without_text(self.space, self.styles)
        if missing:
            msg = (
                f"the router can choose prompt styles {missing}, which have no system-message text; "
                "pass `prompt_styles={name: text}` for them"
            )
            raise ValueError(msg)
        self.forwards = frozenset(forwards_kwargs)
        self.pinned = dict(pinned or {})
        for backend, routes in self.check().items():
            lost = tuple(sorted(p for p, r in routes.items() if not r["reaches_model"]))
            key = (backend, type(self.backends[backend]).__name__, lost)
            if lost and key not in _WARNED:  # once per process: instances are rebuilt per call
                _WARNED.add(key)  # by configurable_fields, and the warning would flood logs
                logger.warning(
                    "HAPS backend %r (%s): parameters %s have no way to reach the model; the "
                    "router's choice of them will be ignored (see check_backends())",
                    *key,
                )

    # -- routing ---------------------------------------------------------------------------
    def costs(
        self, configurable: Mapping[str, Any], cost_weight: float | None, max_cost: float | None
    ) -> tuple[float | None, float | None]:
        """The call's (cost weight, budget); at most one of the two is set.

        A per-call setting (``configurable`` keys) replaces the instance's fields entirely, so
        a per-call budget overrides an instance cost weight and vice versa. With nothing set,
        the router's ``default_cost_weight`` (0.0 if it has none) is used.
        """
        cw = configurable.get(COST_WEIGHT_KEY)
        mc = configurable.get(MAX_COST_KEY)
        if cw is not None and mc is not None:
            msg = (
                f"give either configurable[{COST_WEIGHT_KEY!r}] or configurable[{MAX_COST_KEY!r}], "
                f"not both (got {cw!r} and {mc!r})"
            )
            raise ValueError(msg)
        if cw is not None:
            return check_cost_weight(cw, f"configurable[{COST_WEIGHT_KEY!r}]"), None
        if mc is not None:
            return None, check_cost_weight(mc, f"configurable[{MAX_COST_KEY!r}]")
        if cost_weight is not None or max_cost is not None:
            return cost_weight, max_cost
        return float(getattr(self.router, "default_cost_weight", 0.0) or 0.0), None

    def route(
        self, texts: list[str], cost_weight: float | None, max_cost: float | None
    ) -> list[RoutingDecision]:
        """One router forward pass for ``texts``; checks the router's answer."""
        decisions = list(self.router.route(texts, cost_weight=cost_weight, max_cost_per_query=max_cost))
        if len(decisions) != len(texts):
            msg = f"router returned {len(decisions)} decisions for {len(texts)} queries"
            raise RoutingError(msg)
        for d in decisions:
            if d.backend not in self.backends:
                msg = (
                    f"router chose backend {d.backend!r}, which has no runnable "
                    f"(have: {sorted(self.backends)})"
                )
                raise RoutingError(msg)
        logger.debug(
            "HAPS routed %d queries (cost_weight=%s, max_cost=%s)", len(texts), cost_weight, max_cost
        )
        return decisions

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

    def metadata(
        self,
        decision: RoutingDecision,
        prepared: _Prepared,
        cand: Alternative,
        attempts: Sequence[Attempt],
        max_cost: float | None,
    ) -> dict[str, Any]:
        """What goes into ``response_metadata["haps"]``."""
        meta = decision.to_dict()
        meta["alternatives"] = list(meta["alternatives"])  # JSON-shaped: lists, not tuples
        meta.update(
            max_cost_per_query=max_cost,
            served_by={"backend": cand.backend, "parameters": dict(cand.parameters)},
            fallback=cand.action_index != decision.action_index,
            applied=dict(prepared.applied),
            attempts=[a.to_dict() for a in attempts],
        )
        if self.pinned:
            meta["pinned"] = dict(self.pinned)
        return meta

    def check(self) -> dict[str, dict[str, dict[str, Any]]]:
        """Per backend and catalog parameter: the mechanism and whether it reaches the model."""
        report: dict[str, dict[str, dict[str, Any]]] = {}
        for backend in self.space.backends:
            grid = backend.parameters
            sample = {p: values[-1] for p, values in grid.items() if p != PROMPT_STYLE}
            sample.update(self.pinned)
            _, _, _, applied = _apply(self.backends[backend.name], sample, backend.name in self.forwards)
            routes = {}
            for param in sorted(set(grid) | set(self.pinned)):
                mechanism = "system_message" if param == PROMPT_STYLE else applied[param]
                routes[param] = {
                    "mechanism": mechanism,
                    "reaches_model": mechanism != "not_applied",
                    "detail": _DETAILS[mechanism],
                }
            report[backend.name] = routes
        return report


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


def _interrupted(
    cand: Alternative, partial: Any, attempts: list[Attempt], exc: Exception
) -> StreamInterruptedError:
    attempts[-1] = replace(attempts[-1], error=f"{type(exc).__name__}: {exc}", transient=is_transient(exc))
    logger.warning("HAPS backend %r failed mid-stream; not falling back: %s", cand.backend, exc)
    return StreamInterruptedError(cand.backend, partial, attempts, exc)


def _check_attempts_field(value: int, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        msg = f"`{name}` must be an int >= 1, got {value!r}"
        raise ValueError(msg)
    return value


def _check_optional_cost(value: Any, name: str) -> float | None:
    return None if value is None else check_cost_weight(value, name)


def _check_one_cost_setting(cost_weight: float | None, max_cost: float | None) -> None:
    if cost_weight is not None and max_cost is not None:
        msg = (
            f"give either `cost_weight` ({cost_weight!r}) or `max_cost_per_query` ({max_cost!r}), "
            "not both: a budget is turned into a cost weight by the router"
        )
        raise ValueError(msg)


def _check_max_backends(value: int | None) -> int | None:
    if value is not None and (isinstance(value, bool) or value < 1):
        msg = f"`max_backends` must be None (every backend) or an int >= 1, got {value!r}"
        raise ValueError(msg)
    return value


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
    cost_weight: float | None = None
    max_cost_per_query: float | None = None
    prompt_styles: dict[str, str] | None = None
    max_attempts: int = 3
    max_backends: int | None = None
    forwards_kwargs: list[str] = Field(default_factory=list)
    retry_wait: Any = None

    model_config = ConfigDict(arbitrary_types_allowed=True)

    _dispatcher: _Dispatcher = PrivateAttr()

    @field_validator("cost_weight")
    @classmethod
    def _check_cost_weight(cls, value: Any) -> float | None:
        return _check_optional_cost(value, "cost_weight")

    @field_validator("max_cost_per_query")
    @classmethod
    def _check_max_cost(cls, value: Any) -> float | None:
        return _check_optional_cost(value, "max_cost_per_query")

    @field_validator("max_backends")
    @classmethod
    def _check_max_backends(cls, value: int | None) -> int | None:
        return _check_max_backends(value)

    @field_validator("max_attempts")
    @classmethod
    def _check_max_attempts(cls, value: int) -> int:
        return _check_attempts_field(value, "max_attempts")

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

    def _fallback_kwargs(self) -> dict[str, Any]:
        return {
            "max_attempts_per_backend": self.max_attempts,
            "max_backends": self.max_backends,
            "wait": self.retry_wait,
        }

    def _start(self, input: Any, config: RunnableConfig) -> Any:
        return get_callback_manager_for_config(config).on_chain_start(
            None, input, name=config.get("run_name") or self.get_name(), run_id=config.pop("run_id", None)
        )

    async def _astart(self, input: Any, config: RunnableConfig) -> Any:
        return await get_async_callback_manager_for_config(config).on_chain_start(
            None, input, name=config.get("run_name") or self.get_name(), run_id=config.pop("run_id", None)
        )

    def _child(
        self, config: RunnableConfig, run_manager: Any, cand: Alternative, prepared: _Prepared, n: int
    ) -> RunnableConfig:
        child = patch_config(
            config,
            callbacks=run_manager.get_child(tag=f"haps:{cand.backend}"),
            configurable=prepared.configurable or None,
        )
        child["metadata"] = _child_metadata(config, cand, prepared, n)
        return child

    def _call(
        self,
        decision: RoutingDecision,
        messages: list[BaseMessage],
        config: RunnableConfig,
        run_manager: Any,
        max_cost: float | None,
        kwargs: dict[str, Any],
    ) -> BaseMessage:
        def call(cand: Alternative, n: int) -> tuple[_Prepared, Any]:
            prepared = self._dispatcher.prepare(cand, messages)
            child = self._child(config, run_manager, cand, prepared, n)
            return prepared, prepared.runnable.invoke(
                prepared.messages, child, **_merge_kwargs(kwargs, prepared.kwargs)
            )

        (prepared, output), attempts = call_with_fallback(decision, call, **self._fallback_kwargs())
        cand = _served(decision, attempts)
        meta = self._dispatcher.metadata(decision, prepared, cand, attempts, max_cost)
        return _with_haps(_as_message(output), meta)

    async def _acall(
        self,
        decision: RoutingDecision,
        messages: list[BaseMessage],
        config: RunnableConfig,
        run_manager: Any,
        max_cost: float | None,
        kwargs: dict[str, Any],
    ) -> BaseMessage:
        async def call(cand: Alternative, n: int) -> tuple[_Prepared, Any]:
            prepared = self._dispatcher.prepare(cand, messages)
            child = self._child(config, run_manager, cand, prepared, n)
            kw = _merge_kwargs(kwargs, prepared.kwargs)
            try:
                output = await prepared.runnable.ainvoke(prepared.messages, child, **kw)
            except NotImplementedError:
                # e.g. ChatHuggingFace over a local pipeline has no async path: run it in a thread
                output = await run_in_executor(
                    child, prepared.runnable.invoke, prepared.messages, child, **kw
                )
            return prepared, output

        (prepared, output), attempts = await acall_with_fallback(decision, call, **self._fallback_kwargs())
        cand = _served(decision, attempts)
        meta = self._dispatcher.metadata(decision, prepared, cand, attempts, max_cost)
        return _with_haps(_as_message(output), meta)

    # -- Runnable API ----------------------------------------------------------------------
    def invoke(
        self, input: LanguageModelInput, config: RunnableConfig | None = None, **kwargs: Any
    ) -> BaseMessage:
        """Routes ``input`` and returns the chosen backend's message (see the class docstring)."""
        config = ensure_config(config)
        run_manager = self._start(input, config)
        try:
            messages = to_messages(input)
            cw, mc = self._costs(config)
            (decision,) = self._dispatcher.route([extract_query_text(messages)], cw, mc)
            output = self._call(decision, messages, config, run_manager, mc, kwargs)
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
            messages = to_messages(input)
            cw, mc = self._costs(config)
            text = extract_query_text(messages)
            (decision,) = await run_in_executor(config, self._dispatcher.route, [text], cw, mc)
            output = await self._acall(decision, messages, config, run_manager, mc, kwargs)
        except BaseException as e:
            await run_manager.on_chain_error(e)
            raise
        await run_manager.on_chain_end(output)
        return output

    def _route_batch(
        self, inputs: list[Any], configs: list[RunnableConfig], results: list[Any]
    ) -> tuple[list[Any], list[float | None], list[tuple[list[str], list[int], float | None, float | None]]]:
        """Per input: messages and budget; inputs grouped by (cost weight, budget) for routing."""
        messages: list[Any] = [None] * len(inputs)
        budgets: list[float | None] = [None] * len(inputs)
        groups: dict[tuple[float | None, float | None], tuple[list[str], list[int]]] = defaultdict(
            lambda: ([], [])
        )
        for i, (input_, config) in enumerate(zip(inputs, configs)):
            try:
                messages[i] = to_messages(input_)
                text = extract_query_text(messages[i])
                cw, mc = self._costs(config)
            except Exception as e:
                results[i] = e
                continue
            budgets[i] = mc
            texts, idx = groups[(cw, mc)]
            texts.append(text)
            idx.append(i)
        return messages, budgets, [(t, i, cw, mc) for (cw, mc), (t, i) in groups.items()]

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
        decisions: list[RoutingDecision | None] = [None] * len(inputs)
        messages, budgets, groups = self._route_batch(inputs, configs, results)
        for texts, idx, cw, mc in groups:
            try:
                for i, d in zip(idx, self._dispatcher.route(texts, cw, mc)):
                    decisions[i] = d
            except Exception as e:
                for i in idx:
                    results[i] = e

        def run(i: int) -> None:
            decision = decisions[i]
            if decision is None:
                return
            try:
                results[i] = self._call(
                    decision, messages[i], configs[i], run_managers[i], budgets[i], kwargs
                )
            except Exception as e:
                results[i] = e

        with get_executor_for_config(configs[0]) as executor:
            list(executor.map(run, range(len(inputs))))
        return _finish_batch(results, run_managers, return_exceptions)

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
        decisions: list[RoutingDecision | None] = [None] * len(inputs)
        messages, budgets, groups = self._route_batch(inputs, configs, results)
        for texts, idx, cw, mc in groups:
            try:
                routed = await run_in_executor(configs[0], self._dispatcher.route, texts, cw, mc)
                for i, d in zip(idx, routed):
                    decisions[i] = d
            except Exception as e:
                for i in idx:
                    results[i] = e

        async def run(i: int) -> None:
            decision = decisions[i]
            if decision is None:
                return
            try:
                results[i] = await self._acall(
                    decision, messages[i], configs[i], run_managers[i], budgets[i], kwargs
                )
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
            messages = to_messages(input)
            cw, mc = self._costs(config)
            (decision,) = self._dispatcher.route([extract_query_text(messages)], cw, mc)

            def call(cand: Alternative, n: int) -> tuple[_Prepared, Any, Any]:
                prepared = self._dispatcher.prepare(cand, messages)
                child = self._child(config, run_manager, cand, prepared, n)
                it = iter(
                    prepared.runnable.stream(
                        prepared.messages, child, **_merge_kwargs(kwargs, prepared.kwargs)
                    )
                )
                return prepared, next(it, None), it

            (prepared, first, iterator), attempts = call_with_fallback(
                decision, call, **self._fallback_kwargs()
            )
            cand = _served(decision, attempts)
            if first is not None:
                first = _with_haps(first, self._dispatcher.metadata(decision, prepared, cand, attempts, mc))
                final = first
                yield first
                while True:
                    try:
                        chunk = next(iterator)
                    except StopIteration:
                        break
                    except Exception as exc:
                        raise _interrupted(cand, final, attempts, exc) from exc
                    final = _add(final, chunk)
                    yield chunk
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
            messages = to_messages(input)
            cw, mc = self._costs(config)
            text = extract_query_text(messages)
            (decision,) = await run_in_executor(config, self._dispatcher.route, [text], cw, mc)

            async def call(cand: Alternative, n: int) -> tuple[_Prepared, Any, Any]:
                prepared = self._dispatcher.prepare(cand, messages)
                child = self._child(config, run_manager, cand, prepared, n)
                it = prepared.runnable.astream(
                    prepared.messages, child, **_merge_kwargs(kwargs, prepared.kwargs)
                )
                try:
                    first = await it.__anext__()
                except StopAsyncIteration:
                    first = None
                return prepared, first, it

            (prepared, first, iterator), attempts = await acall_with_fallback(
                decision, call, **self._fallback_kwargs()
            )
            cand = _served(decision, attempts)
            if first is not None:
                first = _with_haps(first, self._dispatcher.metadata(decision, prepared, cand, attempts, mc))
                final = first
                yield first
                while True:
                    try:
                        chunk = await iterator.__anext__()
                    except StopAsyncIteration:
                        break
                    except Exception as exc:
                        raise _interrupted(cand, final, attempts, exc) from exc
                    final = _add(final, chunk)
                    yield chunk
        except BaseException as e:
            if iterator is not None:
                await _aclose(iterator)
            await run_manager.on_chain_error(e)
            raise
        await run_manager.on_chain_end(final)


def _served(decision: RoutingDecision, attempts: Sequence[Attempt]) -> Alternative:
    """The candidate that succeeded: the last attempt's backend (one candidate per backend)."""
    backend = attempts[-1].backend
    return next(c for c in fallback_order(decision) if c.backend == backend)


def _raise_or_return(results: list[Any], return_exceptions: bool) -> list[Any]:
    if not return_exceptions:
        for r in results:
            if isinstance(r, Exception):
                raise r
    return results


def _finish_batch(results: list[Any], run_managers: list[Any], return_exceptions: bool) -> list[Any]:
    for result, run_manager in zip(results, run_managers):
        if isinstance(result, Exception):
            run_manager.on_chain_error(result)
        else:
            run_manager.on_chain_end(result)
    return _raise_or_return(results, return_exceptions)


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
        prompt_styles, max_backends, forwards_kwargs, retry_wait: as in `HAPSRunnable`.
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
    cost_weight: float | None = None
    """Lambda: quality points per USD (>= 0); None uses the router's default."""
    max_cost_per_query: float | None = None
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
    max_backends: int | None = None
    """How many distinct backends to try per call (None: every backend in the decision)."""
    forwards_kwargs: list[str] = Field(default_factory=list)
    """Backends whose invoke forwards unknown keyword arguments into the model request."""
    retry_wait: Any = None
    """tenacity wait strategy between retries (default: jittered exponential, 0.05 s to 2 s)."""

    model_config = ConfigDict(populate_by_name=True, arbitrary_types_allowed=True)

    _dispatcher: _Dispatcher = PrivateAttr()

    @field_validator("cost_weight")
    @classmethod
    def _check_cost_weight(cls, value: Any) -> float | None:
        return _check_optional_cost(value, "cost_weight")

    @field_validator("max_cost_per_query")
    @classmethod
    def _check_max_cost(cls, value: Any) -> float | None:
        return _check_optional_cost(value, "max_cost_per_query")

    @field_validator("max_backends")
    @classmethod
    def _check_max_backends(cls, value: int | None) -> int | None:
        return _check_max_backends(value)

    @field_validator("max_retries")
    @classmethod
    def _check_max_retries(cls, value: int) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            msg = f"`max_retries` must be an int >= 0, got {value!r}"
            raise ValueError(msg)
        return value

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
    def _plan(
        self, messages: list[BaseMessage], kwargs: dict[str, Any]
    ) -> tuple[RoutingDecision, float | None, dict[str, Any]]:
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
        return decision, mc, kwargs

    def _backend_call_args(
        self, prepared: _Prepared, cand: Alternative, n: int, stop: list[str] | None, kwargs: dict[str, Any]
    ) -> tuple[RunnableConfig, dict[str, Any]]:
        config: RunnableConfig = {"callbacks": [], "metadata": _child_metadata({}, cand, prepared, n)}
        if prepared.configurable:
            config["configurable"] = dict(prepared.configurable)
        kw = _merge_kwargs(kwargs, prepared.kwargs)
        if (stop := stop or self.stop) is not None:
            kw["stop"] = stop
        return config, kw

    def _fallback_kwargs(self) -> dict[str, Any]:
        return {
            "max_attempts_per_backend": self.max_retries + 1,
            "max_backends": self.max_backends,
            "wait": self.retry_wait,
        }

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        decision, mc, kwargs = self._plan(messages, kwargs)

        def call(cand: Alternative, n: int) -> tuple[_Prepared, Any]:
            prepared = self._dispatcher.prepare(cand, messages)
            config, kw = self._backend_call_args(prepared, cand, n, stop, kwargs)
            return prepared, prepared.runnable.invoke(prepared.messages, config, **kw)

        (prepared, output), attempts = call_with_fallback(decision, call, **self._fallback_kwargs())
        meta = self._dispatcher.metadata(decision, prepared, _served(decision, attempts), attempts, mc)
        return ChatResult(
            generations=[
                ChatGeneration(
                    message=_with_haps(
                        _as_message(output), meta, clear_id=True, model_name=attempts[-1].backend
                    )
                )
            ]
        )

    async def _agenerate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        decision, mc, kwargs = await run_in_executor(
            None, self._plan, messages, kwargs
        )  # router off the loop

        async def call(cand: Alternative, n: int) -> tuple[_Prepared, Any]:
            prepared = self._dispatcher.prepare(cand, messages)
            config, kw = self._backend_call_args(prepared, cand, n, stop, kwargs)
            try:
                output = await prepared.runnable.ainvoke(prepared.messages, config, **kw)
            except NotImplementedError:
                output = await run_in_executor(
                    None, prepared.runnable.invoke, prepared.messages, config, **kw
                )
            return prepared, output

        (prepared, output), attempts = await acall_with_fallback(decision, call, **self._fallback_kwargs())
        meta = self._dispatcher.metadata(decision, prepared, _served(decision, attempts), attempts, mc)
        return ChatResult(
            generations=[
                ChatGeneration(
                    message=_with_haps(
                        _as_message(output), meta, clear_id=True, model_name=attempts[-1].backend
                    )
                )
            ]
        )

    def _stream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> Iterator[ChatGenerationChunk]:
        decision, mc, kwargs = self._plan(messages, kwargs)

        def call(cand: Alternative, n: int) -> tuple[_Prepared, Any, Any]:
            prepared = self._dispatcher.prepare(cand, messages)
            config, kw = self._backend_call_args(prepared, cand, n, stop, kwargs)
            it = iter(prepared.runnable.stream(prepared.messages, config, **kw))
            return prepared, next(it, None), it

        (prepared, first, iterator), attempts = call_with_fallback(decision, call, **self._fallback_kwargs())
        cand = _served(decision, attempts)
        meta = self._dispatcher.metadata(decision, prepared, cand, attempts, mc)
        try:
            yield from _relay(first, iterator, meta, cand, attempts)
        finally:
            _close(iterator)

    async def _astream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> AsyncIterator[ChatGenerationChunk]:
        decision, mc, kwargs = await run_in_executor(
            None, self._plan, messages, kwargs
        )  # router off the loop

        async def call(cand: Alternative, n: int) -> tuple[_Prepared, Any, Any]:
            prepared = self._dispatcher.prepare(cand, messages)
            config, kw = self._backend_call_args(prepared, cand, n, stop, kwargs)
            it = prepared.runnable.astream(prepared.messages, config, **kw)
            try:
                first = await it.__anext__()
            except StopAsyncIteration:
                first = None
            return prepared, first, it

        (prepared, first, iterator), attempts = await acall_with_fallback(
            decision, call, **self._fallback_kwargs()
        )
        cand = _served(decision, attempts)
        meta = self._dispatcher.metadata(decision, prepared, cand, attempts, mc)
        try:
            if first is None:
                yield _last_chunk(AIMessageChunk(content="", response_metadata={"haps": meta}))
                return
            chunk = _with_haps(first, meta, clear_id=True)
            partial = chunk
            yield ChatGenerationChunk(message=chunk)
            while True:
                try:
                    chunk = (await iterator.__anext__()).model_copy(update={"id": None})
                except StopAsyncIteration:
                    break
                except Exception as exc:
                    raise _interrupted(cand, partial, attempts, exc) from exc
                partial = _add(partial, chunk)
                yield ChatGenerationChunk(message=chunk)
            for closing in _closing_chunk(chunk, partial, cand.backend):
                yield closing
        finally:
            await _aclose(iterator)


def _relay(
    first: Any, iterator: Iterator[Any], meta: dict[str, Any], cand: Alternative, attempts: list[Attempt]
) -> Iterator[ChatGenerationChunk]:
    """Passes a backend's chunks on as they come (ids cleared, decision on the first one).

    If the backend did not mark its last chunk, an empty ``chunk_position="last"`` chunk ends the
    stream, as `BaseChatModel.stream` does.
    """
    if first is None:
        yield _last_chunk(AIMessageChunk(content="", response_metadata={"haps": meta}))
        return
    chunk = _with_haps(first, meta, clear_id=True)
    partial = chunk
    yield ChatGenerationChunk(message=chunk)
    while True:
        try:
            chunk = next(iterator).model_copy(update={"id": None})
        except StopIteration:
            break
        except Exception as exc:
            raise _interrupted(cand, partial, attempts, exc) from exc
        partial = _add(partial, chunk)
        yield ChatGenerationChunk(message=chunk)
    yield from _closing_chunk(chunk, partial, cand.backend)


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
