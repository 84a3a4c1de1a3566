"""THE routed caller: plan a batch in one router pass, then call each input's backend.

`RoutedCaller` prepares each candidate (parameters applied, prompt style added), runs the
retry/fallback loop around the integration's one-line backend call, relays streams and writes the
decision record; the integration supplies how inputs are read and restyled and how parameters land.
"""

import asyncio
import inspect
import logging
import warnings
from collections import defaultdict
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from haps_core.decision import Alternative, RouterLike, RoutingDecision, fallback_order
from haps_core.dispatch.params import parameter_report, warn_unreachable
from haps_core.dispatch.prompts import PROMPT_STYLE, checked_prompt_styles, system_message_for
from haps_core.dispatch.retry import Attempt, acall_with_fallback, call_with_fallback
from haps_core.dispatch.routing import (
    COST_WEIGHT_KEY,
    MAX_COST_KEY,
    TARGET_MEAN_KEY,
    call_costs,
    check_pool,
    route_checked,
)
from haps_core.dispatch.settings import Costs, RetryPolicy, check_router
from haps_core.dispatch.stream import ChunkRules, Relay, anext_or_none
from haps_core.errors import RoutingError
from haps_core.feedback.recorder import Recorder, recording

logger = logging.getLogger(__name__)

B = TypeVar("B")  # a backend model of the integration's framework
In = TypeVar("In")  # an input as the integration sends it (messages, a prompt)
T = TypeVar("T")


AsyncOpen = AsyncIterator[Any] | Awaitable[AsyncIterator[Any]]
"""What an async stream opener returns: the async iterator, or an awaitable of it."""


@dataclass(frozen=True)
class Applied(Generic[B]):
    """Parameters applied to a backend: the model to call and how each parameter got there."""

    backend: B
    mechanisms: dict[str, str] = field(default_factory=dict)
    """parameter -> the mechanism that carries it to the model (``model_copy``, ``not_applied``...)."""
    kwargs: dict[str, Any] = field(default_factory=dict)
    """Keyword arguments to add to the backend call (``pipeline_kwargs``, forwarded parameters)."""
    configurable: dict[str, Any] = field(default_factory=dict)
    """Values of the backend's configurable fields (LangChain ``config["configurable"]``)."""


@dataclass(frozen=True)
class Plan(Generic[In]):
    """One routed input: its decision, the input to send, and the budget it was routed with."""

    decision: RoutingDecision
    input: In
    max_cost: float | None
    target_mean_cost: float | None = None
    text: str | None = None  # the text routed on (what a decision record keeps)


@dataclass(frozen=True)
class Prepared(Generic[B, In]):
    """One attempt's backend call, ready: the model with parameters applied, the styled input."""

    backend: B
    input: In
    applied: dict[str, str]
    kwargs: dict[str, Any]
    configurable: dict[str, Any]
    attempt_number: int


@dataclass(frozen=True)
class Answer(Generic[T]):
    """What a routed call returned: the backend's output, the decision record, every attempt."""

    output: T
    record: dict[str, Any]
    attempts: list[Attempt]


Read = Callable[[Any], tuple[In, str]]
"""``raw input -> (input to send, text to route on)``; raises on an input it cannot route."""


def served_candidate(decision: RoutingDecision, attempts: Sequence[Attempt]) -> Alternative:
    """The candidate that answered: the last attempt's backend (`candidates` has one per backend)."""
    backend = attempts[-1].backend
    return next(c for c in fallback_order(decision) if c.backend == backend)


HAPS_KEYS = (COST_WEIGHT_KEY, MAX_COST_KEY, TARGET_MEAN_KEY)
"""The per-call ``haps_*`` keys every integration reads (LangChain ``configurable``, kwargs)."""


def pop_haps_keys(values: dict[str, Any], where: str) -> tuple[Any, Any, Any]:
    """Pops the per-call ``(cost weight, cap, target mean cost)`` from ``values`` (None: unset);
    warns about unknown ``haps_*`` keys.

    An unknown ``haps_*`` key (a typo such as ``haps_cost_wieght``) is removed too (it is never
    meant for a backend) and named in one `UserWarning` with the allowed keys.
    """
    unknown = sorted(k for k in values if isinstance(k, str) and k.startswith("haps_") and k not in HAPS_KEYS)
    if unknown:
        msg = f"HAPS ignores unknown {where} keys {unknown}; the HAPS keys are {list(HAPS_KEYS)}"
        warnings.warn(msg, UserWarning, stacklevel=3)
        for key in unknown:
            del values[key]
    cost_weight, cap, target = (values.pop(k, None) for k in HAPS_KEYS)
    return cost_weight, cap, target


