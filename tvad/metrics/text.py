"""Text metrics for T-VAD's dialogue: BLEU-4 of descriptions, accuracy of Yes/No answers, and both
over a set of answered dialogue turns (`dialogue_metrics`)."""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from typing import Any

import numpy as np
from sacrebleu import sentence_bleu

from tvad.metrics.frame import _pair_videos

__all__ = ["bleu4", "yes_no_accuracy", "dialogue_metrics"]

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
        their counts ``bleu4_target_n``, ``bleu4_trajectory_n``.
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
    return m
