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
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np
import pytest
import torch
from launch_fixtures import accelerate_launch

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
dist.shutdown()
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
    two processes run one each), 2 epochs over the 4 training dialogues, validation at steps 2 and 4,
    with the cpu preset's own parts on: the Yes/No token weights (tvad's weighted loss) and the RAE's
    own LR group (tvad's optimizer)."""
    import dataclasses

    from stage2_fixtures import CFG, TRAIN, VAL, _model, _store

    from tvad import dist
    from tvad.train import stage2
    from tvad.train.common import Killed

    cfg = dataclasses.replace(CFG, grad_accum=2, lora_dropout=0.0, epochs=2.0, yes_no_weight=5.0, rae_lr_scale=3.0)
    m = _model()
    res = stage2.train_phase(m, "a", TRAIN, VAL, _store(m), cfg, out, progress=False, log=lambda s: None)
    rows = m.injector.token_rows.detach().double()
    # the "no_rae" variant's phase B (fresh LoRA on the last layer, prompt rows only): every trainable
    # part gets a gradient in every step, as DDP without find_unused_parameters needs
    n = _model(use_rae=False)
    nb = stage2.train_phase(n, "b", TRAIN, VAL, _store(n), cfg, out / "no_rae", progress=False, log=lambda s: None)
    resumed = None
    if dist.launched():  # killed at its step-2 checkpoint on every rank, then resumed (the Trainer's RNG per rank)
        k = _model()
        with pytest.raises(Killed):
            stage2.train_phase(k, "a", TRAIN, VAL, _store(k), cfg, out / "resumed", progress=False, log=lambda s: None,
                               stop_after_steps=2)
        k = _model()
        rk = stage2.train_phase(k, "a", TRAIN, VAL, _store(k), cfg, out / "resumed", progress=False, log=lambda s: None)
        resumed = {"loss": [h["loss"] for h in rk.history if "loss" in h], "from": Path(rk.resumed_from).name,
                   "rae_sum": float(sum(p.double().sum() for p in k.rae.parameters()))}
    return {"no_rae_loss": [h["loss"] for h in nb.history if "loss" in h], "resumed": resumed,
            "loss": [h["loss"] for h in res.history if "loss" in h],
            "eval_loss": [h["eval_loss"] for h in res.history if "eval_loss" in h],
            "steps": res.steps, "rows_sum": float(rows.sum()), "rae_sum": float(sum(p.double().sum() for p in m.rae.parameters())),
            "final": (res.final_dir / "tvad.json").exists(), "history_file": (out / "history.json").exists()}


def test_two_processes_match_one_process(tmp_path):
    script = tmp_path / "launched.py"
    script.write_text(LAUNCHED)
    p = accelerate_launch(tmp_path, script, str(tmp_path / "mp"), str(HERE))
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
    # killed at step 2 under 2 processes and resumed: the uninterrupted 2-process run's losses and weights
    assert a["resumed"]["from"] == "checkpoint-2" and a["resumed"]["loss"] == a["loss"], a["resumed"]
    assert np.isclose(a["resumed"]["rae_sum"], a["rae_sum"], rtol=RTOL)
    assert len(a["no_rae_loss"]) == 4 and np.allclose(a["no_rae_loss"], b["no_rae_loss"], rtol=RTOL, atol=0)
    assert a["final"] and a["history_file"]  # rank 0 wrote the checkpoint and history (one folder, shared)
    assert not list((tmp_path / "mp").rglob("*.tmp*"))
    print("stage-2 losses, 2 processes:", a["loss"], "1 process:", b["loss"])



KILLED = r'''
"""Run by `accelerate launch` (test_multiprocess.py): `die`: rank 1 exits after extracting two clips."""
import json, os, sys
from pathlib import Path
sys.path.insert(0, sys.argv[2])
from test_multiprocess import kill_videos
from tvad import dist
from tvad.model.tiny import build_tiny
from tvad.train.distributed import prepare_sharded
from tvad.train.features import FeatureCache

root, die = Path(sys.argv[1]), sys.argv[3] == "die"
vids = kill_videos(root / "videos")
cache = FeatureCache(root / "cache", build_tiny(seed=0, max_pixels=112 * 112), [0, 3], memory_bytes=0)
real = cache.ensure
def ensure(*a, **kw):
    e = real(*a, **kw)
    if die and dist.rank() == 1 and cache.misses == 2:
        os._exit(3)  # a rank dying mid-extraction, two of its clips written
    return e
cache.ensure = ensure
samples = prepare_sharded(vids, cache, progress=False)
(root / f"rank{dist.rank()}.json").write_text(json.dumps({"misses": cache.misses, "n": len(samples)}))
dist.shutdown()
'''


def kill_videos(d: Path, k: int = 8) -> list:
    """k tiny videos, written once (by the first caller), then the same records for every caller."""
    from test_train_features import Boxed, make_videos

    if not d.exists():
        return make_videos(d, k=k, n=4, size=(48, 64))
    return [Boxed(f"v{i}", d / f"v{i}.mp4", 4, 8.0, (48, 64), anomaly_rows=np.array([[1, 2, 5]]) if i % 2 == 0 else None,
                  split="train") for i in range(k)]


def test_a_rank_dying_mid_extraction_loses_nothing(tmp_path):
    """Rank 1 of 2 dies after two of its four clips: the launch fails (torchrun ends rank 0, which
    waits for the missing clips); the relaunch extracts only the four never written, and every rank
    reads all eight."""
    script = tmp_path / "killed.py"
    script.write_text(KILLED)
    kill_videos(tmp_path / "run" / "videos")  # written before the launch (the records' mtimes are the cache keys)
    p = accelerate_launch(tmp_path, script, str(tmp_path / "run"), str(HERE), "die")
    assert p.returncode != 0 and not (tmp_path / "run" / "rank0.json").exists()
    cached = list((tmp_path / "run" / "cache").rglob("*.safetensors"))
    assert 2 <= len(cached) <= 6, cached  # rank 1's two, and what rank 0 finished of its four before the end
    p = accelerate_launch(tmp_path, script, str(tmp_path / "run"), str(HERE), "resume")
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-6000:]
    ranks = [json.loads((tmp_path / "run" / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert [r["n"] for r in ranks] == [8, 8]
    assert sum(r["misses"] for r in ranks) == 8 - len(cached)
    assert len(list((tmp_path / "run" / "cache").rglob("*.safetensors"))) == 8


def test_single_process_helpers_are_the_identity(monkeypatch):
    from tvad import dist

    for k in ("WORLD_SIZE", "RANK", "LOCAL_RANK"):
        monkeypatch.delenv(k, raising=False)
    assert not dist.launched() and dist.is_main() and dist.rank() == 0
    assert dist.shard([3, 1, 2]) == [3, 1, 2] and dist.gather_shards([5, 6], 2) == [5, 6] and dist.broadcast(7) == 7
    assert dist.device("cpu") == torch.device("cpu")
    assert dist.device("auto") == torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dist.barrier()
    dist.wait_until(lambda: False, "never polled without a launcher")
    dist.shutdown()


def test_launcher_checks(tmp_path, monkeypatch, capsys):
    """The shipped accelerate configs parse with accelerate's own loader and name the right keys; a
    config asking for more GPU processes than GPUs, a missing or garbled file, DeepSpeed without its
    package: one PipelineError naming the file."""
    from accelerate.commands.config.config_args import load_config_from_file
    from accelerate.utils.deepspeed import HfDeepSpeedConfig

    from tvad import dist
    from tvad.pipeline import PipelineError, check_launcher, launch_command, run_pipeline

    cfgs = {f: load_config_from_file(str(REPO / "configs" / "accelerate" / f"{f}.yaml"))
            for f in ("ddp", "ddp_cpu", "deepspeed_zero2")}
    assert str(cfgs["ddp"].distributed_type).endswith("MULTI_GPU") and not cfgs["ddp"].use_cpu
    assert str(cfgs["ddp_cpu"].distributed_type).endswith("MULTI_CPU") and cfgs["ddp_cpu"].use_cpu
    assert all(c.mixed_precision in ("no", None) for c in cfgs.values())  # stage 2 turns bf16 on itself
    ds = cfgs["deepspeed_zero2"]
    assert str(ds.distributed_type).endswith("DEEPSPEED")
    hf = HfDeepSpeedConfig(str(REPO / ds.deepspeed_config["deepspeed_config_file"]))
    assert hf.is_zero2() and not hf.is_zero3() and "optimizer" not in hf.config  # tvad's own optimizer groups
    assert all(hf.get_value(k) == "auto" for k in ("train_micro_batch_size_per_gpu", "gradient_accumulation_steps"))

    check_launcher(REPO / "configs" / "accelerate" / "ddp_cpu.yaml")  # CPU processes: always allowed
    gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
    with pytest.raises(PipelineError, match=r"ddp.yaml: .*8 .*(no CUDA GPU|has \d+ CUDA GPU)"):
        monkeypatch.setattr(torch.cuda, "device_count", lambda: min(gpus, 2))
        check_launcher(REPO / "configs" / "accelerate" / "ddp.yaml")
    with pytest.raises(dist.LaunchError, match="4 processes asked, but this machine has 2"):
        monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
        monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
        dist.check_devices(4)
    dist.check_devices(2)  # as many processes as GPUs: fine
    monkeypatch.undo()
    with pytest.raises(PipelineError, match="no such accelerate config"):
        check_launcher(tmp_path / "nope.yaml")
    from tvad.cli import main as cli_main  # the documented command: one line, exit code 1, nothing run
    assert cli_main(["pipeline", "--run-dir", str(tmp_path / "cli"), "--launcher", str(tmp_path / "nope.yaml")]) == 1
    assert "tvad pipeline: error: --launcher " in capsys.readouterr().err and not (tmp_path / "cli" / "notebooks").exists()
    bad = tmp_path / "bad.yaml"
    bad.write_text("distributed_type: [unclosed\n")
    with pytest.raises(PipelineError, match="bad.yaml: not a readable accelerate config"):
        check_launcher(bad)
    import importlib.util
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)  # a machine with 8 GPUs: only DeepSpeed is checked
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 8)
    if importlib.util.find_spec("deepspeed") is None:  # here: not installed (docs/multi-gpu.md)
        with pytest.raises(PipelineError, match="deepspeed_zero2.yaml: DeepSpeed is asked but the deepspeed package"):
            check_launcher(REPO / "configs" / "accelerate" / "deepspeed_zero2.yaml")
    else:  # installed: the config and its DeepSpeed file are accepted
        assert str(check_launcher(REPO / "configs" / "accelerate" / "deepspeed_zero2.yaml").distributed_type).endswith("DEEPSPEED")
    monkeypatch.undo()
    cmd, env = launch_command("configs/accelerate/ddp.yaml", "03", "paper", "/r", True, {"stage2.epochs": "1"})
    assert cmd[1:] == ["-m", "accelerate.commands.launch", "--config_file", "configs/accelerate/ddp.yaml", "-m", "tvad.cli",
                       "pipeline", "--preset", "paper", "--run-dir", "/r", "--from", "03", "--to", "03", "--force",
                       "-p", "stage2.epochs=1"] and env == {}

    # a launch that fails (a rank died): a PipelineError saying how to resume; 01 is not launched
    calls = []
    monkeypatch.setattr("tvad.pipeline.subprocess.run", lambda cmd, **kw: calls.append(cmd) or
                        subprocess.CompletedProcess(cmd, 1))
    with pytest.raises(PipelineError, match=r"02_ahd_training.ipynb failed under `accelerate launch .*exit code 1.*resumes"):
        run_pipeline("cpu", tmp_path / "run", start="02", stop="02", progress=False,
                     launchers={"all": str(REPO / "configs" / "accelerate" / "ddp_cpu.yaml")})
    assert len(calls) == 1 and calls[0][-4:] == ["--from", "02", "--to", "02"]
    with pytest.raises(PipelineError, match=r"ddp_cpu.yaml: 2 processes, but stage2.grad_accum is 1.*-p stage2.grad_accum"):
        run_pipeline("cpu", tmp_path / "run", start="03", stop="03", progress=False, overrides={"stage2.grad_accum": "1"},
                     launchers={"all": str(REPO / "configs" / "accelerate" / "ddp_cpu.yaml")})
    assert len(calls) == 1  # refused before anything was launched
    with pytest.raises(PipelineError, match="deepspeed_zero2.yaml: DeepSpeed serves stage 2 only"):
        run_pipeline("cpu", tmp_path / "run", start="02", stop="02", progress=False,
                     launchers={"all": str(REPO / "configs" / "accelerate" / "deepspeed_zero2.yaml")})


def test_stage2_global_batch_under_aaccelerate_launch(monkeypatch, tmp_path):
    """Under N processes each runs grad_accum / N micro-steps (the global batch of the config); a
    grad_accum N does not divide is a ConfigError."""
    import dataclasses

    from stage2_fixtures import CFG

    from tvad.config import ConfigError
    from tvad.train import stage2

    monkeypatch.setattr(stage2.dist, "world_size", lambda: 2)
    args = stage2.sft_config(dataclasses.replace(CFG, grad_accum=4), tmp_path, False, False)
    assert args.gradient_accumulation_steps == 2
    with pytest.raises(ConfigError, match="grad_accum 3 is not a multiple of the 2 launched processes"):
        stage2.sft_config(dataclasses.replace(CFG, grad_accum=3), tmp_path, False, False)
    monkeypatch.setattr(stage2.dist, "world_size", lambda: 1)
    assert stage2.sft_config(dataclasses.replace(CFG, grad_accum=3), tmp_path, False, False).gradient_accumulation_steps == 3


NOTEBOOK_LAUNCHED = r'''
"""Run by `accelerate launch` (test_multiprocess.py): the chain's runner on a one-notebook chain."""
import sys
from pathlib import Path
from tvad.pipeline import run_pipeline
run_pipeline("cpu", Path(sys.argv[1]), notebook_dir=Path(sys.argv[2]), progress=False)
'''


def _probe_notebook(path: Path) -> None:
    """A chain notebook whose kernel joins the launch's process group and records what it sees."""
    import nbformat

    nb = nbformat.v4.new_notebook()
    params = nbformat.v4.new_code_cell('preset = "cpu"\nrun_dir = "."\noverrides = {}\nforce = False')
    params.metadata["tags"] = ["parameters"]
    nb.cells = [params, nbformat.v4.new_code_cell(
        "import json, os\nfrom pathlib import Path\nfrom tvad import dist\n"
        "seen = dist.gather_shards([dist.rank()], dist.world_size())  # a collective inside the kernel\n"
        "Path(run_dir, f'probe{dist.rank()}.json').write_text(json.dumps({'world': dist.world_size(), 'seen': seen}))")]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, str(path))


