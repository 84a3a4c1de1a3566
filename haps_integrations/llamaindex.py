"""LlamaIndex integration: `HAPSLLM` (an LLM) and `HAPSSelector` (a selector).

* `HAPSLLM` is a LlamaIndex ``LLM`` for ``Settings.llm`` or any query engine. Every call is routed:
  the router picks a backend LLM *and* its generation parameters (temperature, prompt style,
  ...), HAPS applies them the way that backend accepts them, calls it natively (chat stays chat),
  retries transient errors and falls back to the next-best backend (`haps_core.dispatch`, the
  same loop as the LangChain integration). The backend's own response is returned, with the
  decision in ``additional_kwargs["haps"]``.
* `HAPSSelector` is a ``BaseSelector`` for ``RouterQueryEngine``: the choices are named after
  backends of the router's catalog, and it selects the one whose best action has the highest
  predicted utility ``quality - cost_weight * cost``, returning that action's parameters with the
  selection (`HAPSSelectorResult`).

How a parameter reaches a backend LLM (recorded per call in ``additional_kwargs["haps"]["applied"]``
and for the whole pool by `HAPSLLM.check_llms`):

===================  ==========================================================================
``generate_kwargs``  ``HuggingFaceLLM`` (local transformers): per-call keyword arguments are
                     IGNORED there, so HAPS calls a per-call copy whose ``generate_kwargs`` carry
                     the setting. Temperature 0 becomes greedy decoding (``do_sample=False``),
                     t > 0 becomes ``do_sample=True, temperature=t``.
``model_copy``       an LLM with a pydantic field of that name (``OpenAI.temperature``...): a
                     per-call copy, so the shared instance is never mutated.
``system_message``   the prompt style in ``chat``/``stream_chat``: its text is prepended as a
                     system message (or appended to the conversation's own system message).
``prompt_prefix``    the prompt style in ``complete``/``stream_complete``: its text is put before
                     the prompt, as LlamaIndex does with ``system_prompt``.
``default``          the default prompt style: nothing is added.
``not_applied``      no known route: the parameter does NOT reach the model (logged once).
===================  ==========================================================================

Where the decision surfaces: on every response of `HAPSLLM` (``additional_kwargs["haps"]``). A
query engine keeps only the text of the LLM's answer, so there it is on the LLM events: the
instrumentation ``LLMChatEndEvent.response`` and the callback manager's ``CBEventType.LLM`` end
payload (``EventPayload.RESPONSE``). `RouterQueryEngine` puts the selector's result, a
`HAPSSelectorResult`, in ``response.metadata["selector_result"]``.
"""

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

try:
    from llama_index.core.base.base_selector import BaseSelector, MultiSelection, SingleSelection
    from llama_index.core.base.llms.types import (
        ChatMessage,
        ChatResponse,
        ChatResponseAsyncGen,
        ChatResponseGen,
        CompletionResponse,
        CompletionResponseAsyncGen,
        CompletionResponseGen,
        LLMMetadata,
        MessageRole,
        TextBlock,
    )
    from llama_index.core.llms.callbacks import llm_chat_callback, llm_completion_callback
    from llama_index.core.llms.llm import LLM
    from llama_index.core.prompts.mixin import PromptDictType
    from llama_index.core.schema import QueryBundle
    from llama_index.core.tools.types import ToolMetadata
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    _msg = (
        "haps_integrations.llamaindex needs LlamaIndex (llama-index-core), which is not installed: "
        'pip install "haps[llamaindex]"'
    )
    raise ImportError(_msg) from exc

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, field_validator, model_validator

from haps_core.decision import Alternative, RoutingDecision, check_cost_weight, choose
from haps_core.dispatch import (
    Attempt,
    acall_with_fallback,
    call_with_fallback,
    check_call_timeout,
    decision_record,
    interrupted_stream,
    parameter_report,
    resolve_prompt_styles,
    route_checked,
    routing_lock,
    routing_text,
    served_candidate,
    styles_without_text,
    system_message_for,
)
from haps_core.errors import RoutingError

logger = logging.getLogger(__name__)

__all__ = [
    "COST_WEIGHT_KEY",
    "HAPSLLM",
    "MAX_COST_KEY",
    "MECHANISMS",
    "HAPSSelector",
    "HAPSSelectorResult",
    "extract_query_text",
]

COST_WEIGHT_KEY = "haps_cost_weight"
"""Per-call keyword argument that sets the cost weight (lambda): ``llm.chat(msgs, haps_cost_weight=50)``."""
MAX_COST_KEY = "haps_max_cost_per_query"
"""Per-call keyword argument that sets the USD budget per query the router calibrates from."""

PROMPT_STYLE = "prompt_style"

MECHANISMS = ("generate_kwargs", "model_copy", "system_message", "prompt_prefix", "default", "not_applied")
"""Every mechanism name that ``applied`` and `HAPSLLM.check_llms` may report."""

_DETAILS = {
    "generate_kwargs": "set in generate_kwargs of a per-call copy (HuggingFaceLLM ignores call kwargs)",
    "model_copy": "set on a per-call copy of the LLM (its pydantic field of that name)",
    "system_message": "sent as a system message (chat); put before the prompt in complete",
    "prompt_prefix": "put before the prompt (complete)",
    "default": "the default style: nothing is added",
    "not_applied": "no known way to pass it to this LLM: it does NOT reach the model",
}

