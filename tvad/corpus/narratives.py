"""English narratives from timelines: scene, appearance, trajectory, temporal anchors (paper §3.3).

Every fact gets several phrasings (`*_phrasings` return lists, phrasing 0 first), so that a
generated answer can be scored with BLEU against multiple references. Phrasing 0 of a
trajectory follows the style of the authors' ShanghaiTech trajectory descriptions (frame span,
the ordered grid regions visited, manner and range of motion), without reusing their sentences.

    describe_trajectory([(236, 198), (244, 196), None, ...], (476, 868))   # the contract
    -> "The target moves from frame 1 to frame 24, initially positioned in the left area, ..."
    describe_appearance("person", {"top": "white", "bottom": "grey shorts", "bag": "green backpack"})
    -> "a person in a white top and grey shorts with a green backpack"

Frames are printed 1-based, as in the reference descriptions.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Mapping, Sequence

from tvad.corpus.timelines import Timeline, timeline_from_centroids
from tvad.metrics.text import bleu4

# Ways to name each 3x3 cell and each direction of motion (the first one is the default): vocabulary,
# kept as data in phrases.json beside this file.
_PHRASES = json.loads((Path(__file__).with_name("phrases.json")).read_text(encoding="utf-8"))
REGION_PHRASES: dict[str, tuple[str, ...]] = {k: tuple(v) for k, v in _PHRASES["region"].items()}
DIRECTION_PHRASES: dict[str, tuple[str, ...]] = {k: tuple(v) for k, v in _PHRASES["direction"].items()}
EDGE_PHRASES = {"left": "the left", "right": "the right", "top": "the top", "bottom": "the bottom"}
_SPEED_ADV = {"still": ("barely", "hardly", "almost not"), "slow": ("slowly", "gradually", "steadily"),
              "fast": ("rapidly", "quickly", "swiftly")}
_SPEED_ADJ = {"still": "nearly zero", "slow": "slow", "fast": "fast"}
_NUMBERS = ["no", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten"]


def frame_span(first: int, last: int) -> str:
    """0-based inclusive frames -> "from frame 3 to frame 7", or "at frame 3" for a single frame."""
    return f"at frame {first + 1}" if first == last else f"from frame {first + 1} to frame {last + 1}"


def region_phrase(word: str, k: int = 0) -> str:
    ph = REGION_PHRASES[word]
    return ph[k % len(ph)]


def direction_phrase(direction: str | None, k: int = 0) -> str:
    if direction is None:
        return "in place"
    ph = DIRECTION_PHRASES[direction]
    return ph[k % len(ph)]


def _article(word: str) -> str:
    return "an" if word[:1].lower() in "aeiou" else "a"


def _plural(word: str, n: int) -> str:
    if n == 1:
        return word
    if " " in word:
        head, _, last = word.rpartition(" ")
        return f"{head} {_plural(last, n)}"
    irregular = {"person": "persons", "man": "men", "woman": "women", "bus": "buses", "people": "people"}
    return irregular.get(word, word + "s")


def count_phrase(n: int, word: str) -> str:
    return f"{_NUMBERS[n] if n < len(_NUMBERS) else n} {_plural(word, n)}"


# -- appearance -----------------------------------------------------------------------------------

_WEAR_TOP = ("top", "upper", "shirt", "jacket", "coat", "upper_color", "top_color", "clothes")
_WEAR_BOTTOM = ("bottom", "lower", "pants", "trousers", "shorts", "skirt", "lower_color", "bottom_color")
_CARRY = ("bag", "backpack", "accessory", "carrying", "holding", "item", "carried")
_COLOUR = ("color", "colour", "body_color", "paint")
_SIZE = ("size",)
_GARMENT_NOUNS = ("top", "shirt", "t-shirt", "jacket", "coat", "hoodie", "sweater", "dress", "shorts",
                  "trousers", "pants", "jeans", "skirt", "backpack", "bag", "suitcase", "umbrella", "hat")


def _noun_phrase(value: str, default_noun: str) -> str:
    v = str(value).strip().replace("_", " ")
    if any(v.lower().endswith(n) for n in _GARMENT_NOUNS):
        return v
    return f"{v} {default_noun}".strip()


def describe_appearance(category: str, attributes: Mapping[str, str] | None = None, k: int = 0) -> str:
    """"a person in a white top and grey shorts with a green backpack" (lower case, no full stop)."""
    attrs = {}
    for a, v in (attributes or {}).items():
        if v in (None, "", False) or str(v).lower() in ("false", "no", "none", "0"):
            continue
        attrs[str(a).lower()] = "" if v is True or str(v).lower() in ("true", "yes") else str(v)
    cat = (category or "object").strip().lower()
    colour = next((attrs.pop(a) for a in list(attrs) if a in _COLOUR), None)
    size = next((attrs.pop(a) for a in list(attrs) if a in _SIZE), None)
    head = " ".join(x for x in (size, colour, cat) if x)
    for a in list(attrs):  # "backpack": True + "backpack_color": "green" -> "backpack": "green"
        if a.endswith(("_color", "_colour")):
            base = a.rsplit("_", 1)[0]
            if base in _CARRY or base in _GARMENT_NOUNS:
                attrs[base] = attrs.pop(a)
    wear, carry, other = [], [], []
    for a, v in attrs.items():
        if a in _WEAR_TOP:
            wear.insert(0, _noun_phrase(v, "top"))
        elif a in _WEAR_BOTTOM:
            noun = a if a in ("shorts", "trousers", "pants", "skirt") else "trousers"
            wear.append(_noun_phrase(v, noun))
        elif a in _CARRY:
            carry.append(_noun_phrase(v, "bag" if a in ("bag", "carrying", "holding", "item", "carried") else a))
        elif v:
            other.append(f"{a.replace('_', ' ')} {v}")
    text = f"{_article(head)} {head}"
    if wear:
        first = f"{_article(wear[0])} {wear[0]}" if not wear[0].endswith(("shorts", "trousers", "pants", "jeans")) else wear[0]
        text += (" in " if k % 2 == 0 else " wearing ") + " and ".join([first] + wear[1:])
    if carry:
        text += " with " + " and ".join(f"{_article(c)} {c}" for c in carry)
    if other:
        text += (", " if wear or carry else " with ") + ", ".join(other)
    return text


def appearance_phrasings(category: str, attributes: Mapping[str, str] | None = None) -> list[str]:
    """Three phrasings of a target's appearance (sentences)."""
    a0 = describe_appearance(category, attributes, 0)
    a1 = describe_appearance(category, attributes, 1)
    return [f"The target is {a0}.", f"It is {a1}.", f"{a0[0].upper() + a0[1:]}."]


