"""The detection API (a contract): heatmaps, frame scores and regions for any video.

    model = tvad.load("runs/cpu")                # a run directory (its best AHD) or a checkpoint dir
    det = model.detect("clip.mp4")               # or a uint8 (T, H, W, 3) array; fps optional
    detector = load_detector("runs/cpu")         # the backbone and the stage-1 AHD alone (no decoder)
    det.heatmaps       # float32 (T, H, W) in [0, 1] at input resolution
    det.frame_scores   # float32 (T,): max of the heatmap over the frame (top-k mean as an option)
    det.regions        # (N, 6) [frame, x1, y1, x2, y2, score] via tvad.metrics.regions_from_heatmaps
    det.patch_heat     # float32 (T', h, w) the same heatmap on the ViT patch grid (pairs of frames): what the RAE reads

One function makes a clip's heatmap for every consumer: `clip_heatmap(backbone, ahd, frames, fps,
window)` -> (T', h, w) on the ViT patch grid of the frames at the backbone's `max_pixels` (the grid
stage 1 trained and evaluated the AHD on: `Backbone.visual_features`, no video token budget).
`TVADDetector.heatmaps` / `detect` upsample it per frame (`heat_to_frames`), and `TVAD.encode_clip`
hands it to the RAE (chat, stage-2 training through `ClipStore`, evaluation), which reads it
resampled to the video token grid (`tvad.model.rae.heatmap_on_token_grid`).

Long videos go through a sliding window of `window` frames. Qwen2.5-VL's ViT attends within each
2-frame group only, so non-overlapping even-length windows give exactly the features of the whole
video: the window bounds memory, not accuracy. An odd frame count repeats the last frame for the
last pair (as Qwen's processor does) and drops the padded frame from the output.

A video too long to hold in memory goes through `TVADDetector.windows(read, num_frames)`: frames
read window by window (a lone last frame joins the previous window), one `Detection` per window
(the `tvad detect` command writes its outputs from them).
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import torch
from tqdm.auto import tqdm

from tvad.data.video import probe, read_frames
from tvad.metrics import regions_from_heatmaps
from tvad.model.ahd import AHD, frame_scores, heat_to_frames, load_ahd
from tvad.model.backbone import VisualFeatures, check_frames, frame_windows, from_pretrained


@dataclass
class Detection:
    heatmaps: np.ndarray  # float32 (T, H, W) in [0, 1]
    frame_scores: np.ndarray  # float32 (T,)
    regions: np.ndarray  # (N, 6) [frame, x1, y1, x2, y2, score]
    fps: float | None = None  # frame rate of the input, when known
    patch_heat: np.ndarray | None = None  # float32 (T', h, w): `clip_heatmap`, the AHD heatmap on the patch grid


def find_checkpoint(path: str | os.PathLike) -> Path:
    """A checkpoint directory (has ahd.json), a run directory (its stage-1 best checkpoint), or a
    folder holding exactly one `.../best` checkpoint below it. Several candidates below a folder are
    an error listing them (which one was meant is not ours to guess)."""
    p = Path(path)
    if (p / "ahd.json").exists():
        return p
    for cand in (p / "stage1" / "best", p / "checkpoints" / "ahd_best", p / "best"):
        if (cand / "ahd.json").exists():
            return cand
    found = sorted(f.parent for f in p.glob("**/best/ahd.json"))
    if len(found) == 1:
        return found[0]
    if len(found) > 1:
        shown = ", ".join(str(f) for f in found[:6]) + (f", ... ({len(found)} in all)" if len(found) > 6 else "")
        raise ValueError(f"{p}: holds {len(found)} AHD checkpoints, pass one of them (or its run directory): {shown}")
    raise FileNotFoundError(f"{p}: no AHD checkpoint (ahd.json) in it or under stage1/best")


def check_threshold(threshold) -> float:
    """A heatmap threshold: a finite real number in [0, 1] (NaN would silently find no region)."""
    if isinstance(threshold, bool) or not isinstance(threshold, (int, float, np.integer, np.floating)):
        raise ValueError(f"threshold must be a number in [0, 1], got {type(threshold).__name__} {threshold!r}")
    t = float(threshold)
    if not (math.isfinite(t) and 0.0 <= t <= 1.0):
        raise ValueError(f"threshold must be a finite number in [0, 1], got {t}")
    return t


def check_fps(fps) -> float | None:
    """A frame rate: None (the video's own) or a finite real number > 0."""
    if fps is None:
        return None
    if isinstance(fps, bool) or not isinstance(fps, (int, float, np.integer, np.floating)):
        raise ValueError(f"fps must be a number > 0, got {type(fps).__name__} {fps!r}")
    f = float(fps)
    if not (math.isfinite(f) and f > 0):
        raise ValueError(f"fps must be a finite number > 0, got {f}")
    return f


def window_bounds(num_frames: int, window: int) -> list[tuple[int, int]]:
    """[(a, b)]: consecutive windows of `window` frames covering `num_frames`, for reading a long
    video window by window; a lone last frame joins the previous window (each window then holds at
    least one frame pair, and the processor pads an odd one by repeating its last frame)."""
    bounds = list(range(0, num_frames, window)) + [num_frames]
    if len(bounds) > 2 and bounds[-1] - bounds[-2] == 1:
        bounds.pop(-2)
    return list(zip(bounds[:-1], bounds[1:]))


def clip_features(backbone, frames: np.ndarray, layers, fps: float | None = None, window: int = 32,
                  merged: bool = False) -> VisualFeatures:
    """The ViT's block features of checked uint8 (N, H, W, 3) frames at the backbone's `max_pixels`
    (what stage 1's `Backbone.visual_features` sees; no video token budget), run in windows of
    `window` (even) frames (`frame_windows`) and concatenated in time: features {l: (T', h, w, D_l)},
    T' = ceil(N / 2), and with `merged=True` the merged video tokens V (T' * h/2 * w/2, D_p) too.
    The ViT attends within 2-frame groups only, so the windows change memory, not the result."""
    if window < 2 or window % 2:
        raise ValueError(f"window must be even and >= 2, got {window}")
    parts = [backbone.visual_features(chunk, layers, merged=merged, fps=fps)
             for chunk, _ in frame_windows(frames, window)]
    if len(parts) == 1:
        vf = parts[0]
        vf.num_frames = len(frames)
        return vf
    t = sum(p.grid_thw[0] for p in parts)
    _, h, w = parts[0].grid_thw
    feats = {l: torch.cat([p.features[l] for p in parts]) for l in parts[0].features}
    tokens = torch.cat([p.merged for p in parts]) if merged else None
    return VisualFeatures(features=feats, merged=tokens, grid_thw=(t, h, w), frame_size=parts[0].frame_size,
                          num_frames=len(frames))


def heat_from_features(ahd: AHD, vf: VisualFeatures) -> torch.Tensor:
    """The AHD (eq. 4-7) on a clip's block features -> float32 (T', h, w) heatmap in [0, 1] on the CPU;
    a non-finite heatmap (NaN in the features or the AHD's weights) raises FloatingPointError."""
    out = ahd({l: f.to(ahd.text.device) for l, f in vf.features.items() if l in ahd.layers})
    heat = out.heat.float()  # eq. 7: H, (T', h, w)
    if not torch.isfinite(heat).all():
        raise FloatingPointError("non-finite heatmap (NaN in features or AHD weights)")
    return heat.detach().cpu()


@torch.no_grad()
def clip_heatmap(backbone, ahd: AHD, frames: np.ndarray, fps: float | None = None, window: int = 32) -> torch.Tensor:
    """THE heatmap of a clip: checked uint8 (N, H, W, 3) frames -> float32 (T', h, w) in [0, 1] (eq. 7),
    T' = ceil(N / 2) frame pairs, (h, w) the patch grid of the frames at the backbone's `max_pixels`
    (the resolution the AHD was trained and evaluated at), computed in windows of `window` frames.
    `detect` upsamples it (`heat_to_frames`); `TVAD.encode_clip` gives it to the RAE."""
    return heat_from_features(ahd, clip_features(backbone, frames, ahd.layers, fps, window))


class TVADDetector:
    """A frozen backbone + a trained AHD."""

    def __init__(self, backbone, ahd: AHD, meta: dict, window: int = 32):
        self.backbone = backbone
        self.ahd = ahd.to(backbone.device).eval()
        self.meta = meta
        self.layers = sorted(int(l) for l in meta["backbone"]["layers"])
        self.frame_score = meta.get("frame_score", "max")
        self.topk = int(meta.get("topk", 16))
        if window < 2 or window % 2:
            raise ValueError(f"window must be even and >= 2, got {window}")
        self.window = window

    def patch_heatmaps(self, frames: np.ndarray, fps: float | None = None) -> torch.Tensor:
        """float32 (T', h, w): `clip_heatmap` of checked uint8 (T, H, W, 3) frames (windows of `window`)."""
        return clip_heatmap(self.backbone, self.ahd, frames, fps, self.window)

    @torch.no_grad()
    def heatmaps(self, frames: np.ndarray, fps: float | None = None) -> torch.Tensor:
        """float32 (T, H, W) heatmaps of checked uint8 (T, H, W, 3) frames: `clip_heatmap` upsampled to
        the frames, each pair's map shared by both its frames (`heat_to_frames`)."""
        return heat_to_frames(self.patch_heatmaps(frames, fps), frames.shape[1:3], len(frames)).float()

    def detect(self, frames, fps: float | None = None, threshold: float = 0.5) -> Detection:
        """Heatmaps, frame scores and regions (heat >= threshold) of a video: a path or uint8 (T, H, W, 3)."""
        threshold = check_threshold(threshold)
        fps = check_fps(fps)
        if isinstance(frames, (str, os.PathLike)):
            info = probe(frames)
            fps = fps or info.fps
            frames = read_frames(frames)
        frames = check_frames(frames)
        grid = self.patch_heatmaps(frames, fps)  # (T', h, w): the heatmap the RAE reads too
        hm = heat_to_frames(grid, frames.shape[1:3], len(frames)).float()  # (T, H, W)
        scores = frame_scores(hm, self.frame_score, self.topk)
        hm_np = hm.numpy().astype(np.float32)
        return Detection(hm_np, scores.numpy().astype(np.float32), regions_from_heatmaps(hm_np, threshold), fps,
                         patch_heat=grid.numpy().astype(np.float32))

    def windows(self, read: Callable[[int, int], np.ndarray], num_frames: int, fps: float | None = None,
                window: int | None = None, threshold: float = 0.5,
                progress: bool = False) -> Iterator[tuple[int, int, Detection]]:
        """A long video window by window, its frames read per window so memory stays bounded:
        `read(a, b)` returns uint8 (b - a, H, W, 3) frames [a, b) of the video. Yields (a, b, the
        Detection of those frames), the regions' frame column in the video's frame indices.
        `window` frames per read (default `self.window`; see `window_bounds`)."""
        threshold, fps = check_threshold(threshold), check_fps(fps)
        bounds = window_bounds(num_frames, window or self.window)
        for a, b in tqdm(bounds, desc="detect", unit="window", disable=not progress, file=sys.stderr):
            det = self.detect(read(a, b), fps=fps, threshold=threshold)
            r = np.asarray(det.regions, float).reshape(-1, 6).copy()
            r[:, 0] += a
            yield a, b, dataclasses.replace(det, regions=r)


def load_detector(path: str | os.PathLike, backbone=None, device: str | None = None, window: int = 32,
                  dtype: str | None = None) -> TVADDetector:
    """A stage-1 checkpoint or a run directory (`find_checkpoint`) -> a detector, the backbone loaded
    as the checkpoint records it (its path, dtype unless `dtype` is given, max_pixels).

    A given `backbone` must be the one the AHD was trained on (same weights and layers)."""
    ck = find_checkpoint(path)
    meta = json.loads((ck / "ahd.json").read_text())
    bbm = meta.get("backbone") or {}
    if backbone is None:
        backbone = from_pretrained(bbm.get("path", ""), dtype=dtype or bbm.get("dtype", "float32"),
                                   device=device or "auto", max_pixels=bbm.get("max_pixels"))
    ahd, meta = load_ahd(ck, backbone_identity=backbone.identity, layers=bbm.get("layers"))
    return TVADDetector(backbone, ahd, meta, window=window)