# transformers ``generate`` arguments that HuggingFaceLLM passes through ``generate_kwargs``.
_GENERATE_PARAMS = ("temperature", "top_p", "top_k", "repetition_penalty")
# Sampling-only arguments dropped for greedy decoding: transformers warns about each one.
_SAMPLING_ONLY = ("temperature", "top_p", "top_k")
# Field names an LLM may use for a catalog parameter, in order of preference.
_FIELD_NAMES = {
    "max_tokens": ("max_tokens", "max_new_tokens"),
    "max_new_tokens": ("max_new_tokens", "max_tokens"),
}

_WARNED: set[tuple[str, str, tuple[str, ...]]] = set()

T = TypeVar("T")
R = TypeVar("R", ChatResponse, CompletionResponse)


# -- messages ---------------------------------------------------------------------------------
def message_text(message: ChatMessage) -> str:
    """The text parts of a message, joined (images, audio, tool calls... are skipped)."""
    return "\n".join(block.text for block in message.blocks if isinstance(block, TextBlock))


def extract_query_text(messages: Sequence[ChatMessage]) -> str:
    """The text the router reads: the last user message's text parts.

    The router was trained on user queries, so system prompts and earlier turns are not part of
    what it scores. No user message, or one without text, is an error rather than a guess (the
    router cannot score an empty query).
    """
    for message in reversed(messages):
        if message.role == MessageRole.USER:
            text = message_text(message)
            if not text.strip():
                msg = (
                    "HAPS routes on the last user message's text, which is empty or whitespace-only "
                    f"(no text parts with content: {len(text)} characters in its text blocks); "
                    "nothing to route on"
                )
                raise ValueError(msg)
            return text
    roles = [str(m.role.value) for m in messages]
    msg = f"HAPS routes on the last user message, but the input has none (roles: {roles})"
    raise ValueError(msg)


def apply_system_message(messages: Sequence[ChatMessage], text: str | None) -> list[ChatMessage]:
    """Adds a prompt style's text: prepended as a system message, or appended to the first one.

    Appending keeps the caller's own system instructions first and in charge; a second system
    message is rejected or reordered by several chat templates. The input is not modified.
    """
    out = list(messages)
    if not text:
        return out
    for i, message in enumerate(out):
        if message.role == MessageRole.SYSTEM:
            blocks = list(message.blocks)
            if len(blocks) == 1 and isinstance(blocks[0], TextBlock):
                old = blocks[0].text
                blocks = [TextBlock(text=f"{old}\n\n{text}" if old else text)]
            else:
                blocks.append(TextBlock(text=text))
            out[i] = message.model_copy(update={"blocks": blocks})
            return out
    return [ChatMessage(role=MessageRole.SYSTEM, content=text), *out]


def _prefix_prompt(prompt: str, text: str | None) -> str:
    return f"{text}\n\n{prompt}" if text else prompt


# -- parameter application --------------------------------------------------------------------
def _is_transformers_llm(llm: Any) -> bool:
    """A ``HuggingFaceLLM`` (checked by class name: the package is optional)."""
    names = {cls.__name__ for cls in type(llm).__mro__}
    return "HuggingFaceLLM" in names and isinstance(getattr(llm, "generate_kwargs", None), dict)


def _field_for(llm: Any, param: str) -> str | None:
    """The name of ``llm``'s pydantic field that carries ``param``, if any."""
    if not isinstance(llm, BaseModel):
        return None
    fields = type(llm).model_fields
    for name in _FIELD_NAMES.get(param, (param,)):
        if name in fields:
            return name
        for field_name, info in fields.items():
            if info.alias == name:
                return field_name
    return None


def apply_parameters(llm: Any, params: Mapping[str, Any]) -> tuple[Any, dict[str, str]]:
    """``llm`` with ``params`` applied (a copy when anything changes), and the mechanism per param.

    Never mutates ``llm``: the pool's LLMs are shared by concurrent calls.
    """
    if not params:
        return llm, {}
    transformers = _is_transformers_llm(llm)
    generate = dict(llm.generate_kwargs) if transformers else {}
    update: dict[str, Any] = {}
    applied: dict[str, str] = {}
    for param, value in params.items():
        if transformers and param == "temperature":
            t = float(value)
            if t > 0:
                generate.update(do_sample=True, temperature=t)
            else:  # transformers rejects do_sample=True with temperature 0: 0 means greedy
                for key in _SAMPLING_ONLY:
                    generate.pop(key, None)
                generate["do_sample"] = False
            applied[param] = "generate_kwargs"
        elif transformers and param in _GENERATE_PARAMS:
            generate[param] = value
            applied[param] = "generate_kwargs"
        elif (name := _field_for(llm, param)) is not None:
            update[name] = value
            applied[param] = "model_copy"
        else:
            applied[param] = "not_applied"
    if transformers and generate != llm.generate_kwargs:
        update["generate_kwargs"] = generate
    if update:
        llm = llm.model_copy(update=update)
    return llm, applied


@dataclass(frozen=True)
class _Prepared:
    """A backend LLM ready for one candidate: parameters applied, the style's text resolved."""

    llm: Any
    style_text: str | None
    applied: dict[str, str]


@dataclass(frozen=True)
class _Plan:
    """One call's routing: the decision, the budget it used, the kwargs for the backend."""

    decision: RoutingDecision
    max_cost: float | None
    kwargs: dict[str, Any]


