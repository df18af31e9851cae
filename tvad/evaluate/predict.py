"""Notebook 04's model runs: every model run once on the held-out data, its heatmaps and answers
saved to the prediction store (`tvad.evaluate.store`), from which the tables are built.

    hm = predict_heatmaps(run)          # AHD (all eval seeds), one-shot AHD, frame differencing, decoder
    dm = predict_dialogues(run)         # imports notebook 03's answers, runs backbone one-shot and w/o AHD
    save_dialogue_example(run)          # the full model's own dialogue on one test clip (figure)
"""

from __future__ import annotations

import dataclasses
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from tqdm.auto import tqdm

from tvad import dist
from tvad.baselines import framediff_heatmaps
from tvad.data import protocol
from tvad.evaluate.dialogues import evaluate_model, example_dialogue
from tvad.evaluate.selection import boxes_region, dialogue_verdict, heat_separation, pick_dialogue_examples, verdict_text
from tvad.evaluate.store import (
    HEATMAP_METHODS,
    EvalError,
    _pred_dir,
    _read_source,
    _save_npz,
    _source,
    _source_path,
    dialogue_variants,
    load_dialogue_predictions,
    save_dialogue_predictions,
    save_example,
    save_heatmap_gt,
    save_heatmap_predictions,
    save_parameter_counts,
    scores_and_regions,
)
from tvad.io import atomic_write_json, atomic_write_text
from tvad.metrics import dialogue_metrics
from tvad.model import load
from tvad.model.ahd import load_ahd
from tvad.model.backbone import free_memory, from_config
from tvad.model.build import build_ahd, build_model
from tvad.model.decoder_heatmap import decoder_heatmaps
from tvad.model.detector import find_checkpoint
from tvad.model.tvad import TVAD
from tvad.train import stage1
from tvad.train.coverage import source_sequences
from tvad.train.clips import ClipResolver, ClipStore, HeatmapView, corpus_records, load_records
from tvad.train.distributed import prepare_sharded
from tvad.train.features import FeatureCache

HEATMAP_SPLITS = {"val": "validation", "test_seen": "test_seen", "test": "test"}  # result key -> clip split
CLIP_INDEX = "clips.jsonl"  # notebook 01's clip index in the run dir (tvad.data.protocol)


def run_clips(run, split: str, dataset: str | None = None) -> list:
    """The run's clips of `split` (one dataset, or all) as `ClipVideo`s, from notebook 01's index."""
    cfg = run.config
    path = run.dir / CLIP_INDEX
    if not path.exists():
        raise EvalError(f"{path}: no clip index (run notebook 01_dataset_construction first)")
    return protocol.load_clips(path, cfg.data, split, dataset=dataset, seed=cfg.seed)


def clip_budgets(run) -> dict[str, int]:
    """Notebook 03's per-clip video token budgets (stage2/clip_budgets.json; {} when absent), so that the
    models here see each clip as stage 2 did."""
    p = run.dir / "stage2" / "clip_budgets.json"
    if not p.exists():
        return {}
    try:
        return {str(k): int(v) for k, v in json.loads(p.read_text()).items()}
    except (ValueError, TypeError, AttributeError) as e:
        raise EvalError(f"{p}: not a {{clip: tokens}} mapping ({type(e).__name__}: {e})") from None


def all_clips(run) -> list:
    """Every clip of the run's index (all datasets and splits) as `ClipVideo`s."""
    cfg = run.config
    index = protocol.read_clip_index(run.dir / CLIP_INDEX, cfg.data, cfg.seed)
    return [v for sp in dict.fromkeys(c.split for c in index.clips)
            for v in protocol.load_clips(index, cfg.data, sp, seed=cfg.seed)]


DIALOGUE_IMPORTS = {"rae": "rae", "no_rae": "no_rae", "backbone": "backbone_zero_shot",  # stage-2 file -> variant
                    "rae_oracle": "rae_oracle"}


@dataclass
class HeatmapRun:
    """What `predict_heatmaps` did: the splits and methods saved, seconds per part."""

    splits: list[str]
    methods: list[str]
    seconds: dict[str, float]
    skipped: list[str]


def _log(log, msg):
    if log:
        log(msg)


def one_shot_samples(train_samples: Sequence, seed: int = 0) -> list:
    """The one-shot training set: one annotated training video (the seed-th anomalous one, cyclic),
    repeated as many times as the full set has videos, so that the schedule has the same steps."""
    anomalous = [s for s in train_samples if np.asarray(s.frame_labels).any()]
    if not anomalous:
        raise EvalError("one-shot AHD: no anomalous training video")
    ex = anomalous[seed % len(anomalous)]
    return [ex] * len(train_samples)


