"""Temporal aggregation: frame-wise instances -> per-target timelines (paper §3.3, step 1).

Frame records (one per frame, each a list of instances with category, attributes and box) are
chained into targets by identity association: optimal assignment (scipy's
`linear_sum_assignment`) on a cost mixing IoU and centre distance, with a constant-velocity
prediction and tolerance for short gaps (a target missing for up to `max_gap` frames keeps its
identity). Each target then gets a `Timeline`: entry/exit frames, per-frame region words on a
3x3 grid (`tvad.data.geometry.region_word`: top-left ... bottom-right, the words the authors'
reference descriptions use), net
direction, speed relative to the object's size (or to the frame when no box is known), motion
segments, and events (turns, stops, starts, speed changes such as walking -> running).

    dets = [[Sighting(0, box=(10, 20, 30, 60), category="person")], [...], ...]  # per frame
    tracks = associate(dets)                           # list of per-target detection lists
    tls = build_timelines(dets, frame_size=(224, 224))  # list[Timeline], numbered 1, 2, ...
    tl = timeline_from_centroids([(236, 198), None, ...], frame_size=(476, 868))

Frame indices are 0-based clip-local indices everywhere in code; narratives print them 1-based
("frame 1 to frame 24"), as the reference descriptions do.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any, Sequence

import numpy as np
from scipy.optimize import linear_sum_assignment

from tvad.data.geometry import box_iou, region_word

# 8-way directions in image terms (y grows downwards; "up" is towards the top of the frame).
DIRECTIONS: tuple[str, ...] = ("right", "up-right", "up", "up-left", "left", "down-left", "down", "down-right")

# Speed classes: thresholds on the median step, keyed by (unit, per). unit "size": in object
# heights (boxes known); unit "frame": in frame widths (centroids only). per "frame" or "second"
# (when the clip's fps is known).
SPEED_THRESHOLDS: dict[tuple[str, str], tuple[float, float]] = {
    # (still below, fast from)
    ("size", "frame"): (0.02, 0.20),
    ("size", "second"): (0.15, 1.50),
    ("frame", "frame"): (0.003, 0.02),
    ("frame", "second"): (0.02, 0.25),
}


def direction_word(dx: float, dy: float, min_norm: float = 0.0) -> str | None:
    """8-way direction of a displacement in image coordinates (y down); None if too small."""
    if math.hypot(dx, dy) <= min_norm or (dx == 0 and dy == 0):
        return None
    ang = math.degrees(math.atan2(-dy, dx)) % 360.0
    return DIRECTIONS[int(((ang + 22.5) % 360.0) // 45.0)]


@dataclass
class Sighting:
    """One target seen in one frame, as an annotator reported it (box in pixels, x1 y1 x2 y2), the
    unit that `associate` chains into tracks. (Not `tvad.model.Detection`, the detector's output.)"""

    frame: int  # 0-based clip-local frame index
    box: tuple[float, float, float, float] | None = None  # pixels; None when only a point is known
    center: tuple[float, float] | None = None  # defaults to the box centre
    category: str = "object"
    attributes: dict[str, str] = field(default_factory=dict)
    hint: Any = None  # an identity the annotator itself knows (the oracle's object id); else None

    def __post_init__(self) -> None:
        if self.center is None:
            if self.box is None:
                raise ValueError("a Sighting needs a box or a centre")
            x1, y1, x2, y2 = self.box
            self.center = ((x1 + x2) / 2.0, (y1 + y2) / 2.0)

    @property
    def size(self) -> float | None:
        """Object size used for relative speed: the box height (people) or its larger side."""
        if self.box is None:
            return None
        return float(max(self.box[3] - self.box[1], 0.5 * (self.box[2] - self.box[0]), 1.0))


def associate(frames: Sequence[Sequence[Sighting]], *, max_gap: int = 2, min_iou: float = 0.1,
              max_center_dist: float = 1.5, category_penalty: float = 0.5,
              use_hints: bool = True, frame_size: Sequence[int] | None = None) -> list[list[Sighting]]:
    """Chain per-frame sightings into tracks.

    Cost between a live track and a detection: (1 - IoU) + centre distance / scale (+ a penalty
    when categories differ), the track's position predicted with its last velocity. scale is the
    mean box diagonal (or a tenth of the frame diagonal without boxes). A pair is admissible when
    IoU >= min_iou or the scaled distance <= max_center_dist; the optimal assignment over
    admissible pairs links them; the rest open new tracks. A track not seen for more than
    `max_gap` frames is closed. When every detection carries a `hint` (the oracle's ids) and
    `use_hints`, the hints are used as identities instead.
    """
    flat = [d for fr in frames for d in fr]
    if use_hints and flat and all(d.hint is not None for d in flat):
        by: dict[Any, list[Sighting]] = {}
        for d in sorted(flat, key=lambda d: d.frame):
            by.setdefault(d.hint, []).append(d)
        return sorted(by.values(), key=lambda t: (t[0].frame, str(t[0].hint)))

    default_scale = 0.1 * math.hypot(*frame_size) if frame_size is not None else 50.0
    tracks: list[list[Sighting]] = []
    live: list[int] = []
    for fr in frames:
        dets = list(fr)
        if not dets:
            continue
        t_now = dets[0].frame
        live = [k for k in live if t_now - tracks[k][-1].frame <= max_gap + 1]
        matched: set[int] = set()
        if live:
            cost = np.full((len(live), len(dets)), 1e6)
            for i, k in enumerate(live):
                tr = tracks[k]
                last = tr[-1]
                gap = t_now - last.frame
                vx = vy = 0.0
                if len(tr) >= 2:
                    prev = tr[-2]
                    dt = max(last.frame - prev.frame, 1)
                    vx, vy = (last.center[0] - prev.center[0]) / dt, (last.center[1] - prev.center[1]) / dt
                px, py = last.center[0] + vx * gap, last.center[1] + vy * gap
                for j, d in enumerate(dets):
                    iou = 0.0
                    if last.box is not None and d.box is not None:
                        b = last.box
                        pb = (b[0] + vx * gap, b[1] + vy * gap, b[2] + vx * gap, b[3] + vy * gap)
                        iou = box_iou(pb, d.box)
                    sizes = [math.hypot(x.box[2] - x.box[0], x.box[3] - x.box[1])
                             for x in (last, d) if x.box is not None]
                    scale = max(float(np.mean(sizes)) if sizes else default_scale, 1.0)
                    dist = math.hypot(d.center[0] - px, d.center[1] - py) / scale
                    if iou >= min_iou or dist <= max_center_dist:
                        cost[i, j] = (1.0 - iou) + dist + (category_penalty if d.category != last.category else 0.0)
            rows, cols = linear_sum_assignment(cost)
            for i, j in zip(rows, cols):
                if cost[i, j] < 1e6:
                    tracks[live[i]].append(dets[j])
                    matched.add(j)
        for j, d in enumerate(dets):
            if j not in matched:
                tracks.append([d])
                live.append(len(tracks) - 1)
    return sorted(tracks, key=lambda t: (t[0].frame, t[0].center[0]))


@dataclass
class MotionSegment:
    start: int  # first frame (0-based, clip-local)
    end: int  # last frame (inclusive)
    state: str  # "still", "slow" or "fast"
    direction: str | None  # 8-way direction while moving; None when still


@dataclass
class Event:
    frame: int  # 0-based frame where it happens
    kind: str  # "enter", "exit", "turn", "stop", "start", "speed_up", "slow_down"
    detail: str = ""  # e.g. the new direction ("up-right") or "walking -> running"


@dataclass
class Timeline:
    """One target's aggregated timeline in a clip."""

    target: int  # 1-based target number in the clip, by entry frame
    category: str
    attributes: dict[str, str]
    num_frames: int  # clip length
    frame_size: tuple[int, int]  # (H, W)
    frames: list[int]  # frames where the target is visible (0-based, sorted)
    centroids: list[tuple[float, float]]  # per visible frame, pixels
    boxes: list[tuple[float, float, float, float]] | None  # per visible frame, or None
    regions: list[str]  # per visible frame, 3x3 words
    region_runs: list[tuple[str, int, int]]  # (word, first, last frame) in order, short flickers merged
    entry: int  # first visible frame
    exit: int  # last visible frame
    enters_from: str | None  # frame edge it enters through ("left", "top", ...), None if present at start
    exits_to: str | None  # frame edge it leaves through, None if present at the end / not near an edge
    direction: str | None  # net 8-way direction (frame-normalised displacement); None: no net motion
    displacement: tuple[float, float]  # net (dx / W, dy / H)
    speed: float  # median step (see speed_unit)
    speed_unit: str  # "size/frame", "size/second", "frame/frame" or "frame/second"
    speed_class: str  # "still", "slow" or "fast"
    speed_cv: float  # coefficient of variation of the steps (smoothness)
    segments: list[MotionSegment]
    events: list[Event]
    anomalous: bool | None = None
    anomaly_type: str | None = None
    behaviour: str | None = None
    anomaly_span: tuple[int, int] | None = None  # ground-truth anomalous frames (first, last), when known
    visible_before: bool = False  # (anomaly timelines) the object is in view before `entry`
    visible_after: bool = False  # (anomaly timelines) the object stays in view after `exit`
    source_ids: list[Any] = field(default_factory=list)  # annotator hints seen on this target

    def to_dict(self) -> dict:
        d = asdict(self)
        d["frame_size"] = list(self.frame_size)
        return d

    @property
    def is_person(self) -> bool:
        return self.category.lower() in {"person", "pedestrian", "man", "woman", "people", "human"}


def _majority(values: list[str]) -> str:
    vals, counts = np.unique(np.asarray(values, dtype=object).astype(str), return_counts=True)
    return str(vals[int(np.argmax(counts))]) if len(vals) else "object"


def _merge_attributes(dets: Sequence[Sighting]) -> dict[str, str]:
    keys: dict[str, list[str]] = {}
    for d in dets:
        for k, v in (d.attributes or {}).items():
            if v not in (None, ""):
                keys.setdefault(str(k), []).append(str(v))
    return {k: _majority(v) for k, v in keys.items()}


def _edge_of(x: float, y: float, frame_size: Sequence[int], margin: float) -> str | None:
    h, w = frame_size
    near = {"left": x / w, "right": 1 - x / w, "top": y / h, "bottom": 1 - y / h}
    side, dist = min(near.items(), key=lambda kv: kv[1])
    return side if dist <= margin else None


def _jump_steps(steps: np.ndarray, factor: float = 3.0) -> np.ndarray:
    """Steps far longer than the typical one (a detector or identity glitch, not motion)."""
    if len(steps) < 4:
        return np.zeros(len(steps), dtype=bool)
    n = np.hypot(steps[:, 0], steps[:, 1])
    med = float(np.median(n))
    return n > factor * med + 1e-6 * (1 + med) if med > 0 else np.zeros(len(steps), dtype=bool)


def _smooth_steps(steps: np.ndarray, jumps: np.ndarray) -> np.ndarray:
    """Replace glitch steps by their neighbours' mean, then a moving average of 3 steps."""
    if len(steps) == 0:
        return steps
    st = steps.astype(float).copy()
    good = ~jumps
    if good.any() and jumps.any():
        idx = np.arange(len(st))
        for c in range(2):
            st[jumps, c] = np.interp(idx[jumps], idx[good], st[good, c])
    if len(st) >= 3:
        sm = st.copy()
        sm[1:-1] = (st[:-2] + st[1:-1] + st[2:]) / 3.0
        sm[0] = (st[0] + st[1]) / 2.0
        sm[-1] = (st[-1] + st[-2]) / 2.0
        st = sm
    return st


def _angle_between(u: np.ndarray, v: np.ndarray) -> float:
    nu, nv = float(np.hypot(*u)), float(np.hypot(*v))
    if nu < 1e-12 or nv < 1e-12:
        return 0.0
    return math.degrees(math.acos(max(-1.0, min(1.0, float(np.dot(u, v)) / (nu * nv)))))


def _runs(values: list, frames: list[int], min_len: int, keep_ends: bool = True) -> list[tuple[Any, int, int]]:
    runs: list[list] = []
    for v, f in zip(values, frames):
        if runs and runs[-1][0] == v:
            runs[-1][2] = f
            runs[-1][3] += 1
        else:
            runs.append([v, f, f, 1])
    # absorb short runs (flicker at a border) into a neighbour, keeping the first and last ones
    changed = True
    while changed and len(runs) > 2:
        changed = False
        for i in range(1, len(runs) - 1):
            if runs[i][3] < min_len:
                prev = runs[i - 1]
                prev[2], prev[3] = runs[i][2], prev[3] + runs[i][3]
                del runs[i]
                if i < len(runs) and runs[i][0] == prev[0]:
                    prev[2], prev[3] = runs[i][2], prev[3] + runs[i][3]
                    del runs[i]
                changed = True
                break
    if not keep_ends and len(runs) >= 2:  # short first / last runs join their neighbour too
        if runs[0][3] < min_len:
            runs[1][1], runs[1][3] = runs[0][1], runs[1][3] + runs[0][3]
            del runs[0]
        if len(runs) >= 2 and runs[-1][3] < min_len:
            runs[-2][2], runs[-2][3] = runs[-1][2], runs[-2][3] + runs[-1][3]
            del runs[-1]
    return [(r[0], r[1], r[2]) for r in runs]


def make_timeline(dets: Sequence[Sighting], *, num_frames: int, frame_size: Sequence[int], target: int = 1,
                  fps: float | None = None, min_segment: int = 3, edge_margin: float = 0.08,
                  turn_angle: float = 40.0, speed_ratio: float = 1.8) -> Timeline:
    """Aggregate one target's sightings (any order, one per frame) into a `Timeline`."""
    if not dets:
        raise ValueError("a timeline needs at least one detection")
    by_frame: dict[int, Sighting] = {}
    for d in dets:
        by_frame.setdefault(int(d.frame), d)  # one per frame: the first wins
    frames = sorted(by_frame)
    ds = [by_frame[f] for f in frames]
    h, w = int(frame_size[0]), int(frame_size[1])
    cents = [(float(d.center[0]), float(d.center[1])) for d in ds]
    has_boxes = all(d.box is not None for d in ds)
    boxes = [tuple(float(v) for v in d.box) for d in ds] if has_boxes else None
    regions = [region_word(x, y, (h, w)) for x, y in cents]

    # steps between consecutive visible frames, in the chosen unit, per frame of gap
    unit = "size" if has_boxes else "frame"
    scale = float(np.median([d.size for d in ds])) if has_boxes else float(w)
    per = "second" if fps else "frame"
    xy = np.asarray(cents, dtype=float)
    fr = np.asarray(frames, dtype=float)
    steps = np.diff(xy, axis=0) / np.maximum(np.diff(fr), 1.0)[:, None] if len(xy) >= 2 else np.zeros((0, 2))
    jumps = _jump_steps(steps)
    steps = _smooth_steps(steps, jumps)
    step_len = np.hypot(steps[:, 0], steps[:, 1]) / max(scale, 1e-6) * (fps if fps else 1.0)
    still_thr, fast_thr = SPEED_THRESHOLDS[(unit, per)]
    speed = float(np.median(step_len)) if len(step_len) else 0.0
    speed_cv = float(np.std(step_len) / (np.mean(step_len) + 1e-9)) if len(step_len) else 0.0

    def cls(s: float) -> str:
        return "still" if s < still_thr else ("fast" if s >= fast_thr else "slow")

    # net direction: frame-normalised displacement (so "lower right" means towards that grid cell)
    dxn, dyn = (xy[-1, 0] - xy[0, 0]) / w, (xy[-1, 1] - xy[0, 1]) / h
    direction = direction_word(dxn, dyn, min_norm=0.04)

    # motion segments: per-step (state, direction) runs, short runs merged into their neighbours,
    # then neighbours merged again when their mean velocities barely differ (a wobble across a
    # sector border is not a turn; a speed change needs a clear ratio)
    states = []
    for k in range(len(step_len)):
        c = cls(float(step_len[k]))
        dirk = None if c == "still" else direction_word(steps[k, 0] / w, steps[k, 1] / h)
        states.append((c, dirk))
    seg_frames = frames[1:]
    pos = {f: i for i, f in enumerate(seg_frames)}
    norm_steps = steps / np.array([w, h], dtype=float) if len(steps) else steps

    def seg_stats(a: int, b: int) -> tuple[np.ndarray, float]:
        sl = slice(pos[a], pos[b] + 1)
        return norm_steps[sl].mean(axis=0), float(np.median(step_len[sl]))

    raw = _runs(states, seg_frames, min_segment, keep_ends=False) if states else []
    merged: list[list] = []  # [start, end]
    for _, a, b in raw:
        if merged:
            (v0, s0), (v1, s1) = seg_stats(*merged[-1]), seg_stats(a, b)
            moving0, moving1 = s0 >= still_thr, s1 >= still_thr
            ang = _angle_between(v0, v1)
            ratio = max(s0, s1) / max(min(s0, s1), 1e-9)
            if moving0 == moving1 and (not moving0 or (ang < turn_angle and ratio < speed_ratio)):
                merged[-1][1] = b
                continue
        merged.append([a, b])
    segments: list[MotionSegment] = []
    for a, b in merged:
        v, s = seg_stats(a, b)
        c = cls(s)
        segments.append(MotionSegment(a, b, c, None if c == "still" else direction_word(float(v[0]), float(v[1]))))
    events: list[Event] = []
    entry, exit_ = frames[0], frames[-1]
    enters_from = _edge_of(*cents[0], (h, w), edge_margin) if entry > 0 else None
    exits_to = _edge_of(*cents[-1], (h, w), edge_margin) if exit_ < num_frames - 1 else None
    if entry > 0:
        events.append(Event(entry, "enter", enters_from or ""))
    gait = {"slow": "walking", "fast": "running", "still": "standing"}
    for s0, s1 in zip(segments, segments[1:]):
        t = s1.start
        if s0.state == "still" and s1.state != "still":
            events.append(Event(t, "start", s1.direction or ""))
        elif s0.state != "still" and s1.state == "still":
            events.append(Event(t, "stop", ""))
        else:
            if s0.direction != s1.direction and s1.direction is not None and s0.direction is not None:
                events.append(Event(t, "turn", s1.direction))
            if s0.state != s1.state:
                kind = "speed_up" if s1.state == "fast" else "slow_down"
                cat = _majority([d.category for d in ds])
                detail = (f"{gait[s0.state]} -> {gait[s1.state]}" if cat.lower() in {"person", "pedestrian"}
                          else f"{s0.state} -> {s1.state}")
                events.append(Event(t, kind, detail))
    if exit_ < num_frames - 1:
        events.append(Event(exit_, "exit", exits_to or ""))
    hints = []
    for d in ds:
        if d.hint is not None and d.hint not in hints:
            hints.append(d.hint)
    region_runs = _runs(regions, frames, 2)
    speed_class = cls(speed)
    if speed_class == "still" and (len({r for r, _, _ in region_runs}) > 1 or math.hypot(dxn, dyn) >= 0.1):
        speed_class = "slow"  # it does get somewhere: slow, not still
    return Timeline(
        target=target, category=_majority([d.category for d in ds]), attributes=_merge_attributes(ds),
        num_frames=int(num_frames), frame_size=(h, w), frames=frames, centroids=cents, boxes=boxes,
        regions=regions, region_runs=region_runs, entry=entry, exit=exit_,
        enters_from=enters_from, exits_to=exits_to, direction=direction,
        displacement=(float(dxn), float(dyn)), speed=speed, speed_unit=f"{unit}/{per}", speed_class=speed_class,
        speed_cv=speed_cv, segments=segments, events=events, source_ids=hints,
    )


def build_timelines(frames: Sequence[Sequence[Sighting]], *, frame_size: Sequence[int], num_frames: int | None = None,
                    fps: float | None = None, min_length: int = 2, **assoc_kw) -> list[Timeline]:
    """Associate per-frame sightings and aggregate each track into a `Timeline`.

    Tracks shorter than `min_length` frames (spurious single sightings) are dropped. Targets are
    numbered 1, 2, ... by entry frame.
    """
    n = num_frames if num_frames is not None else (max((d.frame for fr in frames for d in fr), default=-1) + 1)
    tracks = [t for t in associate(frames, frame_size=frame_size, **assoc_kw) if len(t) >= min_length]
    return [make_timeline(t, num_frames=n, frame_size=frame_size, target=i + 1, fps=fps)
            for i, t in enumerate(tracks)]


def timeline_from_centroids(centroids: Sequence[Sequence[float] | None], frame_size: Sequence[int], *,
                            target: int = 1, boxes: Sequence[Sequence[float] | None] | None = None,
                            fps: float | None = None, category: str = "object") -> Timeline:
    """A timeline from a per-frame list of (x, y) centroids (None where not visible)."""
    dets = []
    for i, c in enumerate(centroids):
        if c is None:
            continue
        b = None if boxes is None or boxes[i] is None else tuple(float(v) for v in boxes[i])
        dets.append(Sighting(frame=i, box=b, center=(float(c[0]), float(c[1])), category=category))
    if not dets:
        raise ValueError("the target is never visible (every centroid is None)")
    if boxes is not None and any(d.box is None for d in dets):
        dets = [Sighting(frame=d.frame, center=d.center, category=category) for d in dets]
    return make_timeline(dets, num_frames=len(centroids), frame_size=frame_size, target=target, fps=fps)


def timeline_table(timelines: Sequence[Timeline | dict]) -> list[dict]:
    """Flat per-target rows (for notebooks / pandas): target, category, entry, exit, direction, speed...
    Accepts `Timeline`s or their dicts (as `tvad.corpus.load_timelines` returns them)."""
    timelines = [_TimelineView(t) if isinstance(t, dict) else t for t in timelines]
    return [{
        "target": t.target, "category": t.category, "entry": t.entry, "exit": t.exit,
        "regions": " -> ".join(r for r, _, _ in t.region_runs), "direction": t.direction,
        "speed_class": t.speed_class, "speed": round(t.speed, 4), "speed_unit": t.speed_unit,
        "events": "; ".join(f"{e.kind}@{e.frame}{(' ' + e.detail) if e.detail else ''}" for e in t.events),
        "anomalous": t.anomalous,
    } for t in timelines]


class _TimelineView:
    """Attribute access to a timeline dict (events as objects)."""

    def __init__(self, d: dict) -> None:
        self.__dict__.update(d)
        self.region_runs = [tuple(r) for r in d.get("region_runs", [])]
        self.events = [Event(**e) for e in d.get("events", [])]
