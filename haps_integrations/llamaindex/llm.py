"""`HAPSLLM`: HAPS routing as a LlamaIndex ``LLM``, for ``Settings.llm`` or any query engine.

Every call is routed: the router picks a backend LLM *and* its generation parameters, HAPS applies
them the way that backend accepts them (`haps_integrations.llamaindex.params`), calls it natively
(chat stays chat), retries transient errors and falls back to the next-best backend.
"""

import asyncio
import logging
import warnings
from collections.abc import AsyncGenerator, Callable, Generator, Iterable, Mapping, Sequence
from dataclasses import replace
from typing import Any

from llama_index.core.base.llms.types import (
    ChatMessage,
    ChatResponse,
    ChatResponseAsyncGen,
    ChatResponseGen,
    CompletionResponse,
    CompletionResponseAsyncGen,
    CompletionResponseGen,
    LLMMetadata,
)
from llama_index.core.llms.callbacks import llm_chat_callback, llm_completion_callback
from llama_index.core.llms.function_calling import FunctionCallingLLM
from llama_index.core.llms.llm import LLM
from llama_index.core.prompts import BasePromptTemplate
from llama_index.core.types import TokenAsyncGen, TokenGen
from pydantic import ConfigDict, Field, PrivateAttr, model_validator

from haps_core.decision import RouterLike, RoutingDecision, check_cost_weight
from haps_core.dispatch import (
    COST_WEIGHT_KEY,
    MAX_COST_KEY,
    TARGET_MEAN_KEY,
    ChunkRules,
    Plan,
    RoutedCaller,
    RoutingSettings,
    astream_or_thread,
    async_or_thread,
    pop_haps_keys,
)
from haps_core.dispatch.turns import apply_stickiness
from haps_core.feedback.recorder import FeedbackMixin, recorder_for
from haps_integrations.llamaindex.function_calling import FunctionCallingRouting
from haps_integrations.llamaindex.messages import (
    CHAT_CHUNKS,
    COMPLETION_CHUNKS,
    Query,
    as_messages,
    extract_query_text,
    restyle,
    sent_text,
    with_haps,
)
from haps_integrations.llamaindex.params import DETAILS
from haps_integrations.llamaindex.query import (
    current_question,
    current_selection,
    listen_to_queries,
    note_record,
    question_of,
)
from haps_integrations.llamaindex.tools import TurnPlan, apply_through, capabilities_of, read_turn

logger = logging.getLogger(__name__)


def _smallest(values: Iterable[int | None]) -> int:
    known = [int(v) for v in values if v is not None and v > 0]
    return min(known) if known else -1


def _deprecated(old: str, new: str) -> None:
    msg = f"HAPSLLM {old} is deprecated: use {new} (the same name as in the LangChain integration)"
    warnings.warn(msg, DeprecationWarning, stacklevel=3)


