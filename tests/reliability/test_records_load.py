"""Issue 17 acceptance: 1,000 concurrent async calls through `HAPSRunnable` with a record store.

FAKED: the router (`fake_router.FakeRouter` over a catalog with prices: every query goes to
"large", "small" is the fallback) and the backends (`lc_fakes.EchoChatModel` subclass below that
reports ``usage_metadata`` and raises planned faults; async calls sleep a random 0-10 ms).
Real: `HAPSRunnable`, the retry/fallback loop, the recorder, the background writer and the
SQLite / JSONL store.

Every 10th input (100 of 1,000) has faults planned on its successive backend calls: a third a
rate limit once (retried), a third "large" down (three 503s: "small" answers), a third every
backend down (three 503s then a 401: `AllBackendsFailedError`). The store must then hold exactly
one record per input: each served call's (its ``decision_id`` in the response's ``haps``
metadata) with the backend that answered, its attempts and its actual tokens and cost; each
failed input's as a failure with its four attempts.
"""

import asyncio
import random
from collections import Counter
from typing import Any

import pytest
from langchain_core.messages import AIMessage, HumanMessage
from langchain_core.outputs import ChatGeneration, ChatResult
from tenacity import wait_none

from haps_core.catalog import Action, RoutingSpace
from haps_core.errors import AllBackendsFailedError
from haps_core.feedback import open_store
from haps_integrations.langchain import HAPSRunnable
from tests.helpers.fake_router import COT_TEXT, FakeRouter
from tests.helpers.lc_fakes import EchoChatModel
from tests.helpers.reliability_fakes import permanent_errors, transient_errors
from tests.helpers.reliability_ledger import LOAD

N = 1000
PRICES = {"small": (1.0, 2.0), "large": (10.0, 30.0)}  # USD per 1M input / output tokens
EXPECTED_ATTEMPTS = {None: 1, "retried": 2, "fell_back": 4, "all_down": 4}


def priced_space() -> RoutingSpace:
    actions = [
        Action.make(b, temperature=t, prompt_style=s)
        for b in ("small", "large")
        for t in (0.0, 0.7)
        for s in ("default", "cot")
    ]
    return RoutingSpace.from_actions(actions, prices=PRICES, prompt_styles={"cot": COT_TEXT})


def fault_plan() -> tuple[dict[str, list[BaseException]], dict[int, str]]:
    plan, kinds = {}, {}
    for i in range(3, N, 10):
        kind = ("retried", "fell_back", "all_down")[(i // 10) % 3]
        errors = transient_errors()
        plan[f"q{i}"] = {
            "retried": [errors["rate_limit_429"]],
            "fell_back": [errors["unavailable_503"], errors["server_500"], errors["bad_gateway_502"]],
            "all_down": [
                errors["unavailable_503"],
                errors["server_500"],
                errors["bad_gateway_502"],
                permanent_errors()["auth_401"],
            ],
        }[kind]
        kinds[i] = kind
    return plan, kinds


def query(i: int) -> str:
    return f"q{i} what is {i} + {i}?"


class Faults:
    """The per-input fault plan, shared by both backends (kept out of the fakes' printed fields)."""

    def __init__(self, faults: dict[str, list[BaseException]]) -> None:
        self.faults = faults

    def __repr__(self) -> str:
        return f"Faults({len(self.faults)} faulty inputs)"


class UsageChatModel(EchoChatModel):
    """FAKE backend: raises the input's planned faults, then echoes with ``usage_metadata``
    (input tokens: the words of the question; output tokens: the words of the reply)."""

    plan: Any = None

    def _result(self, messages, kwargs, stop):
        text = [m for m in messages if isinstance(m, HumanMessage)][-1].content
        faults = self.plan.faults.get(text.split(" ", 1)[0])
        if faults:
            raise faults.pop(0)
        reply = f"{self.tag}: {text}"
        usage = {"input_tokens": len(text.split()), "output_tokens": len(reply.split())}
        usage["total_tokens"] = usage["input_tokens"] + usage["output_tokens"]
        message = AIMessage(content=reply, usage_metadata=usage)
        return ChatResult(generations=[ChatGeneration(message=message)])


@pytest.mark.parametrize("how", ["ainvoke", "abatch"])
@pytest.mark.parametrize("kind", ["db", "jsonl"])
async def test_issue17_1000_concurrent_calls_leave_one_record_each(how, kind, tmp_path, ledger):
    """FAKED: router and backends (module docstring); real runnable, recorder and store."""
    faults, kinds = fault_plan()
    plan = Faults(faults)
    backends = {t: UsageChatModel(tag=t, delay=0.01, plan=plan) for t in ("large", "small")}
    store = open_store(tmp_path / f"records.{kind}")
    haps = HAPSRunnable(
        router=FakeRouter(priced_space()), backends=backends, retry_wait=wait_none(), store=store
    )
    inputs = [query(i) for i in range(N)]
    random.seed(0)
    if how == "ainvoke":
        outcomes = await asyncio.gather(*(haps.ainvoke(x) for x in inputs), return_exceptions=True)
    else:
        outcomes = await haps.abatch(inputs, config={"max_concurrency": N}, return_exceptions=True)
    haps.flush_records()
    records = store.records()
    by_query = Counter(r.query for r in records)
    assert len(records) == N and set(by_query.values()) == {1}  # exactly one record per input
    by_id = {r.decision_id: r for r in records}
    lost = 0
    for i, outcome in enumerate(outcomes):
        kind_i = kinds.get(i)
        if kind_i == "all_down":
            assert isinstance(outcome, AllBackendsFailedError)
            (record,) = [r for r in records if r.query == query(i)]
            ok = (
                record.status == "failed"
                and [a["backend"] for a in record.attempts] == ["large"] * 3 + ["small"]
                and record.error.startswith("AllBackendsFailedError")
                and f"HAPS decision_id: {record.decision_id}" in outcome.__notes__
            )
        else:
            record = by_id[outcome.response_metadata["haps"]["decision_id"]]
            served = "small" if kind_i == "fell_back" else "large"
            words_in, words_out = len(query(i).split()), len(outcome.content.split())
            price_in, price_out = PRICES[served]
            ok = (
                record.status == "ok"
                and record.query == query(i)
                and record.served_backend == served
                and record.fallback == (kind_i == "fell_back")
                and record.n_attempts == EXPECTED_ATTEMPTS[kind_i]
                and (record.input_tokens, record.output_tokens) == (words_in, words_out)
                and record.cost == pytest.approx((words_in * price_in + words_out * price_out) / 1e6)
                and record.propensity == 1.0
                and record.response == outcome.content
            )
        lost += not ok
    ledger(LOAD, faults=sum(len(v) for v in fault_plan()[0].values()), calls=N, lost=lost, inputs=N)
    assert lost == 0
    assert Counter(r.status for r in records) == {"ok": N - 33, "failed": 33}
    assert haps._caller.recorder.writer.dropped == 0
