"""The paper preset's rehearsal: the whole notebook chain (01..05, papermill) with `--preset paper`,
changed only by the tiny backbone on the CPU and the two data roots, on long small-pixel fixture
trees in UBnormal's and ShanghaiTech's real layouts (tests/paper_fixtures.py).

    python -m tvad.cli pipeline --preset paper --run-dir RUN -p backbone.path=assets/tiny-qwen2.5-vl \
        -p backbone.device=cpu -p data.root=<ubnormal tree> -p data.shanghaitech_root=<shanghaitech tree>

Then, from RUN: the clip index follows the paper's protocol (1 fps, 8-40 frames, both datasets);
no stage-2 dialogue was truncated; Tables 2 and 3 have the paper's splits and datasets; the
feature cache and the chain's peak memory stay under bounds stated here. On failure the chain's
output tail and the failing notebook's traceback are shown. TVAD_REHEARSAL_DIR=<empty folder> keeps
the trees, the run dir and chain.log there for a post-mortem (pytest's own tmp dirs are rotated
away by later pytest sessions).
"""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import yaml

from tests.paper_fixtures import (BACKBONE, CHAIN_TIMEOUT_S, REHEARSAL, start_rehearsal, stop_rehearsal,
                                  write_shanghaitech_tree, write_ubnormal_tree)

REPO = Path(__file__).resolve().parents[1]
# Peak RSS of the largest process of the chain (cli, papermill, a notebook kernel). Measured on the
# fixture (2026-12-03, clip protocol at 7e7fe7a, chain up to notebook 04's dialogue answers): 5.68 GiB
# (notebook 04: decoder-attention heatmaps of 40-frame 476x868 clips; notebooks 02-03 peak ~1.9 GiB).
# The tiny backbone's weights are ~10 MB: what dominates is one clip's activations at 476x868
# (20 x 34 x 62 ViT tokens; 1,280 video tokens + text through the LM with attentions kept). 8 GiB
# is that measurement plus 40%; a regression to caching whole videos' frames or every clip at once
# would exceed it.
RSS_BOUND_BYTES = 8 * 2**30
SOURCE_RATE = {"ubnormal": 30.0, "shanghaitech": 24.0}  # the fixture trees' frame rates
CLIP_FIELDS = {"name", "video", "path", "source", "split", "frames", "labels", "size", "fps", "video_split"}

pytestmark = [pytest.mark.notebook, pytest.mark.timeout(CHAIN_TIMEOUT_S + 300)]



def _notebook_errors(run_dir: Path) -> str:
    """The first error output of the executed notebooks: notebook, exception, traceback tail."""
    for nb_path in sorted((run_dir / "notebooks").glob("*.ipynb")):
        try:
            nb = json.loads(nb_path.read_text())
        except (OSError, ValueError):
            continue
        for cell in nb.get("cells", []):
            for o in cell.get("outputs", []) if cell.get("cell_type") == "code" else []:
                if o.get("output_type") == "error":
                    tb = "\n".join(o.get("traceback", [])[-6:])
                    return f"{nb_path.name}: {o.get('ename')}: {o.get('evalue')}\n{_strip_ansi(tb)}"
    return "(no error output in the executed notebooks)"


def _strip_ansi(s: str) -> str:
    import re

    return re.sub(r"\x1b\[[0-9;]*m", "", s)


def _du(path: Path) -> int:
    """Bytes on disk under `path` (allocated blocks; 0 when absent)."""
    return sum(p.stat().st_blocks * 512 for p in path.rglob("*") if p.is_file()) if path.exists() else 0


