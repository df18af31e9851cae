"""Dialogue evaluation: a model's answers to held-out dialogues, the paper's metrics on them
(Target / Trajectory BLEU-4, Yes/No accuracy), and whether its clip-level judgement rests on the
heatmap (`judgement_scores`, with and without the AHD's heatmaps).

    metrics, preds = evaluate_model(model, test_records, clips, max_new_tokens=96)
    auroc = judgement_auroc(judgement_scores(model, records, clips, zero_heatmaps=True))
"""

from __future__ import annotations

from typing import Mapping, Sequence

import torch
from sklearn.metrics import roc_auc_score
from tqdm.auto import tqdm

from tvad import dist
from tvad.metrics import dialogue_metrics
from tvad.model.ahd import heat_to_frames
from tvad.model.tvad import TVAD
from tvad.train.clips import ClipStore, HeatmapView


def evaluate_dialogues(model: TVAD, records: Sequence[dict], clips: ClipStore,
                       max_new_tokens: int | Mapping[str, int] = 96,
                       types: Sequence[str] = ("yes_no", "target", "trajectory"), progress: bool = False
                       ) -> tuple[dict[str, float], list[dict]]:
    """Answer every turn of `types` in `records` (previous turns: the reference answers), then
    Yes/No accuracy (and balanced accuracy), Target and Trajectory BLEU-4 (best reference, macro
    over clips). `max_new_tokens`: one limit, or one per turn type. Returns (metrics, predictions).
    Under `accelerate launch` each rank answers its `dist.shard` of the records and every rank gets
    all predictions back, in record order (the same list as one process)."""

    records = list(records)
    mine = dist.shard(records)
    preds: dict[int, list[dict]] = {k: [] for k in range(len(mine))}
    todo = [(k, r, i, t) for k, r in enumerate(mine) for i, t in enumerate(r["turns"]) if t["type"] in types]
    for k, r, i, t in tqdm(todo, desc="answers", disable=not progress):
        clip = clips.get(r["clip"])
        msgs = r["messages"][: 2 + 2 * i]  # system, earlier (reference) turns, this question
        n = max_new_tokens.get(t["type"], 96) if isinstance(max_new_tokens, Mapping) else int(max_new_tokens)
        ans = model.answer(msgs, clip, n)
        preds[k].append({"id": r["id"], "turn": i, "type": t["type"], "kind": t.get("kind"),
                         "question": msgs[-1]["content"], "answer": ans, "references": t["references"],
                         "truth": t.get("truth"), "label": r["clip"].get("label"),
                         "dataset": r["clip"].get("source") or ""})  # Table 3's column
    flat = [p for per_record in dist.gather_shards([preds[k] for k in range(len(mine))], len(records))
            for p in per_record]
    return dialogue_metrics(flat), flat


MAX_NEW_TOKENS = {"yes_no": 8, "target": 48}  # per answer type (only the leading word of a Yes/No counts)


def evaluate_model(model: TVAD, records: Sequence[dict], clips: ClipStore, max_new_tokens: int = 96,
                   progress: bool = False) -> tuple[dict[str, float], list[dict]]:
    """`evaluate_dialogues` with per-type answer lengths (Yes/No 8 tokens: only the leading word
    counts; Target 48; Trajectory `max_new_tokens`)."""
    return evaluate_dialogues(model, records, clips, {**MAX_NEW_TOKENS, "trajectory": int(max_new_tokens)},
                              progress=progress)


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


def example_dialogue(model: TVAD, records: Sequence[dict], clips: ClipStore, max_new_tokens: int = 96,
                     name: str | None = None) -> dict:
    """The model's own multi-turn dialogue (its answers become the history) on one held-out
    abnormal clip, with the clip's frames and upsampled heatmap for display:
    {"id", "frames" (N, H, W, 3), "heat" (N, H, W), "turns": [{"question", "answer", "reference", "type"}]}."""

    cands = [r for r in records if (name is None and r["clip"].get("label")) or r["clip"]["name"] == name]
    if not cands:
        cands = list(records)
    if not cands:
        raise ValueError("no dialogue to show")
    rec = cands[0]
    clip = clips.get(rec["clip"])
    frames = clips.frames(rec["clip"])
    heat = heat_to_frames(clip.heat, frames.shape[1:3], len(frames)).numpy()
    msgs = [rec["messages"][0]]
    turns = []
    for i, t in enumerate(rec["turns"]):
        q = rec["messages"][1 + 2 * i]
        ans = model.answer(msgs + [q], clip, MAX_NEW_TOKENS.get(t["type"], max_new_tokens))
        msgs += [q, {"role": "assistant", "content": ans}]
        turns.append({"question": q["content"], "answer": ans, "reference": t["references"][0], "type": t["type"]})
    return {"id": rec["id"], "frames": frames, "heat": heat, "turns": turns}
