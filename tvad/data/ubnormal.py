"""UBnormal (Acsintoae et al., CVPR 2022) in its official on-disk layout, and our synthetic set.

    root/
      Scene{S}/{video}.mp4                                   30 fps; S = video.split("_")[2]
      Scene{S}/{video}_annotations/{video}_{frame:04d}_gt.png   grey object-id map per frame
                                                             (0-based frames, every object,
                                                             normal videos too; 0 = background)
      Scene{S}/{video}_annotations/{video}_tracks.txt        abnormal videos: rows
                                                             object_id,start,end (inclusive)
      Scene{S}/{video}_annotations/{video}_new_tracks.txt    preferred over _tracks.txt if present
      Scene{S}/{video}_annotations/{video}_objects.json      optional sidecar (our synthetic set):
                                                             per-object category, attributes, ...
      scripts/{abnormal,normal}_{training,validation,test}_video_names.txt   the splits
      scripts/object_names_per_video.pkl (or .json)          {video: {object_id: class}} for the
                                                             objects that are not persons

Video names: ``{abnormal|normal}_scene_{S}_scenario_{K}[suffix]`` with a few irregular ones
(``_fog``, ``_fire``, ``_smoke``, ``normal_scene_17_scenario_3_1``, ``normal_scene_1_scenario1_10``);
the scene is always the third ``_`` field, as in the official scripts.

Frame labels are the union of the track ranges (``write_frame_level_ground_truth.py``); GT tracks
are one track per tracks row, the box of the object's largest blob per frame
(``create_tracks_for_tbdc_rbdc.py``). Object classes come from the per-video class table (read
with a restricted unpickler, or from a JSON conversion: `convert_object_names`); ids not in it
are persons.
"""

from __future__ import annotations

import builtins
import io
import json
import os
import pickle
import re
from pathlib import Path

import numpy as np

from tvad.data.files import png_size, read_id_png, read_json, video_info
from tvad.data.geometry import objects_from_id_maps
from tvad.data.record import DataError, Problems, Video, VideoList, VideoObject, labels_from_rows
from tvad.io import atomic_write_text

# Canonical split names -> the word used in the split files.
SPLIT_FILES = {"train": "training", "validation": "validation", "test": "test"}
_ALIASES = {"train": "train", "training": "train", "val": "validation", "validation": "validation",
            "test": "test", "testing": "test"}
OBJECT_NAMES = ("object_names_per_video.json", "object_names_per_video.pkl")


def canonical_split(split: str) -> str:
    """'training' -> 'train', 'val' -> 'validation'; other names pass through."""
    return _ALIASES.get(split, split)


def split_file_word(split: str) -> str:
    s = canonical_split(split)
    return SPLIT_FILES.get(s, s)


def scene_of(name: str) -> str:
    """The scene number of a video name: its third '_' field (official scripts' rule)."""
    parts = name.split("_")
    if len(parts) < 3 or not parts[2].isdigit():
        raise DataError(f"{name}: not a UBnormal video name ('{{normal|abnormal}}_scene_{{S}}_...')")
    return parts[2]


def kind_of(name: str) -> str:
    return "abnormal" if name.startswith("abnormal") else "normal"


# ------------------------------------------------------------------------------ splits
def split_names(root: str | os.PathLike, split: str, problems: Problems | None = None) -> list[tuple[str, str]]:
    """[(video name, 'abnormal'|'normal')] listed by the split files of `split`."""
    root = Path(root)
    word = split_file_word(split)
    out: list[tuple[str, str]] = []
    found = False
    for kind in ("abnormal", "normal"):
        p = root / "scripts" / f"{kind}_{word}_video_names.txt"
        if not p.exists():
            (problems or Problems(True))(p, f"missing split file for split {split!r}", item=p.name)
            continue
        found = True
        for line in p.read_text(encoding="utf-8").splitlines():
            name = line.strip()
            if name and not name.startswith("#"):
                out.append((name, kind))
    if not found and problems is not None and not problems.strict:
        return []
    return out


# ------------------------------------------------------------------------------ tracks files
def tracks_path(ann_dir: Path, name: str) -> Path | None:
    """The tracks file of a video: ``_new_tracks.txt`` when present, else ``_tracks.txt``."""
    for fn in (f"{name}_new_tracks.txt", f"{name}_tracks.txt"):
        p = ann_dir / fn
        if p.exists():
            return p
    return None


