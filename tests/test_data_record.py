"""tvad.data.record: the Video record's generic parts, objects, geometry helpers, skip reports."""

from __future__ import annotations

import numpy as np
import pytest

from tvad.data import DataError, Video, VideoList, VideoObject, split_statistics
from tvad.data.record import (Problems, id_map_geometry, labels_from_rows, link_blobs,
                              objects_from_id_maps, ranges_from_frames)


class MemVideo(Video):
    """A Video whose id maps live in memory (what a loader subclass provides)."""

    source = "memory"

    def __init__(self, ids: np.ndarray, rows, **kw):
        super().__init__("mem", "/mem.mp4", len(ids), 10.0, ids.shape[1:], anomaly_rows=rows, **kw)
        self.ids = ids

    def _read_id_maps(self, idx):
        return self.ids[idx].astype(np.int32)

    def _load_objects(self):
        geo = objects_from_id_maps(((t, self.ids[t]) for t in range(self.num_frames)), self.num_frames)
        return [VideoObject(id=k, boxes=b, centroids=c, anomalous=bool(self._ranges_of(k)),
                            anomaly_ranges=self._ranges_of(k)) for k, (b, c) in geo.items()]


def _ids():
    m = np.zeros((5, 20, 30), np.uint8)
    for t in range(5):
        m[t, 2:10, 2 + t:8 + t] = 1
        m[t, 12:18, 20:28] = 2
    m[3, 0:2, 0:2] = 1  # a second, smaller blob of object 1
    return m


def test_generic_video_masks_objects_tracks():
    v = MemVideo(_ids(), [(1, 1, 3), (2, 4, 4), (1, 0, 0)])
    assert v.frame_labels.tolist() == [1, 1, 1, 1, 1] and v.label == 1
    m = v.read_masks()
    assert m.dtype == np.int32 and set(np.unique(m[4])) == {0, 2} and set(np.unique(m[2])) == {0, 1}
    assert (v.read_masks(all_objects=True) == _ids()).all()
    # rows sorted by object id (stable): (1,1,3), (1,0,0), (2,4,4) -> tracks 0, 1, 2
    g = v.gt_tracks()
    assert g[:, :2].tolist() == [[0, 1], [0, 2], [0, 3], [1, 0], [2, 4]]
    assert g[2].tolist() == [0, 3, 5, 2, 11, 10]  # largest blob only
    v2 = MemVideo(_ids(), [(1, 1, 3), (2, 4, 4), (1, 0, 0)])
    _ = v2.objects
    np.testing.assert_array_equal(v2.gt_tracks(), g)
    assert v.object(1).anomaly_ranges == [(1, 3), (0, 0)] and v.object(1).anomaly_frames.tolist() == [0, 1, 2, 3]
    with pytest.raises(KeyError):
        v.object(9)
    with pytest.raises(DataError, match="frame index 5 out of range"):
        v.read_masks([5])
    assert "mem" in repr(v) and v.summary()["anomalous_objects"] == 2
    with pytest.raises(DataError, match="3 frame labels for 5 frames"):
        Video("x", "/x.mp4", 5, 10.0, (4, 4), np.zeros(3))


def test_object_dict_round_trip():
    b = np.full((3, 4), -1, np.int64)
    b[1] = (1, 2, 5, 9)
    c = np.full((3, 2), np.nan)
    c[1] = (3.0, 5.5)
    o = VideoObject(4, "car", {"color": "red"}, b, True, "wrong_way", [(1, 1)], "wrong_way", "A red car.", c,
                    {"place": "road"})
    d = o.to_dict()
    assert d["boxes"] == [None, [1, 2, 5, 9], None] and d["centroids"][1] == [3.0, 5.5]
    o2 = VideoObject.from_dict(d)
    assert (o2.boxes == b).all() and np.allclose(o2.centroids, c, equal_nan=True)
    assert (o2.category, o2.attributes, o2.anomaly_ranges, o2.extra) == ("car", {"color": "red"}, [(1, 1)], {"place": "road"})
    assert o2.frames.tolist() == [1] and o2.box(0) is None and o2.box(1) == (1, 2, 5, 9)


def test_helpers():
    assert labels_from_rows([(1, 2, 3), (2, 3, 5)], 7).tolist() == [0, 0, 1, 1, 1, 1, 0]
    assert ranges_from_frames([5, 1, 2, 3, 7, 6]) == [(1, 3), (5, 7)]
    g = id_map_geometry(_ids()[3])
    assert g[1][0] == (5, 2, 11, 10) and g[2][0] == (20, 12, 28, 18)
    m = np.zeros((3, 10, 10), bool)
    m[0, 1:4, 1:4] = m[1, 1:4, 2:5] = m[2, 6:9, 6:9] = True
    regions, n = link_blobs(enumerate(m))
    assert [(t, tid) for t, tid, _, _ in regions] == [(0, 1), (1, 1), (2, 2)] and n == 2


def test_problems_and_statistics():
    p = Problems(strict=True)
    with pytest.raises(DataError, match="f.txt: bad"):
        p("f.txt", "bad")
    q = Problems(strict=False)
    q("f.txt", "bad", item="row 1")
    vl = VideoList([], q.skipped)
    assert len(vl.skipped) == 1 and vl.report() == "skipped row 1: f.txt: bad"
    a = MemVideo(_ids(), [(1, 1, 3)], split="train")
    b = MemVideo(_ids(), [], split="train")
    rows = split_statistics([a, b])
    assert rows == [{"split": "train", "videos": 2, "abnormal_videos": 1, "normal_videos": 1, "frames": 10,
                     "abnormal_frames": 3, "abnormal_frame_ratio": 0.3, "objects": 4, "anomalous_objects": 1,
                     "anomaly_types": ""}]