def predict_heatmaps(run, force: bool = False, methods: Sequence[str] = ("ahd", "ahd_one_shot", "framediff", "decoder"),
                     splits: Sequence[str] = ("val", "test_seen", "test"), decoder_max_videos: int | None = None,
                     num_examples: int = 3, progress: bool = True, log=print) -> HeatmapRun:
    """Notebook 04, heatmaps: the best AHD of notebook 02 (seed cfg.stage1.seed; other seeds of
    cfg.eval.seeds are trained here), the one-shot AHD (one annotated training video), frame
    differencing and decoder-driven heatmaps on each split, saved as predictions; a few anomalous
    `test` clips with all their heatmaps saved as figure examples. Existing files are kept unless
    `force`. The feature cache of notebook 02 is reused."""

    cfg = run.config
    d = run.dir
    seconds: dict[str, float] = {}
    skipped: list[str] = []
    t0 = time.time()
    seeds = [int(s) for s in (cfg.eval.seeds or [cfg.stage1.seed])]
    thr = cfg.eval.threshold

    def have(split, method):
        return all((_pred_dir(d) / "heatmaps" / split / f"{method}.seed{s}.npz").exists()
                   for s in (seeds if method.startswith("ahd") else [0]))

    todo = {sp: [m for m in methods if force or not have(sp, m)] for sp in splits}
    need_examples = force or not any((_pred_dir(d) / "examples").glob("*.npz"))
    if not any(todo.values()) and not need_examples:
        _log(log, f"[eval] heatmap predictions exist for {list(splits)} x {list(methods)} (force=True redoes them)")
        return HeatmapRun(list(splits), list(methods), {}, [f"{sp}/{m}" for sp in splits for m in methods])
    bb = from_config(cfg.backbone)
    cache = FeatureCache(d / "features", bb, bb.resolve_layers(cfg.backbone.layers),
                         memory_bytes=int(cfg.stage1.feature_memory_mb * 2**20))
    # the configured dataset's clips (Table 2 is the AHD's); a split it lacks (test_seen beyond the
    # synthetic set) is left out
    vids = {k: run_clips(run, HEATMAP_SPLITS.get(k, k), dataset=cfg.data.dataset) for k in set(splits) | {"train"}}
    vids = {k: v for k, v in vids.items() if v or k == "train"}
    splits = [sp for sp in splits if sp in vids]
    samples = {k: prepare_sharded(v, cache, progress=progress, desc=f"features {k}") for k, v in vids.items()}
    seconds["features"] = time.time() - t0
    meta = stage1.backbone_meta(bb, cfg)
    best = find_checkpoint(d)

    def ahd_for(method: str, seed: int):
        if method == "ahd" and seed == cfg.stage1.seed:
            return best
        out = d / "evaluation" / f"{method}_seed{seed}"
        if not force and (out / "best" / "ahd.json").exists():
            return out / "best"
        s1 = dataclasses.replace(cfg.stage1, seed=seed)
        train = samples["train"] if method == "ahd" else one_shot_samples(samples["train"], seed)
        ahd = build_ahd(bb, cfg.ahd, bb.resolve_layers(cfg.backbone.layers), cfg.data.dataset, cfg.backbone.text_encoder, seed=seed)
        _log(log, f"[eval] training {method} (seed {seed}) on {len(train)} clips' videos")
        res = stage1.train(ahd, train, samples.get("val") or [], s1, out, eval_cfg=cfg.eval, meta=meta,
                           frame_score=cfg.ahd.frame_score, topk=cfg.ahd.topk, progress=progress, resume=not force)
        return res.best_dir

    heat_cache: dict[tuple[str, str], dict] = {}  # per clip, for the examples

    def save(split, method, heat, **kw):
        """Per-clip heatmaps -> per source video over its covered frames (tvad.train.coverage), saved
        (by rank 0 under `accelerate launch`: every rank holds the gathered heatmaps)."""
        if not dist.is_main():
            return
        _, h, _ = source_sequences(samples[split], heat, {n: np.zeros(len(x)) for n, x in heat.items()})
        save_heatmap_predictions(d, split, method, *scores_and_regions(h, thr, *kw.pop("score", ())), **kw)

    for split in splits:
        ss = samples[split]
        seqs, _, _ = source_sequences(ss, {s.name: np.zeros(1) for s in ss}, {s.name: np.zeros(1) for s in ss})
        if dist.is_main():
            save_heatmap_gt(d, split, {s.name: s.frame_labels for s in seqs}, {s.name: s.gt_tracks for s in seqs},
                            {s.name: s.anomaly_type for s in seqs})
        for method in todo[split]:
            t1 = time.time()
            if method in ("ahd", "ahd_one_shot"):
                for seed in seeds:
                    ahd, _ = load_ahd(ahd_for(method, seed), backbone_identity=bb.identity, layers=bb.resolve_layers(cfg.backbone.layers))
                    ahd = ahd.to(bb.device)
                    heat = _sharded(ss, lambda s: stage1.predict(ahd, s, cfg.ahd.frame_score, cfg.ahd.topk)[0])
                    if seed == seeds[0]:
                        heat_cache[(split, method)] = heat
                    save(split, method, heat, score=(cfg.ahd.frame_score, cfg.ahd.topk), seed=seed)
            elif method == "framediff":
                heat = _sharded(list(zip(ss, vids[split])), lambda sv: framediff_heatmaps(np.asarray(sv[1].read_frames())),
                                name=lambda sv: sv[0].name)
                heat_cache[(split, method)] = heat
                save(split, method, heat)
            elif method == "decoder":
                heat = _decoder_split(run, bb, vids[split], ss, decoder_max_videos, progress)
                if heat is None:
                    skipped.append(f"{split}/decoder")
                    continue
                heat_cache[(split, method)] = heat
                save(split, method, heat, meta={"videos": len(heat)})
            else:
                raise EvalError(f"unknown heatmap method {method!r}; known: {list(HEATMAP_METHODS)}")
            seconds[f"{split}.{method}"] = time.time() - t1
            _log(log, f"[eval] {split}: {method} in {time.time() - t1:.0f}s")
    if need_examples and "test" in samples and dist.is_main():
        t1 = time.time()
        _save_examples(run, bb, vids["test"], samples["test"], heat_cache, num_examples, best, progress)
        seconds["examples"] = time.time() - t1
    dist.barrier()  # rank 0's files are complete before any rank goes on
    seconds["total"] = time.time() - t0
    torch.set_grad_enabled(True)
    _DECODER_MODEL.clear()  # it holds this backbone: the next step's model must not load beside it
    return HeatmapRun(list(splits), list(methods), seconds, skipped)