def parse_tracks(path: str | os.PathLike, num_frames: int | None = None,
                 problems: Problems | None = None) -> np.ndarray:
    """Rows ``object_id,start,end`` (0-based, inclusive) -> (R, 3) int64.

    Accepts integers or integer-valued floats (np.savetxt writes ``1.000e+00``), blank lines,
    spaces, a single row. A bad row (not three integers, negative, start > end, end beyond the
    video) raises `DataError` naming the file and line; with a non-strict `problems`, it is
    skipped and recorded.
    """
    p = Path(path)
    problems = problems or Problems(True)
    try:
        text = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise DataError(f"{p}: cannot read tracks file ({e})") from None
    rows = []
    for ln, line in enumerate(text.splitlines(), start=1):
        s = line.strip()
        if not s:
            continue
        fields = [f for f in re.split(r"[,\s]+", s) if f]
        try:
            vals = [float(f) for f in fields]
        except ValueError:
            problems(p, f"line {ln}: not numbers: {s!r}", item=f"{p.name} line {ln}")
            continue
        if len(vals) != 3:
            problems(p, f"line {ln}: expected 3 fields object_id,start,end, got {len(vals)}: {s!r}",
                     item=f"{p.name} line {ln}")
            continue
        if any(not np.isfinite(v) or v != int(v) for v in vals):
            problems(p, f"line {ln}: non-integer value: {s!r}", item=f"{p.name} line {ln}")
            continue
        oid, st, en = (int(v) for v in vals)
        if oid <= 0 or st < 0 or en < st:
            problems(p, f"line {ln}: invalid row (object id > 0, 0 <= start <= end): {s!r}",
                     item=f"{p.name} line {ln}")
            continue
        if num_frames is not None and en >= num_frames:
            problems(p, f"line {ln}: end frame {en} beyond the video's {num_frames} frames",
                     item=f"{p.name} line {ln}")
            continue
        rows.append((oid, st, en))
    return np.array(rows, dtype=np.int64).reshape(-1, 3)


# ------------------------------------------------------------------------------ class table
class _RestrictedUnpickler(pickle.Unpickler):
    """Builds only plain containers, strings and numbers: no arbitrary globals."""

    _ALLOWED = {("builtins", n) for n in ("dict", "list", "tuple", "set", "frozenset", "int",
                                          "float", "str", "bytes", "bool")}
    _ALLOWED |= {(m, n) for m in ("numpy.core.multiarray", "numpy._core.multiarray")
                 for n in ("scalar",)} | {("numpy", "dtype")}

    def find_class(self, module: str, name: str):
        if (module, name) not in self._ALLOWED:
            raise pickle.UnpicklingError(f"global {module}.{name} is not allowed in a class table")
        if module == "builtins":
            return getattr(builtins, name)
        if name == "dtype":
            return np.dtype
        try:  # numpy >= 2 (the module moved; which one exists is known only here)
            from numpy._core.multiarray import scalar
        except ImportError:  # numpy 1.x
            from numpy.core.multiarray import scalar
        return scalar


def read_object_names(path: str | os.PathLike) -> dict[str, dict[int, str]]:
    """The per-video class table ``{video: {object_id: class}}`` from .json or .pkl.

    The pickle is read with a restricted unpickler (plain dicts, ints, strings only), never
    with a raw `pickle.load`.
    """
    p = Path(path)
    if p.suffix == ".json":
        raw = read_json(p)
    else:
        try:
            raw = _RestrictedUnpickler(io.BytesIO(p.read_bytes())).load()
        except FileNotFoundError:
            raise DataError(f"{p}: no such file") from None
        except Exception as e:
            raise DataError(f"{p}: not a plain class-table pickle ({type(e).__name__}: {e})") from None
    if not isinstance(raw, dict):
        raise DataError(f"{p}: expected {{video: {{object_id: class}}}}, got {type(raw).__name__}")
    out: dict[str, dict[int, str]] = {}
    for video, table in raw.items():
        if not isinstance(table, dict):
            raise DataError(f"{p}: entry {video!r} is not a dict of object_id -> class")
        try:
            out[str(video)] = {int(k): str(v) for k, v in table.items()}
        except (TypeError, ValueError):
            raise DataError(f"{p}: entry {video!r} has a non-integer object id") from None
    return out


def convert_object_names(pkl: str | os.PathLike, out: str | os.PathLike | None = None) -> Path:
    """Convert the official class-table pickle to JSON once (default: beside it, .json)."""
    table = read_object_names(pkl)
    out = Path(out) if out is not None else Path(pkl).with_suffix(".json")
    atomic_write_text(out, json.dumps({v: {str(k): c for k, c in t.items()} for v, t in table.items()},
                                      indent=1, sort_keys=True))
    return out


