"""The stages' shared caches under `accelerate launch`: each rank fills its shard, then reads them all.

    samples = prepare_sharded(videos, cache)      # stage 1 / notebook 04: the feature cache
    check_clips_sharded(records, clips)           # stage 2: the clip store (heatmaps, video tokens)

Each rank computes the clips of `tvad.dist.shard` (round robin) into the one cache directory (per-clip
files, written atomically), waits until every clip's file is there (`tvad.dist.wait_until`), then
reads the full set like a single process. A rank killed mid-way leaves its finished clips on disk;
the relaunched run finds them (cache hits) and computes only the rest. Without a launcher both are
the single-process calls (`stage1.prepare`, `clips.check_clips`), unchanged.
"""

from __future__ import annotations

from typing import Sequence

from tvad import dist
from tvad.train.clips import ClipStore, check_clips
from tvad.train.features import FeatureCache, cache_indices, cache_key
from tvad.train.stage1 import Sample, prepare


def prepare_sharded(videos: Sequence, cache: FeatureCache, progress: bool = True, desc: str = "features",
                    fps: float | None = None) -> list[Sample]:
    """`stage1.prepare(videos, cache)` with the feature extraction split across ranks (see module doc)."""
    videos = list(videos)
    if dist.launched():
        prepare(dist.shard(videos), cache, fps=fps, progress=progress, desc=f"{desc} (rank {dist.rank()})")
        dist.wait_until(lambda: all(cache.path(cache_key(v), cache_indices(v)).exists() for v in videos),
                        f"{desc}: every rank's clips in {cache.dir}")
    return prepare(videos, cache, fps=fps, progress=progress, desc=desc)


def check_clips_sharded(records: Sequence[dict], clips: ClipStore, progress: bool = False, desc: str = "clips") -> None:
    """`check_clips(records, clips)` with the clip encoding split across ranks by clip (a clip store
    without a root directory has nothing to share: every rank encodes all, as one process would)."""
    records = list(records)
    if dist.launched() and clips.root is not None:
        by_clip = {clips.key(r["clip"]): r for r in records}  # one record per clip: each clip encoded once
        mine = dist.shard(sorted(by_clip))
        check_clips([by_clip[k] for k in mine], clips, progress=progress, desc=f"{desc} (rank {dist.rank()})")
        dist.wait_until(lambda: all(clips._path(k).exists() for k in by_clip), f"{desc}: every rank's clips")
    check_clips(records, clips, progress=progress, desc=desc)
