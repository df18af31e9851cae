"""The clip protocol: `ClipVideo` (a clip seen as a Video: frames, masks, labels, rows, objects and
tracks in clip frames at the clip size), the run's clip index over every dataset and split
(`tvad.data.protocol`: held-out clips never overlap, ShanghaiTech re-partitioned, an index of another
configuration refused), too-short videos, and held-out clips back onto their source videos
(`tvad.train.coverage`)."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

from tests.test_data_shanghaitech import build as build_shanghaitech
from tests.test_data_ubnormal import A, B, build as build_ubnormal
from tvad.config import preset
from tvad.data import DataError, clips as C, protocol, shanghaitech, ubnormal
from tvad.data.clips import Clip, ClipVideo
from tvad.data.video import resize_frames
from tvad.train.coverage import CoverageError, source_sequences


def _clip(v, frames, size=None, split="test"):
    frames = tuple(int(f) for f in frames)
    return Clip(f"{v.name}-{frames[0]:03d}_{frames[-1]:03d}", v.name, str(v.path), v.source, split, frames,
                tuple(int(x) for x in v.frame_labels[list(frames)]), tuple(size or v.size), v.fps, v.split)


@pytest.fixture(scope="module")
def ub(tmp_path_factory):
    root = build_ubnormal(tmp_path_factory.mktemp("ub") / "ub")
    return {v.name: v for v in ubnormal.load(root, "test")}


@pytest.mark.parametrize("size", [None, (32, 48)])
def test_clip_video_is_its_source_at_the_clip_frames_and_size(ub, size):
    src = ub[A]  # one anomaly row: object 1 in frames 1..3
    clip = _clip(src, [1, 2, 3, 4], size)
    v = ClipVideo(clip, src)
    H, W = clip.size
    assert (v.num_frames, v.size, v.fps, v.split) == (4, (H, W), src.fps, "test")
    assert v.meta["source_video"] == A and v.meta["frame_indices"] == [1, 2, 3, 4] and v.meta["dataset"] == "ubnormal"
    np.testing.assert_array_equal(v.read_frames(), resize_frames(src.read_frames([1, 2, 3, 4]), (H, W)))
    np.testing.assert_array_equal(v.read_frames([2]), v.read_frames()[2:3])
    assert v.frame_labels.tolist() == src.frame_labels[[1, 2, 3, 4]].tolist() == [1, 1, 1, 0]
    assert v.anomaly_rows.tolist() == [[1, 0, 2]]  # the source row (1, 1..3) in clip frames
    m = v.read_masks()
    assert m.shape == (4, H, W) and set(np.unique(m)) == {0, 1} and not m[3].any()
    np.testing.assert_array_equal(m, C.resize_masks(src.read_masks([1, 2, 3, 4]), (H, W)))
    o1 = v.object(1)
    assert o1.anomalous and o1.anomaly_ranges == [(0, 2)] and len(o1.boxes) == 4
    sb = src.object(1).box(2)
    sx, sy = W / src.size[1], H / src.size[0]
    assert o1.box(1) == (int(np.floor(sb[0] * sx)), int(np.floor(sb[1] * sy)), int(np.ceil(sb[2] * sx)),
                         int(np.ceil(sb[3] * sy)))
    assert not v.object(2).anomalous and v.object(2).anomaly_ranges == []  # object 2 is normal in A
    tr = v.gt_tracks()
    assert sorted(set(tr[:, 1].tolist())) == [0, 1, 2] and set(tr[:, 0].tolist()) == {0}


def test_clips_of_one_source_share_its_track_ids(ub):
    src = ub[B]  # rows (sorted by object id): object 1 frames 4..5 -> track 0; object 2 frame 2 -> track 1
    whole = src.gt_tracks()
    parts = [ClipVideo(_clip(src, f), src) for f in ([0, 1, 2], [3, 4, 5])]
    assert parts[0].gt_tracks()[:, 0].tolist() == [1]  # object 2's track keeps its source id
    seqs, heat, _ = source_sequences(
        [_sample(p) for p in parts], {p.name: np.zeros((3, 2, 2)) for p in parts}, {p.name: np.zeros(3) for p in parts})
    assert len(seqs) == 1 and seqs[0].name == B and seqs[0].num_frames == 6 and heat[B].shape == (6, 2, 2)
    rows = lambda a: sorted(map(tuple, a.tolist()))  # noqa: E731
    assert rows(seqs[0].gt_tracks) == rows(whole)  # the clips concatenate into the source's tracks
    assert seqs[0].frame_labels.tolist() == src.frame_labels.tolist()


def _sample(v):
    @dataclasses.dataclass
    class S:  # what stage 1's Sample carries for the metrics
        name: str
        frame_labels: np.ndarray
        gt_tracks: np.ndarray
        num_frames: int
        frame_size: tuple
        anomaly_type: str
        extra: dict

    return S(v.name, v.frame_labels, v.gt_tracks(), v.num_frames, v.size, "normal", {"video": v})


def test_overlapping_heldout_clips_are_refused(ub):
    src = ub[B]
    parts = [ClipVideo(_clip(src, f), src) for f in ([0, 1, 2], [2, 3, 4])]
    with pytest.raises(CoverageError, match=f"{B}.*overlap"):
        source_sequences([_sample(p) for p in parts], {p.name: np.zeros((3, 1, 1)) for p in parts},
                         {p.name: np.zeros(3) for p in parts})


def test_a_clip_of_another_dataset_version_is_refused(ub):
    src = ub[A]
    with pytest.raises(DataError, match="names frame 9.*6 frames"):
        ClipVideo(_clip(src, [1, 2]).__class__(**{**dataclasses.asdict(_clip(src, [1, 2])), "frames": (8, 9),
                                                   "labels": (0, 0)}), src)
    bad = dataclasses.replace(_clip(src, [1, 2]), labels=(0, 0))
    with pytest.raises(DataError, match="frame labels of clip .* differ"):
        ClipVideo(bad, src)


def test_too_short_video_is_an_error_or_skipped_and_counted(ub):
    short = ub[A]  # 6 frames at 30 fps: 1 frame at 1 fps
    with pytest.raises(DataError, match=rf"{A}\.mp4: too short for a clip: 1 frame\(s\) at 1 fps"):
        C.partition([short], fps=1.0, min_frames=8, max_frames=40, val_fraction=None, strict=True)
    out = C.partition([short, ub[B]], fps=None, min_frames=8, max_frames=40, val_fraction=None, strict=False)
    assert list(out) == [] and [s.item for s in out.skipped] == [A, B]
    assert "too short" in out.skipped[0].reason


def _cpu_cfg(tmp_path, **data):
    cfg = preset("cpu", {"data.root": str(tmp_path / "syn"),
                         "data.num_videos": json.dumps({"pretrain": 0, "train": 2, "validation": 1, "test": 2,
                                                        "test_seen": 1}),
                         "data.shanghaitech_root": str(tmp_path / "nowhere")})
    return cfg.override({f"data.{k}": v for k, v in data.items()})


def test_index_every_split_heldout_without_overlap_and_refused_for_another_config(tmp_path):
    cfg = _cpu_cfg(tmp_path, clip_fps=8.0, clip_min_frames=8, clip_max_frames=12, clip_stride=4)
    idx = protocol.build_index(cfg.data, seed=0)
    assert idx.datasets() == ["synthetic"] and "ShanghaiTech is not here" in idx.notes[0]
    by = {}
    for c in idx.clips:
        by.setdefault((c.split, c.video), []).append(c.frames)
    assert {s for s, _ in by} == {"train", "validation", "test", "test_seen"}
    for (split, _), fr in by.items():
        starts = [f[0] for f in fr]
        if split == "train":  # 24 frames, windows of 12 every 4: overlapping
            assert starts == [0, 4, 8, 12]
        else:  # held out: never overlapping, every covered frame once
            assert starts == [0, 12] and sorted(sum(map(list, fr), [])) == list(range(24))
    p = protocol.write_index(idx, tmp_path / "run" / "clips.jsonl")
    back = protocol.read_clip_index(p, cfg.data)
    assert back.clips == idx.clips and back.protocol == idx.protocol
    other = cfg.override({"data.clip_fps": 4.0})
    with pytest.raises(DataError, match=r"clips\.jsonl: clip index made with another configuration \(clip_fps 8\.0 there, 4\.0 here\)"):
        protocol.read_clip_index(p, other.data)
    v = protocol.load_clips(p, cfg.data, "test")
    assert all(isinstance(x, ClipVideo) and x.num_frames == 12 for x in v) and len(v) == 4
    (tmp_path / "run" / "clips.jsonl.meta.json").unlink()
    with pytest.raises(DataError, match=r"clips\.jsonl\.meta\.json: missing"):
        protocol.read_clip_index(p, cfg.data)


def test_shanghaitech_is_repartitioned_into_train_and_validation(tmp_path):
    root = build_shanghaitech(tmp_path / "st")
    cfg = _cpu_cfg(tmp_path, clip_fps=None, clip_min_frames=2, clip_max_frames=4, clip_stride=2,
                   shanghaitech_root=str(root), strict=False)
    idx = protocol.build_index(cfg.data, seed=0)
    st = idx.select(dataset="shanghaitech")
    assert idx.datasets() == ["shanghaitech", "synthetic"] and st
    assert {c.split for c in st} == {"train", "validation"}  # ShanghaiTech has no validation split of its own
    C.check_no_leakage(st)
    assert {c.video_split for c in st} <= {"train", "test"}
    loaded = {v.name: v for sp in ("train", "test") for v in shanghaitech.load(root, sp, strict=False)}
    for c in st:
        assert list(c.labels) == loaded[c.video].frame_labels[list(c.frames)].tolist()
    val = [c for c in st if c.split == "validation"]
    for name in {c.video for c in val}:  # held-out clips of a source never overlap
        fr = sorted(f for c in val if c.video == name for f in c.frames)
        assert len(fr) == len(set(fr))


def test_the_released_clip_set_is_read_with_its_frames_as_they_are(tmp_path, shared_clips):
    """data.shanghaitech_root at the authors' released clips: each is one clip of all its frames at its
    own rate (24 at 24 fps), not resampled to clip_fps nor cut; the split is by source test video."""
    cfg = _cpu_cfg(tmp_path, shanghaitech_root=str(shared_clips), clip_size=[119, 217])
    idx = protocol.build_index(cfg.data, seed=0)
    st = idx.select(dataset="shanghaitech")
    assert sorted(c.name for c in st) == ["01_0014-168_191", "01_0028-288_311", "03_0031-348_371"]
    assert all(c.frames == tuple(range(24)) and c.fps == 24.0 and c.size == (119, 217) for c in st)
    assert {c.split for c in st} == {"train", "validation"}
    p = protocol.write_index(idx, tmp_path / "run" / "clips.jsonl")
    v = protocol.load_clips(p, cfg.data, "validation", dataset="shanghaitech")
    assert v and v[0].read_frames().shape == (24, 119, 217, 3) and v[0].meta["dataset"] == "shanghaitech"


def test_a_shanghaitech_clip_knows_its_anomalous_regions(tmp_path):
    """ShanghaiTech's anomalies live on mask-derived objects only (no anomaly rows): a clip of a test
    video still has its anomalous object in the frames it covers, its rows, masks and tracks."""
    root = build_shanghaitech(tmp_path / "st")
    src = {v.name: v for v in shanghaitech.load(root, "test")}["01_0014"]
    assert not len(src.anomaly_rows) and src.label == 1
    v = ClipVideo(_clip(src, [1, 2, 3], size=(24, 32)), src)
    assert v.anomaly_rows.tolist() and all(o.anomalous for o in v.objects if o.anomaly_ranges)
    assert [o.anomalous for o in v.objects].count(True) >= 1
    assert v.read_masks().any(1).any(1).tolist() == [bool(x) for x in v.frame_labels]
    assert len(v.gt_tracks()) and set(v.gt_tracks()[:, 1].tolist()) <= {0, 1, 2}
