"""Stage 2's collator: a batch of corpus dialogues -> Qwen2.5-VL inputs with the RAE's prompt block.

The chat template puts the clip in the first user turn and the prompt block before the video
tokens; every label but the assistant answers is masked (-100). The batch carries
`video_grid_thw`, `mm_token_type_ids`, `second_per_grid_ts`, the cached AHD heatmaps and either
`pixel_values_videos` (`stage2.video_input = "pixels"`: the frozen ViT runs every step) or the
cached merged video tokens (`"embeds"`: the same numbers, computed once); with
`stage2.yes_no_weight` != 1 also per-token loss weights on the "Yes"/"No" word of each yes/no
answer, which stage 2's trainer applies.
"""

from __future__ import annotations

from typing import Mapping, Sequence

import torch

from tvad.model.tvad import HEATMAP_KWARG, TVAD, VIDEO_EMBEDS_KWARG
from tvad.train.clips import ClipStore

TOKEN_WEIGHTS = "token_weights"  # collator key: (B, S) per-token loss weights (only when yes_no_weight != 1)


class Collator:
    """{"idx": i} rows -> a padded batch for the Qwen forward (+ heatmaps / video tokens for the hook)."""

    def __init__(self, model: TVAD, records: Sequence[dict], clips: ClipStore, max_length: int | None = 2048,
                 video_input: str = "embeds", yes_no_weight: float = 1.0):
        if video_input not in ("embeds", "pixels"):
            raise ValueError(f"video_input must be 'embeds' or 'pixels', got {video_input!r}")
        if not yes_no_weight > 0:
            raise ValueError(f"yes_no_weight must be > 0, got {yes_no_weight}")
        self.model, self.records, self.clips = model, list(records), clips
        self.max_length, self.video_input, self.yes_no_weight = max_length, video_input, float(yes_no_weight)
        if video_input == "pixels":
            self.clips.pixels = True

    def encode(self, rec: dict):
        clip = self.clips.get(rec["clip"])
        return self.model.encode(rec["messages"], clip, max_length=self.max_length), clip

    def __call__(self, features: Sequence[Mapping]) -> dict:
        recs = [self.records[int(f["idx"])] for f in features]
        items = [self.encode(r) for r in recs]
        B, L = len(items), max(len(e.input_ids) for e, _ in items)
        pad = self.model.tokenizer.pad_token_id
        ids = torch.full((B, L), int(pad), dtype=torch.long)
        att = torch.zeros((B, L), dtype=torch.long)
        lab = torch.full((B, L), -100, dtype=torch.long)
        mm = torch.zeros((B, L), dtype=torch.int32)
        wts = torch.ones((B, L), dtype=torch.float32) if self.yes_no_weight != 1.0 else None
        for b, (e, _) in enumerate(items):  # right padding
            n = len(e.input_ids)
            ids[b, :n], att[b, :n], lab[b, :n], mm[b, :n] = e.input_ids, 1, e.labels, e.mm_token_type_ids
            if wts is not None:
                wts[b, :n] = yes_no_weights(e.labels, recs[b].get("turns", []), self.yes_no_weight)
        batch = {"input_ids": ids, "attention_mask": att, "labels": lab, "mm_token_type_ids": mm,
                 "video_grid_thw": torch.cat([c.grid_thw for _, c in items]).long(),
                 "second_per_grid_ts": torch.cat([c.second_per_grid_ts for _, c in items]).float()}
        if self.model.use_rae:
            batch[HEATMAP_KWARG] = [c.heat for _, c in items]
        if self.video_input == "pixels":
            batch["pixel_values_videos"] = torch.cat([c.pixel_values for _, c in items])
        else:
            batch[VIDEO_EMBEDS_KWARG] = [c.video_embeds for _, c in items]
        if wts is not None:
            batch[TOKEN_WEIGHTS] = wts
        return batch


def answer_starts(labels: torch.Tensor) -> list[int]:
    """Positions of the first supervised token of each assistant answer: labels (S,) -> one index
    per answer (an answer and its <|im_end|> are one run of labels != -100, user turns part them)."""
    on = (labels != -100).tolist()
    return [i for i, x in enumerate(on) if x and (i == 0 or not on[i - 1])]


def yes_no_weights(labels: torch.Tensor, turns: Sequence[Mapping], weight: float) -> torch.Tensor:
    """(S,) loss weights: `weight` at the first token ("Yes" / "No") of every answer whose corpus turn
    is a yes/no question, 1 elsewhere. `turns` are the record's turns, one per assistant answer
    (answers cut off by max_length simply have no weight to carry)."""
    w = torch.ones(labels.shape, dtype=torch.float32)
    for start, turn in zip(answer_starts(labels), turns):
        if turn.get("type") == "yes_no":
            w[start] = float(weight)
    return w
