"""Chat bookkeeping (tvad.model.chat): the frames' fingerprint, History, ChatSession over any model
with `read_video` and `chat` (the real TVAD's chat is tested in test_model_tvad.py)."""

import numpy as np
import pytest

from tvad.model.chat import ChatSession, History, frames_fingerprint


@pytest.fixture()
def frames():
    return np.random.default_rng(0).integers(0, 256, (4, 28, 28, 3), dtype=np.uint8)


def test_fingerprint_tells_videos_apart(frames):
    fp = frames_fingerprint(frames)
    assert isinstance(fp, str) and len(fp) == 64  # SHA-256 of every byte
    assert frames_fingerprint(frames.copy()) == fp  # content, not identity
    assert frames_fingerprint(frames[::-1].copy()) != fp  # same frames, other order
    other = frames.copy()
    other[2, 7, 14] ^= 0xFF  # one pixel
    assert frames_fingerprint(other) != fp
    other = frames.copy()
    other[2, 3, 5, 1] ^= 0x01  # one bit of a pixel off any subsampling grid
    assert frames_fingerprint(other) != fp
    assert frames_fingerprint(frames[:3]) != fp  # the shape counts too


def test_history_is_a_list_carrying_its_video():
    h = History([{"role": "system", "content": "s"}], video_id="abc", clip="CLIP")
    assert isinstance(h, list) and h == [{"role": "system", "content": "s"}]
    assert h.video_id == "abc" and h.clip == "CLIP"
    empty = History()
    assert len(empty) == 0 and empty.video_id == "" and empty.clip is None


class _Echo:
    """A stand-in model: reads nothing, answers with the turn number, keeps the history it is given."""

    def __init__(self):
        self.read, self.calls = [], []

    def read_video(self, video, fps=None):
        self.read.append(video)
        return np.zeros((2, 4, 4, 3), np.uint8), fps or 5.0

    def chat(self, frames, question, history, fps=None, max_new_tokens=96):
        self.calls.append((question, history, fps, max_new_tokens))
        msgs = list(history or [{"role": "system", "content": "sys"}])
        answer = f"answer {len(msgs) // 2 + 1}"
        return answer, History(msgs + [{"role": "user", "content": question},
                                       {"role": "assistant", "content": answer}], video_id="v")


def test_session_reads_once_and_threads_the_history():
    m = _Echo()
    s = ChatSession(m, "clip.mp4")
    assert m.read == ["clip.mp4"] and s.fps == 5.0 and s.history is None
    assert s.ask("Is there any anomaly?", max_new_tokens=7) == "answer 1"
    assert s.ask("Where?") == "answer 2"
    assert m.read == ["clip.mp4"]  # the video is read once per session
    assert m.calls[0][1] is None and m.calls[1][1] is not None and len(m.calls[1][1]) == 3
    assert m.calls[0][2:] == (5.0, 7)
    assert s.transcript() == ("USER: Is there any anomaly?\nT-VAD: answer 1\n"
                              "USER: Where?\nT-VAD: answer 2")  # no system turn
    s.reset()
    assert s.history is None and s.transcript() == ""
    assert s.ask("Again?") == "answer 1"  # a new dialogue
