"""tvad.model.flops against the models themselves: parameter counts equal the built model's (the 7B,
the wide checkpoint's config, the tiny asset), and the FLOP formulas' matmul terms equal 2 x tokens x
the weights of the Linear layers transformers builds (on the meta device: no memory)."""

import json

import pytest
import torch
from torch import nn
from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration

from tvad.io import resolve_model_path
from tvad.model.ahd import AHD
from tvad.model.backbone import count_parameters, qwen25vl_7b_config
from tvad.model.flops import (
    ahd_flops,
    ahd_parameters,
    decoder_flops,
    parameter_counts,
    vit_flops,
)
from tvad.model.widths import wide_config

TINY = resolve_model_path("assets/tiny-qwen2.5-vl")


def meta_model(cfg):
    with torch.device("meta"):
        return Qwen2_5_VLForConditionalGeneration._from_config(cfg)


CONFIGS = {"7b": qwen25vl_7b_config, "wide": lambda: wide_config(2),
           "tiny": lambda: Qwen2_5_VLConfig.from_pretrained(str(TINY))}


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_parameter_counts_equal_the_built_model(name):
    cfg = CONFIGS[name]()
    assert parameter_counts(cfg) == count_parameters(meta_model(cfg))


def test_parameter_counts_read_config_json_dicts():
    raw = json.loads((TINY / "config.json").read_text())
    assert parameter_counts(raw) == parameter_counts(Qwen2_5_VLConfig.from_pretrained(str(TINY)))


def _linear_weights(module) -> int:
    return sum(m.weight.numel() for m in module.modules() if isinstance(m, nn.Linear))


@pytest.mark.parametrize("name", ["7b", "tiny"])
def test_matmul_flops_are_2_tokens_weights(name):
    cfg = CONFIGS[name]()
    model = meta_model(cfg)
    L = 1000
    f = decoder_flops(cfg.text_config, L)
    assert f["linear"] == 2 * L * _linear_weights(model.model.language_model.layers)
    assert f["lm_head"] == 2 * L * model.lm_head.weight.numel()
    assert f["attention"] > 0 and f["total"] == f["linear"] + f["attention"] + f["lm_head"]
    assert decoder_flops(cfg.text_config, L, causal=False)["attention"] == 2 * f["attention"]
    t, h, w = 2, 34, 62
    v = vit_flops(cfg.vision_config, t, h, w)
    vis = model.model.visual
    assert v["linear"] == 2 * t * h * w * _linear_weights(vis.blocks)
    assert v["merger"] == 2 * (t * h * w // 4) * _linear_weights(vis.merger)
    assert v["patch_embed"] == 2 * t * h * w * vis.patch_embed.proj.weight.numel()
    cut = vit_flops(cfg.vision_config, t, h, w, last_block=0, merger=False)
    assert cut["merger"] == 0 and cut["linear"] * cfg.vision_config.depth == v["linear"]


def test_ahd_parameters_and_flops_match_the_ahd():
    dims, hidden, text_dim = {0: 64, 3: 64}, 32, 128
    ahd = AHD(dims, text_dim, hidden)
    assert ahd_parameters(dims, hidden, text_dim) == sum(p.numel() for p in ahd.parameters())
    mlp_weights = sum(m.weight.numel() for m in ahd.modules() if isinstance(m, nn.Linear))
    assert ahd_flops(dims, hidden, text_dim, 10) == 2 * 10 * mlp_weights


def test_the_hub_s_legacy_config_layout_counts_the_same():
    """Qwen2.5-VL-7B-Instruct's config.json as the hub ships it (transformers 4.x: text fields at the top
    level, `in_chans`, `rope_scaling`) read through Qwen2_5_VLConfig: the 7B's counts."""
    raw = {"architectures": ["Qwen2_5_VLForConditionalGeneration"], "model_type": "qwen2_5_vl",
           "bos_token_id": 151643, "eos_token_id": 151645, "vision_start_token_id": 151652,
           "vision_end_token_id": 151653, "vision_token_id": 151654, "image_token_id": 151655,
           "video_token_id": 151656, "hidden_act": "silu", "hidden_size": 3584, "intermediate_size": 18944,
           "max_position_embeddings": 128000, "max_window_layers": 28, "num_attention_heads": 28,
           "num_hidden_layers": 28, "num_key_value_heads": 4, "rms_norm_eps": 1e-06, "rope_theta": 1000000.0,
           "sliding_window": 32768, "tie_word_embeddings": False, "torch_dtype": "bfloat16", "use_cache": True,
           "use_sliding_window": False, "vocab_size": 152064,
           "rope_scaling": {"type": "mrope", "mrope_section": [16, 24, 24]},
           "vision_config": {"depth": 32, "hidden_act": "silu", "hidden_size": 1280, "intermediate_size": 3420,
                             "num_heads": 16, "in_chans": 3, "out_hidden_size": 3584, "patch_size": 14,
                             "spatial_merge_size": 2, "spatial_patch_size": 14, "window_size": 112,
                             "fullatt_block_indexes": [7, 15, 23, 31], "tokens_per_second": 2,
                             "temporal_patch_size": 2}}
    cfg = Qwen2_5_VLConfig.from_dict(raw)
    assert parameter_counts(cfg) == parameter_counts(qwen25vl_7b_config())
    assert cfg.text_config.eos_token_id == 151645 and cfg.video_token_id == 151656
