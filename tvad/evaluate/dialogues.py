"""Dialogue evaluation: a model's answers to held-out dialogues (each in full: its token cap only a
safety limit above the longest reference answer, `answer_caps`), the paper's metrics on them
(Target / Trajectory BLEU-4, Yes/No accuracy) with the Target category accuracy and the count of
cut answers, and whether its clip-level judgement rests on the heatmap (`judgement_scores`, with
and without the AHD's heatmaps).

    metrics, preds = evaluate_model(model, test_records, clips, max_new_tokens=128)  # caps' upper bound
    auroc = judgement_auroc(judgement_scores(model, records, clips, zero_heatmaps=True))
"""

from __future__ import annotations

from typing import Mapping, Sequence

import torch
from sklearn.metrics import roc_auc_score
from tqdm.auto import tqdm

from tvad import dist
from tvad.metrics import answer_cut, dialogue_metrics
from tvad.model.ahd import heat_to_frames
from tvad.model.tvad import TVAD
from tvad.train.clips import ClipStore, HeatmapView


CAP_FACTOR, CAP_SLACK = 2, 16  # an answer's token cap: 2 x the longest reference of its turn type + 16


def answer_caps(tokenizer, records: Sequence[dict], types: Sequence[str] | None = None,
                upper: int | None = None) -> dict[str, int]:
    """Per turn type the answer length cap of an evaluation call: a safety limit, not a length
    target. With L the longest reference answer of that type in `records` (in the model's tokens),
    the cap is 2 L + 16, lowered to `upper` (`stage2.eval_max_new_tokens`) when given but never
    below L, so every answer the references could give fits. `types`: those to cap (all present)."""
    longest: dict[str, int] = {}
    for r in records:
        for t in r["turns"]:
            if types is not None and t["type"] not in types:
                continue
            n = max((len(tokenizer(ref, add_special_tokens=False)["input_ids"]) for ref in t.get("references") or []),
                    default=0)
            longest[t["type"]] = max(longest.get(t["type"], 0), n)
    caps = {}
    for typ, n in longest.items():
        cap = CAP_FACTOR * n + CAP_SLACK
        if upper is not None:
            cap = min(cap, int(upper))
        caps[typ] = max(cap, n, 1)
    return caps


def _answer(model: TVAD, msgs: Sequence[dict], clip, cap: int) -> tuple[str, bool]:
    """(answer, cut): the greedy answer within `cap` new tokens, cut when it hit the cap or does not
    end at a sentence end (`tvad.metrics.answer_cut`)."""
    ans, hit = model.answer_capped(msgs, clip, cap)
    return ans, answer_cut(ans, hit)


def evaluate_dialogues(model: TVAD, records: Sequence[dict], clips: ClipStore,
                       max_new_tokens: int | None = None,
                       types: Sequence[str] = ("yes_no", "target", "trajectory"), progress: bool = False
                       ) -> tuple[dict[str, float], list[dict]]:
    """Answer every turn of `types` in `records` (previous turns: the reference answers), in full:
    each answer's token cap is `answer_caps` of its turn type over all `records` (`max_new_tokens`:
    the caps' upper bound, never below the longest reference), and each prediction says whether the
    answer was `cut` (hit its cap, or does not end a sentence). Then Yes/No accuracy (and balanced
    accuracy, from the leading word), Target and Trajectory BLEU-4 (best reference, macro over
    clips), the Target category accuracy and the cut answers (`tvad.metrics.dialogue_metrics`).
    Returns (metrics, predictions). Under `accelerate launch` each rank answers its `dist.shard` of
    the records and every rank gets all predictions back, in record order (the same list as one
    process)."""

    records = list(records)
    caps = answer_caps(model.tokenizer, records, types, max_new_tokens)  # over all records: every rank's
    mine = dist.shard(records)
    preds: dict[int, list[dict]] = {k: [] for k in range(len(mine))}
    todo = [(k, r, i, t) for k, r in enumerate(mine) for i, t in enumerate(r["turns"]) if t["type"] in types]
    for k, r, i, t in tqdm(todo, desc="answers", disable=not progress):
        clip = clips.get(r["clip"])
        msgs = r["messages"][: 2 + 2 * i]  # system, earlier (reference) turns, this question
        ans, cut = _answer(model, msgs, clip, caps[t["type"]])
        preds[k].append({"id": r["id"], "turn": i, "type": t["type"], "kind": t.get("kind"),
                         "question": msgs[-1]["content"], "answer": ans, "references": t["references"],
                         "truth": t.get("truth"), "label": r["clip"].get("label"),
                         "cut": cut, "max_new_tokens": caps[t["type"]],
                         "dataset": r["clip"].get("source") or ""})  # Table 3's column
    flat = [p for per_record in dist.gather_shards([preds[k] for k in range(len(mine))], len(records))
            for p in per_record]
    return dialogue_metrics(flat), flat