# -- HAPSLLM ----------------------------------------------------------------------------------
class HAPSLLM(LLM):
    """HAPS routing as a LlamaIndex LLM: each call goes to the best backend and parameters.

    Args:
        router: a HAPS router: ``.space`` (its `RoutingSpace`), ``.route(texts, cost_weight=...,
            max_cost_per_query=...)`` and optionally ``.default_cost_weight``.
        llms: backend name -> LlamaIndex LLM. Must match the router's catalog exactly (a catalog
            backend without an LLM, or an LLM the catalog does not know, is a ValueError).
        cost_weight: lambda, quality points per USD (>= 0). None: the router's
            ``default_cost_weight`` (0.0 if it has none). Per call: ``haps_cost_weight=x``.
        max_cost_per_query: a USD budget per query that the router calibrates a cost weight
            from (instead of ``cost_weight``). Per call: ``haps_max_cost_per_query=x``.
        prompt_styles: style name -> system-message text, overriding or extending the router's.
        max_attempts: calls of one backend before falling back (transient errors only; a
            permanent error such as a 401 falls back at once).
        max_backends: how many distinct backends to try per call (None: all in the decision).
        routing_text: ``messages -> str``, the text the router scores. Default: the last user
            message's text (`extract_query_text`). In a RAG query engine that message is the
            filled QA template (retrieved context + query); pass a function that pulls out the
            query if the router should see the query alone. ``complete`` passes its prompt as one
            user message.
        retry_wait: tenacity wait strategy between retries (default: jittered exponential,
            0.05 s to 2 s). Tests pass ``tenacity.wait_none()``.
        call_timeout: seconds one backend call may take (for a stream: until its first chunk);
            None (default): no limit. A call that takes longer fails with
            `haps_core.errors.CallTimeoutError`, a transient error (retried, then fallen back
            from).
        model_name: the name reported in ``metadata``.

    Example:
        .. code-block:: python

            from llama_index.core import Settings
            from haps_integrations.llamaindex import HAPSLLM

            Settings.llm = HAPSLLM(router=router, llms={"small": small_llm, "large": large_llm})
            response = index.as_query_engine().query("...")

    Each response (``chat``, ``complete``, every streamed chunk) carries
    ``additional_kwargs["haps"]``: the decision (backend, parameters, predicted quality and cost,
    cost weight, alternatives), ``served_by`` (after any fallback), ``applied`` (the mechanism
    per parameter, see the module docstring) and ``attempts``.

    Other keyword arguments of a call are passed on to the backend's method unchanged.
    """

    router: Any = Field(exclude=True, description="The HAPS router (`.space`, `.route`).")
    llms: dict[str, LLM] = Field(exclude=True, description="Backend name -> LlamaIndex LLM.")
    cost_weight: float | None = Field(default=None, description="Lambda: quality points per USD.")
    max_cost_per_query: float | None = Field(default=None, description="USD budget per query.")
    prompt_styles: dict[str, str] | None = Field(
        default=None, description="Style name -> system-message text (overrides the router's)."
    )
    max_attempts: int = Field(default=3, description="Calls of one backend before falling back.")
    max_backends: int | None = Field(default=None, description="Distinct backends to try per call.")
    routing_text: Callable[[Sequence[ChatMessage]], str] | None = Field(
        default=None, exclude=True, description="messages -> the text the router scores."
    )
    retry_wait: Any = Field(default=None, exclude=True, description="tenacity wait strategy.")
    call_timeout: float | None = Field(
        default=None, description="Seconds one backend call may take (None: no limit)."
    )
    model_name: str = Field(default="haps", description="The name reported in `metadata`.")

    _styles: dict[str, str] = PrivateAttr(default_factory=dict)

    model_config = ConfigDict(arbitrary_types_allowed=True)

    def __init__(self, router: Any, llms: Mapping[str, LLM], **kwargs: Any) -> None:
        """See the class docstring; ``router`` and ``llms`` may be given by position."""
        if not isinstance(llms, Mapping):
            msg = f"`llms` must be a dict of backend name -> LlamaIndex LLM, got {type(llms).__name__}"
            raise TypeError(msg)
        super().__init__(router=router, llms=dict(llms), **kwargs)

    @field_validator("cost_weight", "max_cost_per_query")
    @classmethod
    def _check_cost(cls, value: Any, info: Any) -> float | None:
        return None if value is None else check_cost_weight(value, info.field_name)

    @field_validator("max_attempts")
    @classmethod
    def _check_max_attempts(cls, value: int) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            msg = f"`max_attempts` must be an int >= 1, got {value!r}"
            raise ValueError(msg)
        return value

    @field_validator("call_timeout")
    @classmethod
    def _check_call_timeout(cls, value: float | None) -> float | None:
        return check_call_timeout(value)

    @field_validator("max_backends")
    @classmethod
    def _check_max_backends(cls, value: int | None) -> int | None:
        if value is not None and (isinstance(value, bool) or value < 1):
            msg = f"`max_backends` must be None (every backend) or an int >= 1, got {value!r}"
            raise ValueError(msg)
        return value

    @model_validator(mode="after")
    def _build(self) -> "HAPSLLM":
        """Checks the pool against the router's catalog once, so calls cannot hit a gap."""
        for attr in ("space", "route"):
            if not hasattr(self.router, attr):
                msg = (
                    f"`router` must have `.space` and `.route(texts, cost_weight=..., "
                    f"max_cost_per_query=...)` (a HAPSRouter); {type(self.router).__name__} has no "
                    f"`.{attr}`"
                )
                raise TypeError(msg)
        if self.cost_weight is not None and self.max_cost_per_query is not None:
            msg = (
                f"give either `cost_weight` ({self.cost_weight!r}) or `max_cost_per_query` "
                f"({self.max_cost_per_query!r}), not both: the router turns a budget into a cost weight"
            )
            raise ValueError(msg)
        if not self.llms:
            msg = "`llms` is empty: give one LlamaIndex LLM per backend of the router's catalog"
            raise ValueError(msg)
        space = self.router.space
        catalog, given = set(space.backend_names), set(self.llms)
        if catalog != given:
            msg = (
                "`llms` must match the router's catalog exactly: "
                f"catalog backends without an LLM: {sorted(catalog - given)}; "
                f"LLMs not in the catalog: {sorted(given - catalog)} "
                f"(catalog: {sorted(catalog)}; given: {sorted(given)})"
            )
            raise ValueError(msg)
        self._styles = resolve_prompt_styles(space, self.prompt_styles)
        missing = styles_without_text(space, self._styles)
        if missing:
            msg = (
                f"the router can choose prompt styles {missing}, which have no system-message text; "
                "pass `prompt_styles={name: text}` for them"
            )
            raise ValueError(msg)
        for backend, routes in self.check_llms().items():
            lost = tuple(sorted(p for p, r in routes.items() if not r["reaches_model"]))
            key = (backend, type(self.llms[backend]).__name__, lost)
            if lost and key not in _WARNED:  # once per process: copies (with_cost_weight) rebuild
                _WARNED.add(key)
                logger.warning(
                    "HAPS backend %r (%s): parameters %s have no way to reach the model; the "
                    "router's choice of them will be ignored (see check_llms())",
                    *key,
                )
        return self

    @classmethod
    def class_name(cls) -> str:
        return "HAPSLLM"

    @property
    def metadata(self) -> LLMMetadata:
        """What a caller may rely on whichever backend answers.

        The smallest context window and the smallest output budget of the pool (a prompt sized
        for the largest model would overflow a smaller one); values <= 0 ("unknown", as
        ``MockLLM`` reports) are ignored. Always a chat model: HAPS calls chat natively.
        """
        metas = [llm.metadata for llm in self.llms.values()]
        return LLMMetadata(
            context_window=_smallest(m.context_window for m in metas),
            num_output=_smallest(m.num_output for m in metas),
            is_chat_model=True,
            is_function_calling_model=False,
            model_name=self.model_name,
        )

    # -- public helpers --------------------------------------------------------------------
    def with_cost_weight(self, cost_weight: float) -> "HAPSLLM":
        """A copy routing at ``cost_weight`` (and no budget); shares the router and the LLMs."""
        return self.model_copy(
            update={"cost_weight": check_cost_weight(cost_weight), "max_cost_per_query": None}
        )

    def route(
        self,
        query: str | Sequence[ChatMessage],
        cost_weight: float | None = None,
        max_cost_per_query: float | None = None,
    ) -> RoutingDecision:
        """The decision for ``query`` (a prompt or messages), without calling any LLM."""
        kwargs: dict[str, Any] = {}
        if cost_weight is not None:
            kwargs[COST_WEIGHT_KEY] = cost_weight
        if max_cost_per_query is not None:
            kwargs[MAX_COST_KEY] = max_cost_per_query
        return self._plan(self._text(_as_messages(query)), kwargs).decision

    def check_llms(self) -> dict[str, dict[str, dict[str, Any]]]:
        """For each backend and each parameter of its catalog grid, how HAPS sets it.

        Returns:
            ``{backend: {parameter: {"mechanism": ..., "reaches_model": bool, "detail": ...}}}``.
            ``reaches_model`` is False for ``not_applied`` (e.g. an LLM with neither a
            ``temperature`` field nor ``generate_kwargs``): the router's choice is then ignored.
        """
        return parameter_report(
            self.router.space, lambda name, sample: apply_parameters(self.llms[name], sample)[1], _DETAILS
        )

    # -- internals -------------------------------------------------------------------------
    def _text(self, messages: Sequence[ChatMessage]) -> str:
        text = (self.routing_text or extract_query_text)(messages)
        if not isinstance(text, str) or not text.strip():
            msg = f"`routing_text` must return a non-empty string, got {text!r:.200}"
            raise ValueError(msg)
        return text

    def _costs(self, kwargs: dict[str, Any]) -> tuple[float | None, float | None]:
        """The call's (cost weight, budget), popping HAPS's per-call keys from ``kwargs``.

        A per-call setting replaces the instance's entirely (a per-call budget overrides an
        instance cost weight and vice versa); with nothing set, the router's default is used.
        """
        cw, mc = kwargs.pop(COST_WEIGHT_KEY, None), kwargs.pop(MAX_COST_KEY, None)
        if cw is not None and mc is not None:
            msg = f"give either `{COST_WEIGHT_KEY}` or `{MAX_COST_KEY}`, not both (got {cw!r} and {mc!r})"
            raise ValueError(msg)
        if cw is not None:
            return check_cost_weight(cw, COST_WEIGHT_KEY), None
        if mc is not None:
            return None, check_cost_weight(mc, MAX_COST_KEY)
        if self.cost_weight is not None or self.max_cost_per_query is not None:
            return self.cost_weight, self.max_cost_per_query
        return float(getattr(self.router, "default_cost_weight", 0.0) or 0.0), None

    def _plan(self, text: str, kwargs: Mapping[str, Any]) -> _Plan:
        """Routes ``text`` (one router forward pass)."""
        rest = dict(kwargs)
        cw, mc = self._costs(rest)
        (decision,) = route_checked(self.router, [text], cw, mc, self.llms)
        logger.debug("HAPS chose %s %s for %.80r", decision.backend, decision.parameters, text)
        return _Plan(decision, mc, rest)

    async def _aplan(self, text: str, kwargs: Mapping[str, Any]) -> _Plan:
        """`_plan` in a worker thread: the router's forward pass must not block the event loop."""
        return await asyncio.to_thread(self._plan, text, kwargs)

    def _prepare(self, cand: Alternative, chat: bool) -> _Prepared:
        params = {k: v for k, v in cand.parameters.items() if k != PROMPT_STYLE}
        llm, applied = apply_parameters(self.llms[cand.backend], params)
        style = cand.parameters.get(PROMPT_STYLE)
        text = system_message_for(style, self._styles)
        if style is not None:
            applied[PROMPT_STYLE] = ("system_message" if chat else "prompt_prefix") if text else "default"
        return _Prepared(llm, text, applied)

    def _fallback_kwargs(self) -> dict[str, Any]:
        return {
            "max_attempts_per_backend": self.max_attempts,
            "max_backends": self.max_backends,
            "wait": self.retry_wait,
            "call_timeout": self.call_timeout,
        }

    def _record(self, plan: _Plan, prepared: _Prepared, attempts: list[Attempt]) -> dict[str, Any]:
        served = served_candidate(plan.decision, attempts)
        if served.action_index != plan.decision.action_index:
            logger.info(
                "HAPS fell back from %r to %r after %d attempt(s)",
                plan.decision.backend,
                served.backend,
                len(attempts),
            )
        return decision_record(plan.decision, served, prepared.applied, attempts, plan.max_cost)

    def _call(self, plan: _Plan, call: Callable[[Alternative, int], T]) -> tuple[T, list[Attempt]]:
        return call_with_fallback(plan.decision, call, **self._fallback_kwargs())

    async def _acall(
        self, plan: _Plan, call: Callable[[Alternative, int], Awaitable[T]]
    ) -> tuple[T, list[Attempt]]:
        return await acall_with_fallback(plan.decision, call, **self._fallback_kwargs())

    # -- chat ------------------------------------------------------------------------------
    @llm_chat_callback()
    def chat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> ChatResponse:
        """Routes on the messages, calls the chosen backend's ``chat`` with the style applied."""
        plan = self._plan(self._text(messages), kwargs)

        def call(cand: Alternative, n: int) -> tuple[_Prepared, ChatResponse]:
            prepared = self._prepare(cand, chat=True)
            msgs = apply_system_message(messages, prepared.style_text)
            return prepared, prepared.llm.chat(msgs, **plan.kwargs)

        (prepared, response), attempts = self._call(plan, call)
        return _with_haps(response, self._record(plan, prepared, attempts))

    @llm_chat_callback()
    async def achat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> ChatResponse:
        """Async `chat`: the router runs in a thread, the backend's ``achat`` is awaited."""
        plan = await self._aplan(self._text(messages), kwargs)

        async def call(cand: Alternative, n: int) -> tuple[_Prepared, ChatResponse]:
            prepared = self._prepare(cand, chat=True)
            msgs = apply_system_message(messages, prepared.style_text)
            return prepared, await _async_or_thread(
                prepared.llm.achat, prepared.llm.chat, msgs, **plan.kwargs
            )

        (prepared, response), attempts = await self._acall(plan, call)
        return _with_haps(response, self._record(plan, prepared, attempts))

    @llm_chat_callback()
    def stream_chat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> ChatResponseGen:
        """Streams the chosen backend's ``stream_chat``.

        Routing and the backend's first chunk happen in this call, so a backend that fails
        before its first token is retried / fallen back from like in `chat`. After the first
        token a failure raises `StreamInterruptedError` (``.partial_output``: the last response
        received, whose text is cumulative): falling back then would splice two answers.
        """
        plan = self._plan(self._text(messages), kwargs)

        def call(cand: Alternative, n: int) -> tuple[_Prepared, Any, Iterator[ChatResponse]]:
            prepared = self._prepare(cand, chat=True)
            msgs = apply_system_message(messages, prepared.style_text)
            iterator = iter(prepared.llm.stream_chat(msgs, **plan.kwargs))
            return prepared, next(iterator, None), iterator

        (prepared, first, iterator), attempts = self._call(plan, call)
        record = self._record(plan, prepared, attempts)
        return _relay(first, iterator, record, attempts, _empty_chat)

    @llm_chat_callback()
    async def astream_chat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> ChatResponseAsyncGen:
        """Async `stream_chat`, with the same fallback rules."""
        plan = await self._aplan(self._text(messages), kwargs)

        async def call(cand: Alternative, n: int) -> tuple[_Prepared, Any, AsyncIterator[ChatResponse]]:
            prepared = self._prepare(cand, chat=True)
            msgs = apply_system_message(messages, prepared.style_text)
            iterator = await _astream_or_thread(
                prepared.llm.astream_chat, prepared.llm.stream_chat, msgs, **plan.kwargs
            )
            return prepared, await _anext_or_none(iterator), iterator

        (prepared, first, iterator), attempts = await self._acall(plan, call)
        record = self._record(plan, prepared, attempts)
        return _arelay(first, iterator, record, attempts, _empty_chat)

    # -- complete --------------------------------------------------------------------------
    @llm_completion_callback()
    def complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> CompletionResponse:
        """Routes on the prompt, calls the chosen backend's ``complete`` (style as a prefix)."""
        plan = self._plan(self._text(_as_messages(prompt)), kwargs)

        def call(cand: Alternative, n: int) -> tuple[_Prepared, CompletionResponse]:
            prepared = self._prepare(cand, chat=False)
            text = _prefix_prompt(prompt, prepared.style_text)
            return prepared, prepared.llm.complete(text, formatted=formatted, **plan.kwargs)

        (prepared, response), attempts = self._call(plan, call)
        return _with_haps(response, self._record(plan, prepared, attempts))

    @llm_completion_callback()
    async def acomplete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> CompletionResponse:
        """Async `complete`."""
        plan = await self._aplan(self._text(_as_messages(prompt)), kwargs)

        async def call(cand: Alternative, n: int) -> tuple[_Prepared, CompletionResponse]:
            prepared = self._prepare(cand, chat=False)
            text = _prefix_prompt(prompt, prepared.style_text)
            return prepared, await _async_or_thread(
                prepared.llm.acomplete, prepared.llm.complete, text, formatted=formatted, **plan.kwargs
            )

        (prepared, response), attempts = await self._acall(plan, call)
        return _with_haps(response, self._record(plan, prepared, attempts))

    @llm_completion_callback()
    def stream_complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> CompletionResponseGen:
        """Streams the chosen backend's ``stream_complete`` (fallback rules of `stream_chat`)."""
        plan = self._plan(self._text(_as_messages(prompt)), kwargs)

        def call(cand: Alternative, n: int) -> tuple[_Prepared, Any, Iterator[CompletionResponse]]:
            prepared = self._prepare(cand, chat=False)
            text = _prefix_prompt(prompt, prepared.style_text)
            iterator = iter(prepared.llm.stream_complete(text, formatted=formatted, **plan.kwargs))
            return prepared, next(iterator, None), iterator

        (prepared, first, iterator), attempts = self._call(plan, call)
        record = self._record(plan, prepared, attempts)
        return _relay(first, iterator, record, attempts, _empty_completion)

    @llm_completion_callback()
    async def astream_complete(
        self, prompt: str, formatted: bool = False, **kwargs: Any
    ) -> CompletionResponseAsyncGen:
        """Async `stream_complete`."""
        plan = await self._aplan(self._text(_as_messages(prompt)), kwargs)

        async def call(cand: Alternative, n: int) -> tuple[_Prepared, Any, AsyncIterator[CompletionResponse]]:
            prepared = self._prepare(cand, chat=False)
            text = _prefix_prompt(prompt, prepared.style_text)
            iterator = await _astream_or_thread(
                prepared.llm.astream_complete,
                prepared.llm.stream_complete,
                text,
                formatted=formatted,
                **plan.kwargs,
            )
            return prepared, await _anext_or_none(iterator), iterator

        (prepared, first, iterator), attempts = await self._acall(plan, call)
        record = self._record(plan, prepared, attempts)
        return _arelay(first, iterator, record, attempts, _empty_completion)


