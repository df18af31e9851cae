"""The detection API (a contract): heatmaps, frame scores and regions for any video.

    model = tvad.load("runs/cpu")                # a run directory (its best AHD) or a checkpoint dir
    det = model.detect("clip.mp4")               # or a uint8 (T, H, W, 3) array; fps optional
    det.heatmaps       # float32 (T, H, W) in [0, 1] at input resolution
    det.frame_scores   # float32 (T,): max of the heatmap over the frame (top-k mean as an option)
    det.regions        # (N, 6) [frame, x1, y1, x2, y2, score] via tvad.metrics.regions_from_heatmaps

Long videos go through a sliding window of `window` frames. Qwen2.5-VL's ViT attends within each
2-frame group only, so non-overlapping even-length windows give exactly the features of the whole
video: the window bounds memory, not accuracy. An odd frame count repeats the last frame for the
last pair (as Qwen's processor does) and drops the padded frame from the output.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from tvad.model.ahd import AHD, frame_scores


@dataclass
class Detection:
    heatmaps: np.ndarray  # float32 (T, H, W) in [0, 1]
    frame_scores: np.ndarray  # float32 (T,)
    regions: np.ndarray  # (N, 6) [frame, x1, y1, x2, y2, score]
    fps: float | None = None  # frame rate of the input, when known


def find_checkpoint(path: str | os.PathLike) -> Path:
    """A checkpoint directory (has ahd.json) or a run directory (its stage-1 best checkpoint)."""
    p = Path(path)
    if (p / "ahd.json").exists():
        return p
    for cand in (p / "stage1" / "best", p / "checkpoints" / "ahd_best", p / "best"):
        if (cand / "ahd.json").exists():
            return cand
    found = sorted(p.glob("**/best/ahd.json"))
    if found:
        return found[0].parent
    raise FileNotFoundError(f"{p}: no AHD checkpoint (ahd.json) in it or under stage1/best")


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

    @torch.no_grad()
    def detect(self, frames, fps: float | None = None, threshold: float = 0.5) -> Detection:
        from tvad.data.video import probe, read_frames
        from tvad.metrics import regions_from_heatmaps
        from tvad.model.backbone import check_frames

        if isinstance(frames, (str, os.PathLike)):
            info = probe(frames)
            fps = fps or info.fps
            frames = read_frames(frames)
        frames = check_frames(frames)
        n, H, W = frames.shape[:3]
        heat, scores = [], []
        for a in range(0, n, self.window):
            chunk = frames[a:a + self.window]
            keep = slice(0, len(chunk))
            if len(chunk) == 1:  # a lone last frame: repeated into a pair, as the processor pads
                chunk = np.concatenate([chunk, chunk])
            vf = self.backbone.visual_features(chunk, self.layers, fps=fps)
            out = self.ahd({l: f.to(self.ahd.text.device) for l, f in vf.features.items()})
            h = AHD.upsample(out.heat, (H, W)).repeat_interleave(2, 0)[: len(chunk)][keep]
            if not torch.isfinite(h).all():
                raise FloatingPointError("non-finite heatmap (NaN in features or AHD weights)")
            heat.append(h.cpu())
        hm = torch.cat(heat).float()
        scores = frame_scores(hm, self.frame_score, self.topk)
        hm_np = hm.numpy().astype(np.float32)
        return Detection(hm_np, scores.numpy().astype(np.float32), regions_from_heatmaps(hm_np, threshold), fps)


def load(path: str | os.PathLike, backbone=None, device: str | None = None, window: int = 32) -> TVADDetector:
    """`tvad.load(path)`: a checkpoint or run directory -> a detector (backbone loaded as recorded).

    A given `backbone` must be the one the AHD was trained on (same weights and layers)."""
    from tvad.model.backbone import from_pretrained
    from tvad.io import REPO_ROOT
    from tvad.model.ahd import load_ahd

    ck = find_checkpoint(path)
    import json

    meta = json.loads((ck / "ahd.json").read_text())
    bbm = meta.get("backbone") or {}
    if backbone is None:
        src = Path(bbm.get("path", ""))
        if not src.is_absolute() and (REPO_ROOT / src).is_dir():
            src = REPO_ROOT / src
        backbone = from_pretrained(src if src.is_dir() else bbm.get("path"), dtype=bbm.get("dtype", "float32"),
                                   device=device or ("cuda" if torch.cuda.is_available() else "cpu"),
                                   max_pixels=bbm.get("max_pixels"))
    ahd, meta = load_ahd(ck, backbone_identity=backbone.identity, layers=bbm.get("layers"))
    return TVADDetector(backbone, ahd, meta, window=window)
