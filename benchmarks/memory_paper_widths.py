"""Peak RSS and disk written per notebook stage at the 7B's widths: the `paper` preset's model
lifecycle on `tvad.model.widths`' checkpoint (random Qwen2.5-VL at the 7B's widths, real tokenizer).

Each stage runs in its own Python process, as a notebook runs in its own kernel, and reports its peak
RSS (ru_maxrss), the bytes it wrote (/proc/self/io write_bytes) and the bytes it left on disk:

  stage1   notebook 02's models: the backbone, the AHD with its class texts (eq. 2, 4), its checkpoint
  stage2   notebook 03: the real `tvad.steps.sft.run_stage2` over every variant (rae, no_rae, rae_oracle,
           backbone): build, LoRA phase A -> merge -> save, phase B -> merge -> save, release; then
           cell 9's `tvad.load` of the full model beside run_stage2's outputs
  eval     notebook 04: the heatmap step's backbone, the real `predict_dialogues` (no_ahd, backbone_one_shot)
           and `save_dialogue_example`

What is not run: the data (no clips, no feature cache, no gradient steps, no answers). Training is
stood in for by a LoRA adapter with random weights merged with peft exactly as `train_phase` merges
(so each phase changes the decoder's q/v tensors as training would); the corpus, clip and answer
functions are stubs. The figures are the model lifecycle's: what is loaded, held, merged and saved.
Activation memory of forward passes on data is not in them.

    flock /tmp/tvad-wide.lock python benchmarks/memory_paper_widths.py --wide /tmp/wide
    python benchmarks/memory_paper_widths.py --tiny --out -     # the tiny backbone (the test's mode)
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

from common import REPO, emit, machine, versions

STAGES = ("stage1", "stage2", "eval")
TARGET_EXTRA_GB = 3.0  # issue #18: notebook 03's peak RSS at most the checkpoint's size plus 3 GB


def _bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in Path(path).rglob("*") if f.is_file()) if Path(path).exists() else 0


def _written() -> int:
    try:
        with open("/proc/self/io") as f:
            return next(int(line.split()[1]) for line in f if line.startswith("write_bytes"))
    except (OSError, StopIteration):
        return -1


def _config(base: str, checkpoints: str):
    from tvad.config import preset

    return preset("paper").override({"backbone.path": str(base), "backbone.device": "cpu",
                                     "backbone.dtype": "bfloat16", "stage2.checkpoints": checkpoints,
                                     "stage2.oracle": True, "ahd.num_templates": 2})


def _record(i: int, split: str) -> dict:
    return {"id": f"b/{split}/{i}", "clip": {"name": f"{split}{i}", "fps": 2.0, "label": i % 2},
            "messages": [{"role": "system", "content": "You watch a fixed camera."},
                         {"role": "user", "content": "Is there any anomaly in this video?"},
                         {"role": "assistant", "content": "Yes." if i % 2 else "No."}]}


def _merge_phase(model, phase, train, val, clips, s2, out_dir, meta=None, **kw):
    """train_phase's merge and save, with a random LoRA adapter in place of the trained one."""
    from peft import LoraConfig, get_peft_model

    from tvad.model import save_model
    from tvad.train.stage2 import lora_layers

    layers = lora_layers(model, phase, s2.phase_b_last_layers)
    lcfg = LoraConfig(r=int(s2.lora_r), lora_alpha=int(s2.lora_alpha), target_modules=list(s2.lora_targets),
                      layers_to_transform=layers, layers_pattern="layers" if layers is not None else None,
                      init_lora_weights=False, task_type="CAUSAL_LM")
    peft_model = get_peft_model(model.qwen, lcfg)
    model.backbone.model = peft_model.merge_and_unload()
    del peft_model
    for p in model.backbone.model.parameters():
        p.requires_grad_(False)
    import torch

    with torch.no_grad():
        model.injector.token_rows.add_(0.01)  # trained token rows
    model.meta["phases"] = [*model.meta.get("phases", []), phase]
    save_model(model, Path(out_dir) / "final", {"phase": phase, **(meta or {})}, storage=s2.checkpoints)
    return SimpleNamespace(history=[], steps=0, seconds=0.0)


