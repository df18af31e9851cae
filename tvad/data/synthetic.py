"""An open-set synthetic surveillance dataset, written in UBnormal's exact on-disk layout.

    from tvad.data import synthetic
    synthetic.generate("data/synthetic", num_videos={"train": 24, ...}, seed=0)   # or ensure(...)
    train = synthetic.load("data/synthetic", "train")       # = the UBnormal loader + sidecars
    synthetic.split_statistics(train + synthetic.load("data/synthetic", "test"))

Scenes are rendered procedurally (`tvad.data.render`): buildings, walkways, a verge with trees,
a two-lane road with a zebra crossing, grass; textures and noise; viewpoints (road horizontal or
vertical, mirrored, zoomed), lighting (day, overcast, dusk, night) and fog (name suffix ``_fog``,
one of UBnormal's irregular names). Agents: people (top/bottom colours, backpack), cyclists,
skateboarders, cars (colour), and the bags people leave. Normal behaviour: walking along
walkways, standing, crossing at the crossing, riding and driving with the traffic, skating.

Nine anomaly types, disjoint across train / validation / test as in UBnormal's open-set
protocol (`SPLIT_TYPES`): running, falling, fighting, vehicle_on_walkway | loitering, throwing |
jaywalking, wrong_way, abandoned_object. Two more splits: ``test_seen`` (new videos of the
training types: closed-set quality apart from open-set transfer) and ``pretrain`` (disjoint
videos of normal behaviour and every type, only for pretraining the tiny backbone).

An abnormal video has one anomalous agent (two for fighting; sometimes a second anomaly) among
normal agents; a normal video only normal agents. An anomalous object's track range is the
frames where its anomaly happens (and it is visible); frame labels are their union.

Written per video, exactly as UBnormal: ``Scene{S}/{video}.mp4``, per-frame grey id maps
``Scene{S}/{video}_annotations/{video}_{frame:04d}_gt.png`` (every object), ``{video}_tracks.txt``
(abnormal videos), split files ``scripts/{abnormal,normal}_{split}_video_names.txt`` (``training``,
``validation``, ``test``, ``test_seen``, ``pretrain``), the class table
``scripts/object_names_per_video.pkl``; plus a sidecar ``{video}_annotations/{video}_objects.json``
(per object: category, attributes, behaviour, anomaly type and ranges, per-frame boxes and
centroids, a plain-English caption, behaviour phases) and ``meta.json`` (parameters; written
last, it marks a complete dataset). Deterministic for a seed (masks, labels, objects, captions).
"""

from __future__ import annotations

import math
import os
import pickle
import shutil
import sys
import time
from collections import defaultdict
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from tvad.data import render as R
from tvad.data.record import (DataError, VideoList, atomic_write_bytes, atomic_write_text,
                              behaviour_statistics, objects_from_id_maps, read_json,
                              split_statistics, type_statistics, write_json)
from tvad.data.ubnormal import load as _ub_load
from tvad.data.ubnormal import split_file_word

__all__ = ["ANOMALY_TYPES", "SPLIT_TYPES", "SPLITS", "NORMAL_BEHAVIOURS", "BEHAVIOURS",
           "DEFAULT_NUM_VIDEOS", "generate", "ensure", "load", "load_all", "is_complete",
           "split_statistics", "type_statistics", "behaviour_statistics", "plan", "render_spec"]

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
DEFAULT_NUM_VIDEOS = {"pretrain": 48, "train": 24, "validation": 8, "test": 12, "test_seen": 8}
ABNORMAL_FRACTION = {"pretrain": 0.75, "train": 0.5, "validation": 0.5, "test": 0.5, "test_seen": 0.5}
LIGHTINGS = (("day", 0.45), ("overcast", 0.25), ("dusk", 0.15), ("night", 0.15))
UB_CLASS = {"cyclist": "bicycle", "skateboarder": "skateboard", "car": "car", "bag": "bag"}


# ------------------------------------------------------------------------------ specs
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


# ------------------------------------------------------------------------------ agents
@dataclass
class Agent:
    id: int
    category: str  # person, cyclist, skateboarder, car, bag
    attrs: dict  # attribute names (the sidecar's `attributes`)
    colors: dict  # rgb for drawing
    behaviour: str
    u: np.ndarray
    v: np.ndarray
    present: np.ndarray
    poses: list  # per frame dict: facing, phase, swing, arms, punch
    angle: np.ndarray
    place: str  # band name where it mainly is
    anomaly_type: str | None = None
    window: tuple | None = None  # planned anomalous frames (inclusive)
    window_rule: str = "range"  # "range" or "on_road" (jaywalking)
    projectile: list | None = None  # per frame (x, y) image point or None
    phases: list = field(default_factory=list)  # [(start, end, behaviour)]
    speed: float = 0.0  # base-unit px/s along its main path
    du: float = 0.0  # main travel direction along u (+1/-1/0)
    dv: float = 0.0  # main travel direction across the road
    note: dict = field(default_factory=dict)


def _person_look(rng) -> tuple[dict, dict]:
    top = str(rng.choice(list(R.TOP_COLORS)))
    bottom = str(rng.choice(list(R.BOTTOM_COLORS)))
    bp = bool(rng.random() < 0.35)
    bpc = str(rng.choice(list(R.BACKPACK_COLORS))) if bp else None
    attrs = {"top_color": top, "bottom_color": bottom, "backpack": bp}
    if bp:
        attrs["backpack_color"] = bpc
    colors = {"top": R.TOP_COLORS[top], "bottom": R.BOTTOM_COLORS[bottom],
              "skin": R.SKIN[int(rng.integers(len(R.SKIN)))], "hair": R.HAIR[int(rng.integers(len(R.HAIR)))],
              "shoes": (40, 35, 30), "backpack": R.BACKPACK_COLORS[bpc] if bp else None}
    return attrs, colors


def _walk_v(rng, lay: R.Layout, band: str) -> float:
    v0, v1 = lay.bands[band]
    bw = v1 - v0
    if lay.orientation == "h":
        return float(rng.uniform(v0 + 0.5 * bw, v1 - 0.1 * bw))
    return float(rng.uniform(v0 + 0.3 * bw, v1 - 0.3 * bw))


