"""Issue 15 items 3-5: uncertainty and coverage, out-of-distribution policy, explanations.

REAL: the shipped default router, the haps-bench log (`haps_core.paths.bench_logs()`), its own
held-out split (`training_summary["heldout"]`), and `fit_ood` applied to the router in memory
(the shipped checkpoint has no statistics yet). Embeddings go through the on-disk cache.
"""

import json
import logging
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from haps_core import HAPSRouter
from haps_core.encoders import CachedEncoder
from haps_core.logs import read_logs, split_queries
from haps_core.model.guarded import member_spread, ood_actions
from haps_core.model.ood import RARE_KEYS_SHOWN, evidence, fit_ood, rare_actions
from haps_core.paths import bench_logs, default_cache_dir

CHAT_AND_CODE = [
    "hey, can you help me write a birthday message for my mom?",
    "Write a Python function that reverses a linked list.",
    "What's a good recipe for vegan lasagna?",
    "how do I fix 'ModuleNotFoundError: No module named numpy'?",
    "Tell me a joke about cats",
    "Explain the difference between TCP and UDP in simple terms",
    "Can you refactor this JavaScript: function f(a){return a.map(x=>x*2)}",
    "I feel tired all the time, any tips?",
    "Write a haiku about autumn rain",
    "What should I name my new golden retriever puppy?",
    "Write a SQL query to find the top 5 customers by revenue",
    "Summarize the plot of The Lord of the Rings in three sentences",
    "Debug: my React component re-renders infinitely when I call setState in useEffect",
    "Plan a 3-day trip to Lisbon for me",
    "Translate 'good morning, how are you' into Spanish and French",
    "Write a bash one-liner to count lines in all .py files",
    "What do you think about pineapple on pizza?",
    "Draft a polite email declining a job offer",
    "Implement binary search in Rust with generics",
    "Give me 10 ideas for a startup in the pet industry",
]
EXAM = "Topic: Math\nQuestion: If 3x + 5 = 20, what is x?\nChoices:\n  A: 3\n  B: 5\n  C: 7\n  D: 15"


@pytest.fixture(scope="module")
def bench():
    """(fitted router, log, features of all log queries, dev mask)."""
    router = HAPSRouter.from_pretrained("haps-default")
    router.attach_encoder(CachedEncoder(router.encoder, default_cache_dir() / "embeddings"))
    log = read_logs([bench_logs()])
    held = router.training_summary["heldout"]
    dev = split_queries(log.query_ids, held["fraction"], seed=held["seed"])
    features = router.featurize(log.queries)
    fit_ood(router, log, ~dev, features=features)
    return router, log, features, dev


def test_issue15_ood_flags_chat_and_coding_but_few_dev_queries(bench, caplog):
    router, _, features, dev = bench
    with caplog.at_level(logging.WARNING, logger="haps_core.model.guarded"):
        decisions = router.route(CHAT_AND_CODE, cost_weight=0.0)
        router.route(CHAT_AND_CODE[:3], cost_weight=0.0)
    flagged = [d for d in decisions if d.ood]
    assert len(flagged) >= 18, [(q, d.ood_score) for q, d in zip(CHAT_AND_CODE, decisions)]
    best = int(np.flatnonzero(ood_actions(router, None, 0.0))[0])
    assert all(d.action_index == best for d in flagged)
    assert all(d.ood_score > router.ood_stats.threshold for d in flagged)
    assert sum("out of distribution" in r.message for r in caplog.records) == 1  # once per router
    ev = evidence(router, features[torch.as_tensor(np.flatnonzero(dev))])
    assert ev is not None and ev.flagged.mean() <= 0.05, ev.flagged.mean()
    safe = router.route(CHAT_AND_CODE[:4], cost_weight=0.0, ood_action="gpt-35-turbo")
    assert all(d.backend == "gpt-35-turbo" for d in safe if d.ood)
    # a flagged query gets the asked OOD action (here: not the default one)
    i = next(j for j, d in enumerate(decisions) if d.ood)
    own = router.route(CHAT_AND_CODE[i : i + 1], cost_weight=0.0, ood_action=best + 1)[0]
    assert own.ood and own.action_index == best + 1
    with pytest.raises(ValueError, match="ood_action"):
        router.route(CHAT_AND_CODE[:1], ood_action="no-such-backend")


