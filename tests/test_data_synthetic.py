"""tvad.data.synthetic: generation in UBnormal's layout, round trip through the UBnormal loader,
open-set splits, determinism, agent sizes."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pytest

from tvad.data import DataError, synthetic, ubnormal
from tvad.data.synthetic import ANOMALY_TYPES, SPLIT_TYPES, SPLITS, plan, render_spec

NUM = {"pretrain": 3, "train": 3, "validation": 2, "test": 3, "test_seen": 2}
KW = dict(num_videos=NUM, seed=3, size=(224, 224), num_frames=16, fps=8.0)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> tuple[Path, float]:
    root = tmp_path_factory.mktemp("syn") / "ds"
    t0 = time.time()
    synthetic.generate(root, **KW)
    return root, time.time() - t0


def test_layout_on_disk(dataset):
    root, seconds = dataset
    assert seconds / sum(NUM.values()) < 2.0  # ~0.15 s per video here; the cpu preset is ~20 s
    meta = json.loads((root / "meta.json").read_text())
    assert meta["complete"] and meta["videos"] == 13 and meta["params"]["num_videos"] == NUM
    specs = plan(**KW)
    for split in SPLITS:
        word = "training" if split == "train" else split
        names = []
        for kind in ("abnormal", "normal"):
            p = root / "scripts" / f"{kind}_{word}_video_names.txt"
            assert p.exists(), p
            names += p.read_text().split()
        assert sorted(names) == sorted(s.name for s in specs if s.split == split)
    for s in specs:
        scene = root / f"Scene{s.scene}"
        ann = scene / f"{s.name}_annotations"
        assert (scene / f"{s.name}.mp4").exists() and (ann / f"{s.name}_objects.json").exists()
        assert sorted(p.name for p in ann.glob("*_gt.png")) == [f"{s.name}_{t:04d}_gt.png" for t in range(16)]
        assert (ann / f"{s.name}_tracks.txt").exists() == (s.kind == "abnormal")
        assert s.name.endswith("_fog") == s.fog
    table = ubnormal.read_object_names(root / "scripts" / "object_names_per_video.pkl")
    assert table and all(set(t.values()) <= {"car", "bicycle", "skateboard", "bag"} for t in table.values())
    # generating again with the same parameters is a no-op; other parameters need overwrite
    mt = (root / "meta.json").stat().st_mtime_ns
    synthetic.generate(root, **KW)
    assert (root / "meta.json").stat().st_mtime_ns == mt and synthetic.is_complete(root)
    with pytest.raises(DataError, match="overwrite"):
        synthetic.generate(root, **{**KW, "seed": 4})


def test_round_trip_through_the_ubnormal_loader(dataset):
    root, _ = dataset
    specs = {s.name: s for s in plan(**KW)}
    n_abnormal = 0
    for split in SPLITS:
        vids = synthetic.load(root, split)
        plain = ubnormal.load(root, split, check="fast")
        assert [v.name for v in vids] == [v.name for v in plain] and len(vids) == NUM[split]
        for v in vids:
            assert v.source == "synthetic" and v.split == split and v.meta["split"] == split
            r = render_spec(specs[v.name])  # what was rendered
            assert (v.num_frames, v.size, v.fps) == (16, (224, 224), 8.0)
            np.testing.assert_array_equal(v.read_masks(all_objects=True), r.ids)
            np.testing.assert_array_equal(v.frame_labels, r.labels)
            np.testing.assert_array_equal(v.anomaly_rows, r.rows)
            want = np.zeros_like(r.ids, dtype=np.int32)
            for oid, s, e in r.rows:
                want[s:e + 1][r.ids[s:e + 1] == oid] = oid
            np.testing.assert_array_equal(v.read_masks(), want)
            assert v.label == int(specs[v.name].kind == "abnormal")
            n_abnormal += v.label
            side = {o["id"]: o for o in r.objects}
            assert [o.id for o in v.objects] == sorted(side)
            for o in v.objects:
                d = side[o.id]
                # boxes measured from the pngs = boxes rendered (and written in the sidecar)
                assert [None if b[0] < 0 else list(b) for b in o.boxes.tolist()] == d["boxes"]
                assert (o.category, o.attributes, o.behaviour, o.caption) == \
                    (d["category"], d["attributes"], d["behaviour"], d["caption"])
                assert o.anomalous == d["anomalous"] and o.anomaly_type == d["anomaly_type"]
                assert [list(x) for x in o.anomaly_ranges] == d["anomaly_ranges"]
                assert o.caption and o.caption.endswith(".") and o.extra["phases"]
            # frames survive H.264 closely
            x = v.read_frames([0, 15]).astype(int)
            assert np.abs(x - r.frames[[0, 15]].astype(int)).mean() < 6
            g = v.gt_tracks()
            assert len(g) == sum(int(e - s + 1) for _, s, e in r.rows) - sum(
                int((r.ids[t] != oid).all()) for oid, s, e in r.rows for t in range(s, e + 1))
    assert n_abnormal >= 5


def test_open_set_splits(dataset):
    root, _ = dataset
    tr, va, te = set(SPLIT_TYPES["train"]), set(SPLIT_TYPES["validation"]), set(SPLIT_TYPES["test"])
    assert not (tr & va) and not (tr & te) and not (va & te) and len(tr | va | te) >= 8
    assert set(SPLIT_TYPES["test_seen"]) == tr and set(SPLIT_TYPES["pretrain"]) == set(ANOMALY_TYPES)
    for split in SPLITS:
        for v in synthetic.load(root, split, check="fast"):
            assert set(v.anomaly_types) <= set(SPLIT_TYPES[split])
            assert set(v.meta["anomaly_types"]) == set(v.anomaly_types)
    # the default (cpu preset) plan: every type in pretrain, both kinds in every split
    specs = plan(seed=0)
    for split in SPLITS:
        ss = [s for s in specs if s.split == split]
        assert {s.kind for s in ss} == {"abnormal", "normal"}
        assert {t for s in ss for t in s.anomaly_types} == set(SPLIT_TYPES[split])
    assert len({s.name for s in specs}) == len(specs) == 105  # test: 17 videos, 51 clips, 74 Yes/No turns (issue 19)


def test_every_anomaly_type_renders_and_agents_are_big_enough():
    for i, typ in enumerate(ANOMALY_TYPES):
        spec = synthetic.VideoSpec(f"abnormal_scene_1_scenario_{i}", "pretrain", "abnormal", 1 + i % 8, [typ],
                                   False, "day", 100 + i, (224, 224), 24, 8.0, 0)
        r = render_spec(spec)
        anom = [o for o in r.objects if o["anomalous"]]
        assert anom and all(o["anomaly_type"] == typ for o in anom)
        assert len(anom) == (2 if typ == "fighting" else 1)
        s, e = anom[0]["anomaly_ranges"][0]
        assert e - s + 1 >= 4 and r.labels[s:e + 1].all()
        on = [(a, b) for a, b, beh in anom[0]["phases"] if beh == typ]
        assert on and on[0][0] <= s and e <= on[-1][1], (typ, anom[0]["phases"], (s, e))
        words = {"running": "runs", "falling": "falls", "fighting": "fights", "loitering": "loiters",
                 "throwing": "throws", "jaywalking": "away from the zebra crossing", "wrong_way": "the wrong way",
                 "vehicle_on_walkway": "where cars are not allowed", "abandoned_object": "left unattended"}
        assert words[typ] in anom[0]["caption"], anom[0]["caption"]
        for o in r.objects:
            boxes = np.array([b for b in o["boxes"] if b is not None])
            h, w = boxes[:, 3] - boxes[:, 1], boxes[:, 2] - boxes[:, 0]
            inside = (boxes[:, 0] > 0) & (boxes[:, 1] > 0) & (boxes[:, 2] < 224) & (boxes[:, 3] < 224)
            if not inside.any():
                continue
            h, w = h[inside], w[inside]  # whole on screen: spans >= 28 px (2 ViT patches)
            # (median: another agent may pass in front for a frame or two)
            if o["category"] == "car":
                assert min(np.median(h), np.median(w)) >= 28, (typ, o["category"], h, w)
            elif o["category"] == "bag":
                assert np.median(w) >= 28
            elif o["behaviour"] != "falling":
                assert np.median(h) >= 28, (typ, o["category"], h)
        if typ == "abandoned_object":
            assert anom[0]["category"] == "bag" and r.objects[0]["left_object"] == anom[0]["id"]


def test_deterministic_for_a_seed():
    a, b = plan(**KW), plan(**KW)
    assert a == b and plan(**{**KW, "seed": 4}) != a
    ra, rb = render_spec(a[1]), render_spec(b[1])
    np.testing.assert_array_equal(ra.ids, rb.ids)
    np.testing.assert_array_equal(ra.frames, rb.frames)
    assert ra.objects == rb.objects


def test_statistics_tables(dataset):
    root, _ = dataset
    vids = [v for s in SPLITS for v in synthetic.load(root, s, check="fast")]
    rows = synthetic.split_statistics(vids)
    assert [r["split"] for r in rows] == list(SPLITS)
    for r in rows:
        assert r["videos"] == NUM[r["split"]] and 0 < r["abnormal_frame_ratio"] < 1
        assert r["frames"] == 16 * r["videos"]
    types = synthetic.type_statistics(vids)
    assert all(t["anomaly_type"] in SPLIT_TYPES[t["split"]] for t in types)
    beh = synthetic.behaviour_statistics(vids)
    assert {b["behaviour"] for b in beh} <= set(synthetic.BEHAVIOURS)
    for v in vids:  # phases: within the video, named from the behaviour vocabulary
        for o in v.objects:
            for s, e, b in o.extra["phases"]:
                assert 0 <= s <= e < v.num_frames and b in synthetic.BEHAVIOURS
            if o.anomalous:  # the anomaly's own phase covers its anomaly range
                on = [(s, e) for s, e, b in o.extra["phases"] if b == o.anomaly_type]
                r0, r1 = o.anomaly_ranges[0]
                assert on and on[0][0] <= r0 and r1 <= on[-1][1], (o.anomaly_type, on, o.anomaly_ranges)


def test_bad_arguments(tmp_path):
    with pytest.raises(ValueError, match="unknown split"):
        plan(num_videos={"trian": 3})
    with pytest.raises(ValueError, match="28 px"):
        synthetic.generate(tmp_path / "x", num_videos=1, size=(64, 64))
    (tmp_path / "y").mkdir()
    (tmp_path / "y" / "notes.txt").write_text("mine")
    with pytest.raises(DataError, match="not empty"):
        synthetic.generate(tmp_path / "y", num_videos=1)
