"""Benchmark: notebooks 02-04's step functions in 2 CPU processes (gloo) against 1, on a shrunken cpu preset.

    .venv/bin/python benchmarks/multiprocess_steps.py [--dir /tmp/tvad-mp] [--nproc 2]

Builds notebook 01's outputs once (3 train / 2 validation / 2 test synthetic videos) into two run dirs,
runs `run_stage1`, `run_stage2` and `run_evaluation` there: in one process, and under
`ACCELERATE_USE_CPU=1 accelerate launch --multi_gpu --num_processes N` (what `tvad pipeline --launcher
configs/accelerate/ddp_cpu.yaml` starts). Prints the result keys that differ beyond 1e-5 relative, the
per-step stage-2 losses of both, and the wall times (also written to benchmarks/results/multiprocess_steps.json).
LoRA dropout is 0 (each rank would draw its own masks).
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
OVERRIDES = {"data.num_videos": json.dumps({"pretrain": 0, "train": 3, "validation": 2, "test": 2, "test_seen": 0}),
             "stage1.epochs": "1", "stage2.epochs": "1", "eval.seeds": "[0]", "stage2.grad_accum": "2",
             "stage2.lora_dropout": "0"}
STEP = r'''
import json, sys
from tvad.run import open_run
run = open_run(sys.argv[1], "cpu", json.loads(sys.argv[3]))
if sys.argv[2] == "01":
    from tvad.steps.dataset import run_dataset
    run_dataset(run, log=lambda s: None)
elif sys.argv[2] == "02":
    from tvad.steps.ahd import run_stage1
    run_stage1(run, progress=False, log=lambda s: None)
elif sys.argv[2] == "03":
    from tvad.steps.sft import run_stage2
    run_stage2(run, progress=False, log=lambda s: None)
else:
    from tvad.steps.evaluation import run_evaluation
    run_evaluation(run, progress=False, log=lambda s: None)
from tvad import dist
dist.shutdown()
'''


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--dir", default="/tmp/tvad-mp")
    ap.add_argument("--nproc", type=int, default=2)
    a = ap.parse_args()
    root = Path(a.dir)
    root.mkdir(parents=True, exist_ok=True)
    script = root / "step.py"
    script.write_text(STEP)
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1",
           "HF_HOME": str(root / "hf")}
    ov = json.dumps({**OVERRIDES, "data.root": str(root / "data")})
    seconds: dict[str, float] = {}
    for name in ("one", "launched"):
        subprocess.run([sys.executable, str(script), str(root / name), "01", ov], env=env, check=True, cwd=REPO)
        for step in ("02", "03", "04"):
            cmd = [sys.executable, str(script), str(root / name), step, ov]
            if name == "launched":
                with socket.socket() as s:
                    s.bind(("127.0.0.1", 0))
                    port = s.getsockname()[1]
                cmd = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", str(a.nproc),
                       "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
                       "--main_process_port", str(port)] + cmd[1:]
            t = time.time()
            subprocess.run(cmd, env={**env, **({"ACCELERATE_USE_CPU": "1"} if name == "launched" else {})},
                           check=True, cwd=REPO)
            seconds[f"{name}.{step}"] = round(time.time() - t, 1)
    out: dict = {"seconds": seconds, "differ": {}, "stage2_losses": {}}
    for stem in ("02_ahd_training", "03_rae_sft", "04_evaluation"):
        x = json.loads((root / "launched" / "results" / f"{stem}.json").read_text())
        y = json.loads((root / "one" / "results" / f"{stem}.json").read_text())
        for k, v in y.items():
            if k.startswith("timing") or k.endswith(".seconds") or k.startswith("stage1.cache"):
                continue
            w = x.get(k)
            same = w == v or (isinstance(v, float) and isinstance(w, float)
                              and (abs(w - v) <= 1e-5 * max(1.0, abs(v)) or (v != v and w != w)))
            if not same:
                out["differ"][k] = [w, v]
    for variant in ("rae", "no_rae"):
        for ph in ("a", "b"):
            rows = []
            for name in ("launched", "one"):
                log = json.loads((root / name / "stage2" / variant / f"phase_{ph}" / "history.json").read_text())["log"]
                rows.append([round(h["loss"], 6) for h in log if "loss" in h])
            out["stage2_losses"][f"{variant}.{ph}"] = {"launched": rows[0], "one": rows[1]}
    print(json.dumps(out, indent=1))
    res = REPO / "benchmarks" / "results"
    res.mkdir(exist_ok=True)
    (res / "multiprocess_steps.json").write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