@pytest.fixture(scope="module")
def rehearsal(tmp_path_factory) -> dict:
    if not REHEARSAL:  # run alone (not started early by conftest): start it now
        keep = os.environ.get("TVAD_REHEARSAL_DIR")  # a folder to keep trees + run in (pytest's tmp rotates)
        root = Path(keep) if keep else tmp_path_factory.mktemp("rehearsal")
        if keep and any(root.iterdir() if root.exists() else ()):
            pytest.fail(f"{root}: TVAD_REHEARSAL_DIR must be empty or absent", pytrace=False)
        start_rehearsal(root)
    S = REHEARSAL
    proc, ub, st, trees_s, run_dir, log, usage = (S[k] for k in ("proc", "ub", "st", "trees_s", "run_dir", "log",
                                                                  "usage"))
    try:
        proc.wait(timeout=max(1.0, CHAIN_TIMEOUT_S - (time.monotonic() - S["t0"])))
    except subprocess.TimeoutExpired:
        stop_rehearsal()
    S["out"].close()
    tail = log.read_text(errors="replace")[-6000:]
    measured = json.loads(usage.read_text()) if usage.exists() else {}
    info = {"run_dir": run_dir, "ub": ub, "st": st, "trees_s": trees_s, "usage": measured, "log": log,
            "trees_bytes": ub.bytes + st.bytes}
    print(f"\nrehearsal: trees written in {trees_s:.1f} s, {ub.files + st.files} files, "
          f"{(ub.bytes + st.bytes) / 1e6:.1f} MB; chain {measured}")
    if proc.returncode != 0:
        why = "timed out" if proc.returncode == -signal.SIGKILL else f"exit {proc.returncode}"
        pytest.fail(f"the paper-preset chain failed ({why}) in {run_dir}\n--- failing notebook ---\n"
                    f"{_notebook_errors(run_dir)}\n--- chain output (tail) ---\n{tail}", pytrace=False)
    return info


def _clips(run_dir: Path) -> list[dict]:
    p = run_dir / "clips.jsonl"
    assert p.exists(), f"{p}: no clip index"
    return [json.loads(line) for line in p.read_text().splitlines() if line.strip()]


def _config(run_dir: Path) -> dict:
    return yaml.safe_load((run_dir / "config.yaml").read_text())


def test_the_overrides_are_the_only_changes(rehearsal):
    """The run's recorded config is the paper preset with exactly the four overrides."""
    from tvad.config import preset

    ub, st = rehearsal["ub"], rehearsal["st"]
    want = preset("paper", {"backbone.path": BACKBONE, "backbone.device": "cpu", "data.root": str(ub.root),
                            "data.shanghaitech_root": str(st.root)}).to_dict()
    got = _config(rehearsal["run_dir"])
    diff = {f"{s}.{k}": (got.get(s, {}).get(k), v) for s, sec in want.items() if isinstance(sec, dict)
            for k, v in sec.items() if got.get(s, {}).get(k) != v}
    diff.update({s: (got.get(s), v) for s, v in want.items() if not isinstance(v, dict) and got.get(s) != v})
    assert not diff, f"config.yaml differs from the paper preset + overrides (got, want): {diff}"


def test_clip_index_follows_the_paper_protocol(rehearsal):
    clips = _clips(rehearsal["run_dir"])
    assert clips
    cfg = _config(rehearsal["run_dir"])
    for c in clips:
        assert CLIP_FIELDS <= set(c), f"{c.get('name')}: missing fields {CLIP_FIELDS - set(c)}"
        n = len(c["frames"])
        assert 8 <= n <= 40, f"{c['name']}: {n} frames"
        assert c["fps"] == 1.0 and len(c["labels"]) == n and list(c["size"]) == cfg["data"]["clip_size"], c["name"]
        gaps = np.diff(c["frames"])
        rate = SOURCE_RATE[c["source"]]
        assert np.all(np.abs(gaps - rate) <= 1), f"{c['name']}: source frames {c['frames'][:4]}... not ~{rate} apart"
    assert {c["source"] for c in clips} == {"ubnormal", "shanghaitech"}
    by_video: dict[str, list[dict]] = {}
    for c in clips:
        by_video.setdefault(c["video"], []).append(c)
    # too short (6 s: 6 frames at 1 fps): no clip, and skipped *and counted* in the index's report
    assert "normal_scene_2_scenario_4" not in by_video
    meta = json.loads((rehearsal["run_dir"] / "clips.jsonl.meta.json").read_text())
    assert [s["item"] for s in meta["skipped"]] == ["normal_scene_2_scenario_4"], meta["skipped"]
    for tree in (rehearsal["ub"], rehearsal["st"]):
        for v in tree.videos:
            train = sorted(c["frames"][0] for c in by_video.get(v.name, []) if c["split"] == "train")
            if v.seconds > 40 and train:  # training clips overlap: starts 8 s apart (stride 8 at 1 fps)
                assert len(train) >= 2 and abs(train[1] - train[0] - 8 * tree.fps) <= 8, (v.name, train)
            held = [set(c["frames"]) for c in by_video.get(v.name, []) if c["split"] != "train"]
            assert sum(map(len, held)) == len(set().union(*held)), f"{v.name}: held-out clips overlap"
    assert any(len(cs) >= 2 for cs in by_video.values())  # some source gives several clips
    # every UBnormal split reaches the chain, and ShanghaiTech's test videos too
    assert {c["video_split"] for c in clips if c["source"] == "ubnormal"} >= {"train", "validation", "test"}
    assert "test" in {c["video_split"] for c in clips if c["source"] == "shanghaitech"}
    # labels: a clip of an abnormal fixture video covering its anomaly is labelled abnormal
    ub = rehearsal["ub"]
    for c in clips:
        if c["source"] != "ubnormal":
            continue
        a = ub.by_name(c["video"]).anomaly_frames(ub.fps)
        inside = [a is not None and a[0] <= f <= a[1] for f in c["frames"]]
        assert [int(x) for x in inside] == [int(x) for x in c["labels"]], c["name"]


