"""From clips to the two SFT corpora: extraction, anomaly focus, verification, dialogues (paper §3.3).

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
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import random
import statistics
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from tvad.corpus.annotators import (FRAME_PROMPT, Annotator, FrameRecord, frame_prompt, make_annotator, prompt_hash,
                                    record_key)
from tvad.corpus.cache import FrameCache
from tvad.corpus.narratives import (appearance_phrasings, cause_phrase, count_phrase, describe_appearance, direction_phrase, region_phrase,
                                    scene_phrasings, temporal_phrasings, trajectory_phrasings)
from tvad.corpus.timelines import DIRECTIONS, Detection, Timeline, box_iou, build_timelines

log = logging.getLogger(__name__)

SCHEMA_VERSION = "tvad.corpus/v1"
SYSTEM_PROMPT = ("You are a video anomaly analyst watching a fixed surveillance camera. Frames are numbered "
                 "from 1; places are named on a 3x3 grid (upper-left, upper, upper-right, left, central, right, "
                 "lower-left, lower, lower-right areas).")
TURN_TYPES = ("scene", "target", "trajectory", "temporal", "yes_no")
# Documented schema of one corpus line (JSON object). `validate_record` enforces it.
SCHEMA: dict[str, str] = {
    "schema": f'"{SCHEMA_VERSION}"',
    "id": "str, unique in the file: '<phase>/<split>/<clip name>'",
    "phase": '"a" (all objects: scene, attributes, motion) or "b" (anomaly-focused)',
    "split": '"train" or "val"',
    "clip": "object: name (str), source_video (str), frame_indices (list[int], source-video frames of the "
            "clip's frames, in order), num_frames (int), fps (float), size ([H, W]), label (0/1), path (str)",
    "messages": "list of {role, content} (str content): one 'system', then alternating 'user' / 'assistant', "
                "ending with 'assistant'. The clip's frames belong to the first user turn (the collator attaches them).",
    "turns": "list, one per user/assistant pair: {type: scene|target|trajectory|temporal|yes_no, kind: str, "
             "references: list[str] (>= 1; [0] is the assistant text), truth: 'yes'|'no' (yes_no only)}",
    "targets": "list of per-target summaries: target, category, attributes, entry, exit (0-based), regions "
               "(ordered region words), direction, speed_class, anomalous",
    "annotator": "str, the annotator that produced the frame records",
}


class CorpusError(ValueError):
    """Bad input to the corpus builder (e.g. a source video on both sides of the split)."""


class CorpusSchemaError(ValueError):
    """A corpus line that breaks the schema; the message names the file and line."""


# -- clip facts -----------------------------------------------------------------------------------

def clip_reference(video: Any) -> dict:
    """The clip reference stored with every dialogue: its source video and frame indices."""
    meta = getattr(video, "meta", None) or {}
    src = getattr(video, "source_video", None) or meta.get("source_video") or video.name
    idx = getattr(video, "frame_indices", None)
    if idx is None:
        idx = meta.get("frame_indices", meta.get("source_frames"))
    if idx is None:
        idx = list(range(int(video.num_frames)))
    labels = getattr(video, "frame_labels", None)
    return {"name": str(video.name), "source_video": str(src), "frame_indices": [int(i) for i in idx],
            "num_frames": int(video.num_frames), "fps": float(getattr(video, "fps", 0.0) or 0.0),
            "size": [int(video.size[0]), int(video.size[1])],
            "label": int(np.asarray(labels).any()) if labels is not None else 0,
            "path": str(getattr(video, "path", ""))}


def _seed(*parts: Any) -> int:
    return int(hashlib.sha256("|".join(map(str, parts)).encode()).hexdigest()[:8], 16)


# -- anomaly-focused enhancement -----------------------------------------------------------------

def focus_image(frame: np.ndarray, mask: np.ndarray, sigma: float = 6.0, dilate: int = 3) -> np.ndarray:
    """Keep `mask` (H, W; bool or ids) sharp (slightly dilated), Gaussian-blur everything else."""
    from PIL import Image, ImageFilter
    from scipy import ndimage

    frame = np.asarray(frame, dtype=np.uint8)
    m = np.asarray(mask) > 0
    if dilate > 0 and m.any():
        m = ndimage.binary_dilation(m, iterations=int(dilate))
    blurred = np.asarray(Image.fromarray(frame).filter(ImageFilter.GaussianBlur(radius=float(sigma))))
    return np.where(m[..., None], frame, blurred).astype(np.uint8)


# -- extraction -----------------------------------------------------------------------------------

@dataclass
class ExtractStats:
    asked: int = 0  # annotator calls made now
    cached: int = 0  # answers reused from the cache
    skipped_no_anomaly: int = 0  # focus view: frames without anomaly pixels (not asked)
    ok: int = 0
    invalid_answer: int = 0
    request_failed: int = 0
    instances: int = 0
    reasons: Counter = field(default_factory=Counter)

    def add(self, other: "ExtractStats") -> None:
        for k in ("asked", "cached", "skipped_no_anomaly", "ok", "invalid_answer", "request_failed", "instances"):
            setattr(self, k, getattr(self, k) + getattr(other, k))
        self.reasons.update(other.reasons)

    def to_dict(self) -> dict:
        d = {k: getattr(self, k) for k in ("asked", "cached", "skipped_no_anomaly", "ok", "invalid_answer",
                                           "request_failed", "instances")}
        d["failure_reasons"] = dict(self.reasons.most_common(10))
        return d


def _reason(err: str | None) -> str:
    """A failure reason without its variable tail (for counting)."""
    e = (err or "unknown").split(" (")[0]
    return e.split(":")[0] if len(e) > 60 else e


def extract(video: Any, annotator: Annotator, cache: FrameCache, *, view: str = "full",
            frames: Sequence[int] | None = None, template: str = FRAME_PROMPT, blur_sigma: float = 6.0,
            stats: ExtractStats | None = None) -> list[FrameRecord]:
    """Frame records of one clip (view "full" or "focus"), asking only what the cache lacks.

    Focus view: frames without anomaly-mask pixels are not asked (nothing stays sharp). A video
    that cannot be read gives "request_failed" records naming the problem, not an exception.
    """
    st = stats if stats is not None else ExtractStats()
    ph = prompt_hash(template)
    idx = list(range(int(video.num_frames))) if frames is None else [int(f) for f in frames]
    out: list[FrameRecord] = []
    masks = None
    if view == "focus":
        try:
            masks = np.asarray(video.read_masks(idx))
        except Exception as e:  # unreadable masks: every frame fails with the reason
            masks = e
    elif view != "full":
        raise ValueError(f"view must be 'full' or 'focus', got {view!r}")
    todo: list[int] = []
    for k, f in enumerate(idx):
        if isinstance(masks, np.ndarray) and not masks[k].any():
            st.skipped_no_anomaly += 1
            continue
        key = record_key(video.name, f, annotator.name, ph, view)
        if cache.wants(key):
            todo.append(k)
        else:
            st.cached += 1
    images: Any = None
    if todo and annotator.needs_pixels:
        try:
            images = np.asarray(video.read_frames([idx[k] for k in todo]))
        except Exception as e:
            images = e
    prompt = frame_prompt(int(video.size[0]), int(video.size[1]), template)
    for j, k in enumerate(todo):
        f = idx[k]
        if isinstance(masks, Exception) or isinstance(images, Exception):
            err = masks if isinstance(masks, Exception) else images
            rec = FrameRecord(video.name, f, annotator.name, ph, view, status="request_failed",
                              error=f"cannot read the clip: {type(err).__name__}: {err}")
        else:
            img = None if images is None else images[j]
            focus = None if masks is None else masks[k]
            if img is not None and focus is not None:
                img = focus_image(img, focus, sigma=blur_sigma)
            rec = annotator.describe_frame(img, prompt, video=video, frame=f, focus=focus, prompt_hash=ph)
            rec.video, rec.frame, rec.prompt_hash, rec.view = video.name, f, ph, view
        cache.append(rec)
        st.asked += 1
    for f in idx:
        rec = cache.get(record_key(video.name, f, annotator.name, ph, view))
        if rec is None:
            continue
        out.append(rec)
        setattr(st, rec.status, getattr(st, rec.status) + 1)
        st.instances += len(rec.instances)
        if not rec.ok:
            st.reasons[_reason(rec.error)] += 1
    return out


def records_to_detections(records: Sequence[FrameRecord]) -> list[list[Detection]]:
    """Per frame (in order), the usable instances as `Detection`s; failed frames give no detections."""
    out = []
    for r in sorted(records, key=lambda r: r.frame):
        if not r.ok:
            continue
        dets = []
        for ins in r.instances:
            if ins.box is None and ins.center is None:
                continue
            dets.append(Detection(frame=r.frame, box=ins.box, center=ins.center, category=ins.category,
                                  attributes=dict(ins.attributes), hint=ins.id))
        out.append(dets)
    return out


def clip_timelines(video: Any, records: Sequence[FrameRecord], *, fps: float | None = None) -> list[Timeline]:
    """Timelines of one clip from its frame records, with ground-truth anomaly facts attached when
    the annotator gave object ids (the oracle) or boxes that overlap the record's objects."""
    dets = records_to_detections(records)
    tls = build_timelines(dets, frame_size=video.size, num_frames=int(video.num_frames), fps=fps)
    objs = list(getattr(video, "objects", None) or [])
    for tl in tls:
        obj = _match_object(tl, objs)
        if obj is not None:
            tl.anomalous = bool(getattr(obj, "anomalous", False))
            tl.anomaly_type = getattr(obj, "anomaly_type", None)
            tl.behaviour = getattr(obj, "behaviour", None)
            if tl.anomalous:
                rng = getattr(obj, "anomaly_ranges", None) or []
                if rng:
                    tl.anomaly_span = (int(min(s for s, _ in rng)), int(max(e for _, e in rng)))
    return tls


