"""Which saved examples the teaching figures show: one success and one failure each, chosen by a
documented, deterministic rule from the saved predictions (no model runs).

Heatmaps (`pick_heatmap_examples`): each anomalous clip's *separation*, the mean heat inside its
ground-truth region minus the mean heat outside it, over the frames that have a GT region
(`heat_separation`; the region: the GT masks, else the GT boxes). Success: the highest; failure:
the lowest (ties: the first by name). A failure must not separate (at most `HIT_MARGIN`); when
every clip does, the lowest is shown as the weakest hit and its title says so.

Dialogues (`pick_dialogue_examples`): in record order, success = the first dialogue whose clip-level
judgement is right and whose Target answer names the right kind of object (`tvad.metrics.
categories_named`), failing that the first with a right judgement; failure = the first whose
judgement is wrong, failing that the first whose Target answer names the wrong kind of object,
failing that the worst available (fewest right Yes/No answers), each saying which rule chose it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from tvad.metrics.text import _yes_no, categories_named

HIT_MARGIN = 0.05  # separation above which a heatmap counts as hitting the anomalous target

__all__ = ["HIT_MARGIN", "boxes_region", "dialogue_verdict", "example_region", "heat_separation",
           "pick_dialogue_examples", "pick_heatmap_examples", "verdict_text"]


def boxes_region(tracks: Any, shape: Sequence[int]) -> np.ndarray:
    """GT boxes (rows [track, frame, x1, y1, x2, y2], pixels) as a (T, H, W) bool region."""
    T, H, W = (int(x) for x in shape)
    out = np.zeros((T, H, W), bool)
    for _, f, x1, y1, x2, y2 in np.asarray(tracks if tracks is not None else [], float).reshape(-1, 6):
        f = int(f)
        if 0 <= f < T:
            out[f, max(0, int(np.floor(y1))):min(H, int(np.ceil(y2))), max(0, int(np.floor(x1))):min(W, int(np.ceil(x2)))] = True
    return out


def example_region(ex: Mapping) -> np.ndarray | None:
    """A saved example's GT region: its masks when they mark anything, else its GT boxes; None without."""
    frames = np.asarray(ex["frames"])
    masks = ex.get("masks")
    if masks is not None and np.asarray(masks).any():
        return np.asarray(masks) != 0
    region = boxes_region(ex.get("gt_tracks"), frames.shape[:3])
    return region if region.any() else None


def heat_separation(heat: Any, region: Any) -> float | None:
    """Mean heat inside the GT region minus the mean outside it, over the frames with a region
    (in [-1, 1]; > 0: the heatmap is hotter on the anomalous target than on the rest). None when
    the region is empty or covers those frames entirely."""
    h = np.asarray(heat, np.float32)
    r = np.asarray(region, bool)
    if h.shape != r.shape:
        raise ValueError(f"heatmap {h.shape} and region {r.shape} differ in shape")
    on = r.reshape(len(r), -1).any(1)
    if not on.any():
        return None
    h, r = h[on], r[on]
    if r.all():
        return None
    return float(h[r].mean() - h[~r].mean())


def pick_heatmap_examples(examples: Sequence[Mapping], method: str = "ahd") -> list[tuple[Mapping, str]]:
    """[(success example, title), (failure example, title)] among saved examples (dicts with "name",
    "frames", "masks", "gt_tracks", "heatmaps": {method: (T, H, W)}) by `heat_separation` of
    `method`'s heatmap (module doc). One example: only the one that can be scored, titled by its
    outcome. Examples without that heatmap or a GT region are left out; none left: []."""
    scored = []
    for ex in examples:
        h = (ex.get("heatmaps") or {}).get(method)
        region = example_region(ex) if h is not None else None
        s = heat_separation(h, region) if region is not None else None
        if s is not None:
            scored.append((s, str(ex.get("name", "")), ex))
    if not scored:
        return []
    scored.sort(key=lambda x: (-x[0], x[1]))  # best first; ties by name
    out = []
    best = scored[0]
    if best[0] > HIT_MARGIN:
        out.append((best[2], (f"Success: the heatmap hits the anomalous target ({best[1]}; heat inside the GT "
                              f"region - outside = {best[0]:+.2f})")))
    else:
        out.append((best[2], (f"No success among {len(scored)} examples: even the best heatmap misses the "
                              f"anomalous target ({best[1]}; inside - outside = {best[0]:+.2f})")))
    if len(scored) > 1:
        worst = min(scored[1:], key=lambda x: (x[0], x[1]))
        if worst[0] <= HIT_MARGIN:
            out.append((worst[2], (f"Failure: the heatmap misses the anomalous target ({worst[1]}; heat inside "
                                   f"the GT region - outside = {worst[0]:+.2f})")))
        else:
            out.append((worst[2], (f"No failure among {len(scored)} examples: the weakest hit ({worst[1]}; "
                                   f"inside - outside = {worst[0]:+.2f})")))
    return out


