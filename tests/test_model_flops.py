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
