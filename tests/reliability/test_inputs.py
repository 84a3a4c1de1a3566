"""Hostile and odd inputs: what the router reads, what the backend gets, and clear errors.

Two kinds of router are used. The FAKE rule-based `fake_router.FakeRouter` records the exact
texts it was asked to route, so a test can compare them with what the FAKE echo backend
(`lc_fakes.EchoChatModel`, `li_fakes.EchoLLM`) received. The REAL routers of conftest.py (a
tiny trained `HAPSRouter`, and the shipped default router's weights with a tiny encoder) show
that the real tokenizer, features and heads cope with the same inputs.
"""

import logging
import math
import time

import numpy as np
import pytest
from langchain_core.messages import AIMessage, HumanMessage, SystemMessage
from llama_index.core.base.llms.types import ChatMessage, ImageBlock, MessageRole, TextBlock
from llama_index.core.tools.types import ToolMetadata
from tenacity import wait_none

from haps_core.decision import choose
from haps_core.dispatch import MAX_ROUTING_CHARS
from haps_integrations.langchain import ChatHAPS, HAPSRunnable
from haps_integrations.llamaindex import HAPSLLM, HAPSSelector
from tests.helpers.fake_router import FakeRouter
from tests.helpers.lc_fakes import EchoChatModel
from tests.helpers.li_fakes import EchoLLM
from tests.helpers.reliability_ledger import INPUTS

IMAGE = "https://example.invalid/cat.png"  # never fetched: HAPS skips non-text parts
CONTROL = "tab\there\r\nnul\x00bell\x07 esc\x1b[31mred\x1b[0m del\x7f zwsp\u200b rtl\u202eevil\u202c"
SCRIPTS = [
    "Привет, как дела? Сколько будет 17 * 23?",
    "你好，世界！请一步一步地解释。",  # noqa: RUF001 - the point: full-width punctuation
    "مرحبا بالعالم، ما هو 17 × 23؟",  # noqa: RUF001 - the point: a real multiplication sign
    "Ünïcödé café naïve façade",
    "Hello 👋🏽 мир 世界 عالم 🌍🚀 — mixed ✓",
    "👨‍👩‍👧‍👦🏳️‍🌈🇫🇷 emoji only",
]
SURROGATES = [
    "bad \ud800 lone high surrogate",
    "bad \udfff lone low surrogate",
    b"caf\xe9 undecodable \xff bytes".decode("utf-8", errors="surrogateescape"),
]


def lc(router=None, **kwargs):
    backends = {"small": EchoChatModel(tag="small"), "large": EchoChatModel(tag="large")}
    return HAPSRunnable(router=router or FakeRouter(), backends=backends, retry_wait=wait_none(), **kwargs)


def li(router=None, **kwargs):
    llms = {"small": EchoLLM(tag="small"), "large": EchoLLM(tag="large")}
    return HAPSLLM(router=router or FakeRouter(), backends=llms, retry_wait=wait_none(), **kwargs)


def user(content=None, blocks=None):
    if blocks is not None:
        return ChatMessage(role=MessageRole.USER, blocks=blocks)
    return ChatMessage(role=MessageRole.USER, content=content)


def lc_received(haps):
    """The last human message that reached any echo backend of ``haps``."""
    entries = [e for b in haps.backends.values() for e in b.log]
    assert len(entries) == 1, entries
    return [m for m in entries[0]["messages"] if isinstance(m, HumanMessage)][-1].content


def li_received(haps):
    entries = [e for b in haps.backends.values() for e in b.log]
    assert len(entries) == 1, entries
    return [m for m in entries[0]["messages"] if m.role == MessageRole.USER][-1]


# -- empty and whitespace-only ------------------------------------------------------------------
BLANKS = ["", " ", "\n\t \r\n", "\u3000\u00a0"]  # the last: ideographic and no-break spaces


