"""Decoder-driven heatmaps on the tiny Qwen2.5-VL: shapes, range, windows, raster order of the grid."""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from types import SimpleNamespace

import numpy as np
import pytest
import torch


@pytest.fixture(scope="module")
def model():
    from tvad.model.tiny import build_tiny
    from tvad.model.tvad import TVAD

    bb = build_tiny(seed=0, max_pixels=112 * 112)
    return TVAD(bb, None, None, rae=None, use_rae=False, use_ahd=False, meta={"fps": 2.0})


def test_decoder_heatmaps_shape_range_and_windows(model):
    from tvad.model.decoder_heatmap import decoder_attention

    frames = np.random.default_rng(0).integers(0, 256, (7, 112, 112, 3), dtype=np.uint8)
    res = decoder_attention(model, frames, answer="Yes, a person runs to the left.")
    assert res.heat.shape == (7, 112, 112) and res.heat.dtype == np.float32
    assert res.heat.min() >= 0 and 0.5 < res.heat.max() <= 1  # min-max over the clip, then bilinear
    assert res.grid.shape == (4, 4, 4)  # (T/2 padded, h/2, w/2) of a 112x112 clip (8x8 patches)
    assert np.allclose(res.heat[0], res.heat[1])  # frames of a pair share the map
    assert res.num_queries > 3
    assert model.qwen.config._attn_implementation == "sdpa"  # eager only for that pass
    win = decoder_attention(model, frames, answer="Yes, a person runs to the left.", window=4)
    assert win.heat.shape == (7, 112, 112) and win.grid.shape == (4, 4, 4)
    gen = decoder_attention(model, frames[:4], max_new_tokens=4)  # the model's own (greedy) answer
    assert isinstance(gen.answer, str) and gen.heat.shape == (4, 112, 112)


def test_grid_is_raster_order_of_video_tokens(model, monkeypatch):
    """Fake attention weights that grow with the video token's index: the grid must be their
    raster-order reshape, and the upsampled map must grow left to right, top to bottom, over time."""
    from tvad.model import decoder_heatmap as dh

    real = model.qwen
    vid_id = model.video_token_id

    class Fake(torch.nn.Module):
        config = SimpleNamespace(_attn_implementation="eager", video_token_id=vid_id)

        def __init__(self):
            super().__init__()
            self.w = torch.nn.Parameter(torch.zeros(1))
            self.dtype = torch.float32

        def forward(self, input_ids=None, **kw):
            S = input_ids.shape[1]
            a = torch.zeros(1, 2, S, S)
            cols = torch.nonzero(input_ids[0] == vid_id).flatten()
            a[..., cols] = torch.arange(len(cols), dtype=torch.float32)
            return SimpleNamespace(attentions=(a, a))

    frames = np.random.default_rng(1).integers(0, 256, (4, 112, 112, 3), dtype=np.uint8)
    clip = model.encode_clip(frames, 2.0)
    monkeypatch.setattr(model.backbone, "model", Fake())
    grid, _, _ = dh._attention_grid(model, clip, "Where?", "Left.", 8, None)
    model.backbone.model = real
    assert torch.equal(grid, torch.arange(2 * 4 * 4, dtype=torch.float32).reshape(2, 4, 4))
