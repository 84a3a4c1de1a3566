"""`HAPSRunnable`: HAPS routing as a LangChain Runnable, the primary LangChain surface.

A call is a chain run whose child is the backend's own run, tagged ``haps:<backend>``, so traces
show which model answered and why; ``batch``/``abatch`` route a whole batch in one router pass;
``stream``/``astream`` pass the backend's tokens through as they come.
"""

import asyncio
import logging
from collections.abc import AsyncIterator, Iterator, Sequence
from typing import Any

from langchain_core.language_models import LanguageModelInput
from langchain_core.messages import BaseMessage, BaseMessageChunk
from langchain_core.runnables import RunnableConfig, RunnableSerializable
from langchain_core.runnables.config import (
    ensure_config,
    get_async_callback_manager_for_config,
    get_callback_manager_for_config,
    get_config_list,
    get_executor_for_config,
)
from langchain_core.runnables.utils import gather_with_concurrency
from pydantic import ConfigDict, Field, PrivateAttr, model_validator

from haps_core.decision import RoutingDecision
from haps_core.dispatch import (
    COST_WEIGHT_KEY,
    MAX_COST_KEY,
    TARGET_MEAN_KEY,
    Plan,
    RoutedCaller,
    RoutingSettings,
    pop_haps_keys,
)
from haps_core.feedback.recorder import FeedbackMixin, recorder_for
from haps_integrations.langchain.messages import RUNNABLE_CHUNKS, as_message, read_input, with_haps
from haps_integrations.langchain.params import async_sender, child_run, langchain_caller, sender

logger = logging.getLogger(__name__)

_CONFIGURABLE_NAMES = tuple(f"configurable[{k!r}]" for k in (COST_WEIGHT_KEY, MAX_COST_KEY, TARGET_MEAN_KEY))


def _requested(config: RunnableConfig) -> tuple[Any, Any, Any]:
    """The per-call (cost weight, cap, target mean cost) of ``configurable`` keys (None: unset).

    An unknown ``haps_*`` key is a `UserWarning` naming it and the allowed keys.
    """
    return pop_haps_keys(dict(config.get("configurable") or {}), "configurable")


