"""Eq. 13: the three prompt tokens and the `PromptInjector` that splices the RAE's prompts into the
decoder's `inputs_embeds` through a forward pre-hook on Qwen2.5-VL's inner model (the pattern of
LLaVA's `llava_arch.py`: a placeholder token whose rows are replaced, its labels masked).

Three special tokens are added to the tokenizer (`<|anomaly_start|>`, `<|anomaly_pad|>`,
`<|anomaly_end|>`; Qwen's padded embedding table has spare rows, so nothing is resized, and never
down). The placeholder rows of the input embeddings are replaced by the RAE's prompts P (T, n, D_p)
flattened time-major. The `PromptInjector` (RAE + the three trainable token rows) is registered as
the submodule `qwen.model.anomaly_injector`; the hook builds `inputs_embeds` from `input_ids` and
overwrites the prompt rows, leaving `input_ids` in place, so the video mask and the multimodal
rotary positions are computed from the ids exactly as without injection. Being a hook on a
submodule, it works unchanged under TRL's SFTTrainer, peft, `accelerate launch` and `generate()`.
The whole story (how a clip becomes the hook's inputs, the switches, the token budget):
`tvad/model/tvad.py`'s docstring.
"""

from __future__ import annotations

import contextlib
from typing import Any, Sequence

import torch
from torch import nn

from tvad.model.rae import RegionAwareAnomalyEncoder, heatmap_on_token_grid

PROMPT_TOKENS = ("<|anomaly_start|>", "<|anomaly_pad|>", "<|anomaly_end|>")  # open, placeholder, close
HEATMAP_KWARG = "anomaly_heatmaps"  # forward kwarg: list of (T, h, w) heatmaps, one per sequence
VIDEO_EMBEDS_KWARG = "anomaly_video_embeds"  # forward kwarg: list of (N_v, D_p) cached merged video tokens
INJECTOR_NAME = "anomaly_injector"  # attribute of qwen.model holding the PromptInjector
VIDEO_PAD = "<|video_pad|>"


class TVADError(ValueError):
    """Bad input to the full model (no video, too short, history of another video, missing part...)."""


# -- special tokens ---------------------------------------------------------------------------------

