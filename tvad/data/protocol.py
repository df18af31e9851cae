"""The paper's clip protocol for a whole run (§3.3, §4.1): which clips every stage reads.

A clip is a source video's frames resampled to `data.clip_fps`, `clip_min_frames`..`clip_max_frames`
long, resized to `data.clip_size` (`tvad.data.clips`). It is the unit of stage 1, the feature
cache, the corpus, stage 2, evaluation and the tables, on both presets; notebook 01 writes the
run's clip index and every later notebook reads it (`load_clips`).

    index = build_index(cfg.data, seed=cfg.seed)             # ClipIndex: clips, skipped, notes
    write_index(index, run.dir / "clips.jsonl")              # + clips.meta.json (the protocol)
    train = load_clips(run.dir / "clips.jsonl", cfg.data, "train")        # [ClipVideo]
    shtech = load_clips(..., "validation", dataset="shanghaitech")

Datasets and splits:
* the configured dataset (`data.dataset`) with its own splits: UBnormal's official `train` /
  `validation` / `test` exactly as its split files give them; the synthetic set's `train` /
  `validation` / `test` and, only there, `test_seen`;
* ShanghaiTech, when `data.shanghaitech_root` holds the dataset (and it is not already the configured
  one): its training videos (all normal) and test videos pooled and re-partitioned by source video
  into `train` / `validation` (a fifth of the clips held out, abnormal and normal sources
  separately), as the paper's dialogue corpus (4,108 / 1,028 clips); its `validation` clips are its
  held-out set (Table 3's ShanghaiTech column). Two readings of the clip rate meet here: the
  paper's text (8-40 frames at 1 fps: the full dataset tree, cut like every other dataset) and the
  authors' released clip set (`tvad.data.shanghaitech_clips`: 24 consecutive frames each, one
  second at 24 fps). When `data.shanghaitech_root` holds the released set (`labels.csv` or the
  converted `annotations.json`), each released clip is one clip **with its frames as they are** (no
  resampling, no cutting; `data.clip_size` still applies), split train / validation by their source
  test video.

Training clips start every `data.clip_stride` resampled frames (overlapping at the paper's stride
8 of 40); held-out clips (validation, test, test_seen) never overlap, so every covered source frame
is scored exactly once and the clips of a source video concatenate into its covered frames (the
frame-level metrics are computed on those, `tvad.train.coverage`). A source video shorter than the
shortest clip at the clip rate is a `DataError` naming it (`data.strict`), or skipped and counted.
"""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from tvad.data import load_split, shanghaitech_clips
from tvad.data.clips import Clip, ClipVideo, clip_videos, partition, read_index
from tvad.data.clips import write_index as _write_clips
from tvad.data.record import DataError, Skipped, Video, VideoList
from tvad.io import atomic_write_json, resolve_path

HELDOUT = ("validation", "test", "test_seen")  # clips that never overlap
DATASET_ORDER = ("shanghaitech", "ubnormal", "synthetic")  # the paper's column order (Table 3)
SOURCE_SPLITS = {"synthetic": ("train", "validation", "test", "test_seen"),
                 "ubnormal": ("train", "validation", "test"),
                 "shanghaitech": ("train", "test")}  # the loaders' splits each dataset's clips come from
META_SUFFIX = ".meta.json"  # beside the index: the protocol it was made with, what was skipped


@dataclass
class ClipIndex:
    clips: list[Clip]  # every clip of the run, all datasets and splits
    protocol: dict  # the settings the clips depend on (`protocol`)
    skipped: list[Skipped] = field(default_factory=list)  # source videos left out (too short, bad)
    notes: list[str] = field(default_factory=list)  # e.g. "ShanghaiTech not here: ..."

    def datasets(self) -> list[str]:
        """The datasets with clips, in the paper's column order."""
        have = {c.source for c in self.clips}
        return [d for d in DATASET_ORDER if d in have] + sorted(have - set(DATASET_ORDER))

    def select(self, split: str | None = None, dataset: str | None = None) -> list[Clip]:
        return [c for c in self.clips if (split is None or c.split == split)
                and (dataset is None or c.source == dataset)]


def protocol(data_cfg: Any, seed: int = 0) -> dict:
    """What a clip index depends on: the datasets, their roots, and the clip settings."""
    return {"dataset": data_cfg.dataset, "root": str(data_cfg.root),
            "shanghaitech_root": str(data_cfg.shanghaitech_root), "clip_fps": data_cfg.clip_fps,
            "clip_min_frames": int(data_cfg.clip_min_frames), "clip_max_frames": int(data_cfg.clip_max_frames),
            "clip_stride": data_cfg.clip_stride, "clip_size": [int(x) for x in data_cfg.clip_size],
            "seed": int(seed)}


