"""tvad.metrics RBDC/TBDC and the boxes they consume: the published toy example, hand-worked
cases of the protocol, loop == vectorised on random inputs, drawn heatmaps and masks."""

import numpy as np
import pytest

from tvad.metrics import (
    link_regions,
    operating_point,
    rbdc_tbdc,
    regions_from_heatmaps,
    tracks_from_masks,
)
from tvad.metrics.regions import _counts, _descending_stable, _hits_needed, _pool

METHODS = ["vectorized", "loop"]
BOX = [0, 0, 9, 9]  # a 10 x 10 inclusive box
FAR = [50, 50, 60, 60]  # overlaps nothing above


def det(frame, box, score):
    return [frame, *box, score]


def gt(track, frame, box):
    return [track, frame, *box]


def both(detections, gt_tracks, num_frames, **kw):
    """rbdc_tbdc by both methods; they must agree exactly."""
    out = [rbdc_tbdc(detections, gt_tracks, num_frames, method=m, **kw) for m in METHODS]
    assert out[0] == out[1]
    return out[0]


# ----------------------------------------------------------------------- the toy example
def test_published_toy_example_scores_one():
    # Two videos, one GT track over frames 0-4 at (10, 10, 20, 20); detections on it with
    # score 0.5, plus (0, 0, 20, 20) at frame 3 with score 0.1: IoU 121/441 >= 0.1 with an
    # already-matched region, so neither TP nor FP. 10 frames in all.
    g = np.array([gt(0, f, [10, 10, 20, 20]) for f in range(5)])
    d = np.array([det(f, [10, 10, 20, 20], 0.5) for f in range(5)] + [det(3, [0, 0, 20, 20], 0.1)])
    assert both([d, d], [g, g], 10) == (1.0, 1.0)
    assert operating_point([d, d], [g, g], 10) == {"rbdr": 1.0, "tbdr": 1.0, "fpr": 0.0}
    # Were the overlapping box a false positive, the curve would leave FPR 0.
    d_far = d.copy()
    d_far[-1, 1:5] = FAR
    assert operating_point([d_far, d], [g, g], 10)["fpr"] == 0.1


# ----------------------------------------------------------------------- hand-worked cases
def test_one_detection_matches_two_regions():
    # Regions (0..9) and (10..19) side by side in frame 0, one track each; the box (0..19)
    # has IoU 100/200 with each. A false positive (score 0.9) comes first: points (0, 0),
    # (0.1, 0), (0.1, 1), then flat to (1, 1): area 0.9 (0.45 if only one region matched).
    g = [[gt(0, 0, BOX), gt(1, 0, [10, 0, 19, 9])]]
    d = [[det(5, FAR, 0.9), det(0, [0, 0, 19, 9], 0.5)]]
    assert both(d, g, 10) == pytest.approx((0.9, 0.9))
    assert operating_point(d, g, 10) == {"rbdr": 1.0, "tbdr": 1.0, "fpr": 0.1}


def test_duplicate_on_matched_region_is_neither_tp_nor_fp():
    # Regions in frames 0 and 1 (tracks 0, 1). The duplicate at frame 0 (score 0.8) must not
    # be a false positive: points (0, .5), (0, .5), (0, 1) -> area 1; as an FP it would be 0.95.
    g = [[gt(0, 0, BOX), gt(1, 1, BOX)]]
    d = [[det(0, BOX, 0.9), det(0, [1, 1, 9, 9], 0.8), det(1, BOX, 0.7)]]
    assert both(d, g, 10) == (1.0, 1.0)
    assert operating_point(d, g, 10)["fpr"] == 0.0


def test_score_ties_keep_input_order():
    # FP and TP with equal scores: the one given first is ranked first.
    g = [[gt(0, 0, BOX)]]
    fp_first = [[det(3, FAR, 0.5), det(0, BOX, 0.5)]]  # (0.1, 0) then (0.1, 1): 0.9
    tp_first = [[det(0, BOX, 0.5), det(3, FAR, 0.5)]]  # (0, 1) then (0.1, 1): 1.0
    assert both(fp_first, g, 10) == pytest.approx((0.9, 0.9))
    assert both(tp_first, g, 10) == (1.0, 1.0)
    # Across videos: video order (list position, dict order) comes first.
    g2 = [[], [gt(0, 0, BOX)]]
    assert both([[det(3, FAR, 0.5)], [det(0, BOX, 0.5)]], g2, 10) == pytest.approx((0.9, 0.9))
    d = {"b": [det(0, BOX, 0.5)], "a": [det(3, FAR, 0.5)]}
    assert both(d, {"a": [], "b": [gt(0, 0, BOX)]}, 10) == (1.0, 1.0)