# -- trajectory -----------------------------------------------------------------------------------

def _regions_visited(tl: Timeline) -> list[str]:
    out: list[str] = []
    for word, _, _ in tl.region_runs:
        if not out or out[-1] != word:
            out.append(word)
    return out


def _range_words(tl: Timeline) -> str:
    dx, dy = tl.displacement
    amp = (dx * dx + dy * dy) ** 0.5
    if amp < 0.12:
        return "minimal positional changes"
    if amp < 0.35:
        return "a limited range of motion"
    return "a wide, cross-regional range of motion"


def _smooth_word(tl: Timeline) -> str:
    return "smooth" if tl.speed_cv < 0.6 else "uneven"


def _events_sentence(tl: Timeline, subject: str = "It", k: int = 0) -> str:
    parts = []
    for e in tl.events:
        f = e.frame + 1
        if e.kind == "turn":
            parts.append(f"turns {direction_phrase(e.detail, k)} at frame {f}")
        elif e.kind == "stop":
            parts.append(f"stops at frame {f}")
        elif e.kind == "start":
            parts.append(f"starts moving{(' ' + direction_phrase(e.detail, k)) if e.detail else ''} at frame {f}")
        elif e.kind in ("speed_up", "slow_down"):
            verb = "speeds up" if e.kind == "speed_up" else "slows down"
            detail = e.detail.replace(" -> ", " to ") if e.detail else ""
            parts.append(f"{verb}{(' from ' + detail) if detail else ''} at frame {f}")
    if not parts:
        return ""
    body = parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]
    return f"{subject} {body}."


