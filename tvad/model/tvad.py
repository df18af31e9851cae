"""The full T-VAD model: frozen Qwen2.5-VL + AHD heatmaps + RAE prompts injected into the decoder (eq. 13).

    model = tvad.model.load("runs/cpu")               # a checkpoint dir or a run dir (also `tvad.load`)
    answer, history = model.chat("clip.mp4", "Is there any anomaly in this video?")
    answer, history = model.chat("clip.mp4", "How does it move?", history)
    det = model.detect("clip.mp4")                    # heatmaps, frame scores, regions (the AHD's API)

This module: the clip and dialogue encodings (`ClipInputs`, `encode_dialogue`) and the `TVAD`
model. Beside it: `inject` (eq. 13: the prompt tokens, `PromptInjector` and its hook), `chat`
(History, ChatSession), `checkpoint` (save_model, load), `build` (a model from a configuration).

Eq. 13, the way Qwen2.5-VL itself places its video tokens: three special tokens are added to the
tokenizer (`<|anomaly_start|>`, `<|anomaly_pad|>`, `<|anomaly_end|>`; Qwen's padded embedding
table has spare rows, so nothing is resized, and never down), and the first user turn carries

    <|anomaly_start|> <|anomaly_pad|> x (T * num_prompts) <|anomaly_end|>
    <|vision_start|> <|video_pad|> x N_v <|vision_end|> question

The placeholder rows of the input embeddings are replaced by the RAE's prompts P (T, n, D_p)
flattened time-major. The replacement is a forward pre-hook on the Qwen model's inner
`Qwen2_5_VLModel` (`qwen.model`), where the `PromptInjector` (RAE + the three trainable token rows)
is registered as the submodule `qwen.model.anomaly_injector`: the hook builds `inputs_embeds`
from `input_ids` and overwrites the prompt rows, and leaves `input_ids` in place, so the video
mask and the multimodal rotary positions are computed from the ids exactly as without injection.
Because it is a hook on a submodule, it works unchanged under TRL's SFTTrainer (whose fused LM
head calls `qwen.model` directly), under peft, under `accelerate launch`, and in `generate()`.

The heatmap of a clip (`ClipInputs.heat`) is the AHD's on the patch grid of the frames at the
backbone's `max_pixels` (`tvad.model.detector.clip_heatmap`, the very map `detect` returns), while
the video tokens may be on a smaller grid (the token budget below). The RAE reads the heatmap
resampled to the video token grid (`tvad.model.rae.heatmap_on_token_grid`, eq. 8-12), and that
happens in one place: `PromptInjector.rae_inputs` (called by `prompts`), with each sequence's grid
taken from the forward's `video_grid_thw` (the hook pairs its rows with the sequences holding video
tokens), or for `generate()`, which does not pass it on, from `pending(video_grid_thw=...)`.
Without a budget the two grids agree and the resampling is the identity.

Heatmaps reach the hook either as the extra forward kwarg `anomaly_heatmaps` (a list of (T, h, w)
tensors, one per sequence; the hook pops it, the stage-2 collator supplies it) or, for
`generate()` (which rejects unknown kwargs), through `PromptInjector.pending(...)`. The cached
merged video tokens V may likewise come as `anomaly_video_embeds` (turned into Qwen's own
`mm_encoder_outputs`), so a frozen ViT need not run on every training step.

Switches (paper Table 4): `use_rae=False` drops the prompt block from the text (the decoder sees
only the video and the dialogue); `use_ahd=False` keeps the prompt block but feeds the RAE an
all-zero heatmap (no pixel evidence). `TVAD.parameter_counts()` reports each part.

Video token budget: `meta["video_max_tokens"]` (`stage2.video_max_tokens`, saved in tvad.json) caps
each clip's merged video tokens in `TVAD.preprocess` / `encode_clip`, so training, evaluation and
chat see the same resolution (None: every frame at the backbone's `max_pixels`). The budget shrinks
the video tokens only: the heatmap stays at the AHD's resolution (`encode_clip`: one ViT pass serves
both without a budget, a second, budgeted pass makes the tokens with one).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
import torch
from torch import nn

from tvad.data.video import VideoError, probe, read_frames
from tvad.model.backbone import TEMPORAL_PATCH, check_frames
from tvad.model.chat import ChatSession, History, check_messages, check_question, frames_fingerprint
from tvad.model.detector import TVADDetector, check_fps, clip_features, clip_heatmap, heat_from_features
from tvad.model.inject import (  # noqa: F401  (eq. 13; re-exported: the names callers import from here)
    HEATMAP_KWARG, INJECTOR_NAME, MEAN_CHUNK_ROWS, PROMPT_TOKENS, VIDEO_EMBEDS_KWARG, VIDEO_PAD, PromptInjector,
    TVADError, _row_mean, add_prompt_tokens, attach_injector)
from tvad.model.rae import RegionAwareAnomalyEncoder, new_rae, rae_kwargs

DEFAULT_SYSTEM = "You are a helpful assistant."
DEFAULT_MAX_FRAMES = 40  # chat: longer videos are subsampled evenly to this many frames (paper clips: 8-40)


# -- inputs -----------------------------------------------------------------------------------------

@dataclass
class ClipInputs:
    """One clip, ready for the decoder: the frozen ViT's merged tokens and the AHD heatmap."""

    video_embeds: torch.Tensor | None  # (N_v, D_p) merged video tokens V (what the decoder sees), or None
    heat: torch.Tensor  # (T, h_a, w_a) float32 AHD heatmap (`clip_heatmap`) on the patch grid at max_pixels (zeros without AHD)
    grid_thw: torch.Tensor  # (1, 3) long: (T, h, w) patch grid of the video tokens (budgeted); the RAE reads heat on (h, w)
    second_per_grid_ts: torch.Tensor  # (1,) float: 2 / fps
    num_frames: int  # input frames
    video_id: str = ""  # fingerprint of the frames (ties a chat history to its video)
    pixel_values: torch.Tensor | None = None  # processor patches, only when asked for

    @property
    def num_video_tokens(self) -> int:
        """N_v = t * h * w / 4 (Qwen's 2x2 spatial merge)."""
        return int(self.grid_thw.prod()) // 4


