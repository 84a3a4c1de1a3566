"""HAPSLLM with FAKE parts: the rule-based `fake_router.FakeRouter` and `li_fakes.EchoLLM` backends.

The fake router (see fake_router.py) sends "hard" queries to "large" and others to "small" at
cost weight 40, always "large" at 0; temperature 0.7 for "creative" queries, else 0.0; the "cot"
prompt style for queries containing "step". EchoLLM records what reached it (method, messages or
prompt, its ``temperature`` field, call kwargs), so the assertions are about the backend's inputs.
"""

import asyncio
import json

import pytest
from llama_index.core.base.llms.types import ChatMessage, ImageBlock, MessageRole, TextBlock
from llama_index.core.callbacks import CallbackManager, CBEventType, EventPayload, LlamaDebugHandler
from llama_index.core.llms import LLM, MockLLM
from tenacity import wait_none

from haps_core.errors import AllBackendsFailedError, RoutingError
from haps_integrations.llamaindex import HAPSLLM, extract_query_text
from tests.helpers.fake_router import COT_TEXT, FakeRouter, make_space
from tests.helpers.li_fakes import EchoLLM, NoAsyncLLM, Unauthorized

IMAGE = "http://example.invalid/y.png"  # never fetched: HAPS skips non-text blocks


def user(text: str) -> ChatMessage:
    return ChatMessage(role=MessageRole.USER, content=text)


@pytest.fixture
def backends() -> dict[str, EchoLLM]:
    return {
        "small": EchoLLM(tag="small", context_window=2048, num_output=128),
        "large": EchoLLM(tag="large", context_window=8192, num_output=512),
    }


@pytest.fixture
def router() -> FakeRouter:
    return FakeRouter()


def make(router, backends, **kwargs) -> HAPSLLM:
    return HAPSLLM(router=router, backends=backends, retry_wait=wait_none(), **kwargs)


# -- construction -------------------------------------------------------------------------------
def test_is_a_llamaindex_llm_with_honest_metadata(router, backends):
    llm = make(router, backends)
    assert isinstance(llm, LLM)
    assert HAPSLLM(router, backends).backends.keys() == backends.keys()  # positional form
    meta = llm.metadata
    assert meta.context_window == 2048  # the smallest of the pool
    assert meta.num_output == 128
    assert meta.is_chat_model is True
    assert meta.model_name == "haps"


def test_metadata_ignores_unknown_output_budgets(router):
    # MockLLM reports num_output=-1 ("unknown") without max_tokens: not a real minimum
    llm = make(router, {"small": MockLLM(), "large": EchoLLM(tag="large", num_output=64)})
    assert llm.metadata.num_output == 64


def test_pool_must_be_known_to_the_catalog_and_the_error_names_the_unknown(router, backends):
    with pytest.raises(ValueError) as err:
        make(router, {"small": backends["small"], "medium": EchoLLM(tag="medium")})
    text = str(err.value)
    assert "LLMs not in the catalog: ['medium']" in text
    assert "cannot route to ['medium']" in text and "retrain" in text


def test_construction_errors(router, backends):
    with pytest.raises(TypeError, match="has no `.space`"):
        HAPSLLM(object(), backends)
    with pytest.raises(ValueError, match="not both"):
        make(router, backends, cost_weight=1.0, target_mean_cost=0.01)
    with pytest.raises(ValueError, match="cost_weight"):
        make(router, backends, cost_weight=-1.0)
    with pytest.raises(ValueError, match="max_attempts"):
        make(router, backends, max_attempts=0)
    with pytest.raises(ValueError, match="empty"):
        make(router, {})
    with pytest.raises(TypeError, match="must be a dict"):
        HAPSLLM(router, [backends["small"]])
    no_text = FakeRouter(make_space(styles=("default", "mystery")))
    with pytest.raises(ValueError, match=r"prompt styles \['mystery'\]"):
        make(no_text, backends)
    assert make(no_text, backends, prompt_styles={"mystery": "Be mysterious."})


def test_llms_is_the_deprecated_name_of_backends(router, backends):
    with pytest.warns(DeprecationWarning, match=r"`llms=` is deprecated: use `backends=`"):
        llm = HAPSLLM(router=router, llms=backends)
    assert llm.backends == backends
    with pytest.warns(DeprecationWarning, match=r"`\.llms` is deprecated"):
        assert llm.llms == backends
    with pytest.warns(DeprecationWarning, match=r"`check_llms\(\)` is deprecated: use `check_backends\(\)`"):
        assert llm.check_llms() == llm.check_backends()
    with pytest.raises(TypeError, match="not both"):
        HAPSLLM(router=router, backends=backends, llms=backends)


