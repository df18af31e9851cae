"""Qwen2.5-VL-7B at real size with random weights: the frozen-backbone costs T-VAD pays, on one GPU.

    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/gpu_real_size.py            # the 7B, bf16, 868x476 (GPU)
    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/gpu_real_size.py --small    # scaled-down config, CPU, < 1 min

Builds `tvad.model.backbone.qwen25vl_7b_config()` (no download: random weights, bf16, on the
device) and measures, at 868x476 (a 34 x 62 patch grid, 2,108 patches per 2-frame group):

1. ViT throughput per 2-frame group, against the analytical FLOP count of the tower (patch
   embedding, 32 blocks with their exact attention spans: full-frame-pair attention in blocks
   7/15/23/31, 112-px windows elsewhere, and the merger): ms per group, achieved TFLOP/s, and
   the fraction of the H100's ~800 TFLOP/s bf16 rate (also of a measured bf16 matmul rate).
   Both the stock `visual(...)` forward and the repo's truncated feature path
   (`Backbone.features_from_pixels`, blocks 0, 7, 15, 23, 31, raster order).
2. AHD heatmap inference frames/s: the repo's AHD (hidden 1024, five blocks, fp32 as shipped, and
   under bf16 autocast) on cached features, ViT + AHD from processor patches, and the whole
   `TVADDetector.detect` from uint8 frames (CPU preprocessing and regions included).
3. Peak memory (and step time) of a stage-1 step (`tvad.train.stage1.train` on cached fp16
   features, paper preset: 16-frame clips, accumulation 8 batched in one pass) and of a stage-2
   step (batch 1, length 2048, gradient checkpointing, LoRA r16 on q_proj/v_proj via peft, the
   repo's RAE + PromptInjector hook, AdamW on the trainables), with the video given as cached
   merged tokens ("embeds") and as pixels (the frozen ViT runs every step, the paper preset).
4. Vision attention implementation: sdpa vs eager (vs flash_attention_2 when installed).

Prints one JSON record (also benchmarks/results/gpu_real_size[_small].json) and a short table last.
`--small` runs the same code path on a scaled-down config (4 ViT blocks of width 64, 2 decoder
layers, 224x448 frames, length 512) in fp32 on the CPU: it cannot rot without the test noticing.
"""

from __future__ import annotations

import argparse
import gc
import importlib.util
import math
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import REPO, PeakRSS, emit, machine, stats, sync, timed, versions  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402

from tvad.model.flops import H100_BF16_TFLOPS, ahd_flops, vit_flops  # noqa: E402  (one formula with tvad plan)

ROT = {"<|anomaly_start|>": 151665, "<|anomaly_pad|>": 151666, "<|anomaly_end|>": 151667}  # METHOD: no resize


# -- configuration ----------------------------------------------------------------------------------

def model_config(small: bool):
    """The 7B's configuration, or the scaled-down one of `--small` (same structure: windowed and
    full-attention ViT blocks, merger, GQA decoder with multimodal RoPE, real special-token ids)."""
    from tvad.model.backbone import qwen25vl_7b_config

    cfg = qwen25vl_7b_config()
    if small:
        v, t = cfg.vision_config, cfg.text_config
        v.depth, v.hidden_size, v.intermediate_size, v.num_heads = 4, 64, 128, 4
        v.fullatt_block_indexes, v.out_hidden_size = [1, 3], 64
        t.hidden_size, t.intermediate_size, t.num_hidden_layers = 64, 128, 2
        t.num_attention_heads, t.num_key_value_heads = 4, 2
        t.rope_parameters = {**t.rope_parameters, "mrope_section": [2, 3, 3]}  # head_dim 16: 8 rotary pairs
    return cfg


def settings(small: bool) -> dict:
    if small:
        return dict(frame=(224, 448), groups=[1, 2], ahd_hidden=64, s1_clip_frames=4, s1_accum=2, s1_samples=4,
                    s2_length=512, s2_groups=2, repeats=2, matmul=256)
    return dict(frame=(476, 868), groups=[1, 8, 20], ahd_hidden=1024, s1_clip_frames=16, s1_accum=8, s1_samples=16,
                s2_length=2048, s2_groups=3, repeats=5, matmul=8192)


def chosen_blocks(vcfg) -> list[int]:
    """The first block and the full-attention blocks (7B: 0, 7, 15, 23, 31), as in METHOD.md: the
    paper preset's `backbone.layers: auto`."""
    from tvad.model.backbone import resolve_layers

    return resolve_layers("auto", vcfg)


