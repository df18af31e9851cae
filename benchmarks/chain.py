"""Benchmark: the whole notebook chain's wall time and peak memory, per notebook.

    .venv/bin/python benchmarks/chain.py [--preset cpu] [--run-dir /tmp/tvad-chain] [--fresh]

Each notebook runs in its own `tvad pipeline --from N --to N` process; the resident memory of
that process tree (runner + Jupyter kernel) is sampled every 0.2 s. `--fresh` deletes the run dir
and the dataset first, so every step does its full work (nothing skipped from an earlier run).
Prints one JSON record (also written to benchmarks/results/chain.json).
Target (issue 9): the whole cpu chain in <= 10 minutes on 2 cores.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path

import psutil

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tvad.pipeline import chain  # noqa: E402
from tvad.run import package_versions  # noqa: E402


def tree_rss(proc: psutil.Process) -> int:
    total = 0
    for p in [proc, *proc.children(recursive=True)]:
        try:
            total += p.memory_info().rss
        except psutil.Error:
            pass
    return total


def run_step(number: str, preset: str, run_dir: Path, params: list[str]) -> dict:
    cmd = [sys.executable, "-m", "tvad.cli", "pipeline", "--preset", preset, "--run-dir", str(run_dir),
           "--from", number, "--to", number]
    for p in params:
        cmd += ["-p", p]
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    ps, peak = psutil.Process(proc.pid), 0
    while proc.poll() is None:
        peak = max(peak, tree_rss(ps))
        time.sleep(0.2)
    err = proc.stderr.read()
    return {"seconds": round(time.perf_counter() - t0, 1), "peak_rss_mb": round(peak / 2**20),
            "ok": proc.returncode == 0, **({"error": err.strip().splitlines()[-1]} if proc.returncode else {})}


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default="cpu")
    ap.add_argument("--run-dir", default="/tmp/tvad-chain")
    ap.add_argument("--fresh", action="store_true", help="delete the run dir (and its dataset) first")
    args = ap.parse_args(argv)
    run_dir = Path(args.run_dir)
    if args.fresh and run_dir.exists():
        shutil.rmtree(run_dir)
    params = [f"data.root={run_dir / 'dataset'}"]
    steps = {}
    for s in chain():
        steps[s.stem] = run_step(s.number, args.preset, run_dir, params)
        print(f"{s.stem}: {steps[s.stem]}", file=sys.stderr, flush=True)
        if not steps[s.stem]["ok"]:
            break
    rec = {
        "benchmark": "chain", "preset": args.preset, "fresh": args.fresh,
        "machine": {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
                    "memory_gb": round(psutil.virtual_memory().total / 2**30, 1), "platform": platform.platform()},
        "versions": {k: package_versions()[k] for k in ("python", "torch", "transformers")},
        "steps": steps,
        "total_seconds": round(sum(v["seconds"] for v in steps.values()), 1),
        "peak_rss_mb": max((v["peak_rss_mb"] for v in steps.values()), default=0),
        "target_seconds": 600,
    }
    out = REPO / "benchmarks" / "results" / "chain.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(rec, indent=2) + "\n")
    print(json.dumps(rec, indent=2))
    return rec


if __name__ == "__main__":
    main()
