"""Agents of a synthetic video and the makers of normal behaviour: walking along walkways,
standing, crossing at the crossing, riding and driving with the traffic, skating.

An `Agent` is a path in the scene's (u, v) coordinates (u along the road, v across it), per-frame
poses, looks and behaviour phases. Every maker draws from the video's rng in a fixed order (the
dataset's determinism depends on it): `maker(rng, layout, T, fps, object_id) -> Agent`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from tvad.data import render as R


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
