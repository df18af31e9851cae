"""Text metrics for T-VAD's dialogue: BLEU-4 of descriptions, accuracy of Yes/No answers, whether a
Target answer names the right kind of object (`target_category_accuracy`, with the one category
vocabulary `CATEGORY_WORDS`), whether an answer was cut short (`answer_cut`), and all of them over a
set of answered dialogue turns (`dialogue_metrics`)."""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from typing import Any

import numpy as np
from sacrebleu import sentence_bleu

from tvad.metrics.frame import _pair_videos

__all__ = ["bleu4", "yes_no_accuracy", "dialogue_metrics", "target_category_accuracy", "categories_named",
           "answer_cut", "CATEGORY_WORDS"]

_LEADING_WORD = re.compile(r"[\W_]*([^\W_]+)")


def bleu4(hypotheses: Any, references: Any) -> float:
    """Macro-averaged best-reference sentence BLEU-4, 0-100 as papers print it.

    Args:
        hypotheses: per video one generated string (a list, or a dict keyed by video).
        references: per video a non-empty list of reference strings (list or dict, like
            ``hypotheses``).

    Per video: sacrebleu's sentence BLEU-4 (``sentence_bleu`` defaults: tokeniser ``13a``,
    exponential smoothing) of the hypothesis against each reference alone; the best is kept.
    The result is the mean over videos.
    """
    best = []
    for key, (hyp, refs) in _pair_videos(hypotheses=hypotheses, references=references):
        if not isinstance(hyp, str):
            raise ValueError(f"hypotheses[{key!r}]: expected a string, got {type(hyp).__name__}")
        if isinstance(refs, str) or not refs:
            raise ValueError(f"references[{key!r}]: expected a non-empty list of strings")
        for j, ref in enumerate(refs):
            if not isinstance(ref, str):
                raise ValueError(f"references[{key!r}] item {j}: expected a string")
        best.append(max(sentence_bleu(hyp, [ref]).score for ref in refs))
    return float(np.mean(best))


def _yes_no(text: Any) -> bool | None:
    """'Yes, a person...' -> True, 'no.' -> False, anything else -> None (leading word only,
    case- and punctuation-insensitive)."""
    if isinstance(text, (bool, np.bool_)):
        return bool(text)
    if not isinstance(text, str):
        return None
    m = _LEADING_WORD.match(text.lower())
    word = m.group(1) if m else ""
    return True if word == "yes" else False if word == "no" else None


def yes_no_accuracy(answers: Any, truths: Any) -> dict[str, float | int]:
    """Accuracy of Yes/No answers.

    Args:
        answers: per question the model's answer text (a list, or a dict keyed by question);
            normalised to Yes/No by its leading word, case- and punctuation-insensitively
            ("Yes, a person..." -> Yes, "**No**." -> No). Anything else is unparsed.
        truths: per question the true answer: "Yes"/"No" (same normalisation) or a bool.

    Returns:
        ``{"accuracy", "balanced_accuracy", "n", "unparsed"}``: accuracy over all n questions,
        unparsed answers counting as wrong; balanced accuracy = mean over the truth classes
        present of the fraction answered correctly; unparsed = how many answers were neither.
    """
    truth, correct, unparsed = [], [], 0
    for key, (ans, tru) in _pair_videos(answers=answers, truths=truths):
        t = _yes_no(tru)
        if t is None:
            raise ValueError(f"truths[{key!r}]: {tru!r} is neither Yes nor No")
        if not isinstance(ans, str):
            raise ValueError(f"answers[{key!r}]: expected a string, got {type(ans).__name__}")
        a = _yes_no(ans)
        unparsed += a is None
        truth.append(t)
        correct.append(a == t)
    truth, correct = np.array(truth), np.array(correct)
    per_class = [correct[truth == c].mean() for c in (True, False) if (truth == c).any()]
    return {
        "accuracy": float(correct.mean()),
        "balanced_accuracy": float(np.mean(per_class)),
        "n": len(truth),
        "unparsed": int(unparsed),
    }


# -- object categories --------------------------------------------------------------------------------