def test_the_cpu_launcher_config_starts_two_gloo_processes(tmp_path):
    """`tvad pipeline --launcher configs/accelerate/ddp_cpu.yaml`'s command (up to its `-m tvad.cli`)
    starts 2 processes that form a gloo group (accelerate's own launcher would start one for a
    MULTI_CPU config without mpirun)."""
    from tvad.pipeline import launch_command

    cmd, env = launch_command("configs/accelerate/ddp_cpu.yaml", "02", "cpu", tmp_path / "run")
    assert env == {"ACCELERATE_USE_CPU": "1"} and cmd[cmd.index("--num_processes") + 1] == "2"
    probe = tmp_path / "probe.py"
    probe.write_text("import json, os, sys, torch\nfrom tvad import dist\n"
                     "seen = dist.gather_shards([dist.rank()], dist.world_size())\n"
                     "open(os.path.join(sys.argv[1], f'r{dist.rank()}.json'), 'w').write(json.dumps("
                     "{'seen': seen, 'backend': torch.distributed.get_backend_config()}))\ndist.shutdown()\n")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    head = cmd[:cmd.index("-m", 3)]
    head[head.index("--num_machines"):head.index("--num_machines")] = ["--main_process_port", str(port)]
    p = subprocess.run(head + [str(probe), str(tmp_path)], capture_output=True, text=True, timeout=600, cwd=REPO,
                       env={**os.environ, **env, "OMP_NUM_THREADS": "1", "HF_HOME": str(tmp_path / "hf"),
                            "PYTHONPATH": str(REPO)})
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-5000:]
    got = [json.loads((tmp_path / f"r{r}.json").read_text()) for r in (0, 1)]
    assert all(g["seen"] == [0, 1] and "gloo" in g["backend"] for g in got), got


