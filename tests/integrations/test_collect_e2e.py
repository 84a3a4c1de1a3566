"""Issue 16, end to end with real parts, offline: `haps_core.collect` over two real backends --
SmolLM2-135M-Instruct through `ChatHuggingFace` (2 temperatures x 2 prompt styles) and `ChatOpenAI`
against a stand-in OpenAI-compatible server on 127.0.0.1 (tests/helpers/openai_standin.py: a
stand-in, not a model) -- on 30 multiple-choice questions, scored by the multiple-choice scorer.
The log trains a real router (the bundled MiniLM encoder, tiny settings), and `HAPSRunnable`
routes with it over the same two backends.
"""

import json

import pytest

from haps_core import RouterConfig, TrainingConfig, fit
from haps_core.collect import collect, read_collected
from tests.helpers.openai_standin import arithmetic_questions, standin_server

pytestmark = [pytest.mark.enable_socket, pytest.mark.slow]
STYLES = {"default": "", "terse": "Reply with the letter of the correct choice only."}


@pytest.fixture(scope="module")
def smol():
    pytest.importorskip("langchain_huggingface")
    from tests.helpers.smollm2 import load_smollm2

    return load_smollm2()


@pytest.fixture
def no_proxy(monkeypatch):
    for var in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"):
        monkeypatch.delenv(var, raising=False)


def test_issue16_collect_real_backends_trains_a_router_that_routes(smol, no_proxy, tmp_path):
    from langchain_openai import ChatOpenAI

    from haps_integrations.langchain import HAPSRunnable, collect_backend
    from tests.helpers.smollm2 import make_chat_hf

    model, tok = smol
    # 3 new tokens: room for a letter ("B", "(B)", "Answer: B"); each decoded token of the 135M
    # model costs ~80 ms on a 2-core runner, and the grid makes 120 SmolLM2 calls
    chat_hf = make_chat_hf(model, tok, max_new_tokens=3)
    questions = tmp_path / "questions.jsonl"
    questions.write_text("".join(json.dumps(q) + "\n" for q in arithmetic_questions(30)))
    with standin_server() as server:
        base_url = f"http://127.0.0.1:{server.server_address[1]}/v1"
        chat_openai = ChatOpenAI(model="standin-mini", base_url=base_url, api_key="sk-test", max_retries=0)
        specs = [
            collect_backend(
                "smollm2",
                chat_hf,
                prices=(0.05, 0.1),
                grid={"temperature": [0.0, 0.9]},
                prompt_styles=STYLES,
                max_concurrency=1,
                max_output_tokens=3,
            ),
            collect_backend(
                "standin",
                chat_openai,
                prices=(2.0, 6.0),
                grid={"temperature": [0.0, 1.0]},
                max_concurrency=4,
                max_output_tokens=16,
            ),
        ]
        out = tmp_path / "log.jsonl"
        result = collect(questions, specs, "multiple_choice", output=out, concurrency=4, backoff_s=0.0)
        assert result.failures == {} and result.scorer_errors == 0
        assert result.cells == 30 * (4 + 2)
        requests = list(server.requests)

        # the wire: the stand-in saw both temperatures, and no system message (default style only)
        assert sorted({r.get("temperature") for r in requests}) == [0.0, 1.0]
        assert all(m["role"] != "system" for r in requests for m in r["messages"])
        log = read_collected(out)
        assert log.space.backend_names == ["smollm2", "standin"]
        assert len(log.space) == 6 and log.space.prompt_style_text("terse") == STYLES["terse"]
        rows = [json.loads(line) for line in out.read_text().splitlines()]
        standin_t0 = [r["score"] for r in rows if r["model"] == "standin" and r["temperature"] == 0.0]
        assert sum(standin_t0) == 30  # the stand-in's sums are right at temperature 0
        smol_rows = [r for r in rows if r["model"] == "smollm2"]
        # no usage metadata from ChatHuggingFace: tokens are counted with the model's tokenizer
        # (a sampled reply may be blank: 0 tokens)
        assert all(r["input_tokens"] > 10 for r in smol_rows)
        assert all(
            r["output_tokens"] == len(tok.encode(r["output"], add_special_tokens=False)) for r in smol_rows
        )
        assert {r["prompt_style"] for r in smol_rows} == {"default", "terse"}
        assert all(r["cost"] > 0 and r["propensity"] == 1.0 for r in rows)

        fast = {"skip_warmup_steps": 5} if "skip_warmup_steps" in TrainingConfig.__dataclass_fields__ else {}
        router = fit(
            log,
            router_config=RouterConfig(hidden=16, members=1),
            training_config=TrainingConfig(epochs=3, progress=False, device="cpu", **fast),
            device="cpu",
            cache=False,
        )
        assert router.space == log.space
        haps = HAPSRunnable(router=router, backends={"smollm2": chat_hf, "standin": chat_openai})
        reply = haps.invoke(arithmetic_questions(31)[-1]["query"])
        meta = reply.response_metadata["haps"]
        assert meta["backend"] in ("smollm2", "standin")
        assert reply.content
