"""Shared helpers of the benchmark scripts: the machine record, package versions, timing with
median and spread over repeats, peak-memory probes, profiling, and writing the JSON record.

Every benchmark prints one JSON record: {"benchmark", "machine", "versions", ..., figures}, each
timed figure as {"median", "min", "max", "spread", "repeats"} (seconds unless the key says
otherwise; spread = (max - min) / median, a relative range). The machine is often shared with
other jobs, so medians are the figures to quote and spreads say how noisy they were.
"""

from __future__ import annotations

import cProfile
import io
import json
import os
import platform
import pstats
import statistics
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


def machine() -> dict:
    """CPU model, cores usable by this process, memory, OS, load, and the GPU if there is one."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    out: dict[str, Any] = {"cpu": cpu, "cores": cores, "os": platform.platform()}
    try:
        import psutil

        out["memory_gb"] = round(psutil.virtual_memory().total / 2**30, 1)
    except ImportError:
        pass
    try:
        out["load_avg_1m"] = round(os.getloadavg()[0], 2)  # > cores: the machine was shared
    except OSError:
        pass
    try:
        import torch

        out["torch_threads"] = torch.get_num_threads()
        if torch.cuda.is_available():
            p = torch.cuda.get_device_properties(0)
            out["gpu"] = torch.cuda.get_device_name(0)
            out["gpu_memory_gb"] = round(p.total_memory / 2**30, 1)
            out["cuda"] = torch.version.cuda
    except ImportError:
        pass
    return out


def versions(*extra: str) -> dict:
    """Versions of python and the packages the benchmarks touch (those installed)."""
    from importlib import metadata

    names = ["torch", "transformers", "peft", "trl", "numpy", "decord", "av", *extra]
    out = {"python": platform.python_version()}
    for n in names:
        try:
            out[n] = metadata.version(n)
        except metadata.PackageNotFoundError:
            pass
    return out


def sync(device: Any = None) -> None:
    """Wait for queued GPU work (no-op on the CPU) so that wall-clock timings are honest."""
    try:
        import torch

        if torch.cuda.is_available() and (device is None or "cuda" in str(device)):
            torch.cuda.synchronize()
    except ImportError:
        pass


def stats(times: list[float], digits: int = 6) -> dict:
    """{"median", "min", "max", "spread", "repeats"} of a list of timings (seconds)."""
    med = statistics.median(times)
    return {"median": round(med, digits), "min": round(min(times), digits), "max": round(max(times), digits),
            "spread": round((max(times) - min(times)) / med, 3) if med > 0 else 0.0, "repeats": len(times)}


def timed(fn: Callable[[], Any], repeats: int = 5, warmup: int = 1, device: Any = None) -> tuple[dict, Any]:
    """Run `fn` `warmup` times untimed, then `repeats` times timed (GPU synchronised).
    Returns (stats of the timed runs, the last result)."""
    out = None
    for _ in range(warmup):
        out = fn()
        sync(device)
    times = []
    for _ in range(max(1, repeats)):
        sync(device)
        t0 = time.perf_counter()
        out = fn()
        sync(device)
        times.append(time.perf_counter() - t0)
    return stats(times), out


def rate(st: dict, amount: float, digits: int = 2) -> dict:
    """Throughput (amount per second) from timing stats: median and the range over repeats."""
    return {"median": round(amount / st["median"], digits), "min": round(amount / st["max"], digits),
            "max": round(amount / st["min"], digits)}


class PeakRSS:
    """Peak resident memory of this process while the block runs (sampled every 10 ms), in MB,
    above the level at entry: the CPU counterpart of torch.cuda.max_memory_allocated."""

    def __init__(self, interval: float = 0.01):
        self.interval = interval
        self.peak = 0
        self.base = 0

    def _rss(self) -> int:
        import psutil

        return psutil.Process().memory_info().rss

    def __enter__(self):
        self.base = self.peak = self._rss()
        self._stop = threading.Event()

        def run():
            while not self._stop.is_set():
                self.peak = max(self.peak, self._rss())
                self._stop.wait(self.interval)

        self._t = threading.Thread(target=run, daemon=True)
        self._t.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._t.join()
        self.peak = max(self.peak, self._rss())

    @property
    def mb(self) -> float:
        return round((self.peak - self.base) / 2**20, 1)

    @property
    def total_mb(self) -> float:
        return round(self.peak / 2**20, 1)


def profile(fn: Callable[[], Any], top: int = 15, sort: str = "cumulative") -> tuple[Any, list[dict]]:
    """cProfile `fn`; returns (its result, the top functions by `sort`: name, calls, tottime, cumtime)."""
    pr = cProfile.Profile()
    pr.enable()
    try:
        out = fn()
    finally:
        pr.disable()
    st = pstats.Stats(pr, stream=io.StringIO())
    st.sort_stats(sort)
    rows = []
    for (file, line, name), (cc, nc, tt, ct, _) in sorted(st.stats.items(), key=lambda kv: -kv[1][3 if sort ==
                                                                                                   "cumulative" else 2])[:top]:
        short = file.split("site-packages/")[-1].replace(str(REPO) + "/", "")
        rows.append({"function": f"{short}:{line}({name})", "calls": nc, "tottime_s": round(tt, 4),
                     "cumtime_s": round(ct, 4)})
    return out, rows


def emit(record: dict, name: str | None = None, out: str | os.PathLike | None = None) -> dict:
    """Print the record as JSON and write it to `out` (default benchmarks/results/<name>.json;
    out="-" writes nothing)."""
    record = {"benchmark": record.pop("benchmark", name), **record}
    text = json.dumps(record, indent=2, default=str)
    print(text, flush=True)
    if out != "-":
        p = Path(out) if out else RESULTS / f"{name}.json"
        p.parent.mkdir(parents=True, exist_ok=True)
        tmp = p.with_name(p.name + ".tmp")
        tmp.write_text(text + "\n")
        os.replace(tmp, p)
    return record