def _gait(u, v, stride, swing, arms="swing", facing=None, lay=None):
    """Poses from a path: the gait phase advances with distance travelled; `stride` and `swing`
    may be per-frame arrays (e.g. walking, then running)."""
    T = len(u)
    d = np.r_[0.0, np.hypot(np.diff(u), np.diff(v))]
    stride = np.broadcast_to(np.asarray(stride, float), (T,))
    swing = np.broadcast_to(np.asarray(swing, float), (T,))
    ph = 2 * math.pi * np.cumsum(d / np.maximum(stride, 1e-6))
    out = []
    for t in range(T):
        moving = d[t] > 1e-6 or (t + 1 < T and d[t + 1] > 1e-6)
        out.append({"facing": facing if facing is not None else 1, "phase": float(ph[t]),
                    "swing": float(swing[t]) if moving else 0.0, "arms": arms if moving else "down"})
    return out


def _facing(lay: R.Layout, du: float, rng) -> int:
    if lay.orientation == "h" and du != 0:
        return 1 if du > 0 else -1
    return int(rng.choice([-1, 1]))


def _mk(oid, category, attrs, colors, behaviour, u, v, poses, place, **kw) -> Agent:
    T = len(u)
    return Agent(oid, category, attrs, colors, behaviour, np.asarray(u, float), np.asarray(v, float),
                 kw.pop("present", np.ones(T, bool)), poses, kw.pop("angle", np.zeros(T)), place, **kw)


def _speed(rng, lo, hi, lay, fps) -> tuple[float, float]:
    """(base px/s, image px/frame)."""
    s = float(rng.uniform(lo, hi))
    return s, s * lay.s / fps


# -- normal agents ---------------------------------------------------------------------------------
def _walker(rng, lay, T, fps, oid):
    band = str(rng.choice(["walk_a", "walk_b"]))
    d = float(rng.choice([-1, 1]))
    sp, ws = _speed(rng, 26, 34, lay, fps)
    u = rng.uniform(0.05, 0.95) * lay.Lu + d * ws * np.arange(T)
    v = _walk_v(rng, lay, band) + np.cumsum(rng.normal(0, 0.08, T))
    ph, _ = lay.person_hw()
    attrs, col = _person_look(rng)
    f = _facing(lay, d, rng)
    return _mk(oid, "person", attrs, col, "walking", u, v, _gait(u, v, 0.9 * ph, 0.55, facing=f), band,
               phases=[(0, T - 1, "walking")], speed=sp, du=d)


def _stander(rng, lay, T, fps, oid):
    band = str(rng.choice(["walk_a", "walk_b", "grass"]))
    if band == "grass" and lay.bands["grass"][1] - lay.bands["grass"][0] < 10 * lay.s:
        band = "walk_b"
    if band == "grass":
        g0, g1 = lay.bands["grass"]
        v = float(rng.uniform(g0 + 0.4 * (g1 - g0), g1 - 2))
    else:
        v = _walk_v(rng, lay, band)
    u = np.full(T, rng.uniform(0.08, 0.92) * lay.Lu) + np.cumsum(rng.normal(0, 0.05, T))
    attrs, col = _person_look(rng)
    f = int(rng.choice([-1, 1]))
    poses = [{"facing": f, "phase": 0.0, "swing": 0.0, "arms": "down"} for _ in range(T)]
    return _mk(oid, "person", attrs, col, "standing", u, np.full(T, v), poses, band,
               phases=[(0, T - 1, "standing")])


def _across_path(rng, lay, T, fps, u_at, speed_px, t0):
    """Feet path from one walkway across the road to the other, leaving at frame t0."""
    a0, a1 = lay.bands["walk_a"]
    b0, b1 = lay.bands["walk_b"]
    dv = float(rng.choice([-1, 1]))
    if lay.orientation == "h":
        start, end = (a1 - 0.15 * (a1 - a0), b0 + 0.6 * (b1 - b0))
    else:
        start, end = (a1 - 0.3 * (a1 - a0), b0 + 0.3 * (b1 - b0))
    if dv < 0:
        start, end = end, start
    t = np.arange(T)
    n_cross = abs(end - start) / max(speed_px, 1e-6)
    walked = np.clip(t - t0, 0, n_cross)
    v = start + dv * speed_px * walked
    drift = float(rng.uniform(-0.2, 0.2)) * speed_px
    u = u_at + drift * walked
    return u, v, dv


def _road_phases(lay: R.Layout, v: np.ndarray, on_road: str) -> list:
    """Phases of a road crossing: `on_road` while the feet are on the road, else standing/walking."""
    r0, r1 = lay.bands["road"]
    on = (v >= r0) & (v <= r1)
    moving = np.r_[np.abs(np.diff(v)) > 1e-6, False] | np.r_[False, np.abs(np.diff(v)) > 1e-6]
    labels = [on_road if on[t] else ("walking" if moving[t] else "standing") for t in range(len(v))]
    out, start = [], 0
    for t in range(1, len(v) + 1):
        if t == len(v) or labels[t] != labels[start]:
            out.append((start, t - 1, labels[start]))
            start = t
    return out


