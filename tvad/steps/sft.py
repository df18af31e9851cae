"""Notebook 03 (stage 2, RAE SFT) in one call: the corpora and held-out dialogues, then for each
variant (the full model "rae", "no_rae", with `stage2.oracle` "rae_oracle", and the untrained
"backbone") phase A -> merge -> phase B -> merge, the dialogue metrics on every held-out split and
the judgement scores; results/03_rae_sft.json.

    out = run_stage2(run)              # Stage2Outputs: results, histories, predictions, final_dirs, ...
"""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

from tvad import dist
from tvad.corpus import annotator_from_config, build_corpora
from tvad.evaluate.dialogues import evaluate_model, judgement_auroc, judgement_scores
from tvad.io import atomic_write_json
from tvad.model import load
from tvad.model.backbone import free_memory
from tvad.model.build import build_model
from tvad.model.detector import find_checkpoint
from tvad.steps.dataset import clip_split, heldout_clips
from tvad.train.clips import ClipResolver, ClipStore, HeatmapView, corpus_records, dialogue_budgets, load_records
from tvad.train.distributed import check_clips_sharded
from tvad.train.common import torch_threads
from tvad.train.stage2 import lora_layers, train_phase

CLIP_BUDGETS = "clip_budgets.json"  # in stage2/: {clip name: merged video tokens} (`dialogue_budgets`)
VARIANTS = ("rae", "no_rae")  # trained on the same data for the same steps; "backbone" is the untrained one


@dataclass
class Stage2Outputs:
    results: dict  # the flat result keys written to results/03_rae_sft.json
    histories: dict  # {variant: {phase: Trainer log history}}
    predictions: dict  # {variant: [prediction dicts]} on the test dialogues
    final_dirs: dict  # {variant: Path} the phase-B checkpoints
    test_records: list  # the held-out dialogues (phase B, test split)
    clips: ClipStore  # heatmaps and video tokens of every clip used; holds no model (one backbone in memory at
    #                   a time: set `clips.model` to a loaded model before computing new clips with it)
    seconds: dict  # wall time per part
    judgements: dict = field(default_factory=dict)  # {variant: {split: judgement_scores rows}}; the full
    #                                                  model's with all-zero heatmaps under "rae_zero_heatmaps"


def test_records(run, videos: Sequence[Any], force: bool = False, seed: int = 0, split: str = "test") -> list[dict]:
    """Phase-B dialogues of the held-out clips of `split` ("test", or the synthetic "test_seen"), built
    like the training corpus (the `corpus.annotator`, default oracle) into `stage2/<split>_corpus` (the
    corpora hold train and val only). Rebuilt on every call, as notebook 01 rebuilds the training corpora: under a
    second with the folder's frame cache, and a set written by older dialogue rules is never reused.
    `force` also drops that cache."""

    d = run.dir / "stage2" / f"{split}_corpus"
    if dist.is_main():  # under `accelerate launch` rank 0 builds the set, the others read it
        if force and d.exists():
            shutil.rmtree(d)
        name, kw = annotator_from_config(run.config.corpus)
        build_corpora({"validation": list(videos)}, d, annotator=name, annotator_kw=kw, seed=seed)
    dist.barrier()
    return load_records(d / "phase_b.val.jsonl")


def rae_prompts(cfg) -> int:
    """Prompts per temporal token of the full model's RAE (eq. 12: n_base + G*G region prompts + 1 global;
    the "released" variant adds its base prompt instead of concatenating it)."""
    return (int(cfg.rae.num_base) if cfg.rae.variant == "paper" else 0) + int(cfg.rae.grid) ** 2 + 1


def truncated_dialogues(model, records: Sequence[dict], clips: ClipStore, max_length: int) -> list[str]:
    """The ids of the dialogues that `max_length` cuts (later turns dropped whole; `encode_dialogue`)
    with the model's prompt block and each clip's video tokens: the paper's budget must keep them whole."""
    cut = []
    for r in records:
        enc = model.encode(r["messages"], clips.get(r["clip"]), max_length=max_length)
        if enc.num_turns < sum(m["role"] == "assistant" for m in r["messages"]):
            cut.append(str(r.get("id")))
    return cut


def run_stage2(run, force: bool = False, progress: bool = True, log: Callable[[str], None] = print,
               variants: Sequence[str] = VARIANTS) -> Stage2Outputs:
    """Notebook 03 in one call (see `_run_stage2`), with `stage2.cpu_threads` torch threads on CPU."""
    with torch_threads(getattr(run.config.stage2, "cpu_threads", 0)):
        return _run_stage2(run, force, progress, log, variants)


