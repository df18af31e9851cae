"""An OpenAI-compatible chat-completions endpoint as an annotator (`HTTPAnnotator`, "http"): image
input as a data URL, the API key from an environment variable (never logged or stored), retries
with exponential backoff on 429 / 5xx / timeouts / connection errors, a request budget.

Only http(s) base URLs; redirects are refused, never followed (the key would go with them); the
timeout bounds the whole request (a server that drips bytes is cut off at the deadline); the
server's Retry-After is read as seconds or an HTTP date, and an unusable one means the backoff.

Concurrency: `describe_frame` may be called from several threads at once (the corpus builder keeps
`max_concurrency` requests in flight, `tvad.corpus.inflight`). Threads over the stdlib client rather
than asyncio or httpx: urllib is what the deadline, the redirect refusal and the reply cap above are
built on, httpx is not a dependency, and a few dozen blocking requests need no event loop. Each call
has its own connection, deadline, retries and Retry-After wait; the counters and the budget are locked."""

from __future__ import annotations

import base64
import email.utils
import functools
import http.client
import io
import json
import math
import os
import socket
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from datetime import datetime, timezone
from typing import Any, Callable

import numpy as np
from PIL import Image

from tvad.corpus.annotators.base import AnnotatorError, FrameRecord, new_record, refuse_image
from tvad.corpus.annotators.parsing import fill_record


def encode_image(image: np.ndarray, fmt: str = "jpeg", quality: int = 90) -> str:
    """uint8 (H, W, 3) -> a data URL (base64) for chat-completions image input."""
    buf = io.BytesIO()
    im = Image.fromarray(np.ascontiguousarray(np.asarray(image, dtype=np.uint8)))
    if fmt.lower() in ("jpg", "jpeg"):
        im.save(buf, format="JPEG", quality=quality)
        mime = "image/jpeg"
    else:
        im.save(buf, format="PNG")
        mime = "image/png"
    return f"data:{mime};base64,{base64.b64encode(buf.getvalue()).decode('ascii')}"


MAX_REPLY_BYTES = 16 * 2**20  # a chat completion is kilobytes; more is a misconfigured endpoint
MAX_CONCURRENCY = 256  # requests in flight at most (threads; a server batching more gains little)


def retry_after_seconds(value: str | None, now: datetime | None = None) -> float | None:
    """Seconds to wait from a Retry-After header value: delta-seconds or an HTTP date (a date in
    the past gives 0). None when absent or unusable (NaN, infinite, negative, garbage)."""
    if value is None or not str(value).strip():
        return None
    v = str(value).strip()
    try:
        s = float(v)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(v)
        except (TypeError, ValueError, IndexError, OverflowError):
            return None
        if when is None:
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=timezone.utc)
        s = (when - (now or datetime.now(timezone.utc))).total_seconds()
        return max(s, 0.0) if math.isfinite(s) else None
    return s if math.isfinite(s) and s >= 0 else None


class _Deadline:
    """The whole-request deadline: shuts the request's socket down when it passes, so a server that
    drips bytes (each socket read inside its timeout) cannot hold a call past `seconds`."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.at = time.monotonic() + seconds
        self.fired = False
        self._sock: Any = None
        self._lock = threading.Lock()
        self._timer = threading.Timer(seconds, self._fire)
        self._timer.daemon = True

    def __enter__(self) -> "_Deadline":
        self._timer.start()
        return self

    def __exit__(self, *exc) -> None:
        self._timer.cancel()

    def left(self) -> float:
        return self.at - time.monotonic()

    @property
    def passed(self) -> bool:
        return self.fired or self.left() <= 0

    def watch(self, sock: Any) -> None:
        with self._lock:
            self._sock, fired = sock, self.fired
        if fired:
            self._shut(sock)

    def settimeout(self) -> None:
        """Each socket read may take at most what is left of the deadline."""
        if self.left() <= 0:
            raise TimeoutError("deadline passed")
        if self._sock is not None:
            self._sock.settimeout(self.left())

    def _fire(self) -> None:
        with self._lock:
            self.fired, sock = True, self._sock
        if sock is not None:
            self._shut(sock)

    @staticmethod
    def _shut(sock: Any) -> None:
        try:  # the plain socket's shutdown (an SSL socket's own would drop its state under a reader)
            socket.socket.shutdown(sock, socket.SHUT_RDWR)
        except OSError:
            pass


class _Watched:
    """A connection whose socket the request's deadline watches from the moment it is connected."""

    def __init__(self, *a, deadline: _Deadline, **kw) -> None:
        super().__init__(*a, **kw)
        self._deadline = deadline

    def connect(self) -> None:
        super().connect()
        self._deadline.watch(self.sock)


