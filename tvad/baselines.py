"""A frame-difference (background-subtraction) heatmap baseline, scored by the same metrics.

    heat = framediff_heatmaps(frames)        # uint8 (T, H, W, 3) -> float32 (T, H, W) in [0, 1]

Per pixel: the colour distance to the video's temporal median (the background) — mode
"background" — or to the previous frame — mode "consecutive" — averaged over channels, blurred
with a Gaussian (sigma pixels) and mapped to [0, 1] by a fixed scale (heat = min(1, d / scale)),
not per video, so that still, normal videos stay cold. Frame score: the max over the frame.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage


def framediff_heatmaps(frames: np.ndarray, mode: str = "background", sigma: float = 2.0,
                       scale: float = 0.25) -> np.ndarray:
    """uint8 (T, H, W, 3) -> float32 (T, H, W) heat in [0, 1]."""
    x = np.asarray(frames)
    if x.ndim != 4 or x.shape[-1] != 3:
        raise ValueError(f"frames must be (T, H, W, 3), got {x.shape}")
    if x.shape[0] < 2:
        raise ValueError("frame differencing needs at least 2 frames")
    x = x.astype(np.float32) / 255.0
    if not np.isfinite(x).all():
        raise ValueError("frames contain NaN or infinite values")
    if mode == "background":
        d = np.abs(x - np.median(x, axis=0, keepdims=True)).mean(-1)
    elif mode == "consecutive":
        d = np.abs(np.diff(x, axis=0, prepend=x[:1])).mean(-1)
        d[0] = d[1]
    else:
        raise ValueError(f"unknown mode {mode!r}; use 'background' or 'consecutive'")
    if sigma > 0:
        d = ndimage.gaussian_filter(d, sigma=(0, sigma, sigma))
    return np.clip(d / scale, 0.0, 1.0).astype(np.float32)


def framediff_scores(heat: np.ndarray) -> np.ndarray:
    """(T, H, W) -> (T,) the max over each frame."""
    return np.asarray(heat).reshape(len(heat), -1).max(1).astype(np.float32)
