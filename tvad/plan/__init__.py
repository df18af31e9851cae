"""`tvad plan`: everything a run needs checked, and its costs predicted, before any GPU hour.

    plan = make_plan(preset("paper", {"backbone.path": "/models/Qwen2.5-VL-7B-Instruct"}))
    print(format_plan(plan))      # a table, then one line per problem
    plan.problems                 # [] when the run can start

Checks (`tvad.plan.checks`): the model directory (config, safetensors headers against the config's
parameter count, the tokenizer's special-token ids, the processor) and the dataset trees (the clip
index notebook 01 would build: split files, videos, masks). Predictions (`tvad.plan.estimate`): clip
counts, the longest stage-2 sequence against `stage2.max_length`, feature-cache disk, per-stage GPU
memory, checkpoint disk and wall time on an H100-class GPU. docs/plan.md explains every number.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tvad.data.protocol import ClipIndex
from tvad.model.flops import H100_BF16_TFLOPS, H100_HBM_TBPS
from tvad.model.tvad import PROMPT_TOKENS
from tvad.plan.checks import ModelInfo, check_data, check_model
from tvad.plan.estimate import (
    DISK_GBPS,
    UTILISATION,
    Shapes,
    Stage,
    longest_sequence,
    predict,
)
from tvad.train.clips import load_records

GiB = 2**30


@dataclass
class Plan:
    """What `tvad plan` found: counts, predictions, notes and problems."""

    preset: str  # the config's name
    model: ModelInfo  # the model directory's contents
    clips: dict = field(default_factory=dict)  # {dataset: {split: clips}}
    frames: dict = field(default_factory=dict)  # {dataset: {split: clip frames}}
    sequence: dict = field(default_factory=dict)  # longest_sequence's record
    stages: list = field(default_factory=list)  # [Stage]
    assumptions: dict = field(default_factory=dict)  # peak TFLOP/s, utilisation, bandwidth
    notes: list = field(default_factory=list)  # facts worth knowing (skipped short videos, estimates)
    problems: list = field(default_factory=list)  # one line each; the run should not start while any

    def to_json(self) -> dict:
        m = self.model
        return {"preset": self.preset, "problems": self.problems, "notes": self.notes,
                "model": {"path": str(m.path) if m.path else None, "params": m.params, "weight_files": m.weight_files,
                          "weight_numel": m.weight_numel, "weight_bytes": m.weight_bytes, "weight_dtypes": m.weight_dtypes,
                          "processor": m.processor},
                "clips": self.clips, "frames": self.frames, "sequence": self.sequence,
                "stages": [{"name": s.name, "what": s.what, "memory_bytes": s.memory, "peak_bytes": s.peak,
                            "disk_bytes": s.disk, "flops": s.flops, "seconds": s.seconds} for s in self.stages],
                "totals": self.totals(), "assumptions": self.assumptions}

    def totals(self) -> dict:
        return {"peak_bytes": max((s.peak for s in self.stages), default=0),
                "disk_bytes": sum(s.disk for s in self.stages), "flops": sum(s.flops for s in self.stages),
                "seconds": sum(s.seconds for s in self.stages)}


def _corpus(run_dir: str | os.PathLike | None) -> tuple[dict, str | None]:
    """{"a": records, "b": records} of a run directory's corpus (phase_*.train.jsonl), or {}."""
    if not run_dir:
        return {}, None
    d = Path(run_dir) / "corpus"
    paths = {ph: d / f"phase_{ph}.train.jsonl" for ph in ("a", "b")}
    if not all(p.is_file() for p in paths.values()):
        return {}, f"{d}: no corpus yet (phase_a/phase_b.train.jsonl): the dialogue length is an estimate"
    return {ph: load_records(p) for ph, p in paths.items()}, None


def _tokenizer(path: Path):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(path), local_files_only=True)
    new = [t for t in PROMPT_TOKENS if t not in tok.get_vocab()]
    if new:
        tok.add_tokens(new, special_tokens=True)
    return tok