RELEASED = "released"  # the source split of the authors' released ShanghaiTech clips


def released_clip_set(root: str | os.PathLike) -> bool:
    """Whether `root` holds the authors' released ShanghaiTech clip set (or its converted excerpt)
    rather than the full dataset tree."""
    r = resolve_path(root)
    return (r / "labels.csv").is_file() or (r / "annotations.json").is_file() or (r / "dataset" / "labels.csv").is_file()


def datasets(data_cfg: Any) -> tuple[list[str], list[str]]:
    """(the datasets a run uses, notes on the ones left out): the configured one, and ShanghaiTech
    when its root holds the dataset (a `testing` or `training` folder, or the released clip set)."""
    out, notes = [data_cfg.dataset], []
    if data_cfg.dataset != "shanghaitech":
        root = resolve_path(data_cfg.shanghaitech_root)
        if (root / "testing").is_dir() or (root / "training").is_dir() or released_clip_set(root):
            out.append("shanghaitech")
        else:
            notes.append(f"ShanghaiTech is not here ({root}: no training/ or testing/ folder, no released clip set): "
                         "its clips, corpus dialogues and Table 3 column are skipped")
    return out, notes


def dataset_config(data_cfg: Any, dataset: str) -> Any:
    """`data_cfg` reading `dataset` (ShanghaiTech from `data.shanghaitech_root`)."""
    return dataclasses.replace(data_cfg, dataset=dataset)


def load_source(data_cfg: Any, dataset: str, split: str, seed: int = 0) -> VideoList:
    """The source videos of one dataset split (as the loaders give them; the released ShanghaiTech
    clip set is one split, `RELEASED`)."""
    c = dataset_config(data_cfg, dataset)
    if dataset == "shanghaitech" and released_clip_set(c.shanghaitech_root):
        return shanghaitech_clips.load(resolve_path(c.shanghaitech_root), strict=bool(getattr(c, "strict", True)))
    return load_split(c, split, root=c.shanghaitech_root if dataset == "shanghaitech" else c.root, seed=seed)


def _released(videos: VideoList, data_cfg: Any, seed: int) -> list[Clip]:
    """The released clips, each one clip of all its frames, split by source test video (a fifth of
    the clips held out)."""
    whole = []
    for v in videos:
        fr = tuple(range(v.num_frames))
        whole.append(Clip(name=v.name, video=v.name, path=str(v.path), source="shanghaitech", split="train",
                          frames=fr, labels=tuple(int(x) for x in v.frame_labels), size=tuple(int(x) for x in data_cfg.clip_size),
                          fps=v.fps, video_split=RELEASED))
    # split by the source test video: stand-ins carrying each source's clip count and label
    by_src: dict[str, list[Clip]] = {}
    for v, c in zip(videos, whole):
        by_src.setdefault(str(v.meta.get("source_video") or v.name), []).append(c)
    stand = [Video(s, s, 8 * len(cs), 1.0, (1, 1), np.repeat([max(c.label for c in cs)], 8 * len(cs)))
             for s, cs in by_src.items()]
    side = {c.video: c.split for c in partition(stand, fps=None, min_frames=8, max_frames=8, val_fraction=0.2,
                                                seed=seed)}
    return [dataclasses.replace(c, split=side.get(src, "train")) for src, cs in by_src.items() for c in cs]


def _cut(videos, data_cfg, stride, val_fraction=None, seed=0):
    return partition(videos, fps=data_cfg.clip_fps, min_frames=data_cfg.clip_min_frames,
                     max_frames=data_cfg.clip_max_frames, stride=stride, size=data_cfg.clip_size,
                     val_fraction=val_fraction, seed=seed, strict=bool(getattr(data_cfg, "strict", True)))


