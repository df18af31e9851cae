"""From clips to the two SFT corpora (paper §3.3): `build_corpora` and the readers of what it wrote.

Per clip:
1. frame-wise extraction (`extract`): every frame, one structured prompt, one `FrameRecord`
   through the annotator, cached (append-only JSONL, resumable);
2. temporal aggregation into per-target timelines (`tvad.corpus.timelines`);
3. anomaly-focused enhancement: the anomaly mask region kept sharp, the rest Gaussian-blurred
   (`focus_image`), re-extracted with the same prompt (view "focus"), aggregated into
   high-confidence anomaly timelines, merged with the general ones (`merge_timelines`);
4. dialogues: phase A (all objects: scene + appearance -> motion and motion -> appearance
   verification + Yes/No checks), phase B (anomaly-focused, the paper's flow: anomaly judgement ->
   target appearance -> trajectory/direction -> temporal anchors and cause), with balanced
   Yes/No anomaly judgements.

Corpora: `<out_dir>/phase_a.train.jsonl`, `phase_a.val.jsonl`, `phase_b.train.jsonl`,
`phase_b.val.jsonl` (schema `SCHEMA`, validated by `load_corpus`), split like the clips with no
source video on both sides, plus `card.json` / `card.md` (`CorpusCard`) and `timelines.jsonl`.

    card = build_corpora({"train": train_clips, "validation": val_clips}, run.path("corpus"))
    rows = load_corpus(run.dir / "corpus" / "phase_b.train.jsonl")

Steps live in `extraction` (1, 3: frame records, focus view), `timelines` and `verification` (2, 3:
aggregation, merging), `dialogues` (4); the line format in `schema`, the card in `card`.
"""

from __future__ import annotations

import json
import os
import random
import time
from collections import Counter
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

from tvad.corpus.annotators import FRAME_PROMPT, Annotator, make_annotator
from tvad.corpus.cache import FrameCache
from tvad.corpus.card import CorpusCard, make_card
from tvad.corpus.dialogues import (clip_reference, dialogue_seed, ground_truth_coverage, phase_a_dialogue,
                                   phase_b_dialogue)
from tvad.corpus.extraction import ExtractStats, collect, extract_all
from tvad.corpus.schema import SCHEMA_VERSION, CorpusSchemaError, load_corpus, validate_record
from tvad.corpus.verification import clip_timelines, merge_timelines
from tvad.io import atomic_write_json, atomic_write_text, json_default


class CorpusError(ValueError):
    """Bad input to the corpus builder (e.g. a source video on both sides of the split)."""


_SPLIT_NAMES = {"train": "train", "training": "train", "val": "val", "validation": "val", "valid": "val"}


def _group(videos: Mapping[str, Sequence[Any]] | Iterable[Any]) -> tuple[dict[str, list], dict[str, int]]:
    if isinstance(videos, Mapping):
        items = [(k, v) for k, vs in videos.items() for v in vs]
    else:
        items = [(getattr(v, "split", None) or "train", v) for v in videos]
    by: dict[str, list] = {"train": [], "val": []}
    excluded: Counter = Counter()
    for k, v in items:
        s = _SPLIT_NAMES.get(str(k).lower())
        if s is None:
            excluded[str(k)] += 1
        else:
            by[s].append(v)
    return by, dict(excluded)


def check_no_leakage(by_split: Mapping[str, Sequence[Any]]) -> None:
    """Raise `CorpusError` if a source video has clips on both sides of the split."""
    src = {s: {clip_reference(v)["source_video"] for v in vs} for s, vs in by_split.items()}
    both = sorted(src.get("train", set()) & src.get("val", set()))
    if both:
        raise CorpusError(f"source video leakage: {len(both)} source video(s) have clips in both train and val "
                          f"(e.g. {', '.join(both[:5])}); re-partition with source-video-disjoint splits")