def test_many_ties_keep_input_order():
    # 20 FPs then 20 TPs (20 one-frame tracks), all score 0.5, 20 frames: the FPs reach
    # FPR 1 before any TP -> 0; in the reverse input order every TP comes first -> 1.
    # Lower-scored FPs are interleaved so that an unstable sort would reorder the ties.
    g = [[gt(t, t, BOX) for t in range(20)]]
    fps = [det(t, FAR, 0.5) for t in range(20)]
    tps = [det(t, BOX, 0.5) for t in range(20)]
    low = [det(t % 20, FAR, 0.1) for t in range(40)]
    interleave = lambda a: [row for pair in zip(a, low) for row in pair]  # noqa: E731
    assert both([interleave(fps + tps)], g, 20) == (0.0, 0.0)
    assert both([interleave(tps + fps)], g, 20) == (1.0, 1.0)


def test_curve_cut_at_max_fpr_and_extended_flat():
    # 2 frames in all: FP, TP, FP, FP give points (0, 0), (.5, 0), (.5, 1), (1, 1), (1.5, 1).
    g = [[gt(0, 0, BOX)]]
    d = [[det(1, FAR, 0.9), det(0, BOX, 0.8), det(1, FAR, 0.7), det(1, FAR, 0.6)]]
    assert both(d, g, 2) == (0.5, 0.5)  # cut at FPR 1
    assert both(d, g, 2, max_fpr=0.8) == pytest.approx((0.3, 0.3))  # (.5, 1) extended to .8
    assert both(d, g, 2, max_fpr=3.0) == (2.5, 2.5)  # extended from (1.5, 1) to 3
    # The curve never reaching FPR 1: one FP in 4 frames, then flat from (0.25, 1).
    assert both([[det(1, FAR, 0.9), det(0, BOX, 0.8)]], g, 4) == (0.75, 0.75)


@pytest.mark.parametrize("hits, detected", [(2, False), (3, True), (4, True)])
def test_track_hit_in_some_frames(hits, detected):
    # A 10-frame track, `hits` of its frames detected at FPR 0, then one FP: the track counts
    # iff hits / 10 >= hit_ratio = 0.3.
    g = [[gt(7, f, BOX) for f in range(10)]]
    d = [[det(f, BOX, 0.9) for f in range(hits)] + [det(0, FAR, 0.1)]]
    rbdc, tbdc = both(d, g, 10, hit_ratio=0.3)
    assert rbdc == pytest.approx(hits / 10)
    assert tbdc == (1.0 if detected else 0.0)


def test_track_detected_at_the_hit_reaching_the_ratio():
    # Hits at ranks 0, 2, 3 with an FP at rank 1: the track (ratio 0.3) is detected only at
    # FPR 0.1. TBDC: (0.1, 1) to (1, 1) = 0.9. RBDC: 0.1 * 0.1 + 0.9 * 0.3 = 0.28.
    g = [[gt(0, f, BOX) for f in range(10)]]
    d = [[det(0, BOX, 0.9), det(5, FAR, 0.5), det(1, BOX, 0.4), det(2, BOX, 0.3)]]
    assert both(d, g, 10, hit_ratio=0.3) == pytest.approx((0.28, 0.9))
    # A track's length is its number of distinct frames: two regions in frame 0 and one in
    # frame 1 make 2 frames, so at ratio 1 the two frame-0 hits detect it.
    g = [[gt(0, 0, BOX), gt(0, 0, [20, 20, 29, 29]), gt(0, 1, BOX)]]
    d = [[det(0, BOX, 0.9), det(0, [20, 20, 29, 29], 0.8)]]
    assert operating_point(d, g, 10, hit_ratio=1.0)["tbdr"] == 1.0