def trajectory_phrasings(tl: Timeline, subject: str | None = None) -> list[str]:
    """Three phrasings of one target's trajectory. `subject` e.g. "Target 2" or "The person in red"."""
    subj = subject or "The target"
    a, b, last = tl.entry + 1, tl.exit + 1, tl.num_frames
    visited = _regions_visited(tl)
    start, end = visited[0], visited[-1]
    advs = _SPEED_ADV[tl.speed_class]
    adv = advs[0]
    dirw = tl.direction
    smooth = _smooth_word(tl)
    rng = _range_words(tl)
    appears = a > 1 and not tl.visible_before
    verb0 = "appears" if appears else "moves"
    span0 = f"from frame {a} to frame {b}"
    out: list[str] = []
    if len(tl.frames) == 1:  # one sighting (a sparsely resampled clip): a place, no motion to speak of
        return [f"{subj} is seen only in frame {a}, in the {region_phrase(start)}.",
                f"Only at frame {a}, {_lc(subj)} is in the {region_phrase(start, 1)}.",
                f"{subj} shows up in a single frame ({a}), in the {region_phrase(start, 2)}."]
    if tl.speed_class == "still" or (len(visited) == 1 and dirw is None):
        out.append(f"{subj} {verb0} {span0}, remaining in the {region_phrase(start)} "
                   f"with {rng} and an almost stationary position.")
        out.append(f"Between frames {a} and {b}, {subj[0].lower() + subj[1:] if subj.startswith('The') else subj} "
                   f"stays in the {region_phrase(start, 1)} and barely moves.")
        out.append(f"From frame {a} to {b}, {subj[0].lower() + subj[1:] if subj.startswith('The') else subj} "
                   f"is basically static in the {region_phrase(start, 2)}, with no clear direction of motion.")
    elif len(visited) == 1:
        out.append(f"{subj} {verb0} {span0}, remaining in the {region_phrase(start)} and {adv} drifting "
                   f"{direction_phrase(dirw)}, with {rng} and {_article(smooth)} {smooth}, {_SPEED_ADJ[tl.speed_class]} speed.")
        out.append(f"Between frames {a} and {b}, {_lc(subj)} moves {advs[1]} {direction_phrase(dirw, 1)} "
                   f"within the {region_phrase(start, 1)}, with {rng}.")
        out.append(f"From frame {a} to {b}, {_lc(subj)} stays in the {region_phrase(start, 2)}, "
                   f"shifting {direction_phrase(dirw, 2)} at a {_SPEED_ADJ[tl.speed_class]}, {smooth} pace.")
    else:
        run_len = {i: r[2] - r[1] + 1 for i, r in enumerate(tl.region_runs)}
        brief_end = (len(visited) >= 3 and tl.region_runs[-1][0] == end
                     and run_len[len(tl.region_runs) - 1] <= max(2, 0.2 * len(tl.frames)))
        main_end = visited[-2] if brief_end else end
        mids = visited[1:-2] if brief_end else visited[1:-1]
        via0 = "".join(f", passing through the {region_phrase(m)}" for m in mids)
        dir0 = f" {direction_phrase(dirw)}" if dirw else ""
        if appears:
            s0 = (f"{subj} appears from frame {a} to frame {b}, starting in the {region_phrase(start)}{via0} "
                  f"before {adv} moving{dir0} into the {region_phrase(main_end)}")
        else:
            s0 = (f"{subj} moves from frame {a} to frame {b}, initially positioned in the {region_phrase(start)}"
                  f"{via0}, then {adv} shifts{dir0}, reaching the {region_phrase(main_end)}")
        if brief_end:
            s0 += f", with a slight shift into the {region_phrase(end)} in the final frames"
        out.append(f"{s0}, showing {rng} and {_article(smooth)} {smooth}, {_SPEED_ADJ[tl.speed_class]} speed.")
        mids = visited[1:-1]
        via1 = "".join(f" through the {region_phrase(m, 1)}" for m in mids)
        out.append(f"Between frames {a} and {b}, {_lc(subj)} moves {advs[1]} {direction_phrase(dirw, 1)} from the "
                   f"{region_phrase(start, 1)}{via1} to the {region_phrase(end, 1)}, showing "
                   f"{'distinct cross-regional' if tl.speed_class == 'fast' else 'gradual cross-regional'} movement.")
        out.append(f"From frame {a} to {b}, {_lc(subj)} travels {direction_phrase(dirw, 2)} from the "
                   f"{region_phrase(start, 2)} to the {region_phrase(end, 2)}, keeping {_article(smooth)} {smooth}, "
                   f"{_SPEED_ADJ[tl.speed_class]} speed throughout the movement.")
    tails = []
    if tl.enters_from:
        tails.append(f"It enters from {EDGE_PHRASES[tl.enters_from]} at frame {a}.")
    if tl.exit < last - 1 and not tl.visible_after:
        tails.append(f"It leaves the view{(' through ' + EDGE_PHRASES[tl.exits_to]) if tl.exits_to else ''} "
                     f"after frame {b}.")
    ev = [_events_sentence(tl, "It", k) for k in range(3)]
    return [" ".join(x for x in (s, ev[k], *tails) if x) for k, s in enumerate(out)]


