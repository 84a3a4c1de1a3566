"""Issue 14, finding 2: a call's cost is its exact input cost plus a predicted output cost.

Real parts: the shipped default router and the haps-bench rows with their logged `input_tokens`
(the input side is checked on queries held out of the router's training), a real tokenizer
(SmolLM2's byte-level BPE, from the bundled GGUF) as the "billing" tokenizer of a synthetic
backend for prompts from 10 to 200,000 tokens, real training through `haps_core.fit`. Faked:
the rule-based `FakeRouter` where the integrations are only asked what they pass to the router.
"""

import gzip
import json
import logging
import random

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from haps_core.catalog import Action, RoutingSpace
from haps_core.model.input_cost import InputTokenModel, text_counts
from tests.helpers.fake_router import FakeRouter


@pytest.fixture(scope="module")
def router():
    from haps_core.model import HAPSRouter

    return HAPSRouter.from_pretrained("haps-default")


@pytest.fixture(scope="module")
def bench_rows():
    from haps_core.paths import bench_logs

    with gzip.open(bench_logs(), "rt") as f:
        return [json.loads(line) for line in f]


def test_finding_2_input_cost_within_5_percent_on_held_out_haps_bench_rows(router, bench_rows):
    """Predicted input cost vs price x logged input tokens, on the queries the router never saw."""
    from haps_core.logs import split_queries

    held = router.training_summary["heldout"]
    ids = sorted({r["query_id"] for r in bench_rows})
    test_ids = {i for i, t in zip(ids, split_queries(ids, held["fraction"], seed=held["seed"])) if t}
    rows = [r for r in bench_rows if r["query_id"] in test_ids]
    assert len(rows) > 3000
    space = router.space
    index = [
        space.index(Action.make(r["model"], temperature=r["temperature"], prompt_style=r["prompt_style"]))
        for r in rows
    ]
    predicted = router.input_cost(text_counts([r["query"] for r in rows]))[np.arange(len(rows)), index]
    price = np.array([space.backend(r["model"]).input_price for r in rows]) / 1e6
    true = price * np.array([r["input_tokens"] for r in rows])
    rel = np.abs(predicted - true) / true
    assert (rel <= 0.05).mean() >= 0.98, np.percentile(rel, [50, 90, 95, 99])
    assert np.median(rel) <= 0.015
    # the whole predicted cost is the exact input side plus a positive predicted output side
    _, cost = router.predict([rows[0]["query"]])
    assert (cost[0] > router.input_cost(text_counts([rows[0]["query"]]))[0]).all()


def _billing_tokenizer():
    """SmolLM2's byte-level BPE (not the WordPiece the input model counts with)."""
    from transformers import AutoTokenizer

    from haps_core.encoders import smollm2_dir

    return AutoTokenizer.from_pretrained(smollm2_dir())


def test_finding_2_input_tokens_from_10_to_200k_tokens_of_a_foreign_tokenizer(bench_rows):
    """A backend billed by a real BPE tokenizer the input model does not count with: fitted on
    400 logged prompts (whole questions and shorter cuts of them), priced on new ones.

    Every prompt of 1,000 to 200,000 tokens is within 5%. Short prompts (10 to 100 tokens) are
    within 5% at the median, not each one: a few tokens off is 20% of 20 tokens, and only the
    backend's own tokenizer knows those few (measured in the issue's closing note).
    """
    tok = _billing_tokenizer()

    def count(text: str) -> int:
        return len(tok(text, add_special_tokens=False, verbose=False)["input_ids"])

    texts = list(dict.fromkeys(r["query"] for r in bench_rows))
    random.Random(2).shuffle(texts)
    train, pool = texts[:400], texts[400:]
    space = RoutingSpace.from_actions(
        [Action.make("billed", prompt_style="a"), Action.make("billed", prompt_style="b")],
        prices={"billed": (2.0, 4.0)},
    )
    overhead = np.array([12, 140])  # chat template; template + a system text
    rng = random.Random(5)
    logged = []
    for t in train:
        words = t.split()
        logged += [t, " ".join(words[: rng.randint(2, max(3, len(words)))])]
    actions = np.arange(len(logged)) % 2
    tokens = np.array([count(t) for t in logged]) + overhead[actions]
    model = InputTokenModel.fit(space, actions, text_counts(logged), tokens.astype(float))

    def errors(prompt: str) -> np.ndarray:
        true = count(prompt) + overhead
        return np.abs(model.tokens(space, text_counts([prompt]))[0] - true) / true

    for target in (10, 30, 100):
        cut = max(3, int(target * 0.7))
        rel = np.concatenate([errors(" ".join(rng.choice(pool).split()[:cut])) for _ in range(40)])
        assert np.median(rel) <= 0.05, (target, np.percentile(rel, [50, 95]))
    for target in (1_000, 10_000, 50_000, 200_000):
        for _ in range(3):
            parts, n = [], 0
            while n < target:
                parts.append(rng.choice(pool))
                n += count(parts[-1])
            rel = errors("\n\n".join(parts))
            assert rel.max() <= 0.05, (target, rel)