# The one vocabulary of object kinds: a word (singular; its plural forms are added below) -> its
# category. The categories are the objects of the data: the synthetic set's person, cyclist (bicycle),
# skateboarder (skateboard), car and bag (tvad.data.synthetic.agents), UBnormal's people and vehicles
# (its "bicycle" / "skateboard" classes are mapped to cyclist / skateboarder by tvad.data.ubnormal);
# ShanghaiTech's regions are an "object" of no category. The corpus (tvad.corpus.narratives) writes
# the category word itself ("a black car", "two persons", "a cyclist").
_CATEGORY_SYNONYMS = {
    "person": ("person", "man", "woman", "pedestrian", "people", "child", "human", "boy", "girl", "walker",
               "runner", "jogger"),
    "car": ("car", "vehicle", "truck", "van", "bus", "taxi", "automobile", "suv", "lorry"),
    "bicycle": ("bicycle", "bike", "cyclist", "biker", "bicyclist"),
    "skateboard": ("skateboard", "skater", "skateboarder"),
    "bag": ("bag", "backpack", "suitcase", "luggage", "handbag", "briefcase", "parcel", "package"),
    "motorcycle": ("motorcycle", "motorbike", "motorcyclist", "scooter"),
}
_IRREGULAR_PLURALS = {"person": ("persons", "people"), "man": ("men",), "woman": ("women",), "child": ("children",),
                      "bus": ("buses", "busses"), "people": ("peoples",), "luggage": ()}
CATEGORY_WORDS: dict[str, str] = {}
for _cat, _words in _CATEGORY_SYNONYMS.items():
    for _w in _words:
        for _form in (_w, *_IRREGULAR_PLURALS.get(_w, (_w + "s",))):
            CATEGORY_WORDS[_form] = _cat
# What a target carries or wears is not the target: "a person in a red top with a green backpack" names
# a person (the corpus's appearance phrasing, tvad.corpus.narratives.describe_appearance). Such a clause
# runs to the next comma or sentence end.
_ACCESSORY = re.compile(r"\b(?:with|carrying|holding|wearing|pushing|pulling)\b[^.;:!?,]*")
_WORD = re.compile(r"[a-z]+")


def categories_named(text: Any) -> set[str]:
    """The object categories (`CATEGORY_WORDS`' values) a text names, leaving out carried or worn
    things ("... with a backpack"): "Target 1 is a black car. Target 2 is a man." -> {"car", "person"};
    "a person riding a bicycle" -> {"person", "bicycle"}. Not a string -> empty."""
    if not isinstance(text, str):
        return set()
    t = _ACCESSORY.sub(" ", text.lower())
    return {CATEGORY_WORDS[w] for w in _WORD.findall(t) if w in CATEGORY_WORDS}


def target_category_accuracy(answers: Any, references: Any) -> dict[str, float | int]:
    """Does each Target answer name the right kind of object?

    Args:
        answers: per question the model's answer text (a list, or a dict keyed by question).
        references: per question a non-empty list of reference answers (list or dict, like ``answers``).

    An answer is right when the set of categories it names (`categories_named`) is non-empty and a
    subset of those its references name together: "a man" against "Target 1 is a person." is right,
    "a person riding a bicycle" is right only when the references name both. Questions whose
    references name no category (ShanghaiTech's "object") cannot be scored and are left out.

    Returns:
        ``{"accuracy", "n", "unparsed", "skipped"}``: accuracy over the n scored questions (NaN when
        none), unparsed = answers naming no category (counted wrong), skipped = questions left out.
    """
    correct, unparsed, skipped = [], 0, 0
    for key, (ans, refs) in _pair_videos(answers=answers, references=references):
        if not isinstance(ans, str):
            raise ValueError(f"answers[{key!r}]: expected a string, got {type(ans).__name__}")
        if isinstance(refs, str) or not refs:
            raise ValueError(f"references[{key!r}]: expected a non-empty list of strings")
        want = set().union(*(categories_named(r) for r in refs))
        if not want:
            skipped += 1
            continue
        got = categories_named(ans)
        unparsed += not got
        correct.append(bool(got) and got <= want)
    return {"accuracy": float(np.mean(correct)) if correct else math.nan, "n": len(correct),
            "unparsed": int(unparsed), "skipped": int(skipped)}


