"""Corpus annotation throughput against an OpenAI-compatible server, by requests in flight (N).

    .venv/bin/python benchmarks/annotation.py            # 200 ms per answer, N = 1, 2, 4, 8, 16
    .venv/bin/python benchmarks/annotation.py --tiny     # 20 ms, N = 1, 4, 8 frames (the test runs this)
    .venv/bin/python benchmarks/annotation.py --real --out benchmarks/results/annotation_real.json
                                                         # the real ShanghaiTech clips, 868x476

The repo's annotation path end to end: `tvad.corpus.extract_all` over clips of `--frames-per-clip`
frames (`--size` H W, random pixels: JPEG's worst case; `--real`: the three real ShanghaiTech clips in
../shared/data/shanghaitech-clips, 24 frames of 868x476 each, as the paper sends them), the `HTTPAnnotator` (JPEG data URL, the stdlib client, its
retries), `corpus.max_concurrency` = N requests in flight, every answer appended to a fresh
`FrameCache`. The server is `tests/http_fixtures.LoopbackLVLM` on 127.0.0.1 in a child process (so its
threads do not share this process's interpreter lock): each answer takes `--latency` seconds, as a
served LVLM would, and says "no instances" (it does not decode the image).

Per N: frames/s (median and range over `--repeats`), the speed-up over N = 1, the client's CPU
time per frame (JPEG encoding, base64, JSON, threads: what bounds N on a small machine), the server's
most requests at once. The target (issue #18): >= 6x the sequential rate at N = 8 with 200 ms.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import REPO, emit, machine, rate, stats, versions  # noqa: E402

sys.path.insert(0, str(REPO / "tests"))  # the loopback server the tests use

import numpy as np  # noqa: E402


CLIPS = REPO.parent / "shared" / "data" / "shanghaitech-clips"


class Clip:
    """A clip held in memory: random frames (each one different), or given ones."""

    def __init__(self, name: str, num_frames: int, size: tuple[int, int], seed: int,
                 frames: np.ndarray | None = None) -> None:
        if frames is None:
            frames = np.random.default_rng(seed).integers(0, 256, (num_frames, *size, 3), dtype=np.uint8)
        self.name, self.num_frames, self.size, self._frames = name, len(frames), tuple(frames.shape[1:3]), frames

    def read_frames(self, idx):
        return self._frames[list(idx)]


def real_clips() -> list[Clip]:
    from tvad.data.video import read_frames

    paths = sorted(CLIPS.glob("*.mp4"))
    if not paths:
        raise SystemExit(f"--real: no clips at {CLIPS}")
    return [Clip(p.stem, 0, (0, 0), 0, frames=read_frames(p)) for p in paths]


def _serve(latency: float, conn) -> None:
    from http_fixtures import LoopbackLVLM

    with LoopbackLVLM(latency=latency, decode=False) as srv:
        conn.send(srv.base_url)
        conn.recv()  # until told to stop
        conn.send({"requests": srv.requests, "in_flight_max": srv.in_flight_max})


class Server:
    """LoopbackLVLM in a forked child process; `stop()` returns its request count and peak in flight."""

    def __init__(self, latency: float) -> None:
        ctx = mp.get_context("fork")
        self._conn, child = ctx.Pipe()
        self._proc = ctx.Process(target=_serve, args=(latency, child), daemon=True)
        self._proc.start()
        self.base_url = self._conn.recv()

    def stop(self) -> dict:
        self._conn.send("stop")
        out = self._conn.recv()
        self._proc.join(10)
        return out


def run_once(base_url: str, n: int, clips: list[Clip]) -> tuple[float, float, int]:
    """(wall seconds, client CPU seconds, frames asked) for one pass over `clips` with N in flight."""
    from tvad.corpus import FrameCache, HTTPAnnotator, extract_all

    ann = HTTPAnnotator(base_url, "bench", api_key_env=None, timeout=30.0, max_concurrency=n)
    with tempfile.TemporaryDirectory() as d, FrameCache(Path(d) / "frames.jsonl") as cache:
        c0, t0 = time.process_time(), time.perf_counter()
        rep = extract_all(clips, ann, cache)
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    if rep.statuses != {"ok": rep.asked}:
        raise RuntimeError(f"N={n}: not every frame was answered: {rep.statuses}")
    return wall, cpu, rep.asked


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--latency", type=float, default=0.2, help="seconds per answer (the served model's time)")
    ap.add_argument("--concurrency", type=int, nargs="+", default=[1, 2, 4, 8, 16])
    ap.add_argument("--clips", type=int, default=2)
    ap.add_argument("--frames-per-clip", type=int, default=40, help="the paper's longest clip")
    ap.add_argument("--size", type=int, nargs=2, default=[224, 224], metavar=("H", "W"))
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--real", action="store_true", help="the real ShanghaiTech clips instead of random frames")
    ap.add_argument("--tiny", action="store_true", help="20 ms, N = 1 and 4, 8 frames, one repeat")
    ap.add_argument("--out", default=None, help="JSON path ('-': print only)")
    args = ap.parse_args(argv)
    if args.tiny:
        args.latency, args.concurrency, args.clips, args.frames_per_clip, args.repeats = 0.02, [1, 4], 1, 8, 1
    if args.real:
        clips = real_clips()
    else:
        clips = [Clip(f"clip{i}", args.frames_per_clip, args.size, i) for i in range(args.clips)]
    frames = sum(c.num_frames for c in clips)
    rec = {"benchmark": "annotation", "tiny": args.tiny, "machine": machine(), "versions": versions(),
           "latency_s": args.latency, "frames": frames, "frames_source": "real" if args.real else "random",
           "frame_size": list(clips[0].size), "image_format": "jpeg", "per_n": {}}
    srv = Server(args.latency)
    try:
        for n in args.concurrency:
            walls, cpus = [], []
            for _ in range(max(1, args.repeats)):
                wall, cpu, asked = run_once(srv.base_url, n, clips)
                assert asked == frames, (asked, frames)
                walls.append(wall)
                cpus.append(cpu)
            st = stats(walls, 4)
            rec["per_n"][str(n)] = {"seconds": st, "frames_per_s": rate(st, frames),
                                    "client_cpu_ms_per_frame": round(1000 * float(np.median(cpus)) / frames, 2),
                                    "ideal_frames_per_s": round(n / args.latency, 2) if args.latency else None}
    finally:
        served = srv.stop()
    rec["server"] = served
    base = rec["per_n"].get("1")
    for n, r in rec["per_n"].items():
        if base:
            r["speedup"] = round(r["frames_per_s"]["median"] / base["frames_per_s"]["median"], 2)
    if base and "8" in rec["per_n"]:
        rec["target"] = {"n": 8, "speedup_min": 6.0, "speedup": rec["per_n"]["8"]["speedup"],
                         "met": rec["per_n"]["8"]["speedup"] >= 6.0}
    out = args.out or (str(Path(REPO / "benchmarks" / "results" / "annotation_tiny.json")) if args.tiny else None)
    emit(rec, "annotation", out)
    print(f"{'N':>3} {'frames/s':>9} {'range':>15} {'speed-up':>9} {'client CPU ms/frame':>20}")
    for n, r in rec["per_n"].items():
        fr = r["frames_per_s"]
        print(f"{n:>3} {fr['median']:>9.2f} {fr['min']:>7.2f}-{fr['max']:<7.2f} {r.get('speedup', 0):>9.2f} "
              f"{r['client_cpu_ms_per_frame']:>20.2f}")
    return rec


if __name__ == "__main__":
    main()