def _crosser(rng, lay, T, fps, oid):
    c0, c1 = lay.crossing
    sp, ws = _speed(rng, 26, 32, lay, fps)
    t0 = int(rng.integers(0, max(1, T // 3)))
    u, v, dv = _across_path(rng, lay, T, fps, rng.uniform(c0 + 0.3 * (c1 - c0), c1 - 0.3 * (c1 - c0)), ws, t0)
    u = u * 0 + u[0]  # straight across at the crossing
    ph, _ = lay.person_hw()
    attrs, col = _person_look(rng)
    f = int(rng.choice([-1, 1]))
    return _mk(oid, "person", attrs, col, "crossing", u, v, _gait(u, v, 0.9 * ph, 0.55, facing=f), "crossing",
               phases=_road_phases(lay, v, "crossing"), speed=sp, dv=dv)


def _lane_v(rng, lay, lane: int, category: str) -> float:
    v0, v1, _ = lay.lanes()[lane]
    lw = v1 - v0
    if lay.orientation == "h":
        return float(v1 - (0.12 if category == "car" else 0.1) * lw)
    return float((v0 + v1) / 2 + rng.uniform(-0.08, 0.08) * lw)


def _entering_u(rng, lay, d, speed_px, T, length):
    """A start u so that a mover at speed_px/frame is on screen for much of the video."""
    travel = speed_px * (T - 1)
    if travel >= lay.Lu * 0.6:
        lo, hi = -0.4 * length, max(-0.4 * length, lay.Lu - travel * 0.55)
    else:
        lo, hi = 0.05 * lay.Lu, 0.95 * lay.Lu - travel
    u0 = float(rng.uniform(lo, max(lo, hi)))
    return u0 if d > 0 else lay.Lu - u0


def _cyclist(rng, lay, T, fps, oid):
    lane = int(rng.integers(2))
    d = float(lay.lanes()[lane][2])
    sp, cs = _speed(rng, 50, 65, lay, fps)
    ph, pw = lay.person_hw()
    u = _entering_u(rng, lay, d, cs, T, 2.3 * pw) + d * cs * np.arange(T)
    v = np.full(T, _lane_v(rng, lay, lane, "cyclist"))
    attrs, col = _person_look(rng)
    bike = str(rng.choice(list(R.BIKE_COLORS)))
    attrs["bicycle_color"] = bike
    col["bike"] = R.BIKE_COLORS[bike]
    f = _facing(lay, d, rng)
    poses = _gait(u, v, 1.6 * ph, 0.5, facing=f)
    return _mk(oid, "cyclist", attrs, col, "riding", u, v, poses, f"lane_{lane}",
               phases=[(0, T - 1, "riding")], speed=sp, du=d)


def _skater(rng, lay, T, fps, oid):
    band = str(rng.choice(["walk_a", "walk_b"]))
    d = float(rng.choice([-1, 1]))
    sp, ss = _speed(rng, 40, 52, lay, fps)
    ph, pw = lay.person_hw()
    u = _entering_u(rng, lay, d, ss, T, 1.7 * pw) + d * ss * np.arange(T)
    v = np.full(T, _walk_v(rng, lay, band))
    attrs, col = _person_look(rng)
    board = str(rng.choice(list(R.BOARD_COLORS)))
    attrs["board_color"] = board
    col["board"] = R.BOARD_COLORS[board]
    f = _facing(lay, d, rng)
    poses = [{"facing": f, "phase": 0.0, "swing": 0.7, "arms": "out"} for _ in range(T)]
    return _mk(oid, "skateboarder", attrs, col, "skating", u, v, poses, band,
               phases=[(0, T - 1, "skating")], speed=sp, du=d)


def _car_look(rng):
    c = str(rng.choice(list(R.CAR_COLORS)))
    return {"color": c}, {"body": R.CAR_COLORS[c]}


def _car(rng, lay, T, fps, oid, lane=None, d=None, band=None, speed=(70, 105), behaviour="driving"):
    if band is None:
        lane = int(rng.integers(2)) if lane is None else lane
        d = float(lay.lanes()[lane][2]) if d is None else d
        v = _lane_v(rng, lay, lane, "car")
        place = f"lane_{lane}"
    else:
        v0, v1 = lay.bands[band]
        v = float(v1 - 0.08 * (v1 - v0)) if lay.orientation == "h" else float((v0 + v1) / 2)
        place = band
        d = float(rng.choice([-1, 1])) if d is None else d
    sp, cs = _speed(rng, *speed, lay, fps)
    ch, cw = lay.car_hw()
    length = cw if lay.orientation == "h" else ch
    u = _entering_u(rng, lay, d, cs, T, length) + d * cs * np.arange(T)
    attrs, col = _car_look(rng)
    f = int(d)
    poses = [{"facing": f} for _ in range(T)]
    return _mk(oid, "car", attrs, col, behaviour, u, np.full(T, v), poses, place,
               phases=[(0, T - 1, behaviour)], speed=sp, du=d)


NORMAL_MAKERS = ((_walker, 0.42), (_stander, 0.1), (_crosser, 0.13), (_cyclist, 0.1), (_skater, 0.08),
                 (_car, 0.17))


# -- anomalies ----------------------------------------------------------------------------------
def _running(rng, lay, T, fps, oid):
    band = str(rng.choice(["walk_a", "walk_b"]))
    d = float(rng.choice([-1, 1]))
    sp, ws = _speed(rng, 26, 32, lay, fps)
    rs = ws * float(rng.uniform(2.6, 3.0))
    s = int(rng.integers(max(1, T // 8), max(2, T // 3) + 1))
    us = (rng.uniform(0.04, 0.2) if d > 0 else rng.uniform(0.8, 0.96)) * lay.Lu
    t = np.arange(T)
    u = np.where(t < s, us + d * ws * (t - s), us + d * rs * (t - s))
    v = np.full(T, _walk_v(rng, lay, band))
    ph, _ = lay.person_hw()
    attrs, col = _person_look(rng)
    f = _facing(lay, d, rng)
    poses = _gait(u, v, np.where(t < s, 0.9 * ph, 1.5 * ph), np.where(t < s, 0.55, 1.0), facing=f)
    angle = np.where(t >= s, 0.13 * f if lay.orientation == "h" else 0.0, 0.0)
    return [_mk(oid, "person", attrs, col, "running", u, v, poses, band, angle=angle,
                anomaly_type="running", window=(s, T - 1), phases=[(0, s - 1, "walking"), (s, T - 1, "running")],
                speed=sp * rs / ws, du=d)]


def _falling(rng, lay, T, fps, oid):
    band = str(rng.choice(["walk_a", "walk_b"]))
    d = float(rng.choice([-1, 1]))
    sp, ws = _speed(rng, 26, 32, lay, fps)
    s = int(rng.integers(max(1, T // 6), max(2, T // 2) + 1))
    nf = max(2, int(round(0.5 * fps)))
    us = rng.uniform(0.25, 0.75) * lay.Lu
    t = np.arange(T)
    slide = np.clip(t - s, 0, nf) * ws * 0.5
    u = np.where(t < s, us + d * ws * (t - s), us + d * slide)
    v = np.full(T, _walk_v(rng, lay, band))
    ph, _ = lay.person_hw()
    attrs, col = _person_look(rng)
    f = _facing(lay, d, rng)
    poses = _gait(u, v, 0.9 * ph, 0.55, facing=f)
    for k in range(s, T):
        poses[k] = {"facing": f, "phase": 0.0, "swing": 0.0, "arms": "flail" if k < s + nf else "down"}
    angle = np.where(t >= s, f * (math.pi / 2) * np.clip((t - s + 1) / nf, 0, 1), 0.0)
    return [_mk(oid, "person", attrs, col, "falling", u, v, poses, band, angle=angle, anomaly_type="falling",
                window=(s, T - 1), phases=[(0, s - 1, "walking"), (s, T - 1, "falling")], speed=sp, du=d)]


def _fighting(rng, lay, T, fps, oid):
    band = str(rng.choice(["walk_a", "walk_b"]))
    ph, pw = lay.person_hw()
    s = int(rng.integers(max(1, T // 8), max(2, T // 3) + 1))
    uc = rng.uniform(0.25, 0.75) * lay.Lu
    vc = _walk_v(rng, lay, band)
    gap = 1.35 * pw  # close enough to punch, not so close that one hides the other
    out = []
    for k, side in enumerate((-1, 1)):  # side: image-left (-1) / image-right (+1) fighter
        if lay.orientation == "h":
            u = np.full(T, uc + side * gap / 2)
            v = np.full(T, vc)
        else:
            sgn = -side if lay.mirror else side
            u = np.full(T, uc)
            v = np.full(T, vc + sgn * gap / 2)
        if k == 1 and lay.orientation == "h":  # before the fight the right one walks in
            u = u + np.clip(s - np.arange(T), 0, None) * 0.35 * pw / max(1, s)
        jit = np.where(np.arange(T)[:, None] >= s, rng.normal(0, 1, (T, 2)), 0.0)
        u = u + jit[:, 0] * 0.12 * pw * (1 if lay.orientation == "h" else 0.3)
        v = v + jit[:, 1] * (0.04 * ph if lay.orientation == "h" else 0.12 * pw)
        f = -side  # face the other one
        attrs, col = _person_look(rng)
        poses = []
        for t in range(T):
            if t < s:
                poses.append({"facing": f, "phase": 0.0, "swing": 0.0, "arms": "down"})
            else:
                poses.append({"facing": f, "phase": float(rng.uniform(0, 2 * math.pi)), "swing": 0.35,
                              "arms": "punch", "punch": (t + k) % 2})
        angle = np.where(np.arange(T) >= s, rng.normal(0, 0.12, T), 0.0)
        out.append(_mk(oid + k, "person", attrs, col, "fighting", u, v, poses, band, angle=angle,
                       anomaly_type="fighting", window=(s, T - 1),
                       phases=[(0, s - 1, "standing"), (s, T - 1, "fighting")], note={"partner": oid + 1 - k}))
    return out


def _vehicle_on_walkway(rng, lay, T, fps, oid):
    band = str(rng.choice(["walk_a", "walk_b"]))
    a = _car(rng, lay, T, fps, oid, band=band, speed=(40, 60), behaviour="vehicle_on_walkway")
    a.anomaly_type, a.window = "vehicle_on_walkway", (0, T - 1)
    return [a]


def _wrong_way(rng, lay, T, fps, oid):
    lane = int(rng.integers(2))
    a = _car(rng, lay, T, fps, oid, lane=lane, d=-float(lay.lanes()[lane][2]), speed=(65, 95),
             behaviour="wrong_way")
    a.anomaly_type, a.window = "wrong_way", (0, T - 1)
    return [a]


def _loitering(rng, lay, T, fps, oid):
    band = str(rng.choice(["walk_a", "walk_b"]))
    ph, pw = lay.person_hw()
    uc = rng.uniform(0.2, 0.8) * lay.Lu
    amp = float(rng.uniform(0.5, 0.9)) * ph
    sp, ls = _speed(rng, 14, 20, lay, fps)
    u = np.empty(T)
    cur, d = uc + rng.uniform(-amp, amp) * 0.5, float(rng.choice([-1, 1]))
    dirs = np.empty(T)
    for t in range(T):
        u[t], dirs[t] = cur, d
        if rng.random() < 0.1:
            continue  # a pause
        cur += d * ls
        if abs(cur - uc) > amp or rng.random() < 0.06:
            d = -d
    v = np.full(T, _walk_v(rng, lay, band)) + np.cumsum(rng.normal(0, 0.15, T))
    attrs, col = _person_look(rng)
    fr = int(rng.choice([-1, 1]))
    poses = []
    dist = np.r_[0.0, np.abs(np.diff(u))]
    phase = 2 * math.pi * np.cumsum(dist) / (0.9 * ph)
    for t in range(T):
        f = int(dirs[t]) if lay.orientation == "h" else fr
        poses.append({"facing": f, "phase": float(phase[t]), "swing": 0.45 if dist[t] > 0 else 0.0,
                      "arms": "swing" if dist[t] > 0 else "down"})
    s = int(rng.integers(0, max(1, T // 6)))
    return [_mk(oid, "person", attrs, col, "loitering", u, v, poses, band, anomaly_type="loitering",
                window=(s, T - 1), phases=[(0, T - 1, "loitering")], speed=sp)]


def _throwing(rng, lay, T, fps, oid):
    band = str(rng.choice(["walk_a", "walk_b"]))
    ph, pw = lay.person_hw()
    nf = max(4, int(round(0.9 * fps)))
    s = int(rng.integers(max(1, T // 8), max(2, T - nf - 3) + 1))
    up = rng.uniform(0.2, 0.8) * lay.Lu
    vp = _walk_v(rng, lay, band)
    u, v = np.full(T, up), np.full(T, vp)
    attrs, col = _person_look(rng)
    f = int(rng.choice([-1, 1]))
    poses = []
    for t in range(T):
        arms = "throw_up" if s <= t < s + 2 else ("throw_fwd" if t == s + 2 else "down")
        poses.append({"facing": f, "phase": 0.0, "swing": 0.0, "arms": arms})
    # the projectile: from the raised hand towards the road, on an arc (image coords)
    ax, ay = lay.to_xy(up, vp)
    hx, hy = float(ax) + f * 0.3 * pw, float(ay) - 1.0 * ph
    r0, r1 = lay.bands["road"]
    tx, ty = lay.to_xy(up + f * rng.uniform(25, 55) * lay.s, (r0 + r1) / 2 + rng.uniform(-0.2, 0.2) * (r1 - r0))
    proj: list = [None] * T
    for k in range(nf):
        t = s + 2 + k
        if t >= T:
            break
        tau = (k + 1) / nf
        proj[t] = (hx + tau * (float(tx) - hx), hy + tau * (float(ty) - hy) - 0.7 * ph * math.sin(math.pi * tau))
    e = min(T - 1, s + 1 + nf)
    thing = str(rng.choice(["stone", "bottle", "ball"]))
    return [_mk(oid, "person", attrs, col, "throwing", u, v, poses, band, anomaly_type="throwing",
                window=(s, e), projectile=proj,
                phases=[(0, s - 1, "standing"), (s, e, "throwing")] + ([(e + 1, T - 1, "standing")] if e < T - 1 else []),
                note={"thrown_object": thing})]


def _jaywalking(rng, lay, T, fps, oid):
    c0, c1 = lay.crossing
    cc = (c0 + c1) / 2
    for _ in range(20):
        uj = rng.uniform(0.1, 0.9) * lay.Lu
        if abs(uj - cc) > 0.22 * lay.Lu:
            break
    sp, ws = _speed(rng, 30, 38, lay, fps)
    t0 = int(rng.integers(0, max(1, T // 5)))
    u, v, dv = _across_path(rng, lay, T, fps, uj, ws, t0)
    ph, _ = lay.person_hw()
    attrs, col = _person_look(rng)
    f = int(rng.choice([-1, 1]))
    return [_mk(oid, "person", attrs, col, "jaywalking", u, v, _gait(u, v, 0.9 * ph, 0.6, facing=f), "road",
                anomaly_type="jaywalking", window=(0, T - 1), window_rule="on_road",
                phases=_road_phases(lay, v, "jaywalking"), speed=sp, dv=dv)]


def _abandoned_object(rng, lay, T, fps, oid):
    band = str(rng.choice(["walk_a", "walk_b"]))
    d = float(rng.choice([-1, 1]))
    sp, ws = _speed(rng, 26, 32, lay, fps)
    s = int(rng.integers(max(1, T // 6), max(2, T // 3) + 1))
    us = rng.uniform(0.3, 0.7) * lay.Lu
    t = np.arange(T)
    u = np.where(t < s, us + d * ws * (t - s), us + d * ws * 1.1 * (t - s))
    v = np.full(T, _walk_v(rng, lay, band))
    ph, pw = lay.person_hw()
    attrs, col = _person_look(rng)
    f = _facing(lay, d, rng)
    bag_c = str(rng.choice(list(R.BAG_COLORS)))
    bh, bw = lay.bag_hw()
    poses = _gait(u, v, 0.9 * ph, 0.5, facing=f)
    colors_carry = dict(col, carry=R.BAG_COLORS[bag_c], carry_hw=(bh * 0.85, bw * 0.85))
    person = _mk(oid, "person", dict(attrs, carrying=f"{bag_c} suitcase"), col, "walking", u, v, poses, band,
                 phases=[(0, T - 1, "walking")], speed=sp, du=d,
                 note={"left_object": oid + 1, "colors_carry": colors_carry, "drop_frame": s})
    bx, by = (us + f * 0.45 * pw, v[0] + 1.0) if lay.orientation == "h" else (us, v[0] + f * 0.45 * pw)
    bag = _mk(oid + 1, "bag", {"color": bag_c, "type": "suitcase"}, {"body": R.BAG_COLORS[bag_c]},
              "abandoned_object", np.full(T, bx), np.full(T, by), [{} for _ in range(T)], band,
              present=t >= s, anomaly_type="abandoned_object", window=(s, T - 1),
              phases=[(s, T - 1, "abandoned_object")], note={"left_by": oid})
    return [person, bag]


ANOMALY_MAKERS = {"running": _running, "falling": _falling, "fighting": _fighting,
                  "vehicle_on_walkway": _vehicle_on_walkway, "loitering": _loitering, "throwing": _throwing,
                  "jaywalking": _jaywalking, "wrong_way": _wrong_way, "abandoned_object": _abandoned_object}


def _nominal_boxes(a: Agent, lay: R.Layout) -> np.ndarray:
    """(T, 4) rough image boxes from the anchor path and the sprite's nominal size (NaN: absent)."""
    ph, pw = lay.person_hw()
    h, w = {"person": (ph, 1.3 * pw), "cyclist": (1.1 * ph, 2.3 * pw), "skateboarder": (ph, 1.7 * pw),
            "car": lay.car_hw(), "bag": lay.bag_hw()}[a.category]
    x, y = lay.to_xy(a.u, a.v)
    b = np.stack([x - w / 2, y - h, x + w / 2, y], 1)
    b[~a.present] = np.nan
    return b


def _crowded(new: Agent, others: list[Agent], lay: R.Layout) -> bool:
    """True when `new` would cover another agent (>30% of the smaller box) in >20% of the frames
    where both are on screen: a spawn on top of someone hides them."""
    nb = _nominal_boxes(new, lay)
    for o in others:
        ob = _nominal_boxes(o, lay)
        iw = np.minimum(nb[:, 2], ob[:, 2]) - np.maximum(nb[:, 0], ob[:, 0])
        ih = np.minimum(nb[:, 3], ob[:, 3]) - np.maximum(nb[:, 1], ob[:, 1])
        inter = np.clip(iw, 0, None) * np.clip(ih, 0, None)
        small = np.minimum((nb[:, 2] - nb[:, 0]) * (nb[:, 3] - nb[:, 1]), (ob[:, 2] - ob[:, 0]) * (ob[:, 3] - ob[:, 1]))
        on = ~np.isnan(inter) & (np.minimum(nb[:, 2], ob[:, 2]) > 0) & (np.maximum(nb[:, 0], ob[:, 0]) < lay.W) \
            & (np.minimum(nb[:, 3], ob[:, 3]) > 0) & (np.maximum(nb[:, 1], ob[:, 1]) < lay.H)
        if on.sum() and ((inter[on] / small[on]) > 0.3).mean() > 0.2:
            return True
    return False


def _plan_agents(spec: VideoSpec, lay: R.Layout, rng) -> list[Agent]:
    T, fps = spec.num_frames, spec.fps
    agents: list[Agent] = []
    oid = 1
    for typ in spec.anomaly_types:
        for _ in range(10):
            new = ANOMALY_MAKERS[typ](rng, lay, T, fps, oid)
            if not any(_crowded(a, agents, lay) for a in new):
                break
        agents += new
        oid += len(new)
    n_normal = int(rng.integers(2, 5)) if spec.kind == "abnormal" else int(rng.integers(3, 7))
    makers, w = zip(*NORMAL_MAKERS)
    p = np.array(w) / sum(w)
    for _ in range(n_normal):
        for _try in range(10):
            a = makers[int(rng.choice(len(makers), p=p))](rng, lay, T, fps, oid)
            if not _crowded(a, agents, lay):
                agents.append(a)
                oid += 1
                break
    return agents


# ------------------------------------------------------------------------------ rendering
def _sprite(a: Agent, t: int, lay: R.Layout) -> tuple[list, float]:
    ph, pw = lay.person_hw()
    pose = a.poses[t]
    if a.category == "person":
        col = a.colors
        if "colors_carry" in a.note and t < a.note["drop_frame"]:
            col = a.note["colors_carry"]
        parts, _ = R.person_parts(ph, pw, col, pose)
        return parts, pw
    if a.category == "cyclist":
        return R.cyclist_parts(ph, pw, a.colors, pose), 2.3 * pw
    if a.category == "skateboarder":
        return R.skater_parts(ph, pw, a.colors, pose), 1.7 * pw
    if a.category == "car":
        ch, cw = lay.car_hw()
        return R.car_parts(ch, cw, a.colors, pose, lay.orientation), cw
    if a.category == "bag":
        bh, bw = lay.bag_hw()
        return R.bag_parts(bh, bw, a.colors), bw
    raise ValueError(a.category)


def _render_agents(spec: VideoSpec, lay: R.Layout, agents: list[Agent], bg: np.ndarray
                   ) -> tuple[np.ndarray, np.ndarray]:
    T = spec.num_frames
    H, W = lay.H, lay.W
    frames = np.empty((T, H, W, 3), np.uint8)
    ids = np.zeros((T, H, W), np.uint8)
    nrng = np.random.default_rng([spec.seed, 5])
    fog = float(nrng.uniform(0.35, 0.5)) if spec.fog else 0.0
    noise = float(nrng.uniform(2.0, 4.5))
    xy = {a.id: lay.to_xy(a.u, a.v) for a in agents}
    for t in range(T):
        img = bg.copy()
        live = [a for a in agents if a.present[t]]
        live.sort(key=lambda a: (float(xy[a.id][1][t]), a.id))
        sprites = []
        for a in live:
            x, y = float(xy[a.id][0][t]), float(xy[a.id][1][t])
            parts, width = _sprite(a, t, lay)
            sprites.append((a, x, y, parts, width))
            ang = float(a.angle[t])
            rx = 0.55 * width if abs(ang) < 0.7 else 0.55 * lay.person_hw()[0]
            R.draw_shadow(img, x + (0.3 * rx * np.sign(ang) if abs(ang) >= 0.7 else 0), y - 1, rx, max(2.0, 0.2 * rx))
        for a, x, y, parts, _ in sprites:
            R.draw_parts(img, ids[t], a.id, parts, x, y, float(a.angle[t]))
            if a.projectile is not None and a.projectile[t] is not None:
                px, py = a.projectile[t]
                r = max(3.0, 3.5 * lay.s)
                R.draw_parts(img, ids[t], a.id, [("ellipse", (0.0, 0.0, r, r), (235, 120, 40))], px, py)
        frames[t] = R.apply_light(img, spec.lighting, fog, nrng, noise)
    return frames, ids


_BACKGROUNDS: dict = {}  # (dataset seed, scene, size) -> static background (a scene's videos share it)


@dataclass
class Rendered:
    spec: VideoSpec
    frames: np.ndarray  # uint8 (T, H, W, 3) as rendered (before video compression)
    ids: np.ndarray  # uint8 (T, H, W) every object's id
    objects: list  # sidecar object dicts
    rows: np.ndarray  # (R, 3) tracks rows object_id, start, end
    labels: np.ndarray  # int8 (T,)
    meta: dict


def render_spec(spec: VideoSpec, max_tries: int = 30) -> Rendered:
    """Render one video: plan agents, draw, measure boxes, fix anomaly ranges, write captions.

    A plan whose anomaly would be mostly invisible (off screen, occluded) is redrawn.
    """
    lay = _scene_layout(spec.dataset_seed, spec.scene, spec.size)
    key = (spec.dataset_seed, spec.scene, tuple(spec.size))
    if key not in _BACKGROUNDS:
        if len(_BACKGROUNDS) > 32:
            _BACKGROUNDS.clear()
        _BACKGROUNDS[key] = R.render_background(lay)
    bg = _BACKGROUNDS[key]
    rng = np.random.default_rng(spec.seed)
    T = spec.num_frames
    min_len = max(2, T // 6)
    for attempt in range(max_tries):
        agents = _plan_agents(spec, lay, rng)
        frames, ids = _render_agents(spec, lay, agents, bg)
        geo = objects_from_id_maps(((t, ids[t]) for t in range(T)), T)
        ok, windows = True, {}
        for a in agents:
            if a.anomaly_type is None:
                continue
            vis = (geo[a.id][0][:, 0] >= 0) if a.id in geo else np.zeros(T, bool)
            if a.window_rule == "on_road":
                r0, r1 = lay.bands["road"]
                want = (a.v >= r0) & (a.v <= r1)
            else:
                want = np.zeros(T, bool)
                want[a.window[0]:a.window[1] + 1] = True
            hit = np.flatnonzero(want & vis)
            if len(hit) < min_len:
                ok = False
                break
            s, e = int(hit[0]), int(hit[-1])
            if vis[s:e + 1].mean() < 0.8:
                ok = False
                break
            windows[a.id] = (s, e)
        if ok or attempt == max_tries - 1:
            break
    if not ok:
        raise DataError(f"{spec.name}: could not place a visible anomaly in {max_tries} tries")
    objects, rows = [], []
    for a in agents:
        if a.id not in geo:
            continue  # never on screen: not an object of this video
        boxes, cents = geo[a.id]
        rng_ = windows.get(a.id)
        if rng_:
            rows.append((a.id, *rng_))
        objects.append(_object_dict(a, boxes, cents, rng_, lay, spec, agents))
    rows_a = np.array(sorted(rows), dtype=np.int64).reshape(-1, 3)
    labels = np.zeros(T, np.int8)
    for _, s, e in rows_a:
        labels[s:e + 1] = 1
    meta = {"video": spec.name, "split": spec.split, "kind": spec.kind, "scene": spec.scene,
            "orientation": lay.orientation, "mirror": lay.mirror, "zoom": round(lay.zoom, 4),
            "lighting": spec.lighting, "fog": spec.fog, "size": list(spec.size), "fps": spec.fps,
            "num_frames": T, "seed": spec.seed, "anomaly_types": sorted(set(spec.anomaly_types)),
            "generator": f"tvad.data.synthetic v{VERSION}",
            "places": {b: lay.place_name(b) for b in ("walk_a", "walk_b", "road", "crossing")}}
    return Rendered(spec, frames, ids, objects, rows_a, labels, meta)


# ------------------------------------------------------------------------------ captions
def region_word(x: float, y: float, W: int, H: int) -> str:
    """The authors' coarse region words: left/middle/right, top/bottom, top-left, ..."""
    col = "left" if x < W / 3 else ("right" if x >= 2 * W / 3 else "middle")
    row = "top" if y < H / 3 else ("bottom" if y >= 2 * H / 3 else "middle")
    if row == "middle":
        return col
    if col == "middle":
        return row
    return f"{row}-{col}"


def _place(lay: R.Layout, band: str) -> str:
    try:
        return lay.place_name(band)
    except KeyError:
        return band


def _a(word: str) -> str:
    return f"an {word}" if word[:1].lower() in "aeiou" else f"a {word}"


def _who(a: Agent) -> str:
    at = a.attrs
    if a.category in ("person", "skateboarder", "cyclist"):
        look = f"in {_a(at['top_color'])} top and {at['bottom_color']} trousers"
        if at.get("backpack"):
            look += f" with {_a(at['backpack_color'])} backpack"
        if a.category == "person":
            return f"a person {look}"
        if a.category == "cyclist":
            return f"a cyclist {look} on {_a(at['bicycle_color'])} bicycle"
        return f"a skateboarder {look} on {_a(at['board_color'])} board"
    if a.category == "car":
        return _a(f"{at['color']} car")
    return _a(f"{at['color']} suitcase")


def _caption(a: Agent, lay: R.Layout, cents: np.ndarray, agents: list[Agent]) -> str:
    pl = _place(lay, a.place)
    dirw = lay.direction_word(a.du) if a.du else ""
    acr = lay.across_word(a.dv) if a.dv else ""
    b = a.behaviour
    if a.category == "person" and "left_object" in a.note:
        bag = next(x for x in agents if x.id == a.note["left_object"])
        does = f"walks {dirw} along the {pl}, puts down {_a(bag.attrs['color'])} suitcase and walks away without it"
    else:
        does = {
            "walking": f"walks {dirw} along the {pl}",
            "standing": f"stands still on the {pl}",
            "crossing": f"crosses the road at the zebra crossing, heading {acr}",
            "riding": f"rides {dirw} in the {pl}",
            "skating": f"skates {dirw} along the {pl}",
            "driving": f"drives {dirw} in the {pl}",
            "running": f"walks and then suddenly runs {dirw} along the {pl}",
            "falling": f"walks {dirw} along the {pl} and then falls to the ground",
            "fighting": f"fights with another person on the {pl}",
            "vehicle_on_walkway": f"drives {dirw} along the {pl}, where cars are not allowed",
            "wrong_way": f"drives the wrong way, {dirw}, in the {pl}",
            "loitering": f"loiters back and forth on the {pl}",
            "throwing": f"throws {_a(a.note.get('thrown_object', 'small object'))} towards the road from the {pl}",
            "jaywalking": f"crosses the road away from the zebra crossing, heading {acr}",
            "abandoned_object": f"is left unattended on the {pl}",
        }[b]
    vis = np.flatnonzero(~np.isnan(cents[:, 0]))
    where = ""
    if len(vis):
        (x0, y0), (x1, y1) = cents[vis[0]], cents[vis[-1]]
        r0, r1 = region_word(x0, y0, lay.W, lay.H), region_word(x1, y1, lay.W, lay.H)
        where = (f", staying in the {r0} of the view" if r0 == r1 or math.hypot(x1 - x0, y1 - y0) < 0.1 * lay.Lu
                 else f", moving from the {r0} to the {r1} of the view")
    text = f"{_who(a)} {does}{where}."
    return text[0].upper() + text[1:]


def _object_dict(a: Agent, boxes, cents, window, lay, spec, agents) -> dict:
    T = spec.num_frames
    return {
        "id": int(a.id), "category": a.category, "attributes": a.attrs,
        "anomalous": window is not None, "anomaly_type": a.anomaly_type if window else None,
        "anomaly_ranges": [list(window)] if window else [], "behaviour": a.behaviour,
        "caption": _caption(a, lay, cents, agents),
        "boxes": [None if b[0] < 0 else [int(x) for x in b] for b in boxes],
        "centroids": [None if np.isnan(c[0]) else [round(float(c[0]), 2), round(float(c[1]), 2)] for c in cents],
        "place": _place(lay, a.place),
        "direction": (lay.direction_word(a.du) if a.du else (lay.across_word(a.dv) if a.dv else "none")),
        "speed_px_s": round(float(a.speed) * lay.s, 2),
        "phases": [[int(s), int(e), b] for s, e, b in a.phases if s <= e and e < T],
        **({"partner": a.note["partner"]} if "partner" in a.note else {}),
        **({"left_object": a.note["left_object"]} if "left_object" in a.note else {}),
        **({"left_by": a.note["left_by"]} if "left_by" in a.note else {}),
        **({"thrown_object": a.note["thrown_object"]} if "thrown_object" in a.note else {}),
    }


# ------------------------------------------------------------------------------ writing
def _write_video(spec: VideoSpec, root: str) -> dict:
    from PIL import Image

    from tvad.data.video import write_video

    r = render_spec(spec)
    scene_dir = Path(root) / f"Scene{spec.scene}"
    ann = scene_dir / f"{spec.name}_annotations"
    ann.mkdir(parents=True, exist_ok=True)
    for t in range(spec.num_frames):
        Image.fromarray(r.ids[t], mode="L").save(ann / f"{spec.name}_{t:04d}_gt.png", optimize=False,
                                                 compress_level=1)
    if spec.kind == "abnormal":
        atomic_write_text(ann / f"{spec.name}_tracks.txt",
                          "".join(f"{o},{s},{e}\n" for o, s, e in r.rows))
    write_json(ann / f"{spec.name}_objects.json", {**r.meta, "objects": r.objects})
    write_video(scene_dir / f"{spec.name}.mp4", r.frames, spec.fps)
    return {"name": spec.name, "split": spec.split, "kind": spec.kind,
            "classes": {o["id"]: UB_CLASS[o["category"]] for o in r.objects if o["category"] in UB_CLASS},
            "frames": spec.num_frames, "abnormal_frames": int(r.labels.sum())}


def _params(num_videos, seed, size, num_frames, fps, num_scenes, abnormal_fraction, fog_prob) -> dict:
    return {"num_videos": _num_videos(num_videos), "seed": int(seed), "size": [int(size[0]), int(size[1])],
            "num_frames": int(num_frames), "fps": float(fps), "num_scenes": int(num_scenes),
            "abnormal_fraction": abnormal_fraction, "fog_prob": float(fog_prob), "version": VERSION}


def is_complete(root: str | os.PathLike, params: dict | None = None) -> bool:
    """True when `root` holds a complete generated dataset (with these params, if given)."""
    p = Path(root) / "meta.json"
    if not p.exists():
        return False
    try:
        meta = read_json(p)
    except DataError:
        return False
    return bool(meta.get("complete")) and (params is None or meta.get("params") == params)


def generate(root: str | os.PathLike, num_videos: dict | int | None = None, seed: int = 0,
             size: tuple = (224, 224), num_frames: int = 24, fps: float = 8.0, num_scenes: int = 8,
             abnormal_fraction: dict | float | None = None, fog_prob: float = 0.15, workers: int = 1,
             overwrite: bool = False, progress: bool = False) -> dict:
    """Render the dataset into `root` in UBnormal's layout; returns the meta dict (also written
    as ``root/meta.json``, last, marking the dataset complete).

    num_videos: per split, e.g. {"pretrain": 48, "train": 24, "validation": 8, "test": 12,
                "test_seen": 8} (the default), or one int for every split.
    size:       frame (H, W); sprites scale with min(H, W) / 224 (people >= 28 px tall).
    workers:    processes (1 = in this process); the output does not depend on it.
    overwrite:  replace an earlier generated (or interrupted) dataset with other parameters (only
                our own files: Scene*/, scripts/, meta.json); otherwise that raises `DataError`.
                A non-empty folder we did not generate is never written to.
    """
    root = Path(root)
    if min(size) < 112:
        raise ValueError(f"size {tuple(size)} too small: agents must span >= 28 px (use >= 224)")
    params = _params(num_videos, seed, size, num_frames, fps, num_scenes, abnormal_fraction, fog_prob)
    if num_frames < 8:
        raise ValueError(f"num_frames must be >= 8, got {num_frames}")
    if root.exists() and any(root.iterdir()):
        if is_complete(root, params):
            return read_json(root / "meta.json")
        meta_p = root / "meta.json"
        ours = (meta_p.exists() and "tvad.data.synthetic" in meta_p.read_text(errors="replace")) or all(
            (p.is_dir() and (p.name.startswith("Scene") or p.name == "scripts")) for p in root.iterdir())
        if not ours:
            raise DataError(f"{root}: folder is not empty and was not generated by tvad.data.synthetic; "
                            f"refusing to write there (choose another root)")
        if not overwrite:
            raise DataError(f"{root}: holds a synthetic dataset generated with other parameters or left "
                            f"incomplete (pass overwrite=True to replace it)")
        for p in list(root.glob("Scene*")) + [root / "scripts"]:
            if p.is_dir():
                shutil.rmtree(p)
        meta_p.unlink(missing_ok=True)
    root.mkdir(parents=True, exist_ok=True)
    specs = plan(num_videos, seed, size, num_frames, fps, num_scenes, abnormal_fraction, fog_prob)
    t0 = time.time()
    if workers and workers > 1:
        # the platform's default start method; workers use numpy, PIL and PyAV only (never torch)
        with ProcessPoolExecutor(max_workers=workers) as ex:
            results = list(ex.map(_write_video, specs, [str(root)] * len(specs), chunksize=4))
    else:
        results = []
        for i, s in enumerate(specs):
            results.append(_write_video(s, str(root)))
            if progress and (i + 1) % 10 == 0:
                print(f"  {i + 1}/{len(specs)} videos ({time.time() - t0:.1f} s)", flush=True)
    scripts = root / "scripts"
    scripts.mkdir(exist_ok=True)
    for split in SPLITS:
        word = split_file_word(split)
        for kind in ("abnormal", "normal"):
            names = [r["name"] for r in results if r["split"] == split and r["kind"] == kind]
            atomic_write_text(scripts / f"{kind}_{word}_video_names.txt", "".join(n + "\n" for n in names))
    # interned class names: the pickle's bytes do not depend on which process built the dicts
    table = {r["name"]: {int(k): sys.intern(str(c)) for k, c in r["classes"].items()} for r in results if r["classes"]}
    atomic_write_bytes(scripts / "object_names_per_video.pkl", pickle.dumps(table, protocol=4))
    meta = {"generator": "tvad.data.synthetic", "version": VERSION, "params": params,
            "splits": {s: {"anomaly_types": list(SPLIT_TYPES[s]),
                           "videos": sum(r["split"] == s for r in results),
                           "abnormal_videos": sum(r["split"] == s and r["kind"] == "abnormal" for r in results)}
                       for s in SPLITS},
            "videos": len(results), "frames": sum(r["frames"] for r in results),
            "seconds": round(time.time() - t0, 2), "complete": True}
    write_json(root / "meta.json", meta, indent=1)
    return meta


def ensure(root: str | os.PathLike, **kw) -> Path:
    """Generate into `root` unless a complete dataset with the same parameters is there."""
    generate(root, **kw)
    return Path(root)


def generate_from_config(data_cfg: Any, root: str | os.PathLike | None = None, seed: int = 0,
                         workers: int = 1) -> Path:
    """`ensure` with a `tvad.config.DataConfig` (frame_size, frames_per_video, video_fps, num_videos)."""
    return ensure(root or data_cfg.root, num_videos=dict(data_cfg.num_videos), seed=seed,
                  size=tuple(data_cfg.frame_size), num_frames=int(data_cfg.frames_per_video),
                  fps=float(data_cfg.video_fps), workers=workers)


# ------------------------------------------------------------------------------ reading
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