def build_index(data_cfg: Any, seed: int = 0, log: Callable[[str], None] | None = None,
                load: Callable[[str, str], VideoList] | None = None) -> ClipIndex:
    """Every clip of a run (see the module doc). `load(dataset, split)` gives source videos
    (default `load_source`)."""
    load = load or (lambda ds, sp: load_source(data_cfg, ds, sp, seed))
    names, notes = datasets(data_cfg)
    clips: list[Clip] = []
    skipped: list[Skipped] = []
    for ds in names:
        if ds == "shanghaitech" and released_clip_set(data_cfg.shanghaitech_root):
            released = load(ds, RELEASED)
            skipped += getattr(released, "skipped", [])
            clips += _released(released, data_cfg, seed)
            videos = {RELEASED: released}
        elif ds == "shanghaitech":
            # re-partition (ShanghaiTech has no validation split): which source videos are held out
            # (by their non-overlapping clip counts), then training clips at the stride and held-out
            # clips without overlap
            videos = {sp: load(ds, sp) for sp in SOURCE_SPLITS["shanghaitech"]}
            skipped += [s for vs in videos.values() for s in getattr(vs, "skipped", [])]
            pool = [v for vs in videos.values() for v in vs]
            first = _cut(pool, data_cfg, None, val_fraction=0.2, seed=seed)
            skipped += first.skipped
            side = {c.video: c.split for c in first}
            for split, stride in (("train", data_cfg.clip_stride), ("validation", None)):
                part = _cut([v for v in pool if side.get(v.name) == split], data_cfg, stride)
                clips += [dataclasses.replace(c, split=split) for c in part]
        else:
            videos = {sp: load(ds, sp) for sp in SOURCE_SPLITS.get(ds, ("train", "validation", "test"))}
            skipped += [s for vs in videos.values() for s in getattr(vs, "skipped", [])]
            for split, vs in videos.items():
                part = _cut(vs, data_cfg, data_cfg.clip_stride if split == "train" else None)
                skipped += part.skipped
                clips += list(part)
        if log:
            n = sum(c.source == ds for c in clips)
            log(f"[clips] {ds}: {n} clips from {sum(len(v) for v in videos.values())} source videos")
    return ClipIndex(clips, protocol(data_cfg, seed), skipped, notes)


def write_index(index: ClipIndex, path: str | os.PathLike) -> Path:
    """The clips as JSON lines at `path`, the protocol and skip report beside it (`*.meta.json`)."""
    p = Path(path)
    atomic_write_json(p.with_name(p.name + META_SUFFIX),
                      {"protocol": index.protocol, "notes": index.notes,
                       "skipped": [dataclasses.asdict(s) for s in index.skipped]})
    return _write_clips(index.clips, p)


def read_clip_index(path: str | os.PathLike, data_cfg: Any = None, seed: int = 0) -> ClipIndex:
    """The index at `path`; with a config, a `DataError` naming the file when it was made with
    other clip settings or datasets (an index of another run or config)."""
    p = Path(path)
    meta_path = p.with_name(p.name + META_SUFFIX)
    clips = read_index(p)
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DataError(f"{meta_path}: missing (the clip index {p.name} comes without the protocol it was made "
                        "with); rerun notebook 01 with force=True") from None
    except (OSError, json.JSONDecodeError) as e:
        raise DataError(f"{meta_path}: unreadable ({type(e).__name__}: {e})") from None
    got = meta.get("protocol") or {}
    if data_cfg is not None:
        want = protocol(data_cfg, seed)
        diff = [k for k in want if got.get(k) != want[k]]
        if diff:
            shown = ", ".join(f"{k} {got.get(k)!r} there, {want[k]!r} here" for k in diff)
            raise DataError(f"{p}: clip index made with another configuration ({shown}); rerun notebook 01 with "
                            "force=True or use a fresh run directory")
    skipped = [Skipped(**s) for s in meta.get("skipped", [])]
    return ClipIndex(clips, got, skipped, list(meta.get("notes", [])))


def load_clips(index: ClipIndex | str | os.PathLike, data_cfg: Any, split: str, dataset: str | None = None,
               seed: int = 0) -> list[ClipVideo]:
    """The clips of `split` (of one dataset, or every dataset) as `ClipVideo`s, their source videos
    loaded once per (dataset, source split)."""
    if not isinstance(index, ClipIndex):
        index = read_clip_index(index, data_cfg, seed)
    chosen = index.select(split, dataset)
    out: list[ClipVideo] = []
    sources: dict[tuple[str, str], dict] = {}
    for c in chosen:
        key = (c.source, c.video_split or split)
        if key not in sources:
            sources[key] = {v.name: v for v in load_source(data_cfg, c.source, key[1], seed)}
        src = sources[key]
        if c.video not in src:
            raise DataError(f"{c.path}: source video {c.video!r} of clip {c.name} is not in the {c.source} "
                            f"{key[1]!r} split any more (a clip index of another version of the dataset?)")
        out.extend(clip_videos([c], src))
    return out
