"""tvad.data.synthetic.captions: who, what and where of a synthetic object, and its sidecar entry."""

from __future__ import annotations

import numpy as np

from tvad.data.synthetic.agents import _car, _walker
from tvad.data.synthetic.captions import _caption, object_dict
from tvad.data.synthetic.specs import VideoSpec, _scene_layout


def _setup():
    spec = VideoSpec("normal_scene_1_scenario_1", "train", "normal", 1, [], False, "day", 5, (224, 224), 16, 8.0, 0)
    return spec, _scene_layout(0, 1, (224, 224)), np.random.default_rng(0)


def test_caption_names_looks_action_and_regions():
    spec, lay, rng = _setup()
    a = _walker(rng, lay, 16, 8.0, 1)
    cents = np.stack([np.linspace(10, 200, 16), np.full(16, 150.0)], 1)
    text = _caption(a, lay, cents, [a])
    assert text.startswith("A person in ") and " walks " in text and text.endswith(".")
    assert "moving from the bottom-left to the bottom-right of the view" in text
    still = _caption(a, lay, np.tile([[112.0, 112.0]], (16, 1)), [a])
    assert "staying in the middle of the view" in still


def test_object_dict_is_the_sidecar_entry():
    spec, lay, rng = _setup()
    car = _car(rng, lay, 16, 8.0, 2)
    boxes = np.full((16, 4), -1, np.int64)
    boxes[3:] = [50, 60, 90, 80]
    cents = np.full((16, 2), np.nan)
    cents[3:] = [70.123, 70.0]
    d = object_dict(car, boxes, cents, None, lay, spec, [car])
    assert d["id"] == 2 and d["category"] == "car" and not d["anomalous"] and d["anomaly_ranges"] == []
    assert d["boxes"][0] is None and d["boxes"][3] == [50, 60, 90, 80] and d["centroids"][3] == [70.12, 70.0]
    assert d["caption"].startswith("A ") and " car drives " in d["caption"] and d["phases"] == [[0, 15, "driving"]]
