"""tvad.metrics text metrics: BLEU-4 against sacrebleu, Yes/No parsing and accuracy, dialogue metrics."""

import math

import numpy as np
import pytest
import sacrebleu

from tvad.metrics import bleu4, dialogue_metrics, yes_no_accuracy

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
