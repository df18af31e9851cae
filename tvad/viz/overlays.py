"""Overlays on uint8 (H, W, 3) frames: masks, heatmaps, boxes, tracks, and frame strips."""

from __future__ import annotations

from typing import Iterable, Sequence

import numpy as np

GT_COLOR = (40, 200, 60)  # ground truth: green (as the paper's trajectory figure)
PRED_COLOR = (230, 40, 40)  # prediction: red


def overlay_mask(frame: np.ndarray, mask: np.ndarray, color=GT_COLOR, alpha: float = 0.45) -> np.ndarray:
    """Tint the pixels where `mask` (H, W) is non-zero. Returns a new uint8 (H, W, 3) frame."""
    out = frame.astype(np.float32).copy()
    m = np.asarray(mask) != 0
    out[m] = (1 - alpha) * out[m] + alpha * np.asarray(color, np.float32)
    return out.round().astype(np.uint8)


def overlay_heatmap(frame: np.ndarray, heat: np.ndarray, alpha: float = 0.5, cmap: str = "jet") -> np.ndarray:
    """Blend a heatmap in [0, 1] of shape (H, W) over a frame with a matplotlib colormap."""
    import matplotlib

    h = np.clip(np.asarray(heat, np.float32), 0, 1)
    if h.shape != frame.shape[:2]:
        raise ValueError(f"heatmap shape {h.shape} does not match frame {frame.shape[:2]}")
    rgb = matplotlib.colormaps[cmap](h)[..., :3] * 255
    return ((1 - alpha) * frame + alpha * rgb).round().clip(0, 255).astype(np.uint8)


def draw_boxes(frame: np.ndarray, boxes: Iterable[Sequence[float]], color=PRED_COLOR, width: int = 2) -> np.ndarray:
    """Draw inclusive pixel boxes [x1, y1, x2, y2] (clipped to the frame)."""
    out = frame.copy()
    H, W = out.shape[:2]
    for b in boxes:
        x1, y1, x2, y2 = (int(round(v)) for v in b[:4])
        x1, x2 = max(0, min(x1, W - 1)), max(0, min(x2, W - 1))
        y1, y2 = max(0, min(y1, H - 1)), max(0, min(y2, H - 1))
        out[y1:y1 + width, x1:x2 + 1] = color
        out[max(y2 - width + 1, 0):y2 + 1, x1:x2 + 1] = color
        out[y1:y2 + 1, x1:x1 + width] = color
        out[y1:y2 + 1, max(x2 - width + 1, 0):x2 + 1] = color
    return out


def draw_track(frame: np.ndarray, points: Sequence[Sequence[float] | None], color=PRED_COLOR,
               radius: int = 3) -> np.ndarray:
    """Draw a polyline through per-frame (x, y) points (None where the target is not visible)."""
    out = frame.copy()
    H, W = out.shape[:2]
    pts = [p for p in points if p is not None]
    for (xa, ya), (xb, yb) in zip(pts, pts[1:]):
        n = int(max(abs(xb - xa), abs(yb - ya))) + 1
        xs = np.linspace(xa, xb, n).round().astype(int).clip(0, W - 1)
        ys = np.linspace(ya, yb, n).round().astype(int).clip(0, H - 1)
        out[ys, xs] = color
    for x, y in pts:
        x, y = int(round(x)), int(round(y))
        out[max(y - radius, 0):y + radius + 1, max(x - radius, 0):x + radius + 1] = color
    return out


def frame_strip(frames: np.ndarray, num: int = 6) -> tuple[np.ndarray, np.ndarray]:
    """`num` evenly spaced frames of (T, H, W, 3) and their indices."""
    idx = np.linspace(0, len(frames) - 1, min(num, len(frames))).round().astype(int)
    return frames[idx], idx


def draw_timelines(frames: np.ndarray, targets: Sequence[dict]) -> np.ndarray:
    """Draw corpus timelines over a clip: each target's box per frame and its centroid trail so far.

    frames (T, H, W, 3); `targets` as `tvad.corpus.load_timelines` gives them (dicts with per-frame
    `boxes` [x1, y1, x2, y2] or None, `centroids` (x, y) or None, and `anomalous`). Anomalous targets
    are red, the others green. Returns new uint8 (T, H, W, 3) frames.
    """
    out = np.array(frames, copy=True)
    for tgt in targets:
        color = PRED_COLOR if tgt.get("anomalous") else GT_COLOR
        boxes, cents = tgt.get("boxes") or [], tgt.get("centroids") or []
        for t in range(len(out)):
            if t < len(boxes) and boxes[t] is not None:
                out[t] = draw_boxes(out[t], [boxes[t]], color=color, width=1)
            trail = [tuple(c) if c is not None else None for c in cents[: t + 1]]
            if any(c is not None for c in trail):
                out[t] = draw_track(out[t], trail, color=color, radius=1)
    return out
