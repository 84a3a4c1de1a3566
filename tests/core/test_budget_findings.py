"""Issue 14, findings 1 (routing over a subset of the catalog) and 3 (budgets with one meaning).

The shipped default router (9 backends) decides; where a real model answers, it is SmolLM2-135M
behind both pool names (`tests.helpers.smollm2`). The rule-based `FakeRouter` covers the
integrations' settings. Predictions are computed once per module: the budget sweeps then go
through `route_from_predictions`, the routine every router decides with.
"""

import gzip
import json
import logging
import random

import numpy as np
import pytest

from haps_core.decision import route_from_predictions
from tests.helpers.fake_router import FakeRouter, make_space
from tests.helpers.lc_fakes import EchoChatModel

POOL = ["gpt-35-turbo", "llama-2-7b-chat"]


@pytest.fixture(scope="module")
def router():
    from haps_core.model import HAPSRouter

    router = HAPSRouter.from_pretrained("haps-default")
    # one heads runtime throughout: "auto" would switch to ONNX Runtime after 32 calls, and the
    # two agree to float32 rounding only, where these tests compare decisions call to call
    router.heads_runtime = "eager"
    return router


@pytest.fixture(scope="module")
def bench_texts():
    """1,000 distinct haps-bench prompts (their first 400 characters), in a fixed random order."""
    from haps_core.paths import bench_logs

    seen: dict[str, None] = {}
    with gzip.open(bench_logs(), "rt") as f:
        for line in f:
            seen.setdefault(json.loads(line)["query"], None)
    texts = list(seen)
    random.Random(14).shuffle(texts)
    return [t[:400] for t in texts[:1000]]


@pytest.fixture(scope="module")
def predictions(router, bench_texts):
    return router.predict(bench_texts)


# -- finding 1: route among the backends the caller has -------------------------------------
def test_finding_1_route_takes_a_pool_and_never_chooses_nor_offers_outside_it(router, bench_texts):
    texts = bench_texts[:12]
    for kwargs in ({"cost_weight": 0.0}, {"cost_weight": 500.0}, {"max_cost_per_query": 1e-4}):
        for d in router.route(texts, backends=POOL, **kwargs):
            assert d.backend in POOL
            assert d.over_budget or d.alternatives  # over budget: the cheapest action alone
            assert all(a.backend in POOL for a in d.alternatives)
    # the pool of one backend is routed too (its settings still chosen)
    assert {d.backend for d in router.route(texts, backends=["gpt-4"])} == {"gpt-4"}


def test_finding_1_unknown_pool_backend_is_a_clear_error(router):
    with pytest.raises(ValueError, match=r"cannot route to \['my-llm'\].*retrain the router with logs"):
        router.route(["hi there"], backends=["gpt-4", "my-llm"])
    with pytest.raises(ValueError, match="`backends` is empty"):
        router.route(["hi there"], backends=[])


def test_finding_1_cli_backends(router, capsys):
    from haps_core.cli import main

    assert main(["route", "--query", "Write a poem about tea", "--backends", ",".join(POOL)]) == 0
    line = json.loads(capsys.readouterr().out)
    assert line["backend"] in POOL
    assert main(["route", "--query", "hello", "--backends", "gpt-4,nope"]) == 2
    assert "cannot route to ['nope']" in capsys.readouterr().err


