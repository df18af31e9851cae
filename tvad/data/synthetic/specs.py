"""The plan of a synthetic dataset: splits, anomaly types per split, and one `VideoSpec` per video
(name, split, kind, scene, anomaly types, fog, lighting, seed). Rendering is a pure function of a spec."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

import numpy as np

from tvad.data import render as R

VERSION = 1
ANOMALY_TYPES = ("running", "falling", "fighting", "vehicle_on_walkway", "loitering", "throwing",
                 "jaywalking", "wrong_way", "abandoned_object")
SPLIT_TYPES = {
    "train": ("running", "falling", "fighting", "vehicle_on_walkway"),
    "validation": ("loitering", "throwing"),
    "test": ("jaywalking", "wrong_way", "abandoned_object"),
    "test_seen": ("running", "falling", "fighting", "vehicle_on_walkway"),
    "pretrain": ANOMALY_TYPES,
}
SPLITS = ("pretrain", "train", "validation", "test", "test_seen")
NORMAL_BEHAVIOURS = ("walking", "standing", "crossing", "riding", "skating", "driving")
BEHAVIOURS = NORMAL_BEHAVIOURS + ANOMALY_TYPES
DEFAULT_NUM_VIDEOS = {"pretrain": 48, "train": 24, "validation": 8, "test": 17, "test_seen": 8}
ABNORMAL_FRACTION = {"pretrain": 0.75, "train": 0.5, "validation": 0.5, "test": 0.5, "test_seen": 0.5}
LIGHTINGS = (("day", 0.45), ("overcast", 0.25), ("dusk", 0.15), ("night", 0.15))


@dataclass
class VideoSpec:
    """Everything that determines one video (rendering is a pure function of it)."""

    name: str
    split: str
    kind: str  # "abnormal" | "normal"
    scene: int
    anomaly_types: list
    fog: bool
    lighting: str
    seed: int
    size: tuple
    num_frames: int
    fps: float
    dataset_seed: int


def _scene_layout(dataset_seed: int, scene: int, size: tuple) -> R.Layout:
    return R.make_layout(np.random.default_rng([int(dataset_seed), 7919, int(scene)]), int(size[0]), int(size[1]))


def plan(num_videos: dict | int | None = None, seed: int = 0, size: tuple = (224, 224),
         num_frames: int = 24, fps: float = 8.0, num_scenes: int = 8,
         abnormal_fraction: dict | float | None = None, fog_prob: float = 0.15) -> list[VideoSpec]:
    """The video specs of a dataset (names, splits, kinds, scenes, anomaly types, seeds)."""
    nv = _num_videos(num_videos)
    af = dict(ABNORMAL_FRACTION)
    if isinstance(abnormal_fraction, (int, float)):
        af = {k: float(abnormal_fraction) for k in af}
    elif abnormal_fraction:
        af.update(abnormal_fraction)
    counters: dict[tuple[str, int], int] = defaultdict(int)
    specs = []
    for si, split in enumerate(SPLITS):
        n = int(nv.get(split, 0))
        if n <= 0:
            continue
        rng = np.random.default_rng([int(seed), 101, si])
        n_ab = int(round(n * af.get(split, 0.5)))
        if n >= 2:
            n_ab = min(max(n_ab, 1), n - 1)
        kinds = ["abnormal"] * n_ab + ["normal"] * (n - n_ab)
        rng.shuffle(kinds)
        pool: list[str] = []
        types_all = list(SPLIT_TYPES[split])
        for i, kind in enumerate(kinds):
            scene = int(rng.integers(1, num_scenes + 1))
            fog = bool(rng.random() < fog_prob)
            lighting = str(rng.choice([l for l, _ in LIGHTINGS], p=[w for _, w in LIGHTINGS]))
            types: list[str] = []
            if kind == "abnormal":
                if not pool:
                    pool = list(rng.permutation(types_all))
                types.append(str(pool.pop()))
                if rng.random() < 0.25:
                    types.append(str(rng.choice(types_all)))
            counters[(kind, scene)] += 1
            name = f"{kind}_scene_{scene}_scenario_{counters[(kind, scene)]}" + ("_fog" if fog else "")
            vseed = int(np.random.SeedSequence([int(seed), si, i]).generate_state(1)[0])
            specs.append(VideoSpec(name, split, kind, scene, types, fog, lighting, vseed,
                                   (int(size[0]), int(size[1])), int(num_frames), float(fps), int(seed)))
    return specs


def _num_videos(num_videos: dict | int | None) -> dict:
    if num_videos is None:
        return dict(DEFAULT_NUM_VIDEOS)
    if isinstance(num_videos, int):
        return {s: num_videos for s in SPLITS}
    unknown = set(num_videos) - set(SPLITS) - {"training"}
    if unknown:
        raise ValueError(f"unknown split(s) {sorted(unknown)} in num_videos; splits are {SPLITS}")
    return {("train" if k == "training" else k): int(v) for k, v in num_videos.items()}
