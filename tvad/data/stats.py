"""Dataset statistics as plain rows (lists of dicts, pandas-free): per split, per anomaly type,
per behaviour."""

from __future__ import annotations

from typing import Iterable

from tvad.data.record import Video


def split_statistics(videos: Iterable[Video]) -> list[dict]:
    """One row per split: videos, normal/abnormal videos, frames, abnormal frames and ratio,
    objects, anomalous objects, anomaly types. Pandas-free (a list of dicts)."""
    by: dict[str, list[Video]] = {}
    for v in videos:
        by.setdefault(str(v.split), []).append(v)
    rows = []
    for split, vs in by.items():
        frames = sum(v.num_frames for v in vs)
        ab = sum(int(v.frame_labels.sum()) for v in vs)
        objs = [o for v in vs for o in v.objects]
        rows.append({"split": split, "videos": len(vs),
                     "abnormal_videos": sum(v.label for v in vs),
                     "normal_videos": sum(1 - v.label for v in vs),
                     "frames": frames, "abnormal_frames": ab,
                     "abnormal_frame_ratio": round(ab / frames, 4) if frames else 0.0,
                     "objects": len(objs), "anomalous_objects": sum(o.anomalous for o in objs),
                     "anomaly_types": ",".join(sorted({t for v in vs for t in v.anomaly_types}))})
    return rows


def type_statistics(videos: Iterable[Video]) -> list[dict]:
    """One row per (split, anomaly type): videos, anomalous objects, abnormal frames of it."""
    acc: dict[tuple[str, str], dict] = {}
    for v in videos:
        for o in v.objects:
            if not (o.anomalous and o.anomaly_type):
                continue
            key = (str(v.split), o.anomaly_type)
            r = acc.setdefault(key, {"split": key[0], "anomaly_type": key[1], "videos": set(),
                                     "objects": 0, "abnormal_frames": 0})
            r["videos"].add(v.name)
            r["objects"] += 1
            r["abnormal_frames"] += len(o.anomaly_frames)
    rows = []
    for key in sorted(acc):
        r = dict(acc[key])
        r["videos"] = len(r["videos"])
        rows.append(r)
    return rows


def behaviour_statistics(videos: Iterable[Video]) -> list[dict]:
    """One row per (split, category, behaviour): number of objects."""
    acc: dict[tuple[str, str, str], int] = {}
    for v in videos:
        for o in v.objects:
            key = (str(v.split), o.category, str(o.behaviour))
            acc[key] = acc.get(key, 0) + 1
    return [{"split": s, "category": c, "behaviour": b, "objects": n}
            for (s, c, b), n in sorted(acc.items())]
