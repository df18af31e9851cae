"""Notebook 01 (dataset construction) in one call: the real ShanghaiTech clips, the configured
dataset's splits (generated first for the synthetic set), the clip index of the paper's protocol
(`tvad.data.protocol`: every dataset and split cut into clips at `data.clip_fps`, written to the
run dir and read by every later notebook), the phase A / B dialogue corpora of the training and
validation clips, and the results-key contract of results/01_dataset_construction.json that later
notebooks and the tests read.

    out = run_dataset(run, real_clips="../shared/data/shanghaitech-clips")
    out.data["train"], out.clips, out.clip_videos["train"], out.card, out.results
    train = clip_split(run, "train")        # a later notebook: the run's training clips (ClipVideo)

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
from tvad.data import clips, load_split, protocol, shanghaitech_clips, split_statistics, synthetic, type_statistics
from tvad.data.clips import Clip, ClipVideo
from tvad.data.protocol import ClipIndex
from tvad.data.record import VideoList

RESULTS = "01_dataset_construction"
CLIP_INDEX = "clips.jsonl"  # in the run dir: the clips of every stage, read back unless `force`


@dataclass
class DatasetOutputs:
    real: VideoList  # the real ShanghaiTech clips (with their reference trajectory descriptions)
    data: dict[str, VideoList]  # {split: videos} of the configured dataset
    stats: list[dict]  # per split: videos, frames, abnormal-frame ratio, ... (`split_statistics`)
    types: list[dict]  # per split and anomaly type (`type_statistics`)
    clips: list[Clip]  # the run's clip index: every dataset and split (`tvad.data.protocol`)
    clip_summary: list[dict]  # per split: clips, frames (`clips.summary`)
    card: CorpusCard  # what the corpus build wrote (files, dialogue counts, seconds)
    real_bleu: dict  # {"hypotheses": {clip: text}, "bleu4": float} of the oracle on the real clips ({} without them)
    results: dict[str, Any]  # the flat keys written to results/01_dataset_construction.json
    real_note: str = ""  # why `real` is empty (the clips' folder is not here), else ""
    index: ClipIndex | None = None  # the clip index with its protocol, skipped videos and notes
    clip_videos: dict[str, list[ClipVideo]] | None = None  # {split: clips as videos} of the corpus splits


def dataset_splits(cfg) -> tuple[str, ...]:
    """The splits notebook 01 loads: the synthetic set's own (pretrain and test_seen included),
    otherwise the official train / validation / test."""
    return tuple(synthetic.SPLITS) if cfg.data.dataset == "synthetic" else ("train", "validation", "test")


def clip_index(run, data: dict[str, VideoList] | None = None, force: bool = False, log=None) -> ClipIndex:
    """The run's clip index (`tvad.data.protocol`): read from the run dir when it exists (unless
    `force`; one made with other clip settings is a DataError naming it), else cut from the
    datasets (the configured one's loaded splits `data` reused) and written there."""
    cfg = run.config
    path = run.dir / CLIP_INDEX
    if path.exists() and not force:
        index = protocol.read_clip_index(path, cfg.data, cfg.seed)
    else:
        def load(ds, sp):
            if data is not None and ds == cfg.data.dataset and sp in data:
                return data[sp]
            return protocol.load_source(cfg.data, ds, sp, cfg.seed)

        index = protocol.build_index(cfg.data, seed=cfg.seed, log=log, load=load)
        protocol.write_index(index, path)
    clips.check_no_leakage(index.clips)
    return index


def partition(run, data: dict[str, VideoList] | None = None, force: bool = False) -> list[Clip]:
    """The clips of the run's index (`clip_index`), as a list."""
    return list(clip_index(run, data, force).clips)


def clip_split(run, split: str, dataset: str | None = None) -> list[ClipVideo]:
    """The run's clips of `split` (of one dataset, or all) as `ClipVideo`s, from notebook 01's index."""
    cfg = run.config
    path = run.dir / CLIP_INDEX
    if not path.exists():
        raise FileNotFoundError(f"{path}: no clip index (run notebook 01_dataset_construction first)")
    return protocol.load_clips(path, cfg.data, split, dataset=dataset, seed=cfg.seed)


def heldout_clips(run, index: ClipIndex | None = None) -> dict[str, list[ClipVideo]]:
    """The held-out clips the dialogue models are scored on, per split: "test" = every dataset's
    held-out set (the configured dataset's test clips; ShanghaiTech's validation clips, its held-out
    side of the paper's re-partitioning), and where the dataset has it "test_seen"."""
    cfg = run.config
    index = index or protocol.read_clip_index(run.dir / CLIP_INDEX, cfg.data, cfg.seed)
    out = {"test": protocol.load_clips(index, cfg.data, "test", seed=cfg.seed)}
    if "shanghaitech" in index.datasets() and cfg.data.dataset != "shanghaitech":
        out["test"] += protocol.load_clips(index, cfg.data, "validation", dataset="shanghaitech", seed=cfg.seed)
    if index.select("test_seen"):
        out["test_seen"] = protocol.load_clips(index, cfg.data, "test_seen", seed=cfg.seed)
    return out


def build_corpus(run, data: dict[str, list]) -> CorpusCard:
    """The phase A / B dialogue corpora of the train and validation clips into `<run_dir>/corpus/`
    (the oracle annotator: the generator's ground truth stands in for the LVLM's frame descriptions)."""
    cfg = run.config
    return corpus.build_corpora({s: data[s] for s in ("train", "validation")}, run.path("corpus"),
                                annotator="oracle", seed=cfg.seed, dialogues_per_clip=cfg.data.dialogues_per_clip)


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
    if out.index is not None:
        results["clips.skipped_videos"] = len(out.index.skipped)
        for ds in out.index.datasets():
            results[f"clips.{ds}.clips"] = len(out.index.select(dataset=ds))
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


def run_dataset(run, force: bool = False, real_clips: str = "../shared/data/shanghaitech-clips",
                log=print) -> DatasetOutputs:
    """Notebook 01 in one call (in the notebook's order): real clips, splits, clip index, corpora of
    the training and validation clips, the oracle's BLEU-4 on the real clips; writes
    results/01_dataset_construction.json."""
    cfg = run.config
    real, real_bleu, real_note = load_real_clips(run, real_clips)
    data = {s: load_split(cfg.data, s, root=run.resolve(cfg.data.root), seed=cfg.seed) for s in dataset_splits(cfg)}
    all_videos = [v for vs in data.values() for v in vs]
    index = clip_index(run, data, force, log=log)
    for note in index.notes:
        log(f"[clips] {note}")
    if index.skipped:
        log(f"[clips] {len(index.skipped)} source video(s) skipped:\n" + VideoList([], index.skipped).report())
    by_split = {}
    for s in ("train", "validation"):
        by_split[s] = []
        for ds in index.datasets():
            src = {v.name: v for v in data[s]} if ds == cfg.data.dataset and s in data else None
            chosen = index.select(s, ds)
            if src is not None:
                by_split[s] += clips.clip_videos(chosen, src)
            elif chosen:
                by_split[s] += protocol.load_clips(index, cfg.data, s, dataset=ds, seed=cfg.seed)
    card = build_corpus(run, by_split)
    out = DatasetOutputs(real, data, split_statistics(all_videos), type_statistics(all_videos), list(index.clips),
                         clips.summary(index.clips), card, real_bleu, {}, real_note, index, by_split)
    out.results = dataset_results(out)
    run.write_results(RESULTS, out.results)
    return out
