"""`ChatHAPS`: HAPS routing as a LangChain chat model, for code that insists on a chat model.

A chat-model run is a leaf in LangChain's tracing model, so the backend call is not a separate
child run here (use `HAPSRunnable` for that); the decision is in ``response_metadata["haps"]``.
"""

import asyncio
import logging
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import replace
from typing import Annotated, Any

from langchain_core.callbacks import AsyncCallbackManagerForLLMRun, CallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel, LanguageModelInput
from langchain_core.language_models.base import LangSmithParams
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage
from langchain_core.outputs import ChatGenerationChunk, ChatResult
from langchain_core.runnables import Runnable, RunnableConfig
from pydantic import AfterValidator, ConfigDict, Field, PrivateAttr, SecretStr, model_validator

from haps_core.dispatch import (
    COST_WEIGHT_KEY,
    MAX_COST_KEY,
    TARGET_MEAN_KEY,
    Plan,
    RoutedCaller,
    RoutingSettings,
    pin_backend,
    pop_haps_keys,
)
from haps_core.dispatch.turns import apply_stickiness
from haps_core.feedback.recorder import FeedbackMixin, recorder_for
from haps_integrations.langchain.chat_output import chat_result, chunk_rules, closing_chunk
from haps_integrations.langchain.messages import (
    extract_query_text,
    sent_text,
)
from haps_integrations.langchain.params import async_sender, langchain_caller, leaf_call, sender
from haps_integrations.langchain.structured import structured_output
from haps_integrations.langchain.tools import bind_pool, read_turn, unbound

logger = logging.getLogger(__name__)


def _check_retries(value: int | None) -> int | None:
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 0):
        msg = f"`max_retries` must be an int >= 0, got {value!r}"
        raise ValueError(msg)
    return value


def _read(messages: list[BaseMessage]) -> tuple[list[BaseMessage], str]:
    return messages, extract_query_text(messages)


def _with_configurable(config: RunnableConfig | None, kwargs: dict[str, Any]) -> dict[str, Any]:
    """``kwargs`` plus the ``haps_*`` keys of ``config["configurable"]`` (a kwarg wins)."""
    configurable = (config or {}).get("configurable") or {}
    keys = {k: v for k, v in configurable.items() if isinstance(k, str) and k.startswith("haps_")}
    return {**keys, **kwargs}


