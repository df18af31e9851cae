"""The one record every dataset maps onto: `Video` (frames, labels, masks, objects, GT tracks).

    v = tvad.data.ubnormal.load("data/ubnormal", "test")[0]
    v.name, v.path, v.num_frames, v.fps, v.size      # size = (H, W)
    v.read_frames([0, 1])                              # uint8 (T, H, W, 3)
    v.frame_labels                                     # int8 (T,), 1 = abnormal frame
    v.read_masks([0, 1])                               # int32 (T, H, W): ids of the anomalous objects
    v.read_masks([0, 1], all_objects=True)             # every object's id (the corpus needs them)
    v.objects                                          # [VideoObject]: id, category, attributes, boxes, ...
    v.gt_tracks()                                      # (M, 6) [track_id, frame, x1, y1, x2, y2]

Conventions, shared by every loader:
  * frames are 0-based;
  * a box is ``[x1, y1, x2, y2]`` in pixels with the right/bottom edge *exclusive* (UBnormal's
    convention: x2 = last column + 1), the box of the object's largest 8-connected blob in that
    frame ("largest" = largest bounding-box area, as the official UBnormal script picks the
    contour with the largest bounding rectangle; ties: more pixels, then raster order);
  * an object is anomalous in the frames of its anomaly ranges only (inclusive ``[start, end]``
    rows, UBnormal's tracks file). ``read_masks`` keeps an object's pixels in exactly those frames,
    so masks and ``frame_labels`` agree; ``gt_tracks`` gives one track per range, numbered 0, 1, ...
    in order of object id, as UBnormal's ``create_tracks_for_tbdc_rbdc.py`` does.

Pixel geometry (blob boxes, centroids, IoU, region words) lives in `tvad.data.geometry`, file
helpers in `tvad.data.files`, statistics in `tvad.data.stats`.

Loaders return a `VideoList` (a plain list with `.skipped`): with ``strict=False`` bad items are
skipped, counted and reported there instead of raising `DataError`.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np

from tvad.data.geometry import id_map_geometry
from tvad.data.video import read_frames

log = logging.getLogger(__name__)


class DataError(ValueError):
    """A dataset item that cannot be used: missing, malformed or inconsistent. Names the file."""


# ------------------------------------------------------------------------------ skip reporting
@dataclass(frozen=True)
class Skipped:
    path: str  # the file or folder at fault
    reason: str  # what is wrong with it
    item: str = ""  # what was skipped: a video name, "row 3", ...


class VideoList(list):
    """A list of `Video` plus `.skipped`: the items a ``strict=False`` load left out, and why."""

    def __init__(self, videos: Iterable["Video"] = (), skipped: Iterable[Skipped] = ()):
        super().__init__(videos)
        self.skipped: list[Skipped] = list(skipped)

    def report(self) -> str:
        """One line per skipped item (empty string when nothing was skipped)."""
        return "\n".join(f"skipped {s.item or s.path}: {s.path}: {s.reason}" for s in self.skipped)


class Problems:
    """Collects bad input: raises `DataError` when strict, else records a `Skipped` and warns."""

    def __init__(self, strict: bool = True):
        self.strict = strict
        self.skipped: list[Skipped] = []

    def __call__(self, path: Any, reason: str, item: str = "") -> None:
        if self.strict:
            raise DataError(f"{path}: {reason}")
        self.skipped.append(Skipped(str(path), reason, item))
        log.warning("skipped %s: %s: %s", item or path, path, reason)

    def skip(self, err: DataError, item: str) -> None:
        """Record a `DataError` raised while building `item` (only reached when not strict)."""
        msg = str(err)
        path, _, reason = msg.partition(": ")
        self.skipped.append(Skipped(path, reason or msg, item))
        log.warning("skipped %s: %s", item, msg)


# ------------------------------------------------------------------------------ objects
@dataclass(eq=False)
class VideoObject:
    """One object (agent) of a video.

    boxes:     (T, 4) int64 ``[x1, y1, x2, y2]`` per frame (x2/y2 exclusive), -1 where not visible
    centroids: (T, 2) float64 ``(x, y)`` per frame (mean of its pixels), NaN where not visible
    anomaly_ranges: inclusive ``(start, end)`` frame ranges where its anomaly happens
    """

    id: int
    category: str = "person"  # "person", "cyclist", "skateboarder", "car", "bag", "object", ...
    attributes: dict = field(default_factory=dict)  # e.g. top_color, bottom_color, backpack, color
    boxes: np.ndarray = field(default_factory=lambda: np.zeros((0, 4), np.int64))
    anomalous: bool = False
    anomaly_type: str | None = None  # e.g. "running"; None when normal or unknown
    anomaly_ranges: list = field(default_factory=list)
    behaviour: str | None = None  # what it does: "walking", "driving", ..., or the anomaly type
    caption: str | None = None  # plain-English description over the video (who, looks, does, goes)
    centroids: np.ndarray | None = None
    extra: dict = field(default_factory=dict)  # source-specific fields (e.g. region words)

    @property
    def visible(self) -> np.ndarray:
        """(T,) bool: frames where the object has a box (or, without boxes, a centroid)."""
        if len(self.boxes) and (self.boxes[:, 0] >= 0).any():
            return self.boxes[:, 0] >= 0
        if self.centroids is not None:
            return ~np.isnan(self.centroids[:, 0])
        return self.boxes[:, 0] >= 0 if len(self.boxes) else np.zeros(0, bool)

    @property
    def frames(self) -> np.ndarray:
        """Frame indices where the object is visible."""
        return np.flatnonzero(self.visible)

    @property
    def anomaly_frames(self) -> np.ndarray:
        """Sorted frame indices covered by its anomaly ranges."""
        if not self.anomaly_ranges:
            return np.zeros(0, dtype=np.int64)
        return np.unique(np.concatenate([np.arange(s, e + 1) for s, e in self.anomaly_ranges]))

    def box(self, frame: int) -> tuple[int, int, int, int] | None:
        b = self.boxes[frame]
        return None if b[0] < 0 else tuple(int(v) for v in b)

    def to_dict(self) -> dict:
        """JSON-ready dict (boxes/centroids as lists with null where not visible)."""
        d = {"id": int(self.id), "category": self.category, "attributes": self.attributes,
             "anomalous": bool(self.anomalous), "anomaly_type": self.anomaly_type,
             "anomaly_ranges": [[int(s), int(e)] for s, e in self.anomaly_ranges],
             "behaviour": self.behaviour, "caption": self.caption,
             "boxes": [None if b[0] < 0 else [int(v) for v in b] for b in self.boxes]}
        if self.centroids is not None:
            d["centroids"] = [None if np.isnan(c[0]) else [round(float(c[0]), 2), round(float(c[1]), 2)]
                              for c in self.centroids]
        if self.extra:
            d["extra"] = self.extra
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "VideoObject":
        boxes = np.array([[-1, -1, -1, -1] if b is None else b for b in d.get("boxes", [])],
                         dtype=np.int64).reshape(-1, 4)
        cents = d.get("centroids")
        if cents is not None:
            cents = np.array([[np.nan, np.nan] if c is None else c for c in cents],
                             dtype=np.float64).reshape(-1, 2)
        return cls(id=int(d["id"]), category=d.get("category", "person"),
                   attributes=dict(d.get("attributes") or {}), boxes=boxes,
                   anomalous=bool(d.get("anomalous", False)), anomaly_type=d.get("anomaly_type"),
                   anomaly_ranges=[tuple(r) for r in d.get("anomaly_ranges", [])],
                   behaviour=d.get("behaviour"), caption=d.get("caption"), centroids=cents,
                   extra=dict(d.get("extra") or {}))


# ------------------------------------------------------------------------------ the record
class Video:
    """One video of any source, with lazy access to frames, masks and objects.

    Fields: name, path, num_frames, fps, size (H, W), frame_labels (int8 (T,)), split,
    source ("ubnormal", "synthetic", "shanghaitech", "shanghaitech_clips"), meta (dict of
    source-specific facts, e.g. scene, lighting, trajectory references), has_masks (False where
    the source has no pixel masks: `read_masks` then returns zeros), anomaly_rows ((R, 3) int64
    ``[object_id, start, end]``: the anomalous objects and their inclusive frame ranges).

    Subclasses supply `_read_id_maps` (all objects' id maps) and `_load_objects`.
    """

    source = "video"

    def __init__(self, name: str, path: str | os.PathLike, num_frames: int, fps: float,
                 size: tuple[int, int], frame_labels: np.ndarray | None = None, *,
                 split: str | None = None, anomaly_rows: np.ndarray | None = None,
                 meta: dict | None = None, has_masks: bool = True, source: str | None = None):
        self.name = str(name)
        self.path = Path(path)
        self.num_frames = int(num_frames)
        self.fps = float(fps)
        self.size = (int(size[0]), int(size[1]))
        self.split = split
        if source is not None:
            self.source = source
        self.anomaly_rows = (np.zeros((0, 3), np.int64) if anomaly_rows is None
                             else np.asarray(anomaly_rows, dtype=np.int64).reshape(-1, 3))
        if frame_labels is None:
            frame_labels = labels_from_rows(self.anomaly_rows, self.num_frames)
        fl = np.asarray(frame_labels).reshape(-1)
        if fl.shape[0] != self.num_frames:
            raise DataError(f"{self.path}: {fl.shape[0]} frame labels for {self.num_frames} frames")
        self.frame_labels = (fl != 0).astype(np.int8)
        self.meta = dict(meta or {})
        self.has_masks = bool(has_masks)
        self._objects: list[VideoObject] | None = None

    # -- basic facts ---------------------------------------------------------------------------
    def __repr__(self) -> str:
        return (f"{type(self).__name__}({self.name!r}, {self.num_frames} frames @ {self.fps:g} fps, "
                f"{self.size[0]}x{self.size[1]}, abnormal frames {int(self.frame_labels.sum())}, "
                f"split={self.split!r})")

    def __len__(self) -> int:
        return self.num_frames

    @property
    def label(self) -> int:
        """1 if any frame is abnormal."""
        return int(self.frame_labels.any())

    @property
    def anomaly_types(self) -> list[str]:
        """Sorted anomaly types of its anomalous objects (needs `objects`; [] when unknown)."""
        return sorted({o.anomaly_type for o in self.objects if o.anomalous and o.anomaly_type})

    def _indices(self, indices: Sequence[int] | None) -> np.ndarray:
        idx = (np.arange(self.num_frames) if indices is None
               else np.asarray(indices, dtype=np.int64).reshape(-1))
        bad = idx[(idx < 0) | (idx >= self.num_frames)]
        if bad.size:
            raise DataError(f"{self.path}: frame index {int(bad[0])} out of range "
                            f"(video {self.name} has {self.num_frames} frames)")
        return idx

    # -- pixels --------------------------------------------------------------------------------
    def read_frames(self, indices: Sequence[int] | None = None) -> np.ndarray:
        """uint8 (T, H, W, 3) RGB frames (all, or the given 0-based indices)."""
        idx = self._indices(indices)
        return read_frames(self.path, indices=idx)

    def read_masks(self, indices: Sequence[int] | None = None, all_objects: bool = False) -> np.ndarray:
        """int32 (T, H, W) object-id map: the anomalous objects in the frames of their anomaly
        ranges (0 elsewhere), or with ``all_objects=True`` every object in every frame."""
        idx = self._indices(indices)
        if not len(idx):
            return np.zeros((0, *self.size), np.int32)
        m = self._read_id_maps(idx).astype(np.int32, copy=False)
        if not all_objects:
            m = self._keep_anomalous(m, idx)
        return m

    def _read_id_maps(self, idx: np.ndarray) -> np.ndarray:
        return np.zeros((len(idx), *self.size), np.int32)

    def _keep_anomalous(self, m: np.ndarray, idx: np.ndarray) -> np.ndarray:
        rows = self.anomaly_rows
        out = np.zeros_like(m)
        for k, t in enumerate(idx):
            live = rows[(rows[:, 1] <= t) & (rows[:, 2] >= t), 0]
            if len(live):
                keep = np.isin(m[k], live)
                out[k][keep] = m[k][keep]
        return out

    # -- objects and tracks --------------------------------------------------------------------
    @property
    def objects(self) -> list[VideoObject]:
        """Every object of the video (loaded on first use, then cached)."""
        if self._objects is None:
            self._objects = self._load_objects()
        return self._objects

    def object(self, object_id: int) -> VideoObject:
        for o in self.objects:
            if o.id == object_id:
                return o
        raise KeyError(f"{self.name}: no object with id {object_id}")

    def _load_objects(self) -> list[VideoObject]:
        return []

    def _ranges_of(self, object_id: int) -> list[tuple[int, int]]:
        r = self.anomaly_rows
        return [(int(s), int(e)) for _, s, e in r[r[:, 0] == object_id]]

    def gt_tracks(self) -> np.ndarray:
        """(M, 6) int64 rows ``[track_id, frame, x1, y1, x2, y2]`` for RBDC/TBDC.

        One track per anomaly row, rows taken in order of object id (stable), track ids 0, 1, ...;
        per frame of the row's range the box of the object's largest blob (frames where it is not
        visible are left out).
        """
        rows = self.anomaly_rows[np.argsort(self.anomaly_rows[:, 0], kind="stable")]
        if not len(rows):
            return np.zeros((0, 6), np.int64)
        boxes = self._anomalous_boxes(rows)
        out = []
        for tid, (oid, s, e) in enumerate(rows):
            for t in range(int(s), int(e) + 1):
                b = boxes.get((int(oid), t))
                if b is not None:
                    out.append((tid, t, *b))
        return np.array(out, dtype=np.int64).reshape(-1, 6)

    def _anomalous_boxes(self, rows: np.ndarray) -> dict[tuple[int, int], tuple[int, int, int, int]]:
        """{(object id, frame): box} over the rows' ranges; from cached objects when loaded, else
        from the id maps of just those frames, in chunks."""
        if self._objects is not None:
            out = {}
            for oid, s, e in rows:
                try:
                    o = self.object(int(oid))
                except KeyError:
                    continue
                for t in range(int(s), int(e) + 1):
                    b = o.box(t)
                    if b is not None:
                        out[(int(oid), t)] = b
            return out
        frames = sorted({t for _, s, e in rows for t in range(int(s), int(e) + 1)})
        ids = sorted({int(o) for o in rows[:, 0]})
        out = {}
        for c in range(0, len(frames), 32):
            chunk = np.array(frames[c:c + 32])
            maps = self._read_id_maps(chunk)
            for k, t in enumerate(chunk):
                for oid, (box, _) in id_map_geometry(maps[k], ids).items():
                    out[(oid, int(t))] = box
        return out

    def summary(self) -> dict:
        """Flat facts for tables: name, split, source, frames, abnormal frames, types, objects."""
        objs = self.objects
        return {"name": self.name, "split": self.split, "source": self.source,
                "num_frames": self.num_frames, "fps": self.fps, "height": self.size[0],
                "width": self.size[1], "abnormal_frames": int(self.frame_labels.sum()),
                "label": self.label, "anomaly_types": ",".join(self.anomaly_types),
                "objects": len(objs), "anomalous_objects": sum(o.anomalous for o in objs)}


def labels_from_rows(rows: np.ndarray, num_frames: int) -> np.ndarray:
    """int8 (T,) frame labels: the union of the rows' inclusive [start, end] ranges."""
    lab = np.zeros(num_frames, np.int8)
    for _, s, e in np.asarray(rows, dtype=np.int64).reshape(-1, 3):
        lab[max(int(s), 0):min(int(e), num_frames - 1) + 1] = 1
    return lab


def ranges_from_frames(frames: Iterable[int]) -> list[tuple[int, int]]:
    """Sorted frame indices -> inclusive (start, end) runs."""
    f = sorted({int(x) for x in frames})
    out: list[tuple[int, int]] = []
    for t in f:
        if out and t == out[-1][1] + 1:
            out[-1] = (out[-1][0], t)
        else:
            out.append((t, t))
    return out
