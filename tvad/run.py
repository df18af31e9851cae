"""The run directory: the only hand-over between notebooks.

    runs/<name>/
      config.yaml            the resolved config (preset + overrides)
      run.json               seeds, package versions, git commit, host, start time
      results/<stem>.json    what each notebook measured, flat dotted keys
      notebooks/NN_*.ipynb   executed copies (written by the pipeline runner)
      ...                    each notebook's artifacts (dataset index, corpora, caches, checkpoints)

A notebook starts with `run = tvad.run.open_run(run_dir, preset, overrides)` and ends with
`run.write_results("02_ahd_training", {...})`.
"""

from __future__ import annotations

import json
import os
import platform
import random
import subprocess
import sys
from dataclasses import dataclass
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

from tvad import dist
from tvad.config import Config, preset as make_preset
from tvad.io import REPO_ROOT, atomic_write_json, atomic_write_text, resolve_path
_PACKAGES = ["tvad", "torch", "torchvision", "transformers", "trl", "peft", "accelerate", "numpy",
             "scipy", "scikit-learn", "sacrebleu", "decord", "av", "papermill"]


def seed_everything(seed: int) -> None:
    """Seed python, numpy and torch (CPU and CUDA) and ask torch for deterministic kernels."""
    random.seed(seed)
    np.random.seed(seed)
    try:
        import torch

        torch.manual_seed(seed)
        torch.use_deterministic_algorithms(True, warn_only=True)
    except ImportError:  # metrics-only installs
        pass


def package_versions() -> dict[str, str | None]:
    out: dict[str, str | None] = {"python": sys.version.split()[0]}
    for name in _PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def git_commit(root: Path = REPO_ROOT) -> str | None:
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True,
                             timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                               capture_output=True, text=True, timeout=10).stdout.strip()
        return (sha + ("-dirty" if dirty else "")) or None
    except (OSError, subprocess.SubprocessError):
        return None


def flatten(d: dict, prefix: str = "") -> dict[str, Any]:
    """{"ahd": {"test": {"micro_auc": .9}}} -> {"ahd.test.micro_auc": .9}"""
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(flatten(v, key + "."))
        else:
            out[key] = v
    return out


@dataclass
class Run:
    dir: Path  # the run directory
    config: Config  # the resolved configuration

    def path(self, *parts: str) -> Path:
        """A path inside the run dir (parent folders created)."""
        p = self.dir.joinpath(*parts)
        p.parent.mkdir(parents=True, exist_ok=True)
        return p

    def resolve(self, path: str | os.PathLike) -> Path:
        """A config path: absolute as is, else relative to the repository root."""
        return resolve_path(path)

    def write_results(self, stem: str, results: dict[str, Any]) -> Path:
        """Merge flat dotted keys into results/<stem>.json (nested dicts are flattened). Under
        `accelerate launch` rank 0 writes (every rank holds the same gathered results); the others wait."""
        p = self.path("results", f"{stem}.json")
        if dist.launched():
            if dist.is_main():
                self._merge_results(p, results)
            dist.barrier()
            return p
        return self._merge_results(p, results)

    def _merge_results(self, p: Path, results: dict[str, Any]) -> Path:
        old = json.loads(p.read_text()) if p.exists() else {}
        old.update(flatten(results))
        return atomic_write_json(p, old)

    def results(self, stem: str | None = None) -> dict[str, Any]:
        """One notebook's results, or all of them merged (keys are already namespaced)."""
        files = [self.dir / "results" / f"{stem}.json"] if stem else sorted((self.dir / "results").glob("*.json"))
        out: dict[str, Any] = {}
        for f in files:
            if f.exists():
                out.update(json.loads(f.read_text()))
        return out


def open_run(run_dir: str | os.PathLike, preset: str = "cpu", overrides: dict[str, Any] | None = None) -> Run:
    """Create or reopen a run dir: resolve the config, seed everything, record provenance.

    Reopening with a different resolved config is allowed (e.g. a later notebook with the same
    overrides) but the recorded config.yaml is updated and the change logged in run.json.
    """
    cfg = make_preset(preset, overrides)
    d = resolve_path(run_dir)  # same place whether run from notebooks/ or the root
    d.mkdir(parents=True, exist_ok=True)
    seed_everything(cfg.seed)
    if cfg.cpu_threads > 0:
        import torch

        # The tiny models' ops are small: more threads only add OpenMP contention (measured in
        # benchmarks/chain.py: the cpu chain 728 s with 2 threads, 286 s with 1, on 2 cores).
        torch.set_num_threads(cfg.cpu_threads)
    if not dist.is_main():  # under `accelerate launch` rank 0 records the config and provenance
        return Run(d, cfg)
    atomic_write_text(d / "config.yaml", cfg.to_yaml())
    info_path = d / "run.json"
    info = json.loads(info_path.read_text()) if info_path.exists() else {"created": _now()}
    info.update({
        "preset": preset, "overrides": overrides or {}, "seed": cfg.seed,
        "seeds": {"global": cfg.seed, "stage1": cfg.stage1.seed, "stage2": cfg.stage2.seed,
                  "eval": cfg.eval.seeds},
        "versions": package_versions(), "git_commit": git_commit(),
        "host": {"machine": platform.machine(), "processor": platform.processor(),
                 "cpus": os.cpu_count(), "platform": platform.platform()},
        "updated": _now(),
    })
    atomic_write_json(info_path, info)
    return Run(d, cfg)


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")