def evaluate_model(model: TVAD, records: Sequence[dict], clips: ClipStore, max_new_tokens: int | None = None,
                   progress: bool = False) -> tuple[dict[str, float], list[dict]]:
    """`evaluate_dialogues` of the Yes/No, Target and Trajectory turns, every answer in full (its
    cap: `answer_caps`, with `max_new_tokens`, e.g. `stage2.eval_max_new_tokens`, as the caps'
    upper bound, never below the longest reference answer)."""
    return evaluate_dialogues(model, records, clips, max_new_tokens, progress=progress)


@torch.no_grad()
def judgement_scores(model: TVAD, records: Sequence[dict], clips: ClipStore,
                     zero_heatmaps: bool = False) -> list[dict]:
    """Does the answer rest on the heatmap? For each record's clip-level judgement ("Is there any
    anomaly in this video?"), the teacher-forced p_yes = P(Yes) / (P(Yes) + P(No)) of the answer's
    first token, given the dialogue up to that question. `zero_heatmaps=True` feeds the RAE an
    all-zero heatmap instead of the AHD's (Table 4's "w/o AHD" at inference), so the gap between the
    two shows how much the judgement reads the heatmap. Returns [{"id", "truth", "p_yes"}]."""
    if zero_heatmaps:
        clips = HeatmapView(clips, "zeros")
    tok = model.tokenizer
    yes, no = (tok(w, add_special_tokens=False)["input_ids"][0] for w in ("Yes", "No"))
    records = list(records)
    mine = []  # per record of this rank's shard (all records without a launcher), gathered below
    for r in dist.shard(records):
        rows = []
        users = [k for k, m in enumerate(r["messages"]) if m["role"] == "user"]
        for i, t in enumerate(r["turns"]):
            if t.get("kind") != "judgement" or i >= len(users):
                continue
            clip = clips.get(r["clip"])
            logits = model.forward(r["messages"][:users[i] + 1], clip, labels=False,
                                   add_generation_prompt=True).logits[0, -1]
            p = logits[[yes, no]].float().softmax(-1)
            rows.append({"id": r["id"], "truth": str(t["truth"]), "p_yes": float(p[0])})
        mine.append(rows)
    return [row for rows in dist.gather_shards(mine, len(records)) for row in rows]


def judgement_auroc(scores: Sequence[Mapping]) -> float | None:
    """ROC-AUC of p_yes against the truth over `judgement_scores` rows (0.5: the judgement does not
    separate anomalous from normal clips); None with one class only."""

    y = [s["truth"] == "yes" for s in scores]
    if len(set(y)) < 2:
        return None
    return float(roc_auc_score(y, [s["p_yes"] for s in scores]))


def example_dialogue(model: TVAD, records: Sequence[dict], clips: ClipStore, max_new_tokens: int | None = None,
                     name: str | None = None, record_id: str | None = None) -> dict:
    """The model's own multi-turn dialogue (its answers become the history, each in full: caps of
    `answer_caps` over `records`, `max_new_tokens` their upper bound) on one held-out clip: the record
    `record_id`, else the clip `name`, else the first abnormal one; with the clip's frames and upsampled
    heatmap for display: {"id", "frames" (N, H, W, 3), "heat" (N, H, W), "turns": [{"question",
    "answer", "cut", "reference", "references", "type", "kind", "truth"}]}."""

    records = list(records)
    if record_id is not None:
        cands = [r for r in records if r["id"] == record_id]
    else:
        cands = [r for r in records if (name is None and r["clip"].get("label")) or r["clip"]["name"] == name]
    if not cands and record_id is None:
        cands = list(records)
    if not cands:
        raise ValueError("no dialogue to show" if record_id is None else f"no dialogue {record_id!r}")
    rec = cands[0]
    caps = answer_caps(model.tokenizer, records, upper=max_new_tokens)
    clip = clips.get(rec["clip"])
    frames = clips.frames(rec["clip"])
    heat = heat_to_frames(clip.heat, frames.shape[1:3], len(frames)).numpy()
    msgs = [rec["messages"][0]]
    turns = []
    for i, t in enumerate(rec["turns"]):
        q = rec["messages"][1 + 2 * i]
        ans, cut = _answer(model, msgs + [q], clip, caps[t["type"]])
        msgs += [q, {"role": "assistant", "content": ans}]
        turns.append({"question": q["content"], "answer": ans, "cut": cut, "reference": t["references"][0],
                      "references": list(t["references"]), "type": t["type"], "kind": t.get("kind"),
                      "truth": t.get("truth")})
    return {"id": rec["id"], "frames": frames, "heat": heat, "turns": turns}
