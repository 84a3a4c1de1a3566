"""Issue 14, findings 9 (integrations) and 10 (the router's repr).

FAKE backends (`lc_fakes.EchoChatModel`, `li_fakes.EchoLLM`) and the FAKE rule-based router
(`fake_router.FakeRouter`: "large" wins at cost weight 0, "small" at 100); the LlamaIndex parts
run REAL query engines (`SummaryIndex`, `RouterQueryEngine`) over them.
"""

import logging

import pytest
from langchain_core.language_models import FakeListChatModel
from llama_index.core import Document, SummaryIndex
from llama_index.core.llms import MockLLM
from llama_index.core.query_engine import RouterQueryEngine
from llama_index.core.tools import QueryEngineTool
from tenacity import wait_none

from haps_core.dispatch import params as dispatch_params
from haps_integrations.langchain import ChatHAPS, HAPSRunnable
from haps_integrations.llamaindex import HAPSLLM, HAPSSelector, haps_decision
from tests.helpers.fake_router import FakeRouter
from tests.helpers.lc_fakes import EchoChatModel
from tests.helpers.li_fakes import EchoLLM, Unauthorized

CHEAP = {"configurable": {"haps_cost_weight": 100.0}}


def lc_backends() -> dict[str, EchoChatModel]:
    return {"small": EchoChatModel(tag="small"), "large": EchoChatModel(tag="large")}


def li_backends() -> dict[str, EchoLLM]:
    return {"small": EchoLLM(tag="small"), "large": EchoLLM(tag="large")}


def haps_llm(router: FakeRouter, **kwargs) -> HAPSLLM:
    return HAPSLLM(router=router, backends=li_backends(), retry_wait=wait_none(), **kwargs)


# -- finding 9: one set of per-call keys, checked ---------------------------------------------
def test_finding_9_chat_model_honours_the_configurable_cost_keys():
    router = FakeRouter()
    chat = ChatHAPS(router=router, backends=lc_backends(), retry_wait=wait_none())
    assert chat.invoke("hello").response_metadata["haps"]["backend"] == "large"
    msg = chat.invoke("hello", config=CHEAP)
    assert msg.response_metadata["haps"]["backend"] == "small"
    assert router.calls[-1]["cost_weight"] == 100.0
    assert [m.response_metadata["haps"]["backend"] for m in chat.batch(["a", "b"], config=CHEAP)] == [
        "small",
        "small",
    ]
    chunks = list(chat.stream("hello", config={"configurable": {"haps_max_cost_per_query": 0.001}}))
    assert chunks[0].response_metadata["haps"]["backend"] == "small"


async def test_finding_9_chat_model_reads_the_configurable_keys_async():
    chat = ChatHAPS(router=FakeRouter(), backends=lc_backends(), retry_wait=wait_none())
    msg = await chat.ainvoke("hello", config=CHEAP)
    assert msg.response_metadata["haps"]["backend"] == "small"


def test_finding_9_the_same_keys_on_all_three_classes():
    runnable = HAPSRunnable(router=FakeRouter(), backends=lc_backends(), retry_wait=wait_none())
    chat = ChatHAPS(router=FakeRouter(), backends=lc_backends(), retry_wait=wait_none())
    llm = haps_llm(FakeRouter())
    assert runnable.invoke("hi", config=CHEAP).response_metadata["haps"]["backend"] == "small"
    assert chat.invoke("hi", config=CHEAP).response_metadata["haps"]["backend"] == "small"
    assert llm.complete("hi", haps_cost_weight=100.0).additional_kwargs["haps"]["backend"] == "small"


def test_finding_9_unknown_haps_keys_warn_with_the_allowed_ones():
    typo = {"configurable": {"haps_cost_wieght": 100.0}}
    runnable = HAPSRunnable(router=FakeRouter(), backends=lc_backends(), retry_wait=wait_none())
    chat = ChatHAPS(router=FakeRouter(), backends=lc_backends(), retry_wait=wait_none())
    llm = haps_llm(FakeRouter())
    calls = [
        lambda: runnable.invoke("hi", config=typo),
        lambda: chat.invoke("hi", config=typo),
        lambda: chat.invoke("hi", haps_cost_wieght=100.0),
        lambda: llm.complete("hi", haps_cost_wieght=100.0),
    ]
    for call in calls:
        with pytest.warns(UserWarning, match="haps_cost_wieght") as caught:
            call()
        text = str(caught[0].message)
        assert "haps_cost_weight" in text and "haps_max_cost_per_query" in text
    # the misspelt key reaches no backend
    assert "haps_cost_wieght" not in chat.backends["large"].log[-1]["kwargs"]
    assert "haps_cost_wieght" not in llm.backends["large"].log[-1]["kwargs"]


# -- finding 9: what reached the model ---------------------------------------------------------
def test_finding_9_metadata_records_the_pinned_parameters_that_were_sent():
    chat = ChatHAPS(router=FakeRouter(), backends=lc_backends(), retry_wait=wait_none(), temperature=0.2)
    haps = chat.invoke("Write a creative poem").response_metadata["haps"]
    assert chat.backends["large"].log[-1]["temperature"] == 0.2
    assert haps["parameters"]["temperature"] == 0.2 and haps["temperature"] == 0.2
    assert haps["served_by"]["parameters"]["temperature"] == 0.2
    assert haps["router_parameters"]["temperature"] == 0.7
    assert haps["pinned"] == {"temperature": 0.2}
    plain = ChatHAPS(router=FakeRouter(), backends=lc_backends(), retry_wait=wait_none())
    unpinned = plain.invoke("Write a creative poem").response_metadata["haps"]
    assert unpinned["parameters"] == unpinned["router_parameters"] and "pinned" not in unpinned


