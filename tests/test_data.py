"""tvad.data.load_split: the videos of a split of whichever dataset a DataConfig names."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from tvad.data import DataError, load_split
from tvad.io import REPO_ROOT


def _cfg(**kw):
    base = dict(dataset="synthetic", root="data/none", generate=True, strict=True, frame_size=[224, 224],
                frames_per_video=8, video_fps=8.0, shanghaitech_root="data/none-st",
                num_videos={"pretrain": 0, "train": 2, "validation": 1, "test": 0, "test_seen": 0})
    return SimpleNamespace(**{**base, **kw})


def test_synthetic_is_generated_then_loaded(tmp_path):
    train = load_split(_cfg(), "train", root=tmp_path / "syn", seed=1)
    val = load_split(_cfg(generate=False), "val", root=tmp_path / "syn")
    assert len(train) == 2 and len(val) == 1 and train[0].num_frames == 8
    assert (tmp_path / "syn" / "meta.json").exists()


def test_relative_roots_are_resolved_against_the_repository(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the working directory does not matter
    with pytest.raises(DataError, match=str(REPO_ROOT / "data" / "no-such-ubnormal")):
        load_split(_cfg(dataset="ubnormal", root="data/no-such-ubnormal"), "test")
    with pytest.raises(ValueError, match="unknown dataset"):
        load_split(_cfg(dataset="kinetics"), "train")