@dataclass
class Encoded:
    input_ids: torch.Tensor  # (S,) long
    labels: torch.Tensor  # (S,) long, -100 except assistant answers (+ their <|im_end|>)
    mm_token_type_ids: torch.Tensor  # (S,) int: 2 at video tokens
    num_turns: int  # assistant turns kept (after truncation)


def render(tokenizer, messages: Sequence[dict], num_video_tokens: int, num_prompt_tokens: int,
           add_generation_prompt: bool = False) -> str:
    """Qwen2.5-VL's chat template over `messages` ({role, content: str}), the clip attached to the
    first user turn as `[prompt block] <video> question`, the placeholders expanded."""
    if not messages:
        raise TVADError("no messages")
    tm, first = [], True
    for m in messages:
        if m["role"] == "user" and first:
            content = []
            if num_prompt_tokens:
                content.append({"type": "text", "text": "".join(PROMPT_TOKENS)})
            content += [{"type": "video"}, {"type": "text", "text": m["content"]}]
            tm.append({"role": "user", "content": content})
            first = False
        else:
            tm.append({"role": m["role"], "content": m["content"]})
    if first:
        raise TVADError("the dialogue has no user turn to attach the video to")
    text = tokenizer.apply_chat_template(tm, tokenize=False, add_generation_prompt=add_generation_prompt)
    if text.count(VIDEO_PAD) != 1:
        raise TVADError(f"expected one {VIDEO_PAD} in the rendered dialogue, found {text.count(VIDEO_PAD)}")
    text = text.replace(VIDEO_PAD, VIDEO_PAD * int(num_video_tokens))
    if num_prompt_tokens:
        text = text.replace(PROMPT_TOKENS[1], PROMPT_TOKENS[1] * int(num_prompt_tokens), 1)
    return text


