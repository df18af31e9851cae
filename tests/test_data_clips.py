"""tvad.data.clips: windows, resampling, split by source video (no leakage), index, materialising."""

from __future__ import annotations


import numpy as np
import pytest

from tvad.data import DataError, Video
from tvad.data import clips as C
from tvad.data import shanghaitech_clips
from tvad.data.video import resize_frames, sample_indices


def fake_videos(n: int, seed: int = 0) -> list[Video]:
    """Videos without files: only lengths, rates and labels matter to the partitioner."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        fps = float(rng.choice([24.0, 30.0]))
        T = int(rng.integers(5, 120) * fps)  # 5 s .. 2 min
        lab = np.zeros(T, np.int8)
        if rng.random() < 0.5:
            s = int(rng.integers(0, T // 2))
            lab[s:s + int(rng.integers(1, T // 2))] = 1
        out.append(Video(f"{i // 10 + 1:02d}_{i:04d}", f"/nowhere/{i}.avi", T, fps, (480, 856), lab, split="test"))
    return out


def test_windows():
    assert C.windows(5, 40, 8, 8) == []
    assert C.windows(8, 40, 8, 8) == [(0, 8)]
    assert C.windows(30, 40, 8, 8) == [(0, 30)]
    assert C.windows(50, 40, 8, 8) == [(0, 40), (8, 48), (16, 50)]
    assert C.windows(50, 40, 40, 8) == [(0, 40), (40, 50)]
    assert C.windows(45, 40, 40, 8) == [(0, 40)]  # a 5-frame tail is too short
    assert C.windows(72, 24, 12, 8) == [(0, 24), (12, 36), (24, 48), (36, 60), (48, 72)]


def test_partition_no_source_leakage_and_fields():
    vids = fake_videos(60)
    clips = C.partition(vids, fps=1.0, min_frames=8, max_frames=40, stride=8, size=(476, 868),
                        val_fraction=0.2, seed=0)
    C.check_no_leakage(clips)
    side: dict[str, set] = {}
    for c in clips:
        side.setdefault(c.video, set()).add(c.split)
    assert all(len(s) == 1 for s in side.values())  # no source on both sides
    by = {v.name: v for v in vids}
    for c in clips:
        v = by[c.video]
        idx = sample_indices(v.num_frames, v.fps, 1.0)
        assert 8 <= c.num_frames <= 40 and set(c.frames) <= set(idx.tolist())
        assert list(c.frames) == sorted(c.frames) and c.frames[0] in idx
        assert list(c.labels) == v.frame_labels[list(c.frames)].tolist()
        assert c.size == (476, 868) and c.fps == 1.0 and c.source == "video" and c.video_split == "test"
        assert c.name == f"{c.video}-{c.frames[0]:03d}_{c.frames[-1]:03d}"
    n_val = sum(c.split == "validation" for c in clips)
    assert abs(n_val / len(clips) - 0.2) < 0.05
    for split in ("train", "validation"):  # both sides hold abnormal and normal clips
        assert {c.label for c in clips if c.split == split} == {0, 1}
    rows = {r["split"]: r for r in C.summary(clips)}
    assert rows["train"]["clips"] + rows["validation"]["clips"] == len(clips)
    # deterministic for a seed; another seed gives another split
    again = C.partition(vids, fps=1.0, stride=8, seed=0)
    assert [c.split for c in again] == [c.split for c in clips]
    assert [c.split for c in C.partition(vids, fps=1.0, stride=8, seed=1)] != [c.split for c in clips]
    # with val_fraction=None the sources' own splits are kept
    assert {c.split for c in C.partition(vids, fps=1.0, val_fraction=None)} == {"test"}


def test_leakage_checker_and_bad_args():
    a = C.Clip("x-000_007", "x", "/x", "video", "train", tuple(range(8)), (0,) * 8, (4, 4), 1.0)
    b = C.Clip("x-008_015", "x", "/x", "video", "validation", tuple(range(8, 16)), (0,) * 8, (4, 4), 1.0)
    with pytest.raises(DataError, match="source video x has clips in both"):
        C.check_no_leakage([a, b])
    with pytest.raises(ValueError, match="outside"):
        C.partition([], length=50)
    v = fake_videos(1)[0]
    with pytest.raises(DataError, match="duplicate source video"):
        C.partition([v, v])


def test_index_round_trip(tmp_path):
    clips = C.partition(fake_videos(8), fps=1.0, stride=20)
    p = C.write_index(clips, tmp_path / "run" / "clips.jsonl")
    assert C.read_index(p) == clips
    assert [f.name for f in p.parent.iterdir()] == ["clips.jsonl"]  # no temp files left
    p.write_text(p.read_text() + "{not json}\n")
    with pytest.raises(DataError, match=f"clips.jsonl: line {len(clips) + 1}"):
        C.read_index(p)
    with pytest.raises(DataError, match="no such clip index"):
        C.read_index(tmp_path / "missing.jsonl")


def test_materialise_real_clips(tmp_path, shared_clips):
    vids = shanghaitech_clips.load(shared_clips)
    clips = C.partition(vids, fps=None, length=8, min_frames=8, max_frames=40, stride=8, size=(56, 104),
                        val_fraction=0.34, seed=0)
    assert len(clips) == 9 and {c.split for c in clips} == {"train", "validation"}
    C.check_no_leakage(clips)
    c = clips[1]
    assert c.frames == tuple(range(8, 16)) and c.name == f"{c.video}-008_015"
    x = C.read_clip(c, vids)
    assert x.shape == (8, 56, 104, 3) and x.dtype == np.uint8
    v = next(v for v in vids if v.name == c.video)
    np.testing.assert_array_equal(x, resize_frames(v.read_frames(list(range(8, 16))), (56, 104)))
    np.testing.assert_array_equal(C.read_clip(c), x)  # from the path alone (a video file)
    assert C.read_clip_masks(c, vids).shape == (8, 56, 104)
    idx = C.export(clips[:2], vids, tmp_path / "out")
    assert (tmp_path / "out" / f"{clips[0].name}.mp4").exists() and len(C.read_index(idx)) == 2


def test_resize_masks_keeps_ids():
    m = np.zeros((2, 4, 6), np.int32)
    m[:, :2, :3] = 5
    m[1, 2:, 3:] = 9
    r = C.resize_masks(m, (8, 12))
    assert r.shape == (2, 8, 12) and set(np.unique(r)) == {0, 5, 9}
    assert (r[:, :4, :6] == 5).all() and (r[1, 4:, 6:] == 9).all()
