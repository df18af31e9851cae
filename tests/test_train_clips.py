"""Stage 2's clips: the clip store (cache keyed by the video budget), the ground-truth (oracle) and
zero heatmap views, missing clips named."""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np
import pytest
import torch
from stage2_fixtures import ARRAYS, CFG, LAYERS, TRAIN, VAL, _changed, _MaskedVideo, _model, _sd, _store  # noqa: F401

from tvad.model import load, save_model
from tvad.model.checkpoint import _run_video_max_tokens
from tvad.model.tvad import HEATMAP_KWARG, TVADError
from tvad.train.clips import ClipMissing, ClipResolver, ClipStore, HeatmapView, ground_truth_heatmap
from tvad.train.collate import Collator

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_ground_truth_heatmaps_the_oracle_view():
    clip = TRAIN[0]["clip"]  # "train0": the bright square moving right is the anomaly
    maps = np.zeros((4, 112, 112), np.int32)
    for t in range(4):
        maps[t, 30:60, 10 + 20 * t:40 + 20 * t] = 1
    maps[:, 90:100, 90:100] = 2  # a normal object: never part of the ground truth
    resolver = ClipResolver([_MaskedVideo("train0", ARRAYS["train0"], maps)])
    masks = resolver.masks(clip)
    assert masks.shape == (4, 112, 112) and set(np.unique(masks)) == {0, 1}

    m = _model()
    m.set_trainable(False)
    store = ClipStore(m, resolver)
    c = store.get(clip)
    T, h, w = c.heat.shape
    assert (T, h, w) == (2, 8, 8)
    # frames paired like the temporal patch (OR), then the anomalous fraction of each 14 x 14 patch
    want = (maps == 1).reshape(T, 2, 112, 112).any(1).reshape(T, h, 14, w, 14).mean((2, 4))
    view = HeatmapView(store, "ground_truth", resolver)
    got = view.get(clip)
    assert torch.allclose(got.heat, torch.from_numpy(want.astype(np.float32)))
    assert got.heat.max() == 1.0 and got.heat.min() == 0.0
    assert torch.equal(got.video_embeds, c.video_embeds) and torch.equal(store.get(clip).heat, c.heat)
    batch = Collator(m, TRAIN[:1], view, max_length=512)([{"idx": 0}])
    assert torch.equal(batch[HEATMAP_KWARG][0], got.heat)  # what training feeds the RAE
    assert not HeatmapView(store, "zeros").get(clip).heat.any()
    view.pixels = True  # settings go to the store underneath
    assert store.pixels is True

    with pytest.raises(ClipMissing, match="'gone'.*video record"):
        resolver.masks({**clip, "name": "gone", "source_video": "nowhere"})
    with pytest.raises(ClipMissing, match="no pixel masks"):
        ClipResolver([_MaskedVideo("train0", ARRAYS["train0"], maps, has_masks=False)]).masks(clip)
    with pytest.raises(ValueError, match="mask frames give 1 temporal steps"):
        ground_truth_heatmap(maps[:1], (T, h, w))
    with pytest.raises(ValueError, match="ground-truth heatmaps need the clip resolver"):
        HeatmapView(store, "ground_truth")
    with pytest.raises(ValueError, match="heatmap source"):
        HeatmapView(store, "ahd")


def test_clip_store_key_chat_and_checkpoint_carry_the_budget(tmp_path):

    free, capped = _model(), _model(video_max_tokens=24)  # 4 frames of 112x112: 32 tokens uncapped
    ids = {_store(free).identity, _store(capped).identity, _store(_model(video_max_tokens=16)).identity}
    assert len(ids) == 3
    store = _store(capped, tmp_path / "clips")
    c = store.get(TRAIN[0]["clip"])
    assert store.get(TRAIN[0]["clip"]) is c  # cached under the budget's key
    fc = _store(free).get(TRAIN[0]["clip"])
    assert fc.num_video_tokens == 32 and tuple(fc.heat.shape) == tuple(fc.grid_thw[0].tolist()) == (2, 8, 8)
    # the budget shrinks the tokens' grid, not the heatmap: that stays at the AHD's resolution
    assert c.num_video_tokens <= 24 and tuple(c.grid_thw[0].tolist()) == (2, 6, 6)
    assert torch.equal(c.heat, fc.heat)
    assert (tmp_path / "clips" / store.identity).is_dir()
    store.model = free  # a model of another budget must not be served these clips
    with pytest.raises(TVADError, match="video_max_tokens=24"):
        store.get(TRAIN[0]["clip"])
    _, hist = capped.chat(ARRAYS["train0"], "Is there any anomaly in this video?", fps=8.0, max_new_tokens=2)
    assert hist.clip.grid_thw.tolist() == c.grid_thw.tolist()  # chat sees what training saw
    save_model(capped, tmp_path / "ck")
    back = load(tmp_path / "ck")
    assert back.video_max_tokens == 24
    assert back.encode_clip(ARRAYS["train0"], 8.0).grid_thw.tolist() == c.grid_thw.tolist()
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "config.yaml").write_text("stage2:\n  video_max_tokens: 1280\n")
    assert _run_video_max_tokens(tmp_path / "run") == 1280 and _run_video_max_tokens(tmp_path) is None


def test_pixels_store_serves_pixels_and_keys_the_mode(tmp_path):
    """`stage2.video_input = "pixels"`: a store without tokens serves pixel values (notebook 03's
    judgements and notebook 04 build it so, with no Collator to turn pixels on), never tokens an
    `embeds` store left in the same cache folder, and the model runs on what it serves."""
    m = _model()
    m.set_trainable(False)
    clip = VAL[0]["clip"]
    embeds = ClipStore(m, ClipResolver(arrays=ARRAYS), tmp_path)
    assert embeds.pixels is False and embeds.get(clip).video_embeds is not None  # written to tmp_path
    pix = ClipStore(m, ClipResolver(arrays=ARRAYS), tmp_path, video_embeds=False)
    assert pix.pixels is True
    assert pix.identity != embeds.identity  # the cache key names the video-input mode
    c = pix.get(clip)
    assert c.video_embeds is None and c.pixel_values is not None
    assert c.pixel_values.shape[0] == int(c.grid_thw.prod())  # one row per patch of the clip's grid
    with torch.no_grad():
        out = m.forward(VAL[0]["messages"], c)
    assert torch.isfinite(out.loss)
    # the same clip through the tokens: the same decoder input, so (nearly) the same loss
    with torch.no_grad():
        ref = m.forward(VAL[0]["messages"], embeds.get(clip))
    assert torch.allclose(out.loss, ref.loss, rtol=1e-3, atol=1e-3)
    with pytest.raises(TVADError, match="neither merged video tokens"):
        ClipStore(m, ClipResolver(arrays=ARRAYS), video_embeds=False, pixels=False).get(clip)
