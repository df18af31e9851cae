"""Chat about one video: a dialogue's `History` (tied to its video by a fingerprint of the frames)
and `ChatSession`, the multi-turn object `TVAD.session` returns.

    s = model.session("clip.mp4")                 # the video is read once, encoded on the first question
    s.ask("Is there any anomaly in this video?")  # -> answer; s.history holds the dialogue
    s.reset()                                     # a new dialogue about the same video

`TVAD.chat(video, question, history)` is the stateless form: it returns (answer, History), and
refuses a History from another video (`frames_fingerprint` differs).
"""

from __future__ import annotations

import hashlib
from typing import Any, Iterable, Protocol

import numpy as np


class ChatModel(Protocol):
    """What a `ChatSession` needs of its model (`tvad.model.tvad.TVAD`, which imports this module:
    naming the protocol here, not the class, keeps the two modules free of an import circle)."""

    def read_video(self, video, fps: float | None = None) -> tuple[np.ndarray, float]: ...

    def chat(self, video, question: str, history: "History | None" = None, fps: float | None = None,
             max_new_tokens: int = 96) -> tuple[str, "History"]: ...


class History(list):
    """The messages of one dialogue about one video ({role, content} dicts, system first). Carries
    the video's fingerprint (a history from another video is refused) and its encoded clip."""

    def __init__(self, messages: Iterable[dict] = (), video_id: str = "", clip: Any = None):
        super().__init__(messages)
        self.video_id = video_id
        self.clip = clip  # the video's encoded `tvad.model.tvad.ClipInputs` (encoded once per dialogue)


# The longest question `chat` takes. Questions about a clip are a sentence or two; a long paste (a
# 20,000-word text, say) would only crowd the video out of the context, so it is refused.
MAX_QUESTION_CHARS = 2000
ROLES = ("system", "user", "assistant")


def frames_fingerprint(frames: np.ndarray) -> str:
    """SHA-256 (hex) of a decoded clip: its shape, dtype and every byte of every frame, so two
    clips that differ in any pixel never share a fingerprint (a history is bound to its video)."""
    a = np.ascontiguousarray(frames)
    h = hashlib.sha256(f"{a.shape}|{a.dtype}".encode())
    h.update(memoryview(a).cast("B"))
    return h.hexdigest()


def check_question(question) -> str:
    """The question stripped: a non-empty string of at most MAX_QUESTION_CHARS characters."""
    if not isinstance(question, str) or not question.strip():
        raise ValueError("the question must be a non-empty string")
    q = question.strip()
    if len(q) > MAX_QUESTION_CHARS:
        raise ValueError(f"the question is {len(q):,} characters long; the limit is {MAX_QUESTION_CHARS:,}")
    return q


def check_messages(messages: Iterable) -> None:
    """Each message of a dialogue a dict with a known `role` and a string `content`; the first bad
    one named by its index."""
    for i, m in enumerate(messages):
        if not isinstance(m, dict):
            raise ValueError(f"history message {i} is a {type(m).__name__}, not a {{role, content}} dict")
        for key in ("role", "content"):
            if key not in m:
                raise ValueError(f"history message {i} has no '{key}'")
        if m["role"] not in ROLES:
            raise ValueError(f"history message {i} has role {m['role']!r}; expected one of {', '.join(ROLES)}")
        if not isinstance(m["content"], str):
            raise ValueError(f"history message {i}: 'content' must be a string, got {type(m['content']).__name__}")


class ChatSession:
    """A multi-turn dialogue about one video (the video is read and encoded once)."""

    def __init__(self, model: ChatModel, video, fps: float | None = None):
        self.model = model
        self.frames, self.fps = model.read_video(video, fps)
        self.history: History | None = None

    def ask(self, question: str, max_new_tokens: int = 96) -> str:
        answer, self.history = self.model.chat(self.frames, question, self.history, fps=self.fps,
                                               max_new_tokens=max_new_tokens)
        return answer

    def reset(self) -> None:
        self.history = None

    def transcript(self) -> str:
        return "\n".join(f"{'USER' if m['role'] == 'user' else 'T-VAD'}: {m['content']}"
                         for m in (self.history or []) if m["role"] != "system")
