"""HAPSSelector in a real `RouterQueryEngine`.

Most tests use FAKE parts: the rule-based `fake_router.FakeRouter`, whose ``predict`` the
selector reads ("large" wins at cost weight 0; at cost weight 40 "small" wins unless the query
says "hard"; at 100 "small" always wins) and `li_fakes.StubQueryEngine` query
engines. `MockLLM` is passed as the engine's ``llm`` (it is only used to summarise multiple
selections, which HAPS never makes; without it the engine would try to import OpenAI).

One test uses a REAL `HAPSRouter` (conftest.py's ``real_router``: a tiny randomly initialised
BERT encoder trained for a few epochs on the synthetic log of tests/helpers/logs.py), and checks
that the selection is the argmax of that router's own predicted utility.
"""

import json

import numpy as np
import pytest
from llama_index.core.base.base_selector import SelectorResult
from llama_index.core.llms import MockLLM
from llama_index.core.query_engine import RouterQueryEngine
from llama_index.core.schema import QueryBundle
from llama_index.core.tools import QueryEngineTool, ToolMetadata

from haps_core.decision import utilities
from haps_integrations.llamaindex import HAPSSelector, HAPSSelectorResult
from tests.helpers.fake_router import FakeRouter
from tests.helpers.li_fakes import StubQueryEngine


def tools(names=("small", "large")) -> list[QueryEngineTool]:
    return [
        QueryEngineTool.from_defaults(
            StubQueryEngine(answer=f"{n} engine"), name=n, description=f"the {n} model"
        )
        for n in names
    ]


def choices(names=("small", "large")) -> list[ToolMetadata]:
    return [t.metadata for t in tools(names)]


def engine(selector: HAPSSelector, names=("small", "large")) -> RouterQueryEngine:
    return RouterQueryEngine(selector=selector, query_engine_tools=tools(names), llm=MockLLM())


def selected(response) -> HAPSSelectorResult:
    result = response.metadata["selector_result"]
    assert isinstance(result, HAPSSelectorResult) and isinstance(result, SelectorResult)
    return result


def test_choice_changes_with_the_query_and_the_cost_weight():
    selector = HAPSSelector(FakeRouter(), cost_weight=40.0)
    router_engine = engine(selector)
    easy = router_engine.query("an easy question")
    assert str(easy) == "small engine <- an easy question"
    assert selected(easy).backend == "small" and selected(easy).ind == 0
    hard = router_engine.query("a hard question")
    assert str(hard) == "large engine <- a hard question"
    assert selected(hard).ind == 1
    selector.cost_weight = 0.0  # quality only: "large" for everything
    assert selected(router_engine.query("an easy question")).backend == "large"
    selector.cost_weight = 100.0  # cost dominates: "small" even for the hard one
    assert selected(router_engine.query("a hard question")).backend == "small"


def test_result_carries_the_chosen_parameters_and_every_candidate():
    selector = HAPSSelector(FakeRouter(), cost_weight=40.0)
    result = selector.select(choices(), "something creative, step by step")
    assert result.backend == "small"
    assert result.parameters == {"prompt_style": "cot", "temperature": 0.7}
    assert (result.temperature, result.prompt_style) == (0.7, "cot")
    assert result.predicted_quality == pytest.approx(0.68)
    assert result.predicted_cost == pytest.approx(0.001)
    assert result.cost_weight == 40.0
    assert "'small'" in result.reason and "best predicted utility" in result.reason
    by_backend = {c["backend"]: c for c in result.candidates}
    assert by_backend["small"]["utility"] == pytest.approx(0.68 - 40 * 0.001)
    assert by_backend["large"]["utility"] == pytest.approx(0.98 - 40 * 0.01)
    decision = result.to_decision()
    assert (decision.backend, decision.parameters) == ("small", result.parameters)
    assert [a.backend for a in decision.alternatives] == ["large"]
    json.dumps(result.model_dump())  # plain pydantic, JSON-ready


def test_with_cost_weight_is_a_new_selector_and_default_comes_from_the_router():
    router = FakeRouter(default_cost_weight=40.0)
    selector = HAPSSelector(router)
    assert selector.select(choices(), "easy").backend == "small"
    free = selector.with_cost_weight(0.0)
    assert free.select(choices(), "easy").backend == "large"
    assert selector.cost_weight is None and free.cost_weight == 0.0
    with pytest.raises(ValueError, match="cost_weight"):
        selector.cost_weight = -1.0


def test_only_the_offered_backends_compete():
    selector = HAPSSelector(FakeRouter(), cost_weight=0.0)
    result = selector.select(choices(("small",)), "a hard question")
    assert (result.ind, result.backend) == (0, "small")


def test_choices_must_be_named_after_backends():
    selector = HAPSSelector(FakeRouter())
    with pytest.raises(ValueError) as err:
        selector.select(
            [ToolMetadata(name="small", description="s"), ToolMetadata(name="gpt", description="g")], "q"
        )
    assert "choice 1: 'gpt'" in str(err.value) and "Known backends: ['large', 'small']" in str(err.value)
    with pytest.raises(ValueError, match="choice 0: None"):  # plain strings carry no name
        selector.select(["the small model"], "q")
    with pytest.raises(ValueError, match="more than once"):
        selector.select(
            [ToolMetadata(name="small", description="a"), ToolMetadata(name="small", description="b")], "q"
        )
    with pytest.raises(ValueError, match="empty query"):
        selector.select(choices(), QueryBundle(query_str="  "))
    with pytest.raises(TypeError, match="has no `.predict`"):
        HAPSSelector(object.__new__(type("R", (), {"space": None})))


def test_prompts_are_empty():
    selector = HAPSSelector(FakeRouter())
    assert selector.get_prompts() == {}
    selector.update_prompts({})


async def test_async_router_query_engine():
    router_engine = engine(HAPSSelector(FakeRouter(), cost_weight=40.0))
    response = await router_engine.aquery("a hard question")
    assert selected(response).backend == "large"
    assert str(response) == "large engine <- a hard question"


# -- a REAL (tiny) HAPSRouter (conftest.py: `real_router`) ------------------------------------
QUERIES = ["Who wrote Hamlet? #3", "Compute 17 * 23 + 4 and explain #5", "the cat sat on the mat"]


@pytest.mark.parametrize("cost_weight", [0.0, 30.0, 1e6])
def test_real_router_selection_is_the_argmax_of_its_predicted_utility(real_router, cost_weight):
    router_engine = engine(HAPSSelector(real_router, cost_weight=cost_weight))
    quality, cost = real_router.predict(QUERIES)
    results = [selected(router_engine.query(query)) for query in QUERIES]
    for i, result in enumerate(results):
        u = utilities(quality[i], cost[i], cost_weight)
        best = int(np.argmax(u))
        assert result.action_index == best, (QUERIES[i], u)
        assert result.backend == real_router.space.actions[best].backend
        assert result.parameters == real_router.space.actions[best].parameters
        assert result.predicted_quality == pytest.approx(float(quality[i, best]), rel=1e-5)
        assert result.predicted_cost == pytest.approx(float(cost[i, best]), rel=1e-5)
    # with every backend offered, the selector agrees with the router's own `route`
    decisions = real_router.route(QUERIES, cost_weight=cost_weight)
    assert [r.action_index for r in results] == [d.action_index for d in decisions]
    if cost_weight == 1e6:  # cost dominates: the cheapest action
        assert [r.action_index for r in results] == list(cost.argmin(1))
