"""HAPSRunnable with FAKE backends (`lc_fakes.EchoChatModel` & co.) and a FAKE rule-based router.

The router is `fake_router.FakeRouter` (rules on the text, not a model: the real router is tested
elsewhere); the backends are fake chat models that echo and record what reached them. What is
tested is the integration: routing, parameter application, prompt styles, retries and fallback,
batching, streaming, async paths, per-call cost settings and tracing.
"""

import asyncio

import pytest
from langchain_core.language_models import FakeListChatModel, GenericFakeChatModel
from langchain_core.messages import AIMessage, HumanMessage, SystemMessage
from langchain_core.output_parsers import StrOutputParser
from langchain_core.prompts import ChatPromptTemplate
from langchain_core.runnables import ConfigurableField
from langchain_core.tracers.context import collect_runs
from tenacity import wait_none

from haps_core.errors import AllBackendsFailedError
from haps_integrations.langchain import HAPSRunnable, extract_query_text
from tests.helpers.fake_router import COT_TEXT, FakeRouter, make_space
from tests.helpers.lc_fakes import EchoChatModel, Unauthorized


def backends(**overrides):
    b = {"small": EchoChatModel(tag="small"), "large": EchoChatModel(tag="large")}
    b.update(overrides)
    return b


@pytest.fixture
def router():
    return FakeRouter()


@pytest.fixture
def haps(router):
    return HAPSRunnable(router=router, backends=backends(), retry_wait=wait_none())


def haps_meta(message):
    return message.response_metadata["haps"]


# -- basic routing ------------------------------------------------------------------------------
def test_prompt_pipe_haps_pipe_parser(haps):
    chain = ChatPromptTemplate.from_messages([("human", "{question}")]) | haps | StrOutputParser()
    assert chain.invoke({"question": "What is 2 + 2?"}) == "large: What is 2 + 2?"


def test_invoke_applies_decision_and_reports_it(haps, router):
    msg = haps.invoke("Explain step by step: 17 * 23")
    meta = haps_meta(msg)
    assert (meta["backend"], meta["temperature"], meta["prompt_style"]) == ("large", 0.0, "cot")
    assert meta["served_by"] == {
        "backend": "large",
        "parameters": {"prompt_style": "cot", "temperature": 0.0},
    }
    assert meta["applied"] == {"temperature": "model_copy", "prompt_style": "system_message"}
    assert [a["error"] for a in meta["attempts"]] == [None]
    assert meta["fallback"] is False
    assert meta["alternatives"][0]["backend"] == "small"
    call = haps.backends["large"].log[-1]
    assert call["temperature"] == 0.0
    assert call["messages"][0] == SystemMessage(content=COT_TEXT)
    assert haps.backends["large"].temperature is None, "the shared backend must not be mutated"


def test_high_temperature_reaches_the_backend(haps):
    haps.invoke("Write a creative poem")
    assert haps.backends["large"].log[-1]["temperature"] == 0.7


def test_style_text_appended_to_existing_system_message(haps):
    haps.invoke([("system", "You are terse."), ("human", "Go step by step: 3 + 4")])
    sent = haps.backends["large"].log[-1]["messages"]
    assert sent[0] == SystemMessage(content=f"You are terse.\n\n{COT_TEXT}")
    assert len([m for m in sent if isinstance(m, SystemMessage)]) == 1


def test_default_style_adds_no_system_message(haps):
    haps.invoke("hello")
    assert not any(isinstance(m, SystemMessage) for m in haps.backends["large"].log[-1]["messages"])


def test_prompt_style_override(router):
    haps = HAPSRunnable(
        router=router, backends=backends(), prompt_styles={"cot": "Reason carefully."}, retry_wait=wait_none()
    )
    haps.invoke("step by step please")
    assert haps.backends["large"].log[-1]["messages"][0].content == "Reason carefully."


def test_routes_on_last_human_message_text(haps, router):
    multimodal = HumanMessage(
        content=[
            {"type": "text", "text": "describe"},
            {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}},
            {"type": "text", "text": "this hard picture"},
        ]
    )
    haps.invoke([HumanMessage(content="first"), AIMessage(content="ok"), multimodal])
    assert router.calls[-1]["texts"] == ["describe\nthis hard picture"]
    prompt_value = ChatPromptTemplate.from_messages([("human", "{q}")]).invoke({"q": "from a prompt"})
    haps.invoke(prompt_value)
    assert router.calls[-1]["texts"] == ["from a prompt"]