class HAPSRunnable(FeedbackMixin, RoutingSettings, RunnableSerializable[LanguageModelInput, BaseMessage]):
    """Routes each call to the best backend and parameters for the query, then calls it.

    Args:
        router: a HAPS router (`haps_core.decision.RouterLike`): ``.space`` (its `RoutingSpace`)
            and ``.route(texts, cost_weight=..., max_cost_per_query=...)``.
        backends: backend name -> chat model (or any Runnable taking messages): any non-empty
            subset of the router's catalog (one warning names the catalog backends left out;
            routing and fallback stay in the pool). A name the catalog lacks is a ValueError.
        cost_weight: lambda, quality points per USD (>= 0). None: the router's
            ``default_cost_weight`` (0.0 if it has none). Per call:
            ``config={"configurable": {"haps_cost_weight": x}}``.
        max_cost_per_query: hard cap in USD on a query's predicted cost (where no action fits,
            the cheapest, flagged ``over_budget``). Per call:
            ``config={"configurable": {"haps_max_cost_per_query": x}}``.
        target_mean_cost: mean USD cost per query over the router's reference set, calibrated
            to a cost weight (not with ``cost_weight``). Per call:
            ``config={"configurable": {"haps_target_mean_cost": x}}``.
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
        store: where each call's decision record goes (`haps_core.feedback.open_store`: a
            ``.db``/``.sqlite`` path, a SQLAlchemy URL, a ``.jsonl`` path, a callable or a
            `Store`); None (default): nothing is recorded. With a store, the ``haps`` metadata
            carries ``decision_id`` and `feedback` attaches an outcome to it.

    Example:
        .. code-block:: python

            haps = HAPSRunnable(router=router, backends={"small": small_llm, "large": large_llm})
            chain = prompt | haps | StrOutputParser()
            chain.invoke({"question": "..."}, config={"configurable": {"haps_cost_weight": 50.0}})

    Per-call cost settings are best passed as ``configurable`` keys (above): `batch` reads them
    per input and routes each distinct setting in one pass. ``.configurable_fields(cost_weight=
    ConfigurableField(id="haps_cost_weight"))`` works too, but LangChain's configurable wrapper
    then rebuilds the runnable per input and batches input by input (one router pass each).

    The per-call keys (``haps_cost_weight``, ``haps_max_cost_per_query``) are the same on
    `ChatHAPS` and ``HAPSLLM``; an unknown ``haps_*`` configurable key is a `UserWarning` that
    names it and the allowed keys.

    The returned message carries ``response_metadata["haps"]``: the decision (backend,
    ``parameters`` as sent, the router's ``router_parameters``, predicted quality and cost,
    cost weight, alternatives), which backend served it
    (``served_by``, after any fallback), the mechanism used per parameter (``applied``) and every
    attempt (``attempts``).
    """

    backends: dict[str, Any] = Field(description="Backend name -> chat model (or Runnable taking messages).")
    forwards_kwargs: list[str] = Field(
        default_factory=list, description="Backends whose invoke forwards unknown kwargs into the request."
    )
    store: Any = Field(default=None, exclude=True, description="Where decision records go (None: nowhere).")

    model_config = ConfigDict(arbitrary_types_allowed=True)

    _caller: RoutedCaller[Any, list[BaseMessage]] = PrivateAttr()

    @model_validator(mode="after")
    def _build(self) -> "HAPSRunnable":
        self._caller = langchain_caller(
            self.router, self.backends, self.prompt_styles, self.forwards_kwargs, _CONFIGURABLE_NAMES
        )
        self._caller.recorder = recorder_for(self.store, self.router, "HAPSRunnable")
        self._caller.exploration = self.exploration
        return self

    # -- public helpers --------------------------------------------------------------------
    def check_backends(self) -> dict[str, dict[str, dict[str, Any]]]:
        """For each backend and each parameter of its catalog grid, how HAPS sets it.

        Returns:
            ``{backend: {parameter: {"mechanism": ..., "reaches_model": bool, "detail": ...}}}``.
            ``reaches_model`` is False for ``not_applied`` (e.g. a fake chat model with no
            ``temperature`` field): the router's choice of that parameter is then ignored.
        """
        return self._caller.check()

    def route(
        self, inputs: Sequence[LanguageModelInput], config: RunnableConfig | None = None
    ) -> list[RoutingDecision]:
        """The decisions for ``inputs`` without calling any backend (one router pass)."""
        config = ensure_config(config)
        plans = self._plans(list(inputs), [config] * len(inputs))
        for plan in plans:
            if isinstance(plan, Exception):
                raise plan
        return [plan.decision for plan in plans]  # type: ignore[union-attr]  # no exceptions left

    # -- internals -------------------------------------------------------------------------
    def _plans(self, inputs: list[Any], configs: list[RunnableConfig]) -> list[Plan[Any] | Exception]:
        requested = [_requested(c) for c in configs]
        return self._caller.plan_batch(inputs, read_input, requested, self._instance_costs())

    def _start(self, input: Any, config: RunnableConfig) -> Any:
        return get_callback_manager_for_config(config).on_chain_start(
            None, input, name=config.get("run_name") or self.get_name(), run_id=config.pop("run_id", None)
        )

    async def _astart(self, input: Any, config: RunnableConfig) -> Any:
        return await get_async_callback_manager_for_config(config).on_chain_start(
            None, input, name=config.get("run_name") or self.get_name(), run_id=config.pop("run_id", None)
        )

    # -- Runnable API ----------------------------------------------------------------------
    def invoke(
        self, input: LanguageModelInput, config: RunnableConfig | None = None, **kwargs: Any
    ) -> BaseMessage:
        """Routes ``input`` and returns the chosen backend's message (see the class docstring)."""
        config = ensure_config(config)
        run_manager = self._start(input, config)
        try:
            plan = self._caller.plan(input, read_input, _requested(config), self._instance_costs())
            send = sender(child_run(config, run_manager, kwargs), "invoke")
            answer = self._caller.call(plan, send, self._retry_policy())
            output = with_haps(as_message(answer.output), answer.record)
        except BaseException as e:
            run_manager.on_chain_error(e)
            raise
        run_manager.on_chain_end(output)
        return output

    async def ainvoke(
        self, input: LanguageModelInput, config: RunnableConfig | None = None, **kwargs: Any
    ) -> BaseMessage:
        """Async `invoke`: the router runs in a thread, the backend's ``ainvoke`` is awaited."""
        config = ensure_config(config)
        run_manager = await self._astart(input, config)
        try:
            plan = await self._caller.aplan(input, read_input, _requested(config), self._instance_costs())
            send = async_sender(child_run(config, run_manager, kwargs))
            answer = await self._caller.acall(plan, send, self._retry_policy())
            output = with_haps(as_message(answer.output), answer.record)
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
        results: list[Any] = self._plans(inputs, configs)
        policy = self._retry_policy()

        def run(i: int) -> None:
            if isinstance(plan := results[i], Exception):
                return
            try:
                send = sender(child_run(configs[i], run_managers[i], kwargs), "invoke")
                answer = self._caller.call(plan, send, policy)
                results[i] = with_haps(as_message(answer.output), answer.record)
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
        """Async `batch`: one router pass (in a thread), then awaited backend calls."""
        if not inputs:
            return []
        configs = get_config_list(config, len(inputs))
        run_managers = [await self._astart(x, c) for x, c in zip(inputs, configs)]
        results: list[Any] = await asyncio.to_thread(self._plans, inputs, configs)
        policy = self._retry_policy()

        async def run(i: int) -> None:
            if isinstance(plan := results[i], Exception):
                return
            try:
                send = async_sender(child_run(configs[i], run_managers[i], kwargs))
                answer = await self._caller.acall(plan, send, policy)
                results[i] = with_haps(as_message(answer.output), answer.record)
            except Exception as e:
                results[i] = e

        limit = configs[0].get("max_concurrency")
        await gather_with_concurrency(limit, *(run(i) for i in range(len(inputs))))
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
        try:
            plan = self._caller.plan(input, read_input, _requested(config), self._instance_costs())
            send = sender(child_run(config, run_manager, kwargs), "stream")
            relay = self._caller.stream(plan, send, self._retry_policy(), RUNNABLE_CHUNKS)
            yield from relay.chunks()
        except BaseException as e:
            run_manager.on_chain_error(e)
            raise
        run_manager.on_chain_end(relay.partial)

    async def astream(
        self, input: LanguageModelInput, config: RunnableConfig | None = None, **kwargs: Any
    ) -> AsyncIterator[BaseMessageChunk]:
        """Async `stream`, with the same fallback rules."""
        config = ensure_config(config)
        run_manager = await self._astart(input, config)
        try:
            plan = await self._caller.aplan(input, read_input, _requested(config), self._instance_costs())
            send = sender(child_run(config, run_manager, kwargs), "astream")
            relay = await self._caller.astream(plan, send, self._retry_policy(), RUNNABLE_CHUNKS)
            async for chunk in relay.achunks():
                yield chunk
        except BaseException as e:
            await run_manager.on_chain_error(e)
            raise
        await run_manager.on_chain_end(relay.partial)


def _raise_or_return(results: list[Any], return_exceptions: bool) -> list[Any]:
    if not return_exceptions:
        for r in results:
            if isinstance(r, Exception):
                raise r
    return results