def _match_object(tl: Timeline, objs: Sequence[Any]) -> Any:
    if not objs:
        return None
    by_id = {getattr(o, "id", None): o for o in objs}
    if tl.source_ids and tl.source_ids[0] in by_id:
        return by_id[tl.source_ids[0]]
    if tl.boxes is None:
        return None
    from tvad.corpus.annotators import object_box

    best, best_iou = None, 0.3
    for o in objs:
        ious = []
        for f, b in zip(tl.frames, tl.boxes):
            ob = object_box(o, f)
            if ob is not None:
                ious.append(box_iou(b, ob))
        if ious and float(np.mean(ious)) > best_iou:
            best, best_iou = o, float(np.mean(ious))
    return best


def _overlap(a: Timeline, b: Timeline) -> float:
    """Mean box IoU (or centre proximity without boxes) over the frames both are visible."""
    if a.source_ids and b.source_ids and set(a.source_ids) & set(b.source_ids):
        return 1.0
    common = sorted(set(a.frames) & set(b.frames))
    if not common:
        return 0.0
    ia, ib = {f: i for i, f in enumerate(a.frames)}, {f: i for i, f in enumerate(b.frames)}
    vals = []
    for f in common:
        if a.boxes is not None and b.boxes is not None:
            vals.append(box_iou(a.boxes[ia[f]], b.boxes[ib[f]]))
        else:
            (x1, y1), (x2, y2) = a.centroids[ia[f]], b.centroids[ib[f]]
            vals.append(1.0 if np.hypot(x1 - x2, y1 - y2) < 0.05 * max(a.frame_size) else 0.0)
    return float(np.mean(vals)) * len(common) / max(len(b.frames), 1)