def test_issue15_in_distribution_decisions_unchanged(bench):
    """A query that is not flagged gets the plain model's decision, field for field (coverage
    shrinkage off: the OOD policy alone; with it on, at least 95% of the same actions, the
    haps-bench log being complete for most backends); of real held-out exam queries (haps-bench
    dev, never trained on) at most 5% are flagged."""
    router, log, _, dev = bench
    plain = HAPSRouter.from_pretrained("haps-default")
    plain.ood_stats = None  # the model alone: no OOD policy
    lines = Path("cookbook/sample_queries.jsonl").read_text().splitlines()
    samples = [json.loads(line)["query"] for line in lines]
    held_out = [log.queries[i] for i in np.flatnonzero(dev)[:80]]
    texts = samples + held_out
    for weight in (0.0, 20.0, 200.0):
        guarded, bare = router.route(texts, weight, coverage_prior=0.0), plain.route(texts, weight)
        assert sum(d.ood for d in guarded[len(samples) :]) <= 0.05 * len(held_out)
        for text, a, b in zip(texts, guarded, bare):
            if not a.ood:
                keep = {k: v for k, v in a.to_dict().items() if k in b.to_dict()}
                assert keep == b.to_dict(), text[:60]
        shrunk = router.route(texts, weight)
        kept = [a.action_index == b.action_index for a, b in zip(shrunk, bare) if not a.ood]
        assert np.mean(kept) >= 0.95


def test_issue15_confidence_coverage_and_risk(bench, caplog):
    router, log, features, dev = bench
    x = features[:8]
    with torch.no_grad():
        members = torch.stack([torch.sigmoid(router(x, member=m)[0]) for m in range(router.config.members)])
    np.testing.assert_allclose(member_spread(router, x), members.std(0, unbiased=False).numpy(), atol=1e-4)
    d0 = router.route([EXAM], cost_weight=20.0)[0]
    assert 0.0 <= d0.confidence <= 1.0 and 0.0 <= d0.coverage <= 1.0 and not d0.ood
    quality, cost = router.predict([EXAM])
    spread = member_spread(router, router.featurize([EXAM]))
    for risk in (0.0, 2.0, 20.0):
        d = router.route([EXAM], cost_weight=20.0, risk=risk)[0]
        lcb = np.clip(quality[0] - risk * spread[0], 0, 1) - 20.0 * cost[0]
        assert lcb[d.action_index] == pytest.approx(lcb.max(), abs=1e-6)
    with pytest.raises(ValueError, match="risk"):
        router.route([EXAM], risk=-1.0)
    train = ~dev
    seen = np.zeros((log.n_queries, len(log.space)), dtype=bool)
    seen[log.row_query, log.row_action] = True
    rare = sorted(log.space.actions[a].key for a in np.flatnonzero(seen[train].mean(0) < 0.2))
    with caplog.at_level(logging.WARNING, logger="haps_core.model.ood"):
        copy = HAPSRouter.from_pretrained("haps-default")
        fit_ood(copy, log, train, features=features, min_share=0.2)
    warnings = [r.getMessage() for r in caplog.records if "fewer than" in r.getMessage()]
    # One readable line: the count, per backend how many, the rarest few keys; the full list
    # comes back from the checkpoint's statistics through `rare_actions`.
    assert len(warnings) == 1 and warnings[0].startswith(f"{len(rare)} action(s)") and rare
    listed = rare_actions(copy, 0.2)
    assert sorted(listed) == rare
    assert all(k in warnings[0] for k in listed[:RARE_KEYS_SHOWN])
    for backend in {k.split("|", 1)[0] for k in rare}:
        assert f"{backend}: {sum(k.split('|', 1)[0] == backend for k in rare)}" in warnings[0]
    assert len(warnings[0]) < 2000
    if len(rare) > RARE_KEYS_SHOWN:
        assert f"and {len(rare) - RARE_KEYS_SHOWN} more" in warnings[0]
    assert rare_actions(copy, 0.0) == []


