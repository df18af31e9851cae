"""The frozen backbone's feature cache: each clip's block features computed once, read many times.

    cache = FeatureCache(run.path("features"), backbone, layers=[0, 1, 2, 3])
    feats = cache.get_or_compute("train/video_003", indices, lambda: frames, fps=8.0)
    feats[3]        # (T, h, w, D_3) float32 (stored as fp16)

Layout: <root>/<backbone identity>/<key>.safetensors, one file per (video, frame indices), fp16
tensors "layer.<l>" plus metadata (video, indices, backbone identity, layers, grid, frame size).
The key is a hash of all four; on every read the stored metadata is compared with the request,
so a stale or foreign file (other frames, other backbone, other layers) is never served: it is
recomputed and overwritten; so is a truncated, garbled or non-finite one (listed in `corrupt`).
Writes are atomic (temp file + rename).

Because Qwen2.5-VL's ViT attends within each 2-frame group only (window and full attention
alike, 2-D rotary positions), the features of frames [2a, 2b) are rows [a, b) of the whole
video's features: stage 1 caches each video once and slices clips from it.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from tvad.io import atomic_path


class FeatureCacheError(ValueError):
    """A cache file whose content does not match its key, or a bad request."""


class FeatureCache:
    def __init__(self, root: str | os.PathLike, backbone, layers: Sequence[int] | str, fps: float | None = None):
        self.backbone = backbone
        if isinstance(layers, str):  # "auto": the blocks this backbone's config names (Backbone.resolve_layers)
            layers = backbone.resolve_layers(layers)
        self.layers = sorted(int(l) for l in layers)
        backbone.check_layers(self.layers)
        self.identity = backbone.identity
        self.fps = fps
        self.dir = Path(root) / self.identity
        self.dir.mkdir(parents=True, exist_ok=True)
        self.hits = 0
        self.misses = 0
        self.corrupt: list[Path] = []  # cache files found truncated, garbled or non-finite (then recomputed)

    # -- keys --------------------------------------------------------------------------------
    def meta(self, video: str, indices: Sequence[int]) -> dict:
        return {"video": str(video), "indices": [int(i) for i in indices], "backbone": self.identity,
                "layers": self.layers, "max_pixels": self.backbone.max_pixels}

    def key(self, video: str, indices: Sequence[int]) -> str:
        return hashlib.sha256(json.dumps(self.meta(video, indices), sort_keys=True).encode()).hexdigest()[:24]

    def path(self, video: str, indices: Sequence[int]) -> Path:
        return self.dir / f"{self.key(video, indices)}.safetensors"

    # -- read / write ------------------------------------------------------------------------
    def get(self, video: str, indices: Sequence[int]) -> dict[int, torch.Tensor] | None:
        """{l: (T, h, w, D_l) float32} or None when absent or stale (metadata differs)."""
        p = self.path(video, indices)
        if not p.exists():
            return None
        want = self.meta(video, indices)
        try:
            with safe_open(str(p), framework="pt") as f:
                got = json.loads((f.metadata() or {}).get("tvad", "{}"))
                if any(got.get(k) != v for k, v in want.items()):
                    return None  # stale: never served
                out = {l: f.get_tensor(f"layer.{l}").float() for l in self.layers}
        except Exception:  # truncated / garbled file: recompute (counted in `corrupt`)
            self.corrupt.append(p)
            return None
        if not all(torch.isfinite(t).all() for t in out.values()):  # put() never writes these: damaged
            self.corrupt.append(p)
            return None
        return out

    def put(self, video: str, indices: Sequence[int], features: dict[int, torch.Tensor]) -> Path:
        missing = [l for l in self.layers if l not in features]
        if missing:
            raise FeatureCacheError(f"features for layers {missing} missing")
        tensors = {}
        for l in self.layers:
            f = features[l]
            if not torch.isfinite(f).all():
                raise FeatureCacheError(f"{video}: non-finite features in block {l}; not cached")
            h = f.detach().to("cpu", torch.float16).contiguous()
            if not torch.isfinite(h).all():
                raise FeatureCacheError(f"{video}: block {l} features overflow float16")
            tensors[f"layer.{l}"] = h
        p = self.path(video, indices)
        with atomic_path(p) as tmp:
            save_file(tensors, str(tmp), metadata={"tvad": json.dumps(self.meta(video, indices), sort_keys=True)})
        return p

    def get_or_compute(self, video: str, indices: Sequence[int], frames: Callable[[], np.ndarray] | np.ndarray,
                       fps: float | None = None) -> dict[int, torch.Tensor]:
        """Cached features, or computed from `frames` (an array or a loader) and stored."""
        got = self.get(video, indices)
        if got is not None:
            self.hits += 1
            return got
        self.misses += 1
        x = frames() if callable(frames) else frames
        if len(x) != len(indices):
            raise FeatureCacheError(f"{video}: {len(x)} frames for {len(indices)} indices")
        vf = self.backbone.visual_features(x, self.layers, fps=fps or self.fps)
        self.put(video, indices, vf.features)
        return {l: vf.features[l].to(torch.float16).float().cpu() for l in self.layers}  # as a later read
