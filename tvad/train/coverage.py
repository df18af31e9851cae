"""Held-out clips back onto their source videos: the frame-level metrics' unit.

Held-out clips never overlap (`tvad.data.protocol`), so the clips of one source video, in frame
order, cover a subsequence of its frames (at the clip rate) exactly once. The paper's frame-level
metrics (micro / macro AUC, RBDC, TBDC) are per source video; here they are computed on those
covered frames: each source video's clip heatmaps, scores, labels and ground-truth tracks
concatenated in time (track ids are the source's, `ClipVideo.gt_tracks`).

    seqs, heat, scores = source_sequences(samples, heat, scores)
    stage1.evaluate_heatmaps(heat, scores, seqs, cfg.eval)

Records that are not clips (no `meta["source_video"]`) are their own sequence, unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np


class CoverageError(ValueError):
    """Clips of one source video that overlap or disagree (held-out clips must not overlap)."""


@dataclass
class SourceSequence:
    """A source video's covered frames: what `stage1.evaluate_heatmaps` reads of a sample."""

    name: str  # the source video (dataset-qualified only when two datasets share a name)
    frame_labels: np.ndarray  # (N,) int 0/1 over the covered frames
    gt_tracks: np.ndarray  # (M, 6) [track, frame, x1, y1, x2, y2], frames numbered over the covered frames
    num_frames: int  # N
    frame_size: tuple  # (H, W) of the clips
    anomaly_type: str  # the clips' anomaly types joined ("normal" if none)
    clips: list  # the clip names, in order
    source_frames: np.ndarray  # (N,) the covered frames' indices in the source video


def _meta(s) -> dict:
    v = (getattr(s, "extra", None) or {}).get("video", s)
    return getattr(v, "meta", None) or {}


def source_sequences(samples: Sequence, heat: Mapping[str, np.ndarray],
                     scores: Mapping[str, np.ndarray]) -> tuple[list[SourceSequence], dict, dict]:
    """(sequences, {name: heat (N, H, W)}, {name: scores (N,)}) with each source video's clips
    concatenated in frame order. `samples`: stage-1 `Sample`s (or anything with name,
    frame_labels, gt_tracks, num_frames, frame_size, anomaly_type and the clip's record in
    `extra["video"]`); `heat` / `scores` keyed by sample name."""
    groups: dict[str, list] = {}
    for s in samples:
        m = _meta(s)
        key = f"{m['dataset']}/{m['source_video']}" if "source_video" in m else s.name
        groups.setdefault(key, []).append(s)
    bare = {k.split("/", 1)[-1] for k in groups}
    short = len(bare) == len(groups)  # drop the dataset prefix unless two datasets share a video name
    seqs, H, S = [], {}, {}
    for key, ss in groups.items():
        name = key.split("/", 1)[-1] if short else key
        ss = sorted(ss, key=lambda s: int((_meta(s).get("frame_indices") or [0])[0]))
        frames = [np.asarray(_meta(s).get("frame_indices", np.arange(s.num_frames)), np.int64) for s in ss]
        allf = np.concatenate(frames)
        if len(np.unique(allf)) != len(allf) or (np.diff(allf) <= 0).any():
            raise CoverageError(f"source video {name}: its clips {[s.name for s in ss]} overlap or are out of order "
                                "(held-out clips must not overlap)")
        sizes = {tuple(s.frame_size) for s in ss}
        if len(sizes) != 1:
            raise CoverageError(f"source video {name}: clips of different sizes {sorted(sizes)}")
        tracks, off = [], 0
        for s in ss:
            t = np.asarray(s.gt_tracks, np.int64).reshape(-1, 6).copy()
            t[:, 1] += off
            tracks.append(t)
            off += int(s.num_frames)
        types = sorted({t for s in ss for t in str(s.anomaly_type).split("+")} - {"normal"})
        seqs.append(SourceSequence(name, np.concatenate([np.asarray(s.frame_labels) for s in ss]).astype(int),
                                   np.concatenate(tracks), off, sizes.pop(), "+".join(types) or "normal",
                                   [s.name for s in ss], allf))
        H[name] = np.concatenate([np.asarray(heat[s.name]) for s in ss])
        S[name] = np.concatenate([np.asarray(scores[s.name]) for s in ss])
    return seqs, H, S
