"""Issue 19: HAPS inside LangChain agents: capabilities, tools, structured output, sticky tool loops.

The backends are FAKES that emit REAL tool calls (`tests.helpers.tool_fakes.ToolCallingFake`: tool
schemas bound by its own ``bind_tools``, arguments built from those schemas by a fixed policy) or
cannot call tools at all (`PlainFake`); the router is the rule-based `FakeRouter` ("large" wins at
cost weight 0, "small" at 100). The tools, ChatHAPS, langchain-core and LangGraph's ReAct agent
are real.
"""

import json
import warnings

import pytest
from langchain_core.messages import AIMessage, HumanMessage, ToolMessage
from langchain_core.tools import tool
from pydantic import BaseModel, Field

from haps_core.capabilities import Capabilities
from haps_core.catalog import Backend, RoutingSpace
from haps_integrations.langchain import ChatHAPS
from haps_integrations.langchain.tools import capabilities_of
from tests.helpers.fake_router import FakeRouter, make_space
from tests.helpers.lc_fakes import RateLimited
from tests.helpers.tool_fakes import PlainFake, ToolCallingFake


@tool
def add_two(x: int) -> int:
    """Adds two to x."""
    return x + 2


@tool
def double(x: int) -> int:
    """Doubles x."""
    return 2 * x


@tool
def square(x: int) -> int:
    """Squares x."""
    return x * x


TASK = "Start from 3: add_two, then double, then square."  # ((3 + 2) * 2) ** 2 = 100


class Joke(BaseModel):
    """A joke."""

    setup: str = Field(description="the question")
    punchline: str = Field(description="the answer")


def _chat(small=None, large=None, **kwargs) -> ChatHAPS:
    backends = {
        "small": small or ToolCallingFake(tag="small"),
        "large": large or ToolCallingFake(tag="large"),
    }
    return ChatHAPS(router=FakeRouter(), backends=backends, **kwargs)


def _served(message: AIMessage) -> str:
    return message.response_metadata["haps"]["served_by"]["backend"]


# -- 1. capabilities -------------------------------------------------------------------------
def test_issue19_capabilities_round_trip_and_old_checkpoints_load_unknown():
    space = make_space()
    declared = Backend(
        "large", 1.0, 2.0, space.backend("large").grid, Capabilities(tool_calling=True, context_window=8192)
    )
    new = RoutingSpace((declared, space.backend("small")), space.actions, space.prompt_styles)
    loaded = RoutingSpace.from_json(new.to_json())
    assert loaded.backend("large").capabilities == Capabilities(tool_calling=True, context_window=8192)
    assert json.loads(new.to_json())["backends"][0]["capabilities"] == {
        "context_window": 8192,
        "tool_calling": True,
    }
    # a catalog without capabilities serialises exactly as before (no key), and loads as unknown
    old = json.loads(space.to_json())
    assert all("capabilities" not in b for b in old["backends"])
    assert RoutingSpace.from_dict(old).backend("small").capabilities == Capabilities()
    with pytest.raises(ValueError, match="unknown keys \\['tools'\\]"):
        Capabilities.from_dict({"tools": True})
    with pytest.raises(TypeError, match="`vision`"):
        Capabilities(vision="yes")


def test_issue19_capabilities_filled_from_the_backend_objects():
    assert capabilities_of(ToolCallingFake(tag="a")) == Capabilities(
        tool_calling=True, structured_output=True
    )
    assert capabilities_of(PlainFake(tag="b")) == Capabilities(tool_calling=False, structured_output=False)
    assert capabilities_of(ToolCallingFake(tag="a").bind(stop=["x"])).tool_calling is True  # looks through
    # the catalog's declaration wins over what the object shows
    space = make_space()
    no_tools = Backend("large", 0, 0, space.backend("large").grid, Capabilities(tool_calling=False))
    router = FakeRouter(RoutingSpace((no_tools, space.backend("small")), space.actions, space.prompt_styles))
    chat = ChatHAPS(
        router=router, backends={"small": ToolCallingFake(tag="small"), "large": ToolCallingFake(tag="large")}
    )
    bound = chat.bind_tools([add_two])
    for weight in (0.0, 100.0):
        assert _served(bound.invoke("add_two 1", haps_cost_weight=weight)) == "small"


def test_issue19_binding_tools_with_no_capable_backend_names_backends_and_capabilities():
    chat = _chat(small=PlainFake(tag="small"), large=PlainFake(tag="large"))
    with pytest.raises(ValueError, match="no backend in the pool has `tool_calling`") as err:
        chat.bind_tools([add_two])
    assert "'large': {'tool_calling': False, 'structured_output': False}" in str(err.value)
    assert "'small'" in str(err.value)
    with pytest.raises(ValueError, match="structured_output"):
        chat.with_structured_output(Joke, method="json_mode")
    with pytest.raises(ValueError, match="`method` must be one of"):
        _chat().with_structured_output(Joke, method="xml")


# -- 2. tools and structured output ----------------------------------------------------------
def test_issue19_tools_bound_every_call_goes_to_the_capable_backend():
    small, large = PlainFake(tag="small"), ToolCallingFake(tag="large")
    chat = _chat(small=small, large=large)
    weights = [0.0, 40.0, 100.0]
    plain = {_served(chat.invoke("an easy question", haps_cost_weight=w)) for w in weights}
    assert plain == {"small", "large"}  # without tools, the cost weight moves the choice
    bound = chat.bind_tools([add_two])
    served = [_served(bound.invoke("add_two 5", haps_cost_weight=w)) for w in weights]
    assert served == ["large"] * 3
    assert all(call["tools"] == ["add_two"] for call in large.calls[-3:])
    assert bound.invoke("add_two 5").tool_calls[0]["args"] == {"x": 5}


