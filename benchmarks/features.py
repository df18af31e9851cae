"""Benchmark: backbone feature extraction vs the feature cache vs an AHD epoch.

    HF_HUB_OFFLINE=1 python benchmarks/features.py [--backbone assets/tiny-qwen2.5-vl] [--videos 8]

Prints (and writes to benchmarks/results/features.json) the seconds per 24-frame 224x224 video to
compute the chosen blocks' features, to read them back from the cache, and one AHD training epoch
over the cached clips, so the claim "an epoch with the cache is >= 10x faster than recomputing
the features" is measured, not asserted. Random frames: the timing does not depend on content.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np
import torch


def main(argv=None) -> dict:
    from tvad.config import AHDConfig, Stage1Config
    from tvad.model.ahd import pair_merge
    from tvad.model.backbone import from_pretrained
    from tvad.model.tiny import build_tiny
    from tvad.io import REPO_ROOT, atomic_write_json
    from tvad.train.features import FeatureCache
    from tvad.model.build import build_ahd
    from tvad.train.stage1 import Sample, train

    ap = argparse.ArgumentParser()
    ap.add_argument("--backbone", default="assets/tiny-qwen2.5-vl")
    ap.add_argument("--layers", default="0,1,2,3")
    ap.add_argument("--videos", type=int, default=8)
    ap.add_argument("--frames", type=int, default=24)
    ap.add_argument("--size", type=int, default=224)
    args = ap.parse_args(argv)
    layers = [int(x) for x in args.layers.split(",")]
    src = REPO_ROOT / args.backbone
    bb = from_pretrained(src, max_pixels=args.size ** 2) if src.is_dir() else build_tiny(max_pixels=args.size ** 2)
    rng = np.random.default_rng(0)
    vids = [rng.integers(0, 256, (args.frames, args.size, args.size, 3), dtype=np.uint8) for _ in range(args.videos)]
    with tempfile.TemporaryDirectory() as d:
        cache = FeatureCache(d, bb, layers)
        t = time.perf_counter()
        for i, v in enumerate(vids):
            cache.get_or_compute(f"v{i}", list(range(args.frames)), v, fps=8.0)
        compute = (time.perf_counter() - t) / len(vids)
        t = time.perf_counter()
        feats = [cache.get(f"v{i}", list(range(args.frames))) for i in range(len(vids))]
        read = (time.perf_counter() - t) / len(vids)
    samples = []
    for i, f in enumerate(feats):
        m = torch.zeros(args.frames, args.size, args.size, dtype=torch.int32)
        m[4:10, 50:90, 60:80] = 1
        samples.append(Sample(f"v{i}", {l: x.half() for l, x in f.items()}, pair_merge(m),
                              (m.flatten(1).amax(1) > 0).numpy().astype(int), np.zeros((0, 6)), args.frames,
                              (args.size, args.size)))
    ahd = build_ahd(bb, AHDConfig(), layers)
    with tempfile.TemporaryDirectory() as d:
        res = train(ahd, samples, [], Stage1Config(epochs=1), d, progress=False)
    epoch = res.epoch_seconds[0]
    out = {"backbone": str(args.backbone), "identity": bb.identity, "layers": layers,
           "video": f"{args.frames}x{args.size}x{args.size}", "videos": args.videos,
           "feature_compute_s_per_video": compute, "cache_read_s_per_video": read,
           "ahd_epoch_s_cached": epoch + read * len(vids),
           "ahd_epoch_s_recomputing": epoch + compute * len(vids),
           "host": {"cpus": os.cpu_count(), "machine": platform.machine(), "torch_threads": torch.get_num_threads()}}
    out["speedup"] = out["ahd_epoch_s_recomputing"] / out["ahd_epoch_s_cached"]
    print(json.dumps(out, indent=2))
    atomic_write_json(REPO_ROOT / "benchmarks" / "results" / "features.json", out)
    return out


if __name__ == "__main__":
    main()
