"""The frozen Qwen2.5-VL backbone: visual features (eq. 3) and text features (eq. 2).

A thin wrapper around `transformers.Qwen2_5_VLForConditionalGeneration` and its processor;
nothing of transformers' modeling code is copied. The same class serves the 7B and the tiny
pretrained backbone of the `cpu` preset (`assets/tiny-qwen2.5-vl`, same architecture, small sizes).

    bb = from_pretrained("assets/tiny-qwen2.5-vl")                 # or "Qwen/Qwen2.5-VL-7B-Instruct"
    vf = bb.visual_features(frames, layers=[0, 1, 2, 3], fps=8.0)  # frames uint8 (N, H, W, 3)
    bb.resolve_layers("auto")  # [0, 1, 3] here: block 0 + the full-attention blocks (7B: [0, 7, 15, 23, 31])
    vf.features[3]            # (T, h, w, D_3), T = ceil(N / 2), raster order
    vf.merged                 # (T * h/2 * w/2, D_p) video tokens, what the decoder sees (or None)
    F_c = bb.text_features(["A short surveillance clip ...", ...])   # (K, D)

Token budget: `bb.preprocess(frames, fps, max_tokens=1280)` caps the clip's merged video tokens
(`video_pixel_cap`, as qwen-vl-utils' total_pixels); stage 2 and chat pass `stage2.video_max_tokens`.

Frame-count policy: N < 2 raises (shorter than one temporal patch); an odd N is padded by
repeating the last frame (exactly what Qwen's video processor does), so T = ceil(N / 2).
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
import torch

from tvad import dist
from tvad.io import resolve_model_path
from tvad.model.loading import _weight_files, free_memory, load_qwen  # noqa: F401  (re-exported)

TEMPORAL_PATCH = 2  # Qwen2.5-VL's temporal patch: two frames per visual token


class BackboneError(ValueError):
    """Bad input to the backbone (too-short clip, mixed frame sizes, NaN features, ...)."""


@dataclass
class VisualFeatures:
    features: dict[int, torch.Tensor]  # {block l: (T, h, w, D_l)} in raster order
    merged: torch.Tensor | None  # (T * h/2 * w/2, D_p) merger output in raster merge-group order, or None
    grid_thw: tuple[int, int, int]  # (T, h, w) patch grid
    frame_size: tuple[int, int]  # (H, W) of the frames fed to the ViT (after smart_resize)
    num_frames: int  # N, input frames before padding to an even count


def _dtype(dtype: str | torch.dtype) -> torch.dtype:
    if isinstance(dtype, torch.dtype):
        return dtype
    table = {"float32": torch.float32, "fp32": torch.float32, "bfloat16": torch.bfloat16, "bf16": torch.bfloat16,
             "float16": torch.float16, "fp16": torch.float16}
    if dtype not in table:
        raise ValueError(f"unknown dtype {dtype!r}; use one of {sorted(table)}")
    return table[dtype]


def _device(device: str | torch.device) -> torch.device:
    """The device to load onto: `device` as given ("auto": cuda when available); under `accelerate
    launch` "auto" / "cuda" are this process's own GPU, cuda:LOCAL_RANK (`tvad.dist.device`)."""
    return dist.device(device)


def check_frames(frames) -> np.ndarray:
    """Validate a clip: uint8 (N, H, W, 3) with N >= 2 and one frame size. Returns the array."""
    if isinstance(frames, (list, tuple)):
        shapes = {tuple(np.asarray(f).shape) for f in frames}
        if len(shapes) > 1:
            raise BackboneError(f"frames of different sizes within one clip: {sorted(shapes)}")
        frames = np.stack([np.asarray(f) for f in frames]) if frames else np.zeros((0, 1, 1, 3), np.uint8)
    if isinstance(frames, torch.Tensor):
        frames = frames.cpu().numpy()
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3:
        raise BackboneError(f"frames must be (N, H, W, 3), got shape {frames.shape}")
    if frames.shape[0] < TEMPORAL_PATCH:
        raise BackboneError(f"video of {frames.shape[0]} frame(s) is shorter than one temporal patch "
                            f"({TEMPORAL_PATCH} frames)")
    if frames.dtype != np.uint8:
        if np.issubdtype(frames.dtype, np.floating) and not np.isfinite(frames).all():
            raise BackboneError("frames contain NaN or infinite values")
        raise BackboneError(f"frames must be uint8, got {frames.dtype}")
    return frames