# -- cut answers --------------------------------------------------------------------------------------

_SENTENCE_END = re.compile(r"[.!?][\"'\u201d\u2019)\]}*]*$")


def answer_cut(text: Any, hit_cap: bool = False) -> bool:
    """Whether an answer was cut short: it hit the generation's token cap (`hit_cap`), or it does not
    end at a sentence end (its last non-space character one of ``.!?``, possibly followed by closing
    quotes, brackets or markdown stars). An empty answer is cut."""
    if hit_cap:
        return True
    return not (isinstance(text, str) and _SENTENCE_END.search(text.rstrip()))


def _anomalous(p: dict, judged_yes: dict) -> bool:
    """A Target turn about an anomalous clip: its clip's `label`, else its dialogue's judgement truth
    (phase B asks for the target's appearance only about anomalous clips: True without either)."""
    if p.get("label") is not None:
        return bool(p["label"])
    return judged_yes.get(p["id"], True)


def dialogue_metrics(preds: Sequence[dict]) -> dict[str, float]:
    """Yes/No accuracy and balanced accuracy, Target and Trajectory BLEU-4 (best reference, macro
    over answers) of answered turns, as `tvad.evaluate.dialogues.evaluate_dialogues` reports them.

    Args:
        preds: one dict per answered turn with ``id`` (dialogue), ``turn`` (its index), ``type``
            ("yes_no", "target", "trajectory", ...), ``answer``, and ``truth`` (Yes/No turns) or
            ``references`` (described turns).

    Returns:
        ``yes_no_accuracy``, ``yes_no_balanced_accuracy``, ``yes_no_unparsed``, ``yes_no_n`` (when
        there are Yes/No turns); ``bleu4_target``, ``bleu4_trajectory`` (NaN without such turns) and
        their counts ``bleu4_target_n``, ``bleu4_trajectory_n``; ``target_category_accuracy`` (NaN
        without scorable turns) and ``target_category_accuracy_n``: `target_category_accuracy` over
        the Target turns (``kind`` "appearance" or none) of anomalous clips (``label``, else the
        dialogue's judgement ``truth``); ``answers_cut`` and ``answers_n``: how many of all the
        answers were cut short (a turn's ``cut`` flag, set by the evaluation when the answer hit its
        token cap or does not end a sentence; `answer_cut` of the text when the flag is missing).
    """
    m: dict[str, float] = {}
    key = lambda p: f"{p['id']}#{p['turn']}"  # noqa: E731
    yn = [p for p in preds if p["type"] == "yes_no"]
    if yn:
        acc = yes_no_accuracy({key(p): p["answer"] for p in yn}, {key(p): p["truth"] for p in yn})
        m["yes_no_accuracy"] = float(acc["accuracy"])
        m["yes_no_balanced_accuracy"] = float(acc["balanced_accuracy"])
        m["yes_no_unparsed"] = int(acc["unparsed"])
        m["yes_no_n"] = int(acc["n"])
    for typ, k in (("target", "bleu4_target"), ("trajectory", "bleu4_trajectory")):
        ps = [p for p in preds if p["type"] == typ]
        m[k] = float(bleu4({key(p): p["answer"] for p in ps}, {key(p): p["references"] for p in ps})) if ps \
            else math.nan
        m[f"{k}_n"] = len(ps)
    judged_yes = {p["id"]: _yes_no(p.get("truth")) is True for p in preds if p.get("kind") == "judgement"}
    tg = [p for p in preds if p["type"] == "target" and p.get("kind") in (None, "appearance")
          and _anomalous(p, judged_yes)]
    cat = target_category_accuracy({key(p): p["answer"] for p in tg}, {key(p): p["references"] for p in tg}) \
        if tg else {"accuracy": math.nan, "n": 0}
    m["target_category_accuracy"] = float(cat["accuracy"])
    m["target_category_accuracy_n"] = int(cat["n"])
    m["answers_cut"] = int(sum(bool(p["cut"]) if p.get("cut") is not None else answer_cut(p["answer"])
                               for p in preds))
    m["answers_n"] = len(preds)
    return m