def encode_dialogue(tokenizer, messages: Sequence[dict], num_video_tokens: int, num_prompt_tokens: int,
                    video_token_id: int, add_generation_prompt: bool = False,
                    max_length: int | None = None, prompt_token_ids: Iterable[int] = ()) -> Encoded:
    """Token ids, labels (-100 except the assistant answers and their closing <|im_end|>; the
    prompt-token positions always -100) and mm_token_type_ids of a dialogue. Too long for
    `max_length`: later turns are dropped whole; if even the first turn does not fit, an error."""
    msgs = list(messages)
    while True:
        text = render(tokenizer, msgs, num_video_tokens, num_prompt_tokens, add_generation_prompt)
        enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
        ids = enc["input_ids"]
        if max_length is None or len(ids) <= max_length:
            break
        n_user = sum(m["role"] == "user" for m in msgs)
        if n_user <= 1:
            raise TVADError(f"the first turn alone is {len(ids)} tokens (video {num_video_tokens}, prompts "
                            f"{num_prompt_tokens}), over max_length {max_length}")
        cut = max(i for i, m in enumerate(msgs) if m["role"] == "user")  # drop the last user turn and after
        msgs = msgs[:cut]
    labels = [-100] * len(ids)
    spans, pos = [], 0  # character spans of each assistant answer and its closing <|im_end|>
    head, end = "<|im_start|>assistant\n", "<|im_end|>"
    while True:
        a = text.find(head, pos)
        if a < 0:
            break
        s = a + len(head)
        e = text.find(end, s)
        if e < 0:
            break
        spans.append((s, e + len(end)))
        pos = e + len(end)
    for i, (s, e) in enumerate(enc["offset_mapping"]):
        if e > s and any(a <= s and e <= b for a, b in spans):
            labels[i] = ids[i]
    ids_t = torch.tensor(ids, dtype=torch.long)
    lab = torch.tensor(labels, dtype=torch.long)
    for t in prompt_token_ids:
        lab[ids_t == int(t)] = -100
    lab[ids_t == int(video_token_id)] = -100
    mm = torch.where(ids_t == int(video_token_id), 2, 0).to(torch.int32)
    return Encoded(ids_t, lab, mm, sum(m["role"] == "assistant" for m in msgs))


def even_indices(num_frames: int, max_frames: int) -> np.ndarray | None:
    """`max_frames` frame indices spread evenly over `num_frames` (first and last kept), or None
    when the video is no longer than that (every frame kept)."""
    if num_frames <= max_frames:
        return None
    return np.linspace(0, num_frames - 1, max_frames).round().astype(int)


# -- the model ----------------------------------------------------------------------------------------

