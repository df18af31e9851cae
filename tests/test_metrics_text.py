"""tvad.metrics text metrics: BLEU-4 against sacrebleu, Yes/No parsing and accuracy, dialogue metrics."""

import math

import numpy as np
import pytest
import sacrebleu

from tvad.metrics import (
    CATEGORY_WORDS,
    answer_cut,
    bleu4,
    categories_named,
    dialogue_metrics,
    target_category_accuracy,
    yes_no_accuracy,
)

HYPS = [
    "A man in a red shirt is running across the street.",
    "a car drives on the sidewalk",
    "Two people are fighting near the bench",
]
REFS = [
    "A man in a red shirt runs across the road.",
    "A car is driving on the sidewalk, which is not allowed.",
    "Two men fight next to a bench in the park",
]


def test_bleu4_single_reference_equals_sacrebleu():
    expected = np.mean([sacrebleu.sentence_bleu(h, [r]).score for h, r in zip(HYPS, REFS)])
    got = bleu4(HYPS, [[r] for r in REFS])
    assert got == pytest.approx(expected, abs=1e-9)
    assert 0 < got < 100
    assert bleu4(REFS, [[r] for r in REFS]) == pytest.approx(100.0)


def test_bleu4_keeps_the_best_reference_per_video():
    refs = [[REFS[1], REFS[0], "nothing happens"], [REFS[1]], [REFS[2], REFS[0]]]
    best = [max(sacrebleu.sentence_bleu(h, [r]).score for r in rs) for h, rs in zip(HYPS, refs)]
    assert bleu4(HYPS, refs) == pytest.approx(np.mean(best), abs=1e-9)
    # Best-single-reference is not sacrebleu's multi-reference sentence score.
    multi = sacrebleu.sentence_bleu(HYPS[0], refs[0]).score
    assert bleu4(HYPS[:1], refs[:1]) != pytest.approx(multi)


def test_bleu4_dicts_matched_by_key():
    hyps = {"v1": HYPS[0], "v2": HYPS[1]}
    refs = {"v2": [REFS[1]], "v1": [REFS[0]]}
    assert bleu4(hyps, refs) == pytest.approx(bleu4(HYPS[:2], [[REFS[0]], [REFS[1]]]))


@pytest.mark.parametrize(
    "hyps, refs, match",
    [
        (HYPS, [[r] for r in REFS[:2]], "mismatched video counts"),
        (HYPS[:1], [[]], r"references\[0\]"),
        (HYPS[:1], [REFS[0]], r"references\[0\]"),  # a string, not a list of strings
        ([None], [[REFS[0]]], r"hypotheses\[0\]"),
        ([], [], "no videos"),
    ],
)
def test_bleu4_bad_input(hyps, refs, match):
    with pytest.raises(ValueError, match=match):
        bleu4(hyps, refs)


@pytest.mark.parametrize(
    "answer, parsed",
    [
        ("Yes", True),
        ("yes.", True),
        ("YES!", True),
        ("Yes, a person is running on the lawn.", True),
        ('"Yes" - the car is on the sidewalk', True),
        ("**Yes**", True),
        ("  no", False),
        ("No.", False),
        ("NO, nothing unusual happens", False),
        ("no-one is there", False),
        ("Nope", None),
        ("Not really", None),
        ("Yesterday a man ran", None),
        ("I think yes", None),
        ("", None),
        ("...", None),
    ],
)
def test_yes_no_phrasings(answer, parsed):
    for truth in ("Yes", "No"):
        out = yes_no_accuracy([answer], [truth])
        assert out["n"] == 1
        assert out["unparsed"] == (parsed is None)
        assert out["accuracy"] == float(parsed is not None and parsed == (truth == "Yes"))