@pytest.mark.parametrize("text", BLANKS, ids=["empty", "space", "newlines-tabs", "unicode-spaces"])
async def test_empty_and_whitespace_only_text_is_a_clear_error_everywhere(text, tiny_router, ledger):
    """FAKE router and backends for the integrations, the REAL tiny router for ``route``.

    Expected: a ValueError that says the text is empty, from every entry point, and no backend
    called. In a batch, only that input fails.
    """
    calls = 0
    lc_haps, li_haps = lc(), li()
    for attempt in (
        lambda: lc_haps.invoke(text),
        lambda: lc_haps.invoke([SystemMessage(content="be brief"), HumanMessage(content=text)]),
        lambda: ChatHAPS(router=FakeRouter(), backends=lc_haps.backends).invoke(text),
        lambda: li_haps.chat([user(text)]),
        lambda: li_haps.complete(text),
        lambda: HAPSSelector(FakeRouter()).select(
            [ToolMetadata(name="small", description="s"), ToolMetadata(name="large", description="l")], text
        ),
        lambda: tiny_router.route([text]),
    ):
        with pytest.raises(ValueError, match=r"empty|nothing to route on"):
            attempt()
        calls += 1
    with pytest.raises(ValueError, match="empty or whitespace-only"):
        await lc_haps.ainvoke(text)
    with pytest.raises(ValueError, match="empty or whitespace-only"):
        await li_haps.achat([user(text)])
    calls += 2
    outcomes = lc_haps.batch(["fine", text, "also fine"], return_exceptions=True)
    calls += 1
    assert isinstance(outcomes[1], ValueError)
    assert [o.content for o in (outcomes[0], outcomes[2])] == ["large: fine", "large: also fine"]
    assert sum(len(b.log) for b in lc_haps.backends.values()) == 2  # only the two good inputs
    assert all(not b.log for b in li_haps.backends.values())
    ledger(INPUTS, faults=calls, calls=calls, lost=0, inputs=1)  # every call carried the blank text


# -- a 1 MB query -------------------------------------------------------------------------------
BIG = ("Summarise this log line by line. " + "x" * 60 + "\n") * 10_870  # about 1 MB
BIG = BIG[:1_000_000]


@pytest.mark.parametrize("surface", ["langchain", "llamaindex"])
def test_1mb_query_is_truncated_for_routing_with_a_warning_and_sent_whole(surface, caplog, ledger):
    """FAKE router (records what it routes) and backends. Expected: the router reads the first
    MAX_ROUTING_CHARS characters, a warning says so, and the backend gets all 1,000,000."""
    router = FakeRouter()
    caplog.set_level(logging.WARNING, logger="haps_core.dispatch")
    if surface == "langchain":
        haps = lc(router)
        answer = haps.invoke(BIG).content
        received = lc_received(haps)
    else:
        haps = li(router)
        answer = haps.chat([user(BIG)]).message.content
        received = li_received(haps).content
    assert router.calls[-1]["texts"] == [BIG[:MAX_ROUTING_CHARS]]
    assert received == BIG and answer == f"large: {BIG}"
    assert "has 1000000 characters; routing on its first 32000" in caplog.text
    ledger(INPUTS, faults=1, calls=1, lost=0, inputs=1)


def test_1mb_query_with_a_real_router_is_fast_and_answered(tiny_router, caplog, ledger):
    """REAL tiny router, FAKE backends: a 1 MB query through `HAPSRunnable` and `HAPSLLM` is
    routed in well under a second each (the router reads 32,000 characters; its encoder cuts
    those to 64 tokens, with its own warning) and answered with the whole text."""
    caplog.set_level(logging.WARNING)
    for haps, ask, received in (
        (lc(tiny_router), lambda h: h.invoke(BIG).content, lambda h: lc_received(h)),
        (li(tiny_router), lambda h: h.chat([user(BIG)]).message.content, lambda h: li_received(h).content),
    ):
        start = time.perf_counter()
        answer = ask(haps)
        assert time.perf_counter() - start < 5.0
        assert answer.endswith(BIG) and received(haps) == BIG
    assert "routing on its first 32000" in caplog.text
    assert "exceed max_length=64 tokens and were truncated" in caplog.text
    ledger(INPUTS, faults=2, calls=2, lost=0, inputs=1)


