"""Datasets: video reading, the common `Video` record, loaders, the synthetic generator, clips.

    from tvad.data import ubnormal, shanghaitech, shanghaitech_clips, synthetic, clips
    videos = synthetic.load("data/synthetic", "train")     # a list of Video (a VideoList)
    videos = tvad.data.load_split(cfg.data, "train")       # whichever dataset the config names

Modules: `video` (decode, resize, write), `record` (`Video`, `VideoObject`, `DataError`, skip
reports), `geometry` (blob boxes, centroids, IoU, region words), `files` (JSON, id pngs, video
headers), `stats` (split / type / behaviour statistics), `ubnormal`, `shanghaitech`,
`shanghaitech_clips` (loaders), `synthetic` + `render` (the generated open-set dataset in
UBnormal's layout), `clips` (the paper's 1 fps re-partitioning).
"""

from __future__ import annotations

import os
from typing import Any

from tvad.data import shanghaitech, synthetic, ubnormal
from tvad.data.record import DataError, Skipped, Video, VideoList, VideoObject  # noqa: F401
from tvad.data.stats import behaviour_statistics, split_statistics, type_statistics  # noqa: F401
from tvad.data.video import VideoError, VideoInfo, probe, read_frames  # noqa: F401
from tvad.io import resolve_path


def load_split(data_cfg: Any, split: str, root: str | os.PathLike | None = None, seed: int = 0,
               workers: int = 1) -> VideoList:
    """The videos of `split` from the dataset a `tvad.config.DataConfig` names.

    synthetic:    generated into `root` (default ``data_cfg.root``) first when ``data_cfg.generate``
                  and it is not there yet with these parameters; then `synthetic.load`.
    ubnormal:     `ubnormal.load(root, split)`.
    shanghaitech: `shanghaitech.load(root or data_cfg.shanghaitech_root, split)`.
    A relative root is taken relative to the repository (`tvad.io.resolve_path`), so the same
    config finds the same files from any working directory. Split names as the loaders take them
    (synthetic and ubnormal also accept "val" and "training"; shanghaitech has "train" and "test").
    """
    strict = bool(getattr(data_cfg, "strict", True))
    name = data_cfg.dataset
    if name == "synthetic":
        r = resolve_path(root or data_cfg.root)
        if getattr(data_cfg, "generate", False):
            synthetic.generate_from_config(data_cfg, r, seed=seed, workers=workers)
        return synthetic.load(r, split, strict=strict)
    if name == "ubnormal":
        return ubnormal.load(resolve_path(root or data_cfg.root), split, strict=strict)
    if name == "shanghaitech":
        return shanghaitech.load(resolve_path(root or data_cfg.shanghaitech_root), split, strict=strict)
    raise ValueError(f"unknown dataset {name!r}: choose 'synthetic', 'ubnormal' or 'shanghaitech'")