def _find_object_names(root: Path, object_names: str | os.PathLike | None) -> dict[str, dict[int, str]]:
    if object_names is not None:
        return read_object_names(object_names)
    for fn in OBJECT_NAMES:
        for d in (root / "scripts", root):
            if (d / fn).exists():
                return read_object_names(d / fn)
    return {}


# ------------------------------------------------------------------------------ the record
class UBnormalVideo(Video):
    """A video in UBnormal's layout: frames from the mp4, id maps from the per-frame pngs."""

    source = "ubnormal"

    def __init__(self, *args, ann_dir: Path, categories: dict[int, str] | None = None,
                 sidecar: dict | None = None, **kw):
        super().__init__(*args, **kw)
        self.ann_dir = Path(ann_dir)
        self.categories = dict(categories or {})
        self.sidecar = sidecar

    def png_path(self, frame: int) -> Path:
        return self.ann_dir / f"{self.name}_{int(frame):04d}_gt.png"

    def _read_id_maps(self, idx: np.ndarray) -> np.ndarray:
        out = np.zeros((len(idx), *self.size), np.int32)
        for k, t in enumerate(idx):
            out[k] = read_id_png(self.png_path(t), self.size)
        return out

    def _load_objects(self) -> list[VideoObject]:
        geo = objects_from_id_maps(((t, read_id_png(self.png_path(t), self.size))
                                    for t in range(self.num_frames)), self.num_frames)
        ids = set(geo) | {int(o) for o in self.anomaly_rows[:, 0]}
        side = {}
        if self.sidecar:
            side = {int(d["id"]): d for d in self.sidecar.get("objects", [])}
            ids |= set(side)
        objs = []
        for oid in sorted(ids):
            boxes, cents = geo.get(oid, (np.full((self.num_frames, 4), -1, np.int64),
                                         np.full((self.num_frames, 2), np.nan)))
            ranges = self._ranges_of(oid)
            s = side.get(oid, {})
            objs.append(VideoObject(
                id=oid, category=s.get("category", _category(self.categories.get(oid, "person"))),
                attributes=dict(s.get("attributes") or {}), boxes=boxes, anomalous=bool(ranges),
                anomaly_type=s.get("anomaly_type") if ranges else None, anomaly_ranges=ranges,
                behaviour=s.get("behaviour"), caption=s.get("caption"), centroids=cents,
                extra={k: v for k, v in s.items() if k not in _SIDECAR_CORE}))
        return objs


_SIDECAR_CORE = {"id", "category", "attributes", "anomalous", "anomaly_type", "anomaly_ranges",
                 "behaviour", "caption", "boxes", "centroids"}


def _category(ubnormal_class: str) -> str:
    """UBnormal's class words mapped onto ours where they coincide (others pass through)."""
    return {"bicycle": "cyclist", "skateboard": "skateboarder"}.get(ubnormal_class, ubnormal_class)


def _png_frames(ann_dir: Path, name: str) -> set[int]:
    pat = re.compile(re.escape(name) + r"_(\d+)_gt\.png$")
    out = set()
    for fn in os.listdir(ann_dir):
        m = pat.match(fn)
        if m:
            out.add(int(m.group(1)))
    return out


def _video_file(root: Path, name: str) -> Path | None:
    """The mp4 of video `name`: in its scene folder, else anywhere under Scene*/ (None if absent)."""
    mp4 = root / f"Scene{scene_of(name)}" / f"{name}.mp4"
    if mp4.exists():
        return mp4
    hits = sorted(root.glob(f"Scene*/{name}.mp4"))
    return hits[0] if hits else None