# -- invalid UTF-8: unpaired surrogates -----------------------------------------------------------
@pytest.mark.parametrize("text", SURROGATES, ids=["high", "low", "surrogateescape-bytes"])
def test_unpaired_surrogates_are_routed_as_replacement_characters(text, tiny_router, ledger):
    """FAKE router and backends, then the REAL tiny router. Expected: the router reads U+FFFD
    where the text has an unpaired surrogate (no tokenizer crash); the backend gets the caller's
    text unchanged; a real router routes it."""
    router = FakeRouter()
    haps = lc(router)
    assert haps.invoke(text).content == f"large: {text}"
    routed = router.calls[-1]["texts"][0]
    assert "\ufffd" in routed and not any(0xD800 <= ord(c) <= 0xDFFF for c in routed)
    assert lc_received(haps) == text
    li_haps = li(router)
    assert li_haps.chat([user(text)]).message.content == f"large: {text}"
    for real in (lc(tiny_router), li(tiny_router)):
        decision = real.route([text])[0] if isinstance(real, HAPSRunnable) else real.route(text)
        assert decision.backend in ("small", "large") and math.isfinite(decision.predicted_cost)
    ledger(INPUTS, faults=4, calls=4, lost=0, inputs=1)


def test_unpaired_surrogates_routed_directly(tiny_router, ledger):
    """REAL tiny router, nothing faked. Expected: a decision, as the integrations give (the
    encoder routes surrogates as U+FFFD)."""
    decision = tiny_router.route([SURROGATES[0]])[0]
    assert decision.backend in ("small", "large")
    ledger(INPUTS, faults=1, calls=1, lost=0, inputs=1)


# -- control characters, mixed scripts and emoji ------------------------------------------------
@pytest.mark.parametrize("text", [CONTROL, *SCRIPTS], ids=["control", *(f"script{i}" for i in range(6))])
def test_control_characters_scripts_and_emoji_are_routed_and_sent_unchanged(text, tiny_router, ledger):
    """REAL tiny router, FAKE backends. Expected: routed to a real decision with finite
    predictions, answered, and the backend gets the text byte for byte."""
    haps = lc(tiny_router)
    answer = haps.invoke(text)
    meta = answer.response_metadata["haps"]
    assert answer.content == f"{meta['backend']}: {text}"
    assert math.isfinite(meta["predicted_quality"]) and math.isfinite(meta["predicted_cost"])
    assert lc_received(haps) == text
    li_haps = li(tiny_router)
    assert li_haps.chat([user(text)]).message.content.endswith(text)
    assert li_received(li_haps).content == text
    ledger(INPUTS, faults=2, calls=2, lost=0, inputs=1)


def test_scripts_the_shipped_router_never_saw_still_get_an_answer(shipped_router, ledger):
    """The REAL shipped router's weights (tiny FAKE encoder), FAKE echo backends for its 9 models.

    Its training queries are English: Cyrillic, CJK and Arabic letters put its script features
    far outside what it saw. Expected: every query is still answered by a
    backend of the catalog, with the decision attached.
    """
    backends = {name: EchoChatModel(tag=name) for name in shipped_router.space.backend_names}
    haps = HAPSRunnable(router=shipped_router, backends=backends, cost_weight=20.0, retry_wait=wait_none())
    for text in SCRIPTS:
        message = haps.invoke(text)
        meta = message.response_metadata["haps"]
        assert meta["backend"] in backends and message.content == f"{meta['backend']}: {text}"
    ledger(INPUTS, faults=len(SCRIPTS), calls=len(SCRIPTS), lost=0, inputs=len(SCRIPTS))


def test_non_finite_predictions_are_logged_and_the_call_still_answered(caplog, ledger):
    """FAKE router predicting an infinite cost for "large" and a NaN quality for "small" at
    temperature 0.7 (what the shipped router does on unseen scripts), FAKE backends.

    Expected: HAPS logs that the predictions are not finite, naming the query, and answers.
    """

    def quality(text, action):
        return math.nan if (action.backend, action.temperature) == ("small", 0.7) else 0.5

    router = FakeRouter(quality=quality, cost=lambda a: math.inf if a.backend == "large" else 0.001)
    caplog.set_level(logging.WARNING, logger="haps_core.dispatch")
    haps = lc(router, cost_weight=20.0)
    assert haps.invoke("Привет мир").content == "small: Привет мир"
    assert "predictions for texts[0] ('Привет мир') are not all finite" in caplog.text
    assert "far outside the router's training data" in caplog.text
    ledger(INPUTS, faults=1, calls=1, lost=0, inputs=1)


