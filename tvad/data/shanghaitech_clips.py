"""The T-VAD authors' released ShanghaiTech clip set (24-frame clips of the test videos).

Released layout (clips and annotations may sit in the root, or in ``videos/`` and ``dataset/``):

    {SS}_{VVVV}-{FIRST}_{LAST}.mp4   frames FIRST..LAST of test video SS_VVVV, 868 x 476
    labels.csv                       columns video,description: 有异常 (abnormal) / 没有异常 (normal)
    track.json                       per clip (key "{clip}.npy"): {"size": [H, W], "frame number": T,
                                     "object number": K, "object k": [per frame "region_(x,y)" or null]}
    dataset_track_zh_en.json         per clip (key "{clip}.npy"): trajectory descriptions, Chinese
                                     then English; [] for normal clips
    {clip}.npy                       per-clip masks (T, H, W), non-zero = abnormal, where present
                                     (in the root, ``masks/`` or ``dataset/masks/``)

The converted excerpt kept beside this repository (``annotations.json``: per clip the label, frame
size and count, anomalous objects' centroids and region words, English descriptions) loads
through the same `load`, and both give the same `Video`s.

Mapping onto `Video`: objects are the anomalous tracks (id k, centroids per frame, region words
in ``extra["regions"]``; boxes from the masks where present, else -1); frame labels are the
masks' non-empty frames when masks exist, else (abnormal clip) the frames where any object is
seen, or every frame when it has no track; GT tracks (`gt_tracks`) need boxes, so they come only
with masks (centroid-only clips give none); ``meta`` holds the source video, first/last frame,
label and the references ``trajectory_descriptions_en`` / ``trajectory_descriptions_zh``.
"""

from __future__ import annotations

import csv
import os
import re
from pathlib import Path

import numpy as np
from scipy import ndimage

from tvad.data.files import read_json, video_info
from tvad.data.geometry import id_map_geometry
from tvad.data.record import DataError, Problems, Video, VideoList, VideoObject, ranges_from_frames

ABNORMAL, NORMAL = "有异常", "没有异常"
CLIP_RE = re.compile(r"^(?P<video>\d+_\d+)-(?P<first>\d+)_(?P<last>\d+)$")
_REGION_RE = re.compile(r"^\s*(?P<region>[A-Za-z\-]+)_\(\s*(?P<x>-?\d+(?:\.\d+)?)\s*,\s*(?P<y>-?\d+(?:\.\d+)?)\s*\)\s*$")
_CJK = re.compile(r"[\u3400-\u9fff]")
_EIGHT = np.ones((3, 3), bool)


def parse_clip_name(name: str) -> tuple[str, int, int]:
    """'01_0014-168_191' -> ('01_0014', 168, 191)."""
    m = CLIP_RE.match(Path(name).stem if name.endswith((".mp4", ".npy")) else name)
    if not m:
        raise DataError(f"{name}: not a clip name SS_VVVV-FIRST_LAST")
    return m.group("video"), int(m.group("first")), int(m.group("last"))


def parse_region(entry: str | None, where: str = "") -> tuple[str, float, float] | None:
    """'left_(236,198)' -> ('left', 236.0, 198.0); None stays None."""
    if entry is None:
        return None
    m = _REGION_RE.match(str(entry))
    if not m:
        raise DataError(f"{where}: bad track entry {entry!r} (expected 'region_(x,y)' or null)")
    return m.group("region"), float(m.group("x")), float(m.group("y"))


