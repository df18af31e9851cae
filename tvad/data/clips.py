"""The paper's re-partitioning (§1, §3.3): source videos -> short clips, split by source video.

    clips = partition(videos, fps=1.0, min_frames=8, max_frames=40, stride=8, size=(476, 868))
    write_index(clips, run / "clips.jsonl"); clips = read_index(run / "clips.jsonl")
    x = read_clip(clips[0], videos)        # uint8 (T, 476, 868, 3), the clip's frames resized
    m = read_clip_masks(clips[0], videos)  # int32 (T, 476, 868), nearest-neighbour resized

Each source video is resampled to `fps` (None keeps every frame) and cut into windows of
`length` frames (default `max_frames`) starting every `stride` resampled frames; the last
window ends at the video's end and is kept when it has at least `min_frames` (a video shorter
than `length` gives one clip of all its frames, if >= `min_frames`). Train/validation is decided
per *source video* (shuffled with `seed`, abnormal and normal sources separately, filled until the
validation side holds `val_fraction` of the clips), so no source has clips on both sides. The
paper's ShanghaiTech numbers: 4,108 train / 1,028 validation clips at 868 x 476, 8-40 frames at
1 fps. With ``val_fraction=None`` each clip keeps its source video's own split.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Iterable, Mapping, Sequence

import numpy as np

from tvad.data.record import DataError, Problems, Skipped, Video, VideoObject
from tvad.data.video import read_frames, resize_frames, sample_indices, write_video
from tvad.io import atomic_write_text


@dataclass(frozen=True)
class Clip:
    """A clip: frames `frames` (0-based indices into the source video) of video `video`."""

    name: str  # "{video}-{first:03d}_{last:03d}" (first/last source frame, as the released clips)
    video: str  # source video name
    path: str  # source video path (file, or frames folder)
    source: str  # dataset of the source: "ubnormal", "synthetic", "shanghaitech", ...
    split: str  # "train" | "validation" (or the source's split when val_fraction is None)
    frames: tuple  # source frame indices
    labels: tuple  # per clip frame: 1 = abnormal
    size: tuple  # (H, W) the clip is materialised at
    fps: float  # clip frame rate (the source's when not resampled)
    video_split: str | None = None  # the source video's own split

    @property
    def label(self) -> int:
        return int(any(self.labels))

    @property
    def num_frames(self) -> int:
        return len(self.frames)

    def to_json(self) -> dict:
        d = asdict(self)
        d["frames"], d["labels"], d["size"] = list(self.frames), list(self.labels), list(self.size)
        return d

    @classmethod
    def from_json(cls, d: dict) -> "Clip":
        return cls(name=d["name"], video=d["video"], path=d["path"], source=d.get("source", ""),
                   split=d["split"], frames=tuple(int(x) for x in d["frames"]),
                   labels=tuple(int(x) for x in d["labels"]), size=tuple(int(x) for x in d["size"]),
                   fps=float(d["fps"]), video_split=d.get("video_split"))


def windows(n: int, length: int, stride: int, min_frames: int) -> list[tuple[int, int]]:
    """[start, end) windows over n frames (see the module doc)."""
    if n < min_frames:
        return []
    if n <= length:
        return [(0, n)]
    out = []
    start = 0
    while True:
        end = min(start + length, n)
        if end - start >= min_frames:
            out.append((start, end))
        if end >= n:
            break
        start += stride
    return out


def _resample(v: Video, fps: float | None) -> np.ndarray:
    return sample_indices(v.num_frames, v.fps, fps) if fps else np.arange(v.num_frames)


class ClipList(list):
    """A list of `Clip` plus `.skipped`: the source videos a ``strict=False`` partition left out
    (too short for the shortest clip at the clip rate), and why."""

    def __init__(self, clips: Iterable[Clip] = (), skipped: Iterable[Skipped] = ()):
        super().__init__(clips)
        self.skipped: list[Skipped] = list(skipped)


def partition(videos: Iterable[Video], fps: float | None = 1.0, min_frames: int = 8, max_frames: int = 40,
              stride: int | None = None, size: Sequence[int] = (476, 868), val_fraction: float | None = 0.2,
              seed: int = 0, length: int | None = None, strict: bool | None = None) -> ClipList:
    """Cut videos into clips and split them train/validation by source video (see module doc).

    stride: between window starts in resampled frames (default `length`: no overlap).
    strict: a video shorter than `min_frames` at `fps` is a `DataError` naming its file (True), or
            skipped and listed in the result's `.skipped` (False); None (the default) leaves it out
            silently, as before.
    """
    problems = Problems(bool(strict)) if strict is not None else None
    length = int(length or max_frames)
    if not min_frames <= length <= max_frames:
        raise ValueError(f"clip length {length} outside [{min_frames}, {max_frames}]")
    stride = int(stride or length)
    if stride <= 0:
        raise ValueError(f"stride must be positive, got {stride}")
    per_video: dict[str, list[dict]] = {}
    abnormal: dict[str, bool] = {}
    order: list[str] = []
    for v in videos:
        if v.name in per_video:
            raise DataError(f"{v.path}: duplicate source video name {v.name!r}")
        idx = _resample(v, fps)
        if len(idx) < min_frames and problems is not None:
            problems(v.path, f"too short for a clip: {len(idx)} frame(s) at {fps or v.fps:g} fps "
                             f"({v.num_frames} frames at {v.fps:g} fps), the shortest clip has {min_frames}",
                     item=v.name)
        cl = []
        for s, e in windows(len(idx), length, stride, min_frames):
            fr = idx[s:e]
            cl.append({"name": f"{v.name}-{int(fr[0]):03d}_{int(fr[-1]):03d}", "video": v.name,
                       "path": str(v.path), "source": v.source, "frames": tuple(int(x) for x in fr),
                       "labels": tuple(int(x) for x in v.frame_labels[fr]), "size": (int(size[0]), int(size[1])),
                       "fps": float(fps) if fps else v.fps, "video_split": v.split})
        per_video[v.name] = cl
        abnormal[v.name] = bool(v.frame_labels.any())
        order.append(v.name)
    split_of: dict[str, str] = {}
    if val_fraction is None:
        split_of = {n: (per_video[n][0]["video_split"] if per_video[n] else "") or "train" for n in order}
    else:
        if not 0 <= val_fraction < 1:
            raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
        rng = np.random.default_rng(seed)
        for group in (True, False):
            names = [n for n in sorted(order) if abnormal[n] == group and per_video[n]]
            names = [names[i] for i in rng.permutation(len(names))]
            total = sum(len(per_video[n]) for n in names)
            target = val_fraction * total
            val = 0
            for n in names:
                # fill validation while it brings us closer to the target; the rest is train
                if val_fraction > 0 and abs(val + len(per_video[n]) - target) < abs(val - target):
                    split_of[n] = "validation"
                    val += len(per_video[n])
                else:
                    split_of[n] = "train"
            if val_fraction > 0 and len(names) >= 2 and not any(split_of[n] == "validation" for n in names):
                split_of[names[0]] = "validation"
            if len(names) >= 2 and not any(split_of[n] == "train" for n in names):
                split_of[names[-1]] = "train"
    clips = ClipList(skipped=problems.skipped if problems is not None else ())
    for n in order:
        for c in per_video[n]:
            clips.append(Clip(split=split_of.get(n, "train"), **c))
    return clips


def check_no_leakage(clips: Iterable[Clip]) -> None:
    """Raise `DataError` if any source video has clips in more than one split."""
    seen: dict[str, str] = {}
    for c in clips:
        if seen.setdefault(c.video, c.split) != c.split:
            raise DataError(f"{c.path}: source video {c.video} has clips in both {seen[c.video]!r} and {c.split!r}")


def summary(clips: Iterable[Clip]) -> list[dict]:
    """One row per split: clips, abnormal clips, source videos, frames, abnormal frames."""
    rows: dict[str, dict] = {}
    for c in clips:
        r = rows.setdefault(c.split, {"split": c.split, "clips": 0, "abnormal_clips": 0, "videos": set(),
                                      "frames": 0, "abnormal_frames": 0})
        r["clips"] += 1
        r["abnormal_clips"] += c.label
        r["videos"].add(c.video)
        r["frames"] += c.num_frames
        r["abnormal_frames"] += sum(c.labels)
    out = []
    for r in rows.values():
        r = dict(r)
        r["videos"] = len(r["videos"])
        out.append(r)
    return out


def write_index(clips: Iterable[Clip], path: str | os.PathLike) -> Path:
    """Write the clip index as JSON lines, atomically."""
    return atomic_write_text(path, "".join(json.dumps(c.to_json(), ensure_ascii=False) + "\n" for c in clips))


def read_index(path: str | os.PathLike) -> list[Clip]:
    p = Path(path)
    if not p.exists():
        raise DataError(f"{p}: no such clip index")
    out = []
    for ln, line in enumerate(p.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            out.append(Clip.from_json(json.loads(line)))
        except (json.JSONDecodeError, KeyError, TypeError, ValueError) as e:
            raise DataError(f"{p}: line {ln}: not a clip record ({type(e).__name__}: {e})") from None
    return out


def _video_for(clip: Clip, videos: Mapping[str, Video] | Iterable[Video] | Video | None) -> Video | None:
    if videos is None:
        return None
    if isinstance(videos, Video):
        return videos
    if not isinstance(videos, Mapping):
        videos = {v.name: v for v in videos}
    if clip.video not in videos:
        raise DataError(f"{clip.path}: source video {clip.video!r} of clip {clip.name} not among the given videos")
    return videos[clip.video]


def read_clip(clip: Clip, videos: Mapping[str, Video] | Iterable[Video] | Video | None = None) -> np.ndarray:
    """uint8 (T, H, W, 3): the clip's frames, resized (bicubic) to ``clip.size``.

    videos: the source `Video` (or a list / {name: Video}); without it the clip's path is read as
            a video file.
    """
    v = _video_for(clip, videos)
    if v is None:
        return read_frames(clip.path, indices=list(clip.frames), size=tuple(clip.size))
    return resize_frames(v.read_frames(list(clip.frames)), tuple(clip.size))


def resize_masks(masks: np.ndarray, size: Sequence[int]) -> np.ndarray:
    """Nearest-neighbour resize of (T, h, w) id maps to (T, H, W) (ids are never blended)."""
    T, h, w = masks.shape
    H, W = int(size[0]), int(size[1])
    if (h, w) == (H, W):
        return masks
    ys = np.minimum(((np.arange(H) + 0.5) * h / H).astype(int), h - 1)
    xs = np.minimum(((np.arange(W) + 0.5) * w / W).astype(int), w - 1)
    return masks[:, ys][:, :, xs]


def read_clip_masks(clip: Clip, videos, all_objects: bool = False) -> np.ndarray:
    """int32 (T, H, W): the clip's masks (see `Video.read_masks`), resized to ``clip.size``."""
    v = _video_for(clip, videos)
    if v is None:
        raise DataError(f"{clip.path}: masks need the source Video of clip {clip.name}")
    return resize_masks(v.read_masks(list(clip.frames), all_objects=all_objects), clip.size)


