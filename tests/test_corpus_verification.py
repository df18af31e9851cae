"""tvad.corpus.verification: timelines of a clip from its frame records, and the mutual verification
of the general and the anomaly-focused timelines."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np

from tvad.corpus.annotators import FrameRecord, Instance
from tvad.corpus.verification import clip_timelines, merge_timelines, records_to_sightings
from tvad.data import VideoObject


def _records(view, ids):
    recs = []
    for t in range(6):
        ins = [Instance("person", {"top_color": "red"}, (10 + 5 * t, 20, 20 + 5 * t, 40), 1)]
        if 2 in ids:
            ins.append(Instance("car", {"color": "blue"}, (100, 50, 130, 70), 2))
        recs.append(FrameRecord("v", t, "oracle", "h", view, instances=[i for i in ins if i.id in ids]))
    recs.append(FrameRecord("v", 6, "oracle", "h", view, status="invalid_answer", error="garbage"))
    return recs


def _video():
    b1 = np.array([[10 + 5 * t, 20, 20 + 5 * t, 40] for t in range(7)], np.int64)
    b2 = np.array([[100, 50, 130, 70]] * 7, np.int64)
    return SimpleNamespace(name="v", size=(90, 160), num_frames=7, objects=[
        VideoObject(1, "person", boxes=b1, anomalous=True, anomaly_type="running", anomaly_ranges=[(1, 4)],
                    behaviour="running"),
        VideoObject(2, "car", boxes=b2, behaviour="driving")])


def test_records_to_sightings_skips_failed_frames():
    s = records_to_sightings(_records("full", {1, 2}))
    assert len(s) == 6 and [len(f) for f in s] == [2] * 6 and s[0][0].hint == 1 and s[0][0].center == (15.0, 30.0)


def test_ground_truth_attached_and_focus_confirms_the_anomaly():
    general = clip_timelines(_video(), _records("full", {1, 2}))
    assert [(t.category, t.anomalous, t.anomaly_span) for t in general] == [("person", True, (1, 4)),
                                                                            ("car", False, None)]
    focus = clip_timelines(_video(), _records("focus", {1}))
    focus[0].attributes = {}
    general, anomalies = merge_timelines(general, focus)
    assert len(anomalies) == 1 and anomalies[0].target == 1 and anomalies[0].anomalous
    assert anomalies[0].attributes == {"top_color": "red"}  # completed from the full view
    assert [g.anomalous for g in general] == [True, False]
