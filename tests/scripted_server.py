"""A local stand-in for an OpenAI-compatible server that misbehaves on a script (127.0.0.1 only).

Each POST takes the next behaviour from the script; once it runs out, every answer is correct.
Behaviours: ok, 500, 503, 429, 400, hang (holds the request until the server closes, far past
any client timeout), drop (closes the connection without a response), garbage (not JSON),
nologprobs (JSON without logprobs).
Requests a `poison` predicate picks get garbage every time, whatever the script says. A request
may hold a list of prompts (one choice each, numbered by `index`); prompts an `unreadable`
predicate picks get a choice without logprobs. A correct choice answer gives token t the
log-probability `fake_logprob(t)`.
"""

from __future__ import annotations

import json
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

# A hang outlasts every client timeout by far and a normal answer takes milliseconds, so whether
# a request timed out never depends on how loaded the machine is; close() ends a hang at once.
HANG_SECONDS = 120.0
CLIENT_TIMEOUT = 2.0  # what the tests give the client: far above a normal answer, far below a hang
TOP_LOGPROBS_BY_TEXT = {"A": -1.0, "B": -2.0, " the": -0.5}


def fake_logprob(token_id: int) -> float:
    """The log-probability the stand-in gives a token (deterministic, distinct per token)."""
    return -1.0 - 0.25 * (token_id % 7)


class ScriptedServer:
    """Serves /v1/completions on a free local port from a thread; records every request."""

    def __init__(self, script: Iterable[str] = (), delay: float = 0.0,
                 poison: Callable[[dict[str, Any]], bool] | None = None,
                 unreadable: Callable[[Any], bool] | None = None) -> None:
        self.script: deque[str] = deque(script)
        self.poison = poison  # requests it picks get garbage every time, outside the script
        self.unreadable = unreadable  # prompts it picks are answered without logprobs
        self.delay = delay
        self.requests: list[dict[str, Any]] = []
        self.authorization: list[str | None] = []
        self.in_flight = self.max_in_flight = 0
        self.lock = threading.Lock()
        self.released = threading.Event()  # set on close: hanging requests stop waiting
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"

    def next_behaviour(self, request: dict[str, Any], authorization: str | None) -> str:
        with self.lock:
            self.requests.append(request)
            self.authorization.append(authorization)
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
            if self.poison is not None and self.poison(request):
                return "garbage"
            return self.script.popleft() if self.script else "ok"

    def done(self) -> None:
        with self.lock:
            self.in_flight -= 1

    def close(self) -> None:
        self.released.set()
        self.httpd.shutdown()
        self.httpd.server_close()

    def __enter__(self) -> ScriptedServer:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()


def prompts_of(request: dict[str, Any]) -> list[Any]:
    """The request's prompts: one (token ids or text), or a list of them."""
    prompt = request["prompt"]
    listed = isinstance(prompt, list) and bool(prompt) and isinstance(prompt[0], list | str)
    return list(prompt) if listed else [prompt]


def correct_body(request: dict[str, Any],
                 unreadable: Callable[[Any], bool] | None = None) -> dict[str, Any]:
    """What a vLLM server would answer, with fake log-probabilities, one choice per prompt
    (in reverse order, as nothing promises they come in order: `index` says which is which)."""
    choices = []
    for index, prompt in enumerate(prompts_of(request)):
        choice: dict[str, Any] = {"index": index, "text": "hello", "token_ids": [72, 73]}
        if "logprob_token_ids" in request:
            top = {f"token_id:{t}": fake_logprob(t) for t in request["logprob_token_ids"]}
            choice = {"index": index, "text": "x", "logprobs": {"top_logprobs": [top]}}
        elif request.get("logprobs"):
            choice = {"index": index, "text": "A", "logprobs": {"top_logprobs": [
                TOP_LOGPROBS_BY_TEXT]}}
        if unreadable is not None and unreadable(prompt):
            choice.pop("logprobs", None)
        choices.append(choice)
    return {"choices": choices[::-1]}


def _handler(server: ScriptedServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *_: Any) -> None:  # keep test output clean
            pass

        def do_POST(self) -> None:
            request = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            behaviour = server.next_behaviour(request, self.headers.get("Authorization"))
            self.counted = True  # in flight until its response starts (see _send)
            try:
                time.sleep(server.delay)
                self._act(behaviour, request)
            except (BrokenPipeError, ConnectionResetError):  # the client gave up first
                pass
            finally:
                self._finished()

        def _finished(self) -> None:
            if self.counted:
                self.counted = False
                server.done()

        def _act(self, behaviour: str, request: dict[str, Any]) -> None:
            if behaviour == "drop":
                self.close_connection = True
                return
            if behaviour == "hang":
                server.released.wait(HANG_SECONDS)
            if behaviour in ("500", "503", "429", "400"):
                headers = {"Retry-After": "0"} if behaviour == "429" else {}
                self._send(int(behaviour), b'{"error": "scripted"}', headers)
            elif behaviour == "garbage":
                self._send(200, b'{"choices": [{"text": ')
            elif behaviour == "nologprobs":
                self._send(200, json.dumps({"choices": [{"index": 0, "text": "A"}]}).encode())
            else:
                self._send(200, json.dumps(correct_body(request, server.unreadable)).encode())

        def _send(self, status: int, body: bytes, headers: dict[str, str] | None = None) -> None:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            # No longer in flight once the response goes out: a client that reads it may send its
            # next request before this thread would otherwise count this one done.
            self._finished()
            self.end_headers()
            self.wfile.write(body)

    return Handler
