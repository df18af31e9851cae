"""Benchmark: how far two runs of the chain at the same seed moved (reproducibility across machines
or loads): every numeric result key of notebooks 02-04 compared, timings and fingerprints left out.

    .venv/bin/python benchmarks/compare_runs.py RUN_A RUN_B [--top 15]

Prints how many keys were compared and how many differ, then the largest differences, and writes
one JSON record to benchmarks/results/compare_runs.json. docs/results.md ("Reproducibility across
runs") records what it printed for two runs of the cpu chain under different loads.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

from tvad.study import is_timing_key

STEMS = ("02_ahd_training", "03_rae_sft", "04_evaluation")


def _skip(key: str) -> bool:
    """Wall times (`tvad.study.is_timing_key`, the seed study's rule) and the backbone fingerprint (it
    hashes the checkout's path) are not results."""
    return is_timing_key(key) or key == "stage1.backbone"


def _same(u, v) -> bool:
    return u == v or (isinstance(u, float) and isinstance(v, float) and math.isnan(u) and math.isnan(v))


def compare(a: Path, b: Path) -> dict:
    """{"compared", "differ", "missing", "diffs": [(|u - v|, stem, key, u, v)] largest first} over the
    results files both run dirs have."""
    compared, missing, diffs = 0, [], []
    for stem in STEMS:
        pa, pb = a / "results" / f"{stem}.json", b / "results" / f"{stem}.json"
        if not (pa.exists() and pb.exists()):
            continue
        x, y = json.loads(pa.read_text()), json.loads(pb.read_text())
        for k in sorted(set(x) | set(y)):
            u, v = x.get(k), y.get(k)
            if _skip(k) or isinstance(u, (str, bool, list, dict)) or isinstance(v, (str, bool, list, dict)):
                continue
            if u is None or v is None:
                missing.append(f"{stem}:{k}")
                continue
            compared += 1
            if not _same(u, v):
                diffs.append((abs(float(u) - float(v)), stem, k, u, v))
    diffs.sort(key=lambda d: -d[0] if not math.isnan(d[0]) else 0)
    return {"compared": compared, "differ": len(diffs), "missing": missing, "diffs": diffs}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run_a", type=Path)
    ap.add_argument("run_b", type=Path)
    ap.add_argument("--top", type=int, default=15, help="how many of the largest differences to print")
    args = ap.parse_args(argv)
    for d in (args.run_a, args.run_b):
        if not (d / "results").is_dir():
            ap.error(f"{d}: not a run directory (no results/ folder)")
    r = compare(args.run_a, args.run_b)
    print(f"{r['compared']} numeric result keys compared, {r['differ']} differ, {len(r['missing'])} in one run only")
    for delta, stem, k, u, v in r["diffs"][: args.top]:
        print(f"  {stem}: {k}: {u!r} vs {v!r} (|d| = {delta:.4g})")
    out = Path(__file__).parent / "results" / "compare_runs.json"
    out.write_text(json.dumps({"run_a": str(args.run_a), "run_b": str(args.run_b), **r}, indent=1, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
