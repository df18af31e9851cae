"""The dialogues of one clip (paper §3.3, step 4): phase A (all objects: scene + appearance ->
motion and motion -> appearance verification + Yes/No checks) and phase B (anomaly-focused, the
paper's flow: anomaly judgement -> target appearance -> trajectory/direction -> temporal anchors
and cause), with the clip reference stored beside every dialogue (`clip_reference`)."""

from __future__ import annotations

import hashlib
import random
from collections import Counter
from typing import Any, Sequence

import numpy as np

from tvad.corpus.narratives import (appearance_phrasings, cause_phrase, count_phrase, describe_appearance,
                                    direction_phrase, region_phrase, scene_phrasings, temporal_phrasings,
                                    trajectory_phrasings)
from tvad.corpus.timelines import DIRECTIONS, Timeline

SYSTEM_PROMPT = ("You are a video anomaly analyst watching a fixed surveillance camera. Frames are numbered "
                 "from 1; places are named on a 3x3 grid (upper-left, upper, upper-right, left, central, right, "
                 "lower-left, lower, lower-right areas).")


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
            "path": str(getattr(video, "path", "")),
            "source": str(meta.get("dataset") or getattr(video, "source", "") or "")}  # the dataset (Table 3's column)


def dialogue_seed(*parts: Any) -> int:
    """A stable 32-bit seed from any parts (the wording choices of one clip's dialogue)."""
    return int(hashlib.sha256("|".join(map(str, parts)).encode()).hexdigest()[:8], 16)


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
    rng = random.Random(dialogue_seed(seed, "a", clip["name"]))
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
    rng = random.Random(dialogue_seed(seed, "b", clip["name"]))
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