def test_finding_2_a_long_prompt_costs_what_its_input_costs(router):
    """The issue's case: a ~240k-token prompt to gpt-4 is priced at its input, not at $0.14."""
    prompt = "Summarise the following report.\n\n" + "The quarterly revenue grew by 4% in Europe. " * 27000
    quality, cost = router.predict([prompt])
    tokens = router.input_model.tokens(router.space, text_counts([prompt]))[0]
    gpt4 = router.space.actions_of("gpt-4")
    assert tokens[gpt4].min() > 200_000
    assert cost[0, gpt4].min() >= tokens[gpt4].min() * 30.0 / 1e6  # at the catalog's $30 / 1M
    (decision,) = router.route(prompt, max_cost_per_query=0.5)
    assert decision.predicted_cost <= 0.5
    assert decision.backend not in {"gpt-4", "claude-3-opus-20240229"}
    # routing reads only the head of the text; cost counts all of it
    (short,) = router.route(prompt[:2000], cost_weight=0.0)
    assert short.predicted_cost < decision.predicted_cost or short.backend != decision.backend


def test_finding_2_input_texts_count_the_history(router):
    q = "What is the capital of France?"
    history = "You are a helpful assistant.\n" + "Earlier turn about geography. " * 3000
    (alone,) = router.route(q, cost_weight=0.0)
    (with_history,) = router.route(q, cost_weight=0.0, input_texts=[history + "\n" + q])
    # the same routing features; the history is priced on every action
    _, c_alone = router.predict([q])
    _, c_hist = router.predict([q], [history + "\n" + q])
    assert (c_hist > c_alone + 1e-4).all()
    assert with_history.predicted_cost > alone.predicted_cost
    with pytest.raises(ValueError, match="input_texts"):
        router.route([q, q], input_texts=[q])
    with pytest.raises(ValueError, match="input_counts"):
        router.predict_features(router.featurize([q]))


def test_finding_2_integrations_pass_the_whole_conversation_for_its_cost():
    from langchain_core.messages import AIMessage, HumanMessage, SystemMessage

    from haps_integrations.langchain import HAPSRunnable
    from tests.helpers.lc_fakes import EchoChatModel

    fake = FakeRouter()
    runnable = HAPSRunnable(router=fake, backends={b: EchoChatModel(tag=b) for b in fake.space.backend_names})
    runnable.invoke("Hello there")
    assert fake.calls[-1]["input_texts"] is None  # nothing beyond the query: nothing extra passed
    messages = [
        SystemMessage("Be brief."),
        HumanMessage("first question"),
        AIMessage("first answer"),
        HumanMessage("second question"),
    ]
    runnable.invoke(messages)
    call = fake.calls[-1]
    assert call["texts"] == ["second question"]
    assert call["input_texts"] == ["Be brief.\nfirst question\nfirst answer\nsecond question"]


def test_finding_2_a_log_with_cost_only_trains_with_one_notice(tmp_path, caplog):
    import haps_core
    from haps_core.training import TrainingConfig

    rng = np.random.default_rng(0)
    path = tmp_path / "log.jsonl"
    with path.open("w") as f:
        for i in range(40):
            for model in ("small", "large"):
                row = {"query_id": str(i), "query": f"question {i} " * (1 + i % 5), "model": model}
                row.update(score=float(rng.random()), cost=0.001 if model == "small" else 0.01)
                f.write(json.dumps(row) + "\n")
    with caplog.at_level(logging.WARNING):
        router = haps_core.fit(str(path), training_config=TrainingConfig(epochs=2, progress=False))
    notices = [r for r in caplog.records if "no `input_tokens`" in r.getMessage()]
    assert len(notices) == 1
    assert not router.input_model.active
    quality, cost = router.predict_features(router.featurize(["question 3"]))  # no counts needed
    assert cost.shape == (1, 2) and (cost > 0).all()


def test_finding_2_the_input_model_round_trips_and_old_checkpoints_still_load(router, tmp_path):
    from haps_core.model import HAPSRouter

    folder = router.save_pretrained(tmp_path / "r")
    loaded = HAPSRouter.from_pretrained(folder)
    texts = ["a question " * 500]
    np.testing.assert_allclose(loaded.predict(texts)[1], router.predict(texts)[1], rtol=1e-6)
    assert torch.equal(loaded.reference_counts, router.reference_counts)
    # a checkpoint written before the input side was modelled: loads, whole cost predicted
    weights = folder / "model.safetensors"
    tensors = load_file(weights)
    for name in ("input_intercept", "input_coef", "input_fitted", "reference_counts"):
        del tensors[name]
    save_file(tensors, weights)
    old = HAPSRouter.from_pretrained(folder)
    assert not old.input_model.active
    assert old.route(texts[0], cost_weight=0.0)[0].predicted_cost > 0
