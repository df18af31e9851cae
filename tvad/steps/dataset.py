"""Notebook 01 (dataset construction) in one call: the real ShanghaiTech clips, the configured
dataset's splits (generated first for the synthetic set), the 1 fps clip re-partitioning (its index
cached in the run dir), the phase A / B dialogue corpora, and the results-key contract of
results/01_dataset_construction.json that later notebooks and the tests read.

    out = run_dataset(run, real_clips="../shared/data/shanghaitech-clips")
    out.data["train"], out.clips, out.card, out.results

The real clips live beside the repository (`../shared`), not in it: a clone without them runs the
rest of the notebook, `out.real` empty and `out.real_note` saying so (results: `real.num_clips` 0,
no other `real.*` key and no `corpus.real_trajectory_bleu4`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from tvad import corpus
from tvad.corpus import CorpusCard
from tvad.data import clips, load_split, shanghaitech_clips, split_statistics, synthetic, type_statistics
from tvad.data.clips import Clip
from tvad.data.record import VideoList

RESULTS = "01_dataset_construction"
CLIP_INDEX = "clips.jsonl"  # in the run dir: the re-partitioned clips, read back unless `force`


@dataclass
class DatasetOutputs:
    real: VideoList  # the real ShanghaiTech clips (with their reference trajectory descriptions)
    data: dict[str, VideoList]  # {split: videos} of the configured dataset
    stats: list[dict]  # per split: videos, frames, abnormal-frame ratio, ... (`split_statistics`)
    types: list[dict]  # per split and anomaly type (`type_statistics`)
    clips: list[Clip]  # the 1 fps re-partitioning of train + validation
    clip_summary: list[dict]  # per split: clips, frames (`clips.summary`)
    card: CorpusCard  # what the corpus build wrote (files, dialogue counts, seconds)
    real_bleu: dict  # {"hypotheses": {clip: text}, "bleu4": float} of the oracle on the real clips ({} without them)
    results: dict[str, Any]  # the flat keys written to results/01_dataset_construction.json
    real_note: str = ""  # why `real` is empty (the clips' folder is not here), else ""


def dataset_splits(cfg) -> tuple[str, ...]:
    """The splits notebook 01 loads: the synthetic set's own (pretrain and test_seen included),
    otherwise the official train / validation / test."""
    return tuple(synthetic.SPLITS) if cfg.data.dataset == "synthetic" else ("train", "validation", "test")


def partition(run, data: dict[str, VideoList], force: bool = False) -> list[Clip]:
    """The paper's clip re-partitioning of train + validation (`tvad.data.clips.partition` at the
    config's rate, lengths, stride and size), read from the run dir's index when it exists (unless
    `force`), else computed and written there. Validation: the synthetic set keeps its own
    validation videos; other datasets hold out a fifth of the source videos."""
    cfg = run.config
    index_path = run.dir / CLIP_INDEX
    if index_path.exists() and not force:
        clip_list = clips.read_index(index_path)
    else:
        val_fraction = None if cfg.data.dataset == "synthetic" else 0.2
        clip_list = clips.partition(data["train"] + data["validation"], fps=cfg.data.clip_fps,
                                    min_frames=cfg.data.clip_min_frames, max_frames=cfg.data.clip_max_frames,
                                    stride=cfg.data.clip_stride, size=cfg.data.clip_size,
                                    val_fraction=val_fraction, seed=cfg.seed)
        clips.write_index(clip_list, index_path)
    clips.check_no_leakage(clip_list)
    return clip_list


def build_corpus(run, data: dict[str, VideoList]) -> CorpusCard:
    """The phase A / B dialogue corpora of train and validation into `<run_dir>/corpus/`, through the
    annotator of the `corpus` config section (default the oracle: the datasets' ground truth stands in
    for the LVLM's frame descriptions; docs/annotators.md)."""
    cfg = run.config
    name, kw = corpus.annotator_from_config(cfg.corpus)
    return corpus.build_corpora({s: data[s] for s in ("train", "validation")}, run.path("corpus"),
                                annotator=name, annotator_kw=kw, seed=cfg.seed,
                                dialogues_per_clip=cfg.data.dialogues_per_clip)


def dataset_results(out: DatasetOutputs) -> dict[str, Any]:
    """The results-key contract of notebook 01 (real.*, data.<split>.*, clips.*, corpus.*)."""
    real = out.real
    results: dict[str, Any] = {"real.num_clips": len(real)}
    if real:  # without the real clips: real.num_clips 0 and none of the keys measured on them
        results.update({
            "real.frames": int(np.median([v.num_frames for v in real])),
            "real.height": int(real[0].size[0]), "real.width": int(real[0].size[1]),
            "corpus.real_trajectory_bleu4": out.real_bleu["bleu4"],
        })
    results["clips.count"] = len(out.clips)
    for r in out.stats:
        results[f"data.{r['split']}.videos"] = r["videos"]
        results[f"data.{r['split']}.abnormal_frame_ratio"] = r["abnormal_frame_ratio"]
    for r in out.clip_summary:
        results[f"clips.{r['split']}.clips"] = r["clips"]
    results.update({f"corpus.{f.removesuffix('.jsonl')}.dialogues": n["dialogues"] for f, n in out.card.files.items()})
    results["corpus.build_seconds"] = out.card.seconds
    return results


def load_real_clips(run, real_clips: str) -> tuple[VideoList, dict, str]:
    """(the real ShanghaiTech clips, the oracle's trajectory BLEU-4 on them, a note): the clips and
    their BLEU when the folder is there (a folder that is there but broken is a DataError); without
    the folder (a clone without `../shared`), no clips, {} and a note saying what is missing."""
    root = run.resolve(real_clips)
    if not root.exists():
        return VideoList(), {}, (f"the real ShanghaiTech clips are not here ({root}: no such folder; they live "
                                 f"beside the repository in ../shared): their look and BLEU-4 check are skipped")
    return shanghaitech_clips.load(root), corpus.real_clip_bleu(root / "annotations.json"), ""


def run_dataset(run, force: bool = False, real_clips: str = "../shared/data/shanghaitech-clips") -> DatasetOutputs:
    """Notebook 01 in one call (in the notebook's order): real clips, splits, clip index, corpora,
    the oracle's BLEU-4 on the real clips; writes results/01_dataset_construction.json."""
    cfg = run.config
    real, real_bleu, real_note = load_real_clips(run, real_clips)
    data = {s: load_split(cfg.data, s, root=run.resolve(cfg.data.root), seed=cfg.seed) for s in dataset_splits(cfg)}
    all_videos = [v for vs in data.values() for v in vs]
    clip_list = partition(run, data, force)
    card = build_corpus(run, data)
    out = DatasetOutputs(real, data, split_statistics(all_videos), type_statistics(all_videos), clip_list,
                         clips.summary(clip_list), card, real_bleu, {}, real_note)
    out.results = dataset_results(out)
    run.write_results(RESULTS, out.results)
    return out
