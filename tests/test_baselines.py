"""The frame-difference baseline (tvad.baselines): heat where something moved, shapes, range, bad input."""

import numpy as np
import pytest

from tvad.baselines import framediff_heatmaps, framediff_scores


def _moving_square(T=8, H=40, W=60, size=8):
    """A grey static background with a white square moving right 5 px per frame; the square's boxes."""
    frames = np.full((T, H, W, 3), 90, np.uint8)
    boxes = []
    for t in range(T):
        x = 5 + 5 * t
        frames[t, 16:16 + size, x:x + size] = 255
        boxes.append((16, 16 + size, x, x + size))
    return frames, boxes


@pytest.mark.parametrize("mode", ["background", "consecutive"])
def test_the_moving_square_lights_up(mode):
    frames, boxes = _moving_square()
    heat = framediff_heatmaps(frames, mode=mode, sigma=1.0)
    assert heat.shape == frames.shape[:3] and heat.dtype == np.float32
    assert heat.min() >= 0 and heat.max() <= 1
    for t, (y0, y1, x0, x1) in enumerate(boxes):
        inside = heat[t, y0:y1, x0:x1].mean()
        far = heat[t, :, :].copy()
        far[max(0, y0 - 6):y1 + 6, :] = 0  # rows away from the square's band: the static background
        assert inside > 0.5, (t, inside)
        assert far.max() < 0.05, (t, far.max())
    scores = framediff_scores(heat)
    assert scores.shape == (len(frames),) and scores.dtype == np.float32
    assert np.array_equal(scores, heat.reshape(len(heat), -1).max(1))


def test_still_video_stays_cold_and_scale_is_fixed():
    still = np.full((5, 20, 20, 3), 120, np.uint8)
    assert framediff_heatmaps(still).max() == 0  # no per-video normalisation
    frames, _ = _moving_square()
    strong = framediff_heatmaps(frames, sigma=0, scale=0.25)
    weak = framediff_heatmaps(frames, sigma=0, scale=1.0)
    assert (weak <= strong).all() and weak.max() < strong.max()  # a larger scale, cooler heat
    d = np.abs(frames[0].astype(np.float32) / 255 - np.median(frames.astype(np.float32) / 255, 0)).mean(-1)
    assert np.allclose(weak[0], np.clip(d, 0, 1))  # heat = min(1, distance / scale), unblurred


def test_consecutive_mode_first_frame_copies_the_second():
    frames, _ = _moving_square()
    heat = framediff_heatmaps(frames, mode="consecutive", sigma=0)
    assert np.array_equal(heat[0], heat[1])


def test_bad_input():
    with pytest.raises(ValueError, match=r"\(T, H, W, 3\)"):
        framediff_heatmaps(np.zeros((4, 10, 10), np.uint8))
    with pytest.raises(ValueError, match="at least 2"):
        framediff_heatmaps(np.zeros((1, 10, 10, 3), np.uint8))
    with pytest.raises(ValueError, match="NaN"):
        framediff_heatmaps(np.full((2, 4, 4, 3), np.nan))
    with pytest.raises(ValueError, match="unknown mode"):
        framediff_heatmaps(np.zeros((2, 4, 4, 3), np.uint8), mode="optical-flow")
