"""Issue 19: HAPSLLM as a function-calling LLM under LlamaIndex's REAL ``FunctionAgent``.

The backends are llama-index-core's own ``MockFunctionCallingLLM`` (a REAL FunctionCallingLLM
whose replies come from a response generator) with a FAKE generator that emits real
``ToolCallBlock`` tool calls: one per tool named in the user message, in order, each called on
the previous tool's result (the first on the number in the message), then a text answer
``"<tag>: <last result>"``; and ``MockLLM`` as a backend that cannot call tools. The router is
the rule-based `FakeRouter` ("large" wins at cost weight 0, "small" at 100).
"""

import re

import pytest
from llama_index.core.agent.workflow import FunctionAgent
from llama_index.core.base.llms.types import ChatMessage, MessageRole, ToolCallBlock
from llama_index.core.llms import MockLLM
from llama_index.core.llms.mock import MockFunctionCallingLLM
from llama_index.core.tools import FunctionTool

from haps_integrations.llamaindex import HAPSLLM
from tests.helpers.fake_router import FakeRouter

TASK = "Start from 3: add_two, then double, then square."  # ((3 + 2) * 2) ** 2 = 100


def add_two(x: int) -> int:
    """Adds two to x."""
    return x + 2


def double(x: int) -> int:
    """Doubles x."""
    return 2 * x


def square(x: int) -> int:
    """Squares x."""
    return x * x


TOOLS = [FunctionTool.from_defaults(fn=f) for f in (add_two, double, square)]


def tool_caller(tag: str, calls: list) -> MockFunctionCallingLLM:
    """A FAKE tool-calling backend (see the module docstring); ``calls`` gets every call's messages."""

    def generate(messages, **kwargs) -> ChatMessage:
        calls.append(list(messages))
        users = [i for i, m in enumerate(messages) if m.role == MessageRole.USER]
        human = messages[users[-1]].content or ""
        results = [m for m in messages[users[-1] + 1 :] if m.role == MessageRole.TOOL]
        names = [t.metadata.name for t in kwargs.get("tools") or []]
        plan = sorted((n for n in names if n in human), key=human.find)
        if len(results) >= len(plan):
            last = results[-1].content if results else human
            return ChatMessage(role=MessageRole.ASSISTANT, content=f"{tag}: {last}")
        x = int(results[-1].content) if results else int(re.findall(r"\d+", human)[0])
        block = ToolCallBlock(
            tool_call_id=f"{tag}-{len(calls)}", tool_name=plan[len(results)], tool_kwargs={"x": x}
        )
        return ChatMessage(role=MessageRole.ASSISTANT, blocks=[block])

    return MockFunctionCallingLLM(response_generator=generate, is_chat_model=True)


def _haps(small=None, large=None, **kwargs) -> tuple[HAPSLLM, dict]:
    calls = {"small": [], "large": []}
    backends = {
        "small": small or tool_caller("small", calls["small"]),
        "large": large or tool_caller("large", calls["large"]),
    }
    return HAPSLLM(FakeRouter(), backends, **kwargs), calls


async def _run(llm: HAPSLLM) -> str:
    agent = FunctionAgent(tools=TOOLS, llm=llm, streaming=True)
    return str(await agent.run(user_msg=TASK))


def test_issue19_hapsllm_is_a_function_calling_llm():
    llm, _ = _haps()
    assert llm.metadata.is_function_calling_model is True
    plain, _ = _haps(small=MockLLM(), large=MockLLM())
    assert plain.metadata.is_function_calling_model is False
    with pytest.raises(ValueError, match="no backend in the pool has `tool_calling`") as err:
        plain.chat_with_tools(TOOLS, user_msg=TASK)
    assert "'large': {'tool_calling': False, 'context_window': 3900}" in str(err.value)


async def test_issue19_function_agent_3_step_tool_loop_sticks_per_run_and_follows_the_cost_weight():
    llm, calls = _haps()
    served_by = {}
    for weight, expected in ((0.0, "large"), (100.0, "small")):
        for log in calls.values():
            log.clear()
        answer = await _run(llm.with_cost_weight(weight))
        assert answer == f"{expected}: 100"  # the tools ran: ((3 + 2) * 2) ** 2
        used = {name for name, log in calls.items() if log}
        assert used == {expected}  # every model turn of the run on one backend
        final = calls[expected][-1]
        tool_results = [m.content for m in final if m.role == MessageRole.TOOL]
        assert tool_results == ["5", "10", "100"]  # tool results passed through unchanged
        turns = [m.additional_kwargs["haps"]["turn"] for m in final if m.role == MessageRole.ASSISTANT]
        assert [t["sticky"] for t in turns] == [False, True, True]
        assert turns[-1]["features"]["tool_results"] == 2
        served_by[weight] = expected
    assert served_by == {0.0: "large", 100.0: "small"}


def test_issue19_llamaindex_tools_route_only_to_the_capable_backend():
    llm, calls = _haps(small=MockLLM())
    for weight in (0.0, 40.0, 100.0):
        response = llm.with_cost_weight(weight).chat_with_tools(TOOLS, user_msg="add_two 4")
        assert response.additional_kwargs["haps"]["served_by"]["backend"] == "large"
        (selection,) = llm.get_tool_calls_from_response(response)
        assert (selection.tool_name, selection.tool_kwargs) == ("add_two", {"x": 4})
    plain = [llm.with_cost_weight(w).chat([ChatMessage(role="user", content="hi")]) for w in (0.0, 100.0)]
    assert {r.additional_kwargs["haps"]["served_by"]["backend"] for r in plain} == {"small", "large"}


def test_issue19_llamaindex_sticky_false_routes_each_turn():
    llm, _ = _haps(sticky=False)
    first = llm.with_cost_weight(0.0).chat_with_tools(TOOLS, user_msg="add_two 1")
    history = [
        ChatMessage(role=MessageRole.USER, content="add_two 1"),
        first.message,
        ChatMessage(role=MessageRole.TOOL, content="3", additional_kwargs={"tool_call_id": "x"}),
    ]
    second = llm.with_cost_weight(100.0).chat_with_tools(TOOLS, chat_history=history)
    record = second.additional_kwargs["haps"]
    assert record["served_by"]["backend"] == "small"
    assert record["turn"]["reason"] == "in a tool loop, but sticky=False: routed"
    sticky, _ = _haps()
    again = sticky.with_cost_weight(100.0).chat_with_tools(TOOLS, chat_history=history)
    assert again.additional_kwargs["haps"]["served_by"]["backend"] == "large"
