"""One synthetic video: agents planned without crowding, drawn frame by frame, measured from the
id maps, anomaly ranges fixed to where the anomaly is visible, captions written (`render_spec`)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tvad.data import render as R
from tvad.data.geometry import objects_from_id_maps
from tvad.data.record import DataError
from tvad.data.synthetic.agents import NORMAL_MAKERS, Agent
from tvad.data.synthetic.anomalies import ANOMALY_MAKERS
from tvad.data.synthetic.captions import object_dict
from tvad.data.synthetic.specs import VERSION, VideoSpec, _scene_layout


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
        objects.append(object_dict(a, boxes, cents, rng_, lay, spec, agents))
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
