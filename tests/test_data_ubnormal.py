"""tvad.data.ubnormal on tiny trees in UBnormal's official layout, built here (64x64, 6 frames)."""

from __future__ import annotations

import os
import pickle
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tvad.data import DataError, Video
from tvad.data.geometry import largest_blob_box
from tvad.data.ubnormal import convert_object_names, load, parse_tracks, read_object_names, scene_of
from tvad.data.video import write_video

T, H, W = 6, 64, 64


def _ids_a() -> np.ndarray:
    """abnormal_scene_1_scenario_1: object 1 moves right; object 2 has two blobs in frame 2
    (a 10x10 square and a thin 12x12 L whose box is larger); object 3 appears from frame 3."""
    m = np.zeros((T, H, W), np.uint8)
    for t in range(T):
        m[t, 10:30, 4 + 3 * t:12 + 3 * t] = 1
    for t in range(1, 5):
        m[t, 40:50, 40:50] = 2
    m[2, 30:42, 20] = 2  # the L: 12 rows high, 1 px wide ...
    m[2, 41, 20:32] = 2  # ... and 12 px long at the bottom
    for t in range(3, T):
        m[t, 52:60, 2:30] = 3
    return m


def _ids_b() -> np.ndarray:
    m = np.zeros((T, H, W), np.uint8)
    for t in range(T):
        m[t, 5:25, 30:40] = 1
        m[t, 30:44, 10 + t:20 + t] = 2
    return m


def _ids_normal(shift: int) -> np.ndarray:
    m = np.zeros((T, H, W), np.uint8)
    for t in range(T):
        m[t, 20:40, 5 + shift + 2 * t:15 + shift + 2 * t] = 4
        m[t, 2:10, 40:60] = 7
    return m


def _write(root: Path, name: str, ids: np.ndarray, tracks: str | None = None, new_tracks: str | None = None,
           fps: float = 30.0) -> Path:
    scene = root / f"Scene{scene_of(name)}"
    ann = scene / f"{name}_annotations"
    ann.mkdir(parents=True, exist_ok=True)
    rgb = np.stack([np.full(ids.shape, 90, np.uint8), (ids * 30).astype(np.uint8),
                    (200 - ids * 20).astype(np.uint8)], -1)
    write_video(scene / f"{name}.mp4", rgb, fps)
    for t in range(len(ids)):
        Image.fromarray(ids[t], mode="L").save(ann / f"{name}_{t:04d}_gt.png")
    if tracks is not None:
        (ann / f"{name}_tracks.txt").write_text(tracks)
    if new_tracks is not None:
        (ann / f"{name}_new_tracks.txt").write_text(new_tracks)
    return ann


A, B = "abnormal_scene_1_scenario_1", "abnormal_scene_2_scenario_1_fog"
N1, N2 = "normal_scene_17_scenario_3_1", "normal_scene_1_scenario1_10"  # real irregular names


def build(root: Path, split_word: str = "test") -> Path:
    _write(root, A, _ids_a(), tracks="1,1,3\n")  # a single row
    # _new_tracks.txt is preferred; rows in float form as np.savetxt writes them
    _write(root, B, _ids_b(), tracks="1,0,1\n",
           new_tracks="2.000000000000000000e+00,2.000000000000000000e+00,2.000000000000000000e+00\n1,4,5\n")
    _write(root, N1, _ids_normal(0))
    _write(root, N2, _ids_normal(10))
    s = root / "scripts"
    s.mkdir(parents=True, exist_ok=True)
    (s / f"abnormal_{split_word}_video_names.txt").write_text(f"{A}\n{B}\n")
    (s / f"normal_{split_word}_video_names.txt").write_text(f"{N1}\n{N2}\n")
    # the official class table: ids not in it are persons; numpy keys must load too
    (s / "object_names_per_video.pkl").write_bytes(pickle.dumps({A: {np.int64(2): "bicycle", 3: "car"},
                                                                  N1: {7: "motorcycle"}}))
    return root


@pytest.fixture()
def tree(tmp_path) -> Path:
    return build(tmp_path / "ub")


def test_scene_of_irregular_names():
    assert scene_of("normal_scene_1_scenario1_10") == "1"
    assert scene_of("normal_scene_17_scenario_3_1") == "17"
    assert scene_of("abnormal_scene_4_scenario_1_fire") == "4"
    with pytest.raises(DataError, match="not a UBnormal video name"):
        scene_of("video_3")


