"""ChatHAPS behaviour beyond the standard suite, with FAKE backends and the FAKE rule-based router.

The backends are `lc_fakes.EchoChatModel` (echoes, records what reached it, fails on demand);
the router is `fake_router.FakeRouter` (rules on the text, not a model).
"""

import pytest
from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.language_models import FakeListChatModel
from langchain_core.messages import AIMessageChunk, SystemMessage
from langchain_core.output_parsers import StrOutputParser
from tenacity import wait_none

from haps_core.errors import AllBackendsFailedError
from haps_integrations.langchain import ChatHAPS
from tests.helpers.fake_router import COT_TEXT, FakeRouter
from tests.helpers.lc_fakes import EchoChatModel, RateLimited, Unauthorized


def make_chat(**kw) -> ChatHAPS:
    backends = {"small": EchoChatModel(tag="small"), "large": EchoChatModel(tag="large")}
    backends.update(kw.pop("backends", {}))
    return ChatHAPS(router=kw.pop("router", FakeRouter()), backends=backends, retry_wait=wait_none(), **kw)


class TokenCounter(BaseCallbackHandler):
    def __init__(self) -> None:
        self.tokens: list[str] = []
        self.llm_starts = 0

    def on_chat_model_start(self, *args, **kwargs) -> None:
        self.llm_starts += 1

    def on_llm_new_token(self, token, **kwargs) -> None:
        self.tokens.append(token)


def test_invoke_routes_and_reports():
    chat = make_chat()
    msg = chat.invoke("Explain step by step: 2 + 2")
    meta = msg.response_metadata["haps"]
    assert msg.content == "large: Explain step by step: 2 + 2"
    assert (meta["backend"], meta["temperature"], meta["prompt_style"]) == ("large", 0.0, "cot")
    assert msg.response_metadata["model_name"] == "large"
    assert chat.backends["large"].log[-1]["messages"][0] == SystemMessage(content=COT_TEXT)
    assert msg.id and msg.id.startswith("lc_run"), "the id is this run's"


def test_chat_model_in_a_chain():
    assert (make_chat() | StrOutputParser()).invoke("hi") == "large: hi"


def test_per_call_cost_weight_kwarg():
    chat = make_chat()
    assert chat.invoke("hi", haps_cost_weight=100.0).response_metadata["haps"]["backend"] == "small"
    assert (
        chat.bind(haps_max_cost_per_query=0.005).invoke("hi").response_metadata["haps"]["backend"] == "small"
    )
    assert "haps_cost_weight" not in chat.backends["small"].log[-1]["kwargs"], (
        "HAPS's own kwargs are consumed"
    )
    with pytest.raises(ValueError, match="haps_cost_weight.*-3"):
        chat.invoke("hi", haps_cost_weight=-3)


def test_model_override_pins_a_backend_without_fallback():
    chat = make_chat(backends={"small": EchoChatModel(tag="small", errors=[Unauthorized("x")])})
    msg = chat.invoke("Write a creative poem", model="large")
    assert msg.response_metadata["haps"]["backend"] == "large"
    with pytest.raises(AllBackendsFailedError, match="all 1 attempt"):
        chat.invoke("Write a creative poem", model="small")
    assert chat.backends["small"].log[-1]["temperature"] == 0.7, "HAPS still picks the parameters"
    with pytest.raises(
        ValueError, match=r"`model` must name one of the backends \['large', 'small'\].*'gpt-9'"
    ):
        chat.invoke("hi", model="gpt-9")


def test_pinned_temperature_overrides_the_router():
    chat = make_chat(temperature=0.2)
    msg = chat.invoke("Write a creative poem")
    assert chat.backends["large"].log[-1]["temperature"] == 0.2
    assert msg.response_metadata["haps"]["pinned"] == {"temperature": 0.2}
    # issue 14, finding 9: `parameters`/`temperature` are what was sent; the router's choice is kept
    assert msg.response_metadata["haps"]["router_parameters"]["temperature"] == 0.7, "router's choice"
    assert msg.response_metadata["haps"]["temperature"] == 0.2, "what reached the model"