def test_videos_without_anomalies():
    # The FP in the normal video counts, and so do its frames: 20 frames in all.
    g = [[gt(0, 0, BOX)], []]
    d = [[det(0, BOX, 0.5)], [det(2, BOX, 0.9)]]
    assert both(d, g, 20) == pytest.approx((0.95, 0.95))
    assert both(d, g, [10, 10]) == both(d, g, 20)
    # A normal video without detections changes only the frame count.
    assert both([[det(1, FAR, 0.9), det(0, BOX, 0.5)], []], g, [2, 2]) == (0.75, 0.75)
    assert both([[det(1, FAR, 0.9), det(0, BOX, 0.5)], np.zeros((0, 6))], g, 4) == (0.75, 0.75)


def test_no_detections_at_all():
    g = [[gt(0, 0, BOX)]]
    assert both([[]], g, 10) == (0.0, 0.0)
    assert operating_point([np.zeros((0, 6))], g, 10) == {"rbdr": 0.0, "tbdr": 0.0, "fpr": 0.0}


def test_rank_order_is_a_stable_descending_sort():
    rng = np.random.default_rng(0)
    for x in [rng.integers(0, 4, 300) / 3, rng.random(300), np.tile([0.0, -0.0, np.inf, -np.inf], 50)]:
        np.testing.assert_array_equal(_descending_stable(x), np.argsort(-x, kind="stable"))


def test_iou_threshold_uses_inclusive_areas():
    # (0..9) vs (5..14) in x, same rows: inclusive overlap 5 x 10 = 50, union 150 -> 1/3
    # (with exclusive areas it would be 45 / 155 < 1/3).
    g = [[gt(0, 0, BOX)]]
    d = [[det(0, [5, 0, 14, 9], 0.5)]]
    assert both(d, g, 1, iou=1 / 3) == (1.0, 1.0)
    assert both(d, g, 1, iou=0.34) == (0.0, 0.0)


# ----------------------------------------------------------------------- loop == vectorised
def test_hits_needed_matches_the_loop_predicate():
    # Least k >= 1 with k / n >= ratio in floating point, for ratios k / n and one ulp off
    # (where ceil(ratio * n) alone is off by one either way, e.g. 7 / 25 * 25 > 7).
    for n in range(1, 60):
        ratios = {0.1, 0.3, 0.7} | {f(k / n) for k in range(1, n + 1) for f in (
            float, lambda r: np.nextafter(r, 0), lambda r: np.nextafter(r, 2))}
        for r in sorted(x for x in ratios if 0 < x <= 1):
            want = next(k for k in range(1, n + 1) if k / n >= r)
            assert _hits_needed(np.array([n]), r)[0] == want, (n, r)



def random_case(seed, n_videos=5, n_frames=12):
    rng = np.random.default_rng(seed)
    dets, gts, lengths = [], [], []
    for _ in range(n_videos):
        rows = []
        for track in range(rng.integers(0, 4)):
            s = int(rng.integers(0, n_frames - 1))
            e = int(rng.integers(s + 1, n_frames + 1))
            x, y = rng.integers(0, 40, 2)
            for f in range(s, e):
                for _ in range(1 + (rng.random() < 0.2)):  # sometimes 2 regions in a frame
                    w, h = rng.integers(3, 15, 2)
                    rows.append(gt(track, f, [x, y, x + w, y + h]))
        gts.append(np.array(rows).reshape(-1, 6))
        n = int(rng.integers(0, 80))
        x1, y1 = rng.integers(0, 50, (2, n))
        big = rng.random(n) < 0.2  # large boxes matching several regions
        w, h = rng.integers(1, 12, (2, n)) + big * 30
        score = rng.integers(0, 6, n) / 5  # many ties
        dets.append(np.column_stack([rng.integers(0, n_frames, n), x1, y1, x1 + w, y1 + h, score]))
        lengths.append(n_frames)
    return dets, gts, lengths


