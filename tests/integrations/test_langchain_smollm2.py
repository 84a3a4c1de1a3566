"""HAPSRunnable over a REAL model: SmolLM2-135M-Instruct through ChatHuggingFace (CPU, offline).

Both backends are `ChatHuggingFace` pipelines over the same SmolLM2 weights (`smollm2.py`), so the
test is about what HAPS makes reach the model, not about answer quality. The router is the FAKE
rule-based `fake_router.FakeRouter` with temperatures {0.0, 1.5}.

What reaches the model is RECORDED by wrapping ``model.generate`` (the call the transformers
pipeline makes): the decoded prompt (``input_ids``, after the chat template) and the generation
keyword arguments (``do_sample``, ``temperature``). So the assertions are about the model's real
inputs, not about what HAPS believes it sent.
"""

import pytest

from haps_integrations.langchain import HAPSRunnable
from tests.helpers.fake_router import COT_TEXT, FakeRouter, make_space
from tests.helpers.smollm2 import load_smollm2, make_chat_hf

MAX_NEW_TOKENS = 8


@pytest.fixture(scope="module")
def smol():
    pytest.importorskip("langchain_huggingface")
    return load_smollm2()


@pytest.fixture(scope="module")
def haps(smol, recorded):
    model, tok = smol
    router = FakeRouter(make_space(temperatures=(0.0, 1.5)))
    backends = {name: make_chat_hf(model, tok, max_new_tokens=MAX_NEW_TOKENS) for name in ("small", "large")}
    return HAPSRunnable(router=router, backends=backends)


def test_temperature_reaches_chat_huggingface_by_pipeline_kwargs(haps):
    report = haps.check_backends()
    for backend in ("small", "large"):
        assert report[backend]["temperature"]["mechanism"] == "pipeline_kwargs"
        assert report[backend]["temperature"]["reaches_model"] is True


def test_temperature_zero_is_greedy_and_repeats_with_the_style_in_the_prompt(haps, recorded):
    question = "Explain step by step: what is 12 + 30?"
    first, second = haps.invoke(question), haps.invoke(question)
    meta = first.response_metadata["haps"]
    assert (meta["temperature"], meta["prompt_style"]) == (0.0, "cot")
    assert meta["applied"] == {"temperature": "pipeline_kwargs", "prompt_style": "system_message"}
    assert first.content and first.content == second.content
    for call in recorded[-2:]:
        assert call["kwargs"]["do_sample"] is False
        assert "temperature" not in call["kwargs"]
        assert call["kwargs"]["max_new_tokens"] == MAX_NEW_TOKENS
        # the prompt style's system message is in the model's actual input, in place of the
        # chat template's default system prompt ("You are a helpful AI assistant named SmolLM...")
        assert call["prompt"].startswith(f"<|im_start|>system\n{COT_TEXT}<|im_end|>\n<|im_start|>user\n")
        assert "SmolLM" not in call["prompt"]


def test_high_temperature_samples_different_outputs(haps, recorded):
    prompt = "Write a creative sentence about a cat."
    outs = [haps.invoke(prompt) for _ in range(3)]
    assert outs[0].response_metadata["haps"]["temperature"] == 1.5
    for call in recorded[-3:]:
        assert (call["kwargs"]["do_sample"], call["kwargs"]["temperature"]) == (True, 1.5)
    # seed-independent: three samples at temperature 1.5 are (overwhelmingly likely) not all equal
    assert len({o.content for o in outs}) > 1, [o.content for o in outs]


def test_stream_on_the_real_model(haps, recorded):
    question = "Explain step by step: what is 12 + 30?"
    chunks = list(haps.stream(question))
    assert len(chunks) > 1, "tokens arrive one by one"
    assert recorded[-1]["kwargs"]["do_sample"] is False
    streamed = "".join(c.content for c in chunks)
    assert streamed.strip() == haps.invoke(question).content.strip()


async def test_ainvoke_runs_the_sync_pipeline_in_a_thread(haps, recorded):
    # ChatHuggingFace over a local pipeline has no async path (NotImplementedError): HAPS runs
    # the sync call in an executor instead of falling back to another backend.
    msg = await haps.ainvoke("What is the capital of France?")
    assert msg.content
    assert [a["error"] for a in msg.response_metadata["haps"]["attempts"]] == [None]
    # the "default" style adds no system message: the template's own default prompt stays
    assert msg.response_metadata["haps"]["applied"]["prompt_style"] == "default"
    assert "SmolLM" in recorded[-1]["prompt"]
    assert COT_TEXT not in recorded[-1]["prompt"]
