"""tvad.corpus.dialogues: phase A and phase B dialogues of one clip from its timelines."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np

from tvad.corpus import clip_reference, timeline_from_centroids, validate_record
from tvad.corpus.dialogues import SYSTEM_PROMPT, dialogue_seed, phase_a_dialogue, phase_b_dialogue
from tvad.corpus.schema import SCHEMA_VERSION

CLIP = {"name": "c1", "source_video": "v1", "frame_indices": list(range(12)), "num_frames": 12, "fps": 1.0,
        "size": [120, 160], "label": 1, "path": "c1.mp4"}


def _tl(target, start, vel, category="person", anomalous=False, **attrs):
    cents = [(start[0] + vel[0] * t, start[1] + vel[1] * t) for t in range(12)]
    boxes = [(x - 5, y - 10, x + 5, y + 10) for x, y in cents]
    tl = timeline_from_centroids(cents, (120, 160), target=target, boxes=boxes, category=category)
    tl.attributes, tl.anomalous = dict(attrs), anomalous
    if anomalous:
        tl.anomaly_type, tl.behaviour, tl.anomaly_span = "running", "running", (2, 11)
    return tl


def _record(phase, d):
    return {"schema": SCHEMA_VERSION, "id": f"{phase}/train/c1", "phase": phase, "split": "train", "clip": CLIP,
            **d, "annotator": "oracle"}


def test_phase_a_asks_about_every_target_and_is_deterministic():
    tls = [_tl(1, (20, 60), (10, 0), top_color="red"), _tl(2, (140, 100), (-2, -6), top_color="blue")]
    d = phase_a_dialogue(CLIP, tls, seed=3)
    assert d == phase_a_dialogue(CLIP, tls, seed=3) and validate_record(_record("a", d)) == []
    assert d["messages"][0] == {"role": "system", "content": SYSTEM_PROMPT}
    kinds = [t["kind"] for t in d["turns"]]
    assert kinds[0] == "scene" and kinds.count("appearance_to_motion") == 2
    assert {t["truth"] for t in d["turns"] if t["type"] == "yes_no"} <= {"yes", "no"}
    assert [t["target"] for t in d["targets"]] == [1, 2]


def test_phase_b_follows_the_papers_order():
    normal, odd = _tl(1, (20, 60), (2, 0), top_color="blue"), _tl(2, (30, 100), (11, 0), anomalous=True, top_color="red")
    d = phase_b_dialogue(CLIP, [normal, odd], [odd], extra_judgement="no", seed=0)
    assert validate_record(_record("b", d)) == []
    assert [t["kind"] for t in d["turns"]] == ["judgement", "appearance", "trajectory", "anchors", "target_judgement"]
    assert d["turns"][0]["truth"] == "yes" and d["turns"][-1]["truth"] == "no" and "blue top" in d["messages"][-2]["content"]
    assert "frame 3 to frame 12" in d["messages"][8]["content"]  # the anomaly span, 1-based
    quiet = phase_b_dialogue(CLIP, [normal], [], seed=0)
    assert [t["kind"] for t in quiet["turns"]] == ["judgement", "scene"] and quiet["turns"][0]["truth"] == "no"


def test_clip_reference_and_seed():
    v = SimpleNamespace(name="c", num_frames=3, size=(8, 10), fps=2.0, frame_labels=np.array([0, 1, 0]),
                        path="c.mp4", meta={"source_video": "src", "frame_indices": [4, 5, 6], "dataset": "ubnormal"})
    assert clip_reference(v) == {"name": "c", "source_video": "src", "frame_indices": [4, 5, 6], "num_frames": 3,
                                 "fps": 2.0, "size": [8, 10], "label": 1, "path": "c.mp4", "source": "ubnormal"}
    assert dialogue_seed(0, "a", "c") == dialogue_seed(0, "a", "c") != dialogue_seed(1, "a", "c")