@pytest.mark.parametrize("seed", range(8))
def test_vectorized_equals_loop(seed):
    dets, gts, lengths = random_case(seed)
    if sum(len(g) for g in gts) == 0:
        gts[0] = np.array([gt(0, 0, BOX)])
    p = _pool(dets, gts, lengths)
    assert len(p.det) > 0
    for iou, hit_ratio in [(0.1, 0.1), (0.3, 0.3), (0.05, 1.0), (0.2, np.nextafter(0.2, 1))]:
        loop = _counts(p, iou, hit_ratio, "loop")
        vec = _counts(p, iou, hit_ratio, "vectorized")
        for a, b in zip(loop, vec):
            np.testing.assert_array_equal(a, b)
        for max_fpr in (1.0, 0.3):
            both(dets, gts, lengths, iou=iou, hit_ratio=hit_ratio, max_fpr=max_fpr)


def test_random_cases_are_not_trivial():
    # The equivalence test above must exercise partial detection, FPs and multi-matches.
    cases = [random_case(seed) for seed in range(8)]
    values = [both(*case)[0] for case in cases if sum(len(g) for g in case[1])]
    assert any(0 < v < 1 for v in values)


# ----------------------------------------------------------------------- bad input
GOOD_G = [[gt(0, 0, BOX)]]
GOOD_D = [[det(0, BOX, 0.5)]]


@pytest.mark.parametrize(
    "d, g, n, match",
    [
        (GOOD_D + GOOD_D, GOOD_G, 10, "mismatched video counts"),
        ({"a": GOOD_D[0]}, {"b": GOOD_G[0]}, 10, "keys"),
        ([[det(-1, BOX, 0.5)]], GOOD_G, 10, r"detections\[0\] row 0: frame index is negative"),
        ([[det(0, BOX, 0.5), det(1.5, BOX, 0.5)]], GOOD_G, 10, r"detections\[0\] row 1: .*not an integer"),
        ([[det(0, BOX, 0.5), det(4, BOX, 0.5)]], GOOD_G, [4], r"detections\[0\] row 1: frame index out of range \(the video.s num_frames is 4\)"),
        ([[det(10, BOX, 0.5)]], GOOD_G, 10, r"detections\[0\] row 0: frame index out of range \(num_frames of all videos is 10\)"),
        (GOOD_D, [[gt(0, 0, BOX), gt(0, 5, BOX)]], [5], r"gt_tracks\[0\] row 1: frame index out of range"),
        ({"v": [det(0, BOX, 0.5), det(0, [5, 0, 4, 9], 0.5)]}, {"v": GOOD_G[0]}, 10, r"detections\['v'\] row 1: x2 < x1"),
        (GOOD_D, [[gt(0, 0, [0, 5, 9, 4])]], 10, r"gt_tracks\[0\] row 0: y2 < y1"),
        ([[det(0, BOX, float("nan"))]], GOOD_G, 10, r"detections\[0\] row 0: score is NaN"),
        ([[det(0, [0, 0, float("inf"), 9], 0.5)]], GOOD_G, 10, "not finite"),
        ([[[0, 0, 9, 9, 0.5]]], GOOD_G, 10, r"detections\[0\]: expected shape \(n, 6\)"),
        ([], [], 10, "no videos"),
        (GOOD_D, [[]], 10, "no ground-truth regions"),
        (GOOD_D, GOOD_G, 0, "num_frames must be a positive integer"),
        (GOOD_D, GOOD_G, [0], r"num_frames\[0\] must be a positive integer"),
    ],
)
def test_bad_input(d, g, n, match):
    with pytest.raises(ValueError, match=match):
        rbdc_tbdc(d, g, n)


def test_bad_options():
    for kw, match in [({"iou": 0}, "iou"), ({"hit_ratio": 1.5}, "hit_ratio"),
                      ({"max_fpr": 0}, "max_fpr"), ({"method": "fast"}, "method")]:
        with pytest.raises(ValueError, match=match):
            rbdc_tbdc(GOOD_D, GOOD_G, 10, **kw)


