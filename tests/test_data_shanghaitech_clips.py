"""tvad.data.shanghaitech_clips: the authors' released clip layout vs. the converted excerpt.

The three real clips and ``annotations.json`` live beside the repository (never copied in); the
test builds a tiny tree in the released layout from them (symlinked clips, labels.csv,
track.json, dataset_track_zh_en.json, one mask file) and checks both loaders agree.
"""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path

import numpy as np
import pytest

from tvad.data import DataError, Video
from tvad.data.shanghaitech_clips import load, parse_clip_name, parse_region
from tvad.data.video import write_video

NORMAL = "02_0001-000_023"


@pytest.fixture(scope="module")
def shared(shared_clips) -> Path:
    """conftest's `shared_clips`: skipped, naming the folder, in a clone without ../shared."""
    return shared_clips


def build_released(root: Path, shared: Path, with_mask: bool = False) -> Path:
    ann = json.loads((shared / "annotations.json").read_text())
    (root / "videos").mkdir(parents=True)
    (root / "dataset").mkdir()
    labels, track, refs = [], {}, {}
    for name, a in ann.items():
        (root / "videos" / f"{name}.mp4").symlink_to(shared / a["file"])
        labels.append((f"{name}.mp4", "有异常"))
        ent = {"size": a["frame_size_hw"], "frame number": a["num_frames"],
               "object number": len(a["anomalous_object_tracks"])}
        for oid, entries in a["anomalous_object_tracks"].items():
            ent[f"object {oid}"] = [None if e is None else f"{e['region']}_({e['centroid_xy'][0]},{e['centroid_xy'][1]})"
                                    for e in entries]
        track[f"{name}.npy"] = ent
        refs[f"{name}.npy"] = [f"目标{i}向右移动。" for i in range(3)] + a["trajectory_descriptions_en"]
    # one normal clip (a tiny video of our own): label 没有异常, no objects, no references
    write_video(root / "videos" / f"{NORMAL}.mp4", np.full((24, 32, 48, 3), 80, np.uint8), 24)
    labels.append((f"{NORMAL}.mp4", "没有异常"))
    track[f"{NORMAL}.npy"] = {"size": [32, 48], "frame number": 24, "object number": 0}
    refs[f"{NORMAL}.npy"] = []
    with open(root / "dataset" / "labels.csv", "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["video", "description"])
        w.writerows(labels)
    (root / "dataset" / "track.json").write_text(json.dumps(track, ensure_ascii=False, indent=1))
    (root / "dataset" / "dataset_track_zh_en.json").write_text(json.dumps(refs, ensure_ascii=False, indent=1))
    if with_mask:  # masks for 01_0028-288_311: a disc around each object's centroid
        name = "01_0028-288_311"
        m = np.zeros((24, 476, 868), np.uint8)
        yy, xx = np.mgrid[0:476, 0:868]
        for entries in ann[name]["anomalous_object_tracks"].values():
            for t, e in enumerate(entries):
                if e is not None:
                    x, y = e["centroid_xy"]
                    m[t][(xx - x) ** 2 + (yy - y) ** 2 <= 36] = 1
        (root / "dataset" / "masks").mkdir()
        np.save(root / "dataset" / "masks" / f"{name}.npy", m)
    return root


def test_names_and_regions():
    assert parse_clip_name("01_0014-168_191") == ("01_0014", 168, 191)
    assert parse_clip_name("01_0014-168_191.mp4") == ("01_0014", 168, 191)
    assert parse_region("top-right_(580,87)") == ("top-right", 580.0, 87.0)
    assert parse_region(None) is None
    with pytest.raises(DataError, match="bad track entry"):
        parse_region("left 12 3", "track.json")
    with pytest.raises(DataError, match="not a clip name"):
        parse_clip_name("clip7")


def test_released_layout_agrees_with_the_excerpt(shared, tmp_path):
    ann = json.loads((shared / "annotations.json").read_text())
    ex = load(shared)
    rel = load(build_released(tmp_path / "released", shared))
    assert [v.name for v in ex] == sorted(ann)
    assert [v.name for v in rel] == sorted(ann) + [NORMAL]
    for a, b in zip(ex, rel):
        assert isinstance(a, Video) and a.name == b.name and a.source == "shanghaitech_clips"
        assert (a.num_frames, a.size) == (b.num_frames, b.size) == (24, (476, 868))
        assert a.fps == b.fps > 0
        assert a.frame_labels.tolist() == b.frame_labels.tolist()
        assert a.meta["source_video"] == b.meta["source_video"] == a.name.split("-")[0]
        first, last = (int(x) for x in a.name.split("-")[1].split("_"))
        assert (b.meta["first_frame"], b.meta["last_frame"], b.meta["label"]) == (first, last, "abnormal")
        assert a.meta["trajectory_descriptions_en"] == b.meta["trajectory_descriptions_en"] \
            == ann[a.name]["trajectory_descriptions_en"]
        assert a.meta["trajectory_descriptions_zh"] == [] and len(b.meta["trajectory_descriptions_zh"]) == 3
        assert [o.id for o in a.objects] == [o.id for o in b.objects] == [int(k) for k in ann[a.name]["anomalous_object_tracks"]]
        for oa, ob in zip(a.objects, b.objects):
            entries = ann[a.name]["anomalous_object_tracks"][str(oa.id)]
            want = np.array([[np.nan, np.nan] if e is None else e["centroid_xy"] for e in entries], float)
            np.testing.assert_array_equal(oa.centroids, want)
            np.testing.assert_array_equal(ob.centroids, want)
            assert oa.extra["regions"] == ob.extra["regions"] == [None if e is None else e["region"] for e in entries]
            assert oa.anomalous and oa.anomaly_ranges == ob.anomaly_ranges
            assert (oa.boxes == -1).all()  # no masks: centroids only
        assert not a.has_masks and a.read_masks([0]).max() == 0
    np.testing.assert_array_equal(ex[0].read_frames([0, 23]), rel[0].read_frames([0, 23]))
    # the second object of 03_0031 appears at frame 12 (1-based): 0-based 11..22
    assert ex[2].object(2).anomaly_ranges == [(11, 22)]
    n = rel[-1]
    assert n.meta["label"] == "normal" and n.frame_labels.sum() == 0 and n.objects == [] and n.size == (32, 48)
    assert n.meta["trajectory_descriptions_en"] == []


def test_masks_when_present(shared, tmp_path):
    vids = load(build_released(tmp_path / "released", shared, with_mask=True))
    v = next(x for x in vids if x.name == "01_0028-288_311")
    assert v.has_masks and v.meta["mask_file"].endswith("01_0028-288_311.npy")
    m = v.read_masks([0, 1])
    assert m.shape == (2, 476, 868) and m.dtype == np.int32
    assert set(np.unique(m[0])) == {0, 1} and set(np.unique(m[1])) == {0, 1, 2}  # object 2 from frame 2
    assert m[1, 257, 385] == 1 and m[1, 280, 443] == 2
    o1 = v.object(1)
    assert o1.box(0) == (403, 263, 416, 276)
    assert v.frame_labels.tolist() == [1] * 24
    assert v.gt_tracks()[:1].tolist() == [[0, 0, 403, 263, 416, 276]]


@pytest.mark.parametrize("case,match", [
    ("bad_label", "description '可能' is neither"),
    ("no_entry", "no entry '01_0014-168_191.npy'"),
    ("frame_number", "frame number 30 does not match the clip's 24"),
    ("missing_video", "no such video file"),
    ("bad_entry", "bad track entry"),
])
def test_bad_input(shared, tmp_path, case, match):
    root = build_released(tmp_path / "released", shared)
    track_p, labels_p = root / "dataset" / "track.json", root / "dataset" / "labels.csv"
    track = json.loads(track_p.read_text())
    key = "01_0014-168_191.npy"
    if case == "bad_label":
        labels_p.write_text(labels_p.read_text(encoding="utf-8").replace("有异常", "可能", 1), encoding="utf-8")
    elif case == "no_entry":
        del track[key]
    elif case == "frame_number":
        track[key]["frame number"] = 30
    elif case == "missing_video":
        (root / "videos" / "01_0014-168_191.mp4").unlink()
    elif case == "bad_entry":
        track[key]["object 1"][3] = "left(1,2)"
    track_p.write_text(json.dumps(track, ensure_ascii=False))
    with pytest.raises(DataError, match=re.escape(match)):
        load(root)
    vids = load(root, strict=False)
    assert len(vids) == 3 and len(vids.skipped) == 1 and vids.skipped[0].item == "01_0014-168_191"
