"""Bad inputs to the Python API (issue 20, items 6 and 7): `detect` thresholds and rates, `chat` on a
directory, a history from another video (off any sampling grid), malformed history messages, an
overlong question, a parent folder holding several checkpoints. Each asserts the exception type
and the first line of its message."""

from __future__ import annotations

import os
import shutil

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np
import pytest

from tvad.model import TVADError, find_checkpoint, load
from tvad.model.chat import MAX_QUESTION_CHARS, History, frames_fingerprint
from tvad.model.detector import check_fps, check_threshold


def first_line(e: pytest.ExceptionInfo) -> str:
    return str(e.value).splitlines()[0]


@pytest.fixture(scope="module")
def model(tiny_stage1_run):
    return load(tiny_stage1_run[0] / "run", device="cpu")


@pytest.fixture(scope="module")
def frames():
    return np.random.default_rng(0).integers(0, 256, (4, 56, 56, 3), dtype=np.uint8)


@pytest.mark.parametrize("threshold, expected", [
    (float("nan"), "threshold must be a finite number in [0, 1], got nan"),
    (float("inf"), "threshold must be a finite number in [0, 1], got inf"),
    (-0.1, "threshold must be a finite number in [0, 1], got -0.1"),
    (1.5, "threshold must be a finite number in [0, 1], got 1.5"),
    ("0.5", "threshold must be a number in [0, 1], got str '0.5'"),
    (None, "threshold must be a number in [0, 1], got NoneType None"),
])
def test_detect_threshold(model, frames, threshold, expected):
    with pytest.raises(ValueError) as e:
        model.detect(frames, threshold=threshold)
    assert first_line(e) == expected


def test_detect_threshold_bounds_and_numpy_numbers_pass():
    assert check_threshold(0) == 0.0 and check_threshold(1) == 1.0 and check_threshold(np.float32(0.5)) == 0.5
    assert check_fps(None) is None and check_fps(np.int64(4)) == 4.0


@pytest.mark.parametrize("fps, expected", [
    (float("nan"), "fps must be a finite number > 0, got nan"),
    (0, "fps must be a finite number > 0, got 0.0"),
    (-3.0, "fps must be a finite number > 0, got -3.0"),
])
def test_detect_fps(model, frames, fps, expected):
    with pytest.raises(ValueError) as e:
        model.detect(frames, fps=fps)
    assert first_line(e) == expected


def test_windows_threshold_checked(model, frames):
    with pytest.raises(ValueError) as e:
        next(model.detector.windows(lambda a, b: frames[a:b], len(frames), threshold=float("nan")))
    assert first_line(e) == "threshold must be a finite number in [0, 1], got nan"


def test_detect_good_call_unchanged(model, frames):
    """The checks do not touch a good call: the same heatmaps as the detector without them."""
    a = model.detect(frames, threshold=0.5)
    b = model.detector.detect(frames, threshold=np.float64(0.5))
    assert np.array_equal(a.heatmaps, b.heatmaps) and np.array_equal(a.regions, b.regions)


def test_chat_video_is_a_directory(model, tmp_path):
    with pytest.raises(TVADError) as e:
        model.chat(tmp_path, "Is there any anomaly?")
    assert first_line(e) == f"video {tmp_path} is a directory, not a video file"


def test_chat_fps_nan(model, frames):
    with pytest.raises(TVADError) as e:
        model.chat(frames, "Is there any anomaly?", fps=float("nan"))
    assert first_line(e) == "fps must be a finite number > 0, got nan"


def test_fingerprint_sees_every_pixel(frames):
    other = frames.copy()
    other[1, 1, 1, 0] ^= 0x01  # off the old 7-pixel sampling grid, one bit
    assert frames_fingerprint(other) != frames_fingerprint(frames)
    assert frames_fingerprint(frames.copy()) == frames_fingerprint(frames)
    assert len(frames_fingerprint(frames)) == 64  # SHA-256


def test_chat_history_from_another_video_off_the_grid(model, frames):
    _, h = model.chat(frames, "Is there any anomaly?", max_new_tokens=2)
    other = frames.copy()
    other[2, 3, 5] += 1  # rows and columns off any 1-in-7 subsample
    with pytest.raises(TVADError) as e:
        model.chat(other, "And then?", h, max_new_tokens=2)
    assert first_line(e) == "this history belongs to another video: start a new dialogue (history=None) for it"


@pytest.mark.parametrize("message, expected", [
    ({"role": "user"}, "history message 1 has no 'content'"),
    ({"content": "hi"}, "history message 1 has no 'role'"),
    ({"role": "robot", "content": "hi"}, "history message 1 has role 'robot'; expected one of system, user, assistant"),
    ({"role": "user", "content": 3}, "history message 1: 'content' must be a string, got int"),
    ("hello", "history message 1 is a str, not a {role, content} dict"),
])
def test_chat_history_message_malformed(model, frames, message, expected):
    h = History([{"role": "system", "content": "s"}, message], video_id=frames_fingerprint(frames))
    with pytest.raises(TVADError) as e:
        model.chat(frames, "And then?", h, max_new_tokens=2)
    assert first_line(e) == expected


def test_chat_question_too_long(model, frames):
    q = " ".join(["word"] * 20_000)
    with pytest.raises(TVADError) as e:
        model.chat(frames, q)
    assert first_line(e) == f"the question is {len(q):,} characters long; the limit is {MAX_QUESTION_CHARS:,}"
    a, _ = model.chat(frames, "x" * MAX_QUESTION_CHARS, max_new_tokens=1)  # at the limit: answered
    assert isinstance(a, str)


def test_parent_folder_with_several_checkpoints(tiny_stage1_run, tmp_path):
    run = tiny_stage1_run[0] / "run"
    for name in ("b", "a"):
        shutil.copytree(run, tmp_path / name)
    with pytest.raises(ValueError) as e:
        find_checkpoint(tmp_path)
    assert first_line(e) == (f"{tmp_path}: holds 2 AHD checkpoints, pass one of them (or its run directory): "
                             f"{tmp_path / 'a' / 'stage1' / 'best'}, {tmp_path / 'b' / 'stage1' / 'best'}")
    with pytest.raises(ValueError) as e:
        load(tmp_path)
    assert first_line(e).startswith(f"{tmp_path}: holds 2 AHD checkpoints")
    assert find_checkpoint(tmp_path / "a") == tmp_path / "a" / "stage1" / "best"  # one of them: found


def test_parent_folder_with_one_checkpoint(tiny_stage1_run, tmp_path):
    shutil.copytree(tiny_stage1_run[0] / "run", tmp_path / "only")
    assert find_checkpoint(tmp_path) == tmp_path / "only" / "stage1" / "best"
    model = load(tmp_path, device="cpu")  # the one run below the folder, loaded as if given
    assert model.ahd is not None and not model.use_rae


def test_folder_without_a_checkpoint(tmp_path):
    with pytest.raises(FileNotFoundError) as e:
        find_checkpoint(tmp_path)
    assert first_line(e) == f"{tmp_path}: no AHD checkpoint (ahd.json) in it or under stage1/best"