def test_yes_no_aggregates():
    # Truths Y, Y, Y, N; answers right, wrong, unparsed, right: accuracy 2/4; recall on Yes
    # 1/3, on No 1/1 -> balanced (1/3 + 1) / 2.
    out = yes_no_accuracy(["Yes.", "no", "maybe", "No, it is normal"], ["Yes", "yes", True, "No"])
    assert out == {"accuracy": 0.5, "balanced_accuracy": pytest.approx(2 / 3), "n": 4, "unparsed": 1}
    # Matched by key, with a single truth class.
    out = yes_no_accuracy({"q1": "Yes", "q2": "No"}, {"q2": "Yes", "q1": "Yes"})
    assert out["accuracy"] == out["balanced_accuracy"] == 0.5


def test_yes_no_bad_input():
    with pytest.raises(ValueError, match=r"truths\[0\]"):
        yes_no_accuracy(["Yes"], ["maybe"])
    with pytest.raises(ValueError, match=r"answers\[0\]"):
        yes_no_accuracy([1], ["Yes"])
    with pytest.raises(ValueError, match="mismatched"):
        yes_no_accuracy(["Yes", "No"], ["Yes"])
    with pytest.raises(ValueError, match="no videos"):
        yes_no_accuracy([], [])


def test_dialogue_metrics_over_answered_turns():
    preds = [
        {"id": "b/val/c1", "turn": 0, "type": "yes_no", "answer": "Yes, a person runs.", "truth": "yes"},
        {"id": "b/val/c2", "turn": 0, "type": "yes_no", "answer": "Yes.", "truth": "no"},
        {"id": "b/val/c3", "turn": 0, "type": "yes_no", "answer": "maybe", "truth": "no"},
        {"id": "b/val/c3", "turn": 4, "type": "yes_no", "answer": "No.", "truth": "no"},
        {"id": "b/val/c1", "turn": 1, "type": "target", "answer": HYPS[0], "references": [REFS[0], "x"]},
        {"id": "b/val/c2", "turn": 1, "type": "target", "answer": HYPS[1], "references": [REFS[1]]},
        {"id": "b/val/c1", "turn": 3, "type": "temporal", "answer": "from frame 1", "references": ["frame 2"]},
    ]
    m = dialogue_metrics(preds)
    assert m["yes_no_accuracy"] == 0.5 and m["yes_no_balanced_accuracy"] == pytest.approx((1 + 1 / 3) / 2)
    assert (m["yes_no_unparsed"], m["yes_no_n"], m["bleu4_target_n"], m["bleu4_trajectory_n"]) == (1, 4, 2, 0)
    assert m["bleu4_target"] == pytest.approx(bleu4(HYPS[:2], [[REFS[0], "x"], [REFS[1]]]))
    assert math.isnan(m["bleu4_trajectory"])
    only_text = dialogue_metrics(preds[4:6])
    assert "yes_no_accuracy" not in only_text and only_text["bleu4_target"] == m["bleu4_target"]


# -- Target category and cut answers ------------------------------------------------------------------

@pytest.mark.parametrize(
    "text, cats",
    [
        ("Target 1 is a black car. Target 2 is a blue car.", {"car"}),
        ("Two cars and three persons.", {"car", "person"}),  # plurals, the corpus's "persons"
        ("Some people and two men near the buses.", {"person", "car"}),
        ("A woman, two children and a pedestrian.", {"person"}),
        ("a person riding a bicycle", {"person", "bicycle"}),
        ("The target is a cyclist in a red top.", {"bicycle"}),
        ("A skater rolls by; a skateboarder too.", {"skateboard"}),
        ("An abandoned black suitcase.", {"bag"}),
        ("a person in a white top and grey shorts with a green backpack", {"person"}),  # carried, not the target
        ("A motorbike.", {"motorcycle"}),
        ("It is something red.", set()),
        ("", set()),
        (None, set()),
    ],
)
def test_categories_named(text, cats):
    assert categories_named(text) == cats