def test_no_human_message_is_an_error(haps):
    with pytest.raises(ValueError, match="last human message"):
        haps.invoke([SystemMessage(content="only a system message")])
    with pytest.raises(ValueError, match="last human message"):
        extract_query_text([AIMessage(content="x")])


def test_empty_query_text_is_an_error(haps):
    image_only = HumanMessage(
        content=[{"type": "image_url", "image_url": {"url": "data:image/png;base64,AA"}}]
    )
    with pytest.raises(ValueError, match="text, which is empty"):
        haps.invoke([image_only])


def test_invoke_kwargs_are_forwarded(haps):
    haps.bind(stop=["\n"]).invoke("hello")
    assert haps.backends["large"].log[-1]["stop"] == ["\n"]


# -- cost settings ------------------------------------------------------------------------------
def test_configurable_cost_weight_changes_decisions(haps, router):
    assert haps_meta(haps.invoke("hello"))["backend"] == "large"
    cheap = haps.invoke("hello", config={"configurable": {"haps_cost_weight": 40.0}})
    assert haps_meta(cheap)["backend"] == "small"
    assert router.calls[-1]["cost_weight"] == 40.0
    hard = haps.invoke("a hard question", config={"configurable": {"haps_cost_weight": 40.0}})
    assert haps_meta(hard)["backend"] == "large"


def test_configurable_fields_and_field_default(router):
    haps = HAPSRunnable(router=router, backends=backends(), cost_weight=100.0, retry_wait=wait_none())
    assert haps_meta(haps.invoke("hello"))["backend"] == "small"
    conf = haps.configurable_fields(cost_weight=ConfigurableField(id="haps_cost_weight"))
    assert (
        haps_meta(conf.invoke("hello", config={"configurable": {"haps_cost_weight": 0.0}}))["backend"]
        == "large"
    )
    assert haps_meta(conf.invoke("hello"))["backend"] == "small"


def test_router_default_cost_weight_is_used(router):
    router.default_cost_weight = 100.0
    haps = HAPSRunnable(router=router, backends=backends())
    assert haps_meta(haps.invoke("hello"))["backend"] == "small"
    assert router.calls[-1]["cost_weight"] == 100.0


def test_max_cost_per_query(haps, router):
    msg = haps.invoke("hello", config={"configurable": {"haps_max_cost_per_query": 0.005}})
    assert haps_meta(msg)["backend"] == "small"
    assert haps_meta(msg)["max_cost_per_query"] == 0.005
    assert router.calls[-1]["max_cost_per_query"] == 0.005
    assert router.calls[-1]["cost_weight"] is None, "with only a budget the router calibrates lambda"


def test_budget_is_a_cap_per_query_not_a_mean_over_the_batch(haps, router):
    """FAKE router, REAL decision routine: ``max_cost_per_query`` is a hard cap on each query's
    predicted cost, as for a trained router (issue 14): no query of the batch may exceed it."""
    inputs = ["a hard one", "another hard one"] + [f"easy {i}" for i in range(8)]
    outs = haps.batch(inputs, config={"configurable": {"haps_max_cost_per_query": 0.003}})
    assert len(router.calls) == 1
    # a cap of 0.003 on each query sends every query to "small" (0.001 vs 0.01 USD)
    assert [haps_meta(m)["backend"] for m in outs] == ["small"] * 10
    costs = [haps_meta(m)["predicted_cost"] for m in outs]
    assert max(costs) <= 0.003


BUDGET_QUERIES = [
    "Who wrote Hamlet? #3",
    "Compute 17 * 23 + 4 and explain #5",
    "the cat sat on the mat",
    "Compute 2 + 2 #8",
    "Who wrote Faust? #9",
]


