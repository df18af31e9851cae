"""tvad.corpus.annotators.parsing: strict JSON parsing of a model's answer, with one repair pass."""

from __future__ import annotations

import json

import pytest

from tvad.corpus import AnswerError, parse_answer

GOOD = {"instances": [{"category": "Person", "attributes": {"top": "white t-shirt"}, "box": [10, 20, 40, 90]}]}


# -- parsing ---------------------------------------------------------------------------------------

def test_parse_plain_and_repaired_answers():
    inst, warn = parse_answer(json.dumps(GOOD), (100, 100))
    assert inst[0].category == "person" and inst[0].box == (10, 20, 40, 90) and warn == []
    fenced = "Sure! Here it is:\n```json\n{\"instances\": [{\"category\": \"car\", \"box\": [1, 2, 30, 40],},],}\n```"
    inst, warn = parse_answer(fenced, (100, 100))
    assert inst[0].category == "car" and "removed code fence" in warn and "removed trailing commas" in warn
    qwen = '[{"bbox_2d": [5, 5, 50, 50], "label": "bicycle"}]'  # Qwen2.5-VL's grounding format
    inst, warn = parse_answer(qwen, (100, 100))
    assert inst[0].category == "bicycle" and any("bare list" in w for w in warn)
    inst, _ = parse_answer('{"instances": []}', (100, 100))  # an empty frame is a valid answer
    assert inst == []


@pytest.mark.parametrize("text,reason", [
    ("", "empty answer"),
    ("I see two people walking.", "not JSON"),
    ('{"instances": [{"category": "person", "box": [1, 2, 3', "partial JSON"),
    ('{"objects": []}', "no 'instances'"),
    ('{"instances": [{"category": "person", "box": "left"}]}', "no usable instance"),
    ('{"instances": [{"category": "person", "box": [500, 500, 600, 600]}]}', "no usable instance"),
    ("42", "expected an object"),
])
def test_parse_rejects_with_reason(text, reason):
    with pytest.raises(AnswerError, match=reason):
        parse_answer(text, (100, 100))


def test_parse_clips_boxes_and_drops_outside_ones():
    ans = {"instances": [{"category": "person", "box": [-10, 50, 40, 130]},  # clipped
                         {"category": "car", "box": [300, 300, 400, 400]},  # outside: dropped
                         {"category": "dog", "box": [60, 60, 50, 50]}]}  # swapped corners
    inst, warn = parse_answer(json.dumps(ans), (100, 100))
    assert [i.category for i in inst] == ["person", "dog"]
    assert inst[0].box == (0, 50, 40, 100) and inst[1].box == (50, 50, 60, 60)
    assert any("outside" in w for w in warn) and any("clipped" in w for w in warn) and any("swapped" in w for w in warn)
