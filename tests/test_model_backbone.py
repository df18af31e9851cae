"""The frozen Qwen2.5-VL wrapper: real classes, 7B sizes, save/reload, raster order, bad input."""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np
import pytest
import torch
from torch import nn

from tvad.model.backbone import BackboneError, count_parameters, from_pretrained, qwen25vl_7b_config
from tvad.model.tiny import QWEN_SPECIAL_TOKENS, build_tiny


@pytest.fixture(scope="module")
def tiny():
    return build_tiny(seed=0, max_pixels=336 * 336)


def test_7b_config_parameter_counts_on_meta_device():
    from transformers import Qwen2_5_VLForConditionalGeneration

    with torch.device("meta"):
        model = Qwen2_5_VLForConditionalGeneration(qwen25vl_7b_config())
    n = count_parameters(model)
    assert abs(n["vision"] / 1e6 - 676.6) < 0.1, n
    assert abs(n["total"] / 1e9 - 8.292) < 0.001, n
    assert abs(n["lm_head"] / 1e6 - 545.0) < 1.0, n
    assert list(model.config.vision_config.fullatt_block_indexes) == [7, 15, 23, 31]


def test_tiny_is_real_qwen_with_window_and_full_attention(tiny):
    from transformers import Qwen2_5_VLForConditionalGeneration

    assert type(tiny.model) is Qwen2_5_VLForConditionalGeneration
    vc = tiny.model.config.vision_config
    assert vc.depth == 4 and list(vc.fullatt_block_indexes) == [1, 3] and vc.window_size == 112
    tok = tiny.tokenizer
    for t in QWEN_SPECIAL_TOKENS:  # each special token is one id, and the config points at them
        assert len(tok(t, add_special_tokens=False)["input_ids"]) == 1, t
    assert tiny.model.config.video_token_id == tok.convert_tokens_to_ids("<|video_pad|>")
    text = tok.apply_chat_template([{"role": "user", "content": [{"type": "video"}, {"type": "text", "text": "hi"}]}],
                                   tokenize=False, add_generation_prompt=True)
    assert "<|vision_start|><|video_pad|><|vision_end|>hi<|im_end|>" in text and text.endswith("assistant\n")
    assert len(tiny.tokenizer) <= tiny.model.config.text_config.vocab_size


def test_save_and_reload_through_from_pretrained(tiny, tmp_path):
    tiny.save_pretrained(tmp_path / "tiny")
    bb = from_pretrained(tmp_path / "tiny", dtype="float32", device="cpu", max_pixels=224 * 224)
    a, b = tiny.model.state_dict(), bb.model.state_dict()
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    assert bb.tokenizer.get_vocab() == tiny.tokenizer.get_vocab()
    assert bb.tokenizer.chat_template == tiny.tokenizer.chat_template
    frames = np.random.default_rng(0).integers(0, 256, (4, 112, 112, 3), dtype=np.uint8)
    fa = tiny.visual_features(frames, [2], merged=True).features[2]
    fb = bb.visual_features(frames, [2]).features[2]
    assert torch.equal(fa, fb)
    assert bb.identity != "" and bb.identity == from_pretrained(tmp_path / "tiny").identity


def test_features_match_transformers_forward_hidden_states(tiny):
    """Our truncated loop == transformers' own ViT forward (un-permuted), merged tokens included."""
    frames = np.random.default_rng(1).integers(0, 256, (4, 224, 336, 3), dtype=np.uint8)
    vf = tiny.visual_features(frames, [0, 1, 2, 3], merged=True, fps=8.0)
    inp = tiny.preprocess(frames, 8.0)
    with torch.no_grad():
        ref = tiny.visual(inp["pixel_values_videos"], grid_thw=inp["video_grid_thw"], output_hidden_states=True)
    assert torch.allclose(ref.pooler_output, vf.merged, atol=1e-5)
    from transformers.vision_utils import get_vision_window_index

    wi, _ = get_vision_window_index(inp["video_grid_thw"], 2, 112, 14)
    for l in range(4):
        got = tiny.to_raster(ref.hidden_states[l + 1], torch.argsort(wi), vf.grid_thw)
        assert torch.allclose(got, vf.features[l], atol=1e-5), l
    assert vf.features[0].shape == (2, 16, 24, 128) and vf.merged.shape == (2 * 8 * 12, 128)
    assert inp["second_per_grid_ts"].item() == pytest.approx(0.25)