class ClipVideo(Video):
    """One released clip: frames from its mp4, optional masks from its .npy."""

    source = "shanghaitech_clips"

    def __init__(self, *args, mask_path: Path | None = None, tracks: dict | None = None, **kw):
        super().__init__(*args, **kw)
        self.mask_path = mask_path
        self.tracks = tracks or {}  # {object id: [(region, x, y) | None] per frame}

    def _masks(self) -> np.ndarray:
        return np.load(self.mask_path, mmap_mode="r")

    def _read_id_maps(self, idx: np.ndarray) -> np.ndarray:
        out = np.zeros((len(idx), *self.size), np.int32)
        if self.mask_path is None:
            return out
        m = self._masks()
        for k, t in enumerate(idx):
            out[k] = self._label_frame(np.asarray(m[int(t)]) != 0, int(t))
        return out

    def _label_frame(self, mask: np.ndarray, t: int) -> np.ndarray:
        """Give each blob the id of the track whose centroid lies in it (else the nearest)."""
        out = np.zeros(mask.shape, np.int32)
        if not mask.any():
            return out
        lab, n = ndimage.label(mask, structure=_EIGHT)
        pts = [(oid, tr[t][1], tr[t][2]) for oid, tr in self.tracks.items() if t < len(tr) and tr[t]]
        com = ndimage.center_of_mass(mask, lab, range(1, n + 1))
        for i in range(n):
            if not pts:
                oid = 1
            else:
                inside = [o for o, x, y in pts if 0 <= int(y) < mask.shape[0] and 0 <= int(x) < mask.shape[1]
                          and lab[int(y), int(x)] == i + 1]
                if inside:
                    oid = inside[0]
                else:
                    cy, cx = com[i]
                    oid = min(pts, key=lambda p: (p[1] - cx) ** 2 + (p[2] - cy) ** 2)[0]
            out[lab == i + 1] = oid
        return out

    def read_masks(self, indices=None, all_objects: bool = False) -> np.ndarray:
        # every masked pixel is anomalous: the id maps are the anomaly masks
        return self._read_id_maps(self._indices(indices))

    def _load_objects(self) -> list[VideoObject]:
        T = self.num_frames
        boxes_by: dict[int, np.ndarray] = {}
        if self.mask_path is not None:
            maps = self._read_id_maps(np.arange(T))
            for t in range(T):
                for oid, (box, _) in id_map_geometry(maps[t]).items():
                    boxes_by.setdefault(oid, np.full((T, 4), -1, np.int64))[t] = box
        objs = []
        for oid in sorted(set(self.tracks) | set(boxes_by)):
            tr = self.tracks.get(oid, [None] * T)
            cents = np.array([[np.nan, np.nan] if e is None else [e[1], e[2]] for e in tr], float).reshape(-1, 2)
            if len(cents) < T:
                cents = np.vstack([cents, np.full((T - len(cents), 2), np.nan)])
            boxes = boxes_by.get(oid, np.full((T, 4), -1, np.int64))
            seen = np.flatnonzero((boxes[:, 0] >= 0) | ~np.isnan(cents[:, 0]))
            objs.append(VideoObject(id=oid, category="object", boxes=boxes, anomalous=True,
                                    anomaly_ranges=ranges_from_frames(seen), centroids=cents,
                                    extra={"regions": [None if e is None else e[0] for e in tr]}))
        return objs


def _split_refs(refs: list) -> tuple[list[str], list[str]]:
    zh = [r for r in refs if _CJK.search(r)]
    en = [r for r in refs if not _CJK.search(r)]
    return en, zh


def _find(root: Path, names: tuple[str, ...]) -> Path | None:
    for d in (root, root / "dataset"):
        for n in names:
            if (d / n).exists():
                return d / n
    return None


def _clip_dirs(root: Path) -> list[Path]:
    return [d for d in (root, root / "videos", root / "clips") if d.is_dir()]


def _mask_for(root: Path, clip: str) -> Path | None:
    for d in (root, root / "masks", root / "dataset", root / "dataset" / "masks"):
        p = d / f"{clip}.npy"
        if p.exists():
            return p
    return None


def _make(root: Path, clip: str, label: str, tracks_raw: dict | None, refs: list, problems: Problems,
          where: Path, size_hw=None, num_frames=None) -> ClipVideo:
    src, first, last = parse_clip_name(clip)
    mp4 = next((d / f"{clip}.mp4" for d in _clip_dirs(root) if (d / f"{clip}.mp4").exists()), None)
    if mp4 is None:
        raise DataError(f"{root / (clip + '.mp4')}: clip listed in {where.name} but no such video file")
    info = video_info(mp4)
    size = (info.height, info.width)
    T = info.num_frames
    if size_hw is not None and tuple(size_hw) != size:
        raise DataError(f"{where}: {clip}: size {list(size_hw)} does not match the clip's {list(size)} ({mp4.name})")
    if num_frames is not None and int(num_frames) != T:
        raise DataError(f"{where}: {clip}: frame number {num_frames} does not match the clip's {T} ({mp4.name})")
    tracks: dict[int, list] = {}
    for oid, entries in (tracks_raw or {}).items():
        if len(entries) != T:
            raise DataError(f"{where}: {clip}: object {oid} has {len(entries)} entries for {T} frames")
        tracks[int(oid)] = [parse_region(e, f"{where}: {clip}") for e in entries]
    mask_p = _mask_for(root, clip)
    if mask_p is not None:
        shape = tuple(np.load(mask_p, mmap_mode="r").shape)
        if shape != (T, *size):
            raise DataError(f"{mask_p}: mask shape {shape} does not match the clip's ({T}, {size[0]}, {size[1]})")
    if label not in ("abnormal", "normal"):
        raise DataError(f"{where}: {clip}: label {label!r} is neither abnormal nor normal")
    if mask_p is not None:
        m = np.load(mask_p, mmap_mode="r")
        fl = np.array([np.asarray(m[t]).any() for t in range(T)], np.int8)
    elif label == "abnormal":
        seen = np.zeros(T, np.int8)
        for tr in tracks.values():
            seen |= np.array([e is not None for e in tr], np.int8)
        fl = seen if tracks else np.ones(T, np.int8)
    else:
        fl = np.zeros(T, np.int8)
    rows = [(oid, s, e) for oid, tr in tracks.items()
            for s, e in ranges_from_frames(np.flatnonzero([x is not None for x in tr]))]
    en, zh = _split_refs(refs)
    meta = {"source_video": src, "first_frame": first, "last_frame": last, "label": label,
            "source_frames": list(range(first, last + 1)), "trajectory_descriptions_en": en,
            "trajectory_descriptions_zh": zh, "mask_file": str(mask_p) if mask_p else None}
    return ClipVideo(clip, mp4, T, info.fps, size, fl, split=None, anomaly_rows=rows, meta=meta,
                     has_masks=mask_p is not None, mask_path=mask_p, tracks=tracks)