def merge_timelines(general: Sequence[Timeline], focus: Sequence[Timeline]) -> tuple[list[Timeline], list[Timeline]]:
    """Mark the general targets that the focus pass confirms as anomalous; return (general, anomaly).

    Each focus timeline is a high-confidence anomaly timeline. Its appearance is completed from the
    matching general target (a full-view look at the same object); unmatched focus timelines stay
    anomaly targets of their own. Anomaly targets are renumbered 1, 2, ... by entry.
    """
    general = list(general)
    anomalies: list[Timeline] = []
    for ft in focus:
        best, best_ov = None, 0.2
        for gt in general:
            ov = _overlap(gt, ft)
            if ov > best_ov:
                best, best_ov = gt, ov
        ft.anomalous = True
        if best is not None:
            best.anomalous = True
            for k, v in best.attributes.items():
                ft.attributes.setdefault(k, v)
            if ft.category in ("object", "") and best.category:
                ft.category = best.category
            ft.anomaly_type = ft.anomaly_type or best.anomaly_type
            ft.behaviour = ft.behaviour or best.behaviour
            ft.anomaly_span = ft.anomaly_span or best.anomaly_span
            ft.visible_before = best.entry < ft.entry
            ft.visible_after = best.exit > ft.exit
            if ft.visible_before:
                ft.enters_from = None
                ft.events = [e for e in ft.events if e.kind != "enter"]
            if ft.visible_after:
                ft.exits_to = None
                ft.events = [e for e in ft.events if e.kind != "exit"]
        anomalies.append(ft)
    for g in general:
        if g.anomalous is None:
            g.anomalous = False
    anomalies.sort(key=lambda t: (t.entry, t.centroids[0][0]))
    for i, t in enumerate(anomalies):
        t.target = i + 1
    return general, anomalies