def _lc(subj: str) -> str:
    return subj[0].lower() + subj[1:] if subj.startswith(("The ", "A ", "An ")) else subj


def describe_trajectory(centroids: Sequence[Sequence[float] | None], frame_size: Sequence[int], *,
                        target: int | None = None, phrasing: int = 0, fps: float | None = None) -> str:
    """The contract: one English trajectory narrative from per-frame centroids.

    centroids:  per frame, (x, y) in pixels or None where the target is not visible.
    frame_size: (H, W).
    target:     number the target ("Target 2 ...") instead of "The target ...".
    phrasing:   0, 1 or 2 (0 follows the reference descriptions' style).
    """
    tl = timeline_from_centroids(centroids, frame_size, target=target or 1, fps=fps)
    subject = f"Target {target}" if target is not None else None
    return trajectory_phrasings(tl, subject)[phrasing % 3]


def describe_targets(tracks: Mapping[str | int, Sequence[Sequence[float] | None]] | Sequence[Timeline],
                     frame_size: Sequence[int] | None = None, *, phrasing: int = 0) -> str:
    """All targets of a clip in one paragraph ("Target 1 ... Target 2 ..."), as the references do."""
    if isinstance(tracks, Mapping):
        tls = [timeline_from_centroids(c, frame_size, target=i + 1) for i, c in enumerate(tracks.values())]
    else:
        tls = list(tracks)
    if len(tls) == 1:
        return trajectory_phrasings(tls[0], "Target 1" if phrasing == 0 else None)[phrasing % 3]
    return " ".join(trajectory_phrasings(t, f"Target {t.target}")[phrasing % 3] for t in tls)


# -- scene and temporal anchors -------------------------------------------------------------------

def _kinds_and_places(timelines: Sequence[Timeline]) -> tuple[str, list[str]]:
    """("two persons and a car", ["Target 1 (...) moves from the left area to ... frames 3 to 9", ...])."""
    cats: dict[str, int] = {}
    for t in timelines:
        cats[t.category] = cats.get(t.category, 0) + 1
    kinds = [count_phrase(n, c) for c, n in cats.items()]
    kinds_txt = kinds[0] if len(kinds) == 1 else ", ".join(kinds[:-1]) + " and " + kinds[-1]
    per = []
    for t in timelines:
        v = _regions_visited(t)
        where = (("is in" if t.entry == t.exit else "stays in") + f" the {region_phrase(v[0])}" if len(v) == 1 else
                 f"moves from the {region_phrase(v[0])} to the {region_phrase(v[-1])}")
        per.append(f"Target {t.target} ({describe_appearance(t.category, t.attributes)}) {where} "
                   f"{frame_span(t.entry, t.exit)}")
    return kinds_txt, per


def scene_phrasings(timelines: Sequence[Timeline], num_frames: int) -> list[str]:
    """Three phrasings of the overall scene: how many targets of which kinds, where and when."""
    if not timelines:
        return [f"The clip has {num_frames} frames and shows no moving targets.",
                "No targets are visible in this clip.",
                "The scene is empty: there are no people or vehicles to describe."]
    kinds_txt, per = _kinds_and_places(timelines)
    n = len(timelines)
    s0 = f"The clip has {num_frames} frames and shows {count_phrase(n, 'target')}: {kinds_txt}. " + "; ".join(per) + "."
    s1 = f"There {'is' if n == 1 else 'are'} {kinds_txt} in this {num_frames}-frame clip."
    s2 = f"{count_phrase(n, 'target').capitalize()} can be seen: " + ", ".join(
        describe_appearance(t.category, t.attributes) for t in timelines) + "."
    return [s0, s1, s2]