# -- analytical FLOPs -----------------------------------------------------------------------------
# One formula for this benchmark and `tvad plan`: tvad.model.flops (vit_flops, ahd_flops, decoder_flops).

# -- helpers --------------------------------------------------------------------------------------

class Mem:
    """Peak memory of a block: CUDA max_memory_allocated (GiB above the entry level and absolute), or
    on the CPU the peak resident set above entry."""

    def __init__(self, device: torch.device):
        self.device = device

    def __enter__(self):
        if self.device.type == "cuda":
            sync(self.device)
            torch.cuda.reset_peak_memory_stats()
            self.base = torch.cuda.memory_allocated()
        else:
            self.rss = PeakRSS().__enter__()
        return self

    def __exit__(self, *exc):
        if self.device.type == "cuda":
            sync(self.device)
            self.peak = torch.cuda.max_memory_allocated()
        else:
            self.rss.__exit__(*exc)

    def record(self) -> dict:
        if self.device.type == "cuda":
            return {"peak_gib": round(self.peak / 2**30, 2), "above_entry_gib": round((self.peak - self.base) / 2**30, 2),
                    "kind": "torch.cuda.max_memory_allocated"}
        return {"peak_gib": round(self.rss.peak / 2**30, 3), "above_entry_gib": round(self.rss.mb / 1024, 3),
                "kind": "process RSS (sampled every 10 ms)"}


def free(device: torch.device) -> None:
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


def build_model(cfg, device: torch.device, dtype: torch.dtype, attn: str = "sdpa"):
    """Qwen2_5_VLForConditionalGeneration with random weights, created directly on `device`."""
    from transformers import Qwen2_5_VLForConditionalGeneration

    torch.manual_seed(0)
    with torch.device(device):
        model = Qwen2_5_VLForConditionalGeneration._from_config(cfg, dtype=dtype, attn_implementation=attn)
    if next(model.parameters()).device != device:
        model.to(device)
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model


def make_backbone(model, frame: tuple[int, int]):
    """The repo's Backbone around the random model, with a Qwen2.5-VL video processor (the tiny
    asset's: the same patch, merge and temporal sizes) capped at the frame's pixel count."""
    from transformers import AutoProcessor

    from tvad.model.backbone import Backbone

    proc = AutoProcessor.from_pretrained(REPO / "assets" / "tiny-qwen2.5-vl", local_files_only=True)
    return Backbone(model, proc, source=None, max_pixels=frame[0] * frame[1])


def patches(vcfg, t: int, h: int, w: int, device, dtype) -> tuple[torch.Tensor, torch.Tensor]:
    C = int(vcfg.in_channels) * int(vcfg.temporal_patch_size) * int(vcfg.patch_size) ** 2
    g = torch.Generator().manual_seed(t)
    pv = torch.randn(t * h * w, C, generator=g).to(device, dtype)
    return pv, torch.tensor([[t, h, w]], device=device)


def matmul_rate(n: int, device, dtype) -> dict:
    """Dense matmul TFLOP/s of this device (the practical ceiling the ViT is compared with)."""
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    st, _ = timed(lambda: a @ b, repeats=10, warmup=3, device=device)
    return {"n": n, "dtype": str(dtype).replace("torch.", ""), "tflops": round(2 * n ** 3 / st["median"] / 1e12, 4),
            "seconds": st}


# -- sections -------------------------------------------------------------------------------------

