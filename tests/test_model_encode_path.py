"""One encode path for a clip's heatmap: `detect` and the RAE (chat, stage-2 training, evaluation)
get it from the same function (`tvad.model.detector.clip_heatmap`, the AHD at the backbone's
max_pixels), the RAE reads it resampled to the video token grid in one place
(`PromptInjector.rae_inputs`), one ViT pass without a token budget, a file decoded once per call,
and clip caches of the old (token-grid) heatmaps not served."""

import dataclasses
import hashlib
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np
import pytest
import torch
from stage2_fixtures import ARRAYS, TRAIN, _MaskedVideo, _model, _store

import tvad.model.detector as detector_mod
import tvad.model.tvad as tvad_mod
from tvad.data.video import write_video
from tvad.model.ahd import heat_to_frames
from tvad.model.backbone import vision_hash
from tvad.model.detector import clip_heatmap
from tvad.model.rae import heatmap_on_token_grid
from tvad.model.tvad import HEATMAP_KWARG, TVADError
from tvad.train.clips import ClipResolver, ClipStore, HeatmapView
from tvad.train.collate import Collator

pytestmark = pytest.mark.usefixtures("one_torch_thread")

Q = "Is there any anomaly in this video?"
MSGS = [{"role": "system", "content": "You watch a fixed camera."}, {"role": "user", "content": Q},
        {"role": "assistant", "content": "Yes."}]
# 6 frames of 112 x 112 at max_pixels 112*112: a (3, 8, 8) patch grid, 48 merged tokens; a budget of
# 12 tokens shrinks the frames to 56 x 56, a (3, 4, 4) token grid.
BUDGET = 12


@pytest.fixture(scope="module")
def frames():
    f = np.random.default_rng(3).integers(0, 120, (6, 112, 112, 3), dtype=np.uint8)
    for t in range(6):  # something that moves, so the heatmap is not flat
        f[t, 20:50, 10 + 12 * t:40 + 12 * t] = 250
    return f


@pytest.fixture(scope="module")
def capped():
    return _model(video_max_tokens=BUDGET)


def _rae_inputs(model):
    """A forward pre-hook on the RAE recording the heatmaps it receives (instrumentation)."""
    seen = []
    h = model.rae.register_forward_pre_hook(lambda mod, args: seen.append(args[0].detach().clone()))
    return seen, h


def _count(monkeypatch, obj, name):
    """Wrap obj.name so its calls are counted; the real function still runs."""
    real = getattr(obj, name)
    calls = []

    def wrapped(*a, **k):
        calls.append((a, k))
        return real(*a, **k)

    monkeypatch.setattr(obj, name, wrapped)
    return calls


def test_detect_heatmap_is_what_the_rae_reads_under_a_budget(capped, frames):
    det = capped.detect(frames, fps=8.0)
    clip = capped.encode_clip(frames, 8.0)
    assert tuple(clip.grid_thw[0].tolist()) == (3, 4, 4) and clip.num_video_tokens == BUDGET  # the budget's grid
    assert det.patch_heat.shape == (3, 8, 8) == tuple(clip.heat.shape)  # the AHD's grid (max_pixels)
    assert np.array_equal(det.patch_heat, clip.heat.numpy())  # one function made both
    assert float(clip.heat.std()) > 1e-3  # not a flat map: the comparisons below can fail
    assert np.array_equal(det.heatmaps, heat_to_frames(clip.heat, (112, 112), 6).numpy())
    # the same as stage 1's feature extraction sees: Backbone.visual_features on the whole clip
    vf = capped.backbone.visual_features(frames, capped.ahd.layers, fps=8.0)
    assert torch.allclose(clip.heat, capped.ahd(vf.features).heat.float().cpu(), atol=1e-6)

    # the RAE reads it on the token grid: each token-grid cell the mean of the 2 x 2 heat cells it covers
    want = torch.from_numpy(det.patch_heat).reshape(3, 4, 2, 4, 2).mean((2, 4))
    assert torch.allclose(capped.rae_input(clip), want, atol=1e-6)
    seen, h = _rae_inputs(capped)
    try:
        with torch.no_grad():
            capped.forward(MSGS, clip)  # stage 2's forward (and decoder_heatmap's)
        capped.chat(frames, Q, fps=8.0, max_new_tokens=2)  # generate, grid handed over by `pending`
    finally:
        h.remove()
    assert len(seen) == 2
    for x in seen:
        assert tuple(x.shape) == (3, 4, 4) and torch.allclose(x.cpu(), want, atol=1e-6)