def make_plan(cfg: Any, run_dir: str | os.PathLike | None = None, peak_tflops: float = H100_BF16_TFLOPS,
              utilisation: float = UTILISATION, data: bool = True) -> Plan:
    """Check the model and datasets `cfg` names and predict the run's costs (see the module doc).
    `run_dir`: a run directory whose corpus (notebook 01's) gives exact dialogue lengths. `data=False`:
    the model alone (no clip counts, no predictions)."""
    info, problems = check_model(cfg.backbone.path)
    plan = Plan(cfg.name, info, problems=list(problems),
                assumptions={"peak_bf16_tflops": peak_tflops, "utilisation": utilisation,
                             "hbm_tbps": H100_HBM_TBPS, "disk_gbps": DISK_GBPS, "gpu": "H100-class (80 GB)"})
    if not data:
        return plan
    index, notes, dproblems = check_data(cfg.data, seed=cfg.seed)
    plan.notes += notes
    plan.problems += dproblems
    if index is not None:
        for c in index.clips:
            plan.clips.setdefault(c.source, {}).setdefault(c.split, 0)
            plan.clips[c.source][c.split] += 1
            plan.frames.setdefault(c.source, {}).setdefault(c.split, 0)
            plan.frames[c.source][c.split] += c.num_frames
        if not index.clips:
            plan.problems.append(f"dataset {cfg.data.dataset}: no clips under the clip protocol")
    if info.config is None or info.processor is None or index is None or not index.clips:
        plan.notes.append("no predictions: they need a readable model config and processor and the clip index")
        return plan
    try:  # a config the checkpoint cannot serve (ViT blocks beyond its depth, a budget below one token per patch)
        shape = Shapes(info, cfg)
        train = [c for c in index.clips if c.split == "train"]
        plan.sequence = longest_sequence(shape, cfg, train)
    except ValueError as e:  # BackboneError, FeatureCacheError are ValueErrors
        plan.problems.append(f"backbone {cfg.backbone.path}: {e.args[0] if e.args else e}")
        return plan
    try:
        corpus, note = _corpus(run_dir)
    except (OSError, ValueError) as e:  # a corpus file that breaks the schema names its file and line
        corpus, note = {}, None
        plan.problems.append(str(e.args[0]) if isinstance(e, ValueError) and e.args else str(e))
    if note:
        plan.notes.append(note)
    if corpus:
        try:
            tok = _tokenizer(info.path)
            plan.sequence = longest_sequence(shape, cfg, train, corpus["a"] + corpus["b"], tok)
        except Exception as e:  # a corpus the tokenizer cannot render: one line, the estimate stays
            plan.problems.append(f"{run_dir}: corpus dialogues could not be measured ({type(e).__name__}: {e})")
    plan.problems += plan.sequence.pop("problems")
    n = {"a": len(corpus["a"]), "b": len(corpus["b"]),
         "test": sum(c.split == "test" for c in index.clips)} if corpus else None
    try:
        plan.stages = predict(shape, cfg, index, plan.sequence, n, peak_tflops, utilisation)
    except ValueError as e:
        plan.problems.append(f"predictions: {e.args[0] if e.args else e}")
    if plan.sequence.get("shrunk"):
        plan.notes.append(f"{plan.sequence['shrunk']} clip(s) over stage2.max_length {cfg.stage2.max_length}: their "
                          "video shrinks to the room their dialogue leaves (tvad.train.clips.dialogue_budgets)")
    return plan


def _size(n: float) -> str:
    if n >= 1e12:
        return f"{n / 1e12:.2f} TB"
    if n >= 1e9:
        return f"{n / 1e9:.1f} GB"
    return f"{n / 1e6:.1f} MB"


def _time(s: float) -> str:
    return f"{s / 3600:.2f} h" if s >= 3600 else f"{s / 60:.1f} min" if s >= 60 else f"{s:.1f} s"


def format_plan(plan: Plan) -> str:
    """The plan as a readable table, then the notes, then one line per problem."""
    m, out = plan.model, [f"tvad plan: preset {plan.preset}"]
    if m.path:
        out.append(f"model      {m.path}")
    if m.params:
        dt = ", ".join(f"{k} {v:,}" for k, v in m.weight_dtypes.items())
        out.append(f"  parameters {m.params['total']:,} (vision {m.params['vision']:,}, language "
                   f"{m.params['language']:,}, lm_head {m.params['lm_head']:,}); safetensors {m.weight_numel:,} "
                   f"in {len(m.weight_files)} file(s), {_size(m.weight_bytes)} ({dt})")
    for ds, splits in plan.clips.items():
        out.append(f"clips      {ds}: " + ", ".join(f"{sp} {n} ({plan.frames[ds][sp]} frames)" for sp, n in splits.items()))
    s = plan.sequence
    if s:
        out.append(f"sequence   longest stage-2 {s['tokens']} tokens ({s['source']}: video {s['video']} + prompts "
                   f"{s['prompts']} + text {s['text']}; clip {s['clip']}) against max_length {s['max_length']}")
    if plan.stages:
        a = plan.assumptions
        out.append(f"predicted on an {a['gpu']} GPU at {a['peak_bf16_tflops']:g} TFLOP/s bf16 x {a['utilisation']:g} "
                   f"utilisation ({a['hbm_tbps']:g} TB/s for decoding, {a.get('disk_gbps', 2):g} GB/s cache reads):")
        w = max(len(x.name) for x in plan.stages)
        out.append(f"  {'stage'.ljust(w)}  {'GPU peak':>9}  {'disk':>9}  {'PFLOP':>9}  {'time':>9}  what")
        for x in plan.stages:
            out.append(f"  {x.name.ljust(w)}  {x.peak / GiB:>5.1f} GiB  {_size(x.disk):>9}  {x.flops / 1e15:>9.1f}  "
                       f"{_time(x.seconds):>9}  {x.what}")
        t = plan.totals()
        out.append(f"  {'total'.ljust(w)}  {t['peak_bytes'] / GiB:>5.1f} GiB  {_size(t['disk_bytes']):>9}  "
                   f"{t['flops'] / 1e15:>9.1f}  {_time(t['seconds']):>9}  (peak: the largest stage; one GPU)")
        big = max(plan.stages, key=lambda x: x.peak)
        out.append("  peak parts (" + big.name + "): " + ", ".join(f"{k} {v / GiB:.1f} GiB" for k, v in big.memory.items()))
    out += [f"note: {n}" for n in plan.notes]
    out += [f"problem: {p}" for p in plan.problems]
    out.append(f"{len(plan.problems)} problem(s)" if plan.problems else "no problems: ready to run")
    return "\n".join(out)


__all__ = ["Plan", "Stage", "ClipIndex", "make_plan", "format_plan"]