def decision_record(
    decision: RoutingDecision,
    served: Alternative,
    applied: Mapping[str, str],
    attempts: Sequence[Attempt],
    max_cost_per_query: float | None = None,
    pinned: Mapping[str, Any] | None = None,
    target_mean_cost: float | None = None,
) -> dict[str, Any]:
    """The JSON-ready record an integration attaches to a response under ``"haps"``.

    Keys: the decision's own (`RoutingDecision.to_dict`: backend, parameters, temperature,
    prompt_style, predicted quality and cost, cost_weight, action_index, alternatives; from a
    router with training statistics also the compact evidence: confidence, coverage, margin,
    ood, ood_score), then
    ``max_cost_per_query`` and ``target_mean_cost``, ``served_by`` (backend and parameters
    that answered, after any fallback), ``fallback`` (whether that differs from the choice),
    ``applied`` (parameter -> mechanism that carried it to the model) and ``attempts`` (every
    call, `Attempt.to_dict`).

    ``parameters`` (and ``temperature``, ``served_by["parameters"]``) are what was SENT: the
    router's choice with the caller's ``pinned`` parameters over it; ``router_parameters`` is
    the router's own choice, and ``pinned`` the overrides (only when there are any).
    """
    pinned = dict(pinned or {})
    record = decision.to_dict()
    record["alternatives"] = list(record["alternatives"])  # JSON-shaped: lists, not tuples
    record["router_parameters"] = dict(decision.parameters)
    record["parameters"] = {**decision.parameters, **pinned}
    if "temperature" in pinned:
        record["temperature"] = pinned["temperature"]
    record.update(
        max_cost_per_query=max_cost_per_query,
        target_mean_cost=target_mean_cost,
        served_by={"backend": served.backend, "parameters": {**served.parameters, **pinned}},
        fallback=served.action_index != decision.action_index,
        applied=dict(applied),
        attempts=[a.to_dict() for a in attempts],
    )
    if pinned:
        record["pinned"] = pinned
    return record