def test_training_batches_put_the_stored_and_oracle_heat_on_the_token_grid(tmp_path):
    m = _model(video_max_tokens=24)  # 4 frames of 112 x 112: tokens on (2, 6, 6), heat on (2, 8, 8)
    maps = np.zeros((4, 112, 112), np.int32)
    maps[:, 28:56, 28:84] = 1
    resolver = ClipResolver([_MaskedVideo("train0", ARRAYS["train0"], maps)], arrays={})
    store = ClipStore(m, resolver, tmp_path / "clips")
    for view, n_checks in ((store, "ahd"), (HeatmapView(store, "ground_truth", resolver), "oracle"),
                           (HeatmapView(store, "zeros"), "zeros")):
        batch = Collator(m, TRAIN[:1], view, max_length=512)([{"idx": 0}])
        heat = batch[HEATMAP_KWARG][0]
        assert tuple(heat.shape) == (2, 8, 8), n_checks
        seen, h = _rae_inputs(m)
        try:
            with torch.no_grad():
                m.qwen(**batch)
        finally:
            h.remove()
        assert len(seen) == 1 and tuple(seen[0].shape) == (2, 6, 6), n_checks
        assert torch.allclose(seen[0].cpu(), heatmap_on_token_grid(heat, (6, 6)), atol=1e-6), n_checks
    # the oracle: 4 x 8 whole cells anomalous at 8 x 8 (rows 2-3, columns 2-5), area-averaged to 6 x 6
    gt = HeatmapView(store, "ground_truth", resolver).get(TRAIN[0]["clip"]).heat
    assert float(gt.sum()) == 2 * 2 * 4 and set(gt.unique().tolist()) == {0.0, 1.0}
    assert float(heatmap_on_token_grid(gt, (6, 6)).sum()) == pytest.approx(2 * 8 * 36 / 64)


def test_no_budget_one_vit_pass_identity_resampling_and_unchanged_results(frames, monkeypatch):
    free = _model()  # the cpu preset: no token budget
    bb = free.backbone
    passes = _count(monkeypatch, bb, "_run_visual")
    clip = free.encode_clip(frames, 8.0)
    assert len(passes) == 1  # the tokens and the heatmap from one ViT pass
    assert tuple(clip.heat.shape) == tuple(clip.grid_thw[0].tolist()) == (3, 8, 8)
    assert free.rae_input(clip) is clip.heat  # resampling is the identity here
    # what encode_clip computed before the change (one pass on the processor's tensors), bit for bit
    inp = bb.preprocess(frames, 8.0)
    vf = bb.features_from_pixels(inp["pixel_values_videos"], inp["video_grid_thw"], free.layers, merged=True,
                                 num_frames=6)
    assert torch.equal(clip.heat, free.ahd(vf.features).heat.float().cpu())
    assert torch.equal(clip.video_embeds, vf.merged) and torch.equal(clip.grid_thw, inp["video_grid_thw"])
    assert torch.equal(clip.second_per_grid_ts, inp["second_per_grid_ts"])
    assert torch.equal(clip.heat, clip_heatmap(bb, free.ahd, frames, 8.0, free.window))  # = detect's
    seen, h = _rae_inputs(free)
    try:
        with torch.no_grad():
            free.forward(MSGS, clip)
    finally:
        h.remove()
    assert torch.equal(seen[0].cpu(), clip.heat)
    # with a budget: two passes, the budgeted one for the tokens and the full one for the heatmap
    capped = _model(video_max_tokens=BUDGET)
    passes2 = _count(monkeypatch, capped.backbone, "_run_visual")
    c2 = capped.encode_clip(frames, 8.0)
    assert len(passes2) == 2 and torch.equal(c2.heat, clip.heat)
    # windows change memory, not the heatmap (pairs never straddle windows)
    assert torch.allclose(clip_heatmap(bb, free.ahd, frames, 8.0, window=2), clip.heat, atol=1e-5)