# -- dialogues ---------------------------------------------------------------------------------------

def dialogue_verdict(turns: Sequence[Mapping]) -> dict:
    """One dialogue's outcome from its answered turns (dicts with "type", "kind", "answer", "truth",
    "references"): {"judgement": right? (None: no judgement turn), "answered", "truth",
    "category": right? (None: no Target appearance turn naming a category in its references),
    "named", "expected", "yes_no_right", "yes_no_n"}."""
    v: dict[str, Any] = {"judgement": None, "answered": None, "truth": None, "category": None, "named": set(),
                         "expected": set(), "yes_no_right": 0, "yes_no_n": 0}
    for t in turns:
        if t.get("type") == "yes_no" and t.get("truth") is not None:
            a, tr = _yes_no(t.get("answer")), _yes_no(t.get("truth"))
            v["yes_no_n"] += 1
            v["yes_no_right"] += a is not None and a == tr
            if t.get("kind") == "judgement" and v["judgement"] is None:
                v["judgement"], v["answered"], v["truth"] = a is not None and a == tr, a, tr
        elif t.get("type") == "target" and t.get("kind") in (None, "appearance") and v["category"] is None:
            want = set().union(*(categories_named(r) for r in t.get("references") or []))
            if want:
                got = categories_named(t.get("answer"))
                v["category"], v["named"], v["expected"] = bool(got) and got <= want, got, want
    return v


def _yn(x: bool | None) -> str:
    return "unparsed" if x is None else "Yes" if x else "No"


def verdict_text(v: Mapping) -> str:
    """'judgement right (Yes); target named as car (reference: car)' and the like."""
    parts = []
    if v.get("judgement") is not None:
        parts.append(f"judgement right ({_yn(v['truth'])})" if v["judgement"] else
                     f"judgement wrong (answered {_yn(v['answered'])}, truth {_yn(v['truth'])})")
    if v.get("category") is not None:
        named = ", ".join(sorted(v["named"])) or "no object kind"
        parts.append(f"target category {'right' if v['category'] else 'wrong'}: named {named} "
                     f"(reference: {', '.join(sorted(v['expected']))})")
    return "; ".join(parts) or "no judgement or target turn"


def pick_dialogue_examples(preds: Sequence[Mapping]) -> list[dict]:
    """[{"id", "role": "success" | "failure", "rule", "reason"}] (module doc) from one variant's scored
    predictions (`evaluate_dialogues`' dicts, with "id"); the failure differs from the success; one
    dialogue only: the success alone; none: []."""
    order: dict[str, list[Mapping]] = {}
    for p in preds:
        order.setdefault(str(p["id"]), []).append(p)
    verdicts = {i: dialogue_verdict(ts) for i, ts in order.items()}
    ids = list(verdicts)
    if not ids:
        return []

    def first(cond, exclude=()):
        return next((i for i in ids if i not in exclude and cond(verdicts[i])), None)

    out = []
    s = first(lambda v: v["judgement"] and v["category"])
    rule = "first with a right judgement and a right target category"
    if s is None:
        s, rule = first(lambda v: v["judgement"]), "first with a right judgement (none also names the right category)"
    if s is None:
        s, rule = ids[0], f"no right judgement among {len(ids)} dialogues: the first"
    out.append({"id": s, "role": "success", "rule": rule, "reason": verdict_text(verdicts[s])})
    f = first(lambda v: v["judgement"] is False, {s})
    rule = "first with a wrong judgement"
    if f is None:
        f, rule = first(lambda v: v["category"] is False, {s}), "first with a wrong target category (no wrong judgement)"
    if f is None:
        rest = [i for i in ids if i != s]
        if rest:
            f = min(rest, key=lambda i: verdicts[i]["yes_no_right"] / max(verdicts[i]["yes_no_n"], 1))
            rule = f"no wrong judgement or target category among {len(ids)} dialogues: the worst available"
    if f is not None:
        out.append({"id": f, "role": "failure", "rule": rule, "reason": verdict_text(verdicts[f])})
    return out
