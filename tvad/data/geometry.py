"""Pixel geometry of objects: blob boxes and centroids from id maps, box IoU, blob linking, and
the 3x3 grid's region words.

Boxes are ``[x1, y1, x2, y2]`` in pixels with the right/bottom edge exclusive (see `tvad.data.record`).
A frame size is ``(H, W)``.

    region_word(236, 198, (476, 868))   # -> "left"
    box_iou((0, 0, 10, 10), (5, 0, 15, 10))   # -> 0.333...
"""

from __future__ import annotations

from typing import Iterable, Sequence

import numpy as np
from scipy import ndimage

_EIGHT = np.ones((3, 3), dtype=bool)  # 8-connectivity, as OpenCV's findContours traces blobs

# The 3x3 grid's words, row-major: what `region_word` returns. The centre cell is "middle" and the
# edge-centre cells are bare ("left", "top", ...), as in the ShanghaiTech reference annotations
# and the synthetic generator's captions.
REGION_WORDS: tuple[str, ...] = (
    "top-left", "top", "top-right",
    "left", "middle", "right",
    "bottom-left", "bottom", "bottom-right",
)


def region_word(x: float, y: float, frame_size: Sequence[int], grid: int = 3) -> str:
    """The 3x3 grid cell word of point (x, y) in a frame of size (H, W).

    A point left of W/3 is in the left column, one at or right of 2W/3 in the right column (rows
    alike with H); points outside the frame count as the nearest edge cell.
    """
    if grid != 3:
        raise ValueError("region words exist for a 3x3 grid only")
    h, w = frame_size[0], frame_size[1]
    col = 0 if x < w / 3 else (2 if x >= 2 * w / 3 else 1)
    row = 0 if y < h / 3 else (2 if y >= 2 * h / 3 else 1)
    return REGION_WORDS[row * 3 + col]


def region_cell(word: str) -> tuple[int, int]:
    """(row, col) of a region word on the 3x3 grid."""
    try:
        i = REGION_WORDS.index(word)
    except ValueError:
        raise ValueError(f"unknown region word {word!r}; known: {', '.join(REGION_WORDS)}") from None
    return divmod(i, 3)


def largest_blob_box(mask: np.ndarray) -> tuple[int, int, int, int] | None:
    """Box ``(x1, y1, x2, y2)`` (x2/y2 exclusive) of the largest 8-connected blob of a 2-D mask.

    Largest = largest bounding-box area (UBnormal's rule); ties: more pixels, then raster order.
    None for an empty mask.
    """
    m = np.asarray(mask, dtype=bool)
    if not m.any():
        return None
    lab, n = ndimage.label(m, structure=_EIGHT)
    if n == 1:
        ys, xs = ndimage.find_objects(lab)[0]
        return int(xs.start), int(ys.start), int(xs.stop), int(ys.stop)
    sl = ndimage.find_objects(lab)
    sizes = np.bincount(lab.ravel(), minlength=n + 1)[1:]
    best, key = 0, None
    for i, (ys, xs) in enumerate(sl):
        k = ((ys.stop - ys.start) * (xs.stop - xs.start), int(sizes[i]))
        if key is None or k > key:
            best, key = i, k
    ys, xs = sl[best]
    return int(xs.start), int(ys.start), int(xs.stop), int(ys.stop)


def id_map_geometry(id_map: np.ndarray, ids: Iterable[int] | None = None
                    ) -> dict[int, tuple[tuple[int, int, int, int], tuple[float, float]]]:
    """Per object id present in a 2-D id map: (largest-blob box, centroid (x, y) of all its pixels)."""
    m = np.asarray(id_map)
    out: dict[int, tuple[tuple[int, int, int, int], tuple[float, float]]] = {}
    if not m.any():
        return out
    present = np.unique(m[m > 0]) if ids is None else [i for i in ids if i > 0]
    if m.max() <= 4096:
        slices = ndimage.find_objects(m.astype(np.int32))
    else:
        slices = None
    for oid in present:
        oid = int(oid)
        if slices is not None:
            if oid > len(slices) or slices[oid - 1] is None:
                continue
            ys, xs = slices[oid - 1]
        else:
            yy, xx = np.nonzero(m == oid)
            if not len(yy):
                continue
            ys, xs = slice(yy.min(), yy.max() + 1), slice(xx.min(), xx.max() + 1)
        sub = m[ys, xs] == oid
        box = largest_blob_box(sub)
        if box is None:
            continue
        yy, xx = np.nonzero(sub)
        out[oid] = ((box[0] + xs.start, box[1] + ys.start, box[2] + xs.start, box[3] + ys.start),
                    (float(xx.mean() + xs.start), float(yy.mean() + ys.start)))
    return out


def box_iou(a: Sequence[float], b: Sequence[float]) -> float:
    """IoU of two boxes ``[x1, y1, x2, y2]`` (0.0 when they do not overlap)."""
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return float(inter / union) if union > 0 else 0.0


def link_blobs(frames: Iterable[tuple[int, np.ndarray]], link_iou: float = 0.1
               ) -> tuple[list[tuple[int, int, np.ndarray, tuple[int, int, int, int]]], int]:
    """Binary masks without ids -> tracks, linking each frame's blobs to the previous frame's.

    `frames` yields (frame index, 2-D bool mask). Every 8-connected blob is a region; regions
    are matched to the previous frame's regions greedily by descending box IoU >= `link_iou`;
    unmatched regions start new tracks (ids 1, 2, ...). Returns ([(frame, track_id, blob pixel
    mask, box)], number of tracks).
    """
    out = []
    prev: list[tuple[int, tuple[int, int, int, int]]] = []
    prev_t = None
    n_tracks = 0
    for t, mask in frames:
        lab, n = ndimage.label(np.asarray(mask, dtype=bool), structure=_EIGHT)
        cur = []
        for i, (ys, xs) in enumerate(ndimage.find_objects(lab)):
            cur.append((lab == i + 1, (int(xs.start), int(ys.start), int(xs.stop), int(ys.stop))))
        assign = [-1] * len(cur)
        if prev and cur and prev_t == t - 1:
            pairs = sorted(((box_iou(pb, cb), pi, ci) for pi, (_, pb) in enumerate(prev)
                            for ci, (_, cb) in enumerate(cur)), key=lambda p: (-p[0], p[1], p[2]))
            used = set()
            for iou, pi, ci in pairs:
                if iou < link_iou:
                    break
                if assign[ci] < 0 and pi not in used:
                    assign[ci] = prev[pi][0]
                    used.add(pi)
        nxt = []
        for ci, (pix, box) in enumerate(cur):
            if assign[ci] < 0:
                n_tracks += 1
                assign[ci] = n_tracks
            out.append((t, assign[ci], pix, box))
            nxt.append((assign[ci], box))
        prev, prev_t = nxt, t
    return out, n_tracks


def objects_from_id_maps(maps: Iterable[tuple[int, np.ndarray]], num_frames: int
                         ) -> dict[int, tuple[np.ndarray, np.ndarray]]:
    """Stream (frame, id map) pairs -> {id: (boxes (T,4) int64, centroids (T,2) float64)}."""
    acc: dict[int, tuple[np.ndarray, np.ndarray]] = {}
    for t, m in maps:
        for oid, (box, cen) in id_map_geometry(m).items():
            if oid not in acc:
                acc[oid] = (np.full((num_frames, 4), -1, np.int64), np.full((num_frames, 2), np.nan))
            acc[oid][0][t] = box
            acc[oid][1][t] = cen
    return dict(sorted(acc.items()))