def _sharded(items: Sequence, fn, name=lambda s: s.name) -> dict:
    """{name(item): fn(item)} over `items`, each rank computing its `dist.shard` and every rank
    receiving all (gathered in order); fn over every item without a launcher."""
    mine = [fn(it) for it in dist.shard(items)]
    return dict(zip([name(it) for it in items], dist.gather_shards(mine, len(items))))


_DECODER_MODEL = {}


def _decoder_model(run, bb):
    """The frozen backbone as a chat model without prompts (the decoder-driven baseline's model)."""

    key = id(bb)
    if key not in _DECODER_MODEL:
        _DECODER_MODEL.clear()
        _DECODER_MODEL[key] = TVAD(bb, None, None, rae=None, use_rae=False, use_ahd=False,
                                   meta={"fps": float(run.config.data.clip_fps or run.config.data.video_fps)})
    return _DECODER_MODEL[key]


def _decoder_split(run, bb, videos, samples, max_videos, progress) -> dict | None:
    """Decoder-driven heatmaps of a split (at most max_videos, anomalous ones first; the others
    are left out of that method's evaluation: its table row says so)."""

    model = _decoder_model(run, bb)
    pairs = list(zip(samples, videos))
    if max_videos is not None:
        pairs = sorted(pairs, key=lambda p: not np.asarray(p[0].frame_labels).any())[: int(max_videos)]
    if not pairs:
        return None
    mine = [decoder_heatmaps(model, np.asarray(v.read_frames()), fps=v.fps)  # this rank's share (all without a launcher)
            for s, v in tqdm(dist.shard(pairs), desc="decoder heatmaps", disable=not progress)]
    out = dict(zip([s.name for s, _ in pairs], dist.gather_shards(mine, len(pairs))))
    if max_videos is not None:  # the metrics need every video of the split: the others get zero heat
        for s in samples:
            if s.name not in out:
                out[s.name] = np.zeros((s.num_frames, *s.frame_size), np.float32)
    return out