# -- dialogues ------------------------------------------------------------------------------------

def _target_summary(t: Timeline) -> dict:
    regs = []
    for w, _, _ in t.region_runs:
        if not regs or regs[-1] != w:
            regs.append(w)
    return {"target": t.target, "category": t.category, "attributes": dict(t.attributes), "entry": t.entry,
            "exit": t.exit, "regions": regs, "direction": t.direction, "speed_class": t.speed_class,
            "anomalous": t.anomalous}


def _motion_key(t: Timeline) -> tuple:
    s = _target_summary(t)
    return (s["regions"][0], s["regions"][-1], t.direction, t.entry, t.exit)


def _motion_clause(t: Timeline) -> str:
    s = _target_summary(t)
    a, b = t.entry + 1, t.exit + 1
    if len(s["regions"]) == 1:
        return f"stays in the {region_phrase(s['regions'][0])} from frame {a} to frame {b}"
    return (f"moves {direction_phrase(t.direction)} from the {region_phrase(s['regions'][0])} to the "
            f"{region_phrase(s['regions'][-1])} between frames {a} and {b}")


def _wrong_direction(d: str | None, rng: random.Random) -> str:
    if d is None:
        return rng.choice(["left", "right", "up", "down"])
    i = DIRECTIONS.index(d)
    return DIRECTIONS[(i + rng.choice([3, 4, 5])) % 8]  # clearly different: 135-225 degrees away


def _turn(msgs: list, turns: list, q: str, refs: list[str], typ: str, kind: str, truth: str | None = None) -> None:
    msgs.append({"role": "user", "content": q})
    msgs.append({"role": "assistant", "content": refs[0]})
    t = {"type": typ, "kind": kind, "references": list(refs)}
    if truth is not None:
        t["truth"] = truth
    turns.append(t)


def phase_a_dialogue(clip: dict, timelines: Sequence[Timeline], *, max_targets: int = 4, seed: int = 0) -> dict:
    """All-object dialogue: scene, then per target appearance -> motion, motion -> appearance, Yes/No."""
    rng = random.Random(_seed(seed, "a", clip["name"]))
    msgs: list[dict] = [{"role": "system", "content": SYSTEM_PROMPT}]
    turns: list[dict] = []
    _turn(msgs, turns, rng.choice(["Describe the scene: which targets appear in this clip, where and when?",
                                   "What can be seen in this video?", "Give an overview of the targets in this clip."]),
          scene_phrasings(timelines, clip["num_frames"]), "scene", "scene")
    keys = Counter(_motion_key(t) for t in timelines)
    apps = Counter(describe_appearance(t.category, t.attributes) for t in timelines)
    for t in list(timelines)[:max_targets]:
        app = describe_appearance(t.category, t.attributes)
        unique_app = apps[app] == 1
        ref = app if unique_app else f"{app} (target {t.target})"
        # appearance -> motion
        subj = f"The {t.category}" if unique_app and sum(x.category == t.category for x in timelines) == 1 else None
        _turn(msgs, turns, f"How does {_the(ref)} move? Describe its direction, speed and path.",
              trajectory_phrasings(t, subj or f"Target {t.target}"), "trajectory", "appearance_to_motion")
        # motion -> appearance (only when the motion singles the target out)
        if keys[_motion_key(t)] == 1:
            _turn(msgs, turns, f"Which object {_motion_clause(t)}? Describe what it looks like.",
                  appearance_phrasings(t.category, t.attributes), "target", "motion_to_appearance")
        # a Yes/No check of the motion, true or false at random (balanced in expectation)
        if t.direction is not None:
            truth = rng.random() < 0.5
            d = t.direction if truth else _wrong_direction(t.direction, rng)
            q = f"Does {_the(ref)} move {direction_phrase(d)}?"
            ans = (f"Yes, it moves {direction_phrase(t.direction)}." if truth
                   else f"No, it moves {direction_phrase(t.direction)}.")
            _turn(msgs, turns, q, [ans], "yes_no", "verify_motion", "yes" if truth else "no")
    return {"messages": msgs, "turns": turns, "targets": [_target_summary(t) for t in timelines]}