def _smallest(values: Iterable[int | None]) -> int:
    known = [int(v) for v in values if v is not None and v > 0]
    return min(known) if known else -1


def _as_messages(query: str | Sequence[ChatMessage]) -> list[ChatMessage]:
    if isinstance(query, str):
        return [ChatMessage(role=MessageRole.USER, content=query)]
    return list(query)


def _with_haps(response: R, record: dict[str, Any]) -> R:
    """A copy of ``response`` with the decision under ``additional_kwargs["haps"]``."""
    return response.model_copy(update={"additional_kwargs": {**response.additional_kwargs, "haps": record}})


def _empty_chat() -> ChatResponse:
    return ChatResponse(message=ChatMessage(role=MessageRole.ASSISTANT, content=""), delta="")


def _empty_completion() -> CompletionResponse:
    return CompletionResponse(text="", delta="")


def _relay(
    first: Any,
    iterator: Iterator[Any],
    record: dict[str, Any],
    attempts: list[Attempt],
    empty: Callable[[], Any],
) -> Iterator[Any]:
    """Passes the backend's chunks on as they come, each with the decision.

    An empty stream still yields one empty response carrying the decision, so a caller always
    learns who answered.
    """
    backend = attempts[-1].backend
    try:
        if first is None:
            yield _with_haps(empty(), record)
            return
        last = _with_haps(first, record)
        yield last
        while True:
            try:
                chunk = next(iterator)
            except StopIteration:
                break
            except Exception as exc:
                raise interrupted_stream(backend, last, attempts, exc) from exc
            last = _with_haps(chunk, record)
            yield last
    finally:
        close = getattr(iterator, "close", None)
        if close is not None:
            close()


