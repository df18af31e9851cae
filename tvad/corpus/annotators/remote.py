"""An OpenAI-compatible chat-completions endpoint as an annotator (`HTTPAnnotator`, "http"): image
input as a data URL, the API key from an environment variable (never logged or stored), retries
with exponential backoff on 429 / 5xx / timeouts / connection errors, a request budget."""

from __future__ import annotations

import base64
import io
import json
import os
import socket
import time
import urllib.error
import urllib.request
from typing import Callable

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


class RequestBudget:
    """A cap on the number of requests (shared by annotators if passed around)."""

    def __init__(self, limit: int | None) -> None:
        self.limit = limit
        self.used = 0

    def take(self) -> bool:
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
    timeout:      seconds per request; max_retries: retries after the first attempt on 429, 5xx,
                  timeouts and connection errors, sleeping backoff * 2**k (capped at max_backoff,
                  or the server's Retry-After when it is shorter than the cap).
    budget:       the most HTTP requests this annotator may make (int, a shared `RequestBudget` or None);
                  once spent, frames fail fast with status "request_failed".
    """

    needs_pixels = True

    def __init__(self, base_url: str, model: str, *, api_key_env: str | None = "TVAD_API_KEY",
                 timeout: float = 60.0, max_retries: int = 4, backoff: float = 1.0, max_backoff: float = 30.0,
                 budget: int | RequestBudget | None = None, max_tokens: int = 1024, temperature: float = 0.0,
                 image_format: str = "jpeg", sleep: Callable[[float], None] = time.sleep) -> None:
        self.base_url = base_url.rstrip("/")
        self.model = model
        self.name = f"http:{model}"
        self.api_key_env = api_key_env
        if api_key_env is not None and not os.environ.get(api_key_env):
            raise AnnotatorError(f"http annotator: the environment variable {api_key_env} (the API key for "
                                 f"{self.base_url}) is not set; export it, or pass api_key_env=None for an "
                                 f"endpoint without authentication")
        self.timeout, self.max_retries = float(timeout), int(max_retries)
        self.backoff, self.max_backoff = float(backoff), float(max_backoff)
        self.budget = budget if isinstance(budget, RequestBudget) else RequestBudget(budget)
        self.max_tokens, self.temperature, self.image_format = max_tokens, temperature, image_format
        self._sleep = sleep
        self.stats = {"requests": 0, "retries": 0, "http_errors": 0, "timeouts": 0, "connection_errors": 0}

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
        if retry_after:
            try:
                delay = min(max(float(retry_after), 0.0), self.max_backoff)
            except ValueError:
                pass
        self.stats["retries"] += 1
        self._sleep(delay)

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
            self.stats["requests"] += 1
            req = urllib.request.Request(url, data=data, headers=self._headers(), method="POST")
            retry_after = None
            try:
                with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                    body = resp.read().decode("utf-8", errors="replace")
                try:
                    env = json.loads(body)
                    content = env["choices"][0]["message"]["content"]
                except (json.JSONDecodeError, KeyError, IndexError, TypeError):
                    return body[:2000], "response is not a chat completion (no choices[0].message.content)", attempts
                if isinstance(content, list):  # content parts
                    content = "".join(p.get("text", "") for p in content if isinstance(p, dict))
                return str(content), None, attempts
            except urllib.error.HTTPError as e:
                self.stats["http_errors"] += 1
                detail = ""
                try:
                    detail = e.read().decode("utf-8", errors="replace")[:200]
                except Exception:
                    pass
                last_err = f"HTTP {e.code} from {url}" + (f": {' '.join(detail.split())}" if detail else "")
                if e.code != 429 and e.code < 500:
                    return None, last_err, attempts  # a client error: retrying cannot help
                retry_after = e.headers.get("Retry-After") if e.headers else None
            except (socket.timeout, TimeoutError) as e:
                self.stats["timeouts"] += 1
                last_err = f"timeout after {self.timeout:g}s from {url} ({type(e).__name__})"
            except urllib.error.URLError as e:
                if isinstance(e.reason, (socket.timeout, TimeoutError)):
                    self.stats["timeouts"] += 1
                    last_err = f"timeout after {self.timeout:g}s from {url}"
                else:
                    self.stats["connection_errors"] += 1
                    last_err = f"endpoint unreachable: {url} ({e.reason})"
            except (ConnectionError, OSError) as e:
                self.stats["connection_errors"] += 1
                last_err = f"connection error with {url} ({type(e).__name__}: {e})"
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