def _stage(name: str, work: Path, base: str, checkpoints: str) -> dict:
    """One stage in this process: {"peak_rss_gb", "written_gb", "on_disk_gb", "seconds", ...}."""
    import torch

    from tvad.model.ahd import save_ahd
    from tvad.model.backbone import free_memory, from_config
    from tvad.model.build import build_ahd

    torch.set_grad_enabled(False)
    cfg = _config(base, checkpoints)
    run = SimpleNamespace(config=cfg, dir=work / "run", write_results=lambda n, r: None, results=lambda n: {})
    w0, t0 = _written(), time.time()
    extra: dict = {}
    recs = {k: [_record(i, k.split(".")[1]) for i in range(2)] for k in ("a.train", "a.val", "b.train", "b.val")}
    test = [_record(i, "test") for i in range(2)]
    if name == "stage1":
        from tvad.train.stage1 import backbone_meta

        bb = from_config(cfg.backbone)
        layers = bb.resolve_layers(cfg.backbone.layers)
        ahd = build_ahd(bb, cfg.ahd, layers, cfg.data.dataset, cfg.backbone.text_encoder)
        save_ahd(ahd, run.dir / "stage1" / "best", backbone_meta(bb, cfg))
        out_dir = run.dir / "stage1"
    elif name == "stage2":
        from tvad import load
        from tvad.steps import sft

        stubs = {"corpus_records": lambda r: recs, "clip_split": lambda r, s: [],
                 "heldout_clips": lambda r: {"test": []}, "test_records": lambda *a, **k: test,
                 "ClipResolver": lambda videos: object(), "dialogue_budgets": lambda *a, **k: {},
                 "check_clips_sharded": lambda *a, **k: None, "truncated_dialogues": lambda *a, **k: [],
                 "train_phase": _merge_phase, "evaluate_model": lambda *a, **k: ({}, []),
                 "judgement_scores": lambda *a, **k: []}
        for k, v in stubs.items():
            if not hasattr(sft, k):  # a renamed step function would otherwise run for real, unnoticed
                raise SystemExit(f"tvad.steps.sft has no {k!r} to stand in for: update the benchmark's stubs")
            setattr(sft, k, v)
        from tvad.model.delta import base_hash

        t1 = time.time()
        base_hash(base)  # what the first delta save pays (memoised for the rest of the process)
        extra["base_sha256_s"] = round(time.time() - t1, 1)
        out = sft.run_stage2(run, progress=False, log=lambda s: None)
        extra["after_run_stage2_rss_gb"] = round(_rss() / 2**30, 2)
        model = load(out.final_dirs["rae"], device="cpu")  # notebook 03's cell 9
        out.clips.model = model
        extra["checkpoints"] = {str(p.relative_to(run.dir / "stage2")): round(_bytes(p) / 2**30, 3)
                                for p in sorted((run.dir / "stage2").glob("*/phase_*/final"))}
        out_dir = run.dir / "stage2"
    elif name == "eval":
        from tvad.evaluate import predict

        bb = from_config(cfg.backbone)  # predict_heatmaps' backbone (features, AHDs, decoder heatmaps)
        del bb
        free_memory()
        test_dir = run.dir / "stage2" / "test_corpus"
        test_dir.mkdir(parents=True, exist_ok=True)
        (test_dir / "phase_b.val.jsonl").write_text("".join(json.dumps(r) + "\n" for r in test))
        stubs = {"import_stage2_predictions": lambda r: {}, "corpus_records": lambda r: recs,
                 "load_records": lambda f: test,
                 "all_clips": lambda r: [], "ClipResolver": lambda videos: object(), "clip_budgets": lambda r: {},
                 "evaluate_model": lambda *a, **k: ({}, []),
                 "example_dialogue": lambda *a, **k: {"id": "x", "turns": [], "frames": torch.zeros(1, 2, 2, 3).numpy(),
                                                      "heat": torch.zeros(1, 2, 2).numpy()}}
        for k, v in stubs.items():
            setattr(predict, k, v)
        predict.predict_dialogues(run, force=True, progress=False, log=lambda s: None)
        free_memory()
        predict.save_dialogue_example(run, force=True)
        out_dir = run.dir / "predictions"
    else:
        raise SystemExit(f"unknown stage {name!r}; stages: {STAGES}")
    return {"peak_rss_gb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 2),
            "written_gb": round((_written() - w0) / 2**30, 3) if w0 >= 0 else None,
            "on_disk_gb": round(_bytes(out_dir) / 2**30, 3), "seconds": round(time.time() - t0, 1), **extra}


