"""From frame records to verified timelines (paper §3.3, steps 2 and 3): a clip's records
aggregated into per-target timelines with the ground truth's anomaly facts attached
(`clip_timelines`), and the mutual verification of the general and the anomaly-focused timelines
(`merge_timelines`)."""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from tvad.corpus.annotators import FrameRecord, object_box
from tvad.corpus.timelines import Sighting, Timeline, build_timelines
from tvad.data.geometry import box_iou


def records_to_sightings(records: Sequence[FrameRecord]) -> list[list[Sighting]]:
    """Per frame (in order), the usable instances as `Sighting`s; failed frames give none."""
    out = []
    for r in sorted(records, key=lambda r: r.frame):
        if not r.ok:
            continue
        dets = []
        for ins in r.instances:
            if ins.box is None and ins.center is None:
                continue
            dets.append(Sighting(frame=r.frame, box=ins.box, center=ins.center, category=ins.category,
                                  attributes=dict(ins.attributes), hint=ins.id))
        out.append(dets)
    return out


def clip_timelines(video: Any, records: Sequence[FrameRecord], *, fps: float | None = None) -> list[Timeline]:
    """Timelines of one clip from its frame records, with ground-truth anomaly facts attached when
    the annotator gave object ids (the oracle) or boxes that overlap the record's objects.

    A target seen in one frame only is dropped as spurious (`build_timelines`' min_length 2) unless
    every sighting carries an object id (ground truth) and that object is anomalous: a clip resampled
    to 1 fps often holds an anomalous object in one frame, and dropping it would leave an anomalous
    clip with no anomaly to talk about (a phase-B "No" under an abnormal label)."""
    dets = records_to_sightings(records)
    flat = [d for fr in dets for d in fr]
    hinted = bool(flat) and all(d.hint is not None for d in flat)
    tls = build_timelines(dets, frame_size=video.size, num_frames=int(video.num_frames), fps=fps,
                          min_length=1 if hinted else 2)
    objs = list(getattr(video, "objects", None) or [])
    kept = []
    for tl in tls:
        obj = _match_object(tl, objs)
        if obj is not None:
            tl.anomalous = bool(getattr(obj, "anomalous", False))
            tl.anomaly_type = getattr(obj, "anomaly_type", None)
            tl.behaviour = getattr(obj, "behaviour", None)
            if tl.anomalous:
                rng = getattr(obj, "anomaly_ranges", None) or []
                if rng:
                    tl.anomaly_span = (int(min(s for s, _ in rng)), int(max(e for _, e in rng)))
        if len(tl.frames) > 1 or tl.anomalous:
            kept.append(tl)
    for i, tl in enumerate(kept):
        tl.target = i + 1
    return kept


def _match_object(tl: Timeline, objs: Sequence[Any]) -> Any:
    if not objs:
        return None
    by_id = {getattr(o, "id", None): o for o in objs}
    if tl.source_ids and tl.source_ids[0] in by_id:
        return by_id[tl.source_ids[0]]
    if tl.boxes is None:
        return None
    best, best_iou = None, 0.3
    for o in objs:
        ious = []
        for f, b in zip(tl.frames, tl.boxes):
            ob = object_box(o, f)
            if ob is not None:
                ious.append(box_iou(b, ob))
        if ious and float(np.mean(ious)) > best_iou:
            best, best_iou = o, float(np.mean(ious))
    return best


def _overlap(a: Timeline, b: Timeline) -> float:
    """Mean box IoU (or centre proximity without boxes) over the frames both are visible."""
    if a.source_ids and b.source_ids and set(a.source_ids) & set(b.source_ids):
        return 1.0
    common = sorted(set(a.frames) & set(b.frames))
    if not common:
        return 0.0
    ia, ib = {f: i for i, f in enumerate(a.frames)}, {f: i for i, f in enumerate(b.frames)}
    vals = []
    for f in common:
        if a.boxes is not None and b.boxes is not None:
            vals.append(box_iou(a.boxes[ia[f]], b.boxes[ib[f]]))
        else:
            (x1, y1), (x2, y2) = a.centroids[ia[f]], b.centroids[ib[f]]
            vals.append(1.0 if np.hypot(x1 - x2, y1 - y2) < 0.05 * max(a.frame_size) else 0.0)
    return float(np.mean(vals)) * len(common) / max(len(b.frames), 1)


def merge_timelines(general: Sequence[Timeline], focus: Sequence[Timeline]) -> tuple[list[Timeline], list[Timeline]]:
    """Mark the general targets that the focus pass confirms as anomalous; return (general, anomaly).

    Each focus timeline is a high-confidence anomaly timeline. Its appearance is completed from the
    matching general target (a full-view look at the same object); unmatched focus timelines stay
    anomaly targets of their own. Anomaly targets are renumbered 1, 2, ... by entry.
    """
    general = list(general)
    anomalies: list[Timeline] = []
    for ft in focus:
        best, best_ov = None, 0.2
        for gt in general:
            ov = _overlap(gt, ft)
            if ov > best_ov:
                best, best_ov = gt, ov
        ft.anomalous = True
        if best is not None:
            best.anomalous = True
            for k, v in best.attributes.items():
                ft.attributes.setdefault(k, v)
            if ft.category in ("object", "") and best.category:
                ft.category = best.category
            ft.anomaly_type = ft.anomaly_type or best.anomaly_type
            ft.behaviour = ft.behaviour or best.behaviour
            ft.anomaly_span = ft.anomaly_span or best.anomaly_span
            ft.visible_before = best.entry < ft.entry
            ft.visible_after = best.exit > ft.exit
            if ft.visible_before:
                ft.enters_from = None
                ft.events = [e for e in ft.events if e.kind != "enter"]
            if ft.visible_after:
                ft.exits_to = None
                ft.events = [e for e in ft.events if e.kind != "exit"]
        anomalies.append(ft)
    for g in general:
        if g.anomalous is None:
            g.anomalous = False
    anomalies.sort(key=lambda t: (t.entry, t.centroids[0][0]))
    for i, t in enumerate(anomalies):
        t.target = i + 1
    return general, anomalies