def export(clips: Iterable[Clip], videos, out_dir: str | os.PathLike, index_name: str = "clips.jsonl") -> Path:
    """Materialise clips as ``out_dir/{clip}.mp4`` (resized) plus the index; returns the index path."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    clips = list(clips)
    for c in clips:
        write_video(out / f"{c.name}.mp4", read_clip(c, videos), c.fps)
    return write_index(clips, out / index_name)


# ------------------------------------------------------------------------------ clips as videos
def _runs(positions: np.ndarray) -> list[tuple[int, int]]:
    """Sorted positions -> inclusive (first, last) runs of consecutive positions."""
    out: list[tuple[int, int]] = []
    for k in positions.tolist():
        if out and k == out[-1][1] + 1:
            out[-1] = (out[-1][0], k)
        else:
            out.append((k, k))
    return out


class ClipVideo(Video):
    """A clip seen as a `Video`: its source video at the clip's frame indices, resized to the
    clip's size. Every stage reads clips through this view (stage 1, the corpus, stage 2,
    evaluation), so whatever takes a `Video` takes a clip.

    Frame numbers are the clip's own (0 .. T-1): `read_frames`, `read_masks`, `frame_labels`,
    `anomaly_rows`, the objects' boxes and ranges, `gt_tracks`. Boxes and masks are scaled to the
    clip's size (masks nearest-neighbour: ids are never blended). `gt_tracks` numbers tracks by the
    source video's anomaly rows (in order of object id, as `Video.gt_tracks`), so the clips of one
    source video share track ids and concatenate into the source's tracks.

        v = ClipVideo(clip, source)     # clip: a `Clip`; source: its source `Video`
        v.meta["source_video"], v.meta["frame_indices"], v.meta["dataset"]
    """

    def __init__(self, clip: Clip, source: Video):
        frames = np.asarray(clip.frames, dtype=np.int64)
        if source.name != clip.video:
            raise DataError(f"{source.path}: clip {clip.name} is of video {clip.video!r}, not {source.name!r}")
        if len(frames) and (frames.min() < 0 or frames.max() >= source.num_frames):
            raise DataError(f"{source.path}: clip {clip.name} names frame {int(frames.max())}, the video has "
                            f"{source.num_frames} frames (a clip index of another version of the dataset?)")
        labels = source.frame_labels[frames]
        if tuple(int(x) for x in labels) != tuple(clip.labels):
            raise DataError(f"{source.path}: the frame labels of clip {clip.name} differ from the clip index's "
                            f"(the annotations changed since the index was written: rebuild it)")
        src_rows = source.anomaly_rows
        if not len(src_rows) and labels.any():
            # a source whose anomalies live on its objects only (ShanghaiTech: every masked region is
            # anomalous, its tracks derived from the masks): the rows from the objects' ranges
            src_rows = np.array([(o.id, a, b) for o in source.objects for a, b in o.anomaly_ranges],
                                np.int64).reshape(-1, 3)
        src_rows = src_rows[np.argsort(src_rows[:, 0], kind="stable")]
        rows, track_of = [], []
        for tid, (oid, s, e) in enumerate(src_rows):
            for a, b in _runs(np.flatnonzero((frames >= s) & (frames <= e))):
                rows.append((int(oid), a, b))
                track_of.append(tid)
        super().__init__(clip.name, source.path, len(frames), clip.fps, tuple(clip.size), labels, split=clip.split,
                         anomaly_rows=np.asarray(rows, np.int64).reshape(-1, 3),
                         meta={**source.meta, "source_video": source.name, "frame_indices": frames.tolist(),
                               "dataset": clip.source or source.source, "video_split": source.split},
                         has_masks=source.has_masks, source=clip.source or source.source)
        self.clip = clip
        self.source_record = source  # the source `Video`
        self.frames = frames
        self._track_of = track_of  # source track id of each (clip-local) anomaly row

    def _scale(self) -> tuple[float, float]:
        h, w = self.source_record.size
        return self.size[1] / w, self.size[0] / h

    def read_frames(self, indices: Sequence[int] | None = None) -> np.ndarray:
        """uint8 (T, H, W, 3): the source's frames at the clip's indices, resized to the clip size."""
        idx = self._indices(indices)
        return resize_frames(np.asarray(self.source_record.read_frames(self.frames[idx])), self.size)

    def _read_id_maps(self, idx: np.ndarray) -> np.ndarray:
        return resize_masks(np.asarray(self.source_record._read_id_maps(self.frames[idx])), self.size)

    def _load_objects(self) -> list[VideoObject]:
        sx, sy = self._scale()
        out = []
        for o in self.source_record.objects:
            boxes = np.asarray(o.boxes).reshape(-1, 4)
            b = boxes[self.frames] if len(boxes) else np.full((self.num_frames, 4), -1, np.int64)
            vis = b[:, 0] >= 0
            b = b.astype(np.float64)
            b[:, [0, 2]] *= sx
            b[:, [1, 3]] *= sy
            nb = np.where(vis[:, None], np.stack([np.floor(b[:, 0]), np.floor(b[:, 1]), np.ceil(b[:, 2]),
                                                  np.ceil(b[:, 3])], 1), -1).astype(np.int64)
            cents = None
            if o.centroids is not None and len(o.centroids):
                cents = np.asarray(o.centroids, np.float64)[self.frames] * np.array([sx, sy])
            ranges = self._ranges_of(o.id)
            anomalous = bool(ranges)
            behaviour = o.behaviour
            if not anomalous and o.anomaly_type and behaviour == o.anomaly_type:
                behaviour = None  # its anomaly happens outside this clip
            out.append(VideoObject(id=o.id, category=o.category, attributes=dict(o.attributes), boxes=nb,
                                   anomalous=anomalous, anomaly_type=o.anomaly_type if anomalous else None,
                                   anomaly_ranges=ranges, behaviour=behaviour,
                                   caption=o.caption if anomalous == o.anomalous else None, centroids=cents,
                                   extra=dict(o.extra)))
        return out

    def gt_tracks(self) -> np.ndarray:
        """(M, 6) int64 ``[track_id, frame, x1, y1, x2, y2]`` in clip frames at the clip size; track
        ids are the source video's (see the class doc)."""
        rows = self.anomaly_rows
        if not len(rows):
            return np.zeros((0, 6), np.int64)
        boxes = self._anomalous_boxes(rows)
        out = []
        for tid, (oid, s, e) in zip(self._track_of, rows):
            for t in range(int(s), int(e) + 1):
                b = boxes.get((int(oid), t))
                if b is not None:
                    out.append((tid, t, *b))
        return np.array(out, dtype=np.int64).reshape(-1, 6)


def clip_videos(clips: Iterable[Clip], videos: Mapping[str, Video] | Iterable[Video]) -> list[ClipVideo]:
    """The clips as `ClipVideo`s over their source videos (given as a list or {name: Video})."""
    if not isinstance(videos, Mapping):
        videos = {v.name: v for v in videos}
    return [ClipVideo(c, _video_for(c, videos)) for c in clips]
