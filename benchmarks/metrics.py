"""Benchmark of tvad.metrics: RBDC/TBDC (vectorised vs. the one-by-one loop) and
regions_from_heatmaps throughput. Prints one JSON record.

    .venv/bin/python benchmarks/metrics.py            # UBnormal-test-sized input
    .venv/bin/python benchmarks/metrics.py --small    # a tenth of it, for a quick run

Synthetic input (full size): 211 videos, 89,908 frames, 60 % of the videos abnormal with 1-3
GT tracks over an abnormal segment (1-3 GT regions per abnormal frame), 2,000,000 scored
boxes: a quarter jittered around GT regions (scores skewed high), the rest anywhere in the
frame, some large enough to cover several regions; scores rounded to 1e-3 so ties abound.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import scipy

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import common  # noqa: E402  (benchmarks/common.py: machine record shared by all benchmarks)
from tvad.metrics import rbdc_tbdc, regions_from_heatmaps  # noqa: E402

W, H = 1280, 720  # UBnormal frame size


def synthetic_rbdc_input(n_videos: int, n_frames: int, n_boxes: int, seed: int = 0):
    """-> (detections, gt_tracks, num_frames) for rbdc_tbdc, per video lists."""
    rng = np.random.default_rng(seed)
    lengths = 50 + rng.multinomial(n_frames - 50 * n_videos, np.full(n_videos, 1 / n_videos))
    gts = []
    for length in lengths:
        rows = []
        if rng.random() < 0.6:
            start = int(rng.integers(0, length // 2))
            stop = int(rng.integers(start + length // 4, length + 1))
            f = np.arange(start, stop)
            for track in range(rng.integers(1, 4)):
                size = rng.uniform(30, 150, 2)
                p0, p1 = rng.uniform(0, 1, (2, 2)) * ([W, H] - size)
                s = (f - start) / max(stop - start - 1, 1)
                xy = p0 + np.outer(s, p1 - p0)
                rows.append(np.column_stack([np.full(len(f), track), f, xy, xy + size]))
        gts.append(np.concatenate(rows).round() if rows else np.zeros((0, 6)))

    # A quarter of the boxes near GT regions, the rest uniform over all frames.
    gt_all = np.concatenate([np.column_stack([np.full(len(g), v), g]) for v, g in enumerate(gts)])
    n_near = n_boxes // 4
    near = gt_all[rng.integers(0, len(gt_all), n_near)]
    near_box = near[:, 3:7] + rng.normal(0, 15, (n_near, 4))
    near_score = rng.beta(4, 2, n_near)
    n_far = n_boxes - n_near
    frame_global = rng.integers(0, n_frames, n_far)
    starts = np.cumsum(lengths) - lengths
    far_video = np.searchsorted(starts, frame_global, "right") - 1
    far_frame = frame_global - starts[far_video]
    wh = rng.uniform(20, 120, (n_far, 2)) * np.where(rng.random((n_far, 1)) < 0.05, 4, 1)
    xy = rng.uniform(0, 1, (n_far, 2)) * ([W, H] - wh)
    far_box = np.column_stack([xy, xy + wh])
    far_score = rng.beta(2, 4, n_far)

    video = np.concatenate([near[:, 0], far_video]).astype(int)
    rows = np.column_stack([
        np.concatenate([near[:, 2], far_frame]),
        np.concatenate([near_box, far_box]).round(),
        np.concatenate([near_score, far_score]).round(3),
    ])
    rows[:, 3] = np.maximum(rows[:, 3], rows[:, 1])  # keep x2 >= x1, y2 >= y1
    rows[:, 4] = np.maximum(rows[:, 4], rows[:, 2])
    order = rng.permutation(len(rows))
    video, rows = video[order], rows[order]
    by_video = np.argsort(video, kind="stable")
    dets = np.split(rows[by_video], np.cumsum(np.bincount(video, minlength=n_videos))[:-1])
    return dets, gts, int(lengths.sum())


def synthetic_heatmaps(t: int, h: int, w: int, seed: int = 0) -> np.ndarray:
    """(t, h, w) float32 heat in [0, 1]: 1-4 Gaussian bumps per frame plus faint noise."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    heat = rng.uniform(0, 0.1, (t, h, w)).astype(np.float32)
    for i in range(t):
        for _ in range(rng.integers(1, 5)):
            cy, cx = rng.uniform(0, h), rng.uniform(0, w)
            s = rng.uniform(5, 40)
            heat[i] = np.maximum(heat[i], rng.uniform(0.4, 1) * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * s * s)))
    return np.clip(heat, 0, 1)


def timed(fn, repeats: int):
    times, out = [], None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), out


def machine() -> dict:
    """The shared machine record (benchmarks/common.py) plus the versions this benchmark depends on."""
    return {**common.machine(), "python": platform.python_version(), "numpy": np.__version__,
            "scipy": scipy.__version__}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--small", action="store_true", help="a tenth of the input, for a quick run")
    ap.add_argument("--repeats", type=int, default=5, help="repeats of the vectorised method")
    ap.add_argument("--loop-repeats", type=int, default=1, help="repeats of the loop")
    args = ap.parse_args()

    scale = 10 if args.small else 1
    n_videos, n_frames, n_boxes = (22 if args.small else 211), 89_908 // scale, 2_000_000 // scale
    dets, gts, num_frames = synthetic_rbdc_input(n_videos, n_frames, n_boxes)
    t_vec, res_vec = timed(lambda: rbdc_tbdc(dets, gts, num_frames), args.repeats)
    t_loop, res_loop = timed(lambda: rbdc_tbdc(dets, gts, num_frames, method="loop"), args.loop_repeats)

    t, h, w = (16 if args.small else 64), 360, 640
    heat = synthetic_heatmaps(t, h, w)
    t_heat, regions = timed(lambda: regions_from_heatmaps(heat, 0.5), args.repeats)

    record = {
        "benchmark": "tvad.metrics",
        "small": args.small,
        "machine": machine(),
        "rbdc_tbdc": {
            "videos": len(dets),
            "frames": num_frames,
            "gt_regions": int(sum(len(g) for g in gts)),
            "gt_tracks": int(sum(len(np.unique(g[:, 0])) for g in gts)),
            "boxes": int(sum(len(d) for d in dets)),
            "vectorized_s": round(t_vec, 4),
            "loop_s": round(t_loop, 4),
            "repeats": {"vectorized": args.repeats, "loop": args.loop_repeats},
            "ratio": round(t_loop / t_vec, 2),
            "identical": res_vec == res_loop,
            "rbdc_tbdc": list(res_vec),
        },
        "regions_from_heatmaps": {
            "shape": [t, h, w],
            "dtype": str(heat.dtype),
            "regions": len(regions),
            "seconds": round(t_heat, 4),
            "megapixels_per_s": round(t * h * w / 1e6 / t_heat, 1),
        },
    }
    print(json.dumps(record, indent=2))


if __name__ == "__main__":
    main()