class TVAD:
    """Backbone (frozen Qwen2.5-VL, LoRA merged after stage 2) + AHD + RAE, with `detect` and `chat`."""

    def __init__(self, backbone, ahd=None, ahd_meta: dict | None = None, rae: RegionAwareAnomalyEncoder | None = None,
                 use_ahd: bool = True, use_rae: bool = True, meta: dict | None = None, window: int = 32):
        self.backbone = backbone
        self.ahd = ahd.to(backbone.device).eval() if ahd is not None else None
        self.ahd_meta = dict(ahd_meta or {})
        self.meta = dict(meta or {})
        self.use_rae = bool(use_rae) and rae is not None
        self.use_ahd = bool(use_ahd) and ahd is not None
        self.token_ids = add_prompt_tokens(self.qwen, self.tokenizer)
        emb = self.qwen.get_input_embeddings().weight
        rows = torch.stack([emb[self.token_ids[t]] for t in PROMPT_TOKENS]).detach()
        self.rae = rae
        self.injector = PromptInjector(rae, self.token_ids, rows, video_token_id=self.video_token_id)
        attach_injector(self.qwen, self.injector)
        self.injector.eval()
        for p in self.injector.parameters():
            p.requires_grad_(False)
        bbm = self.ahd_meta.get("backbone") or {}
        self.layers = sorted(int(l) for l in (bbm.get("layers") or self.meta.get("layers") or []))
        self.fps = float(self.meta.get("fps") or 2.0)
        self.max_frames = int(self.meta.get("max_frames") or DEFAULT_MAX_FRAMES)
        vmt = self.meta.get("video_max_tokens")  # stage2.video_max_tokens: cap on merged video tokens per clip
        self.video_max_tokens = None if vmt is None else int(vmt)
        self.system_prompt = self.meta.get("system_prompt") or DEFAULT_SYSTEM
        self.window = window
        self._detector = None

    # -- parts ----------------------------------------------------------------------------------
    @property
    def qwen(self):
        return self.backbone.model

    @property
    def tokenizer(self):
        return self.backbone.tokenizer

    @property
    def processor(self):
        return self.backbone.processor

    @property
    def device(self) -> torch.device:
        return self.backbone.device

    @property
    def num_prompts(self) -> int:
        """Prompts per temporal token (n_base + G*G + 1), 0 without the RAE."""
        return self.injector.num_prompts if self.use_rae else 0

    @property
    def video_token_id(self) -> int:
        return int(self.qwen.config.video_token_id)

    @classmethod
    def build(cls, backbone, ahd, ahd_meta: dict | None, rae_cfg=None, use_rae: bool = True, use_ahd: bool = True,
              seed: int = 0, meta: dict | None = None) -> "TVAD":
        """A fresh model for stage 2: the given backbone and AHD, a new RAE (`rae_cfg` a RAEConfig
        or dict), seeded. The backbone is modified in place (tokens, injector)."""
        rae = None
        if use_rae:
            rae = new_rae(backbone.model.config.text_config.hidden_size, rae_kwargs(rae_cfg), seed=seed)
        m = dict(meta or {})
        m.setdefault("rae", rae_kwargs(rae_cfg) if use_rae else None)
        return cls(backbone, ahd, ahd_meta, rae, use_ahd=use_ahd, use_rae=use_rae, meta=m)

    # -- clips ----------------------------------------------------------------------------------
    def read_video(self, video, fps: float | None = None) -> tuple[np.ndarray, float]:
        """A path or uint8 (T, H, W, 3) array -> (frames, fps); long videos subsampled evenly to
        `max_frames` (fps scaled accordingly). A file is decoded once, and only at the frames kept
        (the whole file only if its probed frame count proves wrong)."""
        if video is None:
            raise TVADError("a question needs a video: pass a path or a uint8 (T, H, W, 3) array")
        try:
            fps = check_fps(fps)
        except ValueError as e:
            raise TVADError(str(e)) from None
        n_src = None  # frames of the source when subsampled while decoding
        if isinstance(video, (str, os.PathLike)):
            p = Path(video)
            if not p.exists():
                raise TVADError(f"video {p} does not exist")
            if p.is_dir():
                raise TVADError(f"video {p} is a directory, not a video file")
            info = probe(p)
            fps = fps or info.fps
            pick = even_indices(info.num_frames, self.max_frames)
            try:
                video = read_frames(p, indices=pick)
                n_src = info.num_frames if pick is not None else None
            except VideoError:
                if pick is None:
                    raise
                video = read_frames(p)  # the probed count was off: the whole file, subsampled below
        try:
            frames = check_frames(video)
        except ValueError as e:
            raise TVADError(str(e)) from e
        fps = float(fps or self.fps)
        n = n_src or len(frames)
        if n > self.max_frames:
            fps = fps * (self.max_frames - 1) / max(1, n - 1)
            pick = even_indices(len(frames), self.max_frames)
            if pick is not None:
                frames = frames[pick]
        return frames, fps

    def budget(self, max_tokens: int | None = None) -> int | None:
        """A clip's merged-video-token budget: `max_tokens` (the clip's own, e.g. the room its longest
        dialogue leaves under stage2.max_length, `tvad.train.clips.dialogue_budgets`) capped by this
        model's `video_max_tokens`; None: no cap (every frame at the backbone's max_pixels)."""
        caps = [int(b) for b in (max_tokens, self.video_max_tokens) if b is not None]
        return min(caps) if caps else None

    def preprocess(self, frames: np.ndarray, fps: float | None = None, max_tokens: int | None = None) -> dict:
        """The processor's tensors of a uint8 (N, H, W, 3) clip under its video token budget
        (`budget(max_tokens)`): the one resolution training, evaluation and chat all see."""
        return self.backbone.preprocess(frames, float(fps or self.fps), max_tokens=self.budget(max_tokens))

    @torch.no_grad()
    def encode_clip(self, frames: np.ndarray, fps: float | None = None, pixel_values: bool = False,
                    max_tokens: int | None = None) -> ClipInputs:
        """A clip (uint8 (N, H, W, 3)) for the decoder: the merged video tokens V (at most
        `video_max_tokens`) and the AHD heatmap (T', h_a, w_a) at the AHD's resolution (`clip_heatmap`:
        the frames at the backbone's `max_pixels`; zeros there if use_ahd is off or there is no AHD).
        Without a budget one windowed ViT pass makes both (token grid = heatmap grid); with one, the
        tokens come from a second pass over the frames shrunk to the budget (`preprocess`), and the
        RAE reads the heatmap resampled to their grid (`PromptInjector.rae_inputs`)."""
        frames = check_frames(frames)
        fps = float(fps or self.fps)
        bb = self.backbone
        with_ahd = self.ahd is not None and self.use_ahd
        budget = self.budget(max_tokens)  # `max_tokens`: this clip's own budget, capped by video_max_tokens
        inp = self.preprocess(frames, fps, max_tokens) if (budget is not None or pixel_values) else None
        try:
            if budget is None:  # one pass: the heatmap's features and the tokens together
                layers = self.ahd.layers if with_ahd else (self.layers or [bb.depth - 1])
                vf = clip_features(bb, frames, layers, fps, self.window, merged=True)
                tokens = vf.merged
                heat = heat_from_features(self.ahd, vf) if with_ahd else torch.zeros(vf.grid_thw)
                grid = torch.tensor([vf.grid_thw], dtype=torch.long)
            else:  # tokens from the budgeted pass, the heatmap at the AHD's resolution
                tv = bb.features_from_pixels(inp["pixel_values_videos"], inp["video_grid_thw"], [bb.depth - 1],
                                             merged=True, num_frames=len(frames))
                tokens = tv.merged
                grid = inp["video_grid_thw"].long()
                if with_ahd:
                    heat = clip_heatmap(bb, self.ahd, frames, fps, self.window)
                else:
                    heat = torch.zeros(tuple(int(v) for v in bb.preprocess(frames, fps)["video_grid_thw"][0]))
        except FloatingPointError as e:
            raise TVADError(str(e)) from None
        return ClipInputs(video_embeds=tokens.detach(), heat=heat.detach().float().cpu(), grid_thw=grid,
                          second_per_grid_ts=torch.tensor([TEMPORAL_PATCH / fps]).float(),
                          num_frames=len(frames), video_id=frames_fingerprint(frames),
                          pixel_values=inp["pixel_values_videos"] if pixel_values else None)

    def rae_input(self, clip: ClipInputs) -> torch.Tensor:
        """(T', h, w): the heatmap the RAE reads for `clip`, on its video token grid (`rae_inputs`)."""
        return self.injector.rae_inputs([clip.heat], [tuple(int(v) for v in clip.grid_thw[0, 1:])])[0]

    def prompt_token_count(self, clip: ClipInputs) -> int:
        return int(clip.heat.shape[0]) * self.num_prompts

    def encode(self, messages: Sequence[dict], clip: ClipInputs, add_generation_prompt: bool = False,
               max_length: int | None = None) -> Encoded:
        return encode_dialogue(self.tokenizer, messages, clip.num_video_tokens, self.prompt_token_count(clip),
                               self.video_token_id, add_generation_prompt, max_length,
                               prompt_token_ids=self.token_ids.values())

    def model_inputs(self, enc: Encoded, clip: ClipInputs, labels: bool = False) -> dict:
        """Forward kwargs for one sequence (batch of 1): ids, mask, grid, timing, heatmaps, video tokens."""
        dev = self.device
        d = {"input_ids": enc.input_ids[None].to(dev), "attention_mask": torch.ones_like(enc.input_ids)[None].to(dev),
             "mm_token_type_ids": enc.mm_token_type_ids[None].to(dev), "video_grid_thw": clip.grid_thw.to(dev),
             "second_per_grid_ts": clip.second_per_grid_ts.to(dev)}
        if labels:
            d["labels"] = enc.labels[None].to(dev)
        return d

    def video_kwargs(self, clip: ClipInputs, generate: bool = False) -> dict:
        """How the clip's video reaches the model: cached merged tokens, else pixel values."""
        if clip.video_embeds is not None:
            v = clip.video_embeds.to(self.device, self.qwen.dtype)
            if generate:
                from transformers.modeling_outputs import BaseModelOutputWithPooling

                return {"mm_encoder_outputs": {"video": BaseModelOutputWithPooling(pooler_output=(v,))}}
            return {VIDEO_EMBEDS_KWARG: [v]}
        if clip.pixel_values is not None:
            return {"pixel_values_videos": clip.pixel_values.to(self.device)}
        raise TVADError("this clip carries neither merged video tokens nor pixel values")

    def forward(self, messages: Sequence[dict], clip: ClipInputs, labels: bool = True,
                add_generation_prompt: bool = False, **kw):
        """The Qwen forward on one dialogue (logits, and the loss on the answers with labels=True);
        with add_generation_prompt=True the last logits are those of the next answer's first token."""
        enc = self.encode(messages, clip, add_generation_prompt=add_generation_prompt)
        inputs = self.model_inputs(enc, clip, labels=labels)
        return self.qwen(**inputs, **{HEATMAP_KWARG: [clip.heat]}, **self.video_kwargs(clip), **kw)

    @torch.no_grad()
    def answer(self, messages: Sequence[dict], clip: ClipInputs, max_new_tokens: int = 96) -> str:
        """Greedy answer to the last user message of `messages` (the clip in the first user turn)."""
        return self.answer_capped(messages, clip, max_new_tokens)[0]

    @torch.no_grad()
    def answer_capped(self, messages: Sequence[dict], clip: ClipInputs, max_new_tokens: int = 96
                      ) -> tuple[str, bool]:
        """`answer`, and whether generation stopped at `max_new_tokens` (no end-of-turn token)."""
        if not messages or messages[-1]["role"] != "user":
            raise TVADError("the last message must be a user question")
        enc = self.encode(messages, clip, add_generation_prompt=True)
        inputs = self.model_inputs(enc, clip)
        was = self.qwen.training
        self.qwen.eval()
        tok = self.tokenizer
        eos = [tok.convert_tokens_to_ids("<|im_end|>")]
        if tok.eos_token_id is not None and tok.eos_token_id not in eos:
            eos.append(tok.eos_token_id)
        try:
            with self.injector.pending(heatmaps=[clip.heat], video_grid_thw=clip.grid_thw):
                out = self.qwen.generate(**inputs, **self.video_kwargs(clip, generate=True),
                                         max_new_tokens=max_new_tokens,
                                         do_sample=False, eos_token_id=eos, pad_token_id=tok.pad_token_id,
                                         suppress_tokens=list(self.token_ids.values()) + [self.video_token_id])
        finally:
            self.qwen.train(was)
        new = out[0, inputs["input_ids"].shape[1]:]
        hit = len(new) >= max_new_tokens and int(new[-1]) not in eos
        return tok.decode(new, skip_special_tokens=True).strip(), bool(hit)

    def chat(self, video, question: str, history: History | None = None, fps: float | None = None,
             max_new_tokens: int = 96) -> tuple[str, History]:
        """Answer `question` about `video` (path or uint8 (T, H, W, 3)), continuing `history`.
        Every turn sees the same video tokens and the same heatmap evidence (prompts)."""
        try:
            question = check_question(question)
        except ValueError as e:
            raise TVADError(str(e)) from None
        if history is not None and not isinstance(history, History):
            if isinstance(history, list):
                raise TVADError("history must be the History returned by an earlier chat() call")
            raise TVADError(f"history must be a History, got {type(history).__name__}")
        if history is not None:
            try:
                check_messages(history)
            except ValueError as e:
                raise TVADError(str(e)) from None
        frames, fps = self.read_video(video, fps)
        vid = frames_fingerprint(frames)
        if history is None or len(history) == 0:
            clip = self.encode_clip(frames, fps)
            history = History([{"role": "system", "content": self.system_prompt}], video_id=vid, clip=clip)
        elif history.video_id != vid:
            raise TVADError("this history belongs to another video: start a new dialogue (history=None) for it")
        clip = history.clip if history.clip is not None else self.encode_clip(frames, fps)
        msgs = list(history) + [{"role": "user", "content": question}]
        ans = self.answer(msgs, clip, max_new_tokens)
        new = History(msgs + [{"role": "assistant", "content": ans}], video_id=vid, clip=clip)
        return ans, new

    def session(self, video, fps: float | None = None) -> "ChatSession":
        """A dialogue about one video: `s.ask(question) -> answer`, `s.history`, `s.reset()`."""
        return ChatSession(self, video, fps)

    # -- detection (the AHD's API on the same object) -------------------------------------------------
    @property
    def detector(self) -> TVADDetector:
        """The backbone and the AHD as a `TVADDetector` (windows of `window` frames), made once."""
        if self.ahd is None:
            raise TVADError("this model has no AHD: detect() needs one")
        if self._detector is None:
            self._detector = TVADDetector(self.backbone, self.ahd, self.ahd_meta, window=self.window)
        return self._detector

    def detect(self, frames, fps: float | None = None, threshold: float = 0.5):
        """`TVADDetector.detect`: heatmaps, frame scores and regions of a video (path or frames)."""
        return self.detector.detect(frames, fps=fps, threshold=threshold)

    # -- bookkeeping -----------------------------------------------------------------------------------
    def trainable_parameters(self) -> list[nn.Parameter]:
        """Stage 2's own trainables besides LoRA: the RAE and the three token rows (none without
        the RAE: no prompt tokens then appear in the text, and DDP forbids unused parameters)."""
        if not (self.use_rae and self.rae is not None):
            return []
        return [self.injector.token_rows] + list(self.rae.parameters())

    def set_trainable(self, on: bool = True) -> None:
        self.injector.train(on)
        for p in self.injector.parameters():
            p.requires_grad_(False)
        for p in self.trainable_parameters():
            p.requires_grad_(on)

    def merge_prompt_rows(self) -> None:
        """Write the trained token rows into the embedding table (checkpoints are self-contained)."""
        emb = self.qwen.get_input_embeddings().weight
        with torch.no_grad():
            for i, t in enumerate(PROMPT_TOKENS):
                emb[self.token_ids[t]] = self.injector.token_rows[i].to(emb.dtype)

    def parameter_counts(self, lora: dict | None = None) -> dict[str, int]:
        """Parameters of each part: vision tower, language model, lm_head (0 when tied), AHD, RAE,
        the three token rows, LoRA (analytical, of the stage-2 phases recorded in the meta or given
        as {"r": 16, "phases": [None, [24, 25, 26, 27]]}), and `stage2_trainable` (what stage 2
        trains under the current switches) and `total` (inference parameters; LoRA is merged)."""
        q = self.qwen
        vis = sum(p.numel() for p in q.model.visual.parameters())
        lang = sum(p.numel() for n, p in q.model.language_model.named_parameters())
        head = 0 if q.config.tie_word_embeddings else q.lm_head.weight.numel()
        ahd = sum(p.numel() for p in self.ahd.parameters()) if self.ahd is not None else 0
        rae = sum(p.numel() for p in self.rae.parameters()) if self.rae is not None else 0
        tok = self.injector.token_rows.numel()
        lo = lora if lora is not None else self.meta.get("lora")
        n_lora = lora_parameter_count(q, lo) if lo else 0
        use_rae = self.use_rae
        out = {"vision": vis, "language": lang, "lm_head": head, "ahd": ahd if self.use_ahd else 0,
               "rae": rae if use_rae else 0, "prompt_tokens": tok if use_rae else 0, "lora": n_lora}
        out["stage2_trainable"] = out["rae"] + out["prompt_tokens"] + n_lora
        out["total"] = vis + lang + head + out["ahd"] + out["rae"] + out["prompt_tokens"]
        return out


def lora_parameter_count(qwen, lora: dict) -> int:
    """LoRA parameters r * (in + out) per targeted Linear, summed over the recorded phases
    (`{"r": 16, "targets": ["q_proj", "v_proj"], "phases": [None, [24, 25, 26, 27]]}`, None = all layers)."""
    r = int(lora.get("r", 16))
    targets = list(lora.get("targets", ["q_proj", "v_proj"]))
    total = 0
    layers = qwen.model.language_model.layers
    for sel in lora.get("phases", [None]):
        idx = range(len(layers)) if sel is None else sel
        for i in idx:
            for t in targets:
                lin = getattr(layers[i].self_attn, t)
                total += r * (lin.in_features + lin.out_features)
    return total
