"""tvad.corpus.annotators.remote: the http route against a real local server (good, garbage, 429,
5xx, hangs, down, budget, missing key)."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest

from tvad.corpus import AnnotatorError, HTTPAnnotator, RequestBudget, make_annotator
from http_fixtures import send_json

GOOD = {"instances": [{"category": "Person", "attributes": {"top": "white t-shirt"}, "box": [10, 20, 40, 90]}]}


# -- a real HTTP server ----------------------------------------------------------------------------

class _Handler(BaseHTTPRequestHandler):
    calls: dict = {}
    auth: list = []

    def log_message(self, *a):  # keep test output quiet
        pass

    def do_POST(self):
        mode = self.path.split("/")[1]
        n = _Handler.calls[mode] = _Handler.calls.get(mode, 0) + 1
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        _Handler.auth.append(self.headers.get("Authorization"))
        content = body["messages"][0]["content"]
        assert content[0]["image_url"]["url"].startswith("data:image/")
        if mode == "hang":
            time.sleep(1.5)
            return self._reply(200, {"choices": [{"message": {"content": json.dumps(GOOD)}}]})
        if mode == "429" or (mode == "flaky" and n <= 2):
            return self._reply(429 if mode == "429" else 503, {"error": "slow down"}, {"Retry-After": "0"})
        if mode == "garbage":
            return self._reply(200, {"choices": [{"message": {"content": "The image shows a street {not json"}}]})
        if mode == "notchat":
            return self._reply(200, {"hello": "world"})
        if mode == "401":
            return self._reply(401, {"error": "bad key"})
        return self._reply(200, {"choices": [{"message": {"content": "```json\n" + json.dumps(GOOD) + "\n```"}}]})

    def _reply(self, code, obj, headers=None):
        try:
            send_json(self, code, json.dumps(obj).encode(), headers)
        except (BrokenPipeError, ConnectionResetError):  # the client gave up (timeout test)
            pass


@pytest.fixture(scope="module")
def server():
    srv = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    srv.daemon_threads = True
    th = threading.Thread(target=srv.serve_forever, daemon=True)
    th.start()
    yield f"http://127.0.0.1:{srv.server_address[1]}"
    srv.shutdown()
    srv.server_close()


IMG = np.zeros((64, 80, 3), np.uint8)
SECRET = "sk-test-123456789"


def _ann(server, mode, monkeypatch, **kw):
    monkeypatch.setenv("TVAD_TEST_KEY", SECRET)
    slept = []
    kw.setdefault("timeout", 0.5)
    kw.setdefault("max_retries", 2)
    a = HTTPAnnotator(f"{server}/{mode}/v1", "qwen-vl-test", api_key_env="TVAD_TEST_KEY", backoff=0.01,
                      sleep=slept.append, **kw)
    return a, slept


def _no_secret(*objs):
    for o in objs:
        assert SECRET not in json.dumps(o, default=str) and SECRET not in repr(o)


def test_http_good_answer_and_key(server, monkeypatch):
    a, _ = _ann(server, "good", monkeypatch)
    rec = a.describe_frame(IMG, "list objects", video="clipA", frame=3, prompt_hash="h")
    assert rec.ok and rec.instances[0].category == "person" and rec.attempts == 1
    assert rec.instances[0].box == (10, 20, 40, 64)  # clipped to the 64-pixel-high frame
    assert _Handler.auth[-1] == f"Bearer {SECRET}"
    _no_secret(rec.to_dict(), a)


def test_http_garbage_is_a_counted_failure(server, monkeypatch):
    a, _ = _ann(server, "garbage", monkeypatch)
    rec = a.describe_frame(IMG, "p", video="v", frame=0)
    assert rec.status == "invalid_answer" and "JSON" in rec.error and rec.raw.startswith("The image")
    rec = _ann(server, "notchat", monkeypatch)[0].describe_frame(IMG, "p", video="v", frame=0)
    assert rec.status == "invalid_answer" and "not a chat completion" in rec.error


def test_http_retries_429_then_gives_up(server, monkeypatch):
    a, slept = _ann(server, "429", monkeypatch, max_retries=3)
    rec = a.describe_frame(IMG, "p", video="v", frame=0)
    assert rec.status == "request_failed" and "HTTP 429" in rec.error and rec.attempts == 4
    assert len(slept) == 3  # backoff between attempts (Retry-After: 0 honoured)
    _no_secret(rec.to_dict())


def test_http_backoff_is_exponential_and_recovers_from_5xx(server, monkeypatch):
    a, slept = _ann(server, "flaky", monkeypatch, max_retries=4)
    a.backoff = 0.5
    _Handler.calls.pop("flaky", None)
    rec = a.describe_frame(IMG, "p", video="v", frame=0)
    assert rec.ok and rec.attempts == 3 and slept == [0.0, 0.0]  # the server said Retry-After: 0
    monkeypatch.setattr(a, "_sleep", slept.append)
    slept.clear()
    a._wait(0, None), a._wait(1, None), a._wait(2, None), a._wait(9, None)
    assert slept == [0.5, 1.0, 2.0, 30.0]


def test_http_hang_times_out(server, monkeypatch):
    a, slept = _ann(server, "hang", monkeypatch, timeout=0.2, max_retries=1)
    t0 = time.perf_counter()
    rec = a.describe_frame(IMG, "p", video="v", frame=0)
    assert rec.status == "request_failed" and "timeout" in rec.error and rec.attempts == 2
    assert time.perf_counter() - t0 < 1.4


def test_http_client_error_is_not_retried(server, monkeypatch):
    a, slept = _ann(server, "401", monkeypatch)
    rec = a.describe_frame(IMG, "p", video="v", frame=0)
    assert rec.status == "request_failed" and "HTTP 401" in rec.error and rec.attempts == 1 and not slept


def test_http_endpoint_down(monkeypatch):
    import socket

    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()  # nothing listens there now
    a = HTTPAnnotator(f"http://127.0.0.1:{port}/v1", "m", api_key_env=None, timeout=0.5, max_retries=2,
                      backoff=0.01, sleep=lambda s: None)
    rec = a.describe_frame(IMG, "p", video="v", frame=0)
    assert rec.status == "request_failed" and "unreachable" in rec.error and rec.attempts == 3


def test_http_budget(server, monkeypatch):
    budget = RequestBudget(2)
    a, _ = _ann(server, "good", monkeypatch, budget=budget)
    assert a.describe_frame(IMG, "p", video="v", frame=0).ok
    assert a.describe_frame(IMG, "p", video="v", frame=1).ok
    rec = a.describe_frame(IMG, "p", video="v", frame=2)
    assert rec.status == "request_failed" and "budget exhausted" in rec.error and rec.attempts == 0
    assert budget.left == 0


def test_http_missing_key_and_bad_images(server, monkeypatch):
    monkeypatch.delenv("TVAD_NOT_SET", raising=False)
    with pytest.raises(AnnotatorError, match="TVAD_NOT_SET.*not set"):
        HTTPAnnotator(server + "/good/v1", "m", api_key_env="TVAD_NOT_SET")
    with pytest.raises(AnnotatorError, match="missing base_url"):
        make_annotator("http", model="m")
    a, _ = _ann(server, "good", monkeypatch)
    rec = a.describe_frame(np.zeros((0, 10, 3), np.uint8), "p", video="v", frame=0)
    assert rec.status == "invalid_answer" and "empty or malformed image" in rec.error