def test_budget_through_haps_runnable_is_the_real_routers_choice(real_router):
    """REAL tiny trained router, FAKE echo backends: under ``max_cost_per_query`` the integration
    chooses exactly what ``router.route(...)`` chooses (one query: calibrated on the router's
    reference queries, also in a batch), per call, per batch and as an instance setting."""
    backends = {name: EchoChatModel(tag=name) for name in real_router.space.backend_names}
    haps = HAPSRunnable(router=real_router, backends=backends, retry_wait=wait_none())
    seen = set()
    for budget in (3e-4, 6e-4, 1e-3, 2e-3, 1.0):
        config = {"configurable": {"haps_max_cost_per_query": budget}}
        expected = real_router.route(BUDGET_QUERIES, max_cost_per_query=budget)
        outs = haps.batch(BUDGET_QUERIES, config=config)
        assert [(haps_meta(m)["action_index"], haps_meta(m)["cost_weight"]) for m in outs] == [
            (d.action_index, d.cost_weight) for d in expected
        ]
        instance = HAPSRunnable(router=real_router, backends=backends, max_cost_per_query=budget)
        assert [d.action_index for d in instance.route(BUDGET_QUERIES)] == [d.action_index for d in expected]
        for query in BUDGET_QUERIES:
            (one,) = real_router.route([query], max_cost_per_query=budget)
            message = haps.invoke(query, config=config)
            assert (haps_meta(message)["action_index"], message.content) == (
                one.action_index,
                f"{one.backend}: {query}",
            )
            seen.add(one.action_index)
        seen.update(d.action_index for d in expected)
    assert len(seen) > 1, "the budgets must change the choice, or the comparison means nothing"


def test_per_call_setting_replaces_the_instance_setting(router):
    haps = HAPSRunnable(router=router, backends=backends(), cost_weight=0.0)
    msg = haps.invoke("hello", config={"configurable": {"haps_max_cost_per_query": 0.005}})
    assert haps_meta(msg)["backend"] == "small"
    assert (router.calls[-1]["cost_weight"], router.calls[-1]["max_cost_per_query"]) == (None, 0.005)


def test_cost_weight_and_budget_together_are_an_error(haps, router):
    # a cost weight and a target mean cost exclude each other; the hard cap combines with either
    with pytest.raises(ValueError, match="either `cost_weight` .* or `target_mean_cost`"):
        HAPSRunnable(router=router, backends=backends(), cost_weight=1.0, target_mean_cost=0.01)
    both = {"haps_cost_weight": 1.0, "haps_target_mean_cost": 0.01}
    with pytest.raises(ValueError, match="not both"):
        haps.invoke("hello", config={"configurable": both})


@pytest.mark.parametrize(
    ("value", "error", "match"),
    [(-1.0, ValueError, "haps_cost_weight.*>= 0.*-1.0"), ("cheap", TypeError, "haps_cost_weight.*'cheap'")],
)
def test_bad_cost_weight_is_a_clear_error(haps, value, error, match):
    with pytest.raises(error, match=match):
        haps.invoke("hello", config={"configurable": {"haps_cost_weight": value}})


def test_bad_fields_are_clear_errors(router):
    with pytest.raises(ValueError, match="cost_weight.*-2"):
        HAPSRunnable(router=router, backends=backends(), cost_weight=-2)
    with pytest.raises(ValueError, match="max_attempts.*0"):
        HAPSRunnable(router=router, backends=backends(), max_attempts=0)


# -- construction -------------------------------------------------------------------------------
def test_a_pool_smaller_than_the_catalog_routes_within_it(router, caplog, monkeypatch):
    # issue 14: a subset of the catalog is a pool (one warning names what it lacks), not an error
    from haps_core.dispatch import routing

    monkeypatch.setattr(routing, "_POOL_WARNED", set())  # once per process: earlier tests built this pool
    caplog.set_level("WARNING", logger="haps_core")
    haps = HAPSRunnable(router=router, backends={"large": EchoChatModel(tag="large")})
    assert any("without a runnable (never chosen): ['small']" in r.getMessage() for r in caplog.records)
    assert (
        haps_meta(haps.invoke("easy", config={"configurable": {"haps_cost_weight": 1e4}}))["backend"]
        == "large"
    )


def test_extra_backend_is_an_error(router):
    with pytest.raises(ValueError, match=r"without a catalog entry: \['tiny'\].*cannot route to \['tiny'\]"):
        HAPSRunnable(router=router, backends=backends(tiny=EchoChatModel(tag="tiny")))