def test_a_notebook_runs_in_every_process_of_aaccelerate_launch(tmp_path):
    """What `--launcher` relies on: under `accelerate launch` the chain's runner executes the notebook
    on every rank, each kernel inherits the rank and joins the process group, rank 0's executed copy
    goes to <run_dir>/notebooks/, the others' to notebooks/rankN/."""
    _probe_notebook(tmp_path / "nbs" / "02_probe.ipynb")
    script = tmp_path / "chain.py"
    script.write_text(NOTEBOOK_LAUNCHED)
    run = tmp_path / "run"
    p = accelerate_launch(tmp_path, script, str(run), str(tmp_path / "nbs"))
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-6000:]
    probes = [json.loads((run / f"probe{r}.json").read_text()) for r in (0, 1)]
    assert probes == [{"world": 2, "seen": [0, 1]}] * 2
    assert (run / "notebooks" / "02_probe.ipynb").is_file() and (run / "notebooks" / "rank1" / "02_probe.ipynb").is_file()
    assert not (run / "notebooks" / "rank0").exists()


def test_each_rank_of_a_gpu_launch_gets_its_own_gpu(monkeypatch):
    """Rank 1 of a 2-GPU launch (simulated: the environment torchrun sets, accelerate's state and the
    GPU count stubbed): "auto", "cuda" and "cuda:0" are cuda:1, an explicit other GPU or more processes
    than GPUs a LaunchError, "cpu" stays cpu."""
    from types import SimpleNamespace

    from tvad import dist

    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("LOCAL_RANK", "1")
    monkeypatch.setattr(dist, "_state", lambda: SimpleNamespace(device=torch.device("cuda", int(os.environ["LOCAL_RANK"]))))
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert dist.launched() and not dist.is_main() and dist.shard(range(5)) == [1, 3]
    assert [dist.device(d) for d in ("auto", "cuda", "cuda:0")] == [torch.device("cuda", 1)] * 3
    assert dist.device("cpu") == torch.device("cpu")
    with pytest.raises(dist.LaunchError, match="'cuda:1' under a 2-process launch: every rank would use"):
        dist.device("cuda:1")
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    with pytest.raises(dist.LaunchError, match="2 processes asked, but this machine has 1 CUDA GPU"):
        dist.device("cuda")
