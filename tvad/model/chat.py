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
from typing import TYPE_CHECKING, Iterable

import numpy as np

if TYPE_CHECKING:  # annotations only: tvad.model.tvad imports this module
    from tvad.model.tvad import TVAD, ClipInputs


class History(list):
    """The messages of one dialogue about one video ({role, content} dicts, system first). Carries
    the video's fingerprint (a history from another video is refused) and its encoded clip."""

    def __init__(self, messages: Iterable[dict] = (), video_id: str = "", clip: ClipInputs | None = None):
        super().__init__(messages)
        self.video_id = video_id
        self.clip = clip


def frames_fingerprint(frames: np.ndarray) -> str:
    """A short hash of a uint8 (T, H, W, 3) clip (its shape and a 1-in-7 pixel subsample)."""
    h = hashlib.sha1(str(frames.shape).encode())
    h.update(np.ascontiguousarray(frames[:, ::7, ::7]).tobytes())
    return h.hexdigest()[:16]


class ChatSession:
    """A multi-turn dialogue about one video (the video is read and encoded once)."""

    def __init__(self, model: TVAD, video, fps: float | None = None):
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