def phase_b_dialogue(clip: dict, general: Sequence[Timeline], anomalies: Sequence[Timeline], *,
                     extra_judgement: str | None = None, seed: int = 0) -> dict:
    """Anomaly-focused dialogue in the paper's order: judgement -> appearance -> trajectory ->
    temporal anchors and cause. `extra_judgement` ("no" / "yes") adds a target-level anomaly
    judgement about one normal / anomalous target that no target with the other answer also fits
    (none is added when every candidate is ambiguous)."""
    rng = random.Random(_seed(seed, "b", clip["name"]))
    msgs: list[dict] = [{"role": "system", "content": SYSTEM_PROMPT}]
    turns: list[dict] = []
    q1 = rng.choice(["Is there any anomaly in this video?", "Does this clip contain abnormal behaviour?",
                     "Is anything unusual happening in this surveillance clip?"])
    if anomalies:
        n = len(anomalies)
        per_cat = Counter(t.category for t in anomalies)
        cats = " and ".join(count_phrase(k, c) if k > 1 else f"{_aa(c)} {c}" for c, k in per_cat.items())
        refs = [f"Yes. There {'is' if n == 1 else 'are'} {count_phrase(n, 'anomalous target')}: {cats}.",
                f"Yes, an anomaly occurs: {cats}.", "Yes."]
        _turn(msgs, turns, q1, refs, "yes_no", "judgement", "yes")
        app_refs = ([p for p in appearance_phrasings(anomalies[0].category, anomalies[0].attributes)] if n == 1 else
                    [" ".join(f"Target {t.target} is {describe_appearance(t.category, t.attributes, k)}."
                              for t in anomalies) for k in range(2)])
        _turn(msgs, turns, rng.choice(["What does the anomalous target look like?",
                                       "Describe the appearance of the abnormal target."]),
              app_refs, "target", "appearance")
        traj = [" ".join(trajectory_phrasings(t, f"Target {t.target}")[k] for t in anomalies) for k in range(3)]
        _turn(msgs, turns, rng.choice(["How does it move? Describe its trajectory and direction.",
                                       "Describe the motion trajectory of the anomalous target."]),
              traj, "trajectory", "trajectory")
        temp = [" ".join(f"Target {t.target}: {temporal_phrasings(t)[k]}" for t in anomalies) for k in range(3)] \
            if n > 1 else \
            temporal_phrasings(anomalies[0])
        _turn(msgs, turns, rng.choice(["When does the anomaly happen, and what causes it?",
                                       "At which frames is it abnormal, and why?"]), temp, "temporal", "anchors")
        normals = [g for g in general if not g.anomalous]
        pool, others = ((normals, [g for g in general if g.anomalous] + list(anomalies)) if extra_judgement == "no"
                        else (anomalies, normals) if extra_judgement == "yes" else ([], []))
        # Only a target that no target with the other answer also fits: "the person in a pink top" must
        # not also describe an anomalous person in a pink top with a backpack.
        t = next((c for c in pool if not _ambiguous(c, others)), None)
        if t is not None and extra_judgement == "no":
            _turn(msgs, turns, f"Is {_the(describe_appearance(t.category, t.attributes))} behaving abnormally?",
                  [f"No, it {_motion_clause(t)}, which is normal here.", "No."], "yes_no", "target_judgement", "no")
        elif t is not None:
            _turn(msgs, turns, f"Is {_the(describe_appearance(t.category, t.attributes))} behaving abnormally?",
                  [f"Yes, {cause_phrase(t)}.", "Yes."], "yes_no", "target_judgement", "yes")
    else:
        refs = ["No. The activity in this clip is normal.", "No, nothing abnormal happens in this clip.", "No."]
        _turn(msgs, turns, q1, refs, "yes_no", "judgement", "no")
        _turn(msgs, turns, "Then describe the targets in the scene.", scene_phrasings(general, clip["num_frames"]),
              "scene", "scene")
    return {"messages": msgs, "turns": turns, "targets": [_target_summary(t) for t in anomalies or general]}


def _attrs(t: Timeline) -> dict:
    return {str(a).lower(): str(v).lower() for a, v in (t.attributes or {}).items()
            if v not in (None, "", False) and str(v).lower() not in ("false", "no", "none", "0")}


