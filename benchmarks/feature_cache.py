"""Benchmark: stage 1's peak memory does not grow with the number of clips (the lazy feature cache).

    python benchmarks/feature_cache.py [--videos 16] [--frames 24] [--size 224] [--memory-mb 16]

Writes 4 x `--videos` small mp4 videos (a textured background, a moving anomalous square: real id-map
masks), then for 1x and 4x the videos runs, each in a FRESH subprocess (so peak RSS is that run's
alone): `prepare` with a new feature cache (features computed and written, masks packed beside them)
and one epoch-like pass reading every sample's features and masks, as training and validation do. Each
child reports its peak RSS (`resource.getrusage(RUSAGE_SELF).ru_maxrss`), its RSS before `prepare`
(imports and the backbone), the cache size predicted by `predicted_cache_bytes` before extraction and
the actual size on disk. For contrast, an "eager" child per size reads the same cache and keeps every
sample's features and masks in memory, as `prepare` did before (what the 4x peak would have been).
Prints the record as JSON (and writes benchmarks/results/feature_cache.json unless --out).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import common  # noqa: E402  (repo on sys.path, offline HF)


def _rss_mib_now() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def _peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def _records(d: Path, n: int, frames: int, size: int):
    import numpy as np

    from tvad.data.record import Video

    class Square(Video):
        """A moving 1/4-size square, anomalous in the middle half of the frames."""

        def _read_id_maps(self, idx):
            m = np.zeros((len(idx), *self.size), np.int32)
            s = self.size[0] // 4
            for k, t in enumerate(idx):
                x = int(t) * (self.size[1] - s) // max(1, self.num_frames - 1)
                m[k, s:2 * s, x:x + s] = 1
            return m

    rows = np.array([[1, frames // 4, 3 * frames // 4]])
    return [Square(f"v{i:04d}", d / f"v{i:04d}.mp4", frames, 8.0, (size, size), anomaly_rows=rows, split="train")
            for i in range(n)]


def write_videos(d: Path, n: int, frames: int, size: int) -> None:
    import numpy as np

    from tvad.data.video import write_video

    d.mkdir(parents=True, exist_ok=True)
    yy, xx = np.mgrid[0:size, 0:size]
    for i in range(n):
        p = d / f"v{i:04d}.mp4"
        if p.exists():
            continue
        rng = np.random.default_rng(i)
        base = np.stack([(xx * 3 + yy + 17 * i) % 256, (yy * 2 + 5 * i) % 256, (xx + yy) % 256], -1)
        x = np.stack([(base + rng.integers(0, 40, (size, size, 3)) + 3 * t) % 256 for t in range(frames)])
        write_video(p, x.astype(np.uint8), fps=8.0)


def child(args) -> dict:
    """One measured run (in its own process)."""
    import torch

    from tvad.io import REPO_ROOT
    from tvad.model.backbone import from_pretrained
    from tvad.model.tiny import build_tiny
    from tvad.train.features import FeatureCache, predicted_cache_bytes, predicted_cache_line
    from tvad.train.stage1 import prepare

    torch.set_num_threads(max(1, args.threads))
    layers = [int(x) for x in args.layers.split(",")]
    src = REPO_ROOT / args.backbone
    bb = from_pretrained(src, max_pixels=args.size ** 2) if src.is_dir() else build_tiny(max_pixels=args.size ** 2)
    recs = _records(Path(args.videos_dir), args.n, args.frames, args.size)
    before = _rss_mib_now()
    cache = FeatureCache(args.cache, bb, layers, memory_bytes=int(args.memory_mb * 2**20))
    t0 = time.perf_counter()
    predicted = predicted_cache_bytes(recs, bb, layers)
    line = predicted_cache_line(recs, bb, layers)
    samples = prepare(recs, cache, progress=False)
    t1 = time.perf_counter()
    kept, total = [], 0.0
    for s in samples:  # one epoch-like pass: every block and the masks of every sample
        feats = {l: s.features[l] for l in layers}
        m = s.masks
        total += float(sum(f.float().mean() for f in feats.values())) + float(m.float().mean())
        if args.mode == "eager":
            kept.append(({l: f.clone() for l, f in feats.items()}, m.clone()))
        del feats, m
    t2 = time.perf_counter()
    return {"mode": args.mode, "videos": args.n, "peak_rss_mib": round(_peak_mib(), 1),
            "rss_before_prepare_mib": round(before, 1), "rss_end_mib": round(_rss_mib_now(), 1),
            "predicted_cache_bytes": predicted, "actual_cache_bytes": cache.disk_bytes(), "predicted_line": line,
            "feature_misses": cache.misses, "feature_hits": cache.hits, "lru_bound_bytes": cache.memory.max_bytes,
            "lru_peak_bytes": cache.memory.peak_bytes, "prepare_s": round(t1 - t0, 2), "pass_s": round(t2 - t1, 2),
            "kept_samples": len(kept), "checksum": round(total, 4)}


def _run_child(args, n: int, cache: Path, mode: str) -> dict:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", "--n", str(n), "--mode", mode,
           "--cache", str(cache), "--videos-dir", str(args.videos_dir), "--frames", str(args.frames),
           "--size", str(args.size), "--layers", args.layers, "--backbone", args.backbone,
           "--memory-mb", str(args.memory_mb), "--threads", str(args.threads)]
    r = subprocess.run(cmd, capture_output=True, text=True, cwd=common.REPO, timeout=3600)
    if r.returncode != 0:
        raise RuntimeError(f"feature_cache child ({mode}, {n} videos) failed:\n{r.stderr[-4000:]}")
    return json.loads(r.stdout.strip().splitlines()[-1])


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--videos", type=int, default=16, help="videos at 1x (4x runs four times as many)")
    ap.add_argument("--frames", type=int, default=24, help="frames per video")
    ap.add_argument("--size", type=int, default=224, help="frame side (square) and the backbone's pixel budget")
    ap.add_argument("--layers", default="0,1,2,3", help="ViT blocks cached")
    ap.add_argument("--backbone", default="assets/tiny-qwen2.5-vl")
    ap.add_argument("--memory-mb", type=float, default=16.0, help="the feature cache's LRU bound (MiB)")
    ap.add_argument("--threads", type=int, default=1, help="torch threads in the children")
    ap.add_argument("--no-eager", action="store_true", help="skip the eager-contrast children")
    ap.add_argument("--out", default=None, help="record path (default benchmarks/results/feature_cache.json; - none)")
    ap.add_argument("--workdir", default=None, help="videos and caches here (default: a temporary folder)")
    # the child's own arguments
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--n", type=int, default=0, help=argparse.SUPPRESS)
    ap.add_argument("--mode", default="lazy", help=argparse.SUPPRESS)
    ap.add_argument("--cache", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--videos-dir", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        rec = child(args)
        print(json.dumps(rec), flush=True)
        return rec
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(args.workdir or tmp)
        args.videos_dir = work / "videos"
        t0 = time.perf_counter()
        write_videos(args.videos_dir, 4 * args.videos, args.frames, args.size)
        write_s = time.perf_counter() - t0
        runs = {}
        for scale in (1, 4):
            n = scale * args.videos
            cache = work / f"cache_{scale}x"
            runs[f"{scale}x"] = _run_child(args, n, cache, "lazy")
            if not args.no_eager:
                runs[f"{scale}x_eager"] = _run_child(args, n, cache, "eager")
    one, four = runs["1x"], runs["4x"]
    rec = {"benchmark": "feature_cache", "machine": common.machine(), "versions": common.versions("safetensors"),
           "settings": {"videos_1x": args.videos, "frames": args.frames, "size": args.size, "layers": args.layers,
                        "backbone": args.backbone, "lru_bound_mib": args.memory_mb, "threads": args.threads},
           "write_videos_s": round(write_s, 1), "runs": runs,
           "peak_rss_mib": {"1x": one["peak_rss_mib"], "4x": four["peak_rss_mib"]},
           "peak_rss_ratio_4x_over_1x": round(four["peak_rss_mib"] / one["peak_rss_mib"], 3),
           "cache_bytes": {k: {"predicted": r["predicted_cache_bytes"], "actual": r["actual_cache_bytes"]}
                           for k, r in runs.items() if "eager" not in k}}
    rec["flat"] = rec["peak_rss_ratio_4x_over_1x"] <= 1.10
    if not args.no_eager:
        rec["eager_peak_rss_mib"] = {"1x": runs["1x_eager"]["peak_rss_mib"], "4x": runs["4x_eager"]["peak_rss_mib"]}
    return common.emit(rec, "feature_cache", args.out)


if __name__ == "__main__":
    main()
