"""ShanghaiTech Campus (Liu et al., CVPR 2018) in its usual on-disk layout.

    root/
      training/videos/{SS}_{VVV}.avi                 normal training videos
      testing/frames/{SS}_{VVVV}/{NNN}.jpg           test videos as frames (0-based, numeric order)
      testing/test_frame_mask/{SS}_{VVVV}.npy        (T,) frame labels, non-zero = abnormal
      testing/test_pixel_mask/{SS}_{VVVV}.npy        (T, 480, 856) pixel masks, non-zero = abnormal
      testing/test_tracks/{SS}_{VVVV}.txt            optional GT tracks for RBDC/TBDC: rows
                                                     track_id,frame,x1,y1,x2,y2 (0-based frames)

Splits: ``train`` (the training videos: normal, no anomalies) and ``test``. Pixel masks have no
object ids: without track files the anomalous regions are linked into tracks frame to frame
(8-connected blobs, greedy IoU >= 0.1) and each track's pixels get its id in `read_masks`;
with track files, each blob takes the id of the track box it overlaps most in that frame (the
nearest box when none overlaps; masked pixels of a frame without any track row get one fresh id,
max track id + 1).
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np
from scipy import ndimage

from PIL import Image

from tvad.data.files import video_info
from tvad.data.geometry import box_iou, id_map_geometry, link_blobs
from tvad.data.record import DataError, Problems, Video, VideoList, VideoObject, ranges_from_frames

DEFAULT_FPS = 24.0  # the frame folders carry no rate; the dataset's videos are 24 fps
_EIGHT = np.ones((3, 3), bool)


def _numeric_key(p: Path):
    m = re.search(r"(\d+)$", p.stem)
    return (int(m.group(1)) if m else -1, p.name)


def _npy_shape(path: Path) -> tuple[int, ...]:
    try:
        return tuple(np.load(path, mmap_mode="r").shape)
    except FileNotFoundError:
        raise DataError(f"{path}: no such file") from None
    except Exception as e:
        raise DataError(f"{path}: unreadable .npy ({type(e).__name__}: {e})") from None


def parse_track_file(path: str | os.PathLike, num_frames: int | None = None,
                     problems: Problems | None = None) -> np.ndarray:
    """Rows ``track_id,frame,x1,y1,x2,y2`` -> (M, 6) int64 (bad rows raise, or are skipped)."""
    p = Path(path)
    problems = problems or Problems(True)
    rows = []
    for ln, line in enumerate(p.read_text(encoding="utf-8").splitlines(), start=1):
        s = line.strip()
        if not s:
            continue
        try:
            vals = [float(x) for x in re.split(r"[,\s]+", s) if x]
        except ValueError:
            problems(p, f"line {ln}: not numbers: {s!r}", item=f"{p.name} line {ln}")
            continue
        if len(vals) != 6 or any(v != int(v) for v in vals):
            problems(p, f"line {ln}: expected 6 integers track_id,frame,x1,y1,x2,y2: {s!r}",
                     item=f"{p.name} line {ln}")
            continue
        r = [int(v) for v in vals]
        if r[1] < 0 or (num_frames is not None and r[1] >= num_frames) or r[4] < r[2] or r[5] < r[3]:
            problems(p, f"line {ln}: frame out of range or empty box: {s!r}", item=f"{p.name} line {ln}")
            continue
        rows.append(r)
    return np.array(rows, dtype=np.int64).reshape(-1, 6)


class ShanghaiTechVideo(Video):
    """A test video (frames folder + masks) or a training video (.avi, no anomalies)."""

    source = "shanghaitech"

    def __init__(self, *args, frames: list[Path] | None = None, pixel_mask: Path | None = None,
                 track_rows: np.ndarray | None = None, **kw):
        super().__init__(*args, **kw)
        self.frame_files = frames
        self.pixel_mask_path = pixel_mask
        self.track_rows = track_rows
        self._linked: dict[int, list[tuple[int, np.ndarray]]] | None = None

    def read_frames(self, indices=None) -> np.ndarray:
        if self.frame_files is None:
            return super().read_frames(indices)
        idx = self._indices(indices)
        out = np.empty((len(idx), *self.size, 3), np.uint8)
        for k, t in enumerate(idx):
            p = self.frame_files[int(t)]
            try:
                with Image.open(p) as im:
                    a = np.asarray(im.convert("RGB"))
            except Exception as e:
                raise DataError(f"{p}: unreadable frame ({type(e).__name__}: {e})") from None
            if a.shape[:2] != self.size:
                raise DataError(f"{p}: frame size {a.shape[0]}x{a.shape[1]}, expected {self.size[0]}x{self.size[1]}")
            out[k] = a
        return out

    def _pixel_mask(self) -> np.ndarray:
        return np.load(self.pixel_mask_path, mmap_mode="r")

    def _link(self) -> dict[int, list[tuple[int, np.ndarray]]]:
        """{frame: [(object id, blob pixels)]} for the whole video (computed once)."""
        if self._linked is not None:
            return self._linked
        out: dict[int, list[tuple[int, np.ndarray]]] = {}
        if self.pixel_mask_path is None:
            self._linked = out
            return out
        pm = self._pixel_mask()
        if self.track_rows is None or not len(self.track_rows):
            regions, _ = link_blobs(((t, np.asarray(pm[t]) != 0) for t in range(self.num_frames)))
            for t, tid, pix, _ in regions:
                out.setdefault(t, []).append((tid, pix))
        else:
            rows = self.track_rows
            fresh = int(rows[:, 0].max()) + 1 if len(rows) else 1
            for t in range(self.num_frames):
                m = np.asarray(pm[t]) != 0
                if not m.any():
                    continue
                lab, n = ndimage.label(m, structure=_EIGHT)
                here = rows[rows[:, 1] == t]
                for i, (ys, xs) in enumerate(ndimage.find_objects(lab)):
                    box = (xs.start, ys.start, xs.stop, ys.stop)
                    if len(here):
                        ious = [box_iou(box, r[2:]) for r in here]
                        j = int(np.argmax(ious))
                        if ious[j] <= 0:  # no overlap: the nearest box centre
                            c = np.array([(box[0] + box[2]) / 2, (box[1] + box[3]) / 2])
                            cc = (here[:, 2:4] + here[:, 4:6]) / 2
                            j = int(np.argmin(((cc - c) ** 2).sum(1)))
                        tid = int(here[j, 0])
                    else:
                        tid = fresh
                    out.setdefault(t, []).append((tid, lab == i + 1))
        self._linked = out
        return out

    def _read_id_maps(self, idx: np.ndarray) -> np.ndarray:
        out = np.zeros((len(idx), *self.size), np.int32)
        if self.pixel_mask_path is None:
            return out
        linked = self._link()
        for k, t in enumerate(idx):
            for tid, pix in linked.get(int(t), []):
                out[k][pix] = tid
        return out

    def read_masks(self, indices=None, all_objects: bool = False) -> np.ndarray:
        # every masked pixel is anomalous in ShanghaiTech: the id maps are the anomaly masks
        idx = self._indices(indices)
        return self._read_id_maps(idx)

    def _load_objects(self) -> list[VideoObject]:
        if self.pixel_mask_path is None:
            return []
        T = self.num_frames
        if self.track_rows is not None and len(self.track_rows):
            boxes_by: dict[int, np.ndarray] = {}
            for tid, t, x1, y1, x2, y2 in self.track_rows:
                b = boxes_by.setdefault(int(tid), np.full((T, 4), -1, np.int64))
                b[int(t)] = (x1, y1, x2, y2)
        else:
            boxes_by = {}
        cents: dict[int, np.ndarray] = {}
        derived: dict[int, np.ndarray] = {}
        for t, items in self._link().items():
            m = np.zeros(self.size, np.int32)
            for tid, pix in items:
                m[pix] = tid
            for tid, (box, cen) in id_map_geometry(m).items():
                derived.setdefault(tid, np.full((T, 4), -1, np.int64))[t] = box
                cents.setdefault(tid, np.full((T, 2), np.nan))[t] = cen
        ids = sorted(set(boxes_by) | set(derived))
        objs = []
        for tid in ids:
            boxes = boxes_by.get(tid, derived.get(tid))
            frames = np.flatnonzero(boxes[:, 0] >= 0)
            objs.append(VideoObject(id=tid, category="object", boxes=boxes, anomalous=True,
                                    anomaly_ranges=ranges_from_frames(frames),
                                    centroids=cents.get(tid, np.full((T, 2), np.nan))))
        return objs

    def gt_tracks(self) -> np.ndarray:
        if self.track_rows is not None:
            r = self.track_rows
            return r[np.lexsort((r[:, 1], r[:, 0]))].copy()
        out = []
        for o in sorted(self.objects, key=lambda o: o.id):
            for t in o.frames:
                out.append((o.id, int(t), *o.boxes[t]))
        return np.array(out, dtype=np.int64).reshape(-1, 6)


def _test_video(root: Path, name: str, fps: float, tracks_dir: Path | None,
                problems: Problems) -> ShanghaiTechVideo:
    fdir = root / "testing" / "frames" / name
    frames = sorted([p for p in fdir.iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png")],
                    key=_numeric_key)
    if not frames:
        raise DataError(f"{fdir}: no frames")
    try:
        with Image.open(frames[0]) as im:
            w, h = im.size
    except Exception as e:
        raise DataError(f"{frames[0]}: unreadable frame ({type(e).__name__}: {e})") from None
    T = len(frames)
    fm_p = root / "testing" / "test_frame_mask" / f"{name}.npy"
    if not fm_p.exists():
        raise DataError(f"{fm_p}: missing frame mask of test video {name} ({fdir})")
    try:
        fm = np.load(fm_p).reshape(-1)
    except Exception as e:
        raise DataError(f"{fm_p}: unreadable .npy ({type(e).__name__}: {e})") from None
    if len(fm) != T:
        raise DataError(f"{fm_p}: {len(fm)} frame labels for {T} frames in {fdir}")
    pm_p = root / "testing" / "test_pixel_mask" / f"{name}.npy"
    if not pm_p.exists():
        raise DataError(f"{pm_p}: missing pixel mask of test video {name} ({fdir})")
    shape = _npy_shape(pm_p)
    if shape != (T, h, w):
        raise DataError(f"{pm_p}: pixel mask shape {shape} does not match the video's ({T}, {h}, {w})")
    rows = None
    if tracks_dir is not None:
        tp = tracks_dir / f"{name}.txt"
        if tp.exists():
            rows = parse_track_file(tp, T, problems)
    meta = {"frames_dir": str(fdir), "frame_mask": str(fm_p), "pixel_mask": str(pm_p),
            "tracks_file": str(tracks_dir / f"{name}.txt") if rows is not None else None}
    return ShanghaiTechVideo(name, fdir, T, fps, (h, w), (fm != 0).astype(np.int8), split="test",
                             meta=meta, frames=frames, pixel_mask=pm_p, track_rows=rows)


def load(root: str | os.PathLike, split: str, strict: bool = True, fps: float = DEFAULT_FPS,
         tracks_dir: str | os.PathLike | None = None) -> VideoList:
    """The ``train`` (or ``training``) or ``test`` (``testing``) videos, sorted by name.

    tracks_dir: folder of GT track files ``{video}.txt`` (default ``testing/test_tracks`` when it
                exists); without one, tracks are derived from the pixel masks.
    strict:     bad input raises `DataError` naming the file; False skips and reports it.
    """
    root = Path(root)
    problems = Problems(strict)
    split = {"training": "train", "testing": "test"}.get(split, split)
    videos = []
    if split == "train":
        vdir = root / "training" / "videos"
        if not vdir.is_dir():
            raise DataError(f"{vdir}: missing training videos folder")
        for p in sorted(vdir.glob("*.avi")) + sorted(vdir.glob("*.mp4")):
            try:
                info = video_info(p)
                videos.append(ShanghaiTechVideo(p.stem, p, info.num_frames, info.fps, (info.height, info.width),
                                                np.zeros(info.num_frames, np.int8), split="train"))
            except DataError as e:
                if strict:
                    raise
                problems.skip(e, p.stem)
    elif split == "test":
        fdir = root / "testing" / "frames"
        if not fdir.is_dir():
            raise DataError(f"{fdir}: missing test frames folder")
        td = Path(tracks_dir) if tracks_dir is not None else root / "testing" / "test_tracks"
        if tracks_dir is not None and not td.is_dir():
            raise DataError(f"{td}: no such tracks folder")
        td = td if td.is_dir() else None
        for d in sorted(p for p in fdir.iterdir() if p.is_dir()):
            try:
                videos.append(_test_video(root, d.name, fps, td, problems))
            except DataError as e:
                if strict:
                    raise
                problems.skip(e, d.name)
    else:
        raise DataError(f"{root}: ShanghaiTech has splits 'train' and 'test', not {split!r}")
    return VideoList(videos, problems.skipped)