def build_corpora(videos: Mapping[str, Sequence[Any]] | Iterable[Any], out_dir: str | os.PathLike, *,
                  annotator: str | Annotator = "oracle", annotator_kw: Mapping[str, Any] | None = None,
                  cache_path: str | os.PathLike | None = None, enhance: bool = True, max_targets: int = 4,
                  blur_sigma: float = 6.0, balance_yes_no: bool = True, seed: int = 0,
                  template: str = FRAME_PROMPT, retry_failed: bool = True, progress: bool = False,
                  dialogues_per_clip: int = 1) -> CorpusCard:
    """Build the phase A / phase B corpora of the train and val clips into `out_dir`.

    videos:     {"train": [...], "validation": [...]} (other splits, e.g. test, are left out and
                counted) or a flat list of records with a `.split`. Each record: a `tvad.data.Video`
                or clip (name, num_frames, size, fps, read_frames, read_masks, objects, frame_labels,
                and `source_video` / `frame_indices` directly or in `.meta` for clips).
    out_dir:    the corpus folder, e.g. `run.path("corpus")`; the frame cache defaults to
                `out_dir/cache/frames.jsonl`, so a rerun (or a killed run) asks nothing twice.
    annotator:  "oracle" (default), "local" or "http" (options in `annotator_kw`) or an object.
    enhance:    run the anomaly-focused re-extraction (phase B targets come from it); without it,
                phase B uses the general timelines that ground truth marks anomalous.
    dialogues_per_clip: dialogues of each phase per clip, from the same timelines with other
                question wordings, reference orders and Yes/No balancing choices (ids of the
                extra ones end in "#k"); the annotator is asked once per frame whatever the count.

    Frames are asked with the annotator's `max_concurrency` requests in flight (http; 1 otherwise);
    the corpus is the same whatever the number (records are read back by key, in frame order).
    """
    if int(dialogues_per_clip) < 1:
        raise ValueError(f"dialogues_per_clip must be >= 1, got {dialogues_per_clip}")
    t0 = time.perf_counter()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    ann = make_annotator(annotator, **dict(annotator_kw or {}))
    by_split, excluded = _group(videos)
    check_no_leakage(by_split)
    stats = {"full": ExtractStats(), "focus": ExtractStats()}
    rows: dict[tuple[str, str], list[dict]] = {(p, s): [] for p in ("a", "b") for s in ("train", "val")}
    timeline_rows: list[str] = []
    # Target-level Yes/No turns alternate "no" / "yes" over the anomalous clips of each split (the
    # clip-level ones are balanced by the data: normal and anomalous clips), so neither answer is a
    # prior a model can learn from the question type, and no split's balance depends on another's.
    next_extra = {"train": "no", "val": "no"}
    n_general = n_anom = n_empty = 0
    with FrameCache(cache_path or out / "cache" / "frames.jsonl", retry_failed=retry_failed) as cache:
        # Steps 1 and 3's frame requests, every clip and view in one stream (the annotator's
        # max_concurrency in flight; answers cached as they arrive), then the records read back by key.
        extract_all([v for split in ("train", "val") for v in by_split[split]], ann, cache,
                    views=("full", "focus") if enhance else ("full",), template=template, blur_sigma=blur_sigma,
                    stats=stats, progress=progress)
        for split in ("train", "val"):
            for i, v in enumerate(by_split[split]):
                if progress:
                    print(f"[corpus] {split} {i + 1}/{len(by_split[split])} {v.name}", flush=True)
                clip = clip_reference(v)
                recs = collect(v, ann, cache, view="full", template=template, stats=stats["full"])
                general = clip_timelines(v, recs, fps=clip["fps"] or None)
                if enhance:
                    frecs = collect(v, ann, cache, view="focus", template=template, stats=stats["focus"])
                    focus = clip_timelines(v, frecs, fps=clip["fps"] or None)
                    general, anomalies = merge_timelines(general, focus)
                else:
                    anomalies = [t for t in general if t.anomalous]
                n_general += len(general)
                n_anom += len(anomalies)
                n_empty += not general
                # The oracle on ground truth that lists only the anomalous objects (ShanghaiTech's masks)
                # knows nothing of the other targets: its dialogues talk of the anomalous ones only.
                only = not ann.needs_pixels and ground_truth_coverage(v) == "anomalous"
                for k in range(int(dialogues_per_clip)):
                    sk = seed if k == 0 else dialogue_seed(seed, "copy", k)  # k = 0: the single-dialogue wording
                    a = phase_a_dialogue(clip, general, max_targets=max_targets, seed=sk, anomalous_only=only)
                    extra = next_extra[split] if balance_yes_no and anomalies else None
                    b = phase_b_dialogue(clip, general, anomalies, extra_judgement=extra, seed=sk, anomalous_only=only)
                    if any(tr["kind"] == "target_judgement" for tr in b["turns"]):
                        next_extra[split] = "yes" if extra == "no" else "no"
                    for ph, d in (("a", a), ("b", b)):
                        rows[(ph, split)].append({"schema": SCHEMA_VERSION,
                                                  "id": f"{ph}/{split}/{clip['name']}" + (f"#{k}" if k else ""),
                                                  "phase": ph, "split": split, "clip": clip, **d,
                                                  "annotator": ann.name})
                timeline_rows.append(json.dumps({"clip": clip["name"], "split": split,
                                                 "general": [t.to_dict() for t in general],
                                                 "anomaly": [t.to_dict() for t in anomalies]}, default=json_default))
    files = {}
    for (ph, split), rs in rows.items():
        name = f"phase_{ph}.{split}.jsonl"
        for r in rs:
            errs = validate_record(r)
            if errs:  # a bug here, not bad input: fail loudly
                raise CorpusSchemaError(f"{name}: built record {r['id']} breaks the schema: {'; '.join(errs)}")
        atomic_write_text(out / name, "".join(json.dumps(r, ensure_ascii=False, default=json_default) + "\n" for r in rs))
        files[name] = {"dialogues": len(rs), "turns": sum(len(r["turns"]) for r in rs)}
    atomic_write_text(out / "timelines.jsonl", "".join(x + "\n" for x in timeline_rows))
    card = make_card(out, ann.name, files, by_split, excluded, rows, stats, n_general, n_anom, n_empty,
                     time.perf_counter() - t0)
    atomic_write_json(out / "card.json", card.to_dict())
    atomic_write_text(out / "card.md", card.to_markdown())
    return card