def _run_stage2(run, force: bool = False, progress: bool = True, log: Callable[[str], None] = print,
                variants: Sequence[str] = VARIANTS) -> Stage2Outputs:
    """Notebook 03 in one call: corpora and held-out dialogues, the frozen backbone + best AHD,
    phase A -> merge -> phase B -> merge for the full model ("rae"), the same without RAE ("no_rae")
    and, with `stage2.oracle`, the full model on ground-truth heatmaps ("rae_oracle"), each skipped
    when its checkpoint exists (unless `force`; a killed phase resumes), then the dialogue metrics of
    each and of the untrained backbone on every held-out split, and the judgement scores."""

    cfg = run.config
    s2 = cfg.stage2
    out = run.dir / "stage2"
    seconds: dict[str, float] = {}
    t0 = time.time()
    recs = corpus_records(run)
    # the clips of notebook 01's index (every dataset): the corpora's, and the held-out ones
    videos = {"train": clip_split(run, "train"), "val": clip_split(run, "validation")}
    held = heldout_clips(run)
    # Every held-out dialogue set the model is scored on: "test" (the contract, Table 3: every dataset's
    # held-out clips), and beside it the validation dialogues (for choosing stage-2 settings without
    # looking at test) and, where the dataset has them, new videos of the training anomaly types
    # ("test_seen", synthetic only; skipped elsewhere).
    heldout: dict[str, list[dict]] = {}
    for split in dict.fromkeys(["test", *s2.eval_splits]):
        if split == "val":
            heldout["val"] = recs["b.val"]
            continue
        if split not in held:
            log(f"[stage2] no {split} clips in this dataset: its dialogues are skipped")
            continue
        videos[split] = held[split]
        heldout[split] = test_records(run, videos[split], force=force, seed=cfg.seed, split=split)
    test = heldout["test"]
    resolver = ClipResolver([v for vs in videos.values() for v in vs])
    first = next(r for k in ("b.train", "a.train") for r in recs[k])
    meta = {"fps": float(first["clip"].get("fps") or cfg.data.clip_fps or 1.0),
            "system_prompt": first["messages"][0]["content"] if first["messages"][0]["role"] == "system" else None,
            "config": cfg.to_dict()}
    log("[stage2] corpora: " + ", ".join(f"{k} {len(v)}" for k, v in recs.items()) + f"; test dialogues {len(test)}")
    ahd_dir = find_checkpoint(run.dir)
    seconds["data"] = time.time() - t0

    results: dict[str, Any] = {}
    histories: dict[str, dict] = {}
    predictions: dict[str, list] = {}
    finals: dict[str, Path] = {}
    judgements: dict[str, dict] = {}
    clips: ClipStore | None = None
    if s2.oracle and "rae_oracle" not in variants:
        variants = [*variants, "rae_oracle"]
    for variant in list(variants) + ["backbone"]:
        t1 = time.time()
        vdir = out / variant
        if force and vdir.exists() and dist.is_main():
            shutil.rmtree(vdir)
        dist.barrier()
        a_final, b_final = vdir / "phase_a" / "final", vdir / "phase_b" / "final"
        histories[variant] = {}
        if variant == "backbone":
            model = build_model(cfg, ahd_dir, use_rae=False, meta=meta)  # untrained: no prompts, no LoRA
        elif (b_final / "tvad.json").exists():
            model = load(b_final)
            log(f"[stage2] {variant}: found {b_final}")
        else:
            model = (load(a_final) if (a_final / "tvad.json").exists()
                     else build_model(cfg, ahd_dir, use_rae=(variant != "no_rae"), meta={**meta, "variant": variant}))
        if clips is None:
            # Per clip, the video tokens its longest dialogue leaves under max_length (with the full
            # model's prompt block, so every variant sees the same video): no training sequence is cut
            # (paper: max_length 2048, 8-40-frame clips); also read by notebook 04 (CLIP_BUDGETS)
            everything = [r for k in ("a.train", "a.val", "b.train", "b.val") for r in recs[k]] + \
                [r for split, rs in heldout.items() if split != "val" for r in rs]
            budgets = dialogue_budgets(model, everything, s2.max_length, num_prompts=rae_prompts(cfg))
            if dist.is_main():
                atomic_write_json(out / CLIP_BUDGETS, budgets)
            results["stage2.budgeted_clips"] = len(budgets)
            if budgets:
                log(f"[stage2] {len(budgets)} clip(s) get fewer video tokens so that their dialogues fit max_length "
                    f"{s2.max_length} (smallest budget {min(budgets.values())})")
            clips = ClipStore(model, resolver, out / "clips", video_embeds=s2.video_input == "embeds",
                              pixels=s2.video_input == "pixels", budgets=budgets)
            t2 = time.time()
            for k in ("a.train", "a.val", "b.train", "b.val"):
                check_clips_sharded(recs[k], clips, progress=progress, desc=f"clips {k}")  # by rank under a launch
            for split, rs in heldout.items():
                if split != "val":
                    check_clips_sharded(rs, clips, progress=progress, desc=f"clips {split}")
            seconds["clips"] = time.time() - t2
            cut = {k: truncated_dialogues(model, recs[k], clips, s2.max_length)
                   for k in ("a.train", "a.val", "b.train", "b.val")}
            results["stage2.truncated_dialogues"] = sum(len(v) for v in cut.values())
            if results["stage2.truncated_dialogues"]:
                log(f"[stage2] {results['stage2.truncated_dialogues']} dialogue(s) over max_length "
                    f"{s2.max_length} lose their last turns: " + ", ".join(i for v in cut.values() for i in v[:3]))
        clips.model = model
        # rae_oracle reads the clips' ground-truth masks where the others read the AHD's heatmaps
        vclips = HeatmapView(clips, "ground_truth", resolver) if variant == "rae_oracle" else clips
        if variant != "backbone":
            for ph in ("a", "b"):
                fin = vdir / f"phase_{ph}" / "final"
                if (fin / "tvad.json").exists():
                    hist = vdir / f"phase_{ph}" / "history.json"
                    histories[variant][ph] = json.loads(hist.read_text())["log"] if hist.exists() else []
                    continue
                log(f"[stage2] {variant}: phase {ph.upper()} on {len(recs[ph + '.train'])} dialogues")
                res = train_phase(model, ph, recs[f"{ph}.train"], recs[f"{ph}.val"], vclips, s2, vdir / f"phase_{ph}",
                                  resume=True, progress=progress, meta={"variant": variant}, log=log)
                histories[variant][ph] = res.history
                results[f"{variant}.phase_{ph}.steps"] = res.steps
                results[f"{variant}.phase_{ph}.seconds"] = res.seconds
                evals = [h["eval_loss"] for h in res.history if "eval_loss" in h]
                if evals:
                    results[f"{variant}.phase_{ph}.best_val_loss"] = float(min(evals))
            finals[variant] = b_final
        seconds[f"{variant}.train"] = time.time() - t1
        t1 = time.time()
        for split, rs in heldout.items():
            m, preds = evaluate_model(model, rs, vclips, s2.eval_max_new_tokens, progress=progress)
            for k, v in m.items():
                results[f"{variant}.{split}.{k}"] = v
            if dist.is_main():  # predictions gathered on every rank (evaluate_dialogues); rank 0 writes
                atomic_write_json(out / f"{variant}.{split}_predictions.json", preds)  # test: read by notebook 04
            if split == "test":
                predictions[variant] = preds
                log(f"[stage2] {variant}: " + ", ".join(f"{k} {v:.3g}" for k, v in m.items() if isinstance(v, float)))
        # Does the clip-level judgement rest on the heatmap? p(Yes) on every split's judgements (the
        # training dialogues too), and for the full model again with all-zero heatmaps.
        runs = [(variant, False, "judgement_auroc")]
        if variant == "rae":
            runs.append(("rae_zero_heatmaps", True, "judgement_auroc_zero_heatmaps"))
        for name, zero, key in runs:
            judgements[name] = {split: judgement_scores(model, rs, vclips, zero_heatmaps=zero)
                                for split, rs in {"train": recs["b.train"], **heldout}.items()}
            for split, sc in judgements[name].items():
                auc = judgement_auroc(sc)
                if auc is not None:
                    results[f"{variant}.{split}.{key}"] = auc
        seconds[f"{variant}.eval"] = time.time() - t1
        counts = model.parameter_counts(lora={"r": int(s2.lora_r), "targets": list(s2.lora_targets),
                                              "phases": [None, lora_layers(model, "b", s2.phase_b_last_layers)]}
                                        if variant != "backbone" else {"phases": []})
        for k, v in counts.items():
            results[f"params.{variant}.{k}"] = int(v)
        # one backbone in memory at a time: nothing may keep this variant's model alive while the next
        # loads (the store outlives it; a trainer's reference cycles are collected)
        clips.model = None
        del model, vclips
        free_memory()
    seconds["total"] = time.time() - t0
    results.update({f"timing.{k}_s": v for k, v in seconds.items()})
    for split, rs in heldout.items():
        results[f"stage2.{split}_dialogues"] = len(rs)
    run.write_results("03_rae_sft", results)
    return Stage2Outputs(results, histories, predictions, finals, test, clips, seconds, judgements)