def add_prompt_tokens(model, tokenizer) -> dict[str, int]:
    """Add the three prompt tokens to `tokenizer` (idempotent) and make sure the embedding has rows
    for them: Qwen pads its table (7B: 151,665 tokens, 152,064 rows), so normally nothing changes;
    if it must grow, it grows (to a multiple of 64), never shrinks. New rows are set to the mean of
    the real tokens' rows. Returns {token: id}."""
    have = set(tokenizer.get_vocab())
    n_real = len(tokenizer)
    new = [t for t in PROMPT_TOKENS if t not in have]
    if new:
        tokenizer.add_tokens(new, special_tokens=True)
    ids = {t: int(tokenizer.convert_tokens_to_ids(t)) for t in PROMPT_TOKENS}
    emb = model.get_input_embeddings()
    rows = emb.weight.shape[0]
    need = max(ids.values()) + 1
    if need > rows:
        model.resize_token_embeddings(((need + 63) // 64) * 64, mean_resizing=False)
        emb = model.get_input_embeddings()
    if new:
        with torch.no_grad():
            mean = _row_mean(emb.weight, n_real).to(emb.weight.dtype)
            for t in new:
                emb.weight[ids[t]] = mean
    return ids


MEAN_CHUNK_ROWS = 8192  # rows per float32 chunk of `_row_mean` (7B: 117 MB of float32 at a time)


def _row_mean(table: torch.Tensor, n: int, chunk: int | None = None) -> torch.Tensor:
    """(D,) float32 mean of `table[:n]` ((V, D), any dtype), accumulated in float32 `chunk` rows at a
    time (default MEAN_CHUNK_ROWS): no float32 copy of the whole table (7B: 151,665 x 3,584, 2.2 GB)."""
    chunk = int(chunk or MEAN_CHUNK_ROWS)
    acc = torch.zeros(table.shape[1], dtype=torch.float32, device=table.device)
    for a in range(0, n, chunk):
        acc += table[a:min(n, a + chunk)].float().sum(0)
    return acc / max(1, n)


# -- the injection ----------------------------------------------------------------------------------

def _as_list(x, n: int | None = None, name: str = "heatmaps") -> list[torch.Tensor]:
    if isinstance(x, torch.Tensor):
        if x.dim() == 3:
            x = [x]
        elif x.dim() == 4:
            x = list(x)
        else:
            raise TVADError(f"{name} must be (T, h, w), (B, T, h, w) or a list of (T, h, w), got {tuple(x.shape)}")
    x = list(x)
    if n is not None and len(x) != n:
        if n % max(1, len(x)) == 0 and len(x) > 0:  # generate() with beams / several returns per prompt
            x = [t for t in x for _ in range(n // len(x))]
        else:
            raise TVADError(f"{len(x)} {name} for {n} sequences with anomaly prompts")
    return x


class PromptInjector(nn.Module):
    """The RAE and the three trainable token rows, registered inside the Qwen model (`qwen.model.
    anomaly_injector`) so that trainers, peft and `generate` see them as part of the model."""

    def __init__(self, rae: RegionAwareAnomalyEncoder | None, token_ids: dict[str, int], init_rows: torch.Tensor,
                 video_token_id: int | None = None):
        super().__init__()
        self.rae = rae
        self.open_id, self.pad_id, self.close_id = (int(token_ids[t]) for t in PROMPT_TOKENS)
        self.video_token_id = None if video_token_id is None else int(video_token_id)  # <|video_pad|>: grids per sequence
        self.token_rows = nn.Parameter(init_rows.detach().clone().float())  # (3, D_p): open, placeholder, close
        self._pending: dict[str, Any] | None = None

    @property
    def num_prompts(self) -> int:
        return 0 if self.rae is None else int(self.rae.num_prompts)

    @contextlib.contextmanager
    def pending(self, heatmaps=None, video_embeds=None, video_grid_thw=None):
        """Hand heatmaps (and cached video tokens) to the next forward passes (for `generate()`), with
        the videos' `video_grid_thw` (V, 3), which generate does not pass on to the inner model: the
        heatmaps are put on those token grids (`rae_inputs`)."""
        old = self._pending
        self._pending = {"heatmaps": heatmaps, "video_embeds": video_embeds, "video_grid_thw": video_grid_thw}
        try:
            yield self
        finally:
            self._pending = old

    def rae_inputs(self, heatmaps: Sequence[torch.Tensor], grids: Sequence | None = None) -> list[torch.Tensor]:
        """What the RAE reads (eq. 8-12), the one place a heatmap meets the video token grid: each
        (T, h_a, w_a) heatmap resampled to its sequence's token grid (h, w) (`heatmap_on_token_grid`;
        the identity when they agree). `grids`: one (h, w) per heatmap (None: already on it)."""
        if grids is None:
            return list(heatmaps)
        if len(grids) != len(heatmaps):
            raise TVADError(f"{len(heatmaps)} heatmaps for {len(grids)} video token grids")
        out = []
        for h, g in zip(heatmaps, grids):
            try:
                out.append(heatmap_on_token_grid(h, g))
            except ValueError as e:
                raise TVADError(str(e)) from None
        return out

    def prompts(self, heatmaps: Sequence[torch.Tensor], grids: Sequence | None = None) -> list[torch.Tensor]:
        """Per sequence, (T * num_prompts, D_p): the RAE's P(t) stacked time-major (eq. 12-13), of
        each heatmap on its video token grid (`rae_inputs`; `grids` one (h, w) per heatmap)."""
        if self.rae is None:
            raise TVADError("anomaly prompt tokens in the input, but this model has no RAE")
        dev = self.token_rows.device
        return [self.rae(h.to(dev)).flatten(0, 1) for h in self.rae_inputs(heatmaps, grids)]

    def token_grids(self, input_ids: torch.Tensor, video_grid_thw: torch.Tensor | None) -> list | None:
        """Per sequence of `input_ids` (B, S), the (h, w) patch grid of its video (None: no video in
        it): the rows of `video_grid_thw` (V, 3) paired in order with the sequences holding
        <|video_pad|> tokens (one video per sequence, as `render` writes). None without a grid."""
        if video_grid_thw is None or self.video_token_id is None:
            return None
        has_video = (input_ids == self.video_token_id).any(1).tolist()
        n = int(video_grid_thw.shape[0])
        if n and sum(has_video) != n and sum(has_video) % n == 0:  # generate() with beams / several returns
            video_grid_thw = video_grid_thw.repeat_interleave(sum(has_video) // n, 0)
        if sum(has_video) != int(video_grid_thw.shape[0]):
            raise TVADError(f"{int(video_grid_thw.shape[0])} rows of video_grid_thw for {sum(has_video)} sequences "
                            "with video tokens: each sequence must hold one video")
        rows = iter(video_grid_thw.tolist())
        return [tuple(int(v) for v in next(rows)[1:]) if hv else None for hv in has_video]

    def forward(self, input_ids: torch.Tensor, inputs_embeds: torch.Tensor, heatmaps,
                video_grid_thw: torch.Tensor | None = None) -> torch.Tensor:
        """inputs_embeds with the open/close rows set to the trained token rows and the placeholder
        rows replaced by the RAE's prompts (eq. 13), each sequence's heatmap first put on its video
        token grid (from `video_grid_thw` (V, 3), see `rae_inputs`). input_ids: (B, S);
        inputs_embeds: (B, S, D)."""
        is_pad = input_ids == self.pad_id
        is_oc = (input_ids == self.open_id) | (input_ids == self.close_id)
        if not (is_pad.any() or is_oc.any()):
            return inputs_embeds
        rows = self.token_rows.to(inputs_embeds.dtype)
        out = inputs_embeds
        if is_oc.any():
            sel = (input_ids == self.close_id).long()  # 0 -> open row, 2 -> close row
            oc_rows = rows[sel * 2]
            out = torch.where(is_oc.unsqueeze(-1), oc_rows, out)
        if is_pad.any():
            has = is_pad.any(1)
            if heatmaps is None:
                raise TVADError("anomaly placeholder tokens in input_ids but no heatmaps were handed over "
                                f"(pass `{HEATMAP_KWARG}=` to forward, or use PromptInjector.pending for generate)")
            hl = _as_list(heatmaps, int(has.sum()))
            seqs = has.nonzero().flatten().tolist()
            grids = self.token_grids(input_ids, video_grid_thw)
            if grids is None:
                raise TVADError("anomaly placeholder tokens in input_ids but no video_grid_thw: the heatmaps "
                                "cannot be put on the video token grid the RAE reads (pass it to forward, or to "
                                "PromptInjector.pending for generate)")
            missing = [b for b in seqs if grids[b] is None]
            if missing:
                raise TVADError(f"sequence {missing[0]} has anomaly placeholder tokens but no video tokens")
            P = self.prompts(hl, [grids[b] for b in seqs])
            full = out.new_zeros(out.shape)
            for k, b in enumerate(has.nonzero().flatten().tolist()):
                n = int(is_pad[b].sum())
                if n != P[k].shape[0]:
                    raise TVADError(f"sequence {b} has {n} anomaly placeholder tokens but its heatmap "
                                    f"{tuple(hl[k].shape)} gives {P[k].shape[0]} prompts "
                                    f"(T x {self.num_prompts})")
                full[b, is_pad[b]] = P[k].to(out.dtype)
            out = torch.where(is_pad.unsqueeze(-1), full, out)
        return out


def _injection_hook(module: nn.Module, args: tuple, kwargs: dict):
    """Forward pre-hook on `Qwen2_5_VLModel`: pops our kwargs, builds inputs_embeds with the prompts."""
    heat = kwargs.pop(HEATMAP_KWARG, None)
    vemb = kwargs.pop(VIDEO_EMBEDS_KWARG, None)
    inj = getattr(module, INJECTOR_NAME, None)
    if inj is None:
        return args, kwargs
    pend = inj._pending or {}
    grid = kwargs.get("video_grid_thw")
    if grid is None:
        grid = pend.get("video_grid_thw")
    if heat is None:
        heat = pend.get("heatmaps")
    if vemb is None:
        vemb = pend.get("video_embeds")
    input_ids = kwargs.get("input_ids", args[0] if args else None)
    if vemb is not None and kwargs.get("pixel_values_videos") is None and kwargs.get("mm_encoder_outputs") is None \
            and input_ids is not None and (input_ids == module.config.video_token_id).any():
        from transformers.modeling_outputs import BaseModelOutputWithPooling

        v = tuple(t for t in _as_list(vemb, name="video embeds"))
        kwargs["mm_encoder_outputs"] = {"video": BaseModelOutputWithPooling(pooler_output=v)}
    if input_ids is None:
        return args, kwargs
    is_ours = (input_ids == inj.pad_id) | (input_ids == inj.open_id) | (input_ids == inj.close_id)
    if not is_ours.any():
        return args, kwargs
    emb = kwargs.get("inputs_embeds")
    if emb is None:
        emb = module.get_input_embeddings()(input_ids)
    if args:  # input_ids given positionally: keep it as the kwarg Qwen reads
        args = ()
        kwargs["input_ids"] = input_ids
    kwargs["inputs_embeds"] = inj(input_ids, emb, heat, grid)
    return args, kwargs


def attach_injector(qwen, injector: PromptInjector) -> None:
    """Register `injector` as `qwen.model.anomaly_injector` and the pre-hook on `qwen.model` (once)."""
    inner = qwen.model
    inner.add_module(INJECTOR_NAME, injector)
    if not getattr(inner, "_tvad_hooked", False):
        inner.register_forward_pre_hook(_injection_hook, with_kwargs=True)
        inner._tvad_hooked = True
    injector.to(next(qwen.parameters()).device)