def anomaly_scene_phrasings(timelines: Sequence[Timeline], num_frames: int) -> list[str]:
    """Three phrasings of the clip's anomalous targets, where and when: the scene turn when the ground
    truth knows only the anomalous objects (ShanghaiTech's masks), so nothing is said of the others."""
    if not timelines:
        return [f"The clip has {num_frames} frames and no anomalous target appears in it.",
                "No anomalous target appears in this clip.",
                "None: nothing abnormal happens in this clip."]
    kinds_txt, per = _kinds_and_places(timelines)
    n = len(timelines)
    s0 = (f"The clip has {num_frames} frames and shows {count_phrase(n, 'anomalous target')}: {kinds_txt}. "
          + "; ".join(per) + ".")
    s1 = f"There {'is' if n == 1 else 'are'} {count_phrase(n, 'anomalous target')} in this {num_frames}-frame clip."
    s2 = f"{count_phrase(n, 'anomalous target').capitalize()} can be seen: " + ", ".join(
        describe_appearance(t.category, t.attributes) for t in timelines) + "."
    return [s0, s1, s2]


def cause_phrase(tl: Timeline) -> str:
    what = tl.behaviour or tl.anomaly_type
    if what:
        what = str(what).replace("_", " ").strip()
        if what.split()[0].endswith("ing"):
            return f"the {tl.category} is {what}"
        return f"{what} (the {tl.category})"
    if tl.speed_class == "fast":
        return f"the {tl.category} moves much faster than the normal flow"
    return f"the {tl.category} behaves unlike the normal activity of the scene"


def temporal_phrasings(tl: Timeline) -> list[str]:
    """Three phrasings of when the anomaly happens (frame anchors) and why (its cause)."""
    a, b = (tl.anomaly_span[0] + 1, tl.anomaly_span[1] + 1) if tl.anomaly_span else (tl.entry + 1, tl.exit + 1)
    cause = cause_phrase(tl)
    ev = _events_sentence(tl, "It")
    if a == b:  # seen in one frame of the clip
        return [f"The anomaly is seen at frame {a}: {cause}.", f"It happens at frame {a}, because {cause}.",
                f"At frame {a}; the reason is that {cause}."]
    s0 = f"The anomaly lasts from frame {a} to frame {b}: {cause}." + (f" {ev}" if ev else "")
    s1 = f"It happens between frames {a} and {b}, because {cause}."
    s2 = f"From frame {a} to {b}; the reason is that {cause}."
    return [s0, s1, s2]


# -- the real-data check -------------------------------------------------------------------------

def real_clip_trajectories(annotations: str | Mapping) -> dict[str, dict]:
    """Narratives for the ShanghaiTech clips' anomalous-object tracks (`annotations.json` of
    ../shared/data/shanghaitech-clips): per clip {"hypothesis", "references", "timelines"}.

    Each track goes through the aggregation (`timeline_from_centroids`) and the narrative
    (`describe_targets`, phrasing 0, "Target 1 ... Target 2 ...").
    """
    ann = annotations if isinstance(annotations, Mapping) else json.loads(Path(annotations).read_text())
    out = {}
    for name, clip in ann.items():
        tracks = {oid: [t["centroid_xy"] if t else None for t in tr]
                  for oid, tr in clip["anomalous_object_tracks"].items()}
        tls = [timeline_from_centroids(c, clip["frame_size_hw"], target=i + 1) for i, c in enumerate(tracks.values())]
        out[name] = {"hypothesis": describe_targets(tls), "references": list(clip["trajectory_descriptions_en"]),
                     "timelines": tls}
    return out


def real_clip_bleu(annotations: str | Mapping) -> dict:
    """Trajectory BLEU-4 (tvad.metrics.bleu4: best reference, macro over clips) of the narratives
    of `real_clip_trajectories` against the authors' English references."""
    res = real_clip_trajectories(annotations)
    hyps = {k: v["hypothesis"] for k, v in res.items()}
    refs = {k: v["references"] for k, v in res.items()}
    per = {k: bleu4([hyps[k]], [refs[k]]) for k in res}
    return {"bleu4": bleu4(hyps, refs), "per_clip": per, "hypotheses": hyps}
