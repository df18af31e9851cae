"""Analytical costs of Qwen2.5-VL and the T-VAD parts: parameter counts and FLOPs from a config.

    parameter_counts(cfg)                 # {'vision', 'language', 'lm_head', 'total'} = count_parameters(model)
    vit_flops(cfg.vision_config, t, h, w) # multiply-adds x 2 of the ViT on a (t, h, w) patch grid
    decoder_flops(cfg.text_config, L)     # the LLM decoder's forward on L tokens
    ahd_flops({0: 1280, ...}, 1024, 3584, tokens)

One formula for `tvad plan` (`tvad.plan`) and `benchmarks/gpu_real_size.py` (which measures the
achieved rate against these counts). FLOPs are 2 x multiply-adds of the matmuls; norms, rotary,
softmax and activations are left out (under 1 % at the 7B's widths). No weights are touched: a
config (transformers' `Qwen2_5_VLConfig` or its sub-configs) is all they read.
"""

from __future__ import annotations

from typing import Mapping

H100_BF16_TFLOPS = 800.0  # dense bf16 TFLOP/s of an H100-class GPU, the measured rate METHOD.md quotes (SXM spec: 989)
H100_HBM_TBPS = 3.35  # H100 SXM memory bandwidth, TB/s (bounds token-by-token generation: weights read per token)


def _g(cfg, name: str):
    """A field of a config object or of a config.json dict."""
    return cfg.get(name) if isinstance(cfg, Mapping) else getattr(cfg, name)


def _sub(cfg, name: str):
    return _g(cfg, name)


def vision_parameters(vcfg) -> int:
    """Parameters of Qwen2.5-VL's vision tower: Conv3d patch embedding (no bias), per block two RMSNorms,
    qkv (bias), proj (bias), SwiGLU MLP (gate/up/down, bias), and the merger (RMSNorm, two linears
    with bias over the 2x2-concatenated patches)."""
    D, I = int(_g(vcfg, "hidden_size")), int(_g(vcfg, "intermediate_size"))
    m, out = int(_g(vcfg, "spatial_merge_size")), int(_g(vcfg, "out_hidden_size"))
    C = int(_g(vcfg, "in_channels")) * int(_g(vcfg, "temporal_patch_size")) * int(_g(vcfg, "patch_size")) ** 2
    block = 2 * D + (D * 3 * D + 3 * D) + (D * D + D) + 2 * (D * I + I) + (I * D + D)
    M = m * m * D
    merger = D + (M * M + M) + (M * out + out)
    return C * D + int(_g(vcfg, "depth")) * block + merger


