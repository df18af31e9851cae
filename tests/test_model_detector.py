"""The detection API: load a checkpoint, detect on arrays and files, windows, bad checkpoints."""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np
import pytest
import torch

from tvad.data.video import write_video
from tvad.model.ahd import heat_to_frames
from tvad.model.backbone import BackboneError
from tvad.model.detector import load_detector, window_bounds
from tvad.model.tiny import build_tiny


def test_detect_arrays_files_and_windows(tiny_stage1_run):
    d, bb = tiny_stage1_run
    det = load_detector(d / "run")  # a run directory: its best checkpoint, backbone loaded as recorded
    frames = np.random.default_rng(0).integers(0, 256, (7, 112, 112, 3), dtype=np.uint8)
    out = det.detect(frames)
    assert out.heatmaps.shape == (7, 112, 112) and out.heatmaps.dtype == np.float32
    assert out.frame_scores.shape == (7,) and ((out.heatmaps >= 0) & (out.heatmaps <= 1)).all()
    assert np.allclose(out.frame_scores, out.heatmaps.reshape(7, -1).max(1))
    assert out.regions.ndim == 2 and out.regions.shape[1] == 6
    assert out.patch_heat.shape == (4, 8, 8)  # 7 frames -> 4 pairs (the last padded) on the 112 px patch grid
    assert np.array_equal(out.heatmaps, heat_to_frames(torch.from_numpy(out.patch_heat), (112, 112), 7).numpy())
    small = load_detector(d / "run" / "stage1" / "best", backbone=bb, window=2).detect(frames)  # sliding window
    assert np.allclose(small.heatmaps, out.heatmaps, atol=1e-5)
    write_video(d / "clip.mp4", frames, fps=8.0)
    f = det.detect(d / "clip.mp4")
    assert f.heatmaps.shape == (7, 112, 112) and f.fps == pytest.approx(8.0)


def test_bad_checkpoints_and_inputs(tiny_stage1_run):

    d, bb = tiny_stage1_run
    with pytest.raises(ValueError, match="backbone"):
        load_detector(d / "run", backbone=build_tiny(seed=5, max_pixels=112 * 112))
    with pytest.raises(FileNotFoundError):
        load_detector(d / "nothing-here")
    det = load_detector(d / "run", backbone=bb)
    with pytest.raises(BackboneError, match="temporal patch"):
        det.detect(np.zeros((1, 112, 112, 3), np.uint8))
    with pytest.raises(BackboneError, match="different sizes"):
        det.detect([np.zeros((112, 112, 3), np.uint8), np.zeros((84, 112, 3), np.uint8)])
    det.ahd.mlps["1"][0].weight.data[:] = float("nan")
    with pytest.raises((FloatingPointError, ValueError)):
        det.detect(np.zeros((2, 112, 112, 3), np.uint8))


def test_window_bounds_join_a_lone_last_frame():
    assert window_bounds(8, 4) == [(0, 4), (4, 8)]
    assert window_bounds(9, 4) == [(0, 4), (4, 9)]  # the lone 9th frame joins the previous window
    assert window_bounds(10, 4) == [(0, 4), (4, 8), (8, 10)]
    assert window_bounds(3, 4) == [(0, 3)] and window_bounds(1, 4) == [(0, 1)]


def test_windows_read_per_window_and_match_detect(tiny_stage1_run):
    d, bb = tiny_stage1_run
    det = load_detector(d / "run", backbone=bb)
    frames = np.random.default_rng(1).integers(0, 256, (9, 112, 112, 3), dtype=np.uint8)
    reads = []

    def read(a, b):
        reads.append((a, b))
        return frames[a:b]

    got = list(det.windows(read, len(frames), fps=8.0, window=4, threshold=0.3))
    assert reads == [(0, 4), (4, 9)] and [(a, b) for a, b, _ in got] == reads
    for a, b, w in got:
        ref = det.detect(frames[a:b], fps=8.0, threshold=0.3)
        assert np.array_equal(w.heatmaps, ref.heatmaps) and np.array_equal(w.frame_scores, ref.frame_scores)
        r = np.asarray(ref.regions, float).reshape(-1, 6)
        assert np.array_equal(w.regions[:, 1:], r[:, 1:]) and np.array_equal(w.regions[:, 0], r[:, 0] + a)
        assert w.fps == 8.0
    whole = det.detect(frames, fps=8.0)  # windows bound memory, not accuracy (pairs never straddle windows)
    assert np.allclose(np.concatenate([w.heatmaps for _, _, w in got]), whole.heatmaps, atol=1e-5)