def frame_windows(frames: np.ndarray, window: int) -> Iterator[tuple[np.ndarray, int]]:
    """A clip in consecutive windows of `window` (even) frames, one ViT pass each: yields (frames, k),
    k the window's own frame count. Windows hold whole frame pairs, so their features are those of
    the whole clip; a lone last frame is repeated into a pair (as the processor pads), k = 1."""
    for a in range(0, len(frames), window):
        chunk = frames[a:a + window]
        k = len(chunk)
        if k == 1:  # a lone last frame: repeated into a pair, as the processor pads
            chunk = np.concatenate([chunk, chunk])
        yield chunk, k


def video_pixel_cap(num_frames: int, height: int, width: int, max_tokens: int, max_pixels: int | None = None,
                    min_pixels: int = 4 * 28 * 28, factor: int = 28, temporal_patch: int = TEMPORAL_PATCH) -> int:
    """The per-frame pixel cap that keeps a clip of `num_frames` (height x width) frames within
    `max_tokens` merged video tokens, as qwen-vl-utils' `total_pixels` does: each merged token
    covers factor x factor pixels of one `temporal_patch`-frame group, so the cap is
    min(max_pixels, max_tokens * factor^2 / ceil(N / temporal_patch)), lowered further if
    smart_resize's rounding overshoots. Raises BackboneError if even the processor's minimum
    (`min_pixels` per frame) does not fit."""
    from transformers.models.qwen2_vl.video_processing_qwen2_vl import smart_resize

    if isinstance(max_tokens, bool) or not isinstance(max_tokens, (int, np.integer)) or max_tokens < 1:
        raise BackboneError(f"video_max_tokens must be a positive int or None, got {max_tokens!r}")
    groups = -(-int(num_frames) // temporal_patch)
    cap = int(max_tokens) * factor * factor // groups
    if max_pixels:
        cap = min(cap, int(max_pixels))
    while cap >= min_pixels:
        h, w = smart_resize(int(height), int(width), factor=factor, min_pixels=min_pixels, max_pixels=cap)
        tokens = groups * (h // factor) * (w // factor)
        if tokens <= max_tokens:
            return cap
        cap = cap * int(max_tokens) // tokens  # strictly smaller: tokens > max_tokens
    least = -(-min_pixels // (factor * factor))
    raise BackboneError(f"video_max_tokens={max_tokens} cannot hold a clip of {num_frames} frames: its {groups} "
                        f"temporal groups need at least {least} tokens each (the processor's minimum of {min_pixels} "
                        f"pixels per frame), {groups * least} in all; raise the budget or use fewer frames")


AUTO_LAYERS = "auto"  # backbone.layers: block 0 plus the checkpoint's full-attention blocks


def _check_blocks(layers: list[int], depth: int) -> list[int]:
    """`layers` (ints) non-empty, unique and within a ViT of `depth` blocks; BackboneError otherwise."""
    if not layers:
        raise BackboneError("no ViT blocks chosen")
    bad = [l for l in layers if not 0 <= l < depth]
    if bad:
        raise BackboneError(f"ViT block(s) {bad} out of range: this backbone has {depth} blocks (0-indexed)")
    if len(set(layers)) != len(layers):
        raise BackboneError(f"repeated ViT blocks in {layers}")
    return layers


def _vision_field(vision_config, name: str):
    """A field of a vision config given as a transformers config object or a plain dict (config.json's
    "vision_config"); None when absent."""
    if isinstance(vision_config, dict):
        return vision_config.get(name)
    return getattr(vision_config, name, None)


def resolve_layers(spec: Sequence[int] | str, vision_config, source: str | None = None) -> list[int]:
    """The ViT blocks `backbone.layers` names, for a checkpoint with `vision_config` (its
    `Qwen2_5_VLVisionConfig` or config.json's "vision_config" dict).

    spec "auto": eq. 3's block set S as METHOD.md restores it from the authors' released code, block 0
    plus the full-attention blocks (`fullatt_block_indexes`), sorted
    (7B: depth 32, full attention at 7/15/23/31 -> [0, 7, 15, 23, 31]; the tiny asset: depth 4,
    [1, 3] -> [0, 1, 3]). An explicit list of ints is returned as given after `check_layers`'s
    checks (non-empty, unique, 0 <= l < depth). Anything else, a block beyond the depth, or "auto"
    on a config without full-attention blocks raises a one-line BackboneError (naming `source`,
    the checkpoint, when given).
    """
    where = f"backbone {source}: " if source else ""
    depth = _vision_field(vision_config, "depth")
    if isinstance(depth, bool) or not isinstance(depth, (int, np.integer)) or depth < 1:
        raise BackboneError(f"{where}vision config has no valid 'depth' (got {depth!r}); cannot resolve ViT blocks")
    depth = int(depth)
    if isinstance(spec, str):
        if spec != AUTO_LAYERS:
            raise BackboneError(f"{where}backbone.layers must be {AUTO_LAYERS!r} or a list of ViT block indices, "
                                f"got {spec!r}")
        full = _vision_field(vision_config, "fullatt_block_indexes")
        if full is None or isinstance(full, (str, bytes)) or not hasattr(full, "__iter__") or not list(full):
            raise BackboneError(f"{where}backbone.layers='auto' needs the vision config's fullatt_block_indexes "
                                f"(got {full!r}); list the ViT blocks explicitly")
        full = list(full)
        if any(isinstance(l, bool) or not isinstance(l, (int, np.integer)) for l in full):
            raise BackboneError(f"{where}vision config's fullatt_block_indexes {full!r} are not all integers")
        bad = [int(l) for l in full if not 0 <= int(l) < depth]
        if bad:
            raise BackboneError(f"{where}vision config's fullatt_block_indexes {bad} out of range: its ViT has "
                                f"{depth} blocks (0-indexed)")
        return sorted({0} | {int(l) for l in full})
    if isinstance(spec, (bytes, dict)) or not hasattr(spec, "__iter__"):
        raise BackboneError(f"{where}backbone.layers must be {AUTO_LAYERS!r} or a list of ViT block indices, "
                            f"got {spec!r}")
    items = list(spec)
    bad = [l for l in items if isinstance(l, bool) or not isinstance(l, (int, np.integer))]
    if bad:
        raise BackboneError(f"{where}backbone.layers must be {AUTO_LAYERS!r} or a list of ViT block indices, "
                            f"got {items!r}")
    try:
        return _check_blocks([int(l) for l in items], depth)
    except BackboneError as e:
        raise BackboneError(f"{where}{e}") from None


class Backbone:
    """A frozen Qwen2.5-VL: `model` (Qwen2_5_VLForConditionalGeneration), `processor`."""

    def __init__(self, model, processor, source: str | None = None, max_pixels: int | None = None,
                 weights_dir: str | None = None):
        self.model = model.eval()
        for p in self.model.parameters():
            p.requires_grad_(False)
        self.processor = processor
        self.tokenizer = processor.tokenizer
        self.source = source
        # the local folder its weights were read from (`source`, or a hub id's cached snapshot): what a
        # delta checkpoint references (tvad.model.delta)
        self.weights_dir = weights_dir or source
        self.max_pixels = max_pixels
        self._identity: str | None = None

    # -- facts -------------------------------------------------------------------------------
    @property
    def visual(self):
        return self.model.model.visual

    @property
    def vision_config(self):
        return self.model.config.vision_config

    @property
    def depth(self) -> int:
        return int(self.vision_config.depth)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return self.visual.patch_embed.proj.weight.dtype

    @property
    def text_dim(self) -> int:
        """D: the width of the text features (the decoder's hidden size)."""
        return int(self.model.config.text_config.hidden_size)

    def layer_dims(self, layers: Sequence[int] | str) -> dict[int, int]:
        """{l: D_l} for the blocks `layers` names (a list or "auto", `resolve_layers`); every block
        of Qwen2.5-VL's ViT has the same width."""
        layers = self.resolve_layers(layers) if isinstance(layers, str) else self.check_layers(layers)
        return {l: int(self.vision_config.hidden_size) for l in layers}

    def check_layers(self, layers: Sequence[int]) -> list[int]:
        return _check_blocks([int(l) for l in layers], self.depth)

    def resolve_layers(self, spec: Sequence[int] | str) -> list[int]:
        """`backbone.layers` made concrete for this checkpoint: "auto" -> block 0 plus the
        full-attention blocks of its vision config (7B: [0, 7, 15, 23, 31]); a list is checked as
        `check_layers` does and returned as given. See the module function `resolve_layers`."""
        return resolve_layers(spec, self.vision_config,
                              source=self.source or getattr(self.model.config, "_name_or_path", None) or None)

    @property
    def identity(self) -> str:
        """A fingerprint of the weights and config (feature-cache key): files if loaded from disk,
        else a hash of the parameters."""
        if self._identity is None:
            h = hashlib.sha256()
            h.update(json.dumps(self.model.config.to_dict(), sort_keys=True, default=str).encode())
            h.update(str(self.dtype).encode())
            src = Path(self.source) if self.source else None
            files = sorted(src.glob("*.safetensors")) if src and src.is_dir() else []
            if files:
                for f in files:
                    st = f.stat()
                    h.update(f"{f.name}:{st.st_size}".encode())
                    with open(f, "rb") as fh:  # first and last MiB: cheap even for the 7B
                        h.update(fh.read(1 << 20))
                        fh.seek(max(0, st.st_size - (1 << 20)))
                        h.update(fh.read())
            else:
                for name, p in sorted(self.model.state_dict().items()):
                    h.update(name.encode())
                    h.update(p.detach().float().cpu().numpy().tobytes()[: 1 << 16])
            self._identity = h.hexdigest()[:16]
        return self._identity

    # -- preprocessing ----------------------------------------------------------------------
    def preprocess(self, frames, fps: float | None = None, max_tokens: int | None = None) -> dict:
        """uint8 (N, H, W, 3) -> the video processor's tensors.

        Each frame is capped at `self.max_pixels`; with `max_tokens`, the clip as a whole is also
        capped at that many merged video tokens (t*h*w/4 <= max_tokens; `video_pixel_cap`).
        Returns pixel_values_videos (T*h*w, 3*2*14*14) in Qwen's merge-group order,
        video_grid_thw (1, 3) and second_per_grid_ts (1,) = 2 / fps.
        """
        frames = check_frames(frames)
        vp = self.processor.video_processor
        kw = dict(return_tensors="pt", do_sample_frames=False, cap_pixels_per_frame=False)
        lo, hi = int(vp.size["shortest_edge"]), int(vp.size["longest_edge"])
        if self.max_pixels:
            lo, hi = min(lo, int(self.max_pixels)), int(self.max_pixels)
        if max_tokens is not None:
            hi = video_pixel_cap(len(frames), frames.shape[1], frames.shape[2], max_tokens, hi, lo,
                                 factor=int(vp.patch_size) * int(vp.merge_size),
                                 temporal_patch=int(vp.temporal_patch_size))
        if self.max_pixels or max_tokens is not None:
            kw["size"] = {"shortest_edge": lo, "longest_edge": hi}
        out = vp(videos=[frames], **kw)
        merged = int(out["video_grid_thw"].prod()) // int(vp.merge_size) ** 2
        if max_tokens is not None and merged > max_tokens:  # a guard: the cap ran the processor's smart_resize
            raise BackboneError(f"the video processor made {merged} merged video tokens, over the budget of "
                                f"{max_tokens} (video_pixel_cap disagrees with this processor)")
        fps = float(fps) if fps else 2.0
        return {"pixel_values_videos": out["pixel_values_videos"], "video_grid_thw": out["video_grid_thw"],
                "second_per_grid_ts": torch.tensor([TEMPORAL_PATCH / fps])}

    # -- eq. 3: visual features ------------------------------------------------------------
    @torch.no_grad()
    def visual_features(self, frames, layers: Sequence[int] | str, merged: bool = False,
                        fps: float | None = None) -> VisualFeatures:
        """Block outputs F_l in raster order (eq. 3), and optionally the merged video tokens V.

        frames: uint8 (N, H, W, 3), N >= 2. layers: 0-indexed ViT blocks, or "auto" (`resolve_layers`).
        Returns features {l: (T, h, w, D_l)} (float32 on the model's device). Blocks after
        max(layers) are not run unless `merged=True` (V needs the whole tower).
        """
        layers = self.resolve_layers(layers) if isinstance(layers, str) else self.check_layers(layers)
        inputs = self.preprocess(frames, fps)
        return self.features_from_pixels(inputs["pixel_values_videos"], inputs["video_grid_thw"], layers,
                                         merged=merged, num_frames=len(frames))

    @torch.no_grad()
    def features_from_pixels(self, pixel_values: torch.Tensor, grid_thw: torch.Tensor, layers: Sequence[int],
                             merged: bool = False, num_frames: int | None = None,
                             grad: bool = False) -> VisualFeatures:
        """As `visual_features`, from the processor's (T*h*w, C*2*14*14) patches of ONE clip."""
        with torch.set_grad_enabled(grad):
            return self._run_visual(pixel_values, grid_thw, layers, merged, num_frames, grad)

    def _run_visual(self, pixel_values, grid_thw, layers, merged, num_frames, grad) -> VisualFeatures:
        from transformers.utils.generic import get_max_seqlen
        from transformers.vision_utils import (get_vision_attention_seqlens, get_vision_position_ids,
                                               get_vision_window_index)

        vis = self.visual
        if grid_thw.shape[0] != 1:
            raise BackboneError(f"one clip at a time, got grid_thw for {grid_thw.shape[0]}")
        grid_thw = grid_thw.to(self.device)
        t, h, w = (int(v) for v in grid_thw[0].tolist())
        m = int(vis.spatial_merge_size)
        want = set(int(l) for l in layers)
        last = vis.config.depth - 1 if merged else max(want)

        # The same steps as Qwen2_5_VisionTransformerPretrainedModel.forward, with a truncated block list.
        position_ids = get_vision_position_ids(grid_thw, m)
        cu_seqlens, max_seqlen = get_vision_attention_seqlens(grid_thw, vis.config)
        window_index, cu_window_seqlens = get_vision_window_index(
            grid_thw, spatial_merge_size=m, window_size=vis.window_size, patch_size=vis.patch_size)
        window_index = window_index.to(self.device)
        max_window_seqlen = get_max_seqlen(cu_window_seqlens, vis.config)
        x = vis.patch_embed(pixel_values.to(device=self.device, dtype=self.dtype))
        seq_len = x.shape[0]
        x = vis.permute_input_for_window_attn(x, window_index, seq_len=seq_len)
        pos = vis.rotary_pos_emb(x, position_ids)
        pos = tuple(vis.permute_input_for_window_attn(f, window_index, seq_len=seq_len) for f in pos)
        reverse = torch.argsort(window_index)
        out: dict[int, torch.Tensor] = {}
        for i, blk in enumerate(vis.blocks[: last + 1]):
            full = i in vis.fullatt_block_indexes
            x = blk(x, cu_seqlens=cu_seqlens if full else cu_window_seqlens,
                    max_seqlen=max_seqlen if full else max_window_seqlen, position_embeddings=pos)
            if i in want:
                out[i] = self.to_raster(x, reverse, (t, h, w))
        tokens = vis.merger(x)[reverse] if merged else None
        for l, f in out.items():
            if not torch.isfinite(f).all():
                raise BackboneError(f"non-finite values (NaN/inf) in ViT block {l} features")
        return VisualFeatures(features={l: out[l] for l in sorted(out)}, merged=tokens, grid_thw=(t, h, w),
                              frame_size=(h * int(vis.patch_size), w * int(vis.patch_size)),
                              num_frames=int(num_frames) if num_frames is not None else 2 * t)

    def to_raster(self, x: torch.Tensor, reverse: torch.Tensor, thw: tuple[int, int, int]) -> torch.Tensor:
        """(S, D) block output in window order -> (T, h, w, D) raster order (float32).

        Qwen orders patches by window, then by 2x2 merge group: undo the window permutation on
        merge groups, then un-interleave each m x m group into the grid.
        """
        t, h, w = thw
        m = int(self.visual.spatial_merge_size)
        d = x.shape[-1]
        x = x.reshape(-1, m * m, d)[reverse]  # merge groups back in (t, h/m, w/m) order
        x = x.reshape(t, h // m, w // m, m, m, d).permute(0, 1, 3, 2, 4, 5).reshape(t, h, w, d)
        return x.float()

    # -- eq. 2: text features ---------------------------------------------------------------
    @torch.no_grad()
    def text_features(self, prompts: Sequence[str], mode: str = "embeddings") -> torch.Tensor:
        """(K, D) float32: the mean over the real tokens of each prompt (padding masked), eq. 2,
        accumulated in float32 whatever the model's dtype.

        mode "embeddings": the decoder's input embedding table (default, cheap);
        mode "decoder": the decoder's last hidden states over the text alone.
        """
        if isinstance(prompts, str):
            prompts = [prompts]
        if not prompts or any(not p.strip() for p in prompts):
            raise BackboneError("text_features needs non-empty prompts")
        tok = self.tokenizer(list(prompts), padding=True, return_tensors="pt")
        ids = tok["input_ids"].to(self.device)
        mask = tok["attention_mask"].to(self.device)
        if mode == "embeddings":
            h = self.model.get_input_embeddings()(ids)
        elif mode == "decoder":
            h = self.model.model.language_model(input_ids=ids, attention_mask=mask).last_hidden_state
        else:
            raise BackboneError(f"unknown text encoder mode {mode!r}; use 'embeddings' or 'decoder'")
        # pooled in float32 whatever the model's dtype: summing bf16 rows in bf16 costs ~2.6 % relative
        # error in t_abnormal - t_normal (eq. 4's class difference) on the tiny model, fp32 0.2 %
        h = h.float()
        mk = mask.unsqueeze(-1).float()
        return (h * mk).sum(1) / mk.sum(1).clamp_min(1)

    # -- persistence -------------------------------------------------------------------------
    def save_pretrained(self, path: str | os.PathLike) -> Path:
        p = Path(path)
        p.mkdir(parents=True, exist_ok=True)
        self.model.save_pretrained(p)
        self.processor.save_pretrained(p)
        return p


def from_pretrained(path_or_id: str | os.PathLike, dtype: str | torch.dtype = "float32",
                    device: str | torch.device = "cpu", max_pixels: int | None = None,
                    attn_implementation: str = "sdpa", local_files_only: bool | None = None) -> Backbone:
    """Load a Qwen2.5-VL checkpoint (a local directory or a hub id) frozen, in eval mode: the one
    backbone loader (`from_config`, the detector's and the full model's checkpoint loaders use it).

    A relative folder is found as given or under the repository root (`tvad.io.resolve_model_path`),
    anything else is a hub id. Real transformers classes (`Qwen2_5_VLForConditionalGeneration`,
    `AutoProcessor`); no remote code. `local_files_only` defaults to True for existing directories
    and when HF_HUB_OFFLINE=1. `device="auto"`: cuda when available, else cpu.
    """
    from transformers import AutoProcessor

    free_memory()  # a previous backbone dropped by its caller but still in reference cycles goes first
    src = str(resolve_model_path(path_or_id))
    if local_files_only is None:
        local_files_only = Path(src).is_dir() or os.environ.get("HF_HUB_OFFLINE") == "1"
    if not Path(src).is_dir() and local_files_only and "/" not in src:
        raise FileNotFoundError(f"backbone {src!r}: no such directory")
    model, wdir = load_qwen(src, _dtype(dtype), attn_implementation, local_files_only)
    model.to(_device(device))
    processor = AutoProcessor.from_pretrained(src, local_files_only=local_files_only)
    return Backbone(model, processor, source=src if Path(src).is_dir() else None, max_pixels=max_pixels,
                    weights_dir=wdir)


# The recipe of the cpu preset's tiny backbone (`make tiny-backbone`: tvad.train.pretrain_tiny, then
# tvad.train.instruct_tiny). Bumped whenever the recipe changes what the asset knows, so that a chain run
# on an asset of another recipe stops with a clear error instead of giving that recipe's numbers.
TINY_RECIPE = "tiny-2: caption, motion, behaviour, box grounding, anomaly grounding in the text space; instruct"


def check_tiny_asset(path: str | os.PathLike) -> None:
    """A directory holding `pretrain_summary.json` is a tiny backbone made here: it must come from this
    code's recipe (`TINY_RECIPE`), be instruction-tuned, and keep the tokenizer it was trained with
    (the eq.-2 prompt rows and the decoder are tied to its token ids). Anything else: BackboneError naming
    the file and the fix. Other checkpoints (the 7B, a hub id) are not checked."""
    d = Path(path)
    pre = d / "pretrain_summary.json"
    if not d.is_dir() or not pre.is_file():
        return
    try:
        recipe = json.loads(pre.read_text()).get("recipe")
    except (OSError, ValueError) as e:
        raise BackboneError(f"{pre}: unreadable pretraining summary ({e})") from None
    if recipe != TINY_RECIPE:
        raise BackboneError(f"{pre}: this tiny backbone was made by another recipe ({recipe or 'unrecorded'!r}); "
                            f"this code expects {TINY_RECIPE!r}: regenerate it with `make tiny-backbone` "
                            "(or check out the asset that came with this commit)")
    ins = d / "instruct_summary.json"
    if not ins.is_file():
        raise BackboneError(f"{d}: pretrained but not instruction-tuned ({ins.name} missing): run "
                            "`python -m tvad.train.instruct_tiny --asset " + str(d) + "` (make tiny-backbone's second step)")
    try:
        want = json.loads(ins.read_text()).get("tokenizer_sha256")
    except (OSError, ValueError) as e:
        raise BackboneError(f"{ins}: unreadable instruction summary ({e})") from None
    tok = d / "tokenizer.json"
    got = hashlib.sha256(tok.read_bytes()).hexdigest() if tok.is_file() else None
    if want != got:
        raise BackboneError(f"{tok}: the tokenizer changed since this tiny backbone was trained (sha256 "
                            f"{(got or 'missing')[:12]}, trained with {(want or 'unrecorded')[:12]}); its embedding "
                            "rows and decoder follow the old token ids: restore the file or run `make tiny-backbone`")


def from_config(cfg) -> Backbone:
    """The backbone a `tvad.config.BackboneConfig` names (paths relative to the repository root); a tiny
    backbone made here is checked first (`check_tiny_asset`)."""
    check_tiny_asset(resolve_model_path(cfg.path))
    return from_pretrained(cfg.path, dtype=cfg.dtype, device=cfg.device, max_pixels=cfg.max_pixels,
                           attn_implementation=cfg.attn_implementation)


def vision_hash(qwen) -> str:
    """A fingerprint of the vision tower's weights (the AHD was trained on it; stage 2 never changes
    it): checkpoints record it, and loading one checks it."""
    h = hashlib.sha256()
    for name, t in sorted(qwen.model.visual.state_dict().items()):
        f = t.detach().flatten()
        f = f[:: max(1, f.numel() // 4096)].float().cpu().numpy()
        h.update(name.encode())
        h.update(f.tobytes())
    return h.hexdigest()[:16]


# -- the 7B's configuration (for parameter counts on the meta device) --------------------------

def qwen25vl_7b_config():
    """Qwen2.5-VL-7B-Instruct's configuration (its config.json's values), built offline."""
    from transformers import Qwen2_5_VLConfig

    return Qwen2_5_VLConfig(
        vision_config=dict(depth=32, hidden_size=1280, hidden_act="silu", intermediate_size=3420, num_heads=16,
                           in_channels=3, patch_size=14, spatial_merge_size=2, temporal_patch_size=2,
                           tokens_per_second=2, window_size=112, out_hidden_size=3584,
                           fullatt_block_indexes=[7, 15, 23, 31]),
        text_config=dict(vocab_size=152064, hidden_size=3584, intermediate_size=18944, num_hidden_layers=28,
                         num_attention_heads=28, num_key_value_heads=4, max_position_embeddings=128000,
                         rms_norm_eps=1e-6, rope_parameters={"rope_type": "default", "rope_theta": 1000000.0,
                                                             "mrope_section": [16, 24, 24]},
                         bos_token_id=151643, eos_token_id=151645, sliding_window=32768, max_window_layers=28,
                         use_sliding_window=False),
        image_token_id=151655, video_token_id=151656, vision_start_token_id=151652, vision_end_token_id=151653,
        tie_word_embeddings=False,
    )


def count_parameters(model) -> dict[str, int]:
    """{'vision', 'language', 'lm_head', 'total'} parameter counts (works on the meta device)."""
    vis = sum(p.numel() for p in model.model.visual.parameters())
    lang = sum(p.numel() for p in model.model.language_model.parameters())
    head = 0 if model.config.tie_word_embeddings else model.lm_head.weight.numel()
    total = sum(p.numel() for p in model.parameters())
    return {"vision": vis, "language": lang, "lm_head": head, "total": total}
