"""Runs the numbered notebooks (`notebooks/NN_*.ipynb`) in order with papermill.

Each notebook receives `preset`, `run_dir`, `overrides` and `force` in its `parameters` cell;
its executed copy is saved as `<run_dir>/notebooks/NN_*.ipynb`. The first failure stops the
chain with the notebook and the failing cell named. Notebooks skip work whose outputs already
exist in the run dir (unless `force`), so re-running the chain is cheap.

    tvad pipeline --preset cpu --run-dir runs/cpu [--from 02] [--to 03] [--force] [-p stage1.epochs=2]
    tvad pipeline --preset paper --launcher configs/accelerate/ddp.yaml     # several GPUs (docs/multi-gpu.md)

With `--launcher CONFIG` (an accelerate config file) the notebooks whose work is sharded across
processes (02 features + stage 1, 03 stage 2, 04 evaluation: `LAUNCHED`) each run as `accelerate
launch --config_file CONFIG -m tvad.cli pipeline --from NN --to NN ...`: every rank executes the
notebook (its kernel inherits the launcher's RANK / WORLD_SIZE), rank 0's executed copy goes to
`<run_dir>/notebooks/`, the others' to `<run_dir>/notebooks/rankN/`. 01 and 05 run in this process.
A rank that dies stops its launch (torchrun ends the others); the same command again resumes from
the caches and checkpoints the stages keep.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tvad import dist
from tvad.config import preset as make_preset
from tvad.io import REPO_ROOT

NOTEBOOK_DIR = REPO_ROOT / "notebooks"
_NUMBERED = re.compile(r"^(\d\d)_.+\.ipynb$")
# 00_quickstart is a walk-through of a trained run, not a step of the chain.
_NOT_IN_CHAIN = {"00"}
LAUNCHED = {"02", "03", "04"}  # notebooks run in every process of a `--launcher` launch (their work is sharded)
STAGE2 = "03"  # the notebook `--stage2-launcher` applies to


class PipelineError(RuntimeError):
    """A notebook of the chain failed, or the chain was asked for something impossible."""


@dataclass(frozen=True)
class NotebookStep:
    number: str  # "01"
    path: Path  # notebooks/01_dataset_construction.ipynb

    @property
    def stem(self) -> str:
        return self.path.stem


def chain(notebook_dir: Path = NOTEBOOK_DIR) -> list[NotebookStep]:
    """The chain's notebooks in numeric order (00 excluded)."""
    steps = []
    for p in sorted(Path(notebook_dir).glob("*.ipynb")):
        m = _NUMBERED.match(p.name)
        if m and m.group(1) not in _NOT_IN_CHAIN:
            steps.append(NotebookStep(m.group(1), p))
    return steps


def parameters_cell(path: Path) -> int:
    """Index of the single cell tagged `parameters`; a clear error if there is none or several."""
    try:
        nb = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise PipelineError(f"{path}: not a readable notebook ({e})") from None
    tagged = [i for i, c in enumerate(nb.get("cells", []))
              if "parameters" in c.get("metadata", {}).get("tags", [])]
    if len(tagged) != 1:
        raise PipelineError(f"{path}: needs exactly one cell tagged 'parameters', found {len(tagged)}")
    return tagged[0]


def _select(steps: list[NotebookStep], start: str | None, stop: str | None) -> list[NotebookStep]:
    def number(s: str | None) -> str | None:
        if s is None:
            return None
        key = s.strip()
        for st in steps:
            if key in (st.number, st.stem, st.path.name) or st.stem.startswith(key):
                return st.number
        raise PipelineError(f"no notebook {s!r} in the chain; have {[st.path.name for st in steps]}")

    a, b = number(start), number(stop)
    return [s for s in steps if (a is None or s.number >= a) and (b is None or s.number <= b)]


def parse_overrides(pairs: list[str] | None) -> dict[str, str]:
    """['stage1.epochs=2', ...] -> {'stage1.epochs': '2'}; values are parsed by the config."""
    out: dict[str, str] = {}
    for pair in pairs or []:
        if "=" not in pair:
            raise PipelineError(f"parameter {pair!r} must look like key=value")
        k, v = pair.split("=", 1)
        out[k.strip()] = v
    return out