def test_finding_9_unreachable_parameters_are_one_warning_for_the_pool(caplog, monkeypatch):
    monkeypatch.setattr(dispatch_params, "_WARNED", set())
    backends = {"small": FakeListChatModel(responses=["x"]), "large": FakeListChatModel(responses=["y"])}
    with caplog.at_level(logging.WARNING, logger="haps_core.dispatch.params"):
        HAPSRunnable(router=FakeRouter(), backends=backends)
    lines = [r.getMessage() for r in caplog.records if "reach the model" in r.getMessage()]
    assert len(lines) == 1, lines
    assert "'small'" in lines[0] and "'large'" in lines[0] and "temperature" in lines[0]


# -- finding 9: LlamaIndex query engines -------------------------------------------------------
DOCS = [Document(text="Background: this hard, hard text is context the router must not score.")]


def test_finding_9_query_engine_response_carries_the_decision():
    router = FakeRouter()
    engine = SummaryIndex.from_documents(DOCS).as_query_engine(llm=haps_llm(router))
    response = engine.query("What is the text about?")
    decision = haps_decision(response)
    assert decision is not None and decision == response.metadata["haps"]
    assert decision["backend"] in {"small", "large"}
    assert response.metadata["haps_calls"][-1] == decision
    assert str(response).startswith(decision["served_by"]["backend"])


async def test_finding_9_async_query_engine_response_carries_the_decision():
    engine = SummaryIndex.from_documents(DOCS).as_query_engine(llm=haps_llm(FakeRouter()))
    response = await engine.aquery("What is the text about?")
    assert haps_decision(response)["backend"] in {"small", "large"}


def test_finding_9_query_engine_routes_on_the_question_not_the_template():
    router = FakeRouter()
    llm = haps_llm(router, cost_weight=40.0)  # "small" wins unless the routed text says "hard"
    engine = SummaryIndex.from_documents(DOCS).as_query_engine(llm=llm)
    response = engine.query("What is the text about?")
    assert router.calls[-1]["texts"] == ["What is the text about?"]
    assert haps_decision(response)["backend"] == "small"
    assert "hard" in str(llm.backends["small"].log[-1]["messages"]), "the backend still gets the context"


def test_finding_9_selector_parameters_reach_the_chosen_haps_llm():
    router = FakeRouter()
    # the engines' own HAPSLLM would choose "small" at cost weight 100; the selector picks "large"
    tools = [
        QueryEngineTool.from_defaults(
            SummaryIndex.from_documents(DOCS).as_query_engine(llm=haps_llm(router, cost_weight=100.0)),
            name=name,
            description=f"the {name} model",
        )
        for name in ("small", "large")
    ]
    engine = RouterQueryEngine(
        selector=HAPSSelector(router, cost_weight=0.0), query_engine_tools=tools, llm=MockLLM()
    )
    response = engine.query("Write a creative poem")
    selection = response.metadata["selector_result"]
    decision = haps_decision(response)
    assert selection.backend == "large" and selection.parameters["temperature"] == 0.7
    assert decision["backend"] == "large" and decision["selected_by"] == "HAPSSelector"
    assert decision["parameters"] == selection.parameters
    assert router.calls == [], "the selection is served: no second routing"
    large_llm = tools[1].query_engine._response_synthesizer._llm
    assert large_llm.backends["large"].log[-1]["temperature"] == 0.7


def test_finding_9_a_selection_never_outlives_its_query():
    router = FakeRouter()
    failing = haps_llm(router)
    for backend in failing.backends.values():
        backend.errors.extend([Unauthorized("no key")] * 2)
    tools = [
        QueryEngineTool.from_defaults(
            SummaryIndex.from_documents(DOCS).as_query_engine(llm=failing), name=name, description=name
        )
        for name in ("small", "large")
    ]
    engine = RouterQueryEngine(selector=HAPSSelector(router), query_engine_tools=tools, llm=MockLLM())
    with pytest.raises(Exception, match="no key"):
        engine.query("Write a creative poem")
    answer = haps_llm(router, cost_weight=100.0).complete("Write a creative poem")
    assert "selected_by" not in answer.additional_kwargs["haps"]
    assert answer.additional_kwargs["haps"]["backend"] == "small", "routed again, not the old selection"


# -- finding 10: the router's repr -------------------------------------------------------------
def test_finding_10_router_repr_is_a_short_summary():
    from haps_core import HAPSRouter
    from haps_core.paths import default_router_dir

    router = HAPSRouter.from_folder(default_router_dir(), "cpu", False, True)
    text = repr(router)
    assert "\n" not in text and len(text) < 300, text
    assert text.startswith("HAPSRouter(")
    parts = ("9 backends", "162 actions", "static-minilm", "3 members x hidden 64", "trained on 1015 queries")
    for part in parts:
        assert part in text, text
    assert "ModuleList" not in text and "Linear" not in text