def language_parameters(tcfg) -> int:
    """Parameters of the decoder (embedding table, layers, final norm; not the lm_head): per layer q (bias),
    k and v (bias, GQA width), o (no bias), SwiGLU MLP without bias, two RMSNorms."""
    D, I, V = int(_g(tcfg, "hidden_size")), int(_g(tcfg, "intermediate_size")), int(_g(tcfg, "vocab_size"))
    H, KV = int(_g(tcfg, "num_attention_heads")), int(_g(tcfg, "num_key_value_heads"))
    kv = KV * (D // H)
    layer = (D * D + D) + 2 * (D * kv + kv) + D * D + 3 * D * I + 2 * D
    return V * D + int(_g(tcfg, "num_hidden_layers")) * layer + D


def parameter_counts(cfg) -> dict[str, int]:
    """{'vision', 'language', 'lm_head', 'total'} of a Qwen2.5-VL config, as
    `tvad.model.backbone.count_parameters` counts them on the built model."""
    vcfg, tcfg = _sub(cfg, "vision_config"), _sub(cfg, "text_config")
    vis, lang = vision_parameters(vcfg), language_parameters(tcfg)
    tied = _g(cfg, "tie_word_embeddings")
    tied = _g(tcfg, "tie_word_embeddings") if tied is None else tied
    head = 0 if tied else int(_g(tcfg, "vocab_size")) * int(_g(tcfg, "hidden_size"))
    return {"vision": vis, "language": lang, "lm_head": head, "total": vis + lang + head}


def vision_windows(vcfg, t: int, h: int, w: int) -> list[int]:
    """Patch counts of the windowed-attention spans of a (t, h, w) grid (112-px windows, edge windows
    smaller), as transformers' `get_vision_window_index` cuts them."""
    import torch
    from transformers.vision_utils import get_vision_window_index

    _, cu = get_vision_window_index(torch.tensor([[t, h, w]]), spatial_merge_size=int(_g(vcfg, "spatial_merge_size")),
                                    window_size=int(_g(vcfg, "window_size")), patch_size=int(_g(vcfg, "patch_size")))
    cu = torch.as_tensor(cu, dtype=torch.long)
    return [int(x) for x in (cu[1:] - cu[:-1]) if int(x) > 0]


def vit_flops(vcfg, t: int, h: int, w: int, last_block: int | None = None, merger: bool = True) -> dict:
    """Multiply-adds x 2 of the vision tower on a (t, h, w) patch grid: patch embedding, each block's
    qkv / proj / SwiGLU MLP, attention scores and values over each block's exact spans (full blocks:
    the h*w patches of a 2-frame group; the others: the 112-px windows, edge windows smaller), and
    the merger (2x2 concatenation, MLP to the decoder width). `last_block`: stop after that block
    (the feature path, eq. 3). Returns {"total", "patch_embed", "linear", "attention", "merger",
    "windows_per_group", "patches_per_group"}."""
    D, I = int(_g(vcfg, "hidden_size")), int(_g(vcfg, "intermediate_size"))
    m = int(_g(vcfg, "spatial_merge_size"))
    C = int(_g(vcfg, "in_channels")) * int(_g(vcfg, "temporal_patch_size")) * int(_g(vcfg, "patch_size")) ** 2
    N = t * h * w
    win = vision_windows(vcfg, t, h, w)
    full = [h * w] * t
    fullatt = set(int(i) for i in _g(vcfg, "fullatt_block_indexes"))
    depth = int(_g(vcfg, "depth")) if last_block is None else int(last_block) + 1
    embed = 2 * N * C * D
    linear = depth * (2 * N * 4 * D * D + 2 * N * 3 * D * I)
    sq_full, sq_win = sum(L * L for L in full), sum(L * L for L in win)
    attn = sum(4 * D * (sq_full if i in fullatt else sq_win) for i in range(depth))
    mg = 2 * (N // (m * m)) * (m * m * D) * (m * m * D + int(_g(vcfg, "out_hidden_size"))) if merger else 0
    total = embed + linear + attn + mg
    return {"total": total, "patch_embed": embed, "linear": linear, "attention": attn, "merger": mg,
            "windows_per_group": len(win) // max(1, t), "patches_per_group": h * w}


def decoder_flops(tcfg, tokens: int, causal: bool = True, logits_tokens: int | None = None) -> dict:
    """Multiply-adds x 2 of the LLM decoder's forward on one sequence of `tokens`: per layer the q/k/v/o
    projections (GQA: k and v at num_key_value_heads), the SwiGLU MLP, attention scores and values
    (causal: half of the L x L products, as flash / memory-efficient kernels skip the masked ones), and
    the lm_head on `logits_tokens` positions (default all). Returns {"total", "linear", "attention",
    "lm_head"}."""
    D, I, V = int(_g(tcfg, "hidden_size")), int(_g(tcfg, "intermediate_size")), int(_g(tcfg, "vocab_size"))
    H, KV = int(_g(tcfg, "num_attention_heads")), int(_g(tcfg, "num_key_value_heads"))
    kv = KV * (D // H)
    L, n = int(tokens), int(_g(tcfg, "num_hidden_layers"))
    linear = n * 2 * L * (2 * D * D + 2 * D * kv + 3 * D * I)
    attn = n * 4 * D * L * L // (2 if causal else 1)
    head = 2 * (L if logits_tokens is None else int(logits_tokens)) * D * V
    return {"total": linear + attn + head, "linear": linear, "attention": attn, "lm_head": head}


def ahd_flops(layer_dims: Mapping[int, int], hidden: int, text_dim: int, tokens: int) -> int:
    """The AHD's MLPs (eq. 4) on `tokens` patch positions (cosines and the mix are negligible)."""
    return sum(2 * tokens * (d * hidden + hidden * text_dim) for d in layer_dims.values())


def ahd_parameters(layer_dims: Mapping[int, int], hidden: int, text_dim: int) -> int:
    """Parameters of the AHD's per-block MLPs (eq. 4: D_l -> hidden -> text_dim, with biases) and the
    eq. 6 block weights; the AHD's own count is the reference (`tests/test_model_flops.py`)."""
    return sum(d * hidden + hidden + hidden * text_dim + text_dim for d in layer_dims.values()) + len(layer_dims)
