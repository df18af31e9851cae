"""Several processes (docs/multi-gpu.md): a real `accelerate launch` of 2 CPU processes (gloo) on the
tiny model, against the same calls in this one process: the feature cache and the clip store filled
once across ranks, evaluation sharded and gathered, stage 2 (TRL SFTTrainer + LoRA + the injection
hook) with the same losses at the same global batch; and the launcher's checks on one process.

Tolerance of the stage-2 losses: relative 1e-5. The two runs see the same dialogues in the same
optimizer steps with the same initial weights (LoRA dropout 0, so no per-process RNG enters); they
differ only in the order of fp32 sums (one process accumulates two micro-batches' gradients, two
processes all-reduce them; the token normaliser is gathered across ranks), which moves a loss by a
few ulps (~1e-7 relative) per step and compounds over the steps here to well under 1e-5.
"""

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np
import pytest
import torch

pytestmark = pytest.mark.usefixtures("one_torch_thread")

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
RTOL = 1e-5  # see the module docstring

LAUNCHED = r'''
"""Run by `accelerate launch` (test_multiprocess.py), once per rank."""
import json, os, sys
from pathlib import Path
sys.path.insert(0, sys.argv[2])
import torch
from test_multiprocess import case_features, case_stage2, case_eval
from tvad import dist

out = Path(sys.argv[1])
rec = {"rank": dist.rank(), "world": dist.world_size(), "device_cpu": str(dist.device("cpu"))}
try:
    dist.device("cuda:1")
    rec["explicit_gpu"] = "accepted"
except dist.LaunchError as e:
    rec["explicit_gpu"] = str(e)
rec["features"] = case_features(out / "features")
rec["eval"] = case_eval(out / "eval_clips")
rec["stage2"] = case_stage2(out / "stage2")
rec["backend"] = torch.distributed.get_backend_config()
(out / f"rank{dist.rank()}.json").write_text(json.dumps(rec, default=float))
'''


def case_features(root: Path) -> dict:
    """prepare_sharded over 4 tiny videos, one of them already in the cache (as a killed rank leaves
    its finished clips): {"misses": clips extracted by this process, "sums": per video feature sums}."""
    from test_train_features import make_videos

    from tvad import dist
    from tvad.model.tiny import build_tiny
    from tvad.train.distributed import prepare_sharded
    from tvad.train.features import FeatureCache
    from tvad.train.stage1 import prepare

    # rank 0 writes the videos (the cache keys hold their mtimes), every rank gets its records
    vids = dist.broadcast(make_videos(root / "videos", k=4, n=4, size=(48, 64)) if dist.is_main() else None)
    bb = build_tiny(seed=0, max_pixels=112 * 112)
    cache = FeatureCache(root / "cache", bb, [0, 3], memory_bytes=0)
    if dist.is_main():
        prepare(vids[:1], cache, progress=False)  # the "finished before the kill" clip
    dist.barrier()
    m0 = cache.misses
    samples = prepare_sharded(vids, cache, progress=False)
    return {"misses": cache.misses - m0,
            "sums": [float(sum(s.features[l].double().sum() for l in (0, 3))) for s in samples]}


def case_eval(root: Path) -> dict:
    """Dialogue answers and judgement scores of the untrained tiny model (the same weights on every
    rank), through a clip store filled by check_clips_sharded."""
    from stage2_fixtures import TRAIN, VAL, _model, _store

    from tvad.evaluate.dialogues import evaluate_model, judgement_scores
    from tvad.train.distributed import check_clips_sharded

    m = _model()
    store = _store(m, root)
    check_clips_sharded(TRAIN + VAL, store)
    computed = store.computed
    metrics, preds = evaluate_model(m, TRAIN[:3], store, max_new_tokens=4)
    return {"computed": computed, "preds": preds, "metrics": metrics,
            "judgements": judgement_scores(m, TRAIN[:3], store)}


