"""Load: 1,000 concurrent async calls through `HAPSRunnable` and `HAPSLLM`, 10% of them faulty.

FAKED: the router (`fake_router.FakeRouter`: every query goes to "large", "small" is the
fallback) and the backends (`lc_fakes.EchoChatModel` / `li_fakes.EchoLLM` with a per-input
fault plan, below; each async call sleeps a random 0-10 ms, so calls finish out of order).

Every 10th input (100 of 1,000) has faults planned, raised on its successive backend calls:
one third a rate limit once (the retry answers), one third "large" down (three 503s: "small"
answers), one third every backend down (three 503s, then a 401: one `AllBackendsFailedError`).
Each input must get exactly one outcome, in input order: the right backend's answer to *that*
input, or that error; and no backend may answer any input twice.
"""

import asyncio
import random
from collections import Counter
from typing import Any

import pytest
from langchain_core.messages import AIMessage, HumanMessage
from llama_index.core.base.llms.types import ChatMessage, ChatResponse, MessageRole
from llama_index.core.llms.callbacks import llm_chat_callback
from tenacity import wait_none

from haps_core.errors import AllBackendsFailedError
from haps_integrations.langchain import HAPSRunnable
from haps_integrations.llamaindex import HAPSLLM
from tests.helpers.fake_router import FakeRouter
from tests.helpers.lc_fakes import EchoChatModel
from tests.helpers.li_fakes import EchoLLM
from tests.helpers.reliability_fakes import permanent_errors, transient_errors, user
from tests.helpers.reliability_ledger import LOAD

N = 1000


def fault_plan() -> tuple[dict[str, list[BaseException]], dict[int, str]]:
    """input id -> errors to raise on its successive backend calls; input index -> kind."""
    plan, kinds = {}, {}
    for i in range(3, N, 10):
        kind = ("retried", "fell_back", "all_down")[(i // 10) % 3]
        errors = transient_errors()
        if kind == "retried":
            plan[f"q{i}"] = [errors["rate_limit_429"]]
        elif kind == "fell_back":
            plan[f"q{i}"] = [errors["unavailable_503"], errors["server_500"], errors["bad_gateway_502"]]
        else:
            plan[f"q{i}"] = [
                errors["unavailable_503"],
                errors["server_500"],
                errors["bad_gateway_502"],
                permanent_errors()["auth_401"],
            ]
        kinds[i] = kind
    return plan, kinds


def query(i: int) -> str:
    return f"q{i} what is {i} + {i}?"


class Plan:
    """The per-input fault plan and the record of answers, shared by both backends.

    Kept out of the fakes' own (logged, printed) fields: LangChain prints a backend's fields on
    every call, and a 1,000-entry log there would make the test measure printing.
    """

    def __init__(self, faults: dict[str, list[BaseException]]) -> None:
        self.faults = faults
        self.answered: list[tuple[str, str]] = []

    def __repr__(self) -> str:
        return f"Plan({len(self.faults)} faulty inputs)"

    def answer(self, tag: str, text: str) -> str:
        """Raises the input's next planned fault, or records the answer and returns it."""
        qid = text.split(" ", 1)[0]
        faults = self.faults.get(qid)
        if faults:
            raise faults.pop(0)
        self.answered.append((tag, qid))
        return f"{tag}: {text}"


class PlannedChatModel(EchoChatModel):
    """FAKE LangChain backend: raises the input's planned faults, then echoes (random delay)."""

    plan: Any = None

    def _answer(self, messages, kwargs, stop=None):
        return self.plan.answer(self.tag, [m for m in messages if isinstance(m, HumanMessage)][-1].content)


class PlannedLLM(EchoLLM):
    """FAKE LlamaIndex backend: raises the input's planned faults, then echoes (random delay)."""

    plan: Any = None

    @llm_chat_callback()
    async def achat(self, messages, **kwargs) -> ChatResponse:
        await asyncio.sleep(random.random() * 0.01)
        text = [m for m in messages if m.role == MessageRole.USER][-1].content
        return ChatResponse(
            message=ChatMessage(role=MessageRole.ASSISTANT, content=self.plan.answer(self.tag, text))
        )


def check(outcomes: list[Any], kinds: dict[int, str], plan: Plan, content) -> int:
    """Asserts one outcome per input, in order, no duplicate answers; returns the calls lost."""
    assert len(outcomes) == N
    lost = 0
    for i, outcome in enumerate(outcomes):
        kind = kinds.get(i)
        if kind == "all_down":
            ok = isinstance(outcome, AllBackendsFailedError) and [a.backend for a in outcome.attempts] == [
                "large",
                "large",
                "large",
                "small",
            ]
        else:
            backend = "small" if kind == "fell_back" else "large"
            ok = not isinstance(outcome, BaseException) and content(outcome) == f"{backend}: {query(i)}"
        lost += not ok
    counts = Counter(qid for _, qid in plan.answered)
    assert max(counts.values()) == 1, [q for q, n in counts.items() if n > 1][:5]  # no duplicates
    assert set(counts) == {f"q{i}" for i in range(N) if kinds.get(i) != "all_down"}
    assert all(not faults for faults in plan.faults.values())  # every planned fault was hit
    return lost


def n_faults(plan_kinds: dict[int, str]) -> int:
    return sum({"retried": 1, "fell_back": 3, "all_down": 4}[k] for k in plan_kinds.values())


@pytest.mark.parametrize("how", ["ainvoke", "abatch"])
async def test_1000_concurrent_calls_through_haps_runnable(how, ledger):
    """FAKED: router and backends (see the module docstring). ``ainvoke``: 1,000 calls gathered
    at once; ``abatch``: one batch of 1,000 (one router pass, 1,000 concurrent backend calls)."""
    faults, kinds = fault_plan()
    plan = Plan(faults)
    backends = {tag: PlannedChatModel(tag=tag, delay=0.01, plan=plan) for tag in ("large", "small")}
    haps = HAPSRunnable(router=FakeRouter(), backends=backends, retry_wait=wait_none())
    inputs = [query(i) for i in range(N)]
    if how == "ainvoke":
        outcomes = await asyncio.gather(*(haps.ainvoke(x) for x in inputs), return_exceptions=True)
    else:
        outcomes = await haps.abatch(inputs, config={"max_concurrency": N}, return_exceptions=True)
    lost = check(outcomes, kinds, plan, lambda m: m.content if isinstance(m, AIMessage) else None)
    ledger(LOAD, faults=n_faults(kinds), calls=N, lost=lost, inputs=N)
    assert lost == 0
    assert sum(isinstance(o, AllBackendsFailedError) for o in outcomes) == 33


async def test_1000_concurrent_calls_through_haps_llm(ledger):
    """FAKED: router and backends (see the module docstring): 1,000 ``achat`` calls gathered."""
    faults, kinds = fault_plan()
    plan = Plan(faults)
    llms = {tag: PlannedLLM(tag=tag, plan=plan) for tag in ("large", "small")}
    haps = HAPSLLM(router=FakeRouter(), backends=llms, retry_wait=wait_none())
    outcomes = await asyncio.gather(*(haps.achat([user(query(i))]) for i in range(N)), return_exceptions=True)
    lost = check(outcomes, kinds, plan, lambda r: r.message.content)
    ledger(LOAD, faults=n_faults(kinds), calls=N, lost=lost, inputs=N)
    assert lost == 0
    assert sum(isinstance(o, AllBackendsFailedError) for o in outcomes) == 33