class RoutedCaller(Generic[B, In]):
    """Routes and calls for one integration over one router and one pool of backends.

    Args:
        router: the HAPS router.
        backends: backend name -> model: any non-empty subset of the router's catalog (routing
            and fallback stay among them; `check_pool`).
        apply: ``(backend name, model, parameters) -> Applied``: how parameters reach a model.
        restyle: ``(input, style text or None) -> (input with the style, mechanism name)``.
        prompt_styles: style name -> system-message text, overriding or extending the router's.
        pinned: parameters set on every call, over the router's choice (reported as ``pinned``).
        cost_names: how a caller spells the per-call cost weight, cap and target (error messages).
        details: mechanism -> the sentence `check` reports for it.
        labels: how pool errors name one model and the models the catalog lacks (`check_pool`).
        sent_text: the text of everything an input sends (history, system and context too):
            what its input cost is counted on; default: the text routed on.
        recorder: writes one decision record per call (`haps_core.feedback.Recorder`); None: none.
        exploration: passed to ``router.route`` when set (`haps_core.exploration`); None: greedy.
    """

    def __init__(
        self,
        router: RouterLike,
        backends: Mapping[str, B],
        *,
        apply: Callable[[str, B, dict[str, Any]], Applied[B]],
        restyle: Callable[[In, str | None], tuple[In, str]],
        prompt_styles: Mapping[str, str] | None,
        pinned: Mapping[str, Any] | None = None,
        cost_names: tuple[str, ...],
        details: Mapping[str, str],
        labels: tuple[str, str],
        sent_text: Callable[[In], str] | None = None,
        recorder: Recorder | None = None,
        exploration: Any = None,
    ) -> None:
        check_router(router)
        check_pool(router.space.backend_names, backends, *labels)
        self.router = router
        self.space = router.space
        self.backends = dict(backends)
        self.apply = apply
        self.restyle = restyle
        self.styles = checked_prompt_styles(self.space, prompt_styles)
        self.pinned = dict(pinned or {})
        self.cost_names = cost_names
        self.details = dict(details)
        self.sent_text = sent_text
        self.recorder, self.exploration = recorder, exploration
        kinds = {name: type(backend).__name__ for name, backend in self.backends.items()}
        warn_unreachable(self.check(), kinds, "check_backends")

    def route(
        self, texts: list[str], costs: Costs, input_texts: list[str] | None = None
    ) -> list[RoutingDecision]:
        """One router forward pass for ``texts``, checked (`route_checked`); ``input_texts``:
        what each call sends in all, when more than its text (its input cost is counted on it)."""
        return route_checked(
            self.router,
            texts,
            costs[0],
            costs[1],
            self.backends,
            target_mean_cost=costs[2],
            input_texts=input_texts,
            exploration=self.exploration,
        )

    def plan_batch(
        self, inputs: Sequence[Any], read: Read[In], requested: Sequence[tuple[Any, ...]], instance: Costs
    ) -> list["Plan[In] | Exception"]:
        """Routes a batch: one router pass per distinct (cost weight, budget) of the inputs.

        Args:
            inputs: the raw inputs.
            read: reads one raw input (`Read`).
            requested: per input, the per-call ``(cost weight, cap[, target mean cost])`` asked
                for (None: unset).
            instance: the integration's own ``(cost_weight, max_cost_per_query, target_mean_cost)``.

        Returns:
            Per input its `Plan`, or the exception that kept it from being routed.
        """
        out: list[Plan[In] | Exception | None] = [None] * len(inputs)
        groups: dict[Costs, list[tuple[int, In, str, str]]] = defaultdict(list)
        for i, (raw, (cost_weight, max_cost, *target)) in enumerate(zip(inputs, requested)):
            try:
                value, text = read(raw)
                sent = text if self.sent_text is None else self.sent_text(value)
                costs = call_costs(self.router, cost_weight, max_cost, instance, self.cost_names, *target[:1])
            except Exception as exc:
                out[i] = exc
                continue
            groups[costs].append((i, value, text, sent))
        for costs, members in groups.items():
            try:
                texts = [text for _, _, text, _ in members]
                sent_texts = [sent for *_, sent in members]
                decisions = self.route(texts, costs, None if sent_texts == texts else sent_texts)
            except Exception as exc:
                for i, *_ in members:
                    out[i] = exc
                continue
            for (i, value, text, _), decision in zip(members, decisions):
                out[i] = Plan(decision, value, costs[1], costs[2], text)
        return out  # type: ignore[return-value]  # every input got a plan or an exception

    def plan(self, raw: Any, read: Read[In], requested: tuple[Any, ...], instance: Costs) -> Plan[In]:
        """Routes one input (one router pass); raises what keeps it from being routed."""
        (plan,) = self.plan_batch([raw], read, [requested], instance)
        if isinstance(plan, Exception):
            raise plan
        return plan

    async def aplan(self, raw: Any, read: Read[In], requested: tuple[Any, ...], instance: Costs) -> Plan[In]:
        """`plan` in a worker thread: the router's forward pass must not block the event loop."""
        return await asyncio.to_thread(self.plan, raw, read, requested, instance)

    def prepare(self, cand: Alternative, plan: Plan[In], number: int) -> Prepared[B, In]:
        """The backend of ``cand`` with its parameters applied and its prompt style added."""
        if cand.backend not in self.backends:
            msg = f"candidate backend {cand.backend!r} has no model (have: {sorted(self.backends)})"
            raise RoutingError(msg)
        params = {k: v for k, v in cand.parameters.items() if k != PROMPT_STYLE}
        params.update(self.pinned)
        applied = self.apply(cand.backend, self.backends[cand.backend], params)
        mechanisms = dict(applied.mechanisms)
        style = cand.parameters.get(PROMPT_STYLE)
        text = system_message_for(style, self.styles)
        value, mechanism = self.restyle(plan.input, text)
        if style is not None:
            mechanisms[PROMPT_STYLE] = mechanism if text else "default"
        return Prepared(applied.backend, value, mechanisms, applied.kwargs, applied.configurable, number)

    def record(self, plan: Plan[In], prepared: Prepared[B, In], attempts: list[Attempt]) -> dict[str, Any]:
        """The decision record (`decision_record`), with this caller's ``pinned`` parameters."""
        served = served_candidate(plan.decision, attempts)
        if served.action_index != plan.decision.action_index:
            fell = (plan.decision.backend, served.backend, len(attempts))
            logger.info("HAPS fell back from %r to %r after %d attempt(s)", *fell)
        return decision_record(
            plan.decision,
            served,
            prepared.applied,
            attempts,
            plan.max_cost,
            self.pinned,
            plan.target_mean_cost,
        )

    # -- calling ---------------------------------------------------------------------------
    def call(
        self, plan: Plan[In], send: Callable[[Alternative, Prepared[B, In]], T], policy: RetryPolicy
    ) -> Answer[T]:
        """Calls the plan's decision, retrying and falling back: ``send(candidate, prepared)``."""

        def attempt(cand: Alternative, n: int) -> tuple[Prepared[B, In], T]:
            prepared = self.prepare(cand, plan, n)
            return prepared, send(cand, prepared)

        with recording(self.recorder, plan) as rec:
            (prepared, output), attempts = call_with_fallback(plan.decision, attempt, **_loop(policy))
            rec.served(answer := Answer(output, self.record(plan, prepared, attempts), attempts))
        return answer

    async def acall(
        self,
        plan: Plan[In],
        send: Callable[[Alternative, Prepared[B, In]], Awaitable[T]],
        policy: RetryPolicy,
    ) -> Answer[T]:
        """The async twin of `call`: ``send`` is awaited."""

        async def attempt(cand: Alternative, n: int) -> tuple[Prepared[B, In], T]:
            prepared = self.prepare(cand, plan, n)
            return prepared, await send(cand, prepared)

        with recording(self.recorder, plan) as rec:
            (prepared, output), attempts = await acall_with_fallback(plan.decision, attempt, **_loop(policy))
            rec.served(answer := Answer(output, self.record(plan, prepared, attempts), attempts))
        return answer

    def stream(
        self,
        plan: Plan[In],
        open_stream: Callable[[Alternative, Prepared[B, In]], Iterator[Any]],
        policy: RetryPolicy,
        rules: ChunkRules,
    ) -> Relay:
        """Opens the backend's stream and takes its first chunk inside the retry/fallback loop.

        So a backend that fails before its first chunk is retried / fallen back from like in
        `call`; the returned `Relay` passes the rest on (see `haps_core.dispatch.stream`).
        """

        def first_chunk(cand: Alternative, prepared: Prepared[B, In]) -> tuple[Any, Iterator[Any]]:
            iterator = iter(open_stream(cand, prepared))
            return next(iterator, None), iterator

        answer = self.call(plan, first_chunk, policy)
        return Relay(*answer.output, answer.record, answer.attempts, rules)

    async def astream(
        self,
        plan: Plan[In],
        open_stream: Callable[[Alternative, Prepared[B, In]], AsyncOpen],
        policy: RetryPolicy,
        rules: ChunkRules,
    ) -> Relay:
        """The async twin of `stream`; ``open_stream`` returns the async iterator or an awaitable of it."""

        async def first_chunk(cand: Alternative, prepared: Prepared[B, In]) -> tuple[Any, AsyncIterator[Any]]:
            opened = open_stream(cand, prepared)
            iterator = await opened if inspect.isawaitable(opened) else opened
            return await anext_or_none(iterator), iterator

        answer = await self.acall(plan, first_chunk, policy)
        return Relay(*answer.output, answer.record, answer.attempts, rules)

    def check(self) -> dict[str, dict[str, dict[str, Any]]]:
        """Per backend and catalog parameter: the mechanism and whether it reaches the model."""

        def mechanisms(name: str, params: dict[str, Any]) -> Mapping[str, str]:
            if name not in self.backends:  # outside the pool: never routed to, not reported
                return defaultdict(lambda: "not_applied")
            return self.apply(name, self.backends[name], params).mechanisms

        report = parameter_report(self.space, mechanisms, self.details, self.pinned)
        return {name: routes for name, routes in report.items() if name in self.backends}


def _loop(policy: RetryPolicy) -> dict[str, Any]:
    names = {"max_attempts_per_backend": "max_attempts", "max_backends": "max_backends"}
    names.update(wait="wait", call_timeout="call_timeout")
    return {loop: getattr(policy, name) for loop, name in names.items()}
