"""`tvad plan`'s predictions: sequence lengths, feature-cache disk, per-stage GPU memory, checkpoint
disk and wall time on an H100-class GPU, from a config, the model's config and the clip index.

Everything here is arithmetic on shapes (docs/plan.md gives every formula): no weights are loaded
and nothing runs on a GPU. The numbers are predictions until a GPU run records real ones.

    shape = Shapes(model_info, cfg)                      # grids and token counts at the run's settings
    seq = longest_sequence(shape, cfg, clips, records)   # the longest stage-2 sequence against max_length
    stages = predict(shape, cfg, index, seq)             # [Stage] with memory, disk, FLOPs, hours
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Sequence

import torch

from tvad.data.clips import Clip
from tvad.model.backbone import resolve_layers, video_pixel_cap
from tvad.model.flops import (
    H100_BF16_TFLOPS,
    H100_HBM_TBPS,
    ahd_flops,
    ahd_parameters,
    decoder_flops,
    vit_flops,
)
from tvad.model.rae import RegionAwareAnomalyEncoder
from tvad.model.tvad import encode_dialogue
from tvad.train.features import feature_grid, predicted_cache_bytes

DTYPE_BYTES = {"bfloat16": 2, "float16": 2, "float32": 4}  # backbone.dtype -> bytes per weight
UTILISATION = 0.4  # assumed fraction of the peak bf16 rate a step achieves (docs/plan.md: why 0.4)
DIALOGUE_TOKENS = 486  # text of the longest dialogue without a corpus: the room config.py's video_max_tokens leaves
EVAL_TURNS = 4  # question-answer turns per held-out dialogue, without a corpus (an assumption)
DISK_GBPS = 2.0  # assumed read rate of the feature cache's disk, GB/s (a local NVMe; stage 1 reads it every epoch)
TRAINABLE_BYTES = 16  # per trainable parameter: fp32 weight, fp32 gradient, AdamW's two fp32 moments
GiB = 2**30


@dataclass
class Stage:
    """One row of the plan: a stage's predicted GPU memory, disk and compute."""

    name: str  # "features", "stage1", "stage2 rae a", ...
    what: str  # one line: what runs
    memory: dict = field(default_factory=dict)  # {part: bytes} of the GPU peak (weights, activations, optimizer)
    disk: int = 0  # bytes this stage writes (cache or checkpoints)
    flops: float = 0.0  # FLOPs of the stage
    seconds: float = 0.0  # predicted wall time on the assumed GPU

    @property
    def peak(self) -> int:
        return int(sum(self.memory.values()))


