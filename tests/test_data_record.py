"""tvad.data.record: the Video record's generic parts, objects, frame ranges, skip reports."""

from __future__ import annotations

import numpy as np
import pytest

from tvad.data import DataError, Video, VideoList, VideoObject
from tvad.data.geometry import objects_from_id_maps
from tvad.data.record import Problems, labels_from_rows, ranges_from_frames


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


def test_frame_ranges():
    assert labels_from_rows([(1, 2, 3), (2, 3, 5)], 7).tolist() == [0, 0, 1, 1, 1, 1, 0]
    assert ranges_from_frames([5, 1, 2, 3, 7, 6]) == [(1, 3), (5, 7)]


def test_problems():
    p = Problems(strict=True)
    with pytest.raises(DataError, match="f.txt: bad"):
        p("f.txt", "bad")
    q = Problems(strict=False)
    q("f.txt", "bad", item="row 1")
    vl = VideoList([], q.skipped)
    assert len(vl.skipped) == 1 and vl.report() == "skipped row 1: f.txt: bad"
