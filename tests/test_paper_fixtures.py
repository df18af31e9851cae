"""tests/paper_fixtures.py: the long fixture trees load through the real loaders as they were written."""

from __future__ import annotations

import numpy as np
import pytest

from tvad.data import shanghaitech, ubnormal
from tvad.data.clips import partition
from tests.paper_fixtures import (SHANGHAITECH_VIDEOS, UBNORMAL_VIDEOS, write_shanghaitech_tree,
                                  write_ubnormal_tree)


@pytest.fixture(scope="module")
def trees(tmp_path_factory):
    root = tmp_path_factory.mktemp("paper_trees")
    return write_ubnormal_tree(root / "ubnormal"), write_shanghaitech_tree(root / "shanghaitech")


def test_ubnormal_tree_loads_every_split_with_its_labels(trees):
    ub, _ = trees
    assert not (ub.root / "scripts" / "abnormal_test_seen_video_names.txt").exists()
    for split in ("train", "validation", "test"):
        vids = ubnormal.load(ub.root, split)
        specs = ub.split(split)
        assert not vids.skipped
        assert sorted(v.name for v in vids) == sorted(s.name for s in specs)
        assert {v.label for v in vids} == {0, 1}  # every split has abnormal and normal videos
        for v in vids:
            s = ub.by_name(v.name)
            assert (v.num_frames, v.fps, v.size) == (s.num_frames(30.0), 30.0, (120, 200))
            want = np.zeros(v.num_frames, np.int8)
            if s.abnormal:
                a, b = s.anomaly_frames(30.0)
                want[a:b + 1] = 1
                assert v.anomaly_rows.tolist() == [[1, a, b]]
            np.testing.assert_array_equal(v.frame_labels, want)
    v = ubnormal.load(ub.root, "train")[0]
    a, b = ub.by_name(v.name).anomaly_frames(30.0)
    runner = v.object(1)
    assert runner.anomalous and runner.anomaly_ranges == [(a, b)] and v.object(3).category == "cyclist"
    # the runner moves ~10x farther per frame during its anomaly than before it
    c = runner.centroids
    step = np.linalg.norm(np.diff(c, axis=0), axis=1)
    assert np.nanmedian(step[a:b]) > 5 * np.nanmedian(step[:a - 1])
    m = v.read_masks([a + 3, a - 3])
    assert (m[0] == 1).sum() > 50 and m[1].max() == 0


def test_shanghaitech_tree_loads_with_masks(trees):
    _, st = trees
    train, test = shanghaitech.load(st.root, "train"), shanghaitech.load(st.root, "test")
    assert [v.name for v in train] == ["01_001", "02_002"] and all(v.label == 0 for v in train)
    assert [v.name for v in test] == ["01_0014", "03_0031", "04_0001"] and [v.label for v in test] == [1, 1, 0]
    for v in [*train, *test]:
        s = st.by_name(v.name)
        assert (v.num_frames, round(v.fps), v.size) == (s.num_frames(24.0), 24, (120, 200))
    v = test[0]
    a, b = st.by_name(v.name).anomaly_frames(24.0)
    assert np.flatnonzero(v.frame_labels).tolist() == list(range(a, b + 1))
    assert v.read_frames([a]).shape == (1, 120, 200, 3) and v.read_masks([a])[0].any()


def test_durations_give_the_clip_cases(trees):
    """At 1 fps, 8-40 frames, stride 8: > 40 s videos give several overlapping clips, one is too short."""
    ub, st = trees
    vids = [*ubnormal.load(ub.root, "train"), *ubnormal.load(ub.root, "test"), *shanghaitech.load(st.root, "train")]
    clips = partition(vids, fps=1.0, min_frames=8, max_frames=40, stride=8, size=(120, 200), val_fraction=None)
    per = {}
    for c in clips:
        per.setdefault(c.video, []).append(c)
        assert 8 <= c.num_frames <= 40 and np.all(np.diff(c.frames) == round(vids[0].fps if c.source == "ubnormal" else 24))
    assert len(per["01_001"]) == 2 and "normal_scene_2_scenario_4" not in per  # 45 s: two; 6 s: too short
    assert [c.frames[0] for c in per["01_001"]] == [0, 8 * 24]  # overlapping: starts 8 s apart
    assert all(len(per[v.name]) == 1 for v in ub.videos if v.name in per)  # UBnormal's: one clip each


def test_writers_are_deterministic(tmp_path):
    specs = [UBNORMAL_VIDEOS[2]]
    a, b = write_ubnormal_tree(tmp_path / "a", specs), write_ubnormal_tree(tmp_path / "b", specs)
    n = specs[0].name
    for rel in (f"Scene2/{n}_annotations/{n}_0100_gt.png", f"Scene2/{n}.mp4"):
        assert (a.root / rel).read_bytes() == (b.root / rel).read_bytes()
    c = write_shanghaitech_tree(tmp_path / "c", [SHANGHAITECH_VIDEOS[3]], seed=5)
    d = write_shanghaitech_tree(tmp_path / "d", [SHANGHAITECH_VIDEOS[3]], seed=6)
    rel = "testing/test_pixel_mask/03_0031.npy"
    assert not np.array_equal(np.load(c.root / rel), np.load(d.root / rel))  # the seed matters