class Shapes:
    """The run's shapes from the model's config and processor: feature grids and video token counts
    (the backbone's own `feature_grid` and `video_pixel_cap`, on a stand-in that holds no weights)."""

    def __init__(self, info, cfg):
        self.cfg, self.mcfg = cfg, info.config
        self.vcfg, self.tcfg = info.config.vision_config, info.config.text_config
        p = info.processor
        vp = SimpleNamespace(size={"shortest_edge": int(p["min_pixels"]), "longest_edge": int(p["max_pixels"])},
                             patch_size=int(p["patch_size"]), merge_size=int(p["merge_size"]),
                             temporal_patch_size=int(p["temporal_patch_size"]))
        D = int(self.vcfg.hidden_size)
        # a Backbone stand-in for feature_grid / predicted_cache_bytes (identity: 16 hex digits as the real one)
        self.bb = SimpleNamespace(processor=SimpleNamespace(video_processor=vp), max_pixels=cfg.backbone.max_pixels,
                                  identity="0" * 16, layer_dims=lambda ls: {int(l): D for l in ls})
        self.layers = resolve_layers(cfg.backbone.layers, self.vcfg, source=info.source)
        self.params = info.params
        self.wbytes = DTYPE_BYTES.get(str(cfg.backbone.dtype), 4)
        self.factor = vp.patch_size * vp.merge_size
        rae = cfg.rae
        self._memo: dict = {}
        self.num_prompts = (rae.num_base if rae.variant == "paper" else 0) + rae.grid * rae.grid + 1

    def grid(self, n: int, H: int, W: int) -> tuple[int, int, int]:
        """(T', h, w) patch grid of n frames of H x W at backbone.max_pixels."""
        key = ("grid", int(n), int(H), int(W))
        if key not in self._memo:
            self._memo[key] = feature_grid(self.bb, n, H, W)
        return self._memo[key]

    def vit(self, grid: tuple[int, int, int], **kw) -> int:
        """vit_flops(...)["total"] of a patch grid (memoised: clips share a few grids)."""
        key = ("vit", tuple(grid), tuple(sorted(kw.items())))
        if key not in self._memo:
            self._memo[key] = vit_flops(self.vcfg, *grid, **kw)["total"]
        return self._memo[key]

    def video_grid(self, n: int, H: int, W: int) -> tuple[int, int, int]:
        """(T', h, w) patch grid of stage 2's video tokens: under stage2.video_max_tokens when set."""
        key = ("video", int(n), int(H), int(W))
        if key not in self._memo:
            self._memo[key] = self._video_grid(int(n), int(H), int(W))
        return self._memo[key]

    def _video_grid(self, n: int, H: int, W: int) -> tuple[int, int, int]:
        cap = self.cfg.stage2.video_max_tokens
        if cap is None:
            return self.grid(n, H, W)
        vp = self.bb.processor.video_processor
        lo, hi = int(vp.size["shortest_edge"]), int(vp.size["longest_edge"])
        if self.bb.max_pixels:
            lo, hi = min(lo, int(self.bb.max_pixels)), int(self.bb.max_pixels)
        hi = video_pixel_cap(n, H, W, int(cap), hi, lo, factor=self.factor, temporal_patch=vp.temporal_patch_size)
        from transformers.models.qwen2_vl.video_processing_qwen2_vl import smart_resize

        h, w = smart_resize(H, W, factor=self.factor, min_pixels=lo, max_pixels=hi)
        return -(-n // vp.temporal_patch_size), h // vp.patch_size, w // vp.patch_size

    def video_tokens(self, n: int, H: int, W: int) -> int:
        t, h, w = self.video_grid(n, H, W)
        return t * h * w // (self.bb.processor.video_processor.merge_size ** 2)

    def prompt_tokens(self, n: int) -> int:
        """<|anomaly_start|> + T' x num_prompts <|anomaly_pad|> + <|anomaly_end|> (eq. 13's block)."""
        return -(-n // 2) * self.num_prompts + 2


# -- the longest stage-2 sequence ----------------------------------------------------------------

def longest_sequence(shape: Shapes, cfg, clips: Sequence[Clip], records: Sequence[dict] | None = None,
                     tokenizer=None) -> dict:
    """The longest stage-2 sequence of the run against stage2.max_length.

    With corpus `records` and a tokenizer: exact, as `tvad.train.clips.dialogue_budgets` counts it (each
    dialogue's text and prompt block tokenized, plus its clip's video tokens under the budget). Without:
    the longest training clip's video tokens + its prompt block + DIALOGUE_TOKENS of text (an estimate).
    Returns {"tokens", "video", "prompts", "text", "source" ("corpus" | "estimate"), "clip", "shrunk",
    "problems"}: clips whose dialogue leaves no room for one token per temporal patch are problems;
    clips whose sequence is over max_length get a smaller video (dialogue_budgets), counted in "shrunk"."""
    L = int(cfg.stage2.max_length)
    out = {"tokens": 0, "max_length": L, "shrunk": 0, "problems": [], "clip": None}
    if records:
        vid = int(shape.mcfg.video_token_id)
        rows = []
        for r in records:
            c = r["clip"]
            n, (H, W) = int(c["num_frames"]), (int(x) for x in c["size"])
            prompts = -(-n // 2) * shape.num_prompts
            enc = encode_dialogue(tokenizer, r["messages"], 0, prompts, vid)
            text = int(enc.input_ids.numel()) - prompts
            rows.append((str(c["name"]), n, shape.video_tokens(n, H, W), prompts, text, r.get("id")))
        out["source"] = "corpus"
    else:
        rows = [(c.name, c.num_frames, shape.video_tokens(c.num_frames, *c.size), shape.prompt_tokens(c.num_frames),
                 DIALOGUE_TOKENS, None) for c in clips]
        out["source"] = "estimate"
    for name, n, video, prompts, text, rid in rows:
        total = video + prompts + text
        if L - prompts - text < -(-n // 2):
            out["problems"].append(f"stage2.max_length {L}: {'corpus record ' + repr(rid) if rid else 'clip ' + name}: "
                                   f"{text} text + {prompts} prompt tokens leave no room for its {n}-frame video")
        elif total > L:
            out["shrunk"] += 1
        if total > out["tokens"]:
            out.update(tokens=total, video=video, prompts=prompts, text=text, clip=name)
    return out


# -- memory --------------------------------------------------------------------------------------

def vit_activation_bytes(vcfg, tokens: int, keep_blocks: int, b: int) -> int:
    """Peak activations of a no-grad ViT forward on `tokens` patches: one block's working set (residual,
    qkv, attention output, the SwiGLU gate / up / product) plus the kept block outputs (eq. 3)."""
    D, I = int(vcfg.hidden_size), int(vcfg.intermediate_size)
    return tokens * (5 * D + 3 * I) * b + keep_blocks * tokens * D * b


def decoder_activation_bytes(tcfg, L: int, b: int, checkpointing: bool) -> int:
    """Activations of a training step of the decoder on L tokens. With gradient checkpointing: each
    layer's input (L x D) kept, one layer recomputed at a time (its q/k/v/o, norms, SwiGLU: L x (6D +
    2 kv + 4 I)); without: that for every layer. Plus the logits: bf16 output, fp32 upcast for the loss
    and its gradient (L x V x (b + 8))."""
    D, I, V = int(tcfg.hidden_size), int(tcfg.intermediate_size), int(tcfg.vocab_size)
    kv = int(tcfg.num_key_value_heads) * (D // int(tcfg.num_attention_heads))
    n = int(tcfg.num_hidden_layers)
    layer = L * (6 * D + 2 * kv + 4 * I) * b
    acts = n * L * D * b + layer if checkpointing else n * layer
    return acts + L * V * (b + 8)


def lora_parameters(tcfg, targets: Sequence[str], r: int, layers: int) -> int:
    """LoRA's A (r x in) and B (out x r) on each target projection of `layers` decoder layers."""
    D, I = int(tcfg.hidden_size), int(tcfg.intermediate_size)
    kv = int(tcfg.num_key_value_heads) * (D // int(tcfg.num_attention_heads))
    dims = {"q_proj": (D, D), "k_proj": (D, kv), "v_proj": (D, kv), "o_proj": (D, D), "gate_proj": (D, I),
            "up_proj": (D, I), "down_proj": (I, D)}
    return layers * sum(r * (dims[t][0] + dims[t][1]) for t in targets if t in dims)


def rae_parameters(cfg, text_dim: int) -> int:
    """The RAE's parameters (eq. 8-12), counted on the meta device (no memory)."""
    rc = cfg.rae
    with torch.device("meta"):
        rae = RegionAwareAnomalyEncoder(text_dim, rc.channels, rc.conv_layers, rc.grid, rc.num_base, rc.variant)
    return sum(p.numel() for p in rae.parameters())


# -- the stages ------------------------------------------------------------------------------------

def predict(shape: Shapes, cfg, index, seq: dict, n_dialogues: dict | None = None,
            peak_tflops: float = H100_BF16_TFLOPS, utilisation: float = UTILISATION) -> list[Stage]:
    """[Stage] of the run: notebook 02's feature extraction and stage 1, notebook 03's stage 2 (every
    variant, both phases), notebook 04's dialogue answers. `n_dialogues`: {"a", "b", "test"} corpus sizes
    (default: one per clip and dialogues_per_clip, as the oracle corpus writes them)."""
    vcfg, tcfg, b = shape.vcfg, shape.tcfg, shape.wbytes
    rate = peak_tflops * 1e12 * utilisation
    weights = int(shape.params["total"]) * b
    D = int(tcfg.hidden_size)
    own = [c for c in index.clips if c.source == cfg.data.dataset]  # notebook 02: the configured dataset
    train = [c for c in own if c.split == "train"]
    grids = {c.name: shape.grid(c.num_frames, *c.size) for c in index.clips}
    last = max(shape.layers)
    stages = []

    # notebook 02: the feature cache (ViT to the last chosen block, eq. 3), once per clip
    recs = [SimpleNamespace(name=c.name, path=c.path, num_frames=c.num_frames, size=c.size, split=c.split,
                            meta={"frame_indices": list(c.frames)}) for c in own]
    cache = predicted_cache_bytes(recs, shape.bb, shape.layers) if recs else 0
    fl = sum(shape.vit(grids[c.name], last_block=last, merger=False) for c in own)
    big = max((math.prod(grids[c.name]) for c in index.clips), default=0)
    stages.append(Stage("features", f"ViT blocks {shape.layers} of {len(own)} clips into the cache (fp16)",
                        {"weights": weights, "activations": vit_activation_bytes(vcfg, big, len(shape.layers), b)},
                        cache, fl, fl / rate))

    # stage 1: the AHD on cached features; the accumulation group in one pass
    s1 = cfg.stage1
    dims = {l: int(vcfg.hidden_size) for l in shape.layers}
    text_dim = int(cfg.ahd.text_dim or D)
    pa = ahd_parameters(dims, int(cfg.ahd.hidden), text_dim)
    h, w = max(((g[1], g[2]) for g in grids.values()), key=lambda x: x[0] * x[1], default=(0, 0))
    tok = int(s1.grad_accum) * int(s1.batch_size) * (int(s1.clip_frames) // 2) * h * w
    # per position and block: the fp16 feature and its fp32 copy, the MLP's hidden before / after GELU
    # (fp32), its text_dim output and the normalised copy the cosine makes (eq. 4-5)
    act = tok * sum(6 * d + 8 * int(cfg.ahd.hidden) + 8 * text_dim for d in dims.values())
    rows = sum(grids[c.name][0] * grids[c.name][1] * grids[c.name][2] for c in train)
    fl = 3 * int(s1.epochs) * ahd_flops(dims, int(cfg.ahd.hidden), text_dim, rows)
    # every epoch reads the training clips' features from the cache (its in-memory LRU holds a few clips)
    read = int(s1.epochs) * (predicted_cache_bytes([r for r in recs if r.split == "train"], shape.bb, shape.layers)
                             if train else 0) / (DISK_GBPS * 1e9)
    s1_stage = Stage("stage1", f"AHD ({pa:,} parameters), {s1.epochs} epochs over {len(train)} training clips "
                     f"(cache read {read / 60:.1f} min of it)",
                     {"weights": weights, "AHD + AdamW": pa * TRAINABLE_BYTES, "activations": act},
                     pa * 4 * 2 + pa * 12, fl, fl / rate + read)
    stages.append(s1_stage)
    extra = len({int(x) for x in (cfg.eval.seeds or [])} - {int(s1.seed)})
    if extra:  # notebook 04 trains the AHD again for each other evaluation seed (tvad.evaluate.predict)
        stages.append(Stage("stage1 seeds", f"the AHD again for {extra} more evaluation seed(s) (notebook 04)",
                            dict(s1_stage.memory), extra * s1_stage.disk, extra * fl, extra * s1_stage.seconds))

    # notebook 03: stage 2, per variant and phase (TRL SFTTrainer + LoRA)
    s2 = cfg.stage2
    n_layers = int(tcfg.num_hidden_layers)
    rae_p = rae_parameters(cfg, D) + 3 * D
    corpus = [c for c in index.clips if c.split == "train"]
    nd = n_dialogues or {"a": len(corpus) * int(cfg.data.dialogues_per_clip),
                         "b": len(corpus) * int(cfg.data.dialogues_per_clip),
                         "test": sum(c.split == "test" for c in index.clips)}
    mean_len = min(seq["tokens"], int(s2.max_length)) if seq["tokens"] else int(s2.max_length)
    # per dialogue: forward + recomputed forward (checkpointing) + backward to the activations (frozen
    # weights: no weight gradients but LoRA's) = 3 forwards; the ViT on pixels runs without grad
    per = (3 if s2.gradient_checkpointing else 2) * decoder_flops(tcfg, mean_len)["total"]
    vg = max((shape.video_grid(c.num_frames, *c.size) for c in corpus), key=math.prod, default=(0, 0, 0))
    if s2.video_input == "pixels":
        per += shape.vit(vg)
    act = decoder_activation_bytes(tcfg, int(s2.max_length), b, bool(s2.gradient_checkpointing))
    heat_fl = sum(shape.vit(grids[c.name], last_block=last, merger=False) for c in index.clips
                  if c.split in ("train", "validation") and c.source != cfg.data.dataset)
    variants = ["rae", "no_rae"] + (["rae_oracle"] if s2.oracle else [])
    steps_saved = lambda n: max(1, int(math.ceil(n * float(s2.epochs) / (int(s2.grad_accum) * int(s2.batch_size)))
                                       // max(1, int(s2.eval_steps))))
    for v in variants:
        for ph in ("a", "b"):
            lora = lora_parameters(tcfg, s2.lora_targets, int(s2.lora_r),
                                   n_layers if ph == "a" else min(n_layers, int(s2.phase_b_last_layers)))
            trainable = lora + (rae_p if v != "no_rae" else 3 * D)
            n = nd[ph] * float(s2.epochs)
            fl = n * per + (heat_fl if v == variants[0] and ph == "a" else 0)
            mem = {"weights": weights, "LoRA/RAE + AdamW": trainable * TRAINABLE_BYTES, "activations": act}
            if s2.video_input == "pixels":
                mem["activations"] = max(act, vit_activation_bytes(vcfg, math.prod(vg), 0, b))
            disk = weights + rae_p * 4 + pa * 4 + steps_saved(nd[ph]) * trainable * 12
            stages.append(Stage(f"stage2 {v} {ph}", f"{n:,.0f} dialogues, LoRA r{s2.lora_r} on "
                                f"{n_layers if ph == 'a' else min(n_layers, s2.phase_b_last_layers)} layers ({trainable:,} trainable)",
                                mem, disk, fl, fl / rate))

    # notebook 04: answers to the held-out dialogues, every variant and the untrained backbone
    new = int(s2.eval_max_new_tokens) * EVAL_TURNS
    prefill = decoder_flops(tcfg, mean_len)["total"] * EVAL_TURNS
    n = nd["test"] * (len(variants) + 1)
    decode_s = n * new * weights / (H100_HBM_TBPS * 1e12)
    stages.append(Stage("answers", f"{n:,} held-out dialogues x {EVAL_TURNS} turns, <= {s2.eval_max_new_tokens} new "
                        "tokens each (memory-bound decoding)",
                        {"weights": weights, "KV cache": 2 * n_layers * int(tcfg.num_key_value_heads) *
                         (D // int(tcfg.num_attention_heads)) * (mean_len + new) * b},
                        0, n * prefill, n * prefill / rate + decode_s))
    return stages
