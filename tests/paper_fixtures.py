"""Small-pixel but long datasets in the real on-disk layouts of UBnormal and ShanghaiTech Campus.

    ub = write_ubnormal_tree(tmp / "ubnormal")          # 9 videos, 30 fps, train / validation / test
    st = write_shanghaitech_tree(tmp / "shanghaitech")  # 2 training .avi + 3 test frame folders, 24 fps
    tvad.data.ubnormal.load(ub.root, "test"); tvad.data.shanghaitech.load(st.root, "test")

The paper preset's rehearsal (`tests/test_paper_rehearsal.py`) runs the whole chain on these; the
loaders' bad-input tests break copies of them. Each video is a static textured background with a
few coloured blobs walking slowly and bouncing off the borders; in an abnormal video one blob
("the runner", object id 1) moves ten times faster during `anomaly` (seconds, inclusive frame
range in the annotations). Durations are chosen for the paper's clips (1 fps, 8-40 frames,
stride 8): some videos are longer than 40 s (several overlapping clips), most 10-30 s (one
clip), one shorter than 8 s (no clip: "too short"). Everything is seeded: the same arguments
write the same pixels.

UBnormal:     Scene{S}/{video}.mp4 (H.264, 30 fps), Scene{S}/{video}_annotations/{video}_{t:04d}_gt.png
              (object ids, every object, 0 = background), {video}_tracks.txt (abnormal videos:
              ``object_id,start,end``), scripts/{abnormal,normal}_{training,validation,test}_video_names.txt,
              scripts/object_names_per_video.pkl (object 3 of each video is a "bicycle").
ShanghaiTech: training/videos/{SS}_{VVV}.avi (24 fps, normal), testing/frames/{SS}_{VVVV}/{NNN}.jpg,
              testing/test_frame_mask/{SS}_{VVVV}.npy (T,) and testing/test_pixel_mask/{SS}_{VVVV}.npy
              (T, H, W): the runner's pixels during its anomaly, zeros elsewhere.
"""

from __future__ import annotations

import os
import pickle
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
from PIL import Image

from tvad.data.video import write_video

SIZE = (120, 200)  # (H, W) of every fixture frame: small, even (yuv420p), not square


@dataclass(frozen=True)
class FixtureVideo:
    """One video to write: `seconds` long; `anomaly` = (first, last) second of the runner's sprint."""

    name: str
    split: str  # UBnormal: "train" | "validation" | "test"; ShanghaiTech: "train" | "test"
    seconds: float
    anomaly: tuple[float, float] | None = None
    objects: int = 3  # blobs in the scene (object ids 1..objects; id 1 is the runner)

    @property
    def abnormal(self) -> bool:
        return self.anomaly is not None

    def num_frames(self, fps: float) -> int:
        return int(round(self.seconds * fps))

    def anomaly_frames(self, fps: float) -> tuple[int, int] | None:
        """(start, end) inclusive source frames of the anomaly, or None."""
        if self.anomaly is None:
            return None
        return int(round(self.anomaly[0] * fps)), min(int(round(self.anomaly[1] * fps)), self.num_frames(fps) - 1)


@dataclass
class FixtureTree:
    """What a writer wrote: the root, its videos, the frame rate and the frame size (H, W)."""

    root: Path
    videos: list[FixtureVideo]
    fps: float
    size: tuple[int, int]
    files: int = 0  # files written
    bytes: int = 0  # their size on disk (st_size sum)

    def split(self, split: str) -> list[FixtureVideo]:
        return [v for v in self.videos if v.split == split]

    def by_name(self, name: str) -> FixtureVideo:
        return next(v for v in self.videos if v.name == name)


# Durations at 1 fps, clips of <= 40 frames every 8. The AHD (stage 1, retrained per evaluation seed in
# notebook 04) sees only UBnormal's clips, at the paper's 476 x 868 and hidden width 1024: its cost grows
# with their frames, so they are short (8-10 s: one clip each); the long videos that give several
# overlapping clips are ShanghaiTech's (its clips go to the corpus only, at the per-clip video budget).
UBNORMAL_VIDEOS: tuple[FixtureVideo, ...] = (
    FixtureVideo("abnormal_scene_1_scenario_1", "train", 9, anomaly=(3, 6)),
    FixtureVideo("normal_scene_1_scenario_2", "train", 8),
    FixtureVideo("normal_scene_2_scenario_4", "train", 6),  # too short: < 8 frames at 1 fps
    FixtureVideo("abnormal_scene_3_scenario_1", "validation", 9, anomaly=(3, 6)),
    FixtureVideo("normal_scene_3_scenario_2", "validation", 8),
    FixtureVideo("abnormal_scene_4_scenario_1", "test", 10, anomaly=(3, 7)),
    FixtureVideo("abnormal_scene_5_scenario_2_fog", "test", 9, anomaly=(2, 5)),  # an irregular name
    FixtureVideo("normal_scene_4_scenario_3", "test", 8),
)