class HAPSLLM(FeedbackMixin, FunctionCallingRouting, RoutingSettings, FunctionCallingLLM):
    """HAPS routing as a LlamaIndex LLM: each call goes to the best backend and parameters.

    Args:
        router: a HAPS router (`haps_core.decision.RouterLike`): ``.space`` (its `RoutingSpace`),
            ``.route(texts, cost_weight=..., max_cost_per_query=...)`` and optionally
            ``.default_cost_weight``.
        backends: backend name -> LlamaIndex LLM: any non-empty subset of the router's catalog
            (one warning names the catalog backends left out; routing and fallback stay in the
            pool); an LLM the catalog does not know is a ValueError. ``llms=`` is the
            deprecated name of this argument.
        cost_weight: lambda, quality points per USD (>= 0). None: the router's
            ``default_cost_weight`` (0.0 if it has none). Per call: ``haps_cost_weight=x``.
        max_cost_per_query: a hard cap in USD on a query's predicted cost (where no action
            fits, the cheapest, flagged ``over_budget``). Per call: ``haps_max_cost_per_query=x``.
        target_mean_cost: a mean USD cost per query over the router's reference set, calibrated
            to a cost weight (not with ``cost_weight``). Per call: ``haps_target_mean_cost=x``.
            The per-call keys are those of the LangChain integration's ``configurable``; an
            unknown ``haps_*`` kwarg is a `UserWarning` naming it and the allowed keys.
        prompt_styles: style name -> system-message text, overriding or extending the router's.
        max_attempts, max_backends: as in the LangChain integration (retries, fallback).
        routing_text: ``messages -> str``, the text the router scores. Default: the user's
            question when the call comes from a templated prompt (``predict``/``stream``, as
            query engines call it) whose ``query_str`` variable is set, so the router does not
            score the retrieved context of a QA template; otherwise the last user message's
            text (`extract_query_text`; ``complete`` passes its prompt as one user message).
            Pass ``routing_text=extract_query_text`` to score the whole filled template.
        retry_wait, call_timeout: as in the LangChain integration (tenacity wait; seconds a
            backend call may take, a transient `haps_core.errors.CallTimeoutError` beyond).
        model_name: the name reported in ``metadata``.

    Example: ``Settings.llm = HAPSLLM(router=router, backends={"small": small, "large": large})``,
    then ``index.as_query_engine().query("...")``. ``store=``: where decision records go
    (`haps_core.feedback`; ``feedback(decision_id, score)`` attaches outcomes).

    Agents: it is a ``FunctionCallingLLM`` (`FunctionCallingRouting`): ``chat_with_tools`` routes
    among the tool-capable backends; within a tool loop the backend sticks (``sticky``).

    Each response (``chat``, ``complete``, every streamed chunk) carries
    ``additional_kwargs["haps"]``: the decision (backend, ``parameters`` as sent, the router's
    ``router_parameters``, predicted quality and cost, cost weight, alternatives),
    ``served_by`` (after any fallback), ``applied`` (the mechanism per parameter) and
    ``attempts``. A query engine's ``Response`` carries it in ``metadata["haps"]`` (the last
    HAPS call of the query; ``metadata["haps_calls"]``: all of them); `haps_decision(response)`
    reads either.

    Under a ``RouterQueryEngine`` whose selector is a `HAPSSelector`, a HAPSLLM of the chosen
    tool's engine serves the selection (its backend and parameters, no second routing) when
    that backend is in its pool; the record then has ``selected_by="HAPSSelector"``. Other
    keyword arguments of a call are passed on to the backend's method unchanged.
    """

    backends: dict[str, LLM] = Field(exclude=True, description="Backend name -> LlamaIndex LLM.")
    routing_text: Callable[[Sequence[ChatMessage]], str] | None = Field(
        default=None, exclude=True, description="messages -> the text the router scores."
    )
    model_name: str = Field(default="haps", description="The name reported in `metadata`.")
    store: Any = Field(default=None, exclude=True, description="Where decision records go.")
    sticky: bool = Field(default=True, description="Keep a tool loop's backend within an agent run.")

    model_config = ConfigDict(arbitrary_types_allowed=True)

    _caller: RoutedCaller[LLM, Query] = PrivateAttr()

    @classmethod
    def class_name(cls) -> str:
        return "HAPSLLM"

    def __init__(
        self,
        router: RouterLike,
        backends: Mapping[str, LLM] | None = None,
        *,
        llms: Mapping[str, LLM] | None = None,
        **kwargs: Any,
    ) -> None:
        """See the class docstring; ``router`` and ``backends`` may be given by position."""
        if llms is not None:
            if backends is not None:
                msg = "give `backends` (or its deprecated name `llms`), not both"
                raise TypeError(msg)
            _deprecated("`llms=`", "`backends=`")
            backends = llms
        if not isinstance(backends, Mapping):
            kind = type(backends).__name__
            msg = f"`backends` must be a dict of backend name -> LlamaIndex LLM, got {kind}"
            raise TypeError(msg)
        # mypy sees RoutingSettings' __init__ here, which lacks HAPSLLM's own `backends` field
        super().__init__(router=router, backends=dict(backends), **kwargs)  # type: ignore[call-arg]

    @model_validator(mode="after")
    def _build(self) -> "HAPSLLM":
        """Checks the pool against the router's catalog once, so calls cannot hit a gap."""
        self._caller = RoutedCaller(
            self.router,
            self.backends,
            apply=lambda _, llm, params: apply_through(llm, params),
            restyle=restyle,
            prompt_styles=self.prompt_styles,
            cost_names=(COST_WEIGHT_KEY, MAX_COST_KEY, TARGET_MEAN_KEY),
            details=DETAILS,
            labels=("an LLM", "LLMs not in the catalog"),
            sent_text=sent_text,
            recorder=recorder_for(self.store, self.router, "HAPSLLM"),
            exploration=self.exploration,
        )
        listen_to_queries()
        return self

    @property
    def llms(self) -> dict[str, LLM]:
        """Deprecated name of `backends`."""
        _deprecated("`.llms`", "`.backends`")
        return self.backends

    @property
    def metadata(self) -> LLMMetadata:
        """What a caller may rely on whichever backend answers.

        The smallest context window and the smallest output budget of the pool (a prompt sized
        for the largest model would overflow a smaller one); values <= 0 ("unknown", as
        ``MockLLM`` reports) are ignored. Always a chat model: HAPS calls chat natively.
        """
        metas = [llm.metadata for llm in self.backends.values()]
        return LLMMetadata(
            context_window=_smallest(m.context_window for m in metas),
            num_output=_smallest(m.num_output for m in metas),
            is_chat_model=True,
            is_function_calling_model=any(
                capabilities_of(llm).tool_calling for llm in self.backends.values()
            ),
            model_name=self.model_name,
        )

    # -- public helpers --------------------------------------------------------------------
    def with_cost_weight(self, cost_weight: float) -> "HAPSLLM":
        """A copy routing at ``cost_weight`` (and no budget); shares the router and the LLMs."""
        return self.model_copy(
            update={
                "cost_weight": check_cost_weight(cost_weight),
                "max_cost_per_query": None,
                "target_mean_cost": None,
            }
        )

    def route(
        self,
        query: Query,
        cost_weight: float | None = None,
        max_cost_per_query: float | None = None,
        target_mean_cost: float | None = None,
    ) -> RoutingDecision:
        """The decision for ``query`` (a prompt or messages), without calling any LLM."""
        requested = (cost_weight, max_cost_per_query, target_mean_cost)
        return self._caller.plan(query, self._read, requested, self._instance_costs()).decision

    def check_backends(self) -> dict[str, dict[str, dict[str, Any]]]:
        """For each backend and each parameter of its catalog grid, how HAPS sets it.

        Returns:
            ``{backend: {parameter: {"mechanism": ..., "reaches_model": bool, "detail": ...}}}``.
            ``reaches_model`` is False for ``not_applied`` (e.g. an LLM with neither a
            ``temperature`` field nor ``generate_kwargs``): the router's choice is then ignored.
        """
        return self._caller.check()

    def check_llms(self) -> dict[str, dict[str, dict[str, Any]]]:
        """Deprecated name of `check_backends`."""
        _deprecated("`check_llms()`", "`check_backends()`")
        return self.check_backends()

    # -- internals: one routed call, sync or async, whole or streamed ------------------------
    def _read(self, query: Query) -> tuple[Query, str]:
        question = current_question() if self.routing_text is None else None
        text = question or (self.routing_text or extract_query_text)(as_messages(query))
        if not isinstance(text, str) or not text.strip():
            msg = f"`routing_text` must return a non-empty string, got {text!r:.200}"
            raise ValueError(msg)
        return query, text

    def _plan(self, query: Query, kwargs: Mapping[str, Any]) -> tuple[Plan[Query], dict[str, Any]]:
        """Routes ``query``; the call's kwargs without HAPS's own per-call keys go to the backend.

        Under a `HAPSSelector` selection of a backend of this pool, the selection is the plan.
        """
        rest = dict(kwargs)
        requested = pop_haps_keys(rest, "keyword argument")
        selection = current_selection()
        if selection is not None and selection.backend in self.backends:
            decision = selection.to_decision()
            others = tuple(a for a in decision.alternatives if a.backend in self.backends)
            return Plan(replace(decision, alternatives=others), query, None), rest
        plan = self._caller.plan(query, self._read, requested, self._instance_costs())
        turn = read_turn(as_messages(query), len(sent_text(query)))
        decision, entry = apply_stickiness(plan.decision, turn, self.sticky, self.backends)
        return TurnPlan(decision, plan.input, plan.max_cost, plan.target_mean_cost, turn=entry), rest

    def _noted(self, record: dict[str, Any], plan: Plan[Query]) -> dict[str, Any]:
        """``record`` (marked when a selection was served; with its turn), noted for the query."""
        if isinstance(plan, TurnPlan):
            record["turn"] = plan.turn
        selection = current_selection()
        if selection is not None and selection.backend in self.backends:
            record["selected_by"] = "HAPSSelector"
        note_record(record)
        return record

    def _respond(self, method: str, query: Query, kwargs: Mapping[str, Any]) -> Any:
        plan, rest = self._plan(query, kwargs)
        answer = self._caller.call(
            plan, lambda _, p: getattr(p.backend, method)(p.input, **rest), self._retry_policy()
        )
        return with_haps(answer.output, self._noted(answer.record, plan))

    async def _arespond(self, methods: tuple[str, str], query: Query, kwargs: Mapping[str, Any]) -> Any:
        """`_respond`, awaited: ``methods`` is (async method, sync one for a backend without it)."""
        plan, rest = await asyncio.to_thread(self._plan, query, kwargs)  # router off the loop

        async def send(_: Any, p: Any) -> Any:
            acall, call = (getattr(p.backend, m) for m in methods)
            return await async_or_thread(lambda: acall(p.input, **rest), lambda: call(p.input, **rest))

        answer = await self._caller.acall(plan, send, self._retry_policy())
        return with_haps(answer.output, self._noted(answer.record, plan))

    def _stream(
        self, method: str, query: Query, kwargs: Mapping[str, Any], rules: ChunkRules
    ) -> Generator[Any, None, None]:
        plan, rest = self._plan(query, kwargs)
        relay = self._caller.stream(
            plan, lambda _, p: getattr(p.backend, method)(p.input, **rest), self._retry_policy(), rules
        )
        self._noted(relay.record, plan)
        return relay.chunks()

    async def _astream(
        self, methods: tuple[str, str], query: Query, kwargs: Mapping[str, Any], rules: ChunkRules
    ) -> AsyncGenerator[Any, None]:
        plan, rest = await asyncio.to_thread(self._plan, query, kwargs)  # router off the loop

        def open_stream(_: Any, p: Any) -> Any:
            astream, stream = (getattr(p.backend, m) for m in methods)
            return astream_or_thread(lambda: astream(p.input, **rest), lambda: stream(p.input, **rest))

        relay = await self._caller.astream(plan, open_stream, self._retry_policy(), rules)
        self._noted(relay.record, plan)
        return relay.achunks()

    # -- templated prompts (query engines): route on the template's ``query_str`` ----------------
    def predict(self, prompt: BasePromptTemplate, **prompt_args: Any) -> str:
        """`LLM.predict`, routing on the template's ``query_str`` (see ``routing_text``)."""
        with question_of(prompt_args, prompt):
            return super().predict(prompt, **prompt_args)

    async def apredict(self, prompt: BasePromptTemplate, **prompt_args: Any) -> str:
        """`LLM.apredict`, routing on the template's ``query_str``."""
        with question_of(prompt_args, prompt):
            return await super().apredict(prompt, **prompt_args)

    def stream(self, prompt: BasePromptTemplate, **prompt_args: Any) -> TokenGen:
        """`LLM.stream`, routing on the template's ``query_str`` (routing happens in this call)."""
        with question_of(prompt_args, prompt):
            return super().stream(prompt, **prompt_args)

    async def astream(self, prompt: BasePromptTemplate, **prompt_args: Any) -> TokenAsyncGen:
        """`LLM.astream`, routing on the template's ``query_str``."""
        with question_of(prompt_args, prompt):
            return await super().astream(prompt, **prompt_args)

    # -- chat ------------------------------------------------------------------------------
    @llm_chat_callback()
    def chat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> ChatResponse:
        """Routes on the messages, calls the chosen backend's ``chat`` with the style applied."""
        return self._respond("chat", messages, kwargs)

    @llm_chat_callback()
    async def achat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> ChatResponse:
        """Async `chat`: the router runs in a thread, the backend's ``achat`` is awaited."""
        return await self._arespond(("achat", "chat"), messages, kwargs)

    @llm_chat_callback()
    def stream_chat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> ChatResponseGen:
        """Streams the chosen backend's ``stream_chat``.

        Routing and the backend's first chunk happen in this call, so a backend that fails
        before its first token is retried / fallen back from like in `chat`. After the first
        token a failure raises `StreamInterruptedError` (``.partial_output``: the last response
        received, whose text is cumulative): falling back then would splice two answers.
        """
        return self._stream("stream_chat", messages, kwargs, CHAT_CHUNKS)

    @llm_chat_callback()
    async def astream_chat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> ChatResponseAsyncGen:
        """Async `stream_chat`, with the same fallback rules."""
        return await self._astream(("astream_chat", "stream_chat"), messages, kwargs, CHAT_CHUNKS)

    # -- complete --------------------------------------------------------------------------
    @llm_completion_callback()
    def complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> CompletionResponse:
        """Routes on the prompt, calls the chosen backend's ``complete`` (style as a prefix)."""
        return self._respond("complete", prompt, {**kwargs, "formatted": formatted})

    @llm_completion_callback()
    async def acomplete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> CompletionResponse:
        """Async `complete`."""
        return await self._arespond(("acomplete", "complete"), prompt, {**kwargs, "formatted": formatted})

    @llm_completion_callback()
    def stream_complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> CompletionResponseGen:
        """Streams the chosen backend's ``stream_complete`` (fallback rules of `stream_chat`)."""
        return self._stream("stream_complete", prompt, {**kwargs, "formatted": formatted}, COMPLETION_CHUNKS)

    @llm_completion_callback()
    async def astream_complete(
        self, prompt: str, formatted: bool = False, **kwargs: Any
    ) -> CompletionResponseAsyncGen:
        """Async `stream_complete`."""
        methods = ("astream_complete", "stream_complete")
        return await self._astream(methods, prompt, {**kwargs, "formatted": formatted}, COMPLETION_CHUNKS)
