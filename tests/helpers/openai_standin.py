"""A stand-in OpenAI-compatible chat server on 127.0.0.1 for `haps collect` tests (stdlib only).

It is NOT a model: it answers the arithmetic multiple-choice questions of `arithmetic_questions`
by computing the sum (right at temperature 0; at temperature > 0 it answers "A" for odd sums),
reports token usage like OpenAI does, and records every request body. The client side
(``ChatOpenAI``, its HTTP calls, usage parsing) is the real one.
"""

import json
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

QUESTION = re.compile(r"What is (\d+) \+ (\d+)\?")
CHOICE = re.compile(r"^\s*([A-D]): (\d+)$", re.MULTILINE)


def arithmetic_questions(n: int = 30) -> list[dict[str, str]]:
    """`n` multiple-choice sums with their reference letters (deterministic)."""
    out = []
    for i in range(n):
        a, b = 3 + i, 5 + (7 * i) % 11
        right = a + b
        options = [right, right + 1, right - 2, right + 3]
        k = i % 4
        options[0], options[k] = options[k], options[0]
        text = f"What is {a} + {b}?\nChoices:\n" + "\n".join(
            f"  {'ABCD'[j]}: {v}" for j, v in enumerate(options)
        )
        out.append({"id": f"sum-{i}", "query": text, "reference": "ABCD"[k], "task": "arithmetic"})
    return out


def _answer(body: dict[str, Any]) -> str:
    user = next(m["content"] for m in reversed(body["messages"]) if m["role"] == "user")
    found = QUESTION.search(user)
    if not found:
        return "I do not know."
    total = int(found.group(1)) + int(found.group(2))
    if body.get("temperature", 0) and total % 2:
        return "Answer: A"
    for letter, value in CHOICE.findall(user):
        if int(value) == total:
            return f"Answer: {letter}"
    return "Answer: A"


class _Handler(BaseHTTPRequestHandler):
    def log_message(self, *args: Any) -> None:
        pass

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.server.requests.append(body)  # type: ignore[attr-defined]
        text = _answer(body)
        prompt_tokens = sum(len(m["content"].split()) for m in body["messages"])
        payload = {
            "id": "chatcmpl-standin",
            "object": "chat.completion",
            "created": 0,
            "model": body["model"],
            "choices": [
                {"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}
            ],
            "usage": {
                "prompt_tokens": prompt_tokens,
                "completion_tokens": len(text.split()),
                "total_tokens": prompt_tokens + len(text.split()),
            },
        }
        data = json.dumps(payload).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


@contextmanager
def standin_server() -> Iterator[ThreadingHTTPServer]:
    """Serves on 127.0.0.1 (a free port); ``server.requests`` holds the request bodies."""
    srv = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    srv.requests = []  # type: ignore[attr-defined]
    thread = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    try:
        yield srv
    finally:
        srv.shutdown()
        srv.server_close()
