"""What HAPS actually sends over the wire, with real `ChatOpenAI` backends and a local stand-in.

The server is a stdlib `http.server` on 127.0.0.1 (a stand-in, not OpenAI) that speaks just
enough of ``POST /v1/chat/completions`` (plain JSON and server-sent-event streams) and records
every request body. The router is the FAKE rule-based `fake_router.FakeRouter`. So these tests
check the request that leaves the process: the chosen backend's model name, the chosen
temperature and the prompt style's system message, plus retries/fallback on real
``openai`` exceptions (429 retried, 401 not).
"""

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from langchain_core.messages import AIMessage
from langchain_openai import ChatOpenAI
from tenacity import wait_none

from haps_integrations.langchain import ChatHAPS, HAPSRunnable
from tests.helpers.fake_router import COT_TEXT, FakeRouter

# pytest-socket: these tests need a TCP socket on loopback, even under --disable-socket.
pytestmark = pytest.mark.enable_socket

MODELS = {"small": "gpt-4o-mini-standin", "large": "gpt-4o-standin"}


class StandIn(BaseHTTPRequestHandler):
    """A minimal OpenAI chat.completions stand-in. ``server.fail`` maps model -> status codes."""

    def log_message(self, *args):  # keep test output clean
        pass

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.server.requests.append({"path": self.path, "body": body})
        model = body["model"]
        failures = self.server.fail.get(model)
        if failures:
            status = failures.pop(0)
            payload = json.dumps({"error": {"message": f"stand-in says {status}", "type": "x", "code": None}})
            self._send(status, "application/json", payload.encode())
            return
        text = f"answer from {model}"
        if body.get("stream"):
            events = [
                {
                    "choices": [
                        {"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}
                    ]
                },
                *(
                    {"choices": [{"index": 0, "delta": {"content": piece}, "finish_reason": None}]}
                    for piece in ("answer", " from", f" {model}")
                ),
                {"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]},
            ]
            lines = [
                "data: "
                + json.dumps(
                    {
                        "id": "chatcmpl-standin",
                        "object": "chat.completion.chunk",
                        "created": 0,
                        "model": model,
                        **e,
                    }
                )
                + "\n\n"
                for e in events
            ]
            self._send(200, "text/event-stream", ("".join(lines) + "data: [DONE]\n\n").encode())
            return
        payload = {
            "id": "chatcmpl-standin",
            "object": "chat.completion",
            "created": 0,
            "model": model,
            "choices": [
                {"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}
            ],
            "usage": {"prompt_tokens": 7, "completion_tokens": 3, "total_tokens": 10},
        }
        self._send(200, "application/json", json.dumps(payload).encode())

    def _send(self, status: int, content_type: str, data: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


@pytest.fixture
def server(monkeypatch) -> Iterator[ThreadingHTTPServer]:
    for var in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"):
        monkeypatch.delenv(var, raising=False)
    srv = ThreadingHTTPServer(("127.0.0.1", 0), StandIn)
    srv.requests = []
    srv.fail = {}
    thread = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    yield srv
    srv.shutdown()
    srv.server_close()


def openai_backends(server) -> dict[str, ChatOpenAI]:
    base_url = f"http://127.0.0.1:{server.server_address[1]}/v1"
    return {
        # max_retries=0: retries are HAPS's job here, so each HTTP error reaches HAPS at once
        name: ChatOpenAI(model=model, base_url=base_url, api_key="sk-standin", max_retries=0, timeout=10)
        for name, model in MODELS.items()
    }


@pytest.fixture
def haps(server) -> HAPSRunnable:
    return HAPSRunnable(router=FakeRouter(), backends=openai_backends(server), retry_wait=wait_none())


def test_request_carries_model_temperature_and_style(haps, server):
    msg = haps.invoke("Think step by step: what is 17 * 23?")
    (request,) = server.requests
    body = request["body"]
    assert request["path"] == "/v1/chat/completions"
    assert body["model"] == haps.backends["large"].model_name == MODELS["large"]
    assert body["temperature"] == 0.0
    assert body["messages"][0] == {"role": "system", "content": COT_TEXT}
    assert body["messages"][-1] == {"role": "user", "content": "Think step by step: what is 17 * 23?"}
    assert msg.content == f"answer from {MODELS['large']}"
    meta = msg.response_metadata["haps"]
    assert meta["applied"] == {"temperature": "model_copy", "prompt_style": "system_message"}
    assert msg.usage_metadata["total_tokens"] == 10, "the backend's own metadata is kept"


def test_cheap_call_goes_to_the_small_model_at_high_temperature(haps, server):
    haps.invoke("Write a creative haiku", config={"configurable": {"haps_cost_weight": 100.0}})
    body = server.requests[-1]["body"]
    assert body["model"] == MODELS["small"]
    assert body["temperature"] == 0.7
    assert all(m["role"] != "system" for m in body["messages"]), "default style: no system message"


def test_429_is_retried_then_falls_back_on_the_wire(haps, server):
    server.fail[MODELS["large"]] = [429, 429, 429]
    msg = haps.invoke("hello")
    assert [r["body"]["model"] for r in server.requests] == [MODELS["large"]] * 3 + [MODELS["small"]]
    attempts = msg.response_metadata["haps"]["attempts"]
    # langchain-openai re-raises openai.RateLimitError as its subclass OpenAIRateLimitError
    assert ["RateLimitError: Error code: 429" in (a["error"] or "") for a in attempts] == [True] * 3 + [False]
    assert [a["transient"] for a in attempts] == [True, True, True, False]


def test_401_falls_back_at_once_on_the_wire(haps, server):
    server.fail[MODELS["large"]] = [401]
    msg = haps.invoke("hello")
    assert [r["body"]["model"] for r in server.requests] == [MODELS["large"], MODELS["small"]]
    assert msg.response_metadata["haps"]["attempts"][0]["error"].startswith(
        "OpenAIAuthenticationError: Error code: 401"
    )


def test_stream_over_the_wire(haps, server):
    chunks = list(haps.stream("Write a creative haiku"))
    body = server.requests[-1]["body"]
    assert body["stream"] is True
    assert (body["model"], body["temperature"]) == (MODELS["large"], 0.7)
    assert "".join(c.content for c in chunks) == f"answer from {MODELS['large']}"


async def test_abatch_over_the_wire(haps, server):
    outs = await haps.abatch(["one", "two creative", "three step"])
    assert [o.content for o in outs] == [f"answer from {MODELS['large']}"] * 3
    bodies = sorted((r["body"]["messages"][-1]["content"], r["body"]["temperature"]) for r in server.requests)
    assert bodies == [("one", 0.0), ("three step", 0.0), ("two creative", 0.7)]


def test_chat_haps_over_the_wire(server):
    chat = ChatHAPS(router=FakeRouter(), backends=openai_backends(server), retry_wait=wait_none())
    msg = chat.invoke("Think step by step please")
    assert isinstance(msg, AIMessage)
    body = server.requests[-1]["body"]
    assert (body["model"], body["temperature"]) == (MODELS["large"], 0.0)
    assert body["messages"][0]["content"] == COT_TEXT
    assert msg.response_metadata["haps"]["backend"] == "large"
    # a pinned temperature overrides the router's choice
    pinned = ChatHAPS(router=FakeRouter(), backends=openai_backends(server), temperature=0.2)
    pinned.invoke("Write a creative haiku")
    assert server.requests[-1]["body"]["temperature"] == 0.2