async def _arelay(
    first: Any,
    iterator: AsyncIterator[Any],
    record: dict[str, Any],
    attempts: list[Attempt],
    empty: Callable[[], Any],
) -> AsyncIterator[Any]:
    """The async twin of `_relay`."""
    backend = attempts[-1].backend
    try:
        if first is None:
            yield _with_haps(empty(), record)
            return
        last = _with_haps(first, record)
        yield last
        while True:
            try:
                chunk = await iterator.__anext__()
            except StopAsyncIteration:
                break
            except Exception as exc:
                raise interrupted_stream(backend, last, attempts, exc) from exc
            last = _with_haps(chunk, record)
            yield last
    finally:
        aclose = getattr(iterator, "aclose", None)
        if aclose is not None:
            await aclose()


async def _async_or_thread(
    async_method: Callable[..., Awaitable[T]], sync_method: Callable[..., T], *args: Any, **kwargs: Any
) -> T:
    """Awaits the backend's async method; one that has none runs its sync method in a thread."""
    try:
        return await async_method(*args, **kwargs)
    except NotImplementedError:
        return await asyncio.to_thread(sync_method, *args, **kwargs)


async def _astream_or_thread(
    async_method: Callable[..., Awaitable[AsyncIterator[Any]]],
    sync_method: Callable[..., Iterator[Any]],
    *args: Any,
    **kwargs: Any,
) -> AsyncIterator[Any]:
    """The backend's async stream; one that has none streams its sync one from a thread."""
    try:
        return await async_method(*args, **kwargs)
    except NotImplementedError:
        iterator = await asyncio.to_thread(lambda: iter(sync_method(*args, **kwargs)))
        return _threaded(iterator)


