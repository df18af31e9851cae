"""The detection API: load a checkpoint, detect on arrays and files, windows, bad checkpoints."""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np
import pytest


def test_detect_arrays_files_and_windows(tiny_stage1_run):
    from tvad.data.video import write_video
    from tvad.model.detector import load

    d, bb = tiny_stage1_run
    det = load(d / "run")  # a run directory: its best checkpoint, backbone loaded as recorded
    frames = np.random.default_rng(0).integers(0, 256, (7, 112, 112, 3), dtype=np.uint8)
    out = det.detect(frames)
    assert out.heatmaps.shape == (7, 112, 112) and out.heatmaps.dtype == np.float32
    assert out.frame_scores.shape == (7,) and ((out.heatmaps >= 0) & (out.heatmaps <= 1)).all()
    assert np.allclose(out.frame_scores, out.heatmaps.reshape(7, -1).max(1))
    assert out.regions.ndim == 2 and out.regions.shape[1] == 6
    small = load(d / "run" / "stage1" / "best", backbone=bb, window=2).detect(frames)  # sliding window
    assert np.allclose(small.heatmaps, out.heatmaps, atol=1e-5)
    write_video(d / "clip.mp4", frames, fps=8.0)
    f = det.detect(d / "clip.mp4")
    assert f.heatmaps.shape == (7, 112, 112) and f.fps == pytest.approx(8.0)


def test_bad_checkpoints_and_inputs(tiny_stage1_run):
    from tvad.model.backbone import BackboneError
    from tvad.model.tiny import build_tiny
    from tvad.model.detector import load

    d, bb = tiny_stage1_run
    with pytest.raises(ValueError, match="backbone"):
        load(d / "run", backbone=build_tiny(seed=5, max_pixels=112 * 112))
    with pytest.raises(FileNotFoundError):
        load(d / "nothing-here")
    det = load(d / "run", backbone=bb)
    with pytest.raises(BackboneError, match="temporal patch"):
        det.detect(np.zeros((1, 112, 112, 3), np.uint8))
    with pytest.raises(BackboneError, match="different sizes"):
        det.detect([np.zeros((112, 112, 3), np.uint8), np.zeros((84, 112, 3), np.uint8)])
    det.ahd.mlps["1"][0].weight.data[:] = float("nan")
    with pytest.raises((FloatingPointError, ValueError)):
        det.detect(np.zeros((2, 112, 112, 3), np.uint8))