def load_timelines(corpus_dir: str | os.PathLike, clip: str | None = None) -> dict | list[dict]:
    """The timelines written by `build_corpora` (`timelines.jsonl`): for one clip name, the dict
    {"clip", "split", "general": [timeline dicts], "anomaly": [...]}; without a name, all of them.
    Each timeline dict has per-frame `frames`, `boxes` (or null), `centroids`, `regions`, plus
    entry/exit, direction, speed, segments and events: what an overlay draws."""
    p = Path(corpus_dir) / "timelines.jsonl"
    rows = [json.loads(x) for x in p.read_text(encoding="utf-8").splitlines() if x.strip()]
    if clip is None:
        return rows
    for r in rows:
        if r["clip"] == clip:
            return r
    raise KeyError(f"{p}: no timelines for clip {clip!r}")


def sample_dialogues(corpus_dir: str | os.PathLike, phase: str = "b", split: str = "train", n: int = 2,
                     seed: int = 0, abnormal_first: bool = True) -> list[dict]:
    """A few dialogues of a corpus file (validated), abnormal clips first, for display."""
    rs = load_corpus(Path(corpus_dir) / f"phase_{phase}.{split}.jsonl")
    rng = random.Random(seed)
    rng.shuffle(rs)
    if abnormal_first:
        rs.sort(key=lambda r: -r["clip"]["label"])
    return rs[:n]


def format_dialogue(rec: dict) -> str:
    """A dialogue as readable text (USER / ASSISTANT lines with the turn types)."""
    lines = [f"[{rec['id']}] clip {rec['clip']['name']} (source {rec['clip']['source_video']}, "
             f"frames {rec['clip']['frame_indices'][0]}..{rec['clip']['frame_indices'][-1]})"]
    for i, t in enumerate(rec["turns"]):
        lines.append(f"USER ({t['type']}/{t['kind']}): {rec['messages'][1 + 2 * i]['content']}")
        lines.append(f"ASSISTANT: {rec['messages'][2 + 2 * i]['content']}")
    return "\n".join(lines)
