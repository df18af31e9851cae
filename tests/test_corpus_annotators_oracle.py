"""tvad.corpus.annotators.oracle: the ground truth as an annotator, with and without a focus mask."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np

from tvad.corpus.annotators import OracleAnnotator, object_box, object_centroid
from tvad.data import VideoObject


def _video():
    b1 = np.array([[2, 2, 10, 12], [-1, -1, -1, -1]], np.int64)
    b2 = np.array([[20, 5, 40, 15], [22, 5, 42, 15]], np.int64)
    objs = [VideoObject(1, "person", {"top_color": "red", "bag": None}, b1),
            VideoObject(2, "car", {"color": "blue"}, b2),
            VideoObject(3, "person", {}, np.full((2, 4), -1, np.int64), centroids=np.array([[5.0, 6.0], [np.nan, np.nan]]))]
    return SimpleNamespace(name="v", size=(30, 48), objects=objs)


def test_every_visible_object_with_its_box_and_attributes():
    rec = OracleAnnotator().describe_frame(None, "p", video=_video(), frame=0, prompt_hash="h")
    assert rec.ok and rec.view == "full" and rec.video == "v" and rec.frame == 0 and rec.attempts == 1
    got = [(i.id, i.category, i.attributes, i.box, i.center) for i in rec.instances]
    assert got == [(1, "person", {"top_color": "red"}, (2.0, 2.0, 10.0, 12.0), None),
                   (2, "car", {"color": "blue"}, (20.0, 5.0, 40.0, 15.0), None),
                   (3, "person", {}, None, (5.0, 6.0))]  # centroid-only ground truth
    assert [i.id for i in OracleAnnotator().describe_frame(None, "p", video=_video(), frame=1).instances] == [2]


def test_focus_keeps_the_objects_inside_the_mask():
    ids = np.zeros((30, 48), np.int32)
    ids[5:15, 20:40] = 2
    rec = OracleAnnotator().describe_frame(None, "p", video=_video(), frame=0, focus=ids)
    assert rec.view == "focus" and [i.id for i in rec.instances] == [2]
    rec = OracleAnnotator().describe_frame(None, "p", video=_video(), frame=0, focus=ids > 0)
    assert [i.id for i in rec.instances] == [2]
    rec = OracleAnnotator().describe_frame(None, "p", video=None, frame=0)
    assert rec.status == "request_failed"


def test_object_accessors():
    o = _video().objects[0]
    assert object_box(o, 0) == (2.0, 2.0, 10.0, 12.0) and object_box(o, 1) is None and object_box(o, 5) is None
    assert object_box({"boxes": {"3": [0, 0, 4, 4]}}, 3) == (0.0, 0.0, 4.0, 4.0)
    assert object_centroid(_video().objects[2], 0) == (5.0, 6.0) and object_centroid(o, 0) is None