def test_no_stage2_dialogue_was_truncated(rehearsal):
    p = rehearsal["run_dir"] / "results" / "03_rae_sft.json"
    r = json.loads(p.read_text())
    assert "stage2.truncated_dialogues" in r, f"{p}: no key stage2.truncated_dialogues"
    assert r["stage2.truncated_dialogues"] == 0


def test_table2_has_the_validation_and_test_splits(rehearsal):
    t = json.loads((rehearsal["run_dir"] / "tables" / "table2.json").read_text())
    splits = {r.get("split_key") for r in t["rows"]}
    assert {"val", "test"} <= splits, splits
    for r in t["rows"]:
        if r.get("split_key") in ("val", "test"):
            assert r["micro_auc"]["n"] >= 1, r  # a measured cell, not an empty one


def test_table3_has_each_dataset_in_the_papers_order(rehearsal):
    """Per dataset: a `dataset` column whose rows name each dataset (ShanghaiTech first, as in the
    paper), or one column per dataset."""
    t = json.loads((rehearsal["run_dir"] / "tables" / "table3.json").read_text())
    keys = [k for k, _ in t["columns"]]
    if "dataset" in keys:
        order = list(dict.fromkeys(r["dataset"] for r in t["rows"] if r.get("dataset") not in (None, "all")))
    else:
        order = [d for d in ("shanghaitech", "ubnormal", "synthetic") if any(d in k for k in keys)]
        order.sort(key=lambda d: next(i for i, k in enumerate(keys) if d in k))
    assert order == ["shanghaitech", "ubnormal"], f"table3 datasets {order} (columns {t['columns']})"
    for r in t["rows"]:
        assert r["bleu4_target"]["n"] >= 1, r  # every dataset row measured


def test_feature_cache_is_bounded_by_the_clip_index(rehearsal):
    """Upper bound: every clip of the index cached once at its own frames, fp16, every configured
    block: ceil(T/2) x (H'/14) x (W'/14) x D x |resolved layers| x 2 bytes, H'xW' = smart_resize of the
    clip size under max_pixels; +10% and 64 KiB per clip for safetensors headers and file blocks.
    Caching whole source videos at the clip rate, or clips at a smaller size, stays under it."""
    from tvad.data.video import smart_resize
    from tvad.model.backbone import resolve_layers

    run_dir = rehearsal["run_dir"]
    cfg = _config(run_dir)
    vision = json.loads((REPO / BACKBONE / "config.json").read_text())["vision_config"]
    dims = max(vision["hidden_size"], vision["out_hidden_size"])
    layers = len(resolve_layers(cfg["backbone"]["layers"], vision))  # "auto": block 0 + full-attention blocks
    bound = 0
    for c in _clips(run_dir):
        h, w = smart_resize(*c["size"], max_pixels=cfg["backbone"]["max_pixels"])
        bound += math.ceil(len(c["frames"]) / 2) * (h // 14) * (w // 14) * dims * layers * 2
    bound = int(bound * 1.1) + 64 * 1024 * len(_clips(run_dir))
    size = _du(run_dir / "features")
    print(f"\nfeature cache {size / 1e6:.1f} MB on disk, bound {bound / 1e6:.1f} MB")
    assert 0 < size <= bound


def test_peak_memory_of_the_chain(rehearsal):
    u = rehearsal["usage"]
    peak = u["maxrss_kib"] * 1024  # Linux: KiB
    print(f"\nchain peak RSS {peak / 2**30:.2f} GiB (bound {RSS_BOUND_BYTES / 2**30:.0f} GiB), "
          f"wall {u['wall_s']:.0f} s")
    assert 0 < peak < RSS_BOUND_BYTES