def test_a_file_is_decoded_once_per_call(capped, frames, tmp_path, monkeypatch):
    path = write_video(tmp_path / "clip.mp4", frames, fps=8.0)
    reads = _count(monkeypatch, tvad_mod, "read_frames")
    reads_det = _count(monkeypatch, detector_mod, "read_frames")
    passes = _count(monkeypatch, capped.backbone, "_run_visual")
    _, hist = capped.chat(path, Q, max_new_tokens=2)
    assert len(reads) + len(reads_det) == 1 and len(passes) == 2  # one decode; heatmap + budgeted tokens
    capped.chat(path, "How does it move?", hist, max_new_tokens=2)
    assert len(reads) + len(reads_det) == 2 and len(passes) == 2  # the history's clip is reused
    s = capped.session(path)
    s.ask(Q, max_new_tokens=2)
    s.ask("How does it move?", max_new_tokens=2)
    assert len(reads) + len(reads_det) == 3 and len(passes) == 4  # one read and one encoding per session
    det = capped.detect(path)
    assert len(reads) + len(reads_det) == 4 and len(passes) == 5  # detect: one read, one pass
    assert det.patch_heat.shape == tuple(hist.clip.heat.shape)


def test_a_long_file_is_decoded_at_the_kept_frames_only(capped, tmp_path, monkeypatch):
    src = np.random.default_rng(4).integers(0, 256, (20, 112, 112, 3), dtype=np.uint8)
    path = write_video(tmp_path / "long.mp4", src, fps=8.0)
    full = tvad_mod.read_frames(path)  # every frame, as decoded
    monkeypatch.setattr(capped, "max_frames", 8)
    reads = _count(monkeypatch, tvad_mod, "read_frames")
    got, fps = capped.read_video(path)
    keep = np.linspace(0, 19, 8).round().astype(int)
    assert len(reads) == 1 and np.array_equal(reads[0][1]["indices"], keep)  # only the kept frames decoded
    assert np.array_equal(got, full[keep]) and fps == pytest.approx(8.0 * 7 / 19)
    arr, fps_arr = capped.read_video(full, fps=8.0)  # the same as subsampling the decoded array
    assert np.array_equal(arr, got) and fps_arr == pytest.approx(fps)


def _legacy_identity(model) -> str:
    """ClipStore's identity as computed before this change (heat on the budget's token grid)."""
    h = hashlib.sha256(vision_hash(model.qwen).encode())
    for k, v in sorted(model.ahd.state_dict().items()):
        h.update(k.encode())
        h.update(v.detach().float().cpu().numpy().tobytes())
    h.update(f"{model.use_ahd}|{model.backbone.max_pixels}|{model.layers}".encode())
    if model.video_max_tokens is not None:
        h.update(f"|video_max_tokens={model.video_max_tokens}".encode())
    return h.hexdigest()[:16]


def test_old_clip_caches_of_token_grid_heatmaps_are_not_served(tmp_path):
    capped = _model(video_max_tokens=24)
    root = tmp_path / "clips"
    clip = TRAIN[0]["clip"]
    legacy = _store(capped, root)
    legacy.identity = _legacy_identity(capped)
    c = legacy.get(clip)
    old = dataclasses.replace(c, heat=capped.rae_input(c))  # what the old encode_clip stored: (2, 6, 6)
    legacy._write(legacy.key(clip), old, clip)
    reread = _store(capped, root)
    reread.identity = legacy.identity
    assert tuple(reread.get(clip).heat.shape) == (2, 6, 6) and reread.computed == 0  # the old entry is there
    new = _store(capped, root)
    assert new.identity != legacy.identity
    got = new.get(clip)
    assert tuple(got.heat.shape) == (2, 8, 8) and new.computed == 1  # recomputed, not served
    free = _model()  # no budget: the heat was already on the AHD's grid, old caches stay valid
    assert _store(free).identity == _legacy_identity(free)


def test_bad_grids_are_clear_errors(capped, frames):
    clip = capped.encode_clip(frames, 8.0)
    enc = capped.encode(MSGS, clip)
    inputs = capped.model_inputs(enc, clip)
    del inputs["video_grid_thw"]
    with torch.no_grad(), pytest.raises(TVADError, match="no video_grid_thw"):
        capped.qwen(**inputs, **{HEATMAP_KWARG: [clip.heat]}, **capped.video_kwargs(clip))
    inputs = capped.model_inputs(enc, clip)
    inputs["video_grid_thw"] = torch.cat([clip.grid_thw] * 2)
    with torch.no_grad(), pytest.raises(TVADError, match="2 rows of video_grid_thw for 1 sequences"):
        capped.qwen(**inputs, **{HEATMAP_KWARG: [clip.heat]}, **capped.video_kwargs(clip))
    with pytest.raises(ValueError, match=r"must be \(T, h, w\)"):
        heatmap_on_token_grid(torch.zeros(4, 4), (2, 2))
    with pytest.raises(ValueError, match="at least 1 x 1"):
        heatmap_on_token_grid(torch.zeros(1, 4, 4), (0, 2))
