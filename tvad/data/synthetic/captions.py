"""Captions and sidecar entries of synthetic objects: who (looks), what it does, where it goes
(the 3x3 region words of `tvad.data.geometry.region_word`)."""

from __future__ import annotations

import math

import numpy as np

from tvad.data import render as R
from tvad.data.geometry import region_word
from tvad.data.synthetic.agents import Agent


def _place(lay: R.Layout, band: str) -> str:
    try:
        return lay.place_name(band)
    except KeyError:
        return band


def _a(word: str) -> str:
    return f"an {word}" if word[:1].lower() in "aeiou" else f"a {word}"


def _who(a: Agent) -> str:
    at = a.attrs
    if a.category in ("person", "skateboarder", "cyclist"):
        look = f"in {_a(at['top_color'])} top and {at['bottom_color']} trousers"
        if at.get("backpack"):
            look += f" with {_a(at['backpack_color'])} backpack"
        if a.category == "person":
            return f"a person {look}"
        if a.category == "cyclist":
            return f"a cyclist {look} on {_a(at['bicycle_color'])} bicycle"
        return f"a skateboarder {look} on {_a(at['board_color'])} board"
    if a.category == "car":
        return _a(f"{at['color']} car")
    return _a(f"{at['color']} suitcase")


def _caption(a: Agent, lay: R.Layout, cents: np.ndarray, agents: list[Agent]) -> str:
    pl = _place(lay, a.place)
    dirw = lay.direction_word(a.du) if a.du else ""
    acr = lay.across_word(a.dv) if a.dv else ""
    b = a.behaviour
    if a.category == "person" and "left_object" in a.note:
        bag = next(x for x in agents if x.id == a.note["left_object"])
        does = f"walks {dirw} along the {pl}, puts down {_a(bag.attrs['color'])} suitcase and walks away without it"
    else:
        does = {
            "walking": f"walks {dirw} along the {pl}",
            "standing": f"stands still on the {pl}",
            "crossing": f"crosses the road at the zebra crossing, heading {acr}",
            "riding": f"rides {dirw} in the {pl}",
            "skating": f"skates {dirw} along the {pl}",
            "driving": f"drives {dirw} in the {pl}",
            "running": f"walks and then suddenly runs {dirw} along the {pl}",
            "falling": f"walks {dirw} along the {pl} and then falls to the ground",
            "fighting": f"fights with another person on the {pl}",
            "vehicle_on_walkway": f"drives {dirw} along the {pl}, where cars are not allowed",
            "wrong_way": f"drives the wrong way, {dirw}, in the {pl}",
            "loitering": f"loiters back and forth on the {pl}",
            "throwing": f"throws {_a(a.note.get('thrown_object', 'small object'))} towards the road from the {pl}",
            "jaywalking": f"crosses the road away from the zebra crossing, heading {acr}",
            "abandoned_object": f"is left unattended on the {pl}",
        }[b]
    vis = np.flatnonzero(~np.isnan(cents[:, 0]))
    where = ""
    if len(vis):
        (x0, y0), (x1, y1) = cents[vis[0]], cents[vis[-1]]
        r0, r1 = region_word(x0, y0, (lay.H, lay.W)), region_word(x1, y1, (lay.H, lay.W))
        where = (f", staying in the {r0} of the view" if r0 == r1 or math.hypot(x1 - x0, y1 - y0) < 0.1 * lay.Lu
                 else f", moving from the {r0} to the {r1} of the view")
    text = f"{_who(a)} {does}{where}."
    return text[0].upper() + text[1:]


def object_dict(a: Agent, boxes, cents, window, lay, spec, agents) -> dict:
    """The sidecar entry of one object (ids, looks, anomaly, caption, per-frame boxes and centroids)."""
    T = spec.num_frames
    return {
        "id": int(a.id), "category": a.category, "attributes": a.attrs,
        "anomalous": window is not None, "anomaly_type": a.anomaly_type if window else None,
        "anomaly_ranges": [list(window)] if window else [], "behaviour": a.behaviour,
        "caption": _caption(a, lay, cents, agents),
        "boxes": [None if b[0] < 0 else [int(x) for x in b] for b in boxes],
        "centroids": [None if np.isnan(c[0]) else [round(float(c[0]), 2), round(float(c[1]), 2)] for c in cents],
        "place": _place(lay, a.place),
        "direction": (lay.direction_word(a.du) if a.du else (lay.across_word(a.dv) if a.dv else "none")),
        "speed_px_s": round(float(a.speed) * lay.s, 2),
        "phases": [[int(s), int(e), b] for s, e, b in a.phases if s <= e and e < T],
        **({"partner": a.note["partner"]} if "partner" in a.note else {}),
        **({"left_object": a.note["left_object"]} if "left_object" in a.note else {}),
        **({"left_by": a.note["left_by"]} if "left_by" in a.note else {}),
        **({"thrown_object": a.note["thrown_object"]} if "thrown_object" in a.note else {}),
    }
