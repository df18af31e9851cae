"""tvad.data.stats: per-split, per-type and per-behaviour rows of a list of videos."""

from __future__ import annotations

import numpy as np

from tvad.data import Video, VideoObject, behaviour_statistics, split_statistics, type_statistics


class ObjVideo(Video):
    def __init__(self, name, objects, rows, split):
        super().__init__(name, f"/{name}.mp4", 5, 10.0, (8, 8), anomaly_rows=rows, split=split)
        self._given = objects

    def _load_objects(self):
        return self._given


def _videos():
    run = VideoObject(1, "person", anomalous=True, anomaly_type="running", anomaly_ranges=[(1, 3)], behaviour="running")
    walk = VideoObject(2, "person", behaviour="walking")
    car = VideoObject(1, "car", behaviour="driving")
    return [ObjVideo("a", [run, walk], [(1, 1, 3)], "train"), ObjVideo("b", [car], [], "train"),
            ObjVideo("c", [VideoObject(3, "car", behaviour="driving")], [], "test")]


def test_split_statistics():
    rows = split_statistics(_videos())
    assert rows[0] == {"split": "train", "videos": 2, "abnormal_videos": 1, "normal_videos": 1, "frames": 10,
                       "abnormal_frames": 3, "abnormal_frame_ratio": 0.3, "objects": 3, "anomalous_objects": 1,
                       "anomaly_types": "running"}
    assert rows[1]["split"] == "test" and rows[1]["abnormal_frames"] == 0


def test_type_and_behaviour_statistics():
    assert type_statistics(_videos()) == [{"split": "train", "anomaly_type": "running", "videos": 1, "objects": 1,
                                           "abnormal_frames": 3}]
    beh = behaviour_statistics(_videos())
    assert beh == [{"split": "test", "category": "car", "behaviour": "driving", "objects": 1},
                   {"split": "train", "category": "car", "behaviour": "driving", "objects": 1},
                   {"split": "train", "category": "person", "behaviour": "running", "objects": 1},
                   {"split": "train", "category": "person", "behaviour": "walking", "objects": 1}]
    assert np.isfinite([r["objects"] for r in beh]).all()
