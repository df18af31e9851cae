"""Decoder-driven heatmaps: where the language model looks when it answers (the paper's
"Video/Image Decoder" comparison, the baseline the AHD is shown to beat).

For a clip and a question, the model answers (greedy), then one teacher-forced forward pass over
[prompt ; video tokens ; question ; answer] returns the decoder's attention weights (the eager
attention path, switched on for that pass only). The attention of the answer tokens (and of the
position that predicts the first of them) to each video token, averaged over layers, heads and
those query positions, is a map over Qwen2.5-VL's merged video-token grid (T/2, h/2, w/2) in raster
order. It is min-max normalised over the clip (attention is relative: the map says where, not
whether), bilinearly upsampled to the frame, and shared by both frames of each temporal pair.

    from tvad.model.decoder_heatmap import decoder_heatmaps
    heat = decoder_heatmaps(model, frames)            # float32 (T, H, W) in [0, 1]
    res = decoder_attention(model, frames)            # .heat, .grid (T/2, h/2, w/2), .answer

`model` is a `tvad.model.TVAD` (what `tvad.load` returns), with or without RAE; it works on
the tiny backbone and on the 7B alike. Long videos go through windows of `window` frames.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch

from tvad.data.video import probe, read_frames
from tvad.model.ahd import heat_to_frames
from tvad.model.backbone import check_frames, frame_windows
from tvad.model.tvad import DEFAULT_SYSTEM, HEATMAP_KWARG

DEFAULT_QUESTION = "Is there any anomaly in this video? Where is it?"

__all__ = ["DecoderAttention", "decoder_attention", "decoder_heatmaps", "DEFAULT_QUESTION"]


@dataclass
class DecoderAttention:
    heat: np.ndarray  # float32 (T, H, W) in [0, 1], frame resolution
    grid: np.ndarray  # float32 (T/2, h/2, w/2): raw mean attention per video token
    answer: str  # the answer whose tokens' attention made the map
    num_queries: int  # query positions averaged


@contextlib.contextmanager
def eager_attention(qwen):
    """Temporarily switch the model's attention to the eager path (the one that returns weights)."""
    old = qwen.config._attn_implementation
    if old == "eager":
        yield
        return
    qwen.set_attn_implementation("eager")
    try:
        yield
    finally:
        qwen.set_attn_implementation(old)


@torch.no_grad()
def _attention_grid(model, clip, question: str, answer: str | None, max_new_tokens: int,
                    layers: Sequence[int] | None) -> tuple[torch.Tensor, str, int]:
    system = getattr(model, "system_prompt", None) or DEFAULT_SYSTEM
    msgs = [{"role": "system", "content": system}, {"role": "user", "content": question}]
    if answer is None:
        answer = model.answer(msgs, clip, max_new_tokens=max_new_tokens)
    prompt = model.encode(msgs, clip, add_generation_prompt=True)
    full = model.encode(msgs + [{"role": "assistant", "content": answer}], clip)
    ids = full.input_ids
    n_prompt = len(prompt.input_ids)
    if not torch.equal(ids[:n_prompt], prompt.input_ids):
        raise RuntimeError("the chat template renders the prompt differently with and without the answer")
    # queries: the position predicting the first answer token, then every answer token but the closing one
    n_ans = int((full.labels[n_prompt:] != -100).sum()) - 1  # minus <|im_end|>
    q = torch.arange(n_prompt - 1, n_prompt + max(0, n_ans))
    vid = torch.nonzero(ids == model.video_token_id).flatten()
    t, h, w = (int(v) for v in clip.grid_thw[0])
    if len(vid) != t * h * w // 4:
        raise RuntimeError(f"{len(vid)} video tokens in the input, the grid {t}x{h}x{w} needs {t * h * w // 4}")
    inputs = model.model_inputs(full, clip)
    qwen = model.qwen
    was = qwen.training
    qwen.eval()
    try:
        with eager_attention(qwen):
            out = qwen(**inputs, **{HEATMAP_KWARG: [clip.heat]}, **model.video_kwargs(clip), output_attentions=True)
    finally:
        qwen.train(was)
    att = out.attentions
    if not att or att[0] is None:
        raise RuntimeError("the decoder returned no attention weights (eager attention unavailable)")
    sel = range(len(att)) if layers is None else layers
    dev = att[0].device
    qi, vi = q.to(dev), vid.to(dev)
    a = torch.stack([att[i][0][:, qi][:, :, vi].float() for i in sel])  # (L, heads, Q, N_v)
    grid = a.mean(dim=(0, 1, 2)).reshape(t, h // 2, w // 2).cpu()  # merged tokens in raster order
    return grid, answer, len(q)


def decoder_attention(model, frames, fps: float | None = None, question: str = DEFAULT_QUESTION,
                      answer: str | None = None, max_new_tokens: int = 24, layers: Sequence[int] | None = None,
                      window: int = 32) -> DecoderAttention:
    """Decoder-driven heatmap of a clip (path or uint8 (T, H, W, 3)); see the module docstring.

    answer: teacher-force this answer instead of generating one. layers: decoder layers to average
    (default all). window: frames per pass for long videos (even)."""
    if isinstance(frames, (str, bytes)) or hasattr(frames, "__fspath__"):
        fps = fps or probe(frames).fps
        frames = read_frames(frames)
    frames = check_frames(frames)
    if window < 2 or window % 2:
        raise ValueError(f"window must be even and >= 2, got {window}")
    H, W = frames.shape[1:3]
    grids, heat_parts, answers, nq = [], [], [], 0
    for chunk, keep in frame_windows(frames, window):
        clip = model.encode_clip(chunk, fps)
        g, ans, k = _attention_grid(model, clip, question, answer, max_new_tokens, layers)
        grids.append(g)
        answers.append(ans)
        nq += k
        heat_parts.append(keep)
    grid = torch.cat(grids)  # (T', h', w')
    lo, hi = grid.min(), grid.max()
    norm = (grid - lo) / (hi - lo) if hi > lo else torch.zeros_like(grid)
    # each temporal token covers a frame pair; windows may end on a padded pair
    out, tok = [], 0
    for g, keep in zip(grids, heat_parts):
        out.append(heat_to_frames(norm[tok:tok + len(g)], (H, W), keep))  # (keep, H, W)
        tok += len(g)
    heat = torch.cat(out).clamp(0, 1).numpy().astype(np.float32)
    return DecoderAttention(heat, grid.numpy().astype(np.float32), answers[0] if len(set(answers)) == 1
                            else " | ".join(answers), nq)


def decoder_heatmaps(model, frames, fps: float | None = None, **kw) -> np.ndarray:
    """float32 (T, H, W) in [0, 1]: `decoder_attention(...).heat`."""
    return decoder_attention(model, frames, fps, **kw).heat