class _Identity(nn.Module):
    def forward(self, hidden_states, **kwargs):
        return hidden_states


class _PositionEmbed(nn.Module):
    """Decodes each patch's colour back to its (t, y, x), written into features 0..2."""

    def __init__(self, dim, mean, std):
        super().__init__()
        self.dim, self.proj = dim, nn.Conv3d(3, 1, 1)  # proj: only read for its dtype
        self.mean, self.std = torch.tensor(mean), torch.tensor(std)

    def forward(self, x):
        x = x.view(-1, 3, 2, 14, 14).float().mean(dim=(2, 3, 4))  # per-channel mean of the patch
        v = (x * self.std + self.mean) * 255.0 / 8.0
        out = torch.zeros(x.shape[0], self.dim)
        out[:, :3] = v.round()
        return out


@pytest.mark.parametrize("size", [(224, 336), (168, 280)])
def test_block_features_come_back_in_raster_order(tiny, size):
    import copy

    bb = copy.copy(tiny)
    bb.model = copy.deepcopy(tiny.model)
    vis = bb.visual
    vp = bb.processor.video_processor
    vis.patch_embed = _PositionEmbed(vis.config.hidden_size, vp.image_mean, vp.image_std)
    vis.blocks = nn.ModuleList([_Identity() for _ in vis.blocks])
    H, W = size
    h, w = H // 14, W // 14
    n = 6
    frames = np.zeros((n, H, W, 3), np.uint8)
    for f in range(n):
        frames[f, :, :, 0] = 8 * (f // 2)
        frames[f, :, :, 1] = (8 * np.repeat(np.arange(h), 14))[:, None]
        frames[f, :, :, 2] = (8 * np.repeat(np.arange(w), 14))[None, :]
    vf = bb.visual_features(frames, [0, 3])
    tt, yy, xx = np.meshgrid(np.arange(n // 2), np.arange(h), np.arange(w), indexing="ij")
    want = torch.tensor(np.stack([tt, yy, xx], -1), dtype=torch.float32)
    for l in (0, 3):
        assert vf.features[l].shape == (n // 2, h, w, vis.config.hidden_size)
        assert torch.equal(vf.features[l][..., :3], want), l
    # a naive reshape of the window-ordered sequence is wrong (what the test guards against)
    inp = bb.preprocess(frames)
    naive = vis.patch_embed(inp["pixel_values_videos"]).reshape(n // 2, h, w, -1)[..., :3]
    assert not torch.equal(naive, want)


def test_blocks_after_the_deepest_needed_are_not_run(tiny):
    calls = []
    hooks = [b.register_forward_hook(lambda m, i, o, k=k: calls.append(k)) for k, b in enumerate(tiny.visual.blocks)]
    try:
        frames = np.zeros((2, 112, 112, 3), np.uint8)
        vf = tiny.visual_features(frames, [0, 1])
        assert calls == [0, 1] and vf.merged is None
        calls.clear()
        tiny.visual_features(frames, [0], merged=True)
        assert calls == [0, 1, 2, 3]
    finally:
        for hk in hooks:
            hk.remove()


def test_text_features_mean_over_real_tokens(tiny):
    prompts = ["running occurs", "A short surveillance clip where surveillance video of running not occurs"]
    f = tiny.text_features(prompts)
    assert f.shape == (2, tiny.text_dim)
    single = tiny.text_features(prompts[:1])  # no padding: the pad rows must not change the mean
    assert torch.allclose(f[0], single[0], atol=1e-6)
    ids = tiny.tokenizer(prompts[0])["input_ids"]
    emb = tiny.model.get_input_embeddings().weight[ids].mean(0)
    assert torch.allclose(single[0], emb, atol=1e-6)
    d = tiny.text_features(prompts, mode="decoder")
    assert d.shape == (2, tiny.text_dim) and not torch.allclose(d, f)
    with pytest.raises(BackboneError):
        tiny.text_features(prompts, mode="clip")


def test_bad_input_is_a_clear_error(tiny):
    with pytest.raises(BackboneError, match="shorter than one temporal patch"):
        tiny.visual_features(np.zeros((1, 112, 112, 3), np.uint8), [0])
    with pytest.raises(BackboneError, match="different sizes"):
        tiny.visual_features([np.zeros((112, 112, 3), np.uint8), np.zeros((112, 140, 3), np.uint8)], [0])
    with pytest.raises(BackboneError, match="out of range"):
        tiny.visual_features(np.zeros((2, 112, 112, 3), np.uint8), [4])
    with pytest.raises(BackboneError, match="NaN"):
        tiny.visual_features(np.full((2, 112, 112, 3), np.nan, np.float32), [0])
    # odd frame counts are padded with the last frame (as Qwen's processor does): T = ceil(N / 2)
    vf = tiny.visual_features(np.zeros((3, 112, 112, 3), np.uint8), [0])
    assert vf.grid_thw[0] == 2 and vf.num_frames == 3


def test_video_token_budget_caps_a_long_clip_and_keeps_its_aspect():
    from tvad.model.backbone import video_pixel_cap

    bb = build_tiny(seed=0, max_pixels=476 * 868)  # the paper preset's per-frame cap and clip size
    frames = np.zeros((40, 476, 868, 3), np.uint8)
    t, h, w = bb.preprocess(frames, 1.0)["video_grid_thw"][0].tolist()
    assert (t, h, w) == (20, 34, 62) and t * h * w // 4 == 10540  # no budget: 527 merged tokens per pair
    for budget in (1536, 1280, 333):
        out = bb.preprocess(frames, 1.0, max_tokens=budget)
        t, h, w = out["video_grid_thw"][0].tolist()
        assert t == 20 and t * h * w // 4 <= budget, (budget, t, h, w)
        assert out["pixel_values_videos"].shape[0] == t * h * w
        assert abs(np.log((h / w) / (476 / 868))) < 0.15, (budget, h, w)  # the aspect ratio roughly kept
    # smart_resize's rounding can overshoot the first cap (here the 28-px floor on the short side): shrunk
    cap = video_pixel_cap(2, 28, 2800, 50, None, 4 * 28 * 28)
    assert cap < 50 * 28 * 28
    t, h, w = bb.preprocess(np.zeros((2, 28, 2800, 3), np.uint8), max_tokens=50)["video_grid_thw"][0].tolist()
    assert t * h * w // 4 <= 50
    with pytest.raises(BackboneError, match="cannot hold a clip of 40 frames"):  # 20 pairs x 4 tokens minimum
        bb.preprocess(frames, max_tokens=50)
    with pytest.raises(BackboneError, match="positive int"):
        bb.preprocess(frames[:2], max_tokens=0)


def test_video_token_budget_leaves_a_clip_that_fits_alone():
    bb = build_tiny(seed=0, max_pixels=476 * 868)
    frames = np.random.default_rng(0).integers(0, 256, (3, 476, 868, 3), dtype=np.uint8)  # 2 pairs: 1054 tokens
    a, b = bb.preprocess(frames, 1.0), bb.preprocess(frames, 1.0, max_tokens=1280)
    assert a["video_grid_thw"].tolist() == b["video_grid_thw"].tolist() == [[2, 34, 62]]
    assert torch.equal(a["pixel_values_videos"], b["pixel_values_videos"])
