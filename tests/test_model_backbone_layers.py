"""`backbone.layers: auto`: block 0 plus the checkpoint's full-attention ViT blocks, resolved on the
real configs (the 7B's, built offline; the shipped tiny asset's) and used by every consumer: the
feature cache, the AHD builder, the stage-1 checkpoint meta and `load_ahd`'s comparison."""

import json
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors import safe_open

from tvad.config import AHDConfig, preset
from tvad.model.ahd import load_ahd, save_ahd
from tvad.model.backbone import Backbone, BackboneError, from_pretrained, qwen25vl_7b_config, resolve_layers
from tvad.model.build import build_ahd
from tvad.train.features import FeatureCache
from tvad.train.stage1 import backbone_meta

REPO = Path(__file__).resolve().parents[1]
TINY = REPO / "assets" / "tiny-qwen2.5-vl"
PAPER_7B = [0, 7, 15, 23, 31]


@pytest.fixture(scope="module")
def tiny():
    return from_pretrained(TINY, dtype="float32", device="cpu", max_pixels=112 * 112)


# -- the pure function on real configs ------------------------------------------------------------

def test_auto_on_the_7b_config_is_block_0_plus_full_attention():
    vc = qwen25vl_7b_config().vision_config
    assert vc.depth == 32 and list(vc.fullatt_block_indexes) == [7, 15, 23, 31]
    assert resolve_layers("auto", vc) == PAPER_7B


def test_auto_on_the_tiny_assets_config_json():
    vc = json.loads((TINY / "config.json").read_text())["vision_config"]  # a plain dict works too
    assert (vc["depth"], vc["fullatt_block_indexes"]) == (4, [1, 3])
    assert resolve_layers("auto", vc) == [0, 1, 3]


def test_explicit_lists_are_returned_as_given():
    vc = qwen25vl_7b_config().vision_config
    assert resolve_layers([0, 7, 15, 23, 31], vc) == PAPER_7B
    assert resolve_layers([31, 2], vc) == [31, 2]  # order kept, as check_layers keeps it
    assert resolve_layers((np.int64(3),), vc) == [3] and type(resolve_layers((np.int64(3),), vc)[0]) is int


def test_the_paper_preset_says_auto_and_resolves_to_the_7b_list_on_the_meta_device(tiny):
    from transformers import Qwen2_5_VLForConditionalGeneration

    cfg = preset("paper")
    assert cfg.backbone.layers == "auto"
    with torch.device("meta"):
        model = Qwen2_5_VLForConditionalGeneration(qwen25vl_7b_config())
    bb = Backbone(model, tiny.processor)  # the 7B's config and (meta) weights; the processor plays no part here
    assert bb.depth == 32
    assert bb.resolve_layers(cfg.backbone.layers) == PAPER_7B
    assert bb.layer_dims("auto") == {l: 1280 for l in PAPER_7B}


def test_the_cpu_preset_keeps_its_explicit_list(tiny):
    cfg = preset("cpu")
    assert cfg.backbone.layers == [0, 1, 2, 3]
    assert tiny.resolve_layers(cfg.backbone.layers) == [0, 1, 2, 3]
    assert backbone_meta(tiny, cfg)["backbone"]["layers"] == [0, 1, 2, 3]  # what stage 1 recorded before


# -- bad specs and bad configs: one line, naming the checkpoint ------------------------------------

@pytest.mark.parametrize("spec,message", [
    ("sometimes", "backbone.layers must be 'auto' or a list of ViT block indices, got 'sometimes'"),
    ("Auto", "backbone.layers must be 'auto' or a list of ViT block indices, got 'Auto'"),
    (3, "backbone.layers must be 'auto' or a list of ViT block indices, got 3"),
    ([], "no ViT blocks chosen"),
    ([-1], "ViT block(s) [-1] out of range: this backbone has 4 blocks (0-indexed)"),
    ([0, 4], "ViT block(s) [4] out of range: this backbone has 4 blocks (0-indexed)"),
    ([1, 1], "repeated ViT blocks in [1, 1]"),
    ([0, 1.5], "backbone.layers must be 'auto' or a list of ViT block indices, got [0, 1.5]"),
    ([True], "backbone.layers must be 'auto' or a list of ViT block indices, got [True]"),
    (["1"], "backbone.layers must be 'auto' or a list of ViT block indices, got ['1']"),
])
def test_bad_specs_on_the_tiny_backbone(tiny, spec, message):
    with pytest.raises(BackboneError) as e:
        tiny.resolve_layers(spec)
    text = str(e.value)
    assert len(text.splitlines()) == 1
    assert text == f"backbone {TINY}: {message}"