def test_load_every_field(tree):
    vids = load(tree, "test")
    assert [v.name for v in vids] == [A, B, N1, N2] and not vids.skipped
    a, b, n1, n2 = vids
    assert all(isinstance(v, Video) for v in vids)
    assert a.path == tree / "Scene1" / f"{A}.mp4" and n1.path == tree / "Scene17" / f"{N1}.mp4"
    assert n2.path == tree / "Scene1" / f"{N2}.mp4"
    for v in vids:
        assert (v.num_frames, v.size, round(v.fps)) == (T, (H, W), 30) and v.split == "test"
        x = v.read_frames([0, 5])
        assert x.shape == (2, H, W, 3) and x.dtype == np.uint8
        assert v.frame_labels.dtype == np.int8 and v.frame_labels.shape == (T,)
    # frame labels = union of the track ranges; the single row parses
    assert a.frame_labels.tolist() == [0, 1, 1, 1, 0, 0]
    assert b.frame_labels.tolist() == [0, 0, 1, 0, 1, 1]  # from _new_tracks.txt, not _tracks.txt
    assert n1.frame_labels.sum() == 0 and n1.label == 0 and a.label == 1
    assert a.anomaly_rows.tolist() == [[1, 1, 3]]

    # masks: anomalous objects only, only in their ranges; all objects on request
    ids = _ids_a()
    m = a.read_masks()
    assert m.dtype == np.int32 and m.shape == (T, H, W)
    want = np.where((ids == 1) & np.isin(np.arange(T), [1, 2, 3])[:, None, None], 1, 0)
    np.testing.assert_array_equal(m, want)
    np.testing.assert_array_equal(a.read_masks(all_objects=True), ids)
    np.testing.assert_array_equal(a.read_masks([2, 0], all_objects=True), ids[[2, 0]])
    assert n1.read_masks().max() == 0 and n1.read_masks(all_objects=True).max() == 7

    # objects: ids, classes from the table (persons otherwise), boxes, anomaly
    objs = {o.id: o for o in a.objects}
    assert sorted(objs) == [1, 2, 3]
    assert (objs[1].category, objs[2].category, objs[3].category) == ("person", "cyclist", "car")
    assert objs[1].anomalous and objs[1].anomaly_ranges == [(1, 3)]
    assert not objs[2].anomalous and objs[2].anomaly_ranges == [] and objs[2].anomaly_type is None
    assert objs[1].boxes.shape == (T, 4) and objs[1].box(0) == (4, 10, 12, 30)  # exclusive x2, y2
    assert objs[1].box(5) == (19, 10, 27, 30)
    assert objs[2].box(0) is None and objs[2].frames.tolist() == [1, 2, 3, 4]
    assert objs[2].box(1) == (40, 40, 50, 50)
    assert objs[2].box(2) == (20, 30, 32, 42)  # the L: larger box wins over more pixels
    assert objs[3].frames.tolist() == [3, 4, 5]
    assert objs[1].centroids[0].tolist() == [7.5, 19.5]
    assert {o.id: o.category for o in n1.objects} == {4: "person", 7: "motorcycle"}

    # GT tracks: one per row, ordered by object id, boxes of the largest blob
    np.testing.assert_array_equal(a.gt_tracks(), [[0, 1, 7, 10, 15, 30], [0, 2, 10, 10, 18, 30],
                                                  [0, 3, 13, 10, 21, 30]])
    gb = b.gt_tracks()
    assert gb.dtype == np.int64 and gb.shape == (3, 6)
    np.testing.assert_array_equal(gb, [[0, 4, 30, 5, 40, 25], [0, 5, 30, 5, 40, 25], [1, 2, 12, 30, 22, 44]])
    assert n1.gt_tracks().shape == (0, 6)
    # the same tracks whether the objects were loaded first or not
    b2 = load(tree, "test")[1]
    _ = b2.objects
    np.testing.assert_array_equal(b2.gt_tracks(), gb)


def test_largest_blob_is_by_box_area():
    m = np.zeros((20, 20), bool)
    m[0:5, 0:5] = True  # 25 px, box 25
    m[10, 8:20] = True  # 12 px, box 12
    m[12:19, 2] = True  # 7 px, box 7
    assert largest_blob_box(m) == (0, 0, 5, 5)
    m[10:20, 19] = True  # the line becomes an L with box 12 x 10 = 120
    assert largest_blob_box(m) == (8, 10, 20, 20)
    assert largest_blob_box(np.zeros((4, 4), bool)) is None


def test_class_table_restricted_and_converted(tree, tmp_path):
    pkl = tree / "scripts" / "object_names_per_video.pkl"
    assert read_object_names(pkl)[A] == {2: "bicycle", 3: "car"}
    js = convert_object_names(pkl)
    assert js.suffix == ".json" and read_object_names(js) == read_object_names(pkl)
    # the JSON conversion is preferred once it exists, and loads the same classes
    assert {o.id: o.category for o in load(tree, "test", check="fast")[0].objects} == {1: "person", 2: "cyclist", 3: "car"}

    class Evil:
        def __reduce__(self):
            return (os.system, ("echo should-never-run",))

    bad = tmp_path / "evil.pkl"
    bad.write_bytes(pickle.dumps({A: Evil()}))
    with pytest.raises(DataError, match="evil.pkl: not a plain class-table pickle"):
        read_object_names(bad)