class _WatchedHTTP(_Watched, http.client.HTTPConnection):
    pass


class _WatchedHTTPS(_Watched, http.client.HTTPSConnection):
    pass


class _HTTPHandler(urllib.request.HTTPHandler):
    def __init__(self, deadline: _Deadline) -> None:
        super().__init__()
        self._deadline = deadline

    def http_open(self, req):
        return self.do_open(functools.partial(_WatchedHTTP, deadline=self._deadline), req)


class _HTTPSHandler(urllib.request.HTTPSHandler):
    def __init__(self, deadline: _Deadline) -> None:
        super().__init__()
        self._deadline = deadline

    def https_open(self, req):
        return self.do_open(functools.partial(_WatchedHTTPS, deadline=self._deadline), req, context=self._context)


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """Never follow a redirect: the request carries the API key (and a POST must not become a GET).
    Returning None leaves the 3xx to surface as an HTTPError."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        return None


def _chat_content(body: str) -> str:
    """The answer text of a chat-completions reply; ValueError naming what is missing."""
    try:
        env = json.loads(body)
    except json.JSONDecodeError:
        raise ValueError("response is not a chat completion (not JSON)") from None
    choices = env.get("choices") if isinstance(env, dict) else None
    if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
        raise ValueError("response is not a chat completion (no choices[0].message.content)")
    msg = choices[0].get("message")
    content = msg.get("content") if isinstance(msg, dict) else None
    if isinstance(content, list):  # content parts
        texts = [p.get("text") for p in content if isinstance(p, dict) and isinstance(p.get("text"), str)]
        content = "".join(texts) if texts else None
    if not isinstance(content, str):
        raise ValueError("response is not a chat completion (no choices[0].message.content)")
    return content



def _safe_url(url: str) -> str:
    """A URL for messages: without user:password@ and cut to 200 characters."""
    try:
        parts = urllib.parse.urlsplit(url)
        if parts.password is not None or parts.username is not None:
            url = urllib.parse.urlunsplit(parts._replace(netloc=parts.netloc.rsplit("@", 1)[-1]))
    except ValueError:
        pass
    return url[:200]

class RequestBudget:
    """A cap on the number of requests, retries included (shared by annotators if passed around;
    thread-safe: the requests in flight take from it concurrently)."""

    def __init__(self, limit: int | None) -> None:
        self.limit = limit
        self.used = 0
        self._lock = threading.Lock()

    def take(self) -> bool:
        with self._lock:
            if self.limit is not None and self.used >= self.limit:
                return False
            self.used += 1
            return True

    @property
    def left(self) -> int | None:
        return None if self.limit is None else max(self.limit - self.used, 0)


class HTTPAnnotator:
    """An OpenAI-compatible chat-completions endpoint with image input.

    base_url:     e.g. "https://dashscope.aliyuncs.com/compatible-mode/v1" or "http://127.0.0.1:8000/v1";
                  requests go to base_url + "/chat/completions".
    api_key_env:  the environment variable holding the key (sent as a Bearer token, never logged);
                  None for endpoints without authentication. A missing variable raises at construction.
    timeout:      seconds per request, the whole of it (connect, headers, body); max_retries: retries
                  after the first attempt on 429, 5xx, timeouts and connection errors, sleeping
                  backoff * 2**k (capped at max_backoff), or the server's Retry-After (seconds or an
                  HTTP date, capped at max_backoff; NaN, negative or garbage ones are ignored).
                  Redirects are refused (a request_failed record naming the Location), never followed.
    budget:       the most HTTP requests this annotator may make (int, a shared `RequestBudget` or None);
                  once spent, frames fail fast with status "request_failed".
    max_concurrency: requests the corpus builder keeps in flight at once (1..MAX_CONCURRENCY; 8 suits a
                  vLLM / SGLang server, which batches concurrent requests). `describe_frame` is thread-safe:
                  each call has its own connection, deadline and retry loop (a 429's Retry-After delays only
                  the request it answered); counters and the budget are shared under a lock.
    """

    needs_pixels = True

    def __init__(self, base_url: str, model: str, *, api_key_env: str | None = "TVAD_API_KEY",
                 timeout: float = 60.0, max_retries: int = 4, backoff: float = 1.0, max_backoff: float = 30.0,
                 budget: int | RequestBudget | None = None, max_tokens: int = 1024, temperature: float = 0.0,
                 image_format: str = "jpeg", max_concurrency: int = 8,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        parts = urllib.parse.urlsplit(str(base_url))
        if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
            raise AnnotatorError(f"http annotator: base_url must be an http:// or https:// URL with a host, "
                                 f"got {_safe_url(str(base_url))!r}")
        self.base_url = str(base_url).rstrip("/")
        self.model = model
        self.name = f"http:{model}"
        self.api_key_env = api_key_env
        if api_key_env is not None and not os.environ.get(api_key_env):
            raise AnnotatorError(f"http annotator: the environment variable {api_key_env} (the API key for "
                                 f"{self.base_url}) is not set; export it, or pass api_key_env=None for an "
                                 f"endpoint without authentication")
        self.timeout, self.max_retries = float(timeout), int(max_retries)
        if not (math.isfinite(self.timeout) and self.timeout > 0):
            raise AnnotatorError(f"http annotator: timeout must be a positive number of seconds, got {timeout!r}")
        self.backoff, self.max_backoff = float(backoff), float(max_backoff)
        self.budget = budget if isinstance(budget, RequestBudget) else RequestBudget(budget)
        self.max_tokens, self.temperature, self.image_format = max_tokens, temperature, image_format
        if isinstance(max_concurrency, bool) or not isinstance(max_concurrency, int) \
                or not 1 <= max_concurrency <= MAX_CONCURRENCY:
            raise AnnotatorError(f"http annotator: max_concurrency must be an integer in 1..{MAX_CONCURRENCY}, "
                                 f"got {max_concurrency!r}")
        self.max_concurrency = max_concurrency
        self._sleep = sleep
        self._lock = threading.Lock()  # the counters below, updated by concurrent requests
        self.stats = {"requests": 0, "retries": 0, "http_errors": 0, "timeouts": 0, "connection_errors": 0}

    def _count(self, key: str) -> None:
        with self._lock:
            self.stats[key] += 1

    def __repr__(self) -> str:  # never the key
        return f"HTTPAnnotator(base_url={self.base_url!r}, model={self.model!r}, api_key_env={self.api_key_env!r})"

    def _headers(self) -> dict[str, str]:
        h = {"Content-Type": "application/json"}
        if self.api_key_env is not None:
            key = os.environ.get(self.api_key_env)
            if not key:
                raise AnnotatorError(f"http annotator: the environment variable {self.api_key_env} is no longer set")
            h["Authorization"] = f"Bearer {key}"
        return h

    def _payload(self, image: np.ndarray, prompt: str) -> bytes:
        msg = {"role": "user", "content": [
            {"type": "image_url", "image_url": {"url": encode_image(image, self.image_format)}},
            {"type": "text", "text": prompt},
        ]}
        body = {"model": self.model, "messages": [msg], "max_tokens": self.max_tokens,
                "temperature": self.temperature}
        return json.dumps(body).encode()

    def _wait(self, attempt: int, retry_after: str | None) -> None:
        delay = min(self.backoff * (2 ** attempt), self.max_backoff)
        told = retry_after_seconds(retry_after)
        if told is not None:
            delay = min(told, self.max_backoff)
        self._count("retries")
        self._sleep(delay)

    def _post(self, url: str, data: bytes) -> str:
        """One POST under the whole-request deadline; the reply body (text). Raises TimeoutError at
        the deadline, urllib / http.client / OS errors otherwise."""
        with _Deadline(self.timeout) as dl:
            opener = urllib.request.build_opener(_NoRedirect, _HTTPHandler(dl), _HTTPSHandler(dl))
            req = urllib.request.Request(url, data=data, headers=self._headers(), method="POST")
            try:
                with opener.open(req, timeout=self.timeout) as resp:
                    chunks, size = [], 0
                    while True:
                        dl.settimeout()
                        chunk = resp.read1(65536)
                        if not chunk:
                            break
                        size += len(chunk)
                        if size > MAX_REPLY_BYTES:
                            raise ValueError(f"reply from {url} is larger than {MAX_REPLY_BYTES} bytes")
                        chunks.append(chunk)
                    if resp.length:  # the server closed before sending its Content-Length
                        raise http.client.IncompleteRead(b"".join(chunks), resp.length)
                if dl.fired:  # the deadline cut the reply short
                    raise TimeoutError("deadline passed")
                return b"".join(chunks).decode("utf-8", errors="replace")
            except urllib.error.HTTPError as e:  # its body (the server's reason) read under the deadline too
                try:
                    dl.settimeout()
                    e.detail = e.read(2000).decode("utf-8", errors="replace")[:200]
                except Exception:  # no reason given in time: the status code says enough
                    e.detail = ""
                raise
            except (OSError, http.client.HTTPException) as e:
                if dl.passed:
                    raise TimeoutError("deadline passed") from e
                raise

    def complete(self, image: np.ndarray, prompt: str) -> tuple[str | None, str | None, int]:
        """(answer text, error, attempts): one chat completion with retries; never raises on I/O."""
        url = f"{self.base_url}/chat/completions"
        data = self._payload(image, prompt)
        last_err = "no request made"
        attempts = 0
        for attempt in range(self.max_retries + 1):
            if not self.budget.take():
                return None, f"request budget exhausted ({self.budget.limit} requests); last error: {last_err}" \
                    if attempts else f"request budget exhausted ({self.budget.limit} requests)", attempts
            attempts += 1
            self._count("requests")
            retry_after = None
            try:
                body = self._post(url, data)
                try:
                    return _chat_content(body), None, attempts
                except ValueError as e:
                    return body[:2000], str(e), attempts
            except urllib.error.HTTPError as e:
                self._count("http_errors")
                detail = " ".join(str(getattr(e, "detail", "")).split())
                if 300 <= e.code < 400:
                    where = e.headers.get("Location") if e.headers else None
                    return None, (f"redirect refused: HTTP {e.code} from {url} to {where or '(no Location)'} "
                                  f"(redirects are not followed, the request carries the API key; "
                                  f"set base_url to the final address)"), attempts
                last_err = f"HTTP {e.code} from {url}" + (f": {detail}" if detail else "")
                if e.code != 429 and e.code < 500:
                    return None, last_err, attempts  # a client error: retrying cannot help
                retry_after = e.headers.get("Retry-After") if e.headers else None
            except (socket.timeout, TimeoutError):
                self._count("timeouts")
                last_err = f"timeout after {self.timeout:g}s from {url} (the limit covers the whole request)"
            except urllib.error.URLError as e:
                if isinstance(e.reason, (socket.timeout, TimeoutError)):
                    self._count("timeouts")
                    last_err = f"timeout after {self.timeout:g}s from {url} (the limit covers the whole request)"
                elif isinstance(e.reason, (ConnectionResetError, BrokenPipeError, ConnectionAbortedError)):
                    self._count("connection_errors")  # the server closed the connection (e.g. under load)
                    last_err = f"connection error with {url} ({type(e.reason).__name__}: {e.reason})"
                else:
                    self._count("connection_errors")
                    last_err = f"endpoint unreachable: {url} ({e.reason})"
            except (ConnectionError, OSError, http.client.HTTPException) as e:
                self._count("connection_errors")
                last_err = f"connection error with {url} ({type(e).__name__}: {e})"
            except ValueError as e:  # a reply over MAX_REPLY_BYTES
                return None, str(e), attempts
            if attempt < self.max_retries:
                self._wait(attempt, retry_after)
        return None, f"{last_err} (gave up after {attempts} attempts)", attempts

    def describe_frame(self, image, prompt, *, video=None, frame=None, focus=None, prompt_hash="") -> FrameRecord:
        t0 = time.perf_counter()
        rec = new_record(self.name, video, frame, focus, prompt_hash)
        if refuse_image(rec, image):
            return rec
        text, err, attempts = self.complete(image, prompt)
        rec.attempts = attempts
        rec.raw = None if text is None else text[:2000]
        if err is not None:
            rec.status = "invalid_answer" if text is not None else "request_failed"
            rec.error = err
        else:
            fill_record(rec, text, np.asarray(image).shape[:2])
        rec.elapsed_s = time.perf_counter() - t0
        return rec