def _ambiguous(t: Timeline, others: Sequence[Timeline]) -> bool:
    """Whether a target of `others` (those with the other answer) of the same category has every
    attribute `t`'s description names, so "the <description of t>" could refer to it too."""
    mine = _attrs(t)
    return any(o.category == t.category and all(_attrs(o).get(a) == v for a, v in mine.items()) for o in others)


def _the(phrase: str) -> str:
    for a in ("a ", "an "):
        if phrase.startswith(a):
            return "the " + phrase[len(a):]
    return phrase


def _aa(w: str) -> str:
    return "an" if w[:1].lower() in "aeiou" else "a"


# -- schema ---------------------------------------------------------------------------------------

def validate_record(rec: Any) -> list[str]:
    """Schema problems of one corpus record ([] when valid)."""
    errs: list[str] = []
    if not isinstance(rec, dict):
        return [f"a line must be a JSON object, got {type(rec).__name__}"]
    for k in ("schema", "id", "phase", "split", "clip", "messages", "turns", "targets", "annotator"):
        if k not in rec:
            errs.append(f"missing key {k!r}")
    if errs:
        return errs
    if rec["schema"] != SCHEMA_VERSION:
        errs.append(f"schema {rec['schema']!r} is not {SCHEMA_VERSION!r}")
    if rec["phase"] not in ("a", "b"):
        errs.append(f"phase must be 'a' or 'b', got {rec['phase']!r}")
    if rec["split"] not in ("train", "val"):
        errs.append(f"split must be 'train' or 'val', got {rec['split']!r}")
    c = rec["clip"]
    if not isinstance(c, dict):
        errs.append("clip must be an object")
    else:
        for k, typ in (("name", str), ("source_video", str), ("frame_indices", list), ("num_frames", int)):
            if not isinstance(c.get(k), typ):
                errs.append(f"clip.{k} must be {typ.__name__}")
        if isinstance(c.get("frame_indices"), list) and isinstance(c.get("num_frames"), int):
            if len(c["frame_indices"]) != c["num_frames"] or not all(isinstance(i, int) for i in c["frame_indices"]):
                errs.append("clip.frame_indices must hold num_frames integers")
    m = rec["messages"]
    if not isinstance(m, list) or len(m) < 3:
        errs.append("messages must be a list of at least 3 messages (system, user, assistant)")
        return errs
    for i, msg in enumerate(m):
        if not isinstance(msg, dict) or set(msg) != {"role", "content"} or not isinstance(msg.get("content"), str):
            errs.append(f"messages[{i}] must be {{role, content}} with string content")
            return errs
        want = "system" if i == 0 else ("user" if i % 2 == 1 else "assistant")
        if msg["role"] != want:
            errs.append(f"messages[{i}].role is {msg['role']!r}, expected {want!r}")
        if not msg["content"].strip():
            errs.append(f"messages[{i}].content is empty")
    if m[-1]["role"] != "assistant":
        errs.append("the last message must be the assistant's")
    t = rec["turns"]
    if not isinstance(t, list) or len(t) != (len(m) - 1) // 2:
        errs.append(f"turns must have one entry per user/assistant pair ({(len(m) - 1) // 2})")
        return errs
    for i, turn in enumerate(t):
        if not isinstance(turn, dict) or turn.get("type") not in TURN_TYPES:
            errs.append(f"turns[{i}].type must be one of {TURN_TYPES}")
            continue
        refs = turn.get("references")
        if not isinstance(refs, list) or not refs or not all(isinstance(r, str) and r for r in refs):
            errs.append(f"turns[{i}].references must be a non-empty list of strings")
        elif refs[0] != m[2 + 2 * i]["content"]:
            errs.append(f"turns[{i}].references[0] differs from the assistant message")
        if turn["type"] == "yes_no" and turn.get("truth") not in ("yes", "no"):
            errs.append(f"turns[{i}].truth must be 'yes' or 'no'")
    if not isinstance(rec["targets"], list):
        errs.append("targets must be a list")
    return errs