class ChatHAPS(FeedbackMixin, RoutingSettings, BaseChatModel):
    """HAPS routing as a LangChain chat model.

    Every call is routed: the router picks a backend chat model and its parameters
    (temperature, prompt style, ...), HAPS applies them (see `haps_integrations.langchain.params`),
    calls the backend, retries transient errors and falls back to the next-best backend.

    Setup:
        .. code-block:: bash

            pip install "haps[langchain]"

    Key init args:
        router: a HAPS router (``.space``, ``.route(...)``).
        backends: backend name -> chat model: any non-empty subset of the router's catalog.
        cost_weight / max_cost_per_query / target_mean_cost: the cost trade-off (see
            `HAPSRunnable`). Per call, the same ``configurable`` keys as `HAPSRunnable`:
            ``config={"configurable": {"haps_cost_weight": 50.0}}`` (or
            ``haps_max_cost_per_query``, ``haps_target_mean_cost``), or as kwargs:
            ``.invoke(x, haps_cost_weight=50.0)``, ``.bind(haps_cost_weight=50.0)`` (a kwarg wins
            over a configurable key). An unknown ``haps_*`` key is a `UserWarning` naming it and
            the allowed keys.
        prompt_styles, max_attempts, max_backends, forwards_kwargs, retry_wait, call_timeout: as
            in `HAPSRunnable`.
        max_retries: LangChain's name for the same setting: retries per backend, so
            ``max_retries=n`` means ``max_attempts=n + 1``. ``max_attempts`` is canonical (both
            integrations take it); ``max_retries`` is accepted because chat models
            conventionally take it (langchain-tests passes it).
        model: a name for traces (``ls_model_name``), default ``"haps"``.
        temperature / max_tokens / timeout: when set, PIN that parameter for every call,
            overriding the router's choice (applied to the backend like a routed parameter).
            Leave them None (the default) to let HAPS choose.
        stop: stop sequences passed to the backend.
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
        (mechanism per parameter), ``attempts`` and ``pinned`` parameters. ``parameters`` (and
        ``temperature``) are what was sent, pinned values included; ``router_parameters`` is
        the router's own choice. In a stream it rides on the first chunk.

    Tracing: a chat-model run is a leaf in LangChain, so the backend call is made with no
    callbacks and does not appear as a separate child run (tokens are reported on this run).
    Use `HAPSRunnable` when you want the backend's run nested in the trace. Message ids are this
    run's, not the backend's.
    """

    backends: dict[str, Any]
    """Backend name -> chat model: any non-empty subset of the router's catalog."""
    model_name: str = Field(default="haps", alias="model")
    """A name for this router in traces (``ls_model_name``)."""
    temperature: float | None = None
    """Pins the sampling temperature (overrides the router's choice); None lets HAPS choose."""
    max_tokens: int | None = None
    """Pins the maximum number of generated tokens, applied to the chosen backend."""
    timeout: float | None = None
    """Pins a request timeout in seconds, applied to the chosen backend where it has one."""
    stop: list[str] | None = None
    """Stop sequences passed to the backend."""
    max_retries: Annotated[int | None, AfterValidator(_check_retries)] = None
    """LangChain's alias: retries per backend (``max_attempts - 1``); set from it when not given."""
    api_key: SecretStr | None = None
    """Unused: accepted for interface compatibility; each backend holds its own credentials."""
    streaming: bool = False
    """Whether to stream from the backend even on ``invoke``."""
    forwards_kwargs: list[str] = Field(default_factory=list)
    """Backends whose invoke forwards unknown keyword arguments into the model request."""
    store: Any = Field(default=None, exclude=True)
    """Where decision records go (`HAPSRunnable`'s ``store``); None: nowhere."""
    sticky: bool = True
    """Within one agent run (a call whose trailing messages are tool calls and results of one
    loop) keep the backend that served the loop, falling back only if it fails."""

    model_config = ConfigDict(populate_by_name=True, arbitrary_types_allowed=True)

    _caller: RoutedCaller[Any, list[BaseMessage]] = PrivateAttr()

    @model_validator(mode="after")
    def _build(self) -> "ChatHAPS":
        if self.max_retries is None:
            self.max_retries = self.max_attempts - 1
        elif "max_attempts" in self.model_fields_set and self.max_attempts != self.max_retries + 1:
            msg = (
                f"give either `max_attempts` ({self.max_attempts!r}) or its alias `max_retries` "
                f"({self.max_retries!r}), or values that agree (max_attempts = max_retries + 1)"
            )
            raise ValueError(msg)
        else:
            self.max_attempts = self.max_retries + 1
        settings = {"temperature": self.temperature, "max_tokens": self.max_tokens, "timeout": self.timeout}
        pinned = {k: v for k, v in settings.items() if v is not None}
        names = (COST_WEIGHT_KEY, MAX_COST_KEY, TARGET_MEAN_KEY)
        self._caller = langchain_caller(
            self.router, self.backends, self.prompt_styles, self.forwards_kwargs, names, pinned
        )
        self._caller.recorder = recorder_for(self.store, self.router, "ChatHAPS")
        self._caller.exploration = self.exploration
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
            "target_mean_cost": self.target_mean_cost,
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
        return self._caller.check()

    # -- tools and structured output -------------------------------------------------------
    def bind_tools(
        self, tools: Sequence[Any], *, tool_choice: Any = None, **kwargs: Any
    ) -> Runnable[LanguageModelInput, AIMessage]:
        """This router over the tool-capable backends only, each with ``tools`` bound by its own
        ``bind_tools(tools, tool_choice=..., **kwargs)``.

        Capabilities come from the catalog (`haps_core.capabilities.Capabilities`), unknown ones
        from the backend objects (a chat model whose class overrides ``bind_tools`` can call
        tools). Routing is among the capable backends only; tool-call messages and tool results
        pass through unchanged.

        Raises:
            ValueError: no backend in the pool can call tools (the message names every backend
                and its capabilities).
        """
        ls_keys = {k: kwargs.pop(k) for k in ("ls_structured_output_format",) if k in kwargs}
        pool = bind_pool(self.router, self.backends, tools, tool_choice, kwargs)
        return self.with_backends(pool).bind(**ls_keys)

    def with_structured_output(
        self,
        schema: dict[str, Any] | type,
        *,
        include_raw: bool = False,
        method: str = "function_calling",
        **kwargs: Any,
    ) -> Runnable[LanguageModelInput, Any]:
        """Answers in ``schema``: ``method="function_calling"`` through the tool-capable backends
        (`bind_tools`), ``"json_mode"`` / ``"json_schema"`` through the structured-output-capable
        ones, each by its own ``with_structured_output`` (`haps_integrations.langchain.structured`).
        """
        return structured_output(self, schema, method, include_raw, kwargs)

    def with_backends(self, backends: dict[str, Any]) -> "ChatHAPS":
        """This chat model (same router and settings) over another pool of ``backends``."""
        fields = {name: getattr(self, name) for name in self.model_fields_set if name != "backends"}
        fields["forwards_kwargs"] = [name for name in self.forwards_kwargs if name in backends]
        return type(self)(backends=backends, **fields)

    # -- the configurable keys: read here, since a chat model's _generate never sees the config --
    def invoke(
        self,
        input: LanguageModelInput,
        config: RunnableConfig | None = None,
        *,
        stop: list[str] | None = None,
        **kwargs: Any,
    ) -> AIMessage:
        """`BaseChatModel.invoke`, with the ``haps_*`` keys of ``config["configurable"]`` read."""
        return super().invoke(input, config, stop=stop, **_with_configurable(config, kwargs))

    async def ainvoke(
        self,
        input: LanguageModelInput,
        config: RunnableConfig | None = None,
        *,
        stop: list[str] | None = None,
        **kwargs: Any,
    ) -> AIMessage:
        """`BaseChatModel.ainvoke`, with the ``haps_*`` configurable keys read."""
        return await super().ainvoke(input, config, stop=stop, **_with_configurable(config, kwargs))

    def stream(
        self,
        input: LanguageModelInput,
        config: RunnableConfig | None = None,
        *,
        stop: list[str] | None = None,
        **kwargs: Any,
    ) -> Iterator[AIMessageChunk]:
        """`BaseChatModel.stream`, with the ``haps_*`` configurable keys read."""
        yield from super().stream(input, config, stop=stop, **_with_configurable(config, kwargs))

    async def astream(
        self,
        input: LanguageModelInput,
        config: RunnableConfig | None = None,
        *,
        stop: list[str] | None = None,
        **kwargs: Any,
    ) -> AsyncIterator[AIMessageChunk]:
        """`BaseChatModel.astream`, with the ``haps_*`` configurable keys read."""
        async for chunk in super().astream(input, config, stop=stop, **_with_configurable(config, kwargs)):
            yield chunk

    # -- internals -------------------------------------------------------------------------
    def _plan(self, messages: list[BaseMessage], kwargs: dict[str, Any]) -> tuple[Plan[Any], dict[str, Any]]:
        """Routes ``messages``; pops HAPS's own per-call kwargs from ``kwargs``.

        ``model=<backend name>`` (the standard per-call model override) pins that backend: HAPS
        still picks its parameters (the backend's best action in the decision) but does not
        fall back to other backends, since the caller asked for that model.
        """
        requested = pop_haps_keys(kwargs, "keyword argument / configurable")
        model = kwargs.pop("model", None)
        plan = self._caller.plan(messages, _read, requested, self._instance_costs())
        turn = read_turn(messages, len(sent_text(messages)))
        decision, entry = apply_stickiness(plan.decision, turn, self.sticky, self.backends)
        if model is not None and model != self.model_name:
            decision = pin_backend(decision, model, sorted(self.backends))
            entry.update(sticky=False, reason=f"model={model!r} pins the backend")
        kwargs["_haps_turn"] = entry
        return replace(plan, decision=decision), kwargs

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        plan, kwargs = self._plan(messages, kwargs)
        turn = kwargs.pop("_haps_turn")
        send = unbound(sender(leaf_call(stop or self.stop, kwargs), "invoke"))
        return chat_result(self._caller.call(plan, send, self._retry_policy()), turn)

    async def _agenerate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        plan, kwargs = await asyncio.to_thread(self._plan, messages, kwargs)  # router off the loop
        turn = kwargs.pop("_haps_turn")
        send = unbound(async_sender(leaf_call(stop or self.stop, kwargs)))
        return chat_result(await self._caller.acall(plan, send, self._retry_policy()), turn)

    def _stream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> Iterator[ChatGenerationChunk]:
        plan, kwargs = self._plan(messages, kwargs)
        turn = kwargs.pop("_haps_turn")
        send = unbound(sender(leaf_call(stop or self.stop, kwargs), "stream"))
        relay = self._caller.stream(plan, send, self._retry_policy(), chunk_rules(turn))
        for chunk in relay.chunks():
            yield ChatGenerationChunk(message=chunk)
        if relay.first is not None:
            yield from closing_chunk(relay.last, relay.partial, relay.backend)

    async def _astream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> AsyncIterator[ChatGenerationChunk]:
        plan, kwargs = await asyncio.to_thread(self._plan, messages, kwargs)  # router off the loop
        turn = kwargs.pop("_haps_turn")
        send = unbound(sender(leaf_call(stop or self.stop, kwargs), "astream"))
        relay = await self._caller.astream(plan, send, self._retry_policy(), chunk_rules(turn))
        async for chunk in relay.achunks():
            yield ChatGenerationChunk(message=chunk)
        if relay.first is not None:
            for closing in closing_chunk(relay.last, relay.partial, relay.backend):
                yield closing