def example_clips(samples: Sequence, ahd_heat: dict | None, n: int) -> list[int]:
    """Indices of the anomalous `samples` to keep as figure examples: the AHD's best and worst clip
    by `heat_separation` over its GT boxes (`tvad.evaluate.selection`: the heatmap figure's success
    and failure), then the first anomalous clips, n in all (at least those two); without AHD
    heatmaps (`ahd_heat` {clip: (T, H, W)}) the first n anomalous clips."""
    anomalous = [i for i, s in enumerate(samples) if np.asarray(s.frame_labels).any()]
    sep = {}
    for i in anomalous:
        h = (ahd_heat or {}).get(samples[i].name)
        if h is not None:
            x = heat_separation(h, boxes_region(samples[i].gt_tracks, np.shape(h)))
            if x is not None:
                sep[i] = x
    ends = [max(sep, key=lambda i: (sep[i], -i)), min(sep, key=lambda i: (sep[i], i))] if sep else []
    return list(dict.fromkeys(ends + anomalous))[:max(n, len(set(ends)))]


def _save_examples(run, bb, videos, samples, heat_cache, n, best_dir, progress, max_frames: int = 48) -> None:
    """n anomalous test clips (`example_clips`: the AHD's best and worst, then the first ones) with
    frames, GT masks, GT tracks and every heatmap (at most `max_frames` frames each, around the
    anomaly)."""

    cfg = run.config
    ahd = None
    picked = [(samples[i], videos[i]) for i in example_clips(samples, heat_cache.get(("test", "ahd")), n)]
    for s, v in picked:
        frames = np.asarray(v.read_frames())
        masks = np.asarray(v.read_masks())
        heat = {}
        for m in ("ahd", "decoder", "framediff"):
            h = (heat_cache.get(("test", m)) or {}).get(s.name)
            if h is None or (m == "decoder" and not np.asarray(h).any()):
                if m == "ahd":
                    if ahd is None:
                        ahd, _ = load_ahd(best_dir, backbone_identity=bb.identity, layers=bb.resolve_layers(cfg.backbone.layers))
                        ahd = ahd.to(bb.device)
                    h = stage1.predict(ahd, s, cfg.ahd.frame_score, cfg.ahd.topk)[0]
                elif m == "decoder":
                    h = decoder_heatmaps(_decoder_model(run, bb), frames, fps=v.fps)
                else:
                    h = framediff_heatmaps(frames)
            heat[m] = h
        tracks = np.asarray(s.gt_tracks, float).reshape(-1, 6)
        a = 0
        if len(frames) > max_frames:  # long videos (paper preset): a window over the anomalous span
            first = int(np.flatnonzero(np.asarray(s.frame_labels))[0])
            a = max(0, min(first - max_frames // 6, len(frames) - max_frames))
            frames, masks = frames[a:a + max_frames], masks[a:a + max_frames]
            heat = {k: np.asarray(h)[a:a + max_frames] for k, h in heat.items()}
            tracks = tracks[(tracks[:, 1] >= a) & (tracks[:, 1] < a + max_frames)].copy()
            tracks[:, 1] -= a
        save_example(run.dir, s.name, frames, masks, heat, tracks, {"type": s.anomaly_type, "first_frame": a,
                                                                     "fps": float(v.fps)})
    torch.set_grad_enabled(True)


def import_stage2_predictions(run) -> dict[str, str]:
    """Copy notebook 03's test predictions (stage2/<variant>.test_predictions.json) and parameter
    counts (results/03_rae_sft.json params.*) into predictions/. Returns {variant: source}."""
    d = run.dir
    done = {}
    for src, variant in DIALOGUE_IMPORTS.items():
        f = d / "stage2" / f"{src}.test_predictions.json"
        if f.exists():
            save_dialogue_predictions(d, variant, json.loads(f.read_text()), seed=int(run.config.stage2.seed))
            done[variant] = str(f)
    r = run.results("03_rae_sft")
    parts = {}
    for v in ("rae", "no_rae", "backbone"):
        c = {k.split(".")[-1]: int(x) for k, x in r.items() if k.startswith(f"params.{v}.")}
        if c:
            parts[v] = c
    if parts:
        counts = {}
        base = lambda c: c.get("vision", 0) + c.get("language", 0) + c.get("lm_head", 0)  # noqa: E731
        if "rae" in parts:
            c = parts["rae"]
            counts["full"] = {**c, "total": base(c) + c.get("ahd", 0) + c.get("rae", 0) + c.get("prompt_tokens", 0)}
            counts["no_ahd"] = {**c, "ahd": 0, "total": counts["full"]["total"] - c.get("ahd", 0)}
        if "no_rae" in parts:
            c = parts["no_rae"]
            counts["no_rae"] = {**c, "total": base(c) + c.get("ahd", 0)}
        c = parts.get("backbone") or parts.get("no_rae") or parts.get("rae")
        counts["backbone"] = {"vision": c.get("vision", 0), "language": c.get("language", 0),
                              "lm_head": c.get("lm_head", 0), "total": base(c)}
        save_parameter_counts(d, counts)
    return done


def run_clip_store(run, model, resolver: ClipResolver) -> ClipStore:
    """The stage-2 clip store a run's models here read: notebook 03's cache (stage2/clips), its video
    input mode (`stage2.video_input`) and per-clip budgets (`clip_budgets`), so every model sees each
    clip as stage 2 did."""
    mode = run.config.stage2.video_input
    return ClipStore(model, resolver, run.dir / "stage2" / "clips", video_embeds=mode == "embeds",
                     pixels=mode == "pixels", budgets=clip_budgets(run))


def one_shot_records(records: Sequence[dict], example: dict) -> list[dict]:
    """The test dialogues with one in-context example (a training dialogue's questions and
    reference answers, as text) appended to the system prompt."""
    lines = ["Here is an example of a dialogue about another surveillance clip:"]
    for m in example["messages"][1:]:
        lines.append(f"{'Q' if m['role'] == 'user' else 'A'}: {m['content']}")
    out = []
    for r in records:
        msgs = [dict(m) for m in r["messages"]]
        if msgs and msgs[0]["role"] == "system":
            msgs[0]["content"] = msgs[0]["content"] + "\n" + "\n".join(lines)
        else:
            msgs.insert(0, {"role": "system", "content": "\n".join(lines)})
        out.append({**r, "messages": msgs})
    return out


def predict_dialogues(run, force: bool = False, variants: Sequence[str] = ("backbone_one_shot", "no_ahd"),
                      progress: bool = True, log=print) -> dict[str, dict]:
    """Notebook 04, dialogue: imports notebook 03's predictions (rae, no_rae, backbone zero-shot and,
    with `stage2.oracle`, rae_oracle) and runs the variants it does not make: `backbone_one_shot`
    (the untrained backbone with one in-context training dialogue) and `no_ahd` (the trained RAE
    model fed all-zero heatmaps), on the same held-out dialogues. Returns {variant: metrics}."""

    d = run.dir
    cfg = run.config
    imported = import_stage2_predictions(run) if dist.is_main() else {}  # rank 0 writes under a launch
    dist.barrier()
    _log(log, f"[eval] imported dialogue predictions: {sorted(imported) or 'none (run notebook 03 first)'}")
    rae_final = d / "stage2" / "rae" / "phase_b" / "final"
    test_file = d / "stage2" / "test_corpus" / "phase_b.val.jsonl"

    try:
        ahd_dir = find_checkpoint(d)
    except Exception:  # no stage-1 checkpoint: nothing to run (reported below)
        ahd_dir = None
    # what each variant's answers were made from: a retrained stage 2 (or stage 1) makes them stale
    sources = {"no_ahd": _source([rae_final, test_file]), "backbone_one_shot": _source([ahd_dir, test_file])}
    todo = [v for v in variants if force or not load_dialogue_predictions(d, v)
            or _read_source(d, v, int(cfg.stage2.seed)) != sources.get(v)]
    if todo and not (test_file.exists() and (rae_final / "tvad.json").exists()):
        _log(log, f"[eval] skipping {todo}: notebook 03's test dialogues or checkpoint are missing")
        todo = []
    if todo:

        records = load_records(test_file)
        resolver = ClipResolver(all_clips(run))
        for v in todo:
            t0 = time.time()
            if v == "no_ahd":
                model = load(rae_final)
                clips = run_clip_store(run, model, resolver)
                _, preds = evaluate_model(model, records, HeatmapView(clips, "zeros"),
                                                 cfg.stage2.eval_max_new_tokens, progress=progress)
            elif v == "backbone_one_shot":
                recs = corpus_records(run)
                example = next((r for r in recs["b.train"] if r["clip"].get("label")), recs["b.train"][0])
                meta = {"fps": float(example["clip"].get("fps") or cfg.data.clip_fps or 1.0),
                        "system_prompt": records[0]["messages"][0]["content"]}
                model = build_model(cfg, find_checkpoint(d), use_rae=False, meta=meta)
                clips = run_clip_store(run, model, resolver)
                _, preds = evaluate_model(model, one_shot_records(records, example), clips,
                                                 cfg.stage2.eval_max_new_tokens, progress=progress)
            else:
                raise EvalError(f"unknown dialogue variant {v!r}; 04 makes backbone_one_shot and no_ahd")
            if dist.is_main():  # every rank holds the gathered answers; rank 0 writes them
                save_dialogue_predictions(d, v, preds, seed=int(cfg.stage2.seed))
                atomic_write_text(_source_path(d, v, int(cfg.stage2.seed)), sources.get(v) or "")
            dist.barrier()
            _log(log, f"[eval] {v}: {len(preds)} answers in {time.time() - t0:.0f}s")
            del model, clips  # the store holds the model too: both go before the next variant loads
            free_memory()
    return {v: dialogue_metrics(p) for v in dialogue_variants(d) for p in load_dialogue_predictions(d, v).values()}


def save_dialogue_example(run, force: bool = False, max_new_tokens: int | None = None) -> Path | None:
    """The full model's own multi-turn dialogues on two test clips, a success and a failure, with
    their frames and heatmaps, for the dialogue figure (predictions/dialogue_example.json +
    dialogue_example.npz). The clips are chosen among the full model's scored `test` predictions
    (notebook 03's, imported by `predict_dialogues`) by `tvad.evaluate.selection.
    pick_dialogue_examples`; without them, the first abnormal clip alone."""

    d = run.dir
    out = _pred_dir(d) / "dialogue_example.json"
    if dist.broadcast(out.exists()) and not force:  # rank 0's view: every rank takes the same branch
        return out
    if not dist.is_main():  # one clip's dialogue: rank 0 alone makes and writes it under a launch
        dist.barrier()
        return out if out.exists() else None
    try:
        return _save_dialogue_example(run, out, max_new_tokens)
    finally:
        dist.barrier()


def _scored_predictions(run) -> list[dict]:
    """The full model's scored test predictions: predictions/dialogues/rae (stage2.seed, else the
    first seed), else notebook 03's stage2/rae.test_predictions.json; [] without."""
    saved = load_dialogue_predictions(run.dir, "rae")
    if saved:
        return list(saved.get(int(run.config.stage2.seed), saved[min(saved)]))
    f = run.dir / "stage2" / "rae.test_predictions.json"
    return json.loads(f.read_text()) if f.exists() else []


def _save_dialogue_example(run, out: Path, max_new_tokens: int | None) -> Path | None:
    d = run.dir
    rae_final = d / "stage2" / "rae" / "phase_b" / "final"
    test_file = d / "stage2" / "test_corpus" / "phase_b.val.jsonl"
    if not ((rae_final / "tvad.json").exists() and test_file.exists()):
        return None

    cfg = run.config
    records = load_records(test_file)
    ids = {r["id"] for r in records}
    picks = pick_dialogue_examples([p for p in _scored_predictions(run) if p.get("id") in ids])
    if not picks:
        picks = [{"id": None, "role": "example", "rule": "no scored predictions: the first abnormal clip",
                  "reason": ""}]
    model = load(rae_final)
    clips = run_clip_store(run, model, ClipResolver(all_clips(run)))
    arrays, examples = {}, []
    for k, pick in enumerate(picks):
        ex = example_dialogue(model, records, clips, max_new_tokens or cfg.stage2.eval_max_new_tokens,
                              record_id=pick["id"])
        sfx = "" if k == 0 else f"_{k}"  # the first example keeps the old array names
        arrays[f"frames{sfx}"] = np.asarray(ex["frames"], np.uint8)
        arrays[f"heat{sfx}"] = np.asarray(ex["heat"], np.float16)
        # the shown dialogue is the model's own (its answers as history): its verdict is recomputed
        examples.append({"id": ex["id"], "role": pick["role"], "rule": pick["rule"],
                         "scored": pick["reason"], "reason": verdict_text(dialogue_verdict(ex["turns"])),
                         "turns": ex["turns"]})
    _save_npz(_pred_dir(d) / "dialogue_example.npz", arrays, {"id": examples[0]["id"]})
    return atomic_write_json(out, {"id": examples[0]["id"], "turns": examples[0]["turns"], "examples": examples})