def test_category_vocabulary_covers_the_corpus_categories():
    # the synthetic set's categories (tvad.data.synthetic.agents) and their plurals as the corpus writes them
    for w in ("person", "persons", "cyclist", "cyclists", "skateboarder", "car", "cars", "bag", "bags", "bus", "buses"):
        assert w in CATEGORY_WORDS, w


def test_target_category_accuracy():
    refs = [["Target 1 is a black car. Target 2 is a blue car.", "Target 1 is a black car."],
            ["The target is a person in a red top.", "It is a person wearing a red top."],
            ["The target is a person in a red top."],
            ["Target 1 is a person in a red top. Target 2 is a cyclist."],
            ["The target is a car."],
            ["The target is an object."]]  # names no category: not scored
    answers = ["Two cars.",  # plural: right
               "A man in a red shirt.",  # synonym: right
               "A person riding a bicycle.",  # also names a bicycle the references do not: wrong
               "A person riding a bicycle.",  # both named by the references: right
               "Something red.",  # no category named: wrong, unparsed
               "A car."]
    out = target_category_accuracy(answers, refs)
    assert out == {"accuracy": pytest.approx(3 / 5), "n": 5, "unparsed": 1, "skipped": 1}
    assert math.isnan(target_category_accuracy(["a car"], [["an object"]])["accuracy"])
    with pytest.raises(ValueError, match="no videos"):
        target_category_accuracy([], [])
    with pytest.raises(ValueError, match=r"answers\[0\]"):
        target_category_accuracy([None], [["a car"]])
    with pytest.raises(ValueError, match=r"references\[0\]"):
        target_category_accuracy(["a car"], [[]])


@pytest.mark.parametrize(
    "text, cut",
    [("Yes.", False), ("No, it moves to the left.", False), ("Really?", False), ("Stop!", False),
     ('He shouts "stop."', False), ("(It is normal.)", False), ("**Yes.**", False), ("Yes. ", False),
     ("Yes", True), ("Yes, the car moves to", True), ("", True), ("The target is a", True), (None, True)],
)
def test_answer_cut(text, cut):
    assert answer_cut(text) is cut
    assert answer_cut(text, hit_cap=True) is True


def test_dialogue_metrics_category_and_cut_answers():
    preds = [
        {"id": "a", "turn": 0, "type": "yes_no", "kind": "judgement", "answer": "Yes. Two cars.", "truth": "yes",
         "label": 1, "cut": False},
        {"id": "a", "turn": 1, "type": "target", "kind": "appearance", "answer": "Target 1 is a black car",
         "references": ["Target 1 is a black car. Target 2 is a blue car."], "label": 1, "cut": True},
        {"id": "b", "turn": 0, "type": "yes_no", "kind": "judgement", "answer": "Yes, there", "truth": "yes"},
        {"id": "b", "turn": 1, "type": "target", "kind": "appearance", "answer": "A person.",
         "references": ["The target is a car."]},  # no label: the judgement's truth says anomalous
        {"id": "c", "turn": 0, "type": "yes_no", "kind": "judgement", "answer": "No.", "truth": "no", "label": 0},
        {"id": "c", "turn": 1, "type": "target", "kind": "appearance", "answer": "A car.",
         "references": ["A person."], "label": 0},  # a normal clip: not scored
        {"id": "d", "turn": 1, "type": "target", "kind": "motion_to_appearance", "answer": "A car.",
         "references": ["A person."], "label": 1},  # phase A's kind: not scored
    ]
    m = dialogue_metrics(preds)
    assert m["target_category_accuracy"] == 0.5 and m["target_category_accuracy_n"] == 2
    # cut: the flag where given ("a" turn 1), else the text ("Yes, there" of "b")
    assert m["answers_cut"] == 2 and m["answers_n"] == 7
    none = dialogue_metrics(preds[:1])
    assert math.isnan(none["target_category_accuracy"]) and none["target_category_accuracy_n"] == 0
    assert none["answers_cut"] == 0 and none["answers_n"] == 1