def run_pipeline(preset: str = "cpu", run_dir: str | Path = "runs/cpu", start: str | None = None,
                 stop: str | None = None, force: bool = False, overrides: dict[str, Any] | None = None,
                 notebook_dir: Path = NOTEBOOK_DIR, kernel_name: str = "python3",
                 progress: bool = True, launchers: dict[str, str | None] | None = None) -> list[Path]:
    """Execute the chain; returns the executed notebooks' paths. Raises `PipelineError`.
    launchers: {"all": accelerate config for the `LAUNCHED` notebooks, "stage2": one for notebook 03
    only (default "all")}; none: every notebook in this process, as before."""
    import papermill as pm

    # Validate preset and override keys before anything runs (clear error, no traceback).
    try:
        make_preset(preset, overrides)
    except (KeyError, ValueError) as e:
        raise PipelineError(str(e.args[0] if e.args else e)) from None
    steps = _select(chain(notebook_dir), start, stop)
    if not steps:
        raise PipelineError(f"no notebooks to run in {notebook_dir}")
    for s in steps:
        parameters_cell(s.path)
    launchers = {k: v for k, v in (launchers or {}).items() if v}
    for role, cfg in launchers.items():  # before anything is written
        c = check_launcher(cfg, stage2_only=(role == "stage2"))
        n = int(c.num_processes or 1)
        grad = make_preset(preset, overrides).stage2.grad_accum
        if any(s.number == STAGE2 for s in steps) and (role == "stage2" or not launchers.get("stage2")) and grad % n:
            raise PipelineError(f"{cfg}: {n} processes, but stage2.grad_accum is {grad}: stage 2 keeps the global batch "
                                f"(batch_size x grad_accum) by running grad_accum / {n} micro-steps per process; "
                                f"give -p stage2.grad_accum=<a multiple of {n}> (a different global batch) or fewer processes")
    run_dir = Path(run_dir).resolve()
    out_dir = run_dir / "notebooks"
    if dist.launched() and not dist.is_main():  # one executed copy per rank
        out_dir = out_dir / f"rank{dist.rank()}"
        progress = False
    out_dir.mkdir(parents=True, exist_ok=True)
    params = {"preset": preset, "run_dir": str(run_dir), "overrides": dict(overrides or {}), "force": force}
    done: list[Path] = []
    for i, s in enumerate(steps, 1):
        out = out_dir / s.path.name
        t0 = time.time()
        if progress:
            print(f"[{i}/{len(steps)}] {s.path.name} ...", flush=True)
        cfg = (launchers.get("stage2") if s.number == STAGE2 else None) or launchers.get("all")
        if cfg and s.number in LAUNCHED:
            cmd, env = launch_command(cfg, s.number, preset, run_dir, force, overrides)
            if progress:
                print(f"[{i}/{len(steps)}] " + " ".join([f"{k}={v}" for k, v in env.items()] + cmd), flush=True)
            rc = subprocess.run(cmd, cwd=str(REPO_ROOT), env={**os.environ, **env}).returncode
            if rc:
                raise PipelineError(f"{s.path.name} failed under `accelerate launch --config_file {cfg}` (exit code {rc}; "
                                    f"each rank's executed copy is under {out_dir}); the same command again resumes "
                                    "from the feature cache and the checkpoints")
            if progress:
                print(f"[{i}/{len(steps)}] {s.path.name} done in {time.time() - t0:.1f}s -> {out}", flush=True)
            done.append(out)
            continue
        try:
            pm.execute_notebook(str(s.path), str(out), parameters=params, kernel_name=kernel_name,
                                cwd=str(REPO_ROOT), progress_bar=progress, log_output=False,
                                request_save_on_cell_execute=True)
        except pm.PapermillExecutionError as e:
            raise PipelineError(
                f"{s.path.name} failed in cell {e.exec_count} ({e.ename}: {e.evalue}); "
                f"executed copy with the traceback: {out}") from None
        if progress:
            print(f"[{i}/{len(steps)}] {s.path.name} done in {time.time() - t0:.1f}s -> {out}", flush=True)
        done.append(out)
    return done