def _load_released(root: Path, labels_p: Path, problems: Problems) -> list[ClipVideo]:
    track_p = _find(root, ("track.json",))
    refs_p = _find(root, ("dataset_track_zh_en.json",))
    if track_p is None:
        raise DataError(f"{root / 'track.json'}: missing (released layout needs labels.csv and track.json)")
    tracks_all = read_json(track_p)
    refs_all = read_json(refs_p) if refs_p is not None else {}
    try:
        with open(labels_p, newline="", encoding="utf-8-sig") as f:
            rows = list(csv.DictReader(f))
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        raise DataError(f"{labels_p}: unreadable labels file ({e})") from None
    if rows and not {"video", "description"} <= set(rows[0]):
        raise DataError(f"{labels_p}: expected columns video,description, got {list(rows[0])}")
    out = []
    for i, r in enumerate(rows, start=2):
        name = Path(r["video"].strip()).stem
        try:
            desc = r["description"].strip()
            if desc not in (ABNORMAL, NORMAL):
                raise DataError(f"{labels_p}: line {i}: description {desc!r} is neither {ABNORMAL} nor {NORMAL}")
            key = f"{name}.npy"
            if key not in tracks_all:
                raise DataError(f"{track_p}: no entry {key!r} for clip {name}")
            ent = tracks_all[key]
            k = int(ent.get("object number", 0))
            tr = {}
            for j in range(1, k + 1):
                if f"object {j}" not in ent:
                    raise DataError(f"{track_p}: {key}: 'object number' is {k} but 'object {j}' is missing")
                tr[j] = ent[f"object {j}"]
            out.append(_make(root, name, "abnormal" if desc == ABNORMAL else "normal", tr,
                             list(refs_all.get(key, [])), problems, track_p, ent.get("size"),
                             ent.get("frame number")))
        except DataError as e:
            if problems.strict:
                raise
            problems.skip(e, name)
    return out


def _load_excerpt(root: Path, ann_p: Path, problems: Problems) -> list[ClipVideo]:
    ann = read_json(ann_p)
    out = []
    for name in sorted(ann):
        a = ann[name]
        try:
            tr = {oid: [None if e is None else f"{e['region']}_({e['centroid_xy'][0]},{e['centroid_xy'][1]})"
                        for e in entries]
                  for oid, entries in (a.get("anomalous_object_tracks") or {}).items()}
            out.append(_make(root, name, a.get("label", ""), tr, list(a.get("trajectory_descriptions_en", [])),
                             problems, ann_p, a.get("frame_size_hw"), a.get("num_frames")))
        except (DataError, KeyError, TypeError) as e:
            err = e if isinstance(e, DataError) else DataError(f"{ann_p}: {name}: malformed entry ({e})")
            if problems.strict:
                raise err from None
            problems.skip(err, name)
    return out


def load(root: str | os.PathLike, strict: bool = True) -> VideoList:
    """Every clip of the set at `root` (released layout, or the converted ``annotations.json``),
    in index order. strict=False skips bad clips and reports them in ``.skipped``."""
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"{root}: no such folder")
    problems = Problems(strict)
    labels_p = _find(root, ("labels.csv",))
    if labels_p is not None:
        vids = _load_released(root, labels_p, problems)
    elif (root / "annotations.json").exists():
        vids = _load_excerpt(root, root / "annotations.json", problems)
    else:
        raise DataError(f"{root}: neither labels.csv (released layout) nor annotations.json found")
    return VideoList(vids, problems.skipped)