# ----------------------------------------------------------------------- heatmaps, masks
def test_regions_from_heatmaps_drawn():
    h = np.zeros((3, 8, 8))
    h[0, 1:4, 2:5] = 0.6  # a 3 x 3 block, peak 0.9 -> box x 2..4, y 1..3
    h[0, 2, 3] = 0.9
    h[0, 5, 5], h[0, 6, 6] = 0.7, 0.5  # diagonal neighbours: one 8-connected region
    h[0, 7, 0] = 0.49  # below the threshold
    h[1, 1:4, 2:5] = 0.2
    h[2, 0, 0] = 1.0
    h[2, 1, 1] = 0.8  # joins (0, 0) diagonally, but frames never join each other
    expected = [[0, 2, 1, 4, 3, 0.9], [0, 5, 5, 6, 6, 0.7], [2, 0, 0, 1, 1, 1.0]]
    np.testing.assert_array_equal(regions_from_heatmaps(h), expected)
    np.testing.assert_array_equal(regions_from_heatmaps(h.astype(np.float32), 0.85)[:, :5],
                                  [[0, 3, 2, 3, 2], [2, 0, 0, 0, 0]])
    assert regions_from_heatmaps(np.zeros((2, 4, 4))).shape == (0, 6)
    with pytest.raises(ValueError, match=r"\(T, H, W\)"):
        regions_from_heatmaps(np.zeros((4, 4)))
    h[1, 0, 0] = np.nan
    with pytest.raises(ValueError, match="frame 1"):
        regions_from_heatmaps(h)


def test_tracks_from_masks_drawn():
    m = np.zeros((3, 9, 9), dtype=np.uint8)
    m[0, 0:2, 0:2] = 1  # object 1, frame 0: a 4-pixel blob ...
    m[0, 5:8, 4:6] = 1  # ... and a 6-pixel blob, the one kept
    m[1, 3, 3] = 2  # object 2, frame 1: one pixel
    m[2, 0, 0] = m[2, 1, 1] = 1  # object 1, frame 2: 8-connected diagonal pair
    expected = [
        [1, 0, 4, 5, 6, 8],  # right/bottom edges exclusive (last + 1)
        [1, 2, 0, 0, 2, 2],
        [2, 1, 3, 3, 4, 4],
    ]
    np.testing.assert_array_equal(tracks_from_masks(m), expected)
    assert tracks_from_masks(np.zeros((2, 3, 3), dtype=int)).shape == (0, 6)
    with pytest.raises(ValueError, match="integer"):
        tracks_from_masks(np.zeros((2, 3, 3)))


def test_link_regions_drawn():
    m = np.zeros((5, 6, 20), dtype=bool)
    m[0, 0:4, 0:4] = m[0, 0:4, 10:14] = True  # two squares
    m[1, 0:4, 1:5] = m[1, 0:4, 11:15] = True  # both move right by one
    m[2, 0:4, 12:16] = True  # only the right one goes on
    m[4, 0:4, 0:4] = True  # after an empty frame: a new track
    expected = [
        [0, 0, 0, 0, 4, 4],
        [0, 1, 1, 0, 5, 4],
        [1, 0, 10, 0, 14, 4],
        [1, 1, 11, 0, 15, 4],
        [1, 2, 12, 0, 16, 4],
        [2, 4, 0, 0, 4, 4],
    ]
    np.testing.assert_array_equal(link_regions(m), expected)
    # A jump with IoU below link_iou starts a new track.
    m2 = np.zeros((2, 4, 20), dtype=np.uint8)
    m2[0, 0:4, 0:4] = 1
    m2[1, 0:4, 3:7] = 1  # boxes (0, 0, 4, 4), (3, 0, 7, 4): IoU 2*5 / (25 + 25 - 10) = 0.25
    assert link_regions(m2, link_iou=0.2)[:, 0].tolist() == [0, 0]
    assert link_regions(m2, link_iou=0.3)[:, 0].tolist() == [0, 1]
    with pytest.raises(ValueError, match="0/1"):
        link_regions(m2 * 2)


def test_masks_feed_the_evaluation():
    # GT from masks and detections from heatmaps of the same drawing score perfectly.
    m = np.zeros((4, 10, 10), dtype=np.int32)
    for t in range(4):
        m[t, 2:5, t : t + 3] = 1
    dets = regions_from_heatmaps(m.astype(float))
    assert both([dets], [tracks_from_masks(m)], 4) == (1.0, 1.0)
    assert both([dets], [link_regions(m > 0)], 4) == (1.0, 1.0)
