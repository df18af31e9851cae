"""Frame annotators behind one interface: `describe_frame(image, prompt, ...) -> FrameRecord`.

Three implementations (paper §3.3, "frame-wise full extraction"):

- `OracleAnnotator` ("oracle"): ground truth: the record's objects (category, attributes, box);
  deterministic, no pixels needed; the `cpu` preset's default.
- `LocalAnnotator` ("local"): a transformers Qwen2.5-VL checkpoint at any local path (or hub id),
  prompted with the structured prompt and asked for JSON. transformers is imported lazily.
- `HTTPAnnotator` ("http"): any OpenAI-compatible chat-completions endpoint with image input
  (hosted Qwen-VL, vLLM, ...). The API key comes from an environment variable and is never
  logged or stored; 429 / 5xx / timeouts / connection errors are retried with exponential
  backoff; a request budget caps the total number of HTTP requests.

A model's answer is parsed strictly (`parse_answer`: JSON checked against the instance schema,
one repair pass for code fences, prose around the JSON, trailing commas and Qwen's grounding
keys `bbox_2d`/`label`). An unusable answer, or a request that failed, gives a `FrameRecord`
with `status` "invalid_answer" or "request_failed" and the reason in `error`: counted, cached,
never an exception that stops the run.

    ann = make_annotator("http", base_url="http://127.0.0.1:8000/v1", model="qwen2.5-vl-7b",
                         api_key_env="DASHSCOPE_API_KEY", budget=5000)
    rec = ann.describe_frame(frame_uint8_hwc, frame_prompt(h, w), video="v1", frame=3)
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import os
import re
import socket
import time
import urllib.error
import urllib.request
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from typing import Any, Callable, Mapping, Protocol, Sequence

import numpy as np

PROMPT_VERSION = "frame-v1"
FRAME_PROMPT = """You are annotating one frame of a fixed surveillance camera ({width} x {height} pixels).
List every person and every vehicle (car, bicycle, motorcycle, skateboard, truck, ...) that is visible.
Answer with JSON only, no prose, exactly in this form:
{{"instances": [{{"category": "person", "attributes": {{"top": "white t-shirt", "bottom": "grey shorts", "bag": "green backpack"}}, "box": [x1, y1, x2, y2]}}]}}
- category: one lower-case noun.
- attributes: short appearance phrases (colours, clothing, carried items, vehicle colour); {{}} if unsure.
- box: the tight bounding box in integer pixel coordinates, 0 <= x1 < x2 <= {width}, 0 <= y1 < y2 <= {height}.
If nothing is visible, answer {{"instances": []}}."""

STATUSES = ("ok", "invalid_answer", "request_failed")


def prompt_hash(template: str = FRAME_PROMPT) -> str:
    """Short hash of a prompt template (part of the cache key: a new prompt re-asks every frame)."""
    return hashlib.sha256(f"{PROMPT_VERSION}\n{template}".encode()).hexdigest()[:12]


def frame_prompt(height: int, width: int, template: str = FRAME_PROMPT) -> str:
    return template.format(width=int(width), height=int(height))


class AnnotatorError(RuntimeError):
    """A misconfigured annotator (missing API key, unknown kind, unloadable model)."""


class AnswerError(ValueError):
    """A model answer that cannot be used; the message is the recorded reason."""


@dataclass
class Instance:
    """One instance in one frame as an annotator reported it."""

    category: str
    attributes: dict[str, str]
    box: tuple[float, float, float, float] | None  # pixels, x1 y1 x2 y2, inside the frame
    id: Any = None  # an identity the annotator knows (the oracle's object id), else None
    center: tuple[float, float] | None = None  # only when no box is known (centroid-only ground truth)

    def to_dict(self) -> dict:
        d = {"category": self.category, "attributes": dict(self.attributes),
             "box": None if self.box is None else [round(float(v), 2) for v in self.box]}
        if self.id is not None:
            d["id"] = self.id
        if self.center is not None:
            d["center"] = [round(float(v), 2) for v in self.center]
        return d

    @classmethod
    def from_dict(cls, d: Mapping) -> "Instance":
        box = d.get("box")
        c = d.get("center")
        return cls(str(d["category"]), dict(d.get("attributes") or {}),
                   None if box is None else tuple(float(v) for v in box), d.get("id"),
                   None if c is None else tuple(float(v) for v in c))


@dataclass
class FrameRecord:
    """The answer for one frame: instances, or a failure with its reason. One JSONL line in the cache."""

    video: str  # clip / video name
    frame: int  # 0-based index of the frame in the clip
    annotator: str  # e.g. "oracle", "http:qwen-vl-max", "local:Qwen2.5-VL-7B-Instruct"
    prompt_hash: str
    view: str = "full"  # "full" (frame as is) or "focus" (anomaly mask sharp, rest blurred)
    status: str = "ok"  # "ok", "invalid_answer" or "request_failed"
    instances: list[Instance] = field(default_factory=list)
    error: str | None = None  # why the answer is unusable
    warnings: list[str] = field(default_factory=list)  # repairs and dropped instances
    raw: str | None = None  # the model's answer (truncated), for auditing
    attempts: int = 0  # requests made (http: including retries)
    elapsed_s: float = 0.0
    time: str = ""

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    @property
    def key(self) -> str:
        return record_key(self.video, self.frame, self.annotator, self.prompt_hash, self.view)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["instances"] = [i.to_dict() for i in self.instances]
        return d

    @classmethod
    def from_dict(cls, d: Mapping) -> "FrameRecord":
        d = dict(d)
        d["instances"] = [Instance.from_dict(i) for i in d.get("instances") or []]
        known = {f for f in cls.__dataclass_fields__}
        return cls(**{k: v for k, v in d.items() if k in known})


def record_key(video: str, frame: int, annotator: str, prompt_hash: str, view: str = "full") -> str:
    return f"{video}|{int(frame)}|{annotator}|{prompt_hash}|{view}"


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


# -- strict parsing with one repair pass ---------------------------------------------------------

_FENCE = re.compile(r"```(?:json|JSON)?\s*(.*?)```", re.S)
_TRAILING_COMMA = re.compile(r",\s*([}\]])")


def _extract_json(text: str) -> tuple[Any, list[str]]:
    """json.loads, else one repair pass (fences, surrounding prose, trailing commas)."""
    if text is None or not str(text).strip():
        raise AnswerError("empty answer")
    text = str(text).strip()
    try:
        return json.loads(text), []
    except json.JSONDecodeError:
        pass
    repairs: list[str] = []
    body = text
    m = _FENCE.search(body)
    if m:
        body, repairs = m.group(1).strip(), ["removed code fence"]
    starts = [i for i in (body.find("{"), body.find("[")) if i >= 0]
    if not starts:
        raise AnswerError(f"not JSON: no object or array in the answer ({_excerpt(text)})")
    s = min(starts)
    close = "}" if body[s] == "{" else "]"
    e = body.rfind(close)
    if e <= s:
        raise AnswerError(f"partial JSON: the {body[s]!r} opened at character {s} is never closed ({_excerpt(text)})")
    if s > 0 or e < len(body) - 1:
        repairs.append("removed text around the JSON")
    body = body[s:e + 1]
    fixed = _TRAILING_COMMA.sub(r"\1", body)
    if fixed != body:
        repairs.append("removed trailing commas")
    try:
        return json.loads(fixed), repairs
    except json.JSONDecodeError as err:
        kind = "partial JSON" if "Expecting" in err.msg and err.pos >= len(fixed) - 2 else "invalid JSON"
        raise AnswerError(f"{kind}: {err.msg} at character {err.pos} ({_excerpt(text)})") from None


def _excerpt(text: str, n: int = 80) -> str:
    t = " ".join(str(text).split())
    return repr(t if len(t) <= n else t[:n] + "...")


def _as_str(v: Any) -> str | None:
    if v is None:
        return None
    if isinstance(v, (list, tuple)):
        return " ".join(str(x) for x in v if x is not None) or None
    if isinstance(v, dict):
        return None
    s = str(v).strip()
    return s or None


def parse_answer(text: str, frame_size: Sequence[int], scale: tuple[float, float] = (1.0, 1.0)
                 ) -> tuple[list[Instance], list[str]]:
    """Parse a model's JSON answer into instances; raise `AnswerError` with a reason if unusable.

    Accepts {"instances": [...]} (or a bare list with a warning). Each instance needs a non-empty
    "category" (alias "label") and a 4-number "box" (alias "bbox_2d", "bbox"); "attributes" is an
    optional mapping of short strings. Boxes are scaled by `scale` (sx, sy) (from the model's
    image size back to the frame), reordered if corners are swapped, clipped to the frame, and
    dropped (with a warning) when nothing is left inside. Instances that break the schema are
    dropped with a warning; an answer whose every instance is broken is an error.
    """
    data, warnings = _extract_json(text)
    if isinstance(data, list):
        warnings.append("bare list instead of {'instances': [...]}")
        items = data
    elif isinstance(data, dict):
        if "instances" not in data:
            if {"category", "box"} <= set(data) or {"label", "bbox_2d"} <= set(data):
                warnings.append("single instance instead of {'instances': [...]}")
                items = [data]
            else:
                raise AnswerError(f"schema: no 'instances' key (keys: {sorted(data)[:6]})")
        else:
            items = data["instances"]
    else:
        raise AnswerError(f"schema: expected an object or a list, got {type(data).__name__}")
    if not isinstance(items, list):
        raise AnswerError(f"schema: 'instances' must be a list, got {type(items).__name__}")
    h, w = float(frame_size[0]), float(frame_size[1])
    out: list[Instance] = []
    for n, it in enumerate(items):
        if not isinstance(it, dict):
            warnings.append(f"instance {n}: not an object, dropped")
            continue
        cat = _as_str(it.get("category", it.get("label")))
        if "category" not in it and "label" in it:
            warnings.append(f"instance {n}: 'label' read as 'category'")
        if not cat:
            warnings.append(f"instance {n}: no category, dropped")
            continue
        box = it.get("box", it.get("bbox_2d", it.get("bbox")))
        if "box" not in it and box is not None:
            warnings.append(f"instance {n}: 'bbox_2d'/'bbox' read as 'box'")
        try:
            if isinstance(box, str):
                raise TypeError
            x1, y1, x2, y2 = (float(v) for v in box)
            if not all(np.isfinite([x1, y1, x2, y2])):
                raise ValueError
        except (TypeError, ValueError):
            warnings.append(f"instance {n}: box is not 4 numbers ({_excerpt(json.dumps(box), 40)}), dropped")
            continue
        x1, x2 = x1 * scale[0], x2 * scale[0]
        y1, y2 = y1 * scale[1], y2 * scale[1]
        if x1 > x2 or y1 > y2:
            x1, x2, y1, y2 = min(x1, x2), max(x1, x2), min(y1, y2), max(y1, y2)
            warnings.append(f"instance {n}: box corners swapped")
        cx1, cy1, cx2, cy2 = max(x1, 0.0), max(y1, 0.0), min(x2, w), min(y2, h)
        if cx2 - cx1 < 1.0 or cy2 - cy1 < 1.0:
            warnings.append(f"instance {n}: box {[x1, y1, x2, y2]} lies outside the {int(w)}x{int(h)} frame, dropped")
            continue
        if (cx1, cy1, cx2, cy2) != (x1, y1, x2, y2):
            warnings.append(f"instance {n}: box clipped to the frame")
        attrs_in = it.get("attributes") or {}
        attrs: dict[str, str] = {}
        if isinstance(attrs_in, dict):
            for k, v in attrs_in.items():
                sv = _as_str(v)
                if sv:
                    attrs[str(k)] = sv
        elif isinstance(attrs_in, (list, str)):
            sv = _as_str(attrs_in)
            if sv:
                attrs["appearance"] = sv
            warnings.append(f"instance {n}: attributes not a mapping, kept as 'appearance'")
        out.append(Instance(cat.lower(), attrs, (cx1, cy1, cx2, cy2)))
    if items and not out:
        raise AnswerError("schema: no usable instance (" + "; ".join(warnings[-3:]) + ")")
    return out, warnings


# -- the interface ------------------------------------------------------------------------------

class Annotator(Protocol):
    name: str  # goes into the cache key, e.g. "oracle", "http:<model>"
    needs_pixels: bool  # False: the caller may pass image=None (the oracle)

    def describe_frame(self, image: np.ndarray | None, prompt: str, *, video: Any = None, frame: int | None = None,
                       focus: np.ndarray | None = None, prompt_hash: str = "") -> FrameRecord: ...


def _video_name(video: Any) -> str:
    if video is None:
        return "?"
    return str(getattr(video, "name", video))


def _image_ok(image: Any) -> str | None:
    """None when the image can be sent, else the reason."""
    if image is None:
        return "no image"
    a = np.asarray(image)
    if a.ndim != 3 or a.shape[-1] != 3 or a.shape[0] == 0 or a.shape[1] == 0:
        return f"empty or malformed image (shape {tuple(a.shape)})"
    return None


def _new_record(name: str, video: Any, frame: int | None, focus: Any, prompt_hash: str) -> FrameRecord:
    """The record every annotator fills in for one (video, frame, view) request."""
    return FrameRecord(_video_name(video), int(frame if frame is not None else -1), name, prompt_hash,
                       "focus" if focus is not None else "full", time=_now())


def _refuse_image(rec: FrameRecord, image: Any) -> bool:
    """Mark `rec` as a counted failure (and return True) when `image` cannot be sent to a model."""
    bad = _image_ok(image)
    if bad:
        rec.status, rec.error = "invalid_answer", f"not asked: {bad}"
    return bool(bad)


class OracleAnnotator:
    """Ground truth as an annotator: every object of the record visible in the frame.

    With `focus` (an anomaly id map or a boolean mask for the frame), only the objects inside it
    are reported: what an LVLM sees when everything else is blurred. Deterministic.
    """

    name = "oracle"
    needs_pixels = False

    def describe_frame(self, image, prompt, *, video=None, frame=None, focus=None, prompt_hash="") -> FrameRecord:
        t0 = time.perf_counter()
        rec = _new_record(self.name, video, frame, focus, prompt_hash)
        if video is None or frame is None:
            rec.status, rec.error = "request_failed", "the oracle needs the video record and the frame index"
            return rec
        size = tuple(int(v) for v in video.size)
        objs = video.objects or {}
        focus_ids: set | None = None
        focus_bool = None
        if focus is not None:
            f = np.asarray(focus)
            if f.dtype == bool:
                focus_bool = f
            else:
                focus_ids = {int(v) for v in np.unique(f) if v != 0}
        for oid, obj in (objs.items() if isinstance(objs, dict) else enumerate(objs)):
            box = object_box(obj, int(frame))
            oid_ = getattr(obj, "id", oid)
            if box is None:
                c = object_centroid(obj, int(frame))
                if c is not None and focus is None:  # centroid-only ground truth (no boxes)
                    attrs = {str(k): str(v) for k, v in (getattr(obj, "attributes", None) or {}).items()
                             if v not in (None, "")}
                    rec.instances.append(Instance(str(getattr(obj, "category", "object")), attrs, None, oid_, c))
                elif c is not None and focus_ids is not None and int(oid_) in focus_ids:
                    rec.instances.append(Instance(str(getattr(obj, "category", "object")), {}, None, oid_, c))
                continue
            if focus_ids is not None and int(oid_) not in focus_ids:
                continue
            if focus_bool is not None:
                x1, y1, x2, y2 = (int(round(v)) for v in box)
                region = focus_bool[max(y1, 0):max(y2, 0), max(x1, 0):max(x2, 0)]
                if region.size == 0 or region.mean() < 0.2:
                    continue
            x1, y1, x2, y2 = box
            h, w = size
            x1, y1, x2, y2 = max(x1, 0.0), max(y1, 0.0), min(x2, float(w)), min(y2, float(h))
            if x2 - x1 < 1 or y2 - y1 < 1:
                rec.warnings.append(f"object {oid_}: box outside the frame, dropped")
                continue
            attrs = {str(k): str(v) for k, v in (getattr(obj, "attributes", None) or {}).items() if v not in (None, "")}
            rec.instances.append(Instance(str(getattr(obj, "category", "object")), attrs, (x1, y1, x2, y2), oid_))
        rec.attempts = 1
        rec.elapsed_s = time.perf_counter() - t0
        return rec


def object_box(obj: Any, frame: int) -> tuple[float, float, float, float] | None:
    """An object's box at `frame` (x1 y1 x2 y2) or None; boxes may be a dict {frame: box} or a
    per-frame sequence/array with None/NaN rows where the object is absent."""
    boxes = getattr(obj, "boxes", None)
    if boxes is None and isinstance(obj, Mapping):
        boxes = obj.get("boxes")
    if boxes is None:
        return None
    if isinstance(boxes, Mapping):
        b = boxes.get(frame, boxes.get(str(frame)))
    else:
        if frame < 0 or frame >= len(boxes):
            return None
        b = boxes[frame]
    if b is None:
        return None
    b = np.asarray(b, dtype=float).reshape(-1)
    if b.size != 4 or not np.all(np.isfinite(b)) or b[2] <= b[0] or b[3] <= b[1]:
        return None
    return tuple(float(v) for v in b)


def object_centroid(obj: Any, frame: int) -> tuple[float, float] | None:
    c = getattr(obj, "centroids", None)
    if c is None or frame < 0 or frame >= len(c):
        return None
    c = np.asarray(c[frame], dtype=float).reshape(-1)
    return None if c.size != 2 or not np.all(np.isfinite(c)) else (float(c[0]), float(c[1]))


def encode_image(image: np.ndarray, fmt: str = "jpeg", quality: int = 90) -> str:
    """uint8 (H, W, 3) -> a data URL (base64) for chat-completions image input."""
    from PIL import Image

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
        rec = _new_record(self.name, video, frame, focus, prompt_hash)
        if _refuse_image(rec, image):
            return rec
        text, err, attempts = self.complete(image, prompt)
        rec.attempts = attempts
        rec.raw = None if text is None else text[:2000]
        if err is not None:
            rec.status = "invalid_answer" if text is not None else "request_failed"
            rec.error = err
        else:
            _fill(rec, text, np.asarray(image).shape[:2])
        rec.elapsed_s = time.perf_counter() - t0
        return rec


def _fill(rec: FrameRecord, text: str, frame_size: Sequence[int], scale=(1.0, 1.0)) -> None:
    try:
        rec.instances, rec.warnings = parse_answer(text, frame_size, scale)
        rec.status = "ok"
    except AnswerError as e:
        rec.status, rec.error = "invalid_answer", str(e)


class LocalAnnotator:
    """A transformers Qwen2.5-VL checkpoint (any local directory or hub id) asked for JSON.

    The image goes through the checkpoint's processor (Qwen's smart resize under `max_pixels`);
    boxes in the answer are read in the resized image's pixels (Qwen2.5-VL's absolute grounding)
    and scaled back to the frame. Greedy decoding. transformers/torch are imported here only.
    """

    needs_pixels = True

    def __init__(self, path: str, *, device: str = "cpu", dtype: str = "float32", max_new_tokens: int = 512,
                 max_pixels: int = 476 * 868, model: Any = None, processor: Any = None) -> None:
        self.path = str(path)
        self.name = f"local:{os.path.basename(self.path.rstrip('/')) or self.path}"
        self.device, self.max_new_tokens, self.max_pixels = device, int(max_new_tokens), int(max_pixels)
        self._dtype = dtype
        self._model, self._processor = model, processor

    def _load(self) -> None:
        if self._model is not None and self._processor is not None:
            return
        try:
            import torch
            from transformers import AutoProcessor, Qwen2_5_VLForConditionalGeneration
        except ImportError as e:  # pragma: no cover - the package requires them
            raise AnnotatorError(f"local annotator needs torch and transformers ({e})") from None
        try:
            if self._processor is None:
                self._processor = AutoProcessor.from_pretrained(self.path)
            if self._model is None:
                self._model = Qwen2_5_VLForConditionalGeneration.from_pretrained(
                    self.path, dtype=getattr(torch, self._dtype)).to(self.device).eval()
        except Exception as e:
            raise AnnotatorError(f"local annotator: cannot load a Qwen2.5-VL checkpoint from {self.path!r} "
                                 f"({type(e).__name__}: {e})") from None

    def _chat_text(self, prompt: str) -> str:
        msgs = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": prompt}]}]
        tmpl = getattr(self._processor, "chat_template", None) or getattr(
            getattr(self._processor, "tokenizer", None), "chat_template", None)
        if tmpl:
            try:
                return self._processor.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True)
            except Exception:
                pass
        return ("<|im_start|>user\n<|vision_start|><|image_pad|><|vision_end|>"
                f"{prompt}<|im_end|>\n<|im_start|>assistant\n")

    def generate(self, image: np.ndarray, prompt: str) -> tuple[str, tuple[int, int]]:
        """(answer text, (H, W) of the image the model saw)."""
        import torch
        from PIL import Image

        self._load()
        proc = self._processor
        text = self._chat_text(prompt)
        ip = getattr(proc, "image_processor", None)
        size = dict(getattr(ip, "size", None) or {})
        size["longest_edge"] = self.max_pixels  # Qwen's pixel budget (min stays the processor's)
        size.setdefault("shortest_edge", min(56 * 56, self.max_pixels))
        inputs = proc(text=[text], images=[Image.fromarray(np.asarray(image, dtype=np.uint8))],
                      return_tensors="pt", images_kwargs={"size": size})
        grid = inputs["image_grid_thw"][0].tolist()
        patch = getattr(getattr(proc, "image_processor", None), "patch_size", 14) or 14
        seen = (int(grid[1]) * patch, int(grid[2]) * patch)
        inputs = {k: (v.to(self.device) if hasattr(v, "to") else v) for k, v in inputs.items()}
        with torch.no_grad():
            out = self._model.generate(**inputs, max_new_tokens=self.max_new_tokens, do_sample=False)
        new = out[0, inputs["input_ids"].shape[1]:]
        tok = getattr(proc, "tokenizer", proc)
        return tok.decode(new, skip_special_tokens=True), seen

    def describe_frame(self, image, prompt, *, video=None, frame=None, focus=None, prompt_hash="") -> FrameRecord:
        t0 = time.perf_counter()
        rec = _new_record(self.name, video, frame, focus, prompt_hash)
        if _refuse_image(rec, image):
            return rec
        self._load()  # configuration errors (a wrong path) raise: they are not per-frame failures
        rec.attempts = 1
        try:
            text, (sh, sw) = self.generate(image, prompt)
        except Exception as e:  # a generation failure on one frame is recorded, not raised
            rec.status, rec.error = "request_failed", f"generation failed: {type(e).__name__}: {e}"
            rec.elapsed_s = time.perf_counter() - t0
            return rec
        rec.raw = text[:2000]
        h, w = np.asarray(image).shape[:2]
        _fill(rec, text, (h, w), scale=(w / max(sw, 1), h / max(sh, 1)))
        rec.elapsed_s = time.perf_counter() - t0
        return rec


def make_annotator(kind: str | Annotator = "oracle", **kw) -> Annotator:
    """"oracle", "local" (path=..., device=...) or "http" (base_url=..., model=..., api_key_env=...);
    an annotator object is returned as is."""
    if not isinstance(kind, str):
        return kind
    if kind == "oracle":
        return OracleAnnotator()
    if kind == "local":
        if "path" not in kw:
            raise AnnotatorError("local annotator: give path= (a Qwen2.5-VL checkpoint directory or hub id)")
        return LocalAnnotator(**kw)
    if kind == "http":
        missing = [k for k in ("base_url", "model") if k not in kw]
        if missing:
            raise AnnotatorError(f"http annotator: missing {', '.join(missing)}")
        return HTTPAnnotator(**kw)
    raise AnnotatorError(f"unknown annotator {kind!r}; choose oracle, local or http")