def test_shipped_router_predictions_are_finite_for_every_script(shipped_router, ledger):
    """REAL shipped router weights, tiny FAKE encoder. Expected: finite predictions (normalised
    features are clipped to +-10 standard deviations)."""
    quality, cost = shipped_router.predict(SCRIPTS)
    assert np.isfinite(quality).all() and np.isfinite(cost).all()
    assert cost.max() < 10.0  # USD per call: the catalog's priciest action costs cents
    ledger(INPUTS, faults=len(SCRIPTS), calls=1, lost=0, inputs=len(SCRIPTS))


def test_a_non_finite_prediction_never_wins_by_accident(ledger):
    """No router: the decision rule itself, on predictions like the shipped router's above.

    Expected: at cost weight 0 an infinite predicted cost is ignored (utility = quality, not
    NaN); at a positive weight that action loses; a NaN prediction is never chosen (np.argmax
    would pick it first); a mask is still honoured when every allowed utility is non-finite.
    """
    quality = np.array([[0.5, 0.9, 0.7, np.nan]])
    cost = np.array([[0.01, np.inf, 0.02, 0.0]])
    assert choose(quality, cost, 0.0).tolist() == [1]
    assert choose(quality, cost, 10.0).tolist() == [2]
    assert choose(quality, np.full((1, 4), np.inf), 10.0, np.array([False, False, True, True])).tolist() == [
        2
    ]
    ledger(INPUTS, faults=3, calls=3, lost=0, inputs=3)


# -- message lists without a user turn, and non-text parts --------------------------------------
def test_messages_without_a_user_turn_are_a_clear_error(ledger):
    """FAKE router and backends. Expected: ValueError naming what the input holds; no backend call."""
    lc_haps, li_haps = lc(), li()
    with pytest.raises(ValueError, match=r"has none \(message types: \['SystemMessage', 'AIMessage'\]\)"):
        lc_haps.invoke([SystemMessage(content="You are terse."), AIMessage(content="Hello!")])
    with pytest.raises(ValueError, match=r"has none \(roles: \['system', 'assistant'\]\)"):
        li_haps.chat(
            [
                ChatMessage(role=MessageRole.SYSTEM, content="You are terse."),
                ChatMessage(role=MessageRole.ASSISTANT, content="Hello!"),
            ]
        )
    with pytest.raises(ValueError, match="has none"):
        lc_haps.invoke([])
    assert all(not b.log for b in [*lc_haps.backends.values(), *li_haps.backends.values()])
    ledger(INPUTS, faults=3, calls=3, lost=0, inputs=3)


def test_images_and_other_parts_are_skipped_for_routing_and_sent_to_the_backend(ledger):
    """FAKE router (records its input) and backends. Expected: the router reads only the text
    parts; the backend gets every part, image included; an image with no text is an error."""
    router = FakeRouter()
    haps = lc(router)
    content = [
        {"type": "text", "text": "What breed is this cat?"},
        {"type": "image_url", "image_url": {"url": IMAGE}},
        {"type": "text", "text": "Answer step by step."},
    ]
    haps.invoke([HumanMessage(content=content)])
    assert router.calls[-1]["texts"] == ["What breed is this cat?\nAnswer step by step."]
    assert lc_received(haps) == content
    with pytest.raises(ValueError, match="no text parts"):
        haps.invoke([HumanMessage(content=[{"type": "image_url", "image_url": {"url": IMAGE}}])])

    li_haps = li(router)
    blocks = [TextBlock(text="What breed is this cat?"), ImageBlock(url=IMAGE)]
    li_haps.chat([user(blocks=blocks)])
    assert router.calls[-1]["texts"] == ["What breed is this cat?"]
    assert any(isinstance(b, ImageBlock) for b in li_received(li_haps).blocks)
    with pytest.raises(ValueError, match="no text parts"):
        li_haps.chat([user(blocks=[ImageBlock(url=IMAGE)])])
    ledger(INPUTS, faults=4, calls=4, lost=0, inputs=4)