def test_check_backends_includes_pinned_parameters():
    chat = ChatHAPS(
        router=FakeRouter(),
        backends={"small": FakeListChatModel(responses=["x"]), "large": EchoChatModel(tag="large")},
        max_tokens=50,
    )
    report = chat.check_backends()
    assert report["small"]["max_tokens"]["mechanism"] == "not_applied"
    assert report["large"]["temperature"]["mechanism"] == "model_copy"
    assert report["large"]["max_tokens"]["mechanism"] == "not_applied"


def test_max_retries_is_retries_per_backend():
    chat = make_chat(max_retries=0, backends={"large": EchoChatModel(tag="large", errors=[RateLimited("a")])})
    attempts = chat.invoke("hi").response_metadata["haps"]["attempts"]
    assert [(a["backend"], a["attempt_number"]) for a in attempts] == [("large", 1), ("small", 1)]
    assert (chat.max_attempts, chat.max_retries) == (1, 0)


def test_max_attempts_is_canonical_and_max_retries_its_alias():
    assert (make_chat().max_attempts, make_chat().max_retries) == (3, 2)  # the defaults agree
    chat = make_chat(
        max_attempts=1, backends={"large": EchoChatModel(tag="large", errors=[RateLimited("a")])}
    )
    assert chat.max_retries == 0
    attempts = chat.invoke("hi").response_metadata["haps"]["attempts"]
    assert [(a["backend"], a["attempt_number"]) for a in attempts] == [("large", 1), ("small", 1)]
    assert make_chat(max_attempts=4, max_retries=3).max_attempts == 4  # values that agree
    with pytest.raises(ValueError, match=r"`max_attempts` \(2\) or its alias `max_retries` \(5\)"):
        make_chat(max_attempts=2, max_retries=5)
    with pytest.raises(ValueError, match=r"`max_retries` must be an int >= 0, got -1"):
        make_chat(max_retries=-1)
    with pytest.raises(ValueError, match=r"`max_attempts` must be an int >= 1, got 0"):
        make_chat(max_attempts=0)


def test_stream_chunks_metadata_and_last_chunk():
    chat = make_chat()
    chunks = list(chat.stream("one two three"))
    assert all(isinstance(c, AIMessageChunk) for c in chunks)
    assert "".join(c.content for c in chunks) == "large: one two three"
    assert chunks[0].response_metadata["haps"]["backend"] == "large"
    assert chunks[-1].chunk_position == "last"
    full = sum(chunks[1:], chunks[0])
    assert full.response_metadata["haps"]["backend"] == "large"
    assert full.response_metadata["model_name"] == "large"


def test_stream_tokens_are_reported_once():
    chat = make_chat()
    counter = TokenCounter()
    chunks = list(chat.stream("one two three", config={"callbacks": [counter]}))
    assert counter.llm_starts == 1, "the backend call is not a second chat-model run"
    assert "".join(counter.tokens) == "large: one two three"
    assert len(counter.tokens) == len(chunks)


def test_streaming_flag_streams_on_invoke():
    chat = make_chat(streaming=True)
    counter = TokenCounter()
    msg = chat.invoke("one two", config={"callbacks": [counter]})
    assert msg.content == "large: one two"
    assert counter.tokens[:3] == ["large:", " one", " two"]
    assert msg.response_metadata["haps"]["backend"] == "large"


async def test_async_stream_ends_with_a_last_chunk_and_abatch_keeps_order():
    chat = make_chat()
    chunks = [c async for c in chat.astream("one two")]
    assert "".join(c.content for c in chunks) == "large: one two"
    assert chunks[-1].chunk_position == "last"
    outs = await chat.abatch(["a", "b"])
    assert [o.content for o in outs] == ["large: a", "large: b"]


def test_ls_params():
    chat = make_chat(model="my-router", temperature=0.3, max_tokens=12, stop=["x"])
    params = chat._get_ls_params()
    assert params == {
        "ls_provider": "haps",
        "ls_model_name": "my-router",
        "ls_model_type": "chat",
        "ls_temperature": 0.3,
        "ls_max_tokens": 12,
        "ls_stop": ["x"],
    }
