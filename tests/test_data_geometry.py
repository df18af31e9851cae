"""tvad.data.geometry: blob boxes and centroids from id maps, blob linking, box IoU, region words."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tvad.data.geometry import (REGION_WORDS, box_iou, id_map_geometry, largest_blob_box, link_blobs,
                                objects_from_id_maps, region_cell, region_word)


def _frame(t: int) -> np.ndarray:
    """Object 1 (8x6, moving right by 1 px a frame; at t = 3 also a 2x2 blob in the corner) and a
    still object 2 (6x8)."""
    m = np.zeros((20, 30), np.uint8)
    m[2:10, 2 + t:8 + t] = 1
    m[12:18, 20:28] = 2
    if t == 3:
        m[0:2, 0:2] = 1
    return m


def test_blob_boxes_and_centroids():
    g = id_map_geometry(_frame(3))
    assert g[1][0] == (5, 2, 11, 10) and g[2][0] == (20, 12, 28, 18)  # largest blob of object 1 only
    assert g[2][1] == (23.5, 14.5)  # centroid: the mean of all its pixels
    assert largest_blob_box(np.zeros((4, 4))) is None
    objs = objects_from_id_maps(((t, _frame(t)) for t in range(5)), 5)
    boxes, cents = objs[1]
    assert boxes.shape == (5, 4) and boxes[0].tolist() == [2, 2, 8, 10] and not np.isnan(cents).any()


def test_link_blobs():
    m = np.zeros((3, 10, 10), bool)
    m[0, 1:4, 1:4] = m[1, 1:4, 2:5] = m[2, 6:9, 6:9] = True
    regions, n = link_blobs(enumerate(m))
    assert [(t, tid) for t, tid, _, _ in regions] == [(0, 1), (1, 1), (2, 2)] and n == 2


def test_box_iou():
    assert box_iou((0, 0, 10, 10), (0, 0, 10, 10)) == 1.0
    assert box_iou((0, 0, 10, 10), (5, 0, 15, 10)) == pytest.approx(50 / 150)
    assert box_iou((0, 0, 10, 10), (10, 0, 20, 10)) == 0.0  # touching edges do not overlap
    assert box_iou((0, 0, 10, 10), (20, 20, 30, 30)) == 0.0
    assert isinstance(box_iou(np.array([0, 0, 4, 4]), np.array([2, 2, 6, 6])), float)


def test_region_words_on_the_3x3_grid():
    size = (90, 120)  # (H, W): columns split at x = 40, 80; rows at y = 30, 60
    assert region_word(10, 10, size) == "top-left" and region_word(60, 10, size) == "top"
    assert region_word(119, 10, size) == "top-right" and region_word(10, 45, size) == "left"
    assert region_word(60, 45, size) == "middle" and region_word(100, 45, size) == "right"
    assert region_word(10, 80, size) == "bottom-left" and region_word(60, 80, size) == "bottom"
    assert region_word(100, 89, size) == "bottom-right"
    # borders: a point at W/3 is in the middle column, at 2W/3 in the right one; outside -> edge cell
    assert region_word(40, 45, size) == "middle" and region_word(39.999, 45, size) == "left"
    assert region_word(80, 45, size) == "right" and region_word(-5, 200, size) == "bottom-left"
    # H and W are not swapped: a wide frame's columns follow W
    assert region_word(300, 10, (100, 900)) == "top" and region_word(299, 10, (100, 900)) == "top-left"
    assert [region_cell(w) for w in REGION_WORDS] == [(r, c) for r in range(3) for c in range(3)]
    with pytest.raises(ValueError):
        region_cell("centre")
    with pytest.raises(ValueError):
        region_word(1, 1, size, grid=4)


def test_region_word_agrees_with_both_former_definitions():
    """The synthetic captions' `region_word(x, y, W, H)` (comparisons with W/3, 2W/3) and the corpus
    timelines' `region_word(x, y, (H, W))` (floor(3x / W)) were merged into this one; they agree on
    every point either used: centroids of pixel sets and box centres, two-decimal coordinates."""
    rng = np.random.default_rng(0)
    for h, w in [(224, 224), (476, 868), (240, 320), (100, 99)]:
        pts = np.round(rng.uniform(-2, max(h, w) + 2, (2000, 2)) * 2) / 2
        pts = np.concatenate([pts, np.round(rng.uniform(0, max(h, w), (2000, 2)), 2)])
        for x, y in pts:
            col = min(max(int(x * 3 // w), 0), 2)
            row = min(max(int(y * 3 // h), 0), 2)
            assert region_word(x, y, (h, w)) == REGION_WORDS[row * 3 + col]


def test_region_words_reproduce_the_reference_annotations(shared_clips):
    ann = json.loads((shared_clips / "annotations.json").read_text())
    n = 0
    for clip in ann.values():
        for tr in clip["anomalous_object_tracks"].values():
            for t in tr:
                if t:
                    assert region_word(*t["centroid_xy"], clip["frame_size_hw"]) == t["region"]
                    n += 1
    assert n > 100