def _rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--wide", default=None, help="the 7B-wide checkpoint folder (written there if absent)")
    ap.add_argument("--tiny", action="store_true", help="the tiny backbone instead (the test's mode)")
    ap.add_argument("--checkpoints", default="delta", choices=("delta", "full"), help="stage2.checkpoints")
    ap.add_argument("--work", default=None, help="run folder (default: a temporary one, removed)")
    ap.add_argument("--stage", default=None, help=argparse.SUPPRESS)  # internal: run one stage, print JSON
    ap.add_argument("--base", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--out", default=None, help="JSON path ('-': print only)")
    a = ap.parse_args(argv)
    if a.stage:
        print("STAGE " + json.dumps(_stage(a.stage, Path(a.work), a.base, a.checkpoints)), flush=True)
        return {}
    if a.tiny:
        base = str(REPO / "assets" / "tiny-qwen2.5-vl")
    else:
        from tvad.model.widths import write_wide_checkpoint

        base = str(write_wide_checkpoint(a.wide or "/tmp/tvad-wide-7b"))
    size = _bytes(Path(base))
    tmp = None if a.work else tempfile.TemporaryDirectory(prefix="tvad-mem-")
    work = Path(a.work or tmp.name)
    stages = {}
    env = {**os.environ, "PYTHONPATH": f"{REPO}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    for s in STAGES:
        cmd = [sys.executable, str(Path(__file__).resolve()), "--stage", s, "--work", str(work), "--base", base,
               "--checkpoints", a.checkpoints]
        p = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=str(REPO))
        line = next((x for x in p.stdout.splitlines() if x.startswith("STAGE ")), None)
        if p.returncode or line is None:
            raise SystemExit(f"stage {s} failed ({p.returncode}):\n{p.stderr[-3000:]}")
        stages[s] = json.loads(line[6:])
        print(f"{s:7s} peak RSS {stages[s]['peak_rss_gb']:6.2f} GB  written {stages[s]['written_gb']} GB  "
              f"left on disk {stages[s]['on_disk_gb']} GB  ({stages[s]['seconds']} s)", file=sys.stderr)
    if tmp is not None:
        tmp.cleanup()
    ck_gb = size / 2**30
    rec = {"machine": machine(), "versions": versions("peft"), "backbone": "tiny" if a.tiny else "7B-wide",
           "checkpoint": base, "checkpoint_gb": round(ck_gb, 2), "checkpoints": a.checkpoints, "stages": stages,
           "target": {"notebook": "03 (stage2)", "limit_gb": round(ck_gb + TARGET_EXTRA_GB, 2),
                      "peak_rss_gb": stages["stage2"]["peak_rss_gb"],
                      "met": stages["stage2"]["peak_rss_gb"] <= ck_gb + TARGET_EXTRA_GB}}
    out = a.out if a.out is not None else (
        str(REPO / "benchmarks" / "results" / f"memory_paper_widths_{a.checkpoints}.json") if not a.tiny else "-")
    return emit(rec, "memory_paper_widths", out)


if __name__ == "__main__":
    main()