def bench_vit(model, bb, S: dict, device, dtype, peak_tflops: float, matmul_tflops: float) -> dict:
    vcfg = model.config.vision_config
    h, w = S["frame"][0] // 14, S["frame"][1] // 14
    blocks = chosen_blocks(vcfg)
    out = {"grid_hw": [h, w], "blocks": blocks, "per_groups": {}}
    f1 = vit_flops(vcfg, 1, h, w)
    out["flops_per_group"] = f1
    out["tflop_per_group"] = round(f1["total"] / 1e12, 6)
    out["floor_ms_per_group"] = round(f1["total"] / (peak_tflops * 1e12) * 1e3, 3)
    for t in S["groups"]:
        pv, grid = patches(vcfg, t, h, w, device, dtype)
        fl = vit_flops(vcfg, t, h, w)
        st, _ = timed(lambda: model.model.visual(pv, grid_thw=grid), S["repeats"], 1, device)
        fl_feat = vit_flops(vcfg, t, h, w, last_block=max(blocks), merger=False)
        st2, _ = timed(lambda: bb.features_from_pixels(pv, grid, blocks), S["repeats"], 1, device)
        ms = st["median"] / t * 1e3
        ach = fl["total"] / st["median"] / 1e12
        out["per_groups"][str(t)] = {
            "frames": 2 * t, "visual_forward_s": st, "ms_per_group": round(ms, 3),
            "achieved_tflops": round(ach, 4), "fraction_of_peak": round(ach / peak_tflops, 4),
            "fraction_of_matmul": round(ach / matmul_tflops, 4),
            "features_path_s": st2, "features_ms_per_group": round(st2["median"] / t * 1e3, 3),
            "features_achieved_tflops": round(fl_feat["total"] / st2["median"] / 1e12, 2),
        }
        del pv
        free(device)
    # the patch embedding: Qwen's Conv3d (kernel = stride = 2x14x14) against the same weights as one matmul
    t = max(S["groups"])
    pv, grid = patches(vcfg, t, h, w, device, dtype)
    pe = model.model.visual.patch_embed
    wmat = pe.proj.weight.reshape(pe.proj.weight.shape[0], -1)
    with torch.no_grad():
        st_conv, y1 = timed(lambda: pe(pv), S["repeats"], 1, device)
        st_lin, y2 = timed(lambda: pv @ wmat.T, S["repeats"], 1, device)
    out["patch_embed"] = {"groups": t, "conv3d_s": st_conv, "as_matmul_s": st_lin,
                          "speedup": round(st_conv["median"] / st_lin["median"], 2),
                          "max_abs_diff": round(float((y1.float() - y2.float()).abs().max()), 5)}
    del pv, y1, y2
    with Mem(device) as mem:  # feature extraction of the longest clip (no grad), memory above weights
        t = max(S["groups"])
        pv, grid = patches(vcfg, t, h, w, device, dtype)
        bb.features_from_pixels(pv, grid, blocks)
    out["features_peak_memory"] = {"groups": t, **mem.record()}
    del pv
    free(device)
    return out


def bench_attention(model, S: dict, device, dtype, peak_tflops: float) -> dict:
    vcfg = model.config.vision_config
    vis = model.model.visual
    h, w = S["frame"][0] // 14, S["frame"][1] // 14
    t = S["groups"][min(1, len(S["groups"]) - 1)]
    pv, grid = patches(vcfg, t, h, w, device, dtype)
    fl = vit_flops(vcfg, t, h, w)["total"]
    impls = ["sdpa", "eager"]
    if device.type == "cuda" and importlib.util.find_spec("flash_attn") is not None:
        impls.append("flash_attention_2")
    old = vis.config._attn_implementation
    res = {"groups": t}
    ref = None
    for impl in impls:
        try:
            vis.config._attn_implementation = impl
            st, y = timed(lambda: vis(pv, grid_thw=grid), S["repeats"], 1, device)
            y = y.pooler_output if hasattr(y, "pooler_output") else y
            y = y.detach().float()
            ref = y if ref is None else ref
            res[impl] = {"seconds": st, "ms_per_group": round(st["median"] / t * 1e3, 3),
                         "achieved_tflops": round(fl / st["median"] / 1e12, 2),
                         "max_abs_diff_vs_sdpa": round(float((y - ref).abs().max()), 5)}
        except Exception as e:  # an implementation this install cannot run
            res[impl] = {"error": f"{type(e).__name__}: {str(e)[:200]}"}
        finally:
            vis.config._attn_implementation = old
    res["flash_attn_installed"] = importlib.util.find_spec("flash_attn") is not None
    del pv
    free(device)
    return res