def test_bad_specs_without_a_source_name_nothing():
    vc = qwen25vl_7b_config().vision_config
    with pytest.raises(BackboneError, match=r"^ViT block\(s\) \[32\] out of range: this backbone has 32 blocks"):
        resolve_layers([0, 32], vc)


def test_auto_needs_full_attention_blocks_in_the_config():
    from transformers.models.qwen2_vl.configuration_qwen2_vl import Qwen2VLVisionConfig

    qwen2 = Qwen2VLVisionConfig(depth=4)  # Qwen2-VL's ViT: full attention everywhere, no such field
    assert not hasattr(qwen2, "fullatt_block_indexes")
    with pytest.raises(BackboneError) as e:
        resolve_layers("auto", qwen2, source="ckpt/qwen2-vl")
    assert str(e.value) == ("backbone ckpt/qwen2-vl: backbone.layers='auto' needs the vision config's "
                            "fullatt_block_indexes (got None); list the ViT blocks explicitly")
    assert resolve_layers([0, 3], qwen2) == [0, 3]  # an explicit list needs only the depth
    with pytest.raises(BackboneError, match=r"needs the vision config's fullatt_block_indexes \(got \[\]\)"):
        resolve_layers("auto", {"depth": 4, "fullatt_block_indexes": []})
    with pytest.raises(BackboneError, match=r"^vision config's fullatt_block_indexes \[7\] out of range: its ViT "
                                            r"has 4 blocks \(0-indexed\)$"):
        resolve_layers("auto", {"depth": 4, "fullatt_block_indexes": [1, 7]})
    with pytest.raises(BackboneError, match=r"^vision config has no valid 'depth' \(got None\)"):
        resolve_layers([0], {"fullatt_block_indexes": [1]})


# -- the consumers, on the real tiny asset -----------------------------------------------------------

def test_stage1_style_features_are_exactly_the_auto_blocks(tiny, tmp_path):
    frames = np.random.default_rng(0).integers(0, 256, (4, 112, 112, 3), dtype=np.uint8)
    cache = FeatureCache(tmp_path / "features", tiny, tiny.resolve_layers("auto"))
    assert cache.layers == [0, 1, 3]
    feats = cache.get_or_compute("clip_000", list(range(4)), frames, fps=8.0)
    assert sorted(feats) == [0, 1, 3]
    assert all(f.shape == (2, 8, 8, 128) for f in feats.values())  # (T/2, h, w, D)
    files = list(cache.dir.glob("*.safetensors"))
    assert len(files) == 1
    with safe_open(str(files[0]), framework="pt") as f:
        assert sorted(f.keys()) == ["layer.0", "layer.1", "layer.3"]
        assert json.loads(f.metadata()["tvad"])["layers"] == [0, 1, 3]
    # the same blocks as the whole tower gives (running only up to block 3 changes nothing)
    full = tiny.visual_features(frames, [0, 1, 2, 3]).features
    for l in (0, 1, 3):
        assert torch.allclose(feats[l], full[l].to(torch.float16).float())
    # a second cache opened with the string "auto" reads the same file back (a hit, same key)
    again = FeatureCache(tmp_path / "features", tiny, "auto")
    got = again.get_or_compute("clip_000", list(range(4)), lambda: pytest.fail("recomputed"), fps=8.0)
    assert again.hits == 1 and sorted(got) == [0, 1, 3]
    assert tiny.visual_features(frames, "auto").features.keys() == {0, 1, 3}


def test_the_ahd_and_its_checkpoint_record_the_resolved_list(tiny, tmp_path):
    cfg = preset("cpu", {"backbone.layers": "auto", "ahd.hidden": 16, "ahd.num_templates": 2})
    ahd = build_ahd(tiny, cfg.ahd, tiny.resolve_layers(cfg.backbone.layers), cfg.data.dataset, seed=0)
    assert ahd.layers == [0, 1, 3]
    assert build_ahd(tiny, AHDConfig(hidden=16, num_templates=2), "auto").layers == [0, 1, 3]
    meta = backbone_meta(tiny, cfg)
    assert meta["backbone"]["layers"] == [0, 1, 3]
    save_ahd(ahd, tmp_path / "best", meta)
    assert json.loads((tmp_path / "best" / "ahd.json").read_text())["backbone"]["layers"] == [0, 1, 3]
    back, _ = load_ahd(tmp_path / "best", backbone_identity=tiny.identity, layers=tiny.resolve_layers("auto"))
    assert back.layers == [0, 1, 3]
    with pytest.raises(ValueError, match=r"checkpoint uses ViT blocks \[0, 1, 3\], not \[0, 1, 2, 3\]"):
        load_ahd(tmp_path / "best", layers=tiny.resolve_layers([0, 1, 2, 3]))
    with pytest.raises(ValueError, match=r"needs the resolved list of ViT blocks, got 'auto'"):
        load_ahd(tmp_path / "best", layers="auto")
