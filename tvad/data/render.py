"""Procedural surveillance scenes for the synthetic dataset: layout, background, sprites, light.

Everything is numpy-vectorised: a sprite is a list of parts (rectangles, ellipses, capsules,
rings) in its own upright coordinates (origin at the feet, y down), evaluated on the pixel grid
of its bounding box after an inverse rotation, so one code path draws a walking, leaning or
fallen person. Every drawn pixel of agent k writes k into the frame's object-id map; shadows,
textures, light, fog and noise never do.

Geometry: the road runs along the *u* axis; bands across it (*v*) hold buildings, a walkway, a
verge, the road (two lanes, opposite directions, a zebra crossing), a second walkway and grass.
A viewpoint maps (u, v) to the image: road horizontal (x=u, y=v) or vertical (x=v or W-1-v,
y=u), with a zoom; sprites stay upright in every viewpoint (cars seen from the side on a
horizontal road, from above on a vertical one).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

BASE = 224  # the frame side the sizes below are given for; they scale with min(H, W) / BASE

# Colour names used in attributes and captions -> RGB.
TOP_COLORS = {"red": (200, 40, 40), "blue": (40, 70, 200), "green": (40, 150, 60),
              "yellow": (230, 200, 40), "white": (235, 235, 235), "black": (30, 30, 30),
              "orange": (240, 130, 30), "purple": (130, 50, 160), "pink": (240, 140, 180),
              "grey": (130, 130, 130)}
BOTTOM_COLORS = {"blue": (40, 60, 140), "black": (25, 25, 30), "grey": (110, 110, 115),
                 "brown": (110, 70, 40), "white": (225, 225, 220), "khaki": (180, 160, 110)}
CAR_COLORS = {"red": (190, 30, 30), "blue": (30, 60, 180), "white": (235, 235, 235),
              "black": (25, 25, 25), "silver": (175, 180, 185), "yellow": (235, 200, 30),
              "green": (30, 120, 60)}
BAG_COLORS = {"brown": (120, 75, 35), "black": (30, 30, 30), "red": (180, 30, 40),
              "blue": (30, 60, 160), "green": (40, 110, 50)}
BACKPACK_COLORS = {"black": (35, 35, 35), "navy": (30, 40, 90), "red": (160, 30, 30),
                   "olive": (90, 100, 40)}
BIKE_COLORS = {"red": (200, 40, 40), "blue": (40, 80, 210), "black": (30, 30, 30),
               "silver": (180, 185, 190)}
BOARD_COLORS = {"brown": (140, 90, 50), "black": (30, 30, 30), "green": (50, 150, 70)}
SKIN = [(240, 200, 170), (210, 160, 120), (160, 110, 75), (105, 70, 45)]
HAIR = [(30, 25, 20), (90, 60, 30), (200, 170, 90), (120, 120, 120)]

LIGHTING = {  # name: (gain, additive tint RGB, desaturation)
    "day": (1.0, (0, 0, 0), 0.0),
    "overcast": (0.86, (4, 4, 8), 0.35),
    "dusk": (0.74, (22, 6, -14), 0.1),
    "night": (0.48, (-4, 0, 18), 0.2),
}


# ------------------------------------------------------------------------------ layout
@dataclass
class Layout:
    """Where things are. Coordinates in pixels: u along the road, v across it."""

    H: int
    W: int
    orientation: str  # "h": road left-right; "v": road top-bottom
    mirror: bool  # "v" only: v runs right-to-left (buildings on the right)
    zoom: float
    bands: dict = field(default_factory=dict)  # name -> (v0, v1)
    crossing: tuple = (0.0, 0.0)  # (u0, u1) of the zebra crossing
    lane_dirs: tuple = (-1, 1)  # travel direction along u of lane 0 (near walk_a) and lane 1
    seed: int = 0  # background texture seed

    @property
    def s(self) -> float:
        """Pixel size of one base unit: frame scale times zoom."""
        return min(self.H, self.W) / BASE * self.zoom

    @property
    def Lu(self) -> int:
        return self.W if self.orientation == "h" else self.H

    @property
    def Lv(self) -> int:
        return self.H if self.orientation == "h" else self.W

    def to_xy(self, u, v):
        u, v = np.asarray(u, float), np.asarray(v, float)
        if self.orientation == "h":
            return u, v
        return ((self.W - v) if self.mirror else v), u

    def uv_grid(self) -> tuple[np.ndarray, np.ndarray]:
        yy, xx = np.mgrid[0:self.H, 0:self.W].astype(np.float32) + 0.5
        if self.orientation == "h":
            return xx, yy
        return yy, ((self.W - xx) if self.mirror else xx)

    def lanes(self) -> list[tuple[float, float, int]]:
        r0, r1 = self.bands["road"]
        mid = (r0 + r1) / 2
        return [(r0, mid, self.lane_dirs[0]), (mid, r1, self.lane_dirs[1])]

    # -- sizes (image pixels) ------------------------------------------------------------------
    def person_hw(self) -> tuple[float, float]:
        return max(28.0, 36 * self.s), max(14.0, 18 * self.s)

    def car_hw(self) -> tuple[float, float]:
        """(h, w) of a car sprite in the image: side view (h) or top view (v)."""
        short, long_ = max(28.5, 30 * self.s), max(46.0, 50 * self.s)
        return (short, long_) if self.orientation == "h" else (long_, short)

    def bag_hw(self) -> tuple[float, float]:
        return max(22.0, 24 * self.s), max(28.5, 30 * self.s)

    # -- words -----------------------------------------------------------------------------------
    def place_name(self, band: str) -> str:
        if self.orientation == "h":
            a, b = "upper", "lower"
        else:
            a, b = ("right", "left") if self.mirror else ("left", "right")
        return {"walk_a": f"{a} walkway", "walk_b": f"{b} walkway", "road": "road",
                "lane_0": f"{a} lane of the road", "lane_1": f"{b} lane of the road",
                "crossing": "zebra crossing", "grass": "grass", "verge": "grass verge",
                "buildings": "building front"}[band]

    def direction_word(self, du: float) -> str:
        """Travel along u -> image direction word."""
        if self.orientation == "h":
            return "to the right" if du > 0 else "to the left"
        return "towards the bottom of the view" if du > 0 else "towards the top of the view"

    def across_word(self, dv: float) -> str:
        """Travel along v (across the road) -> image direction word."""
        if self.orientation == "h":
            return "downwards" if dv > 0 else "upwards"
        right = (dv > 0) != self.mirror
        return "to the right" if right else "to the left"


def make_layout(rng: np.random.Generator, H: int, W: int, orientation: str | None = None) -> Layout:
    """A random viewpoint and street layout for an H x W frame."""
    ori = orientation or ("h" if rng.random() < 0.6 else "v")
    lay = Layout(H=H, W=W, orientation=ori, mirror=bool(ori == "v" and rng.random() < 0.5),
                 zoom=float(rng.uniform(0.86, 1.04)), seed=int(rng.integers(2**31)))
    s, Lv = lay.s, lay.Lv
    walk, verge, road = 42 * s, 8 * s, 70 * s
    fixed = walk * 2 + verge + road
    build = float(np.clip(rng.uniform(0.12, 0.22) * Lv, 0.06 * Lv, max(0.06 * Lv, Lv - fixed - 4 * s)))
    v = 0.0
    for name, size in (("buildings", build), ("walk_a", walk), ("verge", verge), ("road", road),
                       ("walk_b", walk)):
        lay.bands[name] = (v, v + size)
        v += size
    lay.bands["grass"] = (v, float(Lv))
    cw = 40 * s
    c0 = float(rng.uniform(0.2, 0.8) * lay.Lu - cw / 2)
    lay.crossing = (c0, c0 + cw)
    lay.lane_dirs = (-1, 1) if rng.random() < 0.5 else (1, -1)
    return lay


# ------------------------------------------------------------------------------ background
def _smooth_noise(rng: np.random.Generator, H: int, W: int, cell: int) -> np.ndarray:
    """Low-frequency noise in [-1, 1]: coarse random grid, bilinear upsampling."""
    gh, gw = H // cell + 2, W // cell + 2
    g = rng.uniform(-1, 1, (gh, gw)).astype(np.float32)
    ys = (np.arange(H) + 0.5) / cell
    xs = (np.arange(W) + 0.5) / cell
    y0, x0 = ys.astype(int), xs.astype(int)
    fy, fx = (ys - y0)[:, None], (xs - x0)[None, :]
    a = g[y0][:, x0]
    b = g[y0][:, x0 + 1]
    c = g[y0 + 1][:, x0]
    d = g[y0 + 1][:, x0 + 1]
    return (a * (1 - fx) * (1 - fy) + b * fx * (1 - fy) + c * (1 - fx) * fy + d * fx * fy)


def render_background(lay: Layout) -> np.ndarray:
    """float32 (H, W, 3) static scene: buildings, walkways, verge with trees, road, grass."""
    rng = np.random.default_rng(lay.seed)
    H, W, s = lay.H, lay.W, lay.s
    U, V = lay.uv_grid()
    img = np.zeros((H, W, 3), np.float32)
    fine = rng.normal(0, 1, (H, W)).astype(np.float32)
    blot = _smooth_noise(rng, H, W, max(4, int(12 * s)))

    def band(name):
        v0, v1 = lay.bands[name]
        return (V >= v0) & (V < v1)

    # grass (verge and the far band)
    g = band("grass") | band("verge")
    gc = np.array(rng.choice([(70, 130, 50), (85, 140, 60), (60, 115, 45)]), np.float32)
    img[g] = gc + (blot[g] * 18 + fine[g] * 6)[:, None] * np.array([0.6, 1.0, 0.5], np.float32)

    # walkways: paving tiles
    tile = max(6.0, 11 * s)
    wc = np.array(rng.choice([(190, 185, 175), (175, 170, 165), (200, 190, 170)]), np.float32)
    for name in ("walk_a", "walk_b"):
        m = band(name)
        grout = ((np.mod(U, tile) < 1.0) | (np.mod(V - lay.bands[name][0], tile) < 1.0)) & m
        img[m] = wc + (fine[m] * 5 + blot[m] * 6)[:, None]
        img[grout] = wc * 0.82

    # road: asphalt, edge lines, dashed centre line, zebra crossing
    r0, r1 = lay.bands["road"]
    m = band("road")
    ac = float(rng.uniform(65, 90))
    img[m] = ac + (fine[m] * 6 + blot[m] * 5)[:, None]
    edge = m & ((V - r0 < 2 * s) | (r1 - V < 2 * s))
    img[edge] = (225, 225, 220)
    mid = (r0 + r1) / 2
    dash = m & (np.abs(V - mid) < 1.2 * s) & (np.mod(U, 22 * s) < 11 * s)
    img[dash] = (230, 200, 60)
    c0, c1 = lay.crossing
    zebra = m & (U >= c0) & (U < c1) & (np.mod(V - r0, 10 * s) < 5 * s)
    img[zebra] = (235, 235, 232)

    # buildings: facades of varying width, windows, doors, a dark roof edge
    b0, b1 = lay.bands["buildings"]
    m = band("buildings")
    u = 0.0
    while u < lay.Lu:
        wd = float(rng.uniform(45, 95) * s)
        fc = np.array(rng.choice([(170, 120, 90), (150, 150, 155), (200, 185, 150), (120, 90, 80),
                                  (180, 170, 160), (110, 120, 135)]), np.float32)
        seg = m & (U >= u) & (U < u + wd)
        img[seg] = fc + fine[seg, None] * 4
        pu, pv = float(rng.uniform(13, 19) * s), float(rng.uniform(12, 17) * s)
        win = seg & (np.mod(U - u, pu) > 0.35 * pu) & (np.mod(U - u, pu) < 0.8 * pu) \
            & (np.mod(V - b0, pv) > 0.3 * pv) & (np.mod(V - b0, pv) < 0.8 * pv) \
            & (U > u + 3 * s) & (U < u + wd - 3 * s) & (V < b1 - 4 * s)
        img[win] = (70, 90, 110) if rng.random() < 0.7 else (220, 210, 150)
        img[seg & (U < u + 1.5 * s)] = fc * 0.6
        u += wd
    img[m & (V < b0 + 3 * s)] *= 0.55
    img[m & (V > b1 - 2 * s)] *= 0.7

    # trees on the verge and bushes on the grass (static: never in the id map)
    yy, xx = np.mgrid[0:H, 0:W].astype(np.float32) + 0.5
    for name, n, r in (("verge", int(lay.Lu / (60 * s)) + 1, 7.0), ("grass", int(lay.Lu / (50 * s)), 6.0)):
        v0, v1 = lay.bands[name]
        if v1 - v0 < 3 * s:
            continue
        for _ in range(n):
            cu, cv = rng.uniform(0, lay.Lu), rng.uniform(v0, v1)
            cx, cy = lay.to_xy(cu, cv)
            rr = r * s * rng.uniform(0.8, 1.3)
            d2 = (xx - cx) ** 2 + (yy - cy) ** 2
            tree = d2 < rr ** 2
            shade = 1.0 - 0.35 * np.sqrt(np.clip(d2 / rr ** 2, 0, 1))
            img[tree] = np.array([40, 100, 40], np.float32) * shade[tree, None] + fine[tree, None] * 5
    return np.clip(img, 0, 255)


# ------------------------------------------------------------------------------ sprites
# A part: (shape, params, rgb). Shapes (local coords, origin at the feet, y down):
#   rect (x0, y0, x1, y1); ellipse (cx, cy, rx, ry[, ymax]); seg (x0, y0, x1, y1, r); ring (cx, cy, ro, ri)
def _part_extent(shape: str, p) -> tuple[float, float, float, float]:
    if shape == "rect":
        return min(p[0], p[2]), min(p[1], p[3]), max(p[0], p[2]), max(p[1], p[3])
    if shape == "ellipse":
        return p[0] - p[2], p[1] - p[3], p[0] + p[2], p[1] + p[3]
    if shape == "seg":
        return min(p[0], p[2]) - p[4], min(p[1], p[3]) - p[4], max(p[0], p[2]) + p[4], max(p[1], p[3]) + p[4]
    if shape == "ring":
        return p[0] - p[2], p[1] - p[2], p[0] + p[2], p[1] + p[2]
    raise ValueError(shape)


def _part_mask(shape: str, p, lx: np.ndarray, ly: np.ndarray) -> np.ndarray:
    if shape == "rect":
        x0, x1 = min(p[0], p[2]), max(p[0], p[2])
        y0, y1 = min(p[1], p[3]), max(p[1], p[3])
        return (lx >= x0) & (lx < x1) & (ly >= y0) & (ly < y1)
    if shape == "ellipse":
        m = ((lx - p[0]) / p[2]) ** 2 + ((ly - p[1]) / p[3]) ** 2 <= 1.0
        if len(p) > 4:
            m &= ly < p[4]
        return m
    if shape == "seg":
        x0, y0, x1, y1, r = p
        dx, dy = x1 - x0, y1 - y0
        L2 = dx * dx + dy * dy
        t = np.clip(((lx - x0) * dx + (ly - y0) * dy) / L2, 0, 1) if L2 > 0 else 0.0
        return (lx - x0 - t * dx) ** 2 + (ly - y0 - t * dy) ** 2 <= r * r
    if shape == "ring":
        d2 = (lx - p[0]) ** 2 + (ly - p[1]) ** 2
        return (d2 <= p[2] ** 2) & (d2 >= p[3] ** 2)
    raise ValueError(shape)


def draw_parts(img: np.ndarray, ids: np.ndarray, oid: int, parts: list, ax: float, ay: float,
               angle: float = 0.0) -> None:
    """Draw a sprite (parts in local coords) at image point (ax, ay), rotated by `angle` radians
    (positive = clockwise on screen), writing colours into `img` and `oid` into `ids`."""
    if not parts:
        return
    ext = np.array([_part_extent(sh, p) for sh, p, _ in parts])
    lx0, ly0 = ext[:, 0].min(), ext[:, 1].min()
    lx1, ly1 = ext[:, 2].max(), ext[:, 3].max()
    c, s = math.cos(angle), math.sin(angle)
    cx = np.array([lx0, lx1, lx0, lx1])
    cy = np.array([ly0, ly0, ly1, ly1])
    ix, iy = c * cx - s * cy + ax, s * cx + c * cy + ay
    H, W = ids.shape
    x0, x1 = max(0, int(math.floor(ix.min()))), min(W, int(math.ceil(ix.max())) + 1)
    y0, y1 = max(0, int(math.floor(iy.min()))), min(H, int(math.ceil(iy.max())) + 1)
    if x0 >= x1 or y0 >= y1:
        return
    yy, xx = np.mgrid[y0:y1, x0:x1].astype(np.float32) + 0.5
    dx, dy = xx - ax, yy - ay
    lx, ly = c * dx + s * dy, -s * dx + c * dy
    covered = np.zeros(lx.shape, bool)
    col = np.zeros(lx.shape + (3,), np.float32)
    for sh, p, rgb in parts:
        m = _part_mask(sh, p, lx, ly)
        col[m] = rgb
        covered |= m
    if not covered.any():
        return
    # gentle top-lit shading so sprites do not look flat
    shade = 1.08 - 0.18 * np.clip((ly - ly0) / max(ly1 - ly0, 1e-6), 0, 1)
    reg = img[y0:y1, x0:x1]
    reg[covered] = col[covered] * shade[covered, None]
    ids[y0:y1, x0:x1][covered] = oid


def draw_shadow(img: np.ndarray, ax: float, ay: float, rx: float, ry: float) -> None:
    H, W = img.shape[:2]
    x0, x1 = max(0, int(ax - rx)), min(W, int(ax + rx) + 1)
    y0, y1 = max(0, int(ay - ry)), min(H, int(ay + ry) + 1)
    if x0 >= x1 or y0 >= y1:
        return
    yy, xx = np.mgrid[y0:y1, x0:x1].astype(np.float32) + 0.5
    m = ((xx - ax) / rx) ** 2 + ((yy - ay) / ry) ** 2 <= 1
    img[y0:y1, x0:x1][m] *= 0.72


def _arm(sx, sy, theta, L, f, r, rgb, skin):
    hx, hy = sx + f * L * math.sin(theta), sy + L * math.cos(theta)
    return [("seg", (sx, sy, hx, hy, r), rgb), ("ellipse", (hx, hy, r * 1.2, r * 1.2), skin)], (hx, hy)


def person_parts(h: float, w: float, col: dict, pose: dict, base: float = 0.0) -> tuple[list, tuple]:
    """Parts of a standing/walking person (side view) and the hand point of the front arm.

    col: rgb for skin, hair, top, bottom, shoes, optional backpack / carry (bag) colours.
    pose: facing (+1 right / -1 left), phase (gait, radians), swing (0 still .. 1 running),
          arms ("swing", "down", "raise", "punch", "throw_up", "throw_fwd", "out", "flail").
    base: y of the soles (negative to stand on a skateboard).
    """
    f = pose.get("facing", 1)
    ph, sw = pose.get("phase", 0.0), pose.get("swing", 0.5)
    arms = pose.get("arms", "swing")
    hip, sh = base - 0.46 * h, base - 0.77 * h
    top = base - h
    hr = 0.105 * h
    parts: list = []
    if col.get("backpack") is not None:
        parts.append(("rect", (-f * 0.62 * w, sh + 0.02 * h, -f * 0.28 * w, hip - 0.03 * h), col["backpack"]))
    A = sw * 0.3 * h
    lr = 0.14 * w
    for k, side in enumerate((1, -1)):
        fx = side * A * math.sin(ph)
        hx = (0.1 * w) * (1 if k == 0 else -1) * 0.6
        parts.append(("seg", (hx, hip, fx + hx * 0.5, base - 0.04 * h, lr), col["bottom"]))
        parts.append(("ellipse", (fx + hx * 0.5 + f * 0.08 * w, base - 0.03 * h, 0.22 * w, 0.045 * h),
                      col["shoes"]))
    parts.append(("rect", (-0.36 * w, sh - 0.035 * h, 0.36 * w, hip + 0.04 * h), col["top"]))
    parts.append(("ellipse", (0.0, sh - 0.02 * h, 0.3 * w, 0.05 * h), col["top"]))  # shoulders
    parts.append(("ellipse", (f * 0.03 * w, top + hr, 0.092 * h, hr), col["skin"]))
    parts.append(("ellipse", (-f * 0.02 * w, top + hr * 0.85, 0.095 * h, hr * 0.9, top + hr * 0.9), col["hair"]))
    sleeve = tuple(c * 0.85 for c in col["top"])
    L, ar = 0.33 * h, 0.1 * w
    sx, sy = f * 0.02 * w, sh + 0.01 * h
    if arms == "swing":
        th = [0.7 * sw * math.sin(ph), -0.7 * sw * math.sin(ph)]
    elif arms == "down":
        th = [0.12, -0.1]
    elif arms == "raise":
        th = [1.9, 2.2]
    elif arms == "punch":
        ext = pose.get("punch", 0)
        th = [1.55 if ext == 0 else 2.3, 2.3 if ext == 0 else 1.55]
    elif arms == "throw_up":
        th = [-2.5, 0.3]
    elif arms == "throw_fwd":
        th = [1.9, -0.3]
    elif arms == "out":
        th = [1.25, -1.25]
    elif arms == "flail":
        th = [2.6, -2.4]
    else:
        th = [0.1, -0.1]
    hand = (sx, sy + L)
    for k, t in enumerate(th):
        ln = L * (1.15 if arms == "punch" and abs(t - 1.55) < 1e-6 else 1.0)
        p, hp = _arm(sx, sy, t, ln, f, ar, sleeve, col["skin"])
        parts += p
        if k == 0:
            hand = hp
    if col.get("carry") is not None:
        bh, bw = col["carry_hw"]
        cx = sx + f * 0.42 * w
        parts.append(("rect", (cx - bw / 2, base - 0.05 * h - bh, cx + bw / 2, base - 0.05 * h), col["carry"]))
    return parts, hand


def cyclist_parts(h: float, w: float, col: dict, pose: dict) -> list:
    """A rider on a bicycle, side view; `w` is the person width (the bike is ~2.2 w long)."""
    f = pose.get("facing", 1)
    ph = pose.get("phase", 0.0)
    B = 2.3 * w
    R = 0.19 * h
    rear, front = (-f * 0.33 * B, -R), (f * 0.33 * B, -R)
    bb = (0.0, -R)
    seat = (-f * 0.1 * B, -0.58 * h)
    fork = (f * 0.25 * B, -0.62 * h)
    bar = (f * 0.2 * B, -0.7 * h)
    fr, bc = 0.045 * h, col["bike"]
    parts = [("ring", (rear[0], rear[1], R, R - 0.065 * h), (30, 30, 30)),
             ("ring", (front[0], front[1], R, R - 0.065 * h), (30, 30, 30)),
             ("seg", (*rear, *bb, fr), bc), ("seg", (*bb, *seat, fr), bc), ("seg", (*seat, *fork, fr), bc),
             ("seg", (*bb, *fork, fr), bc), ("seg", (*fork, *front, fr), bc), ("seg", (*fork, *bar, fr), bc),
             ("seg", (*rear, *seat, fr * 0.8), bc)]
    pr = 0.12 * h
    for k in (0, 1):
        a = ph + k * math.pi
        pedal = (bb[0] + f * pr * math.cos(a), bb[1] + pr * math.sin(a))
        knee = ((seat[0] + pedal[0]) / 2 + f * 0.12 * h, (seat[1] + pedal[1]) / 2 - 0.04 * h)
        parts += [("seg", (seat[0], seat[1] - 0.02 * h, *knee, 0.13 * w), col["bottom"]),
                  ("seg", (*knee, *pedal, 0.12 * w), col["bottom"])]
    shoulder = (-f * 0.02 * B, -0.93 * h)
    parts += [("seg", (seat[0], seat[1] - 0.03 * h, *shoulder, 0.34 * w), col["top"]),
              ("seg", (*shoulder, *bar, 0.1 * w), tuple(c * 0.85 for c in col["top"])),
              ("ellipse", (shoulder[0] + f * 0.05 * B, shoulder[1] - 0.13 * h, 0.09 * h, 0.1 * h), col["skin"]),
              ("ellipse", (shoulder[0] + f * 0.04 * B, shoulder[1] - 0.16 * h, 0.095 * h, 0.08 * h,
                           shoulder[1] - 0.15 * h), col["hair"])]
    if col.get("backpack") is not None:
        parts.insert(0, ("rect", (shoulder[0] - f * 0.5 * w, shoulder[1] + 0.02 * h,
                                  shoulder[0] - f * 0.12 * w, shoulder[1] + 0.25 * h), col["backpack"]))
    return parts


def skater_parts(h: float, w: float, col: dict, pose: dict) -> list:
    """A person on a skateboard: feet apart, arms out, board with wheels."""
    bh = 0.07 * h
    p, _ = person_parts(h * 0.97, w, col, {**pose, "swing": 0.7, "phase": math.pi / 2, "arms": "out"},
                        base=-bh)
    board = [("rect", (-0.85 * w, -bh, 0.85 * w, -0.025 * h), col["board"]),
             ("ellipse", (-0.55 * w, -0.02 * h, 0.12 * w, 0.025 * h), (40, 40, 40)),
             ("ellipse", (0.55 * w, -0.02 * h, 0.12 * w, 0.025 * h), (40, 40, 40))]
    return p + board


def car_parts(h: float, w: float, col: dict, pose: dict, orientation: str) -> list:
    """A car: side view on a horizontal road (facing +-1), top view on a vertical one (dir +-1:
    +1 = moving down, front at the bottom). (h, w) are its image height and width."""
    c = col["body"]
    dark = (40, 50, 60)
    glass = (120, 150, 175)
    if orientation == "h":
        f = pose.get("facing", 1)
        return [
            ("rect", (-0.5 * w, -0.74 * h, 0.5 * w, -0.2 * h), c),
            ("rect", (-f * 0.3 * w, -h, f * 0.22 * w, -0.7 * h), c),
            ("rect", (-f * 0.26 * w, -0.95 * h, -f * 0.04 * w, -0.74 * h), glass),
            ("rect", (-f * 0.0 * w, -0.95 * h, f * 0.18 * w, -0.74 * h), glass),
            ("rect", (f * 0.44 * w, -0.62 * h, f * 0.5 * w, -0.48 * h), (255, 245, 190)),
            ("rect", (-f * 0.5 * w, -0.62 * h, -f * 0.45 * w, -0.5 * h), (210, 20, 20)),
            ("rect", (-0.5 * w, -0.34 * h, 0.5 * w, -0.28 * h), tuple(x * 0.7 for x in c)),
            ("ellipse", (-0.3 * w, -0.19 * h, 0.1 * w, 0.19 * h), (25, 25, 25)),
            ("ellipse", (0.3 * w, -0.19 * h, 0.1 * w, 0.19 * h), (25, 25, 25)),
            ("ellipse", (-0.3 * w, -0.19 * h, 0.045 * w, 0.08 * h), (160, 160, 160)),
            ("ellipse", (0.3 * w, -0.19 * h, 0.045 * w, 0.08 * h), (160, 160, 160)),
        ]
    d = pose.get("facing", 1)  # +1: front at the bottom (y = 0); -1: front at the top (y = -h)
    fy = (lambda a: -a * h) if d > 0 else (lambda a: -(1 - a) * h)  # a = 0 at the front
    parts = [("rect", (-0.58 * w, fy(0.12), -0.48 * w, fy(0.28)), dark),
             ("rect", (0.48 * w, fy(0.12), 0.58 * w, fy(0.28)), dark),
             ("rect", (-0.58 * w, fy(0.72), -0.48 * w, fy(0.88)), dark),
             ("rect", (0.48 * w, fy(0.72), 0.58 * w, fy(0.88)), dark),
             ("rect", (-0.5 * w, -h, 0.5 * w, 0.0), c),
             ("rect", (-0.4 * w, fy(0.22), 0.4 * w, fy(0.38)), glass),
             ("rect", (-0.38 * w, fy(0.78), 0.38 * w, fy(0.88)), glass),
             ("rect", (-0.36 * w, fy(0.4), 0.36 * w, fy(0.76)), tuple(min(255, x * 1.1 + 10) for x in c)),
             ("rect", (-0.45 * w, fy(0.0), -0.25 * w, fy(0.04)), (255, 245, 190)),
             ("rect", (0.25 * w, fy(0.0), 0.45 * w, fy(0.04)), (255, 245, 190)),
             ("rect", (-0.45 * w, fy(0.96), -0.25 * w, fy(1.0)), (210, 20, 20)),
             ("rect", (0.25 * w, fy(0.96), 0.45 * w, fy(1.0)), (210, 20, 20))]
    return parts


def bag_parts(h: float, w: float, col: dict) -> list:
    c = col["body"]
    return [("ring", (0.0, -h, 0.22 * w, 0.14 * w), (30, 30, 30)),
            ("rect", (-0.5 * w, -h, 0.5 * w, 0.0), c),
            ("rect", (-0.5 * w, -0.55 * h, 0.5 * w, -0.45 * h), tuple(x * 0.7 for x in c)),
            ("rect", (-0.08 * w, -h, 0.08 * w, 0.0), tuple(x * 0.8 for x in c))]


# ------------------------------------------------------------------------------ light
def apply_light(img: np.ndarray, lighting: str, fog: float, rng: np.random.Generator,
                noise: float = 3.0) -> np.ndarray:
    """Lighting preset, optional fog (stronger far away, at the top), sensor noise -> uint8."""
    gain, tint, desat = LIGHTING[lighting]
    x = img
    if desat:
        x = x * (1 - desat) + x.mean(-1, keepdims=True) * desat
    x = x * gain + np.asarray(tint, np.float32)
    if fog > 0:
        H = x.shape[0]
        a = (fog * (1.0 - 0.45 * (np.arange(H, dtype=np.float32) + 0.5) / H))[:, None, None]
        x = x * (1 - a) + np.float32(205) * a
    x = x + rng.standard_normal(x.shape, dtype=np.float32) * np.float32(noise)
    return np.clip(x + 0.5, 0, 255).astype(np.uint8)