def test_parse_tracks_formats_and_bad_rows(tmp_path):
    p = tmp_path / "v_tracks.txt"
    p.write_text("3,10,20")  # single row, no newline
    assert parse_tracks(p).tolist() == [[3, 10, 20]]
    p.write_text("\n 1 , 0 , 2 \n\n2 5 7\n")
    assert parse_tracks(p, num_frames=8).tolist() == [[1, 0, 2], [2, 5, 7]]
    p.write_text("1,0,2\n1,5\n")
    with pytest.raises(DataError, match=r"v_tracks.txt: line 2: expected 3 fields"):
        parse_tracks(p)
    for row, msg in (("x,1,2", "not numbers"), ("1,4,2", "invalid row"), ("1,0.5,2", "non-integer"),
                     ("1,0,9", "end frame 9 beyond the video")):
        p.write_text(row + "\n")
        with pytest.raises(DataError, match=f"v_tracks.txt: line 1: {msg}"):
            parse_tracks(p, num_frames=6)


def test_bad_tracks_rows_strict_and_skipped(tree):
    ann = tree / "Scene1" / f"{A}_annotations"
    (ann / f"{A}_tracks.txt").write_text("1,1\nx,2,3\n1,5,99\n2,3,1\n1,1,3\n")
    with pytest.raises(DataError, match=f"{A}_tracks.txt: line 1"):
        load(tree, "test")
    vids = load(tree, "test", strict=False)
    assert len(vids) == 4 and len(vids.skipped) == 4
    assert vids[0].anomaly_rows.tolist() == [[1, 1, 3]]
    assert all(s.path.endswith(f"{A}_tracks.txt") for s in vids.skipped)
    assert "line 3" in vids.report()


@pytest.mark.parametrize("case,match", [
    ("missing_split", "normal_test_video_names.txt: missing split file"),
    ("lacks_frames", "annotation folder lacks frames"),
    ("mask_size", "mask size 32x32 does not match"),
    ("frame_count", "frame count mismatch"),
    ("unreadable_png", "unreadable png"),
    ("no_tracks", "missing tracks file of an abnormal video"),
    ("no_video", "no such video file"),
    ("no_annotations", "missing annotation folder"),
])
def test_bad_input_names_the_file_or_is_skipped(tree, case, match):
    s1, ann_a = tree / "Scene1", tree / "Scene1" / f"{A}_annotations"
    ann_n1 = tree / "Scene17" / f"{N1}_annotations"
    bad_item = {"missing_split": None, "lacks_frames": A, "mask_size": N1, "frame_count": A,
                "unreadable_png": N1, "no_tracks": A, "no_video": N1, "no_annotations": N1}[case]
    if case == "missing_split":
        (tree / "scripts" / "normal_test_video_names.txt").unlink()
    elif case == "lacks_frames":
        (ann_a / f"{A}_0003_gt.png").unlink()
    elif case == "mask_size":
        Image.fromarray(np.zeros((32, 32), np.uint8), mode="L").save(ann_n1 / f"{N1}_0002_gt.png")
    elif case == "frame_count":
        shutil.copy(ann_a / f"{A}_0000_gt.png", ann_a / f"{A}_0006_gt.png")
    elif case == "unreadable_png":
        (ann_n1 / f"{N1}_0004_gt.png").write_bytes(b"not a png at all")
    elif case == "no_tracks":
        (ann_a / f"{A}_tracks.txt").unlink()
    elif case == "no_video":
        (tree / "Scene17" / f"{N1}.mp4").unlink()
    elif case == "no_annotations":
        shutil.rmtree(ann_n1)
    with pytest.raises(DataError, match=match):
        load(tree, "test")
    vids = load(tree, "test", strict=False)
    assert len(vids.skipped) == 1 and match.split(":")[-1].strip()[:20] in vids.skipped[0].reason + vids.skipped[0].path
    names = [v.name for v in vids]
    if bad_item is None:
        assert names == [A, B]
    else:
        assert bad_item not in names and len(names) == 3


def test_unreadable_png_found_lazily_with_fast_check(tree):
    ann_n1 = tree / "Scene17" / f"{N1}_annotations"
    (ann_n1 / f"{N1}_0004_gt.png").write_bytes(b"garbage")
    v = load(tree, "test", check="fast")[2]
    v.read_masks([0, 1])  # fine
    with pytest.raises(DataError, match=f"{N1}_0004_gt.png: unreadable png"):
        v.read_masks([4])
    with pytest.raises(DataError, match="frame index 6 out of range"):
        v.read_masks([6])


def test_training_split_word_and_unknown_split(tmp_path):
    root = build(tmp_path / "ub2", split_word="training")
    assert len(load(root, "train")) == 4 and load(root, "training")[0].split == "train"
    with pytest.raises(DataError, match="abnormal_validation_video_names.txt: missing split file"):
        load(root, "validation")
    assert len(load(root, "validation", strict=False)) == 0
