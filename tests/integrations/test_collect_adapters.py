"""Issue 16: the LangChain and LlamaIndex adapters of `haps collect` (`collect_backend`).

The chat models are the FAKE echo backends of tests/helpers (lc_fakes, li_fakes): they record what
reached them, so these tests check what the adapters send (system message per style, temperature)
and how they count tokens; real models are in test_collect_e2e.py. One test runs a YAML backends
file that builds its backends through the adapter.
"""

import json

import pytest

from haps_core.collect import collect, load_backends, read_collected, routing_space

STYLES = {"default": "", "cot": "Think step by step."}


def test_issue16_langchain_adapter_sends_styles_and_temperatures():
    from haps_integrations.langchain import collect_backend
    from tests.helpers.lc_fakes import EchoChatModel

    model = EchoChatModel(tag="echo")
    spec = collect_backend(
        "echo", model, prices=(1.0, 2.0), grid={"temperature": [0.0, 0.5]}, prompt_styles=STYLES
    )
    assert [a.key for a in routing_space([spec]).actions] == [
        "echo|prompt_style=cot|temperature=0.0",
        "echo|prompt_style=cot|temperature=0.5",
        "echo|prompt_style=default|temperature=0.0",
        "echo|prompt_style=default|temperature=0.5",
    ]
    result = spec.call("Think step by step.", "What is 1 + 1?", {"temperature": 0.5})
    sent = model.log[-1]
    assert sent["temperature"] == 0.5  # applied on a per-call copy
    assert [type(m).__name__ for m in sent["messages"]] == ["SystemMessage", "HumanMessage"]
    assert result.text == "echo: What is 1 + 1?"
    # no usage_metadata from this model: the fallback estimates from the text (about 4 chars/token)
    assert result.input_tokens == pytest.approx(len("Think step by step.\nWhat is 1 + 1?") / 4, abs=1)
    assert result.output_tokens >= 1
    spec.call(None, "hi", {"temperature": 0.0})
    assert [type(m).__name__ for m in model.log[-1]["messages"]] == ["HumanMessage"]


def test_issue16_langchain_adapter_reads_usage_metadata():
    from langchain_core.language_models import GenericFakeChatModel
    from langchain_core.messages import AIMessage

    from haps_integrations.langchain import collect_backend

    reply = AIMessage("B", usage_metadata={"input_tokens": 123, "output_tokens": 4, "total_tokens": 127})
    spec = collect_backend("fake", GenericFakeChatModel(messages=iter([reply])), prices=(1.0, 1.0))
    result = spec.call(None, "q", {})
    assert (result.text, result.input_tokens, result.output_tokens) == ("B", 123.0, 4.0)


def test_issue16_langchain_adapter_refuses_a_parameter_that_cannot_reach_the_model():
    from haps_integrations.langchain import collect_backend
    from tests.helpers.lc_fakes import EchoChatModel

    with pytest.raises(ValueError, match="parameter `top_k` cannot reach EchoChatModel"):
        collect_backend("echo", EchoChatModel(tag="e"), grid={"top_k": [1, 5]})


def test_issue16_llamaindex_adapter_sends_styles_and_temperatures():
    from haps_integrations.llamaindex import collect_backend
    from tests.helpers.li_fakes import EchoLLM

    llm = EchoLLM(tag="li")
    spec = collect_backend(
        "li", llm, prices=(1.0, 2.0), grid={"temperature": [0.0, 0.7]}, prompt_styles=STYLES
    )
    result = spec.call("Think step by step.", "What is 2 + 2?", {"temperature": 0.7})
    sent = llm.log[-1]
    assert sent["temperature"] == 0.7
    assert [m.role.value for m in sent["messages"]] == ["system", "user"]
    assert result.text == "li: What is 2 + 2?" and result.input_tokens > 0 and result.output_tokens > 0


def test_issue16_yaml_backends_file_builds_langchain_backends(tmp_path):
    pytest.importorskip("yaml")
    backends = tmp_path / "backends.yaml"
    backends.write_text(
        "prompt_styles:\n  cot: Think step by step.\n"
        "backends:\n"
        "  - name: small\n    factory: tests.helpers.lc_fakes:EchoChatModel\n    kwargs: {tag: small}\n"
        "    prices: [0.5, 1.5]\n    grid: {temperature: [0.0, 1.0]}\n    prompt_styles: [default, cot]\n"
        "  - name: large\n    factory: tests.helpers.lc_fakes:EchoChatModel\n    kwargs: {tag: large}\n"
        "    prices: [5, 15]\n"
        "grid:\n  large: {temperature: [0.2]}\n"
    )
    specs = load_backends(backends)
    space = routing_space(specs)
    # without its own list, a backend uses every style defined at the top level
    assert space.backend("large").parameters == {"prompt_style": ("cot",), "temperature": (0.2,)}
    assert space.prompt_style_text("cot") == "Think step by step."
    questions = tmp_path / "q.jsonl"
    questions.write_text(
        "".join(json.dumps({"id": str(i), "query": f"say {i}", "reference": str(i)}) + "\n" for i in range(5))
    )
    result = collect(
        questions,
        backends,
        "contains",
        output=tmp_path / "log.jsonl",
        strategy="uniform",
        budget_calls=12,
        seed=3,
    )
    assert result.cells == 12 and result.calls == 12
    log = read_collected(result.output)
    assert log.space == space and float(log.score.mean()) == 1.0  # the echo contains the number
    rows = [json.loads(line) for line in result.output.read_text().splitlines()]
    assert all(0 < r["propensity"] <= 1 for r in rows)
    assert any(r["propensity"] < 1 for r in rows)
