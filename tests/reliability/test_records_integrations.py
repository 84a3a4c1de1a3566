"""Issue 17: every surface records what it served, takes feedback, and changes nothing without a store.

FAKED: the router (`fake_router.FakeRouter`) and the backends (`lc_fakes.EchoChatModel`,
`li_fakes.EchoLLM`, failing on demand). Real: `HAPSRunnable`, `ChatHAPS`, `HAPSLLM`, LangChain's
callback system with `HAPSFeedbackHandler`, the recorder and SQLite / JSONL / callable stores.
"""

import pytest
from langchain_core.messages import HumanMessage
from tenacity import wait_none

from haps_core.errors import AllBackendsFailedError
from haps_core.feedback import UnknownDecisionError, open_store
from haps_integrations.langchain import ChatHAPS, HAPSFeedbackHandler, HAPSRunnable
from tests.helpers.fake_router import FakeRouter
from tests.helpers.lc_fakes import EchoChatModel
from tests.helpers.reliability_fakes import build, call, permanent_errors, transient_errors

SURFACES = ["langchain.invoke", "langchain.ainvoke", "llamaindex.chat", "llamaindex.achat"]


@pytest.mark.parametrize("surface", SURFACES)
async def test_issue17_each_surface_records_and_takes_feedback(surface, tmp_path):
    """A served call (after a fallback) and a failed one: one record each, feedback by id."""
    down = [transient_errors()["unavailable_503"]] * 3
    haps, _ = build(surface, large=down, store=tmp_path / "r.db")
    text, record = await call(surface, haps, "a hard question")
    decision_id = record["decision_id"]
    haps.feedback(decision_id, "up")
    haps.feedback(decision_id, 0.25)
    with pytest.raises(UnknownDecisionError, match="'f00d'"):
        haps.feedback("f00d", 1.0)
    store = haps._caller.recorder.store
    (served,) = store.records()
    assert (served.decision_id, served.served_backend, served.fallback) == (decision_id, "small", True)
    assert served.n_attempts == 4 and served.response == text
    assert [e.score for e in store.feedback_entries()] == [1.0, 0.25]

    failing, _ = build(
        surface, large=[permanent_errors()["auth_401"]], small=[permanent_errors()["auth_401"]]
    )
    failing._caller.recorder = haps._caller.recorder  # the same store
    with pytest.raises(AllBackendsFailedError):
        await call(surface, failing, "another question")
    haps.flush_records()
    failed = [r for r in store.records() if r.status == "failed"]
    assert len(failed) == 1 and [a["backend"] for a in failed[0].attempts] == ["large", "small"]


def test_issue17_chat_haps_records_and_takes_feedback(tmp_path):
    backends = {t: EchoChatModel(tag=t) for t in ("large", "small")}
    chat = ChatHAPS(
        router=FakeRouter(), backends=backends, retry_wait=wait_none(), store=tmp_path / "c.jsonl"
    )
    message = chat.invoke([HumanMessage("a hard question")])
    decision_id = message.response_metadata["haps"]["decision_id"]
    chat.feedback(decision_id, lambda reply: float(reply.startswith("large")))
    (record,) = chat._caller.recorder.store.records()
    assert (record.source, record.served_backend, record.response) == ("ChatHAPS", "large", message.content)
    assert [e.kind for e in chat._caller.recorder.store.feedback_entries()] == ["scorer"]


def test_issue17_feedback_handler_maps_runs_and_scores(tmp_path):
    """Feedback through LangChain callbacks: by the outer chain's run id, and by a scorer."""
    from langchain_core.runnables import RunnableLambda

    backends = {t: EchoChatModel(tag=t) for t in ("large", "small")}
    haps = HAPSRunnable(
        router=FakeRouter(), backends=backends, retry_wait=wait_none(), store=tmp_path / "r.db"
    )
    handler = HAPSFeedbackHandler(haps)
    chain = RunnableLambda(lambda q: q.upper()) | haps | RunnableLambda(lambda m: m.content)
    runs = []

    class Runs(HAPSFeedbackHandler):
        def on_chain_start(self, serialized, inputs, *, run_id, parent_run_id=None, **kw):
            if parent_run_id is None:
                runs.append(run_id)

    chain.invoke("a question", config={"callbacks": [handler, Runs(haps)]})
    (outer,) = runs
    entry = handler.feedback(outer, "down")
    (record,) = haps._caller.recorder.store.records()
    assert entry.decision_id == record.decision_id and record.query == "A QUESTION"
    assert handler.feedback(str(outer), 1.0).decision_id == record.decision_id

    scored = HAPSFeedbackHandler(haps, scorer=lambda reply: 0.5)
    haps.invoke("second", config={"callbacks": [scored]})
    entries = haps._caller.recorder.store.feedback_entries()
    assert [(e.score, e.kind) for e in entries][-1] == (0.5, "scorer")
    with pytest.raises(KeyError, match="no HAPS response"):
        handler.decision_id(__import__("uuid").uuid4())


@pytest.mark.parametrize("surface", SURFACES)
async def test_issue17_no_store_leaves_decisions_and_outputs_unchanged(surface):
    """Without ``store=`` nothing is recorded and the ``haps`` metadata has no decision_id; with
    a callable store the answer and decision are the same, plus the id."""
    plain, _ = build(surface)
    items = []
    recorded, _ = build(surface, store=items.append)
    text_a, record_a = await call(surface, plain, "a creative story, step by step")
    text_b, record_b = await call(surface, recorded, "a creative story, step by step")
    recorded.flush_records()
    assert plain._caller.recorder is None and "decision_id" not in record_a
    assert text_a == text_b
    assert {k: v for k, v in record_b.items() if k not in ("decision_id", "attempts")} == {
        k: v for k, v in record_a.items() if k != "attempts"
    }
    assert [i["decision_id"] for i in items] == [record_b["decision_id"]]
    with pytest.raises(ValueError, match="has no record store: pass `store=`"):
        plain.feedback("x", 1.0)
    plain.flush_records()  # a no-op without a store


def test_issue17_store_text_false_keeps_hashes(tmp_path):
    backends = {t: EchoChatModel(tag=t) for t in ("large", "small")}
    store = open_store(tmp_path / "h.db", store_text=False)
    haps = HAPSRunnable(router=FakeRouter(), backends=backends, retry_wait=wait_none(), store=store)
    haps.invoke("private question")
    haps.flush_records()
    (record,) = store.records()
    assert record.query is None and record.response is None and len(record.query_hash) == 64


async def test_issue17_a_stream_is_recorded_once_with_its_id_on_the_first_chunk(tmp_path):
    backends = {t: EchoChatModel(tag=t) for t in ("large", "small")}
    haps = HAPSRunnable(
        router=FakeRouter(), backends=backends, retry_wait=wait_none(), store=tmp_path / "s.db"
    )
    chunks = list(haps.stream("a hard question"))
    achunks = [c async for c in haps.astream("an easy question")]
    haps.flush_records()
    records = haps._caller.recorder.store.records()
    ids = [c.response_metadata["haps"]["decision_id"] for c in (chunks[0], achunks[0])]
    assert [r.decision_id for r in records] == ids
    assert all(r.status == "ok" and r.n_attempts == 1 and r.response is None for r in records)