def bench_ahd(model, bb, S: dict, device, dtype) -> dict:
    from tvad.model.ahd import AHD
    from tvad.model.detector import TVADDetector

    vcfg = model.config.vision_config
    blocks = chosen_blocks(vcfg)
    D = int(model.config.text_config.hidden_size)
    H, W = S["frame"]
    h, w = H // 14, W // 14
    t = S["groups"][min(1, len(S["groups"]) - 1)]
    torch.manual_seed(0)
    ahd = AHD(bb.layer_dims(blocks), D, S["ahd_hidden"]).to(device)
    ahd.set_text(torch.randn(8, D), torch.randn(8, D))
    ahd.eval()
    pv, grid = patches(vcfg, t, h, w, device, dtype)
    feats = bb.features_from_pixels(pv, grid, blocks).features
    fl = ahd_flops(bb.layer_dims(blocks), S["ahd_hidden"], D, t * h * w)

    @torch.no_grad()
    def ahd_only(autocast: bool = False):
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=autocast):
            out = ahd(feats)
        return AHD.upsample(out.heat, (H, W))

    res = {"groups": t, "frames": 2 * t, "hidden": S["ahd_hidden"], "blocks": blocks,
           "params": sum(p.numel() for p in ahd.parameters()), "tflop_per_group": round(fl / t / 1e12, 4)}
    st, _ = timed(ahd_only, S["repeats"], 1, device)
    res["ahd_fp32"] = {"seconds": st, "frames_per_s": round(2 * t / st["median"], 1),
                       "achieved_tflops": round(fl / st["median"] / 1e12, 2)}
    st, _ = timed(lambda: ahd_only(True), S["repeats"], 1, device)
    res["ahd_bf16_autocast"] = {"seconds": st, "frames_per_s": round(2 * t / st["median"], 1),
                                "achieved_tflops": round(fl / st["median"] / 1e12, 2)}

    @torch.no_grad()
    def vit_ahd():
        f = bb.features_from_pixels(pv, grid, blocks).features
        return AHD.upsample(ahd(f).heat, (H, W))

    st, _ = timed(vit_ahd, S["repeats"], 1, device)
    res["vit_plus_ahd_from_patches"] = {"seconds": st, "frames_per_s": round(2 * t / st["median"], 1)}
    del feats
    free(device)
    # the whole detect() from uint8 frames: CPU preprocessing, ViT, AHD, upsample, regions
    frames = np.random.default_rng(0).integers(0, 256, (2 * t, H, W, 3), dtype=np.uint8)
    meta = {"backbone": {"layers": blocks}}
    det = TVADDetector(bb, ahd, meta, window=2 * t)
    st, _ = timed(lambda: det.detect(frames), max(2, S["repeats"] // 2), 1, device)
    res["detect_end_to_end"] = {"seconds": st, "frames_per_s": round(2 * t / st["median"], 1)}
    st, _ = timed(lambda: bb.preprocess(frames), max(2, S["repeats"] // 2), 0, device)
    res["preprocess_cpu"] = {"seconds": st, "frames_per_s": round(2 * t / st["median"], 1)}
    return res


def bench_stage1(model, bb, S: dict, device) -> dict:
    """stage1.train on cached fp16 features (one shared random tensor per block, as `prepare`
    gives them), paper recipe: clips of `s1_clip_frames`, the accumulation group batched."""
    from tvad.config import Stage1Config
    from tvad.model.ahd import AHD, pair_merge
    from tvad.train.stage1 import Sample, train

    vcfg = model.config.vision_config
    blocks = chosen_blocks(vcfg)
    D = int(model.config.text_config.hidden_size)
    H, W = S["frame"]
    h, w = H // 14, W // 14
    n = S["s1_clip_frames"]
    T = n // 2
    g = torch.Generator().manual_seed(1)
    feats = {l: torch.randn(T, h, w, int(vcfg.hidden_size), generator=g).half() for l in blocks}
    m = torch.zeros(n, H, W, dtype=torch.int32)
    m[:, H // 3: H // 2, W // 3: W // 2] = 1
    masks = pair_merge(m)
    samples = [Sample(f"v{i}", feats, masks, np.ones(n, int), np.zeros((0, 6)), n, (H, W))
               for i in range(S["s1_samples"])]
    torch.manual_seed(0)
    ahd = AHD(bb.layer_dims(blocks), D, S["ahd_hidden"]).to(device)
    ahd.set_text(torch.randn(8, D), torch.randn(8, D))
    cfg = Stage1Config(epochs=1, clip_frames=n, grad_accum=S["s1_accum"], batch_size=1)
    steps = S["s1_samples"] // S["s1_accum"]
    with tempfile.TemporaryDirectory() as d, Mem(device) as mem:
        res = train(ahd, samples, [], cfg, d, progress=False, checkpoint_every=10 ** 6)
    sec = res.epoch_seconds[0]
    out = {"clip_frames": n, "accum": S["s1_accum"], "optimizer_steps": steps, "clips": S["s1_samples"],
           "epoch_s_incl_checkpoint": round(sec, 3), "s_per_optimizer_step": round(sec / steps, 4),
           "frames_per_s": round(S["s1_samples"] * n / sec, 1), "memory": mem.record(),
           "note": "memory above entry = the stage-1 step alone (the 7B's weights are not needed for cached "
                   "features); peak_gib includes the resident random 7B"}
    del samples, feats, ahd
    free(device)
    return out


def dialogue_ids(cfg, L: int, t: int, h: int, w: int, num_prompts: int) -> dict:
    """One chat-shaped sequence of exactly L tokens: text, the anomaly prompt block, the video
    tokens, text; labels on the last quarter (the answers)."""
    vid = int(cfg.video_token_id)
    nv = t * h * w // 4
    g = torch.Generator().manual_seed(2)
    head = torch.randint(0, 151643, (12,), generator=g)
    body = [head, torch.tensor([ROT["<|anomaly_start|>"]]), torch.full((t * num_prompts,), ROT["<|anomaly_pad|>"]),
            torch.tensor([ROT["<|anomaly_end|>"], int(cfg.vision_start_token_id)]), torch.full((nv,), vid),
            torch.tensor([int(cfg.vision_end_token_id)])]
    n = sum(len(x) for x in body)
    if n > L:
        raise ValueError(f"{t} temporal groups need {n} tokens, over the length {L}")
    ids = torch.cat(body + [torch.randint(0, 151643, (L - n,), generator=g)])[None]
    labels = torch.full_like(ids, -100)
    labels[0, -L // 4:] = ids[0, -L // 4:]
    mm = torch.where(ids == vid, 2, 0).to(torch.int32)
    return {"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": labels, "mm_token_type_ids": mm,
            "video_grid_thw": torch.tensor([[t, h, w]]), "video_tokens": nv, "prompt_tokens": t * num_prompts}


def bench_stage2(model, S: dict, device, dtype) -> dict:
    """A stage-2 step: peft LoRA r16 on q_proj/v_proj, gradient checkpointing (non-reentrant), the
    repo's RAE in the PromptInjector hook, AdamW on LoRA + RAE + token rows, batch 1, length L."""
    from peft import LoraConfig, get_peft_model

    from tvad.config import RAEConfig
    from tvad.model.rae import RegionAwareAnomalyEncoder
    from tvad.model.tvad import HEATMAP_KWARG, INJECTOR_NAME, VIDEO_EMBEDS_KWARG, PromptInjector, attach_injector

    cfg = model.config
    D = int(cfg.text_config.hidden_size)
    H, W = S["frame"]
    h, w, t, L = H // 14, W // 14, S["s2_groups"], S["s2_length"]
    rc = RAEConfig()
    torch.manual_seed(0)
    rae = RegionAwareAnomalyEncoder(D, rc.channels, rc.conv_layers, rc.grid, rc.num_base, rc.variant)
    rows = model.get_input_embeddings().weight[list(ROT.values())].detach().float()
    inj = PromptInjector(rae, ROT, rows, video_token_id=int(cfg.video_token_id))  # the heatmap onto the token grid
    attach_injector(model, inj)
    lcfg = LoraConfig(r=16, lora_alpha=32, lora_dropout=0.05, target_modules=["q_proj", "v_proj"], bias="none",
                      task_type="CAUSAL_LM")
    pm = get_peft_model(model, lcfg)
    wrapped = [n for n, _ in pm.named_modules() if n.endswith(".lora_A")]
    assert wrapped and all("language_model" in n for n in wrapped), "LoRA must sit on the decoder only"
    for p in inj.parameters():
        p.requires_grad_(True)
    model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    pm.train()
    trainable = [p for p in pm.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(trainable, lr=2e-4, fused=device.type == "cuda")
    seq = dialogue_ids(cfg, L, t, h, w, inj.num_prompts)
    batch = {k: v.to(device) for k, v in seq.items() if isinstance(v, torch.Tensor)}
    batch["second_per_grid_ts"] = torch.tensor([2.0], device=device)
    heat = [torch.rand(t, h, w, device=device)]
    g = torch.Generator().manual_seed(3)
    vemb = [torch.randn(seq["video_tokens"], D, generator=g).to(device, dtype)]
    pv, _ = patches(cfg.vision_config, t, h, w, device, dtype)
    out = {"length": L, "groups": t, "video_tokens": seq["video_tokens"], "prompt_tokens": seq["prompt_tokens"],
           "lora_params": sum(p.numel() for n, p in pm.named_parameters() if "lora_" in n),
           "trainable_params": sum(p.numel() for p in trainable), "lora_modules": len(wrapped),
           # what fits the length at this frame size (paper: clips of 8-40 frames, max length 2048)
           "tokens_per_group": h * w // 4 + inj.num_prompts,
           "max_frames_fitting_length": 2 * (L // (h * w // 4 + inj.num_prompts))}
    for mode in ("embeds", "pixels"):
        extra = {VIDEO_EMBEDS_KWARG: vemb} if mode == "embeds" else {"pixel_values_videos": pv}

        def step():
            loss = pm(**batch, **{HEATMAP_KWARG: heat}, **extra).loss
            loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
            return float(loss.detach())

        step()  # warm-up (optimizer state allocated)
        free(device)
        with Mem(device) as mem:
            st, loss = timed(step, max(2, S["repeats"] // 2), 0, device)
        out[mode] = {"step_s": st, "tokens_per_s": round(L / st["median"], 1), "memory": mem.record(),
                     "loss_finite": bool(math.isfinite(loss))}
    model.gradient_checkpointing_disable()
    pm.unload()  # drop the adapters: the model is as before (weights untouched)
    getattr(model.model, "_modules").pop(INJECTOR_NAME, None)
    del opt, pm, trainable
    free(device)
    return out


# -- main -----------------------------------------------------------------------------------------

def table(rec: dict) -> str:
    rows = []
    v = rec.get("vit", {})
    for t, r in v.get("per_groups", {}).items():
        rows.append((f"ViT visual() {t} group(s)", f"{r['ms_per_group']:.2f} ms/group, {r['achieved_tflops']:.3g} TFLOP/s, "
                     f"{100 * r['fraction_of_peak']:.1f}% of {rec['peak_tflops']:.3g}"))
    if v:
        rows.append(("ViT floor (analytic)", f"{v['tflop_per_group']:.4g} TFLOP/group -> {v['floor_ms_per_group']:.2f} ms"))
        last = list(v["per_groups"].values())[-1]
        rows.append(("features path (blocks)", f"{last['features_ms_per_group']:.2f} ms/group"))
        if "patch_embed" in v:
            rows.append(("patch embed conv3d/matmul", f"{v['patch_embed']['speedup']:.1f}x"))
    a = rec.get("attention", {})
    for impl in ("sdpa", "eager", "flash_attention_2"):
        if impl in a:
            r = a[impl]
            rows.append((f"vision attn {impl}", f"{r['ms_per_group']:.2f} ms/group" if "ms_per_group" in r else r["error"][:60]))
    h = rec.get("ahd", {})
    if h:
        rows.append(("AHD fp32 / bf16 autocast", f"{h['ahd_fp32']['frames_per_s']:.0f} / "
                     f"{h['ahd_bf16_autocast']['frames_per_s']:.0f} frames/s"))
        rows.append(("ViT+AHD from patches", f"{h['vit_plus_ahd_from_patches']['frames_per_s']:.0f} frames/s"))
        rows.append(("detect() from uint8", f"{h['detect_end_to_end']['frames_per_s']:.1f} frames/s "
                     f"(preprocess alone {h['preprocess_cpu']['frames_per_s']:.0f})"))
    s1 = rec.get("stage1", {})
    if s1:
        rows.append(("stage-1 step peak", f"{s1['memory']['above_entry_gib']:.2f} GiB above weights, "
                     f"{s1['s_per_optimizer_step']:.3f} s/step"))
    s2 = rec.get("stage2", {})
    for mode in ("embeds", "pixels"):
        if mode in s2:
            r = s2[mode]
            rows.append((f"stage-2 step ({mode})", f"{r['memory']['peak_gib']:.2f} GiB peak, {r['tokens_per_s']:.0f} tok/s"))
    if "cache_speedup_estimate" in rec:
        rows.append(("stage-1 cache speed-up", f"{rec['cache_speedup_estimate']['speedup']:.1f}x (features vs cached step)"))
    rows.append(("wall time", f"{rec['wall_s']:.0f} s"))
    wid = max(len(r[0]) for r in rows)
    head = f"{rec['device']} ({'small' if rec['small'] else '7B'} config, {rec['dtype']})"
    return "\n".join([head] + [f"  {k.ljust(wid)}  {v}" for k, v in rows])


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--small", action="store_true", help="scaled-down config on the CPU (same code path)")
    ap.add_argument("--device", default=None, help="default: cuda if available (not with --small), else cpu")
    ap.add_argument("--dtype", default=None, help="default: bfloat16 on GPU, float32 on CPU")
    ap.add_argument("--peak-tflops", type=float, default=None, help=f"reference rate (default {H100_BF16_TFLOPS:.0f}; "
                    "--small on the CPU: the measured matmul rate)")
    ap.add_argument("--skip", default="", help="comma list of sections to skip: vit,attention,ahd,stage1,stage2")
    ap.add_argument("--budget-s", type=float, default=420, help="skip remaining sections past this wall time")
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    ap.add_argument("--out", default=None, help="JSON path ('-': print only)")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    t_start = time.perf_counter()
    dev = torch.device(args.device or ("cuda" if torch.cuda.is_available() and not args.small else "cpu"))
    dtype = {"bfloat16": torch.bfloat16, "bf16": torch.bfloat16, "float32": torch.float32, "fp32": torch.float32,
             "float16": torch.float16}[args.dtype or ("bfloat16" if dev.type == "cuda" else "float32")]
    S = settings(args.small)
    skip = {s.strip() for s in args.skip.split(",") if s.strip()}
    cfg = model_config(args.small)
    rec = {"benchmark": "gpu_real_size", "small": args.small, "device": torch.cuda.get_device_name(dev)
           if dev.type == "cuda" else "cpu", "dtype": str(dtype).replace("torch.", ""), "machine": machine(),
           "versions": versions(), "settings": S, "sections_s": {}, "skipped": []}
    mm = matmul_rate(S["matmul"], dev, dtype)
    rec["matmul"] = mm
    peak = args.peak_tflops or (H100_BF16_TFLOPS if dev.type == "cuda" else mm["tflops"])
    rec["peak_tflops"] = peak
    t0 = time.perf_counter()
    model = build_model(cfg, dev, dtype)
    from tvad.model.backbone import count_parameters

    rec["parameters"] = count_parameters(model)
    bb = make_backbone(model, S["frame"])
    rec["sections_s"]["build"] = round(time.perf_counter() - t0, 1)
    sections = [("vit", lambda: bench_vit(model, bb, S, dev, dtype, peak, mm["tflops"])),
                ("ahd", lambda: bench_ahd(model, bb, S, dev, dtype)),
                ("stage1", lambda: bench_stage1(model, bb, S, dev)),
                ("stage2", lambda: bench_stage2(model, S, dev, dtype)),
                ("attention", lambda: bench_attention(model, S, dev, dtype, peak))]
    for name, fn in sections:
        if name in skip:
            continue
        if time.perf_counter() - t_start > args.budget_s:
            rec["skipped"].append(name)
            continue
        t0 = time.perf_counter()
        try:
            rec[name] = fn()
        except Exception as e:  # one section failing must not lose the others' numbers
            if args.small:
                raise
            rec[name] = {"error": f"{type(e).__name__}: {e}"}
        rec["sections_s"][name] = round(time.perf_counter() - t0, 1)
        free(dev)
    v, s1 = rec.get("vit") or {}, rec.get("stage1") or {}
    if v.get("per_groups") and "s_per_optimizer_step" in s1:
        # issue 9's cache target: a stage-1 step on cached features against the same step plus
        # computing its features (decode and preprocessing not counted: they favour the cache more)
        groups = s1["accum"] * s1["clip_frames"] // 2
        feat = list(v["per_groups"].values())[-1]["features_ms_per_group"] / 1e3 * groups
        rec["cache_speedup_estimate"] = {"groups_per_step": groups, "features_s_per_step": round(feat, 4),
                                         "cached_step_s": s1["s_per_optimizer_step"],
                                         "speedup": round((feat + s1["s_per_optimizer_step"]) /
                                                          s1["s_per_optimizer_step"], 2)}
    rec["wall_s"] = round(time.perf_counter() - t_start, 1)
    out = args.out or str(REPO / "benchmarks" / "results" / f"gpu_real_size{'_small' if args.small else ''}.json")
    emit(rec, "gpu_real_size", out)
    try:
        print("\n" + table(rec), flush=True)
    except Exception as e:  # the table must never hide the record
        print(f"(table failed: {e})")
    return rec


if __name__ == "__main__":
    main()
