"""Overlays on frames (tvad.viz.overlays): the right pixels coloured, shapes and dtypes kept."""

import numpy as np
import pytest

from tvad.viz.overlays import (GT_COLOR, PRED_COLOR, draw_boxes, draw_timelines, draw_track, frame_strip,
                               overlay_heatmap, overlay_mask)


@pytest.fixture()
def frame():
    return np.full((20, 30, 3), 100, np.uint8)


def test_overlay_mask_tints_only_the_mask(frame):
    mask = np.zeros((20, 30), bool)
    mask[5:10, 8:12] = True
    out = overlay_mask(frame, mask, color=(200, 0, 50), alpha=0.5)
    assert out.shape == frame.shape and out.dtype == np.uint8
    assert (out[5:10, 8:12] == (150, 50, 75)).all()  # (1 - a) * 100 + a * colour
    assert (out[~mask] == 100).all()
    assert (frame == 100).all()  # the input is not modified
    assert (overlay_mask(frame, mask.astype(np.uint8) * 7, alpha=1.0)[mask] == GT_COLOR).all()  # any non-zero


def test_overlay_heatmap_blends_the_colormap(frame):
    heat = np.zeros((20, 30), np.float32)
    heat[:, 15:] = 1.0
    out = overlay_heatmap(frame, heat, alpha=1.0, cmap="gray")
    assert out.shape == frame.shape and out.dtype == np.uint8
    assert (out[:, :15] == 0).all() and (out[:, 15:] == 255).all()  # gray: 0 -> black, 1 -> white
    half = overlay_heatmap(frame, np.full((20, 30), 2.0), alpha=0.5, cmap="gray")  # clipped to 1
    assert (half == 178).all()  # round(0.5 * 100 + 0.5 * 255)
    hot = overlay_heatmap(frame, heat, alpha=0.6)  # jet: hot is red, cold is blue
    assert hot[0, 20, 0] > hot[0, 20, 2] and hot[0, 5, 2] > hot[0, 5, 0]
    with pytest.raises(ValueError, match="does not match"):
        overlay_heatmap(frame, np.zeros((10, 30)))


def test_draw_boxes_draws_the_outline_where_told(frame):
    out = draw_boxes(frame, [[5, 4, 14, 12]], color=PRED_COLOR, width=1)
    assert out.shape == frame.shape and out.dtype == np.uint8 and (frame == 100).all()
    red = (out == PRED_COLOR).all(-1)
    assert red[4, 5:15].all() and red[12, 5:15].all()  # top and bottom edges (inclusive)
    assert red[4:13, 5].all() and red[4:13, 14].all()  # left and right edges
    assert not red[5:12, 6:14].any()  # the inside is untouched
    assert red.sum() == 2 * 10 + 2 * 7
    clipped = (draw_boxes(frame, [[-10, -10, 100, 100]], width=1) == PRED_COLOR).all(-1)
    assert clipped[0].all() and clipped[-1].all() and clipped[:, 0].all() and clipped[:, -1].all()
    assert np.array_equal(draw_boxes(frame, []), frame)


def test_draw_track_joins_the_points_and_skips_gaps(frame):
    out = draw_track(frame, [(2, 10), None, (22, 10)], color=(0, 255, 0), radius=0)
    green = (out == (0, 255, 0)).all(-1)
    assert green[10, 2:23].all() and green.sum() == 21  # one horizontal line through the gap
    dots = (draw_track(frame, [(5, 5)], color=(0, 255, 0), radius=1) == (0, 255, 0)).all(-1)
    assert dots[4:7, 4:7].all() and dots.sum() == 9
    assert np.array_equal(draw_track(frame, [None, None]), frame)


def test_frame_strip_picks_evenly_spaced_frames():
    frames = np.arange(10)[:, None, None, None] * np.ones((10, 2, 2, 3), np.uint8)
    strip, idx = frame_strip(frames, num=4)
    assert idx.tolist() == [0, 3, 6, 9] and strip.shape == (4, 2, 2, 3)
    assert strip[:, 0, 0, 0].tolist() == [0, 3, 6, 9]
    strip, idx = frame_strip(frames[:3], num=6)  # fewer frames than asked: each once
    assert idx.tolist() == [0, 1, 2]


def test_draw_timelines_colours_by_anomaly():
    frames = np.zeros((2, 20, 20, 3), np.uint8)
    targets = [{"anomalous": True, "boxes": [[1, 1, 5, 5], None], "centroids": [(3, 3), None]},
               {"anomalous": False, "boxes": [None, [10, 10, 15, 15]], "centroids": [None, (12, 12)]}]
    out = draw_timelines(frames, targets)
    assert out.shape == frames.shape and (frames == 0).all()
    assert (out[0, 1, 1:6] == PRED_COLOR).all() and not (out[0] == GT_COLOR).all(-1).any()
    assert (out[1, 10, 10:16] == GT_COLOR).all()