def test_finding_1_integrations_accept_a_subset_with_one_warning(caplog):
    from llama_index.core.llms import MockLLM

    from haps_integrations.langchain import ChatHAPS, HAPSRunnable
    from haps_integrations.llamaindex import HAPSLLM

    router = FakeRouter(make_space(backends=("small", "large", "huge")))
    caplog.set_level(logging.WARNING, logger="haps_core")
    haps = HAPSRunnable(
        router=router, backends={"small": EchoChatModel(tag="echo"), "large": EchoChatModel(tag="echo")}
    )
    pool_warnings = [r for r in caplog.records if "routing among 2 of the router's 3" in r.getMessage()]
    assert len(pool_warnings) == 1 and "['huge']" in pool_warnings[0].getMessage()
    out = haps.invoke("anything hard")
    assert out.response_metadata["haps"]["backend"] in ("small", "large")
    assert router.calls[-1]["backends"] == ["large", "small"]
    chat = ChatHAPS(router=router, backends={"large": EchoChatModel(tag="echo")})
    assert chat.invoke("hello").response_metadata["haps"]["backend"] == "large"
    llm = HAPSLLM(router=router, backends={"small": MockLLM()})
    assert llm.route("hello").backend == "small"
    for build in (
        lambda: HAPSRunnable(
            router=router, backends={"small": EchoChatModel(tag="echo"), "mine": EchoChatModel(tag="echo")}
        ),
        lambda: ChatHAPS(router=router, backends={"mine": EchoChatModel(tag="echo")}),
        lambda: HAPSLLM(router=router, backends={"mine": MockLLM()}),
    ):
        with pytest.raises(ValueError, match=r"cannot route to \['mine'\].*retrain"):
            build()


def test_finding_1_langchain_chain_over_two_default_backends_on_real_smollm2(router):
    pytest.importorskip("langchain_huggingface")
    from langchain_core.prompts import ChatPromptTemplate

    from haps_integrations.langchain import HAPSRunnable
    from tests.helpers.smollm2 import load_smollm2, make_chat_hf

    model, tok = load_smollm2()
    backends = {name: make_chat_hf(model, tok, max_new_tokens=4) for name in POOL}
    haps = HAPSRunnable(
        router=router, backends=backends, prompt_styles=dict.fromkeys(router.styles, "Be brief.")
    )
    chain = ChatPromptTemplate.from_messages([("human", "{question}")]) | haps
    questions = ["What is 2 + 2?", "Write a haiku about rain.", "Name a prime number above 10."]
    answers = [chain.invoke({"question": questions[0]}), *chain.batch([{"question": q} for q in questions])]
    for weight in (0.0, 1e4):
        answers.append(
            chain.invoke({"question": questions[1]}, config={"configurable": {"haps_cost_weight": weight}})
        )
    chunks = list(chain.stream({"question": questions[2]}))
    assert len(chunks) >= 1
    answers.append(chunks[0])
    for a in answers:
        meta = a.response_metadata["haps"]
        assert meta["backend"] in POOL and meta["served_by"]["backend"] in POOL
        assert all(alt["backend"] in POOL for alt in meta["alternatives"])


# -- finding 3: budgets with one meaning each -----------------------------------------------
def test_finding_3_max_cost_per_query_is_never_exceeded(router, predictions):
    quality, cost = predictions
    caps = np.geomspace(cost.min() / 2, cost.max() * 2, 20)
    rows = np.arange(len(cost))
    cheapest = cost.min(axis=1)
    for cap in caps:
        for weight in (0.0, router.default_cost_weight):
            decisions = route_from_predictions(
                router.space, quality, cost, cost_weight=weight, max_cost_per_query=float(cap)
            )
            chosen = np.array([d.action_index for d in decisions])
            over = np.array([d.over_budget for d in decisions])
            assert np.array_equal(over, cheapest > cap)
            paid = cost[rows, chosen]
            assert np.all(paid[~over] <= cap)
            assert np.array_equal(paid[over], cheapest[over])  # the cheapest action where none fits
            assert all(
                a.predicted_cost <= cap for d in decisions if not d.over_budget for a in d.alternatives
            )


def test_finding_3_a_cap_below_the_batch_mean_is_not_refused(router):
    # the issue's case: a budget under the stored queries' mean cheapest cost was refused
    (d,) = router.route(["What is the capital of France?"], max_cost_per_query=1e-9)
    assert d.over_budget and d.predicted_cost > 1e-9
    (d2,) = router.route(["What is the capital of France?"], max_cost_per_query=2e-4)
    assert d2.predicted_cost <= 2e-4 and not d2.over_budget
    assert "over_budget" in d.to_dict() and "over_budget=True" in repr(d)


