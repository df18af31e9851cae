"""The annotator interface: the frame prompt, what an annotator returns (`Instance`, `FrameRecord`),
its errors, the `Annotator` protocol and the record every implementation fills in."""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from typing import Any, Mapping, Protocol

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


def image_problem(image: Any) -> str | None:
    """None when the image can be sent, else the reason."""
    if image is None:
        return "no image"
    a = np.asarray(image)
    if a.ndim != 3 or a.shape[-1] != 3 or a.shape[0] == 0 or a.shape[1] == 0:
        return f"empty or malformed image (shape {tuple(a.shape)})"
    return None


def new_record(name: str, video: Any, frame: int | None, focus: Any, prompt_hash: str) -> FrameRecord:
    """The record every annotator fills in for one (video, frame, view) request."""
    return FrameRecord(_video_name(video), int(frame if frame is not None else -1), name, prompt_hash,
                       "focus" if focus is not None else "full", time=_now())


def refuse_image(rec: FrameRecord, image: Any) -> bool:
    """Mark `rec` as a counted failure (and return True) when `image` cannot be sent to a model."""
    bad = image_problem(image)
    if bad:
        rec.status, rec.error = "invalid_answer", f"not asked: {bad}"
    return bool(bad)