async def _threaded(iterator: Iterator[Any]) -> AsyncIterator[Any]:
    done = object()
    while (item := await asyncio.to_thread(next, iterator, done)) is not done:
        yield item


async def _anext_or_none(iterator: AsyncIterator[Any]) -> Any:
    try:
        return await iterator.__anext__()
    except StopAsyncIteration:
        return None


# -- HAPSSelector -----------------------------------------------------------------------------
class HAPSSelectorResult(MultiSelection):
    """A `SelectorResult` (one selection) that also carries the HAPS decision behind it.

    ``selections[0].index`` is the chosen choice; the other fields describe the action HAPS
    would run on that choice's backend, so the caller can apply its parameters.

    Attributes:
        backend: the chosen choice's name (a backend of the router's catalog).
        parameters: the best parameters of that backend for this query (temperature,
            prompt_style, ...).
        predicted_quality: the router's predicted score of that action.
        predicted_cost: the router's predicted USD cost of one call of it.
        cost_weight: the lambda used.
        action_index: the action's index in the router's routing space.
        candidates: per choice, in choice order: ``index``, ``backend``, its best
            ``parameters``, ``predicted_quality``, ``predicted_cost``, ``utility``,
            ``action_index``.
    """

    model_config = ConfigDict(extra="forbid")

    backend: str
    parameters: dict[str, Any]
    predicted_quality: float
    predicted_cost: float
    cost_weight: float
    action_index: int
    candidates: list[dict[str, Any]] = Field(default_factory=list)

    @property
    def temperature(self) -> float | None:
        t = self.parameters.get("temperature")
        return None if t is None else float(t)

    @property
    def prompt_style(self) -> str:
        return str(self.parameters.get(PROMPT_STYLE, "default"))

    def to_decision(self) -> RoutingDecision:
        """The selection as a `RoutingDecision`; the other choices are its alternatives, best first."""
        others = sorted(
            (c for c in self.candidates if c["backend"] != self.backend), key=lambda c: -c["utility"]
        )
        alternatives = tuple(
            Alternative(
                c["backend"],
                dict(c["parameters"]),
                c["predicted_quality"],
                c["predicted_cost"],
                c["action_index"],
            )
            for c in others
        )
        return RoutingDecision(
            self.backend,
            dict(self.parameters),
            self.predicted_quality,
            self.predicted_cost,
            self.cost_weight,
            self.action_index,
            alternatives,
        )