# -- routing and parameters ---------------------------------------------------------------------
def test_chat_routes_applies_parameters_and_returns_the_decision(router, backends):
    llm = make(router, backends, cost_weight=40.0)
    response = llm.chat([user("an easy question")])
    assert response.message.content == "small: an easy question"
    haps = response.additional_kwargs["haps"]
    assert (haps["backend"], haps["temperature"], haps["prompt_style"]) == ("small", 0.0, "default")
    assert haps["cost_weight"] == 40.0
    assert haps["applied"] == {"temperature": "model_copy", "prompt_style": "default"}
    assert haps["served_by"]["backend"] == "small" and haps["fallback"] is False
    assert [a["backend"] for a in haps["attempts"]] == ["small"]
    json.dumps(haps)  # JSON-ready
    (call,) = backends["small"].log
    assert call["method"] == "chat" and call["temperature"] == 0.0
    assert backends["large"].log == []
    # the hard query goes to "large"; a creative one gets temperature 0.7 on a per-call copy
    assert llm.chat([user("a hard one")]).additional_kwargs["haps"]["backend"] == "large"
    llm.chat([user("something creative")])
    assert backends["small"].log[-1]["temperature"] == 0.7
    assert backends["small"].temperature is None  # the shared instance is never mutated


def test_prompt_style_is_a_system_message_in_chat_and_a_prefix_in_complete(router, backends):
    llm = make(router, backends, cost_weight=40.0)
    llm.chat([user("explain step by step")])
    messages = backends["small"].log[-1]["messages"]
    assert [m.role for m in messages] == [MessageRole.SYSTEM, MessageRole.USER]
    assert messages[0].content == COT_TEXT
    # an existing system message keeps its text first and gains the style's
    given = [ChatMessage(role=MessageRole.SYSTEM, content="You are terse."), user("go step by step")]
    llm.chat(given)
    messages = backends["small"].log[-1]["messages"]
    assert len(messages) == 2 and messages[0].content == f"You are terse.\n\n{COT_TEXT}"
    assert given[0].content == "You are terse."  # the caller's messages are not modified
    response = llm.complete("step by step: 2 + 2")
    assert backends["small"].log[-1]["prompt"] == f"{COT_TEXT}\n\nstep by step: 2 + 2"
    assert response.additional_kwargs["haps"]["applied"]["prompt_style"] == "prompt_prefix"


def test_routes_on_the_last_user_message_text_parts(router, backends):
    llm = make(router, backends, cost_weight=40.0)
    messages = [
        ChatMessage(role=MessageRole.SYSTEM, content="This is hard, be careful."),  # not routed on
        user("earlier, hard"),
        ChatMessage(role=MessageRole.ASSISTANT, content="ok"),
        ChatMessage(
            role=MessageRole.USER,
            blocks=[
                TextBlock(text="look at this"),
                ImageBlock(url="http://x/y.png"),
                TextBlock(text="picture"),
            ],
        ),
    ]
    response = llm.chat(messages)
    assert router.calls[-1]["texts"] == ["look at this\npicture"]
    assert response.additional_kwargs["haps"]["backend"] == "small"
    with pytest.raises(ValueError, match="no text parts"):
        extract_query_text([ChatMessage(role=MessageRole.USER, blocks=[ImageBlock(url=IMAGE)])])
    with pytest.raises(ValueError, match="has none"):
        llm.chat([ChatMessage(role=MessageRole.SYSTEM, content="hi")])


def test_routing_text_picks_the_query_out_of_a_template(router, backends):
    def query_only(messages):
        return extract_query_text(messages).rsplit("Query:", 1)[-1]

    llm = make(router, backends, cost_weight=40.0, routing_text=query_only)
    response = llm.chat([user("Context: this is hard material.\nQuery: an easy question\nAnswer:")])
    assert router.calls[-1]["texts"] == [" an easy question\nAnswer:"]
    assert response.additional_kwargs["haps"]["backend"] == "small"


def test_cost_weight_per_call_and_with_cost_weight(router, backends):
    llm = make(router, backends)  # router default: 0 -> "large"
    assert llm.chat([user("easy")]).additional_kwargs["haps"]["backend"] == "large"
    response = llm.chat([user("easy")], haps_cost_weight=40.0, top_k=3)
    assert response.additional_kwargs["haps"]["backend"] == "small"
    assert backends["small"].log[-1]["kwargs"] == {"top_k": 3}  # HAPS's own kwargs are not forwarded
    cheap = llm.with_cost_weight(100.0)
    assert cheap.complete("hard").additional_kwargs["haps"]["backend"] == "small"
    assert llm.cost_weight is None  # the original is unchanged
    llm.chat([user("easy")], haps_max_cost_per_query=0.005)
    assert router.calls[-1]["max_cost_per_query"] == 0.005 and router.calls[-1]["cost_weight"] is None
    with pytest.raises(ValueError, match="not both"):
        llm.chat([user("easy")], haps_cost_weight=1.0, haps_target_mean_cost=0.1)
    assert llm.route("a hard one", cost_weight=40.0).backend == "large"


