"""Reading a synthetic dataset: the UBnormal loader plus each video's sidecar."""

from __future__ import annotations

import os

from tvad.data.record import DataError, VideoList
from tvad.data.synthetic.specs import SPLITS
from tvad.data.ubnormal import load as _ub_load


def load(root: str | os.PathLike, split: str, strict: bool = True, check: str = "headers") -> VideoList:
    """The videos of a split (``train``, ``validation``, ``test``, ``test_seen``, ``pretrain``):
    the UBnormal loader, with each video's sidecar (category, attributes, behaviour, anomaly
    type, caption) merged into its objects."""
    vids = _ub_load(root, split, strict=strict, check=check)
    for v in vids:
        if v.sidecar is None:
            raise DataError(f"{v.ann_dir / (v.name + '_objects.json')}: missing sidecar of a synthetic video")
    return vids


def load_all(root: str | os.PathLike, splits: tuple = SPLITS, strict: bool = True,
             check: str = "fast") -> dict[str, VideoList]:
    """{split: videos} for every split."""
    return {s: load(root, s, strict=strict, check=check) for s in splits}