class HAPSSelector(BaseSelector):
    """Selects, among choices named after backends, the one HAPS predicts does best.

    For the query, the router predicts quality and cost of every action; each choice is scored
    by its backend's best action, ``utility = quality - cost_weight * cost`` (ties go to the
    cheaper action, as in routing). Prompts play no part: `_get_prompts` is empty.

    Args:
        router: a HAPS router with ``.space`` and ``.predict(texts) -> (quality, cost)``
            (numpy arrays [n, actions]), and optionally ``.default_cost_weight``.
        cost_weight: lambda (quality points per USD, >= 0); None: the router's default. Change
            it later with the ``cost_weight`` attribute or `with_cost_weight` (a new selector).

    Example:
        .. code-block:: python

            engine = RouterQueryEngine(
                selector=HAPSSelector(router, cost_weight=20.0),
                query_engine_tools=[
                    QueryEngineTool.from_defaults(small_engine, name="small", description="..."),
                    QueryEngineTool.from_defaults(large_engine, name="large", description="..."),
                ],
                llm=llm,  # for summarising multiple selections; HAPS makes one
            )
            response = engine.query("...")
            response.metadata["selector_result"].backend  # and .parameters, .predicted_cost ...

    Choices are matched to backends by ``ToolMetadata.name``; a choice whose name is not a
    backend of the catalog is a ValueError that lists the known names.
    """

    def __init__(self, router: Any, cost_weight: float | None = None) -> None:
        for attr in ("space", "predict"):
            if not hasattr(router, attr):
                msg = (
                    f"`router` must have `.space` and `.predict(texts) -> (quality, cost)` (a "
                    f"HAPSRouter); {type(router).__name__} has no `.{attr}`"
                )
                raise TypeError(msg)
        self._router = router
        self._cost_weight: float | None = None
        self.cost_weight = cost_weight

    @property
    def router(self) -> Any:
        return self._router

    @property
    def cost_weight(self) -> float | None:
        """Lambda used by the next selections (None: the router's ``default_cost_weight``)."""
        return self._cost_weight

    @cost_weight.setter
    def cost_weight(self, value: float | None) -> None:
        self._cost_weight = None if value is None else check_cost_weight(value)

    def with_cost_weight(self, cost_weight: float | None) -> "HAPSSelector":
        """A new selector over the same router at another cost weight (this one is unchanged)."""
        return HAPSSelector(self._router, cost_weight)

    def _get_prompts(self) -> PromptDictType:
        return {}

    def _update_prompts(self, prompts: PromptDictType) -> None:
        """No prompts to update: selection is by predicted utility."""

    def _effective_cost_weight(self) -> float:
        if self._cost_weight is not None:
            return self._cost_weight
        return float(getattr(self._router, "default_cost_weight", 0.0) or 0.0)

    def _choice_backends(self, choices: Sequence[ToolMetadata]) -> list[str]:
        known = list(self._router.space.backend_names)
        if not choices:
            msg = f"HAPSSelector got no choices; name them after backends of the catalog: {known}"
            raise ValueError(msg)
        names = [c.name for c in choices]
        unknown = [(i, n) for i, n in enumerate(names) if n not in known]
        if unknown:
            listed = ", ".join(f"choice {i}: {n!r}" for i, n in unknown)
            msg = (
                "HAPSSelector matches choices to backends by `ToolMetadata.name` "
                f"(e.g. QueryEngineTool.from_defaults(engine, name=...)); not backends: {listed}. "
                f"Known backends: {known}"
            )
            raise ValueError(msg)
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            msg = f"HAPSSelector choices name these backends more than once: {dupes} (choices: {names})"
            raise ValueError(msg)
        return names  # type: ignore[return-value]  # checked above: all str

    def _query_text(self, query: QueryBundle) -> str:
        text = query.query_str
        if not text or not text.strip():
            msg = "HAPSSelector got an empty query: there is nothing to route on"
            raise ValueError(msg)
        return routing_text(text, name="query.query_str")

    def _predict(self, text: str) -> tuple[np.ndarray, np.ndarray]:
        """The router's predictions for one query, holding its `routing_lock`."""
        with routing_lock(self._router):
            return self._router.predict([text])

    def _decide(
        self, backends: list[str], quality: np.ndarray, cost: np.ndarray, cost_weight: float
    ) -> HAPSSelectorResult:
        space = self._router.space
        quality, cost = np.asarray(quality, dtype=float), np.asarray(cost, dtype=float)
        n_actions = len(space.actions)
        if quality.shape != (1, n_actions) or cost.shape != (1, n_actions):
            msg = (
                f"router.predict returned shapes {quality.shape} and {cost.shape} for one query; "
                f"expected (1, {n_actions}) (one column per action of its routing space)"
            )
            raise RoutingError(msg)
        of_backend = np.array([a.backend for a in space.actions])
        candidates = []
        for index, backend in enumerate(backends):
            allowed = of_backend == backend
            best = int(choose(quality, cost, cost_weight, allowed)[0])
            q, c = float(quality[0, best]), float(cost[0, best])
            candidates.append(
                {
                    "index": index,
                    "backend": backend,
                    "parameters": dict(space.actions[best].parameters),
                    "predicted_quality": q,
                    "predicted_cost": c,
                    "utility": q - cost_weight * c,
                    "action_index": best,
                }
            )
        # The overall best action among the choices' backends decides (same tie rule as routing).
        best = int(choose(quality, cost, cost_weight, np.isin(of_backend, backends))[0])
        chosen = next(c for c in candidates if c["action_index"] == best)
        params = ", ".join(f"{k}={v!r}" for k, v in sorted(chosen["parameters"].items()))
        reason = (
            f"HAPS: {chosen['backend']!r} ({params}) has the best predicted utility "
            f"{chosen['utility']:.4g} = quality {chosen['predicted_quality']:.4g} - {cost_weight:g} x "
            f"cost {chosen['predicted_cost']:.4g} USD among {backends}"
        )
        logger.debug("%s", reason)
        return HAPSSelectorResult(
            selections=[SingleSelection(index=chosen["index"], reason=reason)],
            backend=chosen["backend"],
            parameters=chosen["parameters"],
            predicted_quality=chosen["predicted_quality"],
            predicted_cost=chosen["predicted_cost"],
            cost_weight=cost_weight,
            action_index=best,
            candidates=candidates,
        )

    def _select(self, choices: Sequence[ToolMetadata], query: QueryBundle) -> HAPSSelectorResult:
        backends = self._choice_backends(choices)
        cost_weight = self._effective_cost_weight()
        quality, cost = self._predict(self._query_text(query))
        return self._decide(backends, quality, cost, cost_weight)

    async def _aselect(self, choices: Sequence[ToolMetadata], query: QueryBundle) -> HAPSSelectorResult:
        backends = self._choice_backends(choices)
        cost_weight = self._effective_cost_weight()
        # the router's forward pass is CPU/GPU work: keep it off the event loop
        quality, cost = await asyncio.to_thread(self._predict, self._query_text(query))
        return self._decide(backends, quality, cost, cost_weight)