def test_finding_3_one_decision_alone_and_in_any_batch(router, bench_texts):
    rng = random.Random(3)
    query = "Solve for x: 3x + 7 = 22. Show your reasoning."
    _, ref_cost = router.reference_predictions()
    target = float(np.quantile(ref_cost.mean(axis=1), 0.3))
    for kwargs in ({"target_mean_cost": target}, {"target_mean_cost": target, "max_cost_per_query": 5e-4}):
        (alone,) = router.route([query], **kwargs)
        for _ in range(50 if "max_cost_per_query" in kwargs else 10):
            batch = [t[:150] for t in rng.sample(bench_texts, rng.randint(1, 3))]
            batch.insert(rng.randint(0, len(batch)), query)
            mine = router.route(batch, **kwargs)[batch.index(query)]
            assert (mine.action_index, mine.cost_weight) == (alone.action_index, alone.cost_weight)
    (capped,) = router.route([query], max_cost_per_query=3e-4)
    (in_batch, *_) = router.route([query, *bench_texts[:2]], max_cost_per_query=3e-4)
    # the same choice and runner-ups; predictions equal to float32 rounding (BLAS kernels differ
    # with the batch size, in the last bit)
    same = [(d.action_index, [a.action_index for a in d.alternatives]) for d in (capped, in_batch)]
    assert same[0] == same[1]
    assert in_batch.predicted_cost == pytest.approx(capped.predicted_cost, rel=1e-5)


def test_finding_3_knobs_exclusive_and_cost_less_router_refuses_budgets(router, monkeypatch):
    with pytest.raises(ValueError, match="not both"):
        router.route(["hi"], cost_weight=1.0, target_mean_cost=1e-3)
    (d,) = router.route(["hi"], cost_weight=1.0, max_cost_per_query=1e-3)  # a cap combines
    assert d.predicted_cost <= 1e-3 or d.over_budget
    monkeypatch.setattr(router, "has_cost", False)
    for kwargs in ({"max_cost_per_query": 1e-3}, {"target_mean_cost": 1e-3}):
        with pytest.raises(ValueError, match="without cost"):
            router.route(["hi"], **kwargs)


def test_finding_3_integrations_take_a_cap_and_a_target_mean_cost():
    from haps_integrations.langchain import HAPSRunnable

    router = FakeRouter()
    backends = {"small": EchoChatModel(tag="echo"), "large": EchoChatModel(tag="echo")}
    with pytest.raises(ValueError, match="not both"):
        HAPSRunnable(router=router, backends=backends, cost_weight=1.0, target_mean_cost=0.005)
    with pytest.raises(ValueError, match="max_cost_per_query"):
        HAPSRunnable(router=router, backends=backends, max_cost_per_query=0.0)
    # a cap: "large" (0.01) does not fit 0.005 per query, whatever the batch
    capped = HAPSRunnable(router=router, backends=backends, max_cost_per_query=0.005)
    assert {m.response_metadata["haps"]["backend"] for m in capped.batch(["a", "b hard"])} == {"small"}
    meta = capped.invoke("x", config={"configurable": {"haps_max_cost_per_query": 1e-4}}).response_metadata
    assert meta["haps"]["over_budget"] is True and meta["haps"]["backend"] == "small"
    # a target mean cost, per instance and per call, calibrated on the fake's fixed reference set
    target = HAPSRunnable(router=router, backends=backends, target_mean_cost=0.002)
    alone = target.invoke("a hard one").response_metadata["haps"]
    assert router.calls[-1]["target_mean_cost"] == 0.002
    in_batch = target.batch(["a hard one", "x", "y", "z"])[0].response_metadata["haps"]
    assert (alone["backend"], alone["cost_weight"]) == (in_batch["backend"], in_batch["cost_weight"])
    assert alone["target_mean_cost"] == 0.002
    haps = HAPSRunnable(router=router, backends=backends)
    haps.invoke("x", config={"configurable": {"haps_target_mean_cost": 0.009}})
    assert router.calls[-1]["target_mean_cost"] == 0.009
