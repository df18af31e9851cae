"""The ground truth as an annotator (`OracleAnnotator`, "oracle"): a record's objects, their
category, attributes and box in the frame; and the object accessors it reads them with."""

from __future__ import annotations

import time
from typing import Any, Mapping

import numpy as np

from tvad.corpus.annotators.base import Instance, FrameRecord, new_record


class OracleAnnotator:
    """Ground truth as an annotator: every object of the record visible in the frame.

    With `focus` (an anomaly id map or a boolean mask for the frame), only the objects inside it
    are reported: what an LVLM sees when everything else is blurred. Deterministic.
    """

    name = "oracle"
    needs_pixels = False

    def describe_frame(self, image, prompt, *, video=None, frame=None, focus=None, prompt_hash="") -> FrameRecord:
        t0 = time.perf_counter()
        rec = new_record(self.name, video, frame, focus, prompt_hash)
        if video is None or frame is None:
            rec.status, rec.error = "request_failed", "the oracle needs the video record and the frame index"
            return rec
        size = tuple(int(v) for v in video.size)
        objs = video.objects or {}
        focus_ids: set | None = None
        focus_bool = None
        if focus is not None:
            f = np.asarray(focus)
            if f.dtype == bool:
                focus_bool = f
            else:
                focus_ids = {int(v) for v in np.unique(f) if v != 0}
        for oid, obj in (objs.items() if isinstance(objs, dict) else enumerate(objs)):
            box = object_box(obj, int(frame))
            oid_ = getattr(obj, "id", oid)
            if box is None:
                c = object_centroid(obj, int(frame))
                if c is not None and focus is None:  # centroid-only ground truth (no boxes)
                    attrs = {str(k): str(v) for k, v in (getattr(obj, "attributes", None) or {}).items()
                             if v not in (None, "")}
                    rec.instances.append(Instance(str(getattr(obj, "category", "object")), attrs, None, oid_, c))
                elif c is not None and focus_ids is not None and int(oid_) in focus_ids:
                    rec.instances.append(Instance(str(getattr(obj, "category", "object")), {}, None, oid_, c))
                continue
            if focus_ids is not None and int(oid_) not in focus_ids:
                continue
            if focus_bool is not None:
                x1, y1, x2, y2 = (int(round(v)) for v in box)
                region = focus_bool[max(y1, 0):max(y2, 0), max(x1, 0):max(x2, 0)]
                if region.size == 0 or region.mean() < 0.2:
                    continue
            x1, y1, x2, y2 = box
            h, w = size
            x1, y1, x2, y2 = max(x1, 0.0), max(y1, 0.0), min(x2, float(w)), min(y2, float(h))
            if x2 - x1 < 1 or y2 - y1 < 1:
                rec.warnings.append(f"object {oid_}: box outside the frame, dropped")
                continue
            attrs = {str(k): str(v) for k, v in (getattr(obj, "attributes", None) or {}).items() if v not in (None, "")}
            rec.instances.append(Instance(str(getattr(obj, "category", "object")), attrs, (x1, y1, x2, y2), oid_))
        rec.attempts = 1
        rec.elapsed_s = time.perf_counter() - t0
        return rec


def object_box(obj: Any, frame: int) -> tuple[float, float, float, float] | None:
    """An object's box at `frame` (x1 y1 x2 y2) or None; boxes may be a dict {frame: box} or a
    per-frame sequence/array with None/NaN rows where the object is absent."""
    boxes = getattr(obj, "boxes", None)
    if boxes is None and isinstance(obj, Mapping):
        boxes = obj.get("boxes")
    if boxes is None:
        return None
    if isinstance(boxes, Mapping):
        b = boxes.get(frame, boxes.get(str(frame)))
    else:
        if frame < 0 or frame >= len(boxes):
            return None
        b = boxes[frame]
    if b is None:
        return None
    b = np.asarray(b, dtype=float).reshape(-1)
    if b.size != 4 or not np.all(np.isfinite(b)) or b[2] <= b[0] or b[3] <= b[1]:
        return None
    return tuple(float(v) for v in b)


def object_centroid(obj: Any, frame: int) -> tuple[float, float] | None:
    c = getattr(obj, "centroids", None)
    if c is None or frame < 0 or frame >= len(c):
        return None
    c = np.asarray(c[frame], dtype=float).reshape(-1)
    return None if c.size != 2 or not np.all(np.isfinite(c)) else (float(c[0]), float(c[1]))