SHANGHAITECH_VIDEOS: tuple[FixtureVideo, ...] = (
    FixtureVideo("01_001", "train", 45),  # 45 s: two overlapping 1 fps clips (frames 0-39 and 8-44) ...
    FixtureVideo("02_002", "train", 44),  # ... and another: the re-partition holds out one normal source
    FixtureVideo("01_0014", "test", 12, anomaly=(4, 8)),
    FixtureVideo("03_0031", "test", 10, anomaly=(3, 6)),
    FixtureVideo("04_0001", "test", 8),
)

_COLOURS = np.array([[220, 40, 40], [40, 190, 60], [50, 80, 230], [230, 200, 40], [200, 60, 200]], np.uint8)


def _background(rng: np.random.Generator, size: tuple[int, int]) -> np.ndarray:
    """A static (H, W, 3) uint8 scene: a vertical grey gradient, a darker 'path' band, fixed noise."""
    H, W = size
    g = np.linspace(150, 95, H)[:, None, None] * np.ones((1, W, 3))
    g[int(H * .55):int(H * .8)] -= 30
    g += rng.normal(0, 6, (H, W, 3))
    return np.clip(g, 0, 255).astype(np.uint8)


def _scene(spec: FixtureVideo, fps: float, size: tuple[int, int], seed: int) -> tuple[np.ndarray, np.ndarray]:
    """frames uint8 (T, H, W, 3) and object ids uint8 (T, H, W) of one video.

    Blobs (14-22 px high, 8-12 px wide) walk at ~10 px/s and bounce off the borders; object 1
    runs at ~100 px/s during the anomaly. Later objects are drawn over earlier ones.
    """
    H, W = size
    T = spec.num_frames(fps)
    rng = np.random.default_rng(seed)
    bg = _background(rng, size)
    n = spec.objects
    hw = np.stack([rng.integers(14, 23, n), rng.integers(8, 13, n)], 1)  # (n, 2) blob height, width
    pos = np.stack([rng.uniform(0, H - hw[:, 0]), rng.uniform(0, W - hw[:, 1])], 1)  # (n, 2) top-left y, x
    ang = rng.uniform(0, 2 * np.pi, n)
    vel = np.stack([np.sin(ang) * 0.3, np.cos(ang)], 1) * (10.0 / fps)  # px per frame, mostly horizontal
    run = spec.anomaly_frames(fps)
    frames = np.empty((T, H, W, 3), np.uint8)
    ids = np.zeros((T, H, W), np.uint8)
    for t in range(T):
        f = bg.copy()
        for k in range(n):
            fast = k == 0 and run is not None and run[0] <= t <= run[1]
            pos[k] += vel[k] * (10.0 if fast else 1.0)
            for d, lim in ((0, H - hw[k, 0]), (1, W - hw[k, 1])):  # bounce
                if pos[k, d] < 0 or pos[k, d] > lim:
                    vel[k, d] = -vel[k, d]
                    pos[k, d] = np.clip(pos[k, d], 0, lim)
            y, x = int(pos[k, 0]), int(pos[k, 1])
            f[y:y + hw[k, 0], x:x + hw[k, 1]] = _COLOURS[k % len(_COLOURS)]
            ids[t, y:y + hw[k, 0], x:x + hw[k, 1]] = k + 1
        frames[t] = f
    return frames, ids


def _tally(tree: FixtureTree) -> FixtureTree:
    files = [p for p in tree.root.rglob("*") if p.is_file()]
    tree.files, tree.bytes = len(files), sum(p.stat().st_size for p in files)
    return tree


def write_ubnormal_tree(root, videos: Sequence[FixtureVideo] = UBNORMAL_VIDEOS, *, seed: int = 0,
                        size: tuple[int, int] = SIZE, fps: float = 30.0) -> FixtureTree:
    """Write `videos` in UBnormal's official layout under `root` (see the module doc); returns the tree.

    Split files are written for train, validation and test (empty when a split has no video of a
    kind), never for test_seen. Video names must be UBnormal names (scene = third '_' field).
    """
    root = Path(root)
    scripts = root / "scripts"
    scripts.mkdir(parents=True, exist_ok=True)
    classes = {}
    for i, v in enumerate(videos):
        scene = root / f"Scene{v.name.split('_')[2]}"
        ann = scene / f"{v.name}_annotations"
        ann.mkdir(parents=True, exist_ok=True)
        frames, ids = _scene(v, fps, size, seed * 1000 + i)
        write_video(scene / f"{v.name}.mp4", frames, fps)
        for t in range(len(ids)):
            Image.fromarray(ids[t], mode="L").save(ann / f"{v.name}_{t:04d}_gt.png", compress_level=1)
        if v.abnormal:
            s, e = v.anomaly_frames(fps)
            (ann / f"{v.name}_tracks.txt").write_text(f"1,{s},{e}\n")
        if v.objects >= 3:
            classes[v.name] = {3: "bicycle"}
    for split, word in (("train", "training"), ("validation", "validation"), ("test", "test")):
        for kind, abnormal in (("abnormal", True), ("normal", False)):
            names = [v.name for v in videos if v.split == split and v.abnormal == abnormal]
            (scripts / f"{kind}_{word}_video_names.txt").write_text("".join(n + "\n" for n in names))
    (scripts / "object_names_per_video.pkl").write_bytes(pickle.dumps(classes))
    return _tally(FixtureTree(root, list(videos), fps, tuple(size)))