def check_launcher(path: str | os.PathLike, stage2_only: bool = True):
    """An accelerate config file the launch can serve, as accelerate's loader reads it (its
    ClusterConfig); `PipelineError` naming the file for a missing / unreadable one, more GPU
    processes than this machine has GPUs (CPU processes are always allowed), or DeepSpeed without
    the deepspeed package or its config file; DeepSpeed where the config also serves notebooks 02 and 04
    (`stage2_only=False`: their own loops are not DeepSpeed engines)."""
    from accelerate.commands.config.config_args import load_config_from_file

    p = _config_path(path)
    if not p.is_file():
        raise PipelineError(f"--launcher {path}: no such accelerate config file (see configs/accelerate/)")
    try:
        c = load_config_from_file(str(p))
    except Exception as e:  # yaml / json errors, unknown keys
        raise PipelineError(f"{path}: not a readable accelerate config ({type(e).__name__}: "
                            f"{str(e).splitlines()[0] if str(e) else 'unreadable'})") from None
    kind = str(c.distributed_type)
    if kind.endswith("DEEPSPEED") and not stage2_only:
        raise PipelineError(f"--launcher {path}: DeepSpeed serves stage 2 only; give a DDP config as --launcher "
                            "and the DeepSpeed one as --stage2-launcher")
    try:
        dist.check_devices(int(c.num_processes or 1), cpu=bool(c.use_cpu) or kind.endswith("MULTI_CPU"))
    except dist.LaunchError as e:
        raise PipelineError(f"{path}: {e}") from None
    if kind.endswith("DEEPSPEED"):
        import importlib.util

        if importlib.util.find_spec("deepspeed") is None:
            raise PipelineError(f"{path}: DeepSpeed is asked but the deepspeed package is not installed "
                                "(pip install deepspeed, on a machine with CUDA)")
        f = (c.deepspeed_config or {}).get("deepspeed_config_file")
        if f and not (REPO_ROOT / f).is_file() and not Path(f).is_file():
            raise PipelineError(f"{path}: deepspeed_config_file {f} does not exist")
    return c


def _config_path(config: str | os.PathLike) -> Path:
    """An accelerate config path as given, else relative to the repository root."""
    p = Path(config)
    return p if p.is_file() or p.is_absolute() else REPO_ROOT / p


def launch_command(config: str | os.PathLike, step: str, preset: str, run_dir: str | os.PathLike, force: bool = False,
                   overrides: dict[str, Any] | None = None) -> tuple[list[str], dict[str, str]]:
    """(command, extra environment) of one notebook under `accelerate launch`: `--config_file config -m
    tvad.cli pipeline --from step --to step ...`. A CPU config (MULTI_CPU / use_cpu) is started the way
    accelerate starts several CPU processes without mpirun: through torchrun (`--multi_gpu`) with
    ACCELERATE_USE_CPU=1, which selects MULTI_CPU with gloo in each process (accelerate's own launcher
    would start one process for it)."""
    from accelerate.commands.config.config_args import load_config_from_file

    c = load_config_from_file(str(_config_path(config)))
    head = [sys.executable, "-m", "accelerate.commands.launch"]
    env: dict[str, str] = {}
    if bool(c.use_cpu) or str(c.distributed_type).endswith("MULTI_CPU"):
        head += ["--multi_gpu", "--num_processes", str(int(c.num_processes or 1)), "--num_machines", "1",
                 "--mixed_precision", str(c.mixed_precision or "no"), "--dynamo_backend", "no"]
        if c.main_process_port:
            head += ["--main_process_port", str(c.main_process_port)]
        env["ACCELERATE_USE_CPU"] = "1"
    else:
        head += ["--config_file", str(config)]
    cmd = head + ["-m", "tvad.cli", "pipeline", "--preset", preset, "--run-dir", str(run_dir), "--from", step, "--to", step]
    if force:
        cmd.append("--force")
    for k, v in (overrides or {}).items():
        cmd += ["-p", f"{k}={v}"]
    return cmd, env


def main_pipeline(args) -> int:
    try:
        run_pipeline(args.preset, args.run_dir, start=args.start, stop=args.stop, force=args.force,
                     overrides=parse_overrides(args.param),
                     launchers={"all": getattr(args, "launcher", None), "stage2": getattr(args, "stage2_launcher", None)})
    except PipelineError as e:
        print(f"tvad pipeline: error: {e}", file=sys.stderr)
        return 1
    return 0
