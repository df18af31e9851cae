"""Notebook 02 (stage 1, the AHD) in one call: the frozen backbone's features of every clip of the
configured dataset cached (the clips of notebook 01's index, `tvad.steps.dataset.clip_split`), the
AHD trained on the training clips (or its checkpoint found), evaluated on the validation / test
(/ test_seen) clips beside frame differencing, the metrics per source video over the frames its
clips cover (`tvad.train.coverage`); results/02_ahd_training.json.

    out = run_stage1(run)              # Stage1Outputs: results, history, best_dir, samples
    ex = examples(out, "test", n=4)    # frames, GT, AHD and frame-differencing heatmaps to show
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from tvad.baselines import framediff_heatmaps, framediff_scores
from tvad.model.ahd import load_ahd
from tvad.model.backbone import from_config
from tvad.model.build import build_ahd
from tvad.train.features import FeatureCache, predicted_cache_bytes, predicted_cache_line
from tvad.steps.dataset import clip_split
from tvad.train.coverage import source_sequences
from tvad.train.distributed import prepare_sharded
from tvad.train.stage1 import ResumeMismatch, backbone_meta, cache_indices, cache_key, evaluate, evaluate_heatmaps, train

SPLITS = {"train": "train", "val": "validation", "test_seen": "test_seen", "test": "test"}  # result key -> clip split


@dataclass
class Stage1Outputs:
    results: dict  # the flat result keys written to results/02_ahd_training.json
    history: dict  # {"train": [...], "val": [...], "best": {...}}
    samples: dict  # {split: [Sample]}
    heatmaps: dict  # {split: {name: (N, H, W)}} of the best AHD
    framediff: dict  # {split: {name: (N, H, W)}} of the baseline
    best_dir: Path  # the best AHD checkpoint


def run_stage1(run, force: bool = False, progress: bool = True, log=print) -> Stage1Outputs:
    """Notebook 02 in one call: data, backbone, feature cache, training (skipped when a best
    checkpoint exists, unless force), evaluation of the AHD and of frame differencing."""

    cfg = run.config
    out_dir = run.dir / "stage1"
    t0 = time.time()
    # the configured dataset's clips (stage 1 is the AHD of Table 2: not trained on ShanghaiTech);
    # test_seen only where the dataset has it (the synthetic set)
    videos = {k: clip_split(run, s, dataset=cfg.data.dataset) for k, s in SPLITS.items()}
    videos = {k: v for k, v in videos.items() if v or k != "test_seen"}
    log("[stage1] clips: " + ", ".join(f"{k} {len(v)}" for k, v in videos.items()) + f" ({time.time() - t0:.0f}s)")
    bb = from_config(cfg.backbone)
    cache = FeatureCache(run.dir / "features", bb, bb.resolve_layers(cfg.backbone.layers),
                         memory_bytes=int(cfg.stage1.feature_memory_mb * 2**20))
    everything = [v for vs in videos.values() for v in vs]
    predicted = predicted_cache_bytes(everything, bb, bb.resolve_layers(cfg.backbone.layers))
    log("[stage1] " + predicted_cache_line(everything, bb, bb.resolve_layers(cfg.backbone.layers)))
    samples, feat_s = {}, {}
    for k, vs in videos.items():
        t = time.time()
        m0 = cache.misses
        # at each clip's own rate; under `accelerate launch` each rank extracts its shard first
        samples[k] = prepare_sharded(vs, cache, progress=progress, desc=f"features {k}")
        feat_s[k] = (time.time() - t, cache.misses - m0)
    # timing: recompute the train split's features once (uncached) against reading them from the cache
    t = time.time()
    for v in videos["train"][: min(4, len(videos["train"]))]:
        bb.visual_features(np.asarray(v.read_frames()), bb.resolve_layers(cfg.backbone.layers), fps=v.fps)
    per_video_compute = (time.time() - t) / max(1, min(4, len(videos["train"])))
    t = time.time()
    for v in videos["train"]:
        cache.get(cache_key(v), cache_indices(v))
    read_s = time.time() - t
    meta = backbone_meta(bb, cfg)
    best_dir = out_dir / "best"
    if force or not (best_dir / "ahd.json").exists():
        ahd = build_ahd(bb, cfg.ahd, bb.resolve_layers(cfg.backbone.layers), cfg.data.dataset, cfg.backbone.text_encoder,
                        seed=cfg.stage1.seed)
        kw = dict(eval_cfg=cfg.eval, meta=meta, frame_score=cfg.ahd.frame_score, topk=cfg.ahd.topk,
                  progress=progress, log=log)
        try:
            res = train(ahd, samples["train"], samples["val"], cfg.stage1, out_dir, resume=not force, **kw)
        except ResumeMismatch as e:  # a `last` checkpoint of another configuration: start afresh
            log(f"[stage1] not resuming: {e}")
            res = train(ahd, samples["train"], samples["val"], cfg.stage1, out_dir, resume=False, **kw)
        best_dir = res.best_dir
    history = json.loads((out_dir / "history.json").read_text()) if (out_dir / "history.json").exists() else {}
    ahd, _ = load_ahd(best_dir, backbone_identity=bb.identity, layers=bb.resolve_layers(cfg.backbone.layers))
    ahd = ahd.to(bb.device)
    results: dict[str, Any] = {f"stage1.{k}": v for k, v in ahd.text_separation().items()}  # eq. 5-7 bounds
    heat, fd = {}, {}
    for k in [k for k in ("val", "test_seen", "test") if k in samples]:
        m, heat[k] = evaluate(ahd, samples[k], cfg.eval, cfg.ahd.frame_score, cfg.ahd.topk, per_type=(k == "test"))
        for name, v in m.items():
            results[f"ahd.{k}.{name}"] = v
        fd[k] = {v.name: framediff_heatmaps(np.asarray(v.read_frames())) for v in videos[k]}
        seqs, fdh, fds = source_sequences(samples[k], fd[k], {n: framediff_scores(h) for n, h in fd[k].items()})
        fm = evaluate_heatmaps(fdh, fds, seqs, cfg.eval, per_type=(k == "test"))
        for name, v in fm.items():
            results[f"framediff.{k}.{name}"] = v
    ep = history.get("epoch_seconds") or [float("nan")]
    n_train = len(videos["train"])
    results.update({
        "timing.epoch_cached_s": float(np.mean(ep)) + read_s,
        "timing.epoch_recompute_s": float(np.mean(ep)) + per_video_compute * n_train,
        "timing.feature_s_per_video": per_video_compute,
        "timing.cache_read_s_per_video": read_s / max(1, n_train),
        "stage1.best_epoch": (history.get("best") or {}).get("epoch"),
        "stage1.train_videos": len({v.meta.get("source_video", v.name) for v in videos["train"]}),
        "stage1.train_clips": n_train, "stage1.backbone": bb.identity,
    })
    results["stage1.cache_predicted_bytes"] = int(predicted)  # printed before extraction
    results["stage1.cache_bytes"] = int(cache.disk_bytes())  # on disk after it
    results["timing.cache_speedup"] = results["timing.epoch_recompute_s"] / max(1e-9, results["timing.epoch_cached_s"])
    run.write_results("02_ahd_training", results)
    log(f"[stage1] done in {time.time() - t0:.0f}s")
    return Stage1Outputs(results, history, samples, heat, fd, best_dir)


def examples(out: Stage1Outputs, split: str = "test", n: int = 3, cfg=None) -> list[dict]:
    """For figures: the first `n` anomalous videos of `split`, each {"name", "type", "frame",
    "image" (H, W, 3) uint8, "gt" (H, W) bool, "ahd" (H, W), "framediff" (H, W)} at the frame
    whose pair-merged GT mask is largest."""
    rows = []
    for s in out.samples[split]:
        if s.masks is None or not s.frame_labels.any():
            continue
        t = int(s.masks.flatten(1).sum(1).argmax())  # pair with the largest GT area
        rows.append((s, 2 * t))
    rows = rows[:n]
    res = []
    for s, f in rows:
        v = s.extra.get("video")
        res.append({"name": s.name, "type": s.anomaly_type, "frame": f,
                    "image": np.asarray(v.read_frames([f]))[0] if v is not None else None,
                    "gt": s.masks[f // 2].numpy(), "ahd": out.heatmaps[split][s.name][f],
                    "framediff": out.framediff[split][s.name][f]})
    return res