def load_corpus(path: str | os.PathLike) -> list[dict]:
    """Read a corpus JSONL, validating every line; `CorpusSchemaError` names file and line."""
    p = Path(path)
    if not p.exists():
        raise CorpusSchemaError(f"{p}: no such corpus file")
    out, seen = [], set()
    for n, line in enumerate(p.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except json.JSONDecodeError as e:
            raise CorpusSchemaError(f"{p}:{n}: not JSON ({e.msg} at column {e.colno})") from None
        errs = validate_record(rec)
        if errs:
            raise CorpusSchemaError(f"{p}:{n}: " + "; ".join(errs))
        if rec["id"] in seen:
            raise CorpusSchemaError(f"{p}:{n}: duplicate id {rec['id']!r}")
        seen.add(rec["id"])
        out.append(rec)
    return out


# -- the card -------------------------------------------------------------------------------------

def _length_stats(texts: Sequence[str]) -> dict:
    if not texts:
        return {"n": 0}
    lens = sorted(len(t.split()) for t in texts)
    return {"n": len(lens), "mean_words": round(statistics.fmean(lens), 1), "median_words": statistics.median(lens),
            "p95_words": lens[min(len(lens) - 1, int(0.95 * len(lens)))], "max_words": lens[-1],
            "min_words": lens[0]}


@dataclass
class CorpusCard:
    """What was built: counts, question types, Yes/No balance, answer lengths, extraction stats."""

    out_dir: str
    annotator: str
    files: dict  # file name -> {"dialogues": n, "turns": n}
    clips: dict  # split -> number of clips
    source_videos: dict  # split -> number of distinct source videos
    excluded_splits: dict  # split name -> clips not used (test splits)
    turn_types: dict  # phase -> {type: count}
    turn_kinds: dict  # phase -> {kind: count}
    yes_no: dict  # phase -> {"yes": n, "no": n}
    lengths: dict  # phase -> type -> word-length stats of the answers
    targets: dict  # {"general": n, "anomaly": n, "clips_without_targets": n}
    extraction: dict  # view -> ExtractStats dict
    seconds: float
    schema: str = SCHEMA_VERSION

    def to_dict(self) -> dict:
        return asdict(self)

    def to_markdown(self) -> str:
        L = [f"# Corpus card ({self.schema})", "",
             f"Annotator: `{self.annotator}`. Built in {self.seconds:.1f} s. Folder: `{self.out_dir}`.", "",
             "| file | dialogues | turns |", "|---|---:|---:|"]
        L += [f"| {f} | {v['dialogues']} | {v['turns']} |" for f, v in self.files.items()]
        L += ["", "| split | clips | source videos |", "|---|---:|---:|"]
        L += [f"| {s} | {n} | {self.source_videos.get(s, 0)} |" for s, n in self.clips.items()]
        if self.excluded_splits:
            L += ["", "Not used (evaluation splits): " + ", ".join(f"{k} ({v} clips)" for k, v in self.excluded_splits.items())]
        for ph in sorted(self.turn_types):
            L += ["", f"## Phase {ph.upper()}", "", "| question type | turns | mean words | median | p95 | max |",
                  "|---|---:|---:|---:|---:|---:|"]
            for typ, n in sorted(self.turn_types[ph].items()):
                s = self.lengths.get(ph, {}).get(typ, {})
                L.append(f"| {typ} | {n} | {s.get('mean_words', '')} | {s.get('median_words', '')} | "
                         f"{s.get('p95_words', '')} | {s.get('max_words', '')} |")
            yn = self.yes_no.get(ph, {})
            L += ["", f"Yes/No answers: {yn.get('yes', 0)} yes, {yn.get('no', 0)} no. Kinds: " +
                  ", ".join(f"{k} {v}" for k, v in sorted(self.turn_kinds.get(ph, {}).items()))]
        L += ["", "## Extraction", "", "| view | asked | cached | ok | invalid answer | request failed | "
              "no anomaly (skipped) | instances |", "|---|---:|---:|---:|---:|---:|---:|---:|"]
        for view, s in self.extraction.items():
            L.append(f"| {view} | {s['asked']} | {s['cached']} | {s['ok']} | {s['invalid_answer']} | "
                     f"{s['request_failed']} | {s['skipped_no_anomaly']} | {s['instances']} |")
            for r, n in s.get("failure_reasons", {}).items():
                L.append(f"|  failure: {r} | {n} | | | | | | |")
        L += ["", f"Targets: {self.targets}", ""]
        return "\n".join(L)


# -- the entry point ------------------------------------------------------------------------------

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
        for split in ("train", "val"):
            for i, v in enumerate(by_split[split]):
                if progress:
                    print(f"[corpus] {split} {i + 1}/{len(by_split[split])} {v.name}", flush=True)
                clip = clip_reference(v)
                recs = extract(v, ann, cache, view="full", template=template, blur_sigma=blur_sigma,
                               stats=stats["full"])
                general = clip_timelines(v, recs, fps=clip["fps"] or None)
                if enhance:
                    frecs = extract(v, ann, cache, view="focus", template=template, blur_sigma=blur_sigma,
                                    stats=stats["focus"])
                    focus = clip_timelines(v, frecs, fps=clip["fps"] or None)
                    general, anomalies = merge_timelines(general, focus)
                else:
                    anomalies = [t for t in general if t.anomalous]
                n_general += len(general)
                n_anom += len(anomalies)
                n_empty += not general
                for k in range(int(dialogues_per_clip)):
                    sk = seed if k == 0 else _seed(seed, "copy", k)  # k = 0: the single-dialogue wording
                    a = phase_a_dialogue(clip, general, max_targets=max_targets, seed=sk)
                    extra = next_extra[split] if balance_yes_no and anomalies else None
                    b = phase_b_dialogue(clip, general, anomalies, extra_judgement=extra, seed=sk)
                    if any(tr["kind"] == "target_judgement" for tr in b["turns"]):
                        next_extra[split] = "yes" if extra == "no" else "no"
                    for ph, d in (("a", a), ("b", b)):
                        rows[(ph, split)].append({"schema": SCHEMA_VERSION,
                                                  "id": f"{ph}/{split}/{clip['name']}" + (f"#{k}" if k else ""),
                                                  "phase": ph, "split": split, "clip": clip, **d,
                                                  "annotator": ann.name})
                timeline_rows.append(json.dumps({"clip": clip["name"], "split": split,
                                                 "general": [t.to_dict() for t in general],
                                                 "anomaly": [t.to_dict() for t in anomalies]}, default=_np))
    from tvad.io import atomic_write_text

    files = {}
    for (ph, split), rs in rows.items():
        name = f"phase_{ph}.{split}.jsonl"
        for r in rs:
            errs = validate_record(r)
            if errs:  # a bug here, not bad input: fail loudly
                raise CorpusSchemaError(f"{name}: built record {r['id']} breaks the schema: {'; '.join(errs)}")
        atomic_write_text(out / name, "".join(json.dumps(r, ensure_ascii=False, default=_np) + "\n" for r in rs))
        files[name] = {"dialogues": len(rs), "turns": sum(len(r["turns"]) for r in rs)}
    atomic_write_text(out / "timelines.jsonl", "".join(x + "\n" for x in timeline_rows))
    card = _make_card(out, ann.name, files, by_split, excluded, rows, stats, n_general, n_anom, n_empty,
                      time.perf_counter() - t0)
    from tvad.io import atomic_write_json

    atomic_write_json(out / "card.json", card.to_dict())
    atomic_write_text(out / "card.md", card.to_markdown())
    return card


def _np(o: Any) -> Any:
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def _make_card(out: Path, ann: str, files: dict, by_split: dict, excluded: dict, rows: dict, stats: dict,
               n_general: int, n_anom: int, n_empty: int, seconds: float) -> CorpusCard:
    types: dict[str, Counter] = {"a": Counter(), "b": Counter()}
    kinds: dict[str, Counter] = {"a": Counter(), "b": Counter()}
    yn: dict[str, Counter] = {"a": Counter(), "b": Counter()}
    answers: dict[str, dict[str, list[str]]] = {"a": {}, "b": {}}
    for (ph, _), rs in rows.items():
        for r in rs:
            for tr in r["turns"]:
                types[ph][tr["type"]] += 1
                kinds[ph][tr["kind"]] += 1
                if tr["type"] == "yes_no":
                    yn[ph][tr["truth"]] += 1
                answers[ph].setdefault(tr["type"], []).append(tr["references"][0])
    return CorpusCard(
        out_dir=str(out), annotator=ann, files=files,
        clips={s: len(v) for s, v in by_split.items()},
        source_videos={s: len({clip_reference(x)["source_video"] for x in v}) for s, v in by_split.items()},
        excluded_splits=excluded, turn_types={k: dict(v) for k, v in types.items()},
        turn_kinds={k: dict(v) for k, v in kinds.items()}, yes_no={k: dict(v) for k, v in yn.items()},
        lengths={ph: {t: _length_stats(a) for t, a in d.items()} for ph, d in answers.items()},
        targets={"general": n_general, "anomaly": n_anom, "clips_without_targets": n_empty},
        extraction={k: v.to_dict() for k, v in stats.items()}, seconds=round(seconds, 2))


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
