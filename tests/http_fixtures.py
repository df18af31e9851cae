"""Shared by the tests that run a real HTTP server on 127.0.0.1 (the HTTP annotator's tests) and by
benchmarks/annotation.py: `send_json`, and `LoopbackLVLM`, a real OpenAI-compatible
chat-completions server with latency, rate limiting and connection drops, that logs every request."""

from __future__ import annotations

import base64
import hashlib
import io
import json
import random
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
from PIL import Image


def send_json(handler, code: int, data: bytes, headers: dict | None = None) -> None:
    """Answer a `BaseHTTPRequestHandler` request with status `code` and the JSON body `data`."""
    handler.send_response(code)
    for k, v in (headers or {}).items():
        handler.send_header(k, v)
    handler.send_header("Content-Type", "application/json")
    handler.send_header("Content-Length", str(len(data)))
    handler.end_headers()
    handler.wfile.write(data)


def boxes_answer(image: np.ndarray) -> dict:
    """The answer a perfect annotator gives for the tests' clips: one person per colour (R, 200, 90)
    drawn on the frame (tests/test_corpus_corpora.FakeVideo draws objects so), box = its pixels."""
    inst = []
    hit = (image[..., 1] == 200) & (image[..., 2] == 90)
    for r in sorted(set(image[..., 0][hit].tolist())):
        ys, xs = np.nonzero(hit & (image[..., 0] == r))
        inst.append({"category": "person", "attributes": {"top": f"shade {r}"},
                     "box": [int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1]})
    return {"instances": inst}


class LoopbackLVLM:
    """A chat-completions server on 127.0.0.1 (a thread per request, as vLLM serves many at once).

    latency:     seconds each answer takes (plus uniform jitter in [0, jitter), seeded), the model's time.
    retry_after: > 0: each item's first request is answered 429 with `Retry-After: <retry_after>`.
    capacity:    > 0: a request arriving while `capacity` are being served is dropped (the connection
                 closed without a reply), as an overloaded server does.
    answer_limit: >= 0: after that many answers, every request is dropped (a server that goes away).
    decode:      read the image and answer with its boxes (`boxes_answer`); False: always no instances
                 (the benchmark: the server's CPU stays out of the client's measurement).
    An item is one image (a hash of its data URL). Every request is logged: {"item", "start", "sent"
    (when the reply began; None if none was sent), "end", "outcome" ("ok", "429", "dropped",
    "client_gone")} on the monotonic clock; `in_flight_max` is the most requests
    served at once, `requests` the count so far.

        with LoopbackLVLM(latency=0.2) as srv:
            HTTPAnnotator(srv.base_url, "m", api_key_env=None)
    """

    def __init__(self, latency: float = 0.0, *, jitter: float = 0.0, seed: int = 0, retry_after: float = 0.0,
                 capacity: int = 0, answer_limit: int = -1, decode: bool = True) -> None:
        self.latency, self.jitter, self.retry_after, self.decode = latency, jitter, retry_after, decode
        self.capacity, self.answer_limit = capacity, answer_limit
        self._rng = random.Random(seed)
        self._lock = threading.Lock()
        self.log: list[dict] = []
        self.in_flight = self.in_flight_max = self.answered = 0
        self._seen: set[str] = set()
        srv = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def do_POST(self):
                srv._serve(self)

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler, bind_and_activate=False)
        self._httpd.request_queue_size = 256  # the default 5 would refuse connections a burst of N opens
        self._httpd.daemon_threads = True
        self._httpd.server_bind()
        self._httpd.server_activate()
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)
        self.base_url = f"http://127.0.0.1:{self._httpd.server_address[1]}/v1"

    def __enter__(self) -> "LoopbackLVLM":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

    @property
    def requests(self) -> int:
        with self._lock:
            return len(self.log)

    def _serve(self, h: BaseHTTPRequestHandler) -> None:
        start, outcome, sent = time.monotonic(), "error", None
        body = json.loads(h.rfile.read(int(h.headers["Content-Length"])))
        url = body["messages"][0]["content"][0]["image_url"]["url"]
        item = hashlib.sha1(url.encode()).hexdigest()[:12]
        with self._lock:
            first = item not in self._seen
            self._seen.add(item)
            drop = (self.capacity > 0 and self.in_flight >= self.capacity) or \
                (self.answer_limit >= 0 and self.answered >= self.answer_limit)
            limited = not drop and self.retry_after > 0 and first
            self.answered += not (drop or limited)  # counted on arrival: answer_limit is exact under concurrency
            delay = self.latency + (self._rng.random() * self.jitter if self.jitter else 0.0)
            self.in_flight += 1
            self.in_flight_max = max(self.in_flight_max, self.in_flight)
        try:
            if drop:
                outcome = "dropped"
                h.close_connection = True
                try:
                    h.connection.shutdown(socket.SHUT_RDWR)  # closed without a reply
                except OSError:
                    pass
                return
            if limited:
                outcome = "429"
                data = json.dumps({"error": "rate limited"}).encode()
                sent = time.monotonic()  # the client cannot have the reply before this
                return send_json(h, 429, data, {"Retry-After": f"{self.retry_after:g}"})
            time.sleep(delay)
            content = json.dumps({"instances": []})
            if self.decode:
                raw = base64.b64decode(url.split(",", 1)[1])
                content = json.dumps(boxes_answer(np.asarray(Image.open(io.BytesIO(raw)).convert("RGB"))))
            outcome, sent = "ok", time.monotonic()
            send_json(h, 200, json.dumps({"choices": [{"message": {"role": "assistant", "content": content}}]}).encode())
        except (BrokenPipeError, ConnectionResetError):  # the client went away (killed)
            outcome = "client_gone"
        finally:
            with self._lock:
                self.in_flight -= 1
                self.log.append({"item": item, "start": start, "sent": sent, "end": time.monotonic(),
                                 "outcome": outcome})