def test_not_applied_parameters_are_reported_honestly(router, caplog):
    llm = make(router, {"small": MockLLM(), "large": EchoLLM(tag="large")})
    report = llm.check_backends()
    assert report["small"]["temperature"] == {
        "mechanism": "not_applied",
        "reaches_model": False,
        "detail": "no known way to pass it to this LLM: it does NOT reach the model",
    }
    assert report["large"]["temperature"]["mechanism"] == "model_copy"
    assert report["large"]["prompt_style"]["mechanism"] == "system_message"
    response = llm.chat([user("easy")], haps_cost_weight=100.0)
    assert response.additional_kwargs["haps"]["applied"]["temperature"] == "not_applied"


def test_decision_reaches_llamaindex_callbacks(router, backends):
    debug = LlamaDebugHandler()
    llm = make(router, backends, callback_manager=CallbackManager([debug]))
    llm.chat([user("hello")])
    ((start, end),) = debug.get_event_pairs(CBEventType.LLM)
    assert end.payload[EventPayload.RESPONSE].additional_kwargs["haps"]["backend"] == "large"


# -- retries and fallback -----------------------------------------------------------------------
def test_max_backends_limits_the_fallback(router, backends):
    backends["large"].errors.append(Unauthorized("bad key"))
    with pytest.raises(AllBackendsFailedError):
        make(router, backends, max_backends=1).chat([user("hello")])
    assert backends["small"].log == []


def test_router_naming_an_unknown_backend_is_a_routing_error(backends):
    class Liar(FakeRouter):
        def route(self, texts, cost_weight=None, max_cost_per_query=None):
            (d,) = super().route(texts, cost_weight, max_cost_per_query)
            return [type(d)("ghost", {}, 0.5, 0.0, 0.0, 0)]

    with pytest.raises(RoutingError, match="ghost"):
        make(Liar(), backends).chat([user("hello")])


# -- streaming ----------------------------------------------------------------------------------
def test_stream_chat_passes_chunks_through_with_the_decision(router, backends):
    chunks = list(make(router, backends).stream_chat([user("hello there")]))
    assert [c.delta for c in chunks] == ["large:", " hello", " there"]
    assert chunks[-1].message.content == "large: hello there"
    assert all(c.additional_kwargs["haps"]["backend"] == "large" for c in chunks)
    assert backends["large"].log[-1]["method"] == "stream_chat"


def test_stream_complete(router, backends):
    chunks = list(make(router, backends, cost_weight=40.0).stream_complete("hi you"))
    assert chunks[-1].text == "small: hi you"
    assert chunks[0].additional_kwargs["haps"]["served_by"]["backend"] == "small"


def test_empty_stream_still_carries_the_decision(router):
    from llama_index.core.llms.mock import MockLLMWithNonyieldingChatStream

    llm = make(
        router, {"small": MockLLMWithNonyieldingChatStream(), "large": MockLLMWithNonyieldingChatStream()}
    )
    (chunk,) = list(llm.stream_chat([user("hello")]))
    assert chunk.message.content == "" and chunk.additional_kwargs["haps"]["backend"] == "large"


# -- async --------------------------------------------------------------------------------------
async def test_achat_and_acomplete_await_the_backend(router, backends):
    llm = make(router, backends, cost_weight=40.0)
    response = await llm.achat([user("a hard step")])
    assert response.message.content == "large: a hard step"
    assert response.additional_kwargs["haps"]["prompt_style"] == "cot"
    assert backends["large"].log[-1]["method"] == "achat"
    assert backends["large"].log[-1]["messages"][0].content == COT_TEXT
    completion = await llm.acomplete("easy")
    assert completion.text == "small: easy" and backends["small"].log[-1]["method"] == "acomplete"
    # concurrent calls are routed independently and keep their order
    answers = await asyncio.gather(*(llm.achat([user(f"q{i} {'hard' * (i % 2)}")]) for i in range(6)))
    assert [a.additional_kwargs["haps"]["backend"] for a in answers] == ["small", "large"] * 3


async def test_astream_chat_and_astream_complete(router, backends):
    llm = make(router, backends)
    chunks = [c async for c in await llm.astream_chat([user("hello there")])]
    assert chunks[-1].message.content == "large: hello there"
    assert all(c.additional_kwargs["haps"]["backend"] == "large" for c in chunks)
    assert backends["large"].log[-1]["method"] == "astream_chat"
    chunks = [c async for c in await llm.astream_complete("hi")]
    assert chunks[-1].text == "large: hi" and backends["large"].log[-1]["method"] == "astream_complete"


async def test_backend_without_async_runs_in_a_thread(router):
    backends = {"small": NoAsyncLLM(tag="small"), "large": NoAsyncLLM(tag="large")}
    llm = make(router, backends)
    response = await llm.achat([user("hello")])
    assert response.message.content == "large: hello"
    assert backends["large"].log[-1]["method"] == "chat"
    chunks = [c async for c in await llm.astream_chat([user("hello you")])]
    assert chunks[-1].message.content == "large: hello you"
    assert backends["large"].log[-1]["method"] == "stream_chat"
