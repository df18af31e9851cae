"""Normal / abnormal prompt templates and event vocabularies (eq. 2 of the paper).

The paper's template is "A short surveillance clip where surveillance video of {event} occurs"
for the abnormal class and "... {event} not occurs" for the normal class. We keep that one first
and add K-1 paraphrases so that the class text feature t_c (eq. 4) is a mean over K templates.

    abnormal, normal = class_prompts("synthetic", k=8)   # two lists of K strings
    EVENTS["ubnormal"]                                   # the event vocabulary of a dataset

Used by the model (text features) and by the corpus (dialogue questions).
"""

from __future__ import annotations

# The paper's template first (abnormal / normal), then paraphrases in the same pattern.
ABNORMAL_TEMPLATES: list[str] = [
    "A short surveillance clip where surveillance video of {event} occurs",
    "A surveillance video in which {event} happens",
    "A security camera recording showing {event}",
    "A clip of a street scene where someone is {event}",
    "An anomalous event: {event} is visible in the video",
    "CCTV footage capturing {event}",
    "A video frame region with {event} in it",
    "Unusual activity, {event}, seen by a fixed camera",
]
NORMAL_TEMPLATES: list[str] = [
    "A short surveillance clip where surveillance video of {event} not occurs",
    "A surveillance video in which {event} does not happen",
    "A security camera recording showing no {event}",
    "A clip of a street scene where nobody is {event}",
    "A normal event: no {event} is visible in the video",
    "CCTV footage capturing ordinary walking, no {event}",
    "A video frame region with only normal background and no {event}",
    "Usual activity without {event}, seen by a fixed camera",
]

# Event vocabularies. `synthetic` names the generator's behaviour types (tvad.data.synthetic);
# `ubnormal` the UBnormal anomaly types; `shanghaitech` the ShanghaiTech Campus anomalies.
EVENTS: dict[str, list[str]] = {
    "synthetic": [
        "running", "jaywalking", "fighting", "falling", "loitering", "wrong-way driving",
        "a car on the sidewalk", "jumping", "throwing an object", "a speeding car",
    ],
    "ubnormal": [
        "running", "falling", "fighting", "sleeping", "crawling", "having a seizure",
        "laying down", "dancing", "stealing", "rotating 360 degrees", "shuffling", "walking injured",
        "walking drunk", "stumbling", "people and car accident", "car crash", "jumping", "fire",
        "smoke", "jaywalking", "driving outside the lane",
    ],
    "shanghaitech": [
        "riding a bicycle", "skateboarding", "running", "chasing", "fighting", "throwing an object",
        "jumping", "a vehicle on the walkway", "falling", "loitering", "jaywalking",
    ],
}
DEFAULT_EVENT = "an anomaly"


def events(dataset: str) -> list[str]:
    """The event vocabulary of a dataset ('synthetic', 'ubnormal', 'shanghaitech')."""
    if dataset not in EVENTS:
        raise ValueError(f"no event vocabulary for dataset {dataset!r}; known: {sorted(EVENTS)}")
    return list(EVENTS[dataset])


def class_prompts(dataset: str | None = "synthetic", k: int = 8,
                  event_list: list[str] | None = None) -> tuple[list[str], list[str]]:
    """(abnormal, normal) prompt lists of exactly K strings each.

    The events of the vocabulary are joined into one phrase ("running, jaywalking or ...") so that
    each template yields one prompt; K > number of templates cycles through the templates with the
    events split into K groups. The first prompt is always the paper's template.
    """
    if k < 1:
        raise ValueError(f"need at least one template per class, got k={k}")
    ev = event_list if event_list is not None else (events(dataset) if dataset else [DEFAULT_EVENT])
    if not ev:
        raise ValueError("empty event vocabulary")
    phrase = _join(ev)
    abnormal, normal = [], []
    for i in range(k):
        t = i % len(ABNORMAL_TEMPLATES)
        e = phrase if i < len(ABNORMAL_TEMPLATES) else _join(ev[i % len(ev)::max(1, k // len(ABNORMAL_TEMPLATES))])
        abnormal.append(ABNORMAL_TEMPLATES[t].format(event=e))
        normal.append(NORMAL_TEMPLATES[t].format(event=e))
    return abnormal, normal


def _join(ev: list[str]) -> str:
    return ev[0] if len(ev) == 1 else ", ".join(ev[:-1]) + " or " + ev[-1]


def all_template_text() -> list[str]:
    """Every template with every event of every vocabulary (to train the tiny tokenizer)."""
    out = []
    for ev in EVENTS.values():
        for e in ev + [DEFAULT_EVENT]:
            out += [t.format(event=e) for t in ABNORMAL_TEMPLATES + NORMAL_TEMPLATES]
    return out