def write_shanghaitech_tree(root, videos: Sequence[FixtureVideo] = SHANGHAITECH_VIDEOS, *, seed: int = 1,
                            size: tuple[int, int] = SIZE, fps: float = 24.0) -> FixtureTree:
    """Write `videos` in ShanghaiTech Campus's layout under `root` (see the module doc).

    "train" videos become ``training/videos/{name}.avi`` (they must be normal); "test" videos
    frame folders of 0-based ``{NNN}.jpg`` with their frame and pixel masks.
    """
    root = Path(root)
    tv, fr = root / "training" / "videos", root / "testing" / "frames"
    fm, pm = root / "testing" / "test_frame_mask", root / "testing" / "test_pixel_mask"
    for d in (tv, fr, fm, pm):
        d.mkdir(parents=True, exist_ok=True)
    for i, v in enumerate(videos):
        frames, ids = _scene(v, fps, size, seed * 1000 + i)
        if v.split == "train":
            if v.abnormal:
                raise ValueError(f"{v.name}: ShanghaiTech training videos are normal")
            write_video(tv / f"{v.name}.avi", frames, fps)
            continue
        d = fr / v.name
        d.mkdir(exist_ok=True)
        for t in range(len(frames)):
            Image.fromarray(frames[t]).save(d / f"{t:03d}.jpg", quality=90)
        mask = np.zeros(ids.shape, np.uint8)
        if v.abnormal:
            s, e = v.anomaly_frames(fps)
            mask[s:e + 1] = ids[s:e + 1] == 1
        np.save(pm / f"{v.name}.npy", mask)
        np.save(fm / f"{v.name}.npy", mask.reshape(len(mask), -1).any(1).astype(np.int64))
    return _tally(FixtureTree(root, list(videos), fps, tuple(size)))


# -- the rehearsal's chain, started early ------------------------------------------------------------
# Shared by tests/test_paper_rehearsal.py and tests/conftest.py (this module has one name for both).
REPO = Path(__file__).resolve().parents[1]
BACKBONE = "assets/tiny-qwen2.5-vl"
CHAIN_TIMEOUT_S = 30 * 60  # the chain's wall-clock limit (about 6 min alone on 2 cores; more beside the suite)

# Runs the chain as its child and reports the child's peak RSS: getrusage(RUSAGE_CHILDREN) in a
# fresh process counts only the chain's processes (the largest one waited for), not pytest's others.
_WRAPPER = """
import json, resource, subprocess, sys, time
t = time.monotonic()
rc = subprocess.call(sys.argv[2:])
ru = resource.getrusage(resource.RUSAGE_CHILDREN)
json.dump({"rc": rc, "wall_s": time.monotonic() - t, "maxrss_kib": ru.ru_maxrss}, open(sys.argv[1], "w"))
sys.exit(rc)
"""


REHEARSAL: dict = {}  # the chain started early by conftest (start_rehearsal), waited for by the fixture


def start_rehearsal(root: Path) -> dict:
    """Write the trees into `root` and start the paper-preset chain on them in the background.
    `tests/conftest.py` calls this as soon as collection selects the rehearsal, so on a machine with
    cores to spare the chain runs beside the rest of the suite; the fixture waits for it."""
    root.mkdir(parents=True, exist_ok=True)
    t = time.monotonic()
    ub = write_ubnormal_tree(root / "ubnormal")
    st = write_shanghaitech_tree(root / "shanghaitech")
    trees_s = time.monotonic() - t
    run_dir, log, usage = root / "run", root / "chain.log", root / "usage.json"
    cmd = [sys.executable, "-c", _WRAPPER, str(usage), sys.executable, "-m", "tvad.cli", "pipeline",
           "--preset", "paper", "--run-dir", str(run_dir),
           "-p", f"backbone.path={BACKBONE}", "-p", "backbone.device=cpu",
           "-p", f"data.root={ub.root}", "-p", f"data.shanghaitech_root={st.root}"]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "MPLBACKEND": "Agg"}
    out = open(log, "w")
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    REHEARSAL.update(proc=proc, out=out, root=root, ub=ub, st=st, trees_s=trees_s, run_dir=run_dir, log=log,
                    usage=usage, t0=time.monotonic())
    return REHEARSAL


def stop_rehearsal() -> None:
    """Kill a chain still running (the session ended early): the wrapper, cli, papermill, kernels."""
    proc = REHEARSAL.get("proc")
    if proc is not None and proc.poll() is None:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