def test_not_a_router_or_not_a_runnable(router):
    with pytest.raises(TypeError, match="router"):
        HAPSRunnable(router=object(), backends=backends())
    with pytest.raises(TypeError, match=r"backends\['small'\]"):
        HAPSRunnable(router=router, backends=backends(small="not a model"))


def test_style_without_text_is_an_error():
    router = FakeRouter(make_space(styles=("default", "mystery")))
    with pytest.raises(ValueError, match=r"\['mystery'\].*prompt_styles"):
        HAPSRunnable(router=router, backends=backends())
    HAPSRunnable(router=router, backends=backends(), prompt_styles={"mystery": "Be mysterious."})


# -- check_backends -----------------------------------------------------------------------------
def test_check_backends_is_honest(router):
    haps = HAPSRunnable(
        router=router,
        backends={
            "small": FakeListChatModel(responses=["x"]),  # no temperature field at all
            "large": EchoChatModel(tag="large"),
        },
    )
    report = haps.check_backends()
    assert report["small"]["temperature"]["mechanism"] == "not_applied"
    assert report["small"]["temperature"]["reaches_model"] is False
    assert report["large"]["temperature"] == {
        "mechanism": "model_copy",
        "reaches_model": True,
        "detail": report["large"]["temperature"]["detail"],
    }
    assert report["large"]["prompt_style"]["mechanism"] == "system_message"
    msg = haps.invoke("hello", config={"configurable": {"haps_cost_weight": 100.0}})
    assert haps_meta(msg)["applied"]["temperature"] == "not_applied"


def test_check_backends_configurable_and_forwarded_kwargs(router):
    configurable = EchoChatModel(tag="large").configurable_fields(
        temperature=ConfigurableField(id="large_temperature")
    )
    generic = GenericFakeChatModel(messages=iter(["a", "b"]))
    haps = HAPSRunnable(
        router=router,
        backends={"small": generic, "large": configurable},
        forwards_kwargs=["small"],
        retry_wait=wait_none(),
    )
    report = haps.check_backends()
    assert report["large"]["temperature"]["mechanism"] == "configurable"
    assert report["small"]["temperature"]["mechanism"] == "invoke_kwargs"
    msg = haps.invoke("Write a creative poem")
    assert haps_meta(msg)["applied"]["temperature"] == "configurable"
    assert configurable.default.log[-1]["temperature"] == 0.7
    with pytest.raises(ValueError, match="forwards_kwargs.*nope"):
        HAPSRunnable(router=router, backends=backends(), forwards_kwargs=["nope"])


def test_bound_backend_gets_parameters_inside_the_binding(router):
    bound = EchoChatModel(tag="large").bind(stop=["END"])
    haps = HAPSRunnable(router=router, backends=backends(large=bound))
    assert haps.check_backends()["large"]["temperature"]["mechanism"] == "model_copy"
    haps.invoke("Write a creative poem")
    call = bound.bound.log[-1]
    assert (call["temperature"], call["stop"]) == (0.7, ["END"])


# -- retries and fallback -----------------------------------------------------------------------
def test_max_backends_limits_fallback(router):
    haps = HAPSRunnable(
        router=router,
        backends=backends(large=EchoChatModel(tag="large", errors=[Unauthorized("no")])),
        max_backends=1,
    )
    with pytest.raises(AllBackendsFailedError, match="all 1 attempt"):
        haps.invoke("hello")


# -- batch --------------------------------------------------------------------------------------
def test_batch_routes_in_one_pass_and_keeps_order(haps, router):
    inputs = [f"question {i}" + (" hard" if i % 2 else "") for i in range(7)]
    outs = haps.batch(inputs, config={"configurable": {"haps_cost_weight": 40.0}, "max_concurrency": 3})
    assert len(router.calls) == 1
    assert router.calls[0]["texts"] == inputs
    assert [m.content for m in outs] == [
        f"{'large' if i % 2 else 'small'}: {x}" for i, x in enumerate(inputs)
    ]


def test_batch_return_exceptions(haps, router):
    inputs = ["fine", [SystemMessage(content="no human")], "also fine"]
    outs = haps.batch(inputs, return_exceptions=True)
    assert isinstance(outs[1], ValueError)
    assert [outs[0].content, outs[2].content] == ["large: fine", "large: also fine"]
    assert len(router.calls) == 1
    with pytest.raises(ValueError, match="last human message"):
        haps.batch(inputs)