def case_stage2(out: Path) -> dict:
    """Phase A of stage 2 at global batch 2 (grad_accum 2: one process accumulates 2 micro-batches,
    two processes run one each), 2 epochs over the 4 training dialogues, validation at steps 2 and 4."""
    import dataclasses

    from stage2_fixtures import CFG, TRAIN, VAL, _model, _store
    from tvad.train import stage2

    cfg = dataclasses.replace(CFG, grad_accum=2, lora_dropout=0.0, epochs=2.0)
    m = _model()
    res = stage2.train_phase(m, "a", TRAIN, VAL, _store(m), cfg, out, progress=False, log=lambda s: None)
    rows = m.injector.token_rows.detach().double()
    return {"loss": [h["loss"] for h in res.history if "loss" in h],
            "eval_loss": [h["eval_loss"] for h in res.history if "eval_loss" in h],
            "steps": res.steps, "rows_sum": float(rows.sum()), "rae_sum": float(sum(p.double().sum() for p in m.rae.parameters())),
            "final": (res.final_dir / "tvad.json").exists(), "history_file": (out / "history.json").exists()}


def _launch(tmp_path: Path, script: Path, *args: str, nproc: int = 2, extra: list[str] = ()) -> subprocess.CompletedProcess:
    launcher = Path(sys.executable).with_name("accelerate")
    assert launcher.exists(), f"no accelerate launcher beside {sys.executable}"
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "ACCELERATE_USE_CPU": "1", "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1",
           "HF_HOME": str(tmp_path / "hf"), "PYTHONPATH": f"{REPO}{os.pathsep}{HERE}"}
    cmd = [str(launcher), "launch", "--multi_gpu", "--num_processes", str(nproc), "--num_machines", "1",
           "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", str(port), *extra,
           str(script), *args]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900, cwd=REPO)


def test_two_processes_match_one_process(tmp_path):
    script = tmp_path / "launched.py"
    script.write_text(LAUNCHED)
    p = _launch(tmp_path, script, str(tmp_path / "mp"), str(HERE))
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-6000:]
    ranks = [json.loads((tmp_path / "mp" / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert [(r["rank"], r["world"]) for r in ranks] == [(0, 2), (1, 2)] and all("gloo" in r["backend"] for r in ranks), ranks
    assert all(r["device_cpu"] == "cpu" and "every rank would use" in r["explicit_gpu"] for r in ranks), ranks

    # the same calls in this one process
    torch.set_num_threads(1)
    sp = {"features": case_features(tmp_path / "sp" / "features"), "eval": case_eval(tmp_path / "sp" / "eval_clips"),
          "stage2": case_stage2(tmp_path / "sp" / "stage2")}

    # features: the 3 clips not yet cached extracted once across the ranks, every rank reads all 4
    assert sp["features"]["misses"] == 3
    assert sorted(r["features"]["misses"] for r in ranks) == [1, 2]
    for r in ranks:
        assert np.allclose(r["features"]["sums"], sp["features"]["sums"], rtol=0, atol=0)
    # clip store: the 6 clips encoded once across the ranks; answers and judgements gathered in order
    assert sum(r["eval"]["computed"] for r in ranks) == sp["eval"]["computed"] == 6
    for r in ranks:
        assert r["eval"]["preds"] == sp["eval"]["preds"] and r["eval"]["judgements"] == sp["eval"]["judgements"]
        assert json.dumps(r["eval"]["metrics"]) == json.dumps(sp["eval"]["metrics"])  # nan-aware
    # stage 2: the same losses at the same global batch, on both ranks
    a, b = ranks[0]["stage2"], sp["stage2"]
    assert a["steps"] == b["steps"] == 4 and len(a["loss"]) == len(b["loss"]) == 4 and len(b["eval_loss"]) == 2
    assert np.allclose(a["loss"], b["loss"], rtol=RTOL, atol=0), (a["loss"], b["loss"])
    assert np.allclose(a["eval_loss"], b["eval_loss"], rtol=RTOL, atol=0), (a["eval_loss"], b["eval_loss"])
    assert np.allclose([a["rows_sum"], a["rae_sum"]], [b["rows_sum"], b["rae_sum"]], rtol=RTOL)
    assert ranks[1]["stage2"]["loss"] == a["loss"] and ranks[1]["stage2"]["rae_sum"] == a["rae_sum"]
    assert a["final"] and a["history_file"]  # rank 0 wrote the checkpoint and history (one folder, shared)
    assert not list((tmp_path / "mp").rglob("*.tmp*"))
    print("stage-2 losses, 2 processes:", a["loss"], "1 process:", b["loss"])
