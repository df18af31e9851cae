"""`accelerate launch` of a test script in N CPU processes (gloo), the way a multi-GPU run is launched.

`--cpu` alone would start a single process (accelerate's simple launcher, no mpirun): several CPU
processes go through torchrun (`--multi_gpu`), ACCELERATE_USE_CPU=1 selecting MULTI_CPU with gloo.
HF_HOME points into the test's folder, so no user accelerate config file is read."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent


def accelerate_launch(tmp_path: Path, script: Path, *args: str, nproc: int = 2, extra: list[str] = (),
                      timeout: int = 900) -> subprocess.CompletedProcess:
    """Run `script args...` in `nproc` CPU processes under `accelerate launch`; the completed process."""
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
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout, cwd=REPO)