def test_batch_per_input_configs_group_by_cost_weight(haps, router):
    configs = [{"configurable": {"haps_cost_weight": w}} for w in (0.0, 100.0, 0.0)]
    outs = haps.batch(["a", "b", "c"], config=configs)
    assert [haps_meta(m)["backend"] for m in outs] == ["large", "small", "large"]
    assert len(router.calls) == 2


# -- streaming ----------------------------------------------------------------------------------
def test_stream_passes_chunks_through_as_they_come(haps):
    events = haps.backends["large"].events
    chunks = []
    for chunk in haps.stream("one two three four"):
        events.append(f"consumed {len(chunks)}")
        chunks.append(chunk)
    text = "".join(c.content for c in chunks)
    assert text == "large: one two three four"
    # each chunk reached the consumer before the backend produced the next one
    assert events[:6] == ["produced 0", "consumed 0", "produced 1", "consumed 1", "produced 2", "consumed 2"]
    assert chunks[0].response_metadata["haps"]["backend"] == "large"


# -- async --------------------------------------------------------------------------------------
async def test_ainvoke(haps):
    msg = await haps.ainvoke("Write a creative poem")
    assert msg.content == "large: Write a creative poem"
    assert haps_meta(msg)["temperature"] == 0.7


async def test_abatch_one_router_pass(haps, router):
    outs = await haps.abatch(["a", "b hard", "c"], config={"configurable": {"haps_cost_weight": 40.0}})
    assert [m.content for m in outs] == ["small: a", "large: b hard", "small: c"]
    assert len(router.calls) == 1


async def test_abatch_200_concurrent_inputs_keep_order(router):
    haps = HAPSRunnable(
        router=router,
        backends={
            "small": EchoChatModel(tag="small", delay=0.02),
            "large": EchoChatModel(tag="large", delay=0.02),
        },
    )
    inputs = [f"q{i}" + (" hard" if i % 3 == 0 else "") for i in range(200)]
    outs = await haps.abatch(
        inputs, config={"max_concurrency": 64, "configurable": {"haps_cost_weight": 40.0}}
    )
    assert len(outs) == 200
    assert [m.content.split(": ", 1)[1] for m in outs] == inputs
    assert all(m.content.startswith("large" if "hard" in x else "small") for m, x in zip(outs, inputs))
    assert len(router.calls) == 1
    assert len(haps.backends["small"].log) + len(haps.backends["large"].log) == 200


async def test_abatch_return_exceptions(router):
    haps = HAPSRunnable(
        router=router,
        backends=backends(large=EchoChatModel(tag="large", errors=[Unauthorized("x")])),
        max_backends=1,
        retry_wait=wait_none(),
    )
    outs = await haps.abatch(["a", "b"], return_exceptions=True)
    assert sum(isinstance(o, AllBackendsFailedError) for o in outs) == 1


async def test_astream(haps):
    chunks = [c async for c in haps.astream("one two")]
    assert [c.content for c in chunks][:3] == ["large:", " one", " two"]
    assert chunks[0].response_metadata["haps"]["backend"] == "large"


async def test_astream_events(haps):
    kinds = [e["event"] async for e in haps.astream_events("one two", version="v2")]
    assert kinds[0] == "on_chain_start"
    assert "on_chat_model_stream" in kinds
    assert kinds[-1] == "on_chain_end"


async def test_concurrent_ainvoke_share_no_state(haps):
    outs = await asyncio.gather(*(haps.ainvoke(f"q{i}") for i in range(20)))
    assert [m.content for m in outs] == [f"large: q{i}" for i in range(20)]


# -- tracing ------------------------------------------------------------------------------------
def test_backend_is_a_tagged_child_run(haps):
    with collect_runs() as cb:
        haps.with_config(run_name="my-router", metadata={"user": "u1"}).invoke("Write a creative poem")
    (root,) = [r for r in cb.traced_runs if r.parent_run_id is None]
    assert root.name == "my-router"
    (child,) = root.child_runs
    assert "haps:large" in child.tags
    assert child.extra["metadata"]["haps_backend"] == "large"
    assert child.extra["metadata"]["haps_temperature"] == 0.7
    assert child.extra["metadata"]["haps_applied"]["temperature"] == "model_copy"
    assert child.extra["metadata"]["user"] == "u1"
