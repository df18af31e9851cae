"""The nine anomaly makers (running, falling, fighting, vehicle_on_walkway, loitering, throwing,
jaywalking, wrong_way, abandoned_object): `maker(rng, layout, T, fps, object_id) -> [Agent, ...]`
(two agents for fighting and abandoned_object), each with its anomaly type and planned window."""

from __future__ import annotations

import math

import numpy as np

from tvad.data import render as R
from tvad.data.synthetic.agents import (_across_path, _car, _facing, _gait, _mk, _person_look, _road_phases,
                                        _speed, _walk_v)


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
