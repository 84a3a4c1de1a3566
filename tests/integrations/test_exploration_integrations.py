"""Issue 17: `exploration=` on the integrations reaches the router, and records carry propensities.

REAL: a tiny `HAPSRouter` trained in the test (`tests.helpers.tiny_routers`), `HAPSRunnable`,
`ChatHAPS`, `HAPSLLM`, the decision routine and exploration policy, a SQLite store. FAKED: the
backends (`EchoChatModel`, `EchoLLM`: echo fakes, no model).
"""

import pytest
from langchain_core.messages import HumanMessage

from haps_core.exploration import Exploration
from haps_integrations.langchain import ChatHAPS, HAPSRunnable
from tests.helpers.lc_fakes import EchoChatModel
from tests.helpers.tiny_routers import TEXTS, tiny_router

QUERIES = [f"{t} (variant {i})" for i in range(12) for t in TEXTS]
STYLES = {"cot": "Think step by step."}


@pytest.fixture(scope="module")
def router(tmp_path_factory):
    return tiny_router(tmp_path_factory.mktemp("explore"))[0]


def _backends(router):
    return {name: EchoChatModel(tag=name) for name in router.space.backend_names}


def test_issue17_runnable_exploration_serves_drawn_actions_with_their_propensity(router, tmp_path):
    greedy = HAPSRunnable(router=router, backends=_backends(router), prompt_styles=STYLES)
    explore = HAPSRunnable(
        router=router,
        backends=_backends(router),
        prompt_styles=STYLES,
        exploration={"kind": "epsilon", "epsilon": 1.0, "seed": 0},
        store=tmp_path / "r.db",
    )
    plain = [m.response_metadata["haps"] for m in greedy.batch(QUERIES)]
    drawn = [m.response_metadata["haps"] for m in explore.batch(QUERIES)]
    assert all("propensity" not in d for d in plain)  # off by default: records unchanged
    assert [d["action_index"] for d in plain] == [d.action_index for d in router.route(QUERIES)]
    assert any(d["action_index"] != p["action_index"] for d, p in zip(drawn, plain))
    assert all(0.0 < d.get("propensity", 1.0) <= 1.0 for d in drawn)
    assert any(d.get("propensity", 1.0) < 1.0 for d in drawn)
    explore.flush_records()
    records = {r.decision_id: r for r in explore._caller.recorder.store.records()}
    assert len(records) == len(QUERIES)
    for d in drawn:
        assert records[d["decision_id"]].propensity == pytest.approx(d.get("propensity", 1.0))


def test_issue17_chat_and_llamaindex_take_an_exploration_policy(router):
    pytest.importorskip("llama_index.core")
    from haps_integrations.llamaindex import HAPSLLM
    from tests.helpers.li_fakes import EchoLLM

    policy = Exploration(kind="softmax", temperature=10.0, seed=1)
    chat = ChatHAPS(router=router, backends=_backends(router), prompt_styles=STYLES, exploration=policy)
    keys = {chat.invoke([HumanMessage(q)]).response_metadata["haps"]["action_index"] for q in QUERIES}
    assert len(keys) > 1
    llms = {n: EchoLLM(tag=n) for n in router.space.backend_names}
    llm = HAPSLLM(
        router=router, backends=llms, prompt_styles=STYLES, exploration={"kind": "epsilon", "epsilon": 1.0}
    )
    metas = [llm.complete(q).additional_kwargs["haps"] for q in QUERIES]
    assert any(m.get("propensity", 1.0) < 1.0 for m in metas)
    with pytest.raises(TypeError, match="exploration"):
        HAPSRunnable(router=router, backends=_backends(router), prompt_styles=STYLES, exploration="always")