def test_issue19_tool_messages_pass_through_unchanged():
    large = ToolCallingFake(tag="large")
    chat = _chat(large=large).bind_tools([add_two, double])
    first = chat.invoke([HumanMessage("add_two 4")], haps_cost_weight=0.0)
    result = ToolMessage(content="6", tool_call_id=first.tool_calls[0]["id"])
    history = [HumanMessage("add_two 4"), first, result]
    second = chat.invoke(history, haps_cost_weight=0.0)
    received = large.calls[-1]["messages"]
    assert received[1].tool_calls == first.tool_calls
    assert received[2] == result
    assert second.content == "large: 6"


def test_issue19_structured_output_via_tools_and_json_mode_of_the_chosen_backend():
    small, large = PlainFake(tag="small"), ToolCallingFake(tag="large")
    chat = _chat(small=small, large=large)
    for method in ("function_calling", "json_mode"):
        joke = chat.with_structured_output(Joke, method=method).invoke("'cats'", haps_cost_weight=100.0)
        assert joke == Joke(setup="cats", punchline="cats")
    raw = chat.with_structured_output(Joke, method="json_schema", include_raw=True).invoke("'dogs'")
    assert raw["parsed"] == Joke(setup="dogs", punchline="dogs")
    assert _served(raw["raw"]) == "large"
    assert small.calls == []


# -- 3. multi-turn routing and stickiness ----------------------------------------------------
def test_issue19_sticky_tool_loop_keeps_the_backend_and_records_why():
    chat = _chat().bind_tools([add_two, double, square])
    first = chat.invoke([HumanMessage(TASK)], haps_cost_weight=0.0)
    assert _served(first) == "large"
    turn = first.response_metadata["haps"]["turn"]
    assert (turn["sticky"], turn["index"], turn["in_tool_loop"]) == (False, 1, False)
    history = [HumanMessage(TASK), first, ToolMessage("5", tool_call_id=first.tool_calls[0]["id"])]
    # the cost weight changes mid-run: the router alone would now pick "small"
    second = chat.invoke(history, haps_cost_weight=100.0)
    assert _served(second) == "large"
    turn = second.response_metadata["haps"]["turn"]
    assert turn["sticky"] is True
    assert turn["router_backend"] == "small"
    assert turn["reason"] == "continues the tool loop served by 'large'"
    assert turn["features"]["tool_calls"] == 1
    assert turn["features"]["tool_results"] == 1
    assert turn["features"]["context_chars"] > len(TASK)
    # sticky=False: every turn is routed afresh
    loose = _chat(sticky=False).bind_tools([add_two, double, square])
    assert _served(loose.invoke(history, haps_cost_weight=100.0)) == "small"


def test_issue19_sticky_backend_that_fails_is_fallen_back_from():
    large = ToolCallingFake(tag="large")
    chat = _chat(large=large, max_attempts=1).bind_tools([add_two])
    first = chat.invoke([HumanMessage("add_two 1")], haps_cost_weight=0.0)
    large.errors.append(RateLimited("429"))
    history = [HumanMessage("add_two 1"), first, ToolMessage("3", tool_call_id=first.tool_calls[0]["id"])]
    second = chat.invoke(history, haps_cost_weight=0.0)
    record = second.response_metadata["haps"]
    assert record["turn"]["sticky"] is True
    assert record["served_by"]["backend"] == "small"
    assert record["fallback"] is True


# -- the agent -------------------------------------------------------------------------------
def _run_agent(chat: ChatHAPS, weight: float) -> list:
    from langgraph.prebuilt import create_react_agent

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # create_react_agent moved in langgraph 1
        agent = create_react_agent(chat, [add_two, double, square])
    out = agent.invoke(
        {"messages": [HumanMessage(TASK)]}, config={"configurable": {"haps_cost_weight": weight}}
    )
    return out["messages"]


def test_issue19_langgraph_agent_runs_a_3_step_tool_loop_on_one_backend_per_run():
    pytest.importorskip("langgraph.prebuilt")
    small, large = ToolCallingFake(tag="small"), ToolCallingFake(tag="large")
    chat = _chat(small=small, large=large)
    by_weight = {}
    for weight in (0.0, 100.0):
        messages = _run_agent(chat, weight)
        model_turns = [m for m in messages if isinstance(m, AIMessage)]
        tool_results = [m for m in messages if isinstance(m, ToolMessage)]
        assert [m.name for m in tool_results] == ["add_two", "double", "square"]
        assert [m.content for m in tool_results] == ["5", "10", "100"]
        assert len(model_turns) == 4
        assert model_turns[-1].content.endswith(": 100")
        served = {_served(m) for m in model_turns}
        assert len(served) == 1  # fixed within the run
        assert [m.response_metadata["haps"]["turn"]["sticky"] for m in model_turns] == [
            False,
            True,
            True,
            True,
        ]
        by_weight[weight] = served.pop()
    assert by_weight == {0.0: "large", 100.0: "small"}  # changes across runs with the cost weight