def test_issue15_explanation_top_actions_margin_and_neighbours(bench):
    router, *_ = bench
    e = router.explain(EXAM, cost_weight=20.0, k=4)
    d = router.route([EXAM], cost_weight=20.0)[0]
    assert e.chosen == router.space.actions[d.action_index].key
    utilities = [a.utility for a in e.actions]
    assert utilities == sorted(utilities, reverse=True) and len(e.to_dict()["actions"]) == 4
    for a in e.actions[:4]:
        assert a.utility == pytest.approx(a.predicted_quality - 20.0 * a.predicted_cost)
    assert e.margin == pytest.approx(e.actions[0].utility - e.actions[1].utility) and e.margin >= 0
    assert e.ood is False and e.ood_score == pytest.approx(d.ood_score)
    sims = [n.similarity for n in e.neighbours]
    assert len(sims) == 3 and sims == sorted(sims, reverse=True)
    assert any("Topic: Math" in n.text for n in e.neighbours)
    text = str(e)
    assert e.chosen in text and "OOD score" in text and "nearest training queries" in text
    json.dumps(e.to_dict())
    with pytest.raises(ValueError, match="explain"):
        d.explain()


def test_issue15_checkpoint_round_trip_and_old_checkpoints(bench, tmp_path):
    router, *_ = bench
    router.save_pretrained(tmp_path / "r")
    loaded = HAPSRouter.from_pretrained(tmp_path / "r")
    assert loaded.ood_stats == router.ood_stats
    for name in ("ood_bank", "ood_observed", "sample_scores", "action_stats"):
        assert torch.equal(getattr(loaded, name), getattr(router, name)), name
    texts = [EXAM, *CHAT_AND_CODE[:3]]
    loaded.attach_encoder(router.encoder)  # the same (cached) embeddings: the same decisions
    assert [d.to_dict() for d in loaded.route(texts, 20.0)] == [
        d.to_dict() for d in router.route(texts, 20.0)
    ]
    # a checkpoint saved before the statistics existed: without their tensors and config key
    from safetensors.torch import load_file, save_file

    legacy = router.save_pretrained(tmp_path / "legacy")
    tensors = load_file(legacy / "model.safetensors")
    for name in ("ood_bank", "ood_observed", "sample_scores", "action_stats"):
        del tensors[name]
    save_file(tensors, legacy / "model.safetensors")
    config = json.loads((legacy / "config.json").read_text())
    del config["ood"]
    (legacy / "config.json").write_text(json.dumps(config))
    old = HAPSRouter.from_pretrained(legacy)
    assert old.ood_stats is None and len(old.ood_bank) == 0
    assert "ood" not in old.route([EXAM])[0].to_dict()
    out = tmp_path / "d.jsonl"
    cmd = [sys.executable, "-m", "haps_core.cli", "route", "--router", str(tmp_path / "r"), "--explain"]
    run = subprocess.run(
        [*cmd, "--query", CHAT_AND_CODE[1], "--output", str(out)], capture_output=True, text=True
    )
    assert run.returncode == 0, run.stderr
    assert "OUT OF DISTRIBUTION" in run.stdout and "top 5 actions" in run.stdout
    line = json.loads(out.read_text())
    assert line["ood"] is True and "explanation" in line and 0 <= line["confidence"] <= 1


def test_issue15_default_ood_action_is_the_best_single_action_of_the_callers_pool(bench):
    """Flagged queries of a pool without the log's best single action get the pool's best one."""
    router = bench[0]
    best = router.space.actions[int(np.flatnonzero(ood_actions(router, None, 0.0))[0])].backend
    pool = [b for b in router.space.backend_names if b != best][:2]
    for d in router.route(CHAT_AND_CODE[:6], cost_weight=0.0, backends=pool):
        assert d.backend in pool
        if d.ood:
            mask = np.array([a.backend in pool for a in router.space.actions])
            assert ood_actions(router, None, 0.0, mask)[d.action_index]


def test_issue15_the_shipped_router_ships_its_ood_statistics():
    """The checkpoint itself (no fit_ood in memory): chat and coding flagged, exam queries not."""
    router = HAPSRouter.from_pretrained("haps-default")
    router.attach_encoder(CachedEncoder(router.encoder, default_cache_dir() / "embeddings"))
    assert router.ood_stats is not None
    assert sum(d.ood for d in router.route(CHAT_AND_CODE, cost_weight=0.0)) >= 18
    assert not router.route([EXAM], cost_weight=0.0)[0].ood
