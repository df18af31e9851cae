"""tvad.data.shanghaitech on a tiny tree in the dataset's layout, built here (48x64 frames)."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tvad.data import DataError, Video
from tvad.data.record import Problems
from tvad.data.shanghaitech import load, parse_track_file
from tvad.data.video import write_video

T, H, W = 6, 48, 64
V1, V2 = "01_0014", "03_0031"


def _pixel_mask() -> np.ndarray:
    """Two anomalous regions: A moves right over frames 1..4; B appears at frame 3."""
    m = np.zeros((T, H, W), np.uint8)
    for t in range(1, 5):
        m[t, 10:20, 5 + 4 * t:13 + 4 * t] = 1
    for t in range(3, T):
        m[t, 30:40, 40:50] = 1
    return m


def build(root: Path) -> Path:
    tv = root / "training" / "videos"
    tv.mkdir(parents=True)
    write_video(tv / "01_001.avi", np.full((5, H, W, 3), 120, np.uint8), 24)
    write_video(tv / "02_002.avi", np.full((4, H, W, 3), 60, np.uint8), 24)
    for name in (V1, V2):
        fd = root / "testing" / "frames" / name
        fd.mkdir(parents=True)
        for t in range(T):
            img = np.zeros((H, W, 3), np.uint8)
            img[..., 0] = 20 * t
            Image.fromarray(img).save(fd / f"{t:03d}.jpg", quality=95)
    (root / "testing" / "test_frame_mask").mkdir(parents=True)
    (root / "testing" / "test_pixel_mask").mkdir(parents=True)
    pm = _pixel_mask()
    np.save(root / "testing" / "test_frame_mask" / f"{V1}.npy", pm.reshape(T, -1).any(1).astype(np.int64))
    np.save(root / "testing" / "test_pixel_mask" / f"{V1}.npy", pm)
    np.save(root / "testing" / "test_frame_mask" / f"{V2}.npy", np.zeros(T, np.int64))
    np.save(root / "testing" / "test_pixel_mask" / f"{V2}.npy", np.zeros((T, H, W), np.uint8))
    return root


@pytest.fixture()
def tree(tmp_path) -> Path:
    return build(tmp_path / "st")


def test_train_split(tree):
    vids = load(tree, "train")
    assert [v.name for v in vids] == ["01_001", "02_002"]
    v = vids[0]
    assert isinstance(v, Video) and v.path.suffix == ".avi" and v.split == "train"
    assert (v.num_frames, v.size, v.fps) == (5, (H, W), 24.0)
    assert v.read_frames([0, 4]).shape == (2, H, W, 3)
    assert v.frame_labels.tolist() == [0] * 5 and v.objects == [] and v.gt_tracks().shape == (0, 6)
    assert v.read_masks().shape == (5, H, W) and v.read_masks().max() == 0


def test_test_split_every_field_and_derived_tracks(tree):
    vids = load(tree, "testing")
    assert [v.name for v in vids] == [V1, V2] and vids[0].split == "test"
    v = vids[0]
    assert (v.num_frames, v.size, v.fps) == (T, (H, W), 24.0)
    assert v.path == tree / "testing" / "frames" / V1
    x = v.read_frames()
    assert x.shape == (T, H, W, 3) and abs(int(x[5, ..., 0].mean()) - 100) <= 3
    assert v.frame_labels.tolist() == [0, 1, 1, 1, 1, 1]
    m = v.read_masks()
    pm = _pixel_mask()
    assert m.dtype == np.int32 and ((m != 0) == (pm != 0)).all()
    # derived tracks: region A is track 1, region B track 2; masks carry those ids
    assert set(np.unique(m[3])) == {0, 1, 2} and m[3, 15, 20] == 1 and m[3, 35, 45] == 2
    objs = v.objects
    assert [o.id for o in objs] == [1, 2] and all(o.anomalous for o in objs)
    assert objs[0].anomaly_ranges == [(1, 4)] and objs[1].anomaly_ranges == [(3, 5)]
    assert objs[0].box(1) == (9, 10, 17, 20)
    g = v.gt_tracks()
    assert g.shape == (7, 6) and g[0].tolist() == [1, 1, 9, 10, 17, 20] and g[-1].tolist() == [2, 5, 40, 30, 50, 40]
    assert vids[1].frame_labels.sum() == 0 and vids[1].objects == []


def test_gt_track_files(tree):
    td = tree / "testing" / "test_tracks"
    td.mkdir()
    (td / f"{V1}.txt").write_text("7,1,9,10,17,20\n7,2,13,10,21,20\n9,3,40,30,50,40\n")
    v = load(tree, "test")[0]
    assert v.gt_tracks().tolist() == [[7, 1, 9, 10, 17, 20], [7, 2, 13, 10, 21, 20], [9, 3, 40, 30, 50, 40]]
    m = v.read_masks([2, 3])
    assert m[0, 15, 20] == 7 and m[1, 35, 45] == 9
    # frames 4-5 have masked pixels but no track row: they get one fresh id (max id + 1)
    assert [o.id for o in v.objects] == [7, 9, 10] and v.object(7).anomaly_ranges == [(1, 2)]
    assert v.read_masks([4])[0, 15, 25] == 10
    (td / f"{V1}.txt").write_text("7,1,9,10\n")
    with pytest.raises(DataError, match=f"{V1}.txt: line 1: expected 6 integers"):
        load(tree, "test")
    lenient = Problems(strict=False)
    assert parse_track_file(td / f"{V1}.txt", problems=lenient).shape == (0, 6) and len(lenient.skipped) == 1


@pytest.mark.parametrize("case,match", [
    ("pixel_shape", "pixel mask shape (6, 48, 60) does not match the video's (6, 48, 64)"),
    ("frame_mask_len", "5 frame labels for 6 frames"),
    ("no_frame_mask", "missing frame mask"),
    ("no_pixel_mask", "missing pixel mask"),
])
def test_bad_input(tree, case, match):
    fm = tree / "testing" / "test_frame_mask" / f"{V1}.npy"
    pm = tree / "testing" / "test_pixel_mask" / f"{V1}.npy"
    if case == "pixel_shape":
        np.save(pm, np.zeros((T, H, 60), np.uint8))
    elif case == "frame_mask_len":
        np.save(fm, np.zeros(5, np.int64))
    elif case == "no_frame_mask":
        fm.unlink()
    elif case == "no_pixel_mask":
        pm.unlink()
    with pytest.raises(DataError, match=re.escape(match)):
        load(tree, "test")
    vids = load(tree, "test", strict=False)
    assert [v.name for v in vids] == [V2] and len(vids.skipped) == 1 and vids.skipped[0].item == V1
    assert V1 in vids.skipped[0].path


def test_unknown_split(tree):
    with pytest.raises(DataError, match="splits 'train' and 'test'"):
        load(tree, "validation")