def load_video(root: str | os.PathLike, name: str, kind: str | None = None, split: str | None = None,
               categories: dict[int, str] | None = None, check: str = "headers",
               problems: Problems | None = None) -> UBnormalVideo:
    """One video by name. Raises `DataError` naming the file on bad input (rows of a tracks
    file are skipped and recorded instead when `problems` is not strict)."""
    root = Path(root)
    problems = problems or Problems(True)
    kind = kind or kind_of(name)
    scene_dir = root / f"Scene{scene_of(name)}"
    mp4 = scene_dir / f"{name}.mp4"
    if not mp4.exists():
        hits = sorted(root.glob(f"Scene*/{name}.mp4"))
        if not hits:
            raise DataError(f"{mp4}: no such video file")
        mp4, scene_dir = hits[0], hits[0].parent
    info = video_info(mp4)
    size = (info.height, info.width)
    ann = scene_dir / f"{name}_annotations"
    if not ann.is_dir():
        raise DataError(f"{ann}: missing annotation folder")
    have = _png_frames(ann, name)
    missing = [t for t in range(info.num_frames) if t not in have]
    if missing:
        raise DataError(f"{ann}: annotation folder lacks frames ({len(missing)} of {info.num_frames} "
                        f"pngs missing, first {name}_{missing[0]:04d}_gt.png)")
    extra = sorted(t for t in have if t >= info.num_frames)
    if extra:
        raise DataError(f"{ann}: {len(have)} annotation pngs for a video of {info.num_frames} frames "
                        f"(frame count mismatch with {mp4.name}; extra {name}_{extra[0]:04d}_gt.png)")
    if check in ("headers", "full"):
        frames = range(info.num_frames) if check == "headers" else []
        for t in frames:
            p = ann / f"{name}_{t:04d}_gt.png"
            hw = png_size(p)
            if hw != size:
                raise DataError(f"{p}: mask size {hw[0]}x{hw[1]} does not match the video's "
                                f"{size[0]}x{size[1]} ({mp4.name})")
        if check == "full":
            for t in range(info.num_frames):
                read_id_png(ann / f"{name}_{t:04d}_gt.png", size)
    elif check == "fast":
        p = ann / f"{name}_0000_gt.png"
        hw = png_size(p)
        if hw != size:
            raise DataError(f"{p}: mask size {hw[0]}x{hw[1]} does not match the video's "
                            f"{size[0]}x{size[1]} ({mp4.name})")
    else:
        raise ValueError(f"check must be 'fast', 'headers' or 'full', got {check!r}")
    rows = np.zeros((0, 3), np.int64)
    tp = tracks_path(ann, name)
    if kind == "abnormal":
        if tp is None:
            raise DataError(f"{ann / (name + '_tracks.txt')}: missing tracks file of an abnormal video")
        rows = parse_tracks(tp, info.num_frames, problems)
    side_p = ann / f"{name}_objects.json"
    sidecar = read_json(side_p) if side_p.exists() else None
    meta = {"scene": int(scene_of(name)), "kind": kind, "tracks_file": str(tp) if tp else None}
    if sidecar:
        meta.update({k: v for k, v in sidecar.items() if k not in ("objects",)})
    return UBnormalVideo(name, mp4, info.num_frames, info.fps, size, labels_from_rows(rows, info.num_frames),
                         split=canonical_split(split) if split else None, anomaly_rows=rows, meta=meta,
                         ann_dir=ann, categories=categories, sidecar=sidecar,
                         source="synthetic" if sidecar else "ubnormal")


def load(root: str | os.PathLike, split: str, strict: bool = True, check: str = "headers",
         object_names: str | os.PathLike | None = None) -> VideoList:
    """The videos of one split (``train``/``training``, ``validation``, ``test``, or any split
    with its own ``scripts/{abnormal,normal}_{split}_video_names.txt``), abnormal then normal,
    in split-file order.

    strict: bad input raises `DataError` naming the file (a split file listing a video whose
            mp4 is missing: the split file and the video); False skips the video (or the bad
            tracks row), counts and reports it in the returned list's ``.skipped``.
    check:  "fast" (png count + first png header), "headers" (every png header: size and
            readability; default) or "full" (decode every png).
    """
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"{root}: no such dataset folder")
    problems = Problems(strict)
    names = split_names(root, split, problems)
    try:
        table = _find_object_names(root, object_names)
    except DataError as e:
        if strict:
            raise
        problems.skip(e, "object class table")
        table = {}
    videos = []
    for name, kind in names:
        split_file = root / "scripts" / f"{kind}_{split_file_word(split)}_video_names.txt"
        try:
            scene = scene_of(name)
        except DataError as e:
            problems(split_file, f"lists {e}", item=name)
            continue
        if _video_file(root, name) is None:
            problems(split_file, f"lists video {name!r}: no such video file "
                     f"{root / ('Scene' + scene) / (name + '.mp4')}", item=name)
            continue
        try:
            videos.append(load_video(root, name, kind, split, table.get(name), check, problems))
        except DataError as e:
            if strict:
                raise
            problems.skip(e, name)
    return VideoList(videos, problems.skipped)
