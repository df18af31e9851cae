"""Full-model checkpoints (tvad.model.checkpoint): save_model / load round trip with identical logits,
missing parts, a run directory before stage 2, finding the stage-2 model in a run directory."""

import json
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np
import pytest
import torch

import tvad
from tvad.config import AHDConfig, RAEConfig
from tvad.model import TVAD, build_ahd, find_model, load, save_model
from tvad.model.ahd import save_ahd
from tvad.model.backbone import from_pretrained
from tvad.model.checkpoint import CKPT_FORMAT, read_checkpoint
from tvad.model.tiny import build_tiny

LAYERS = [0, 3]
MSGS = [{"role": "system", "content": "You watch a fixed camera."},
        {"role": "user", "content": "Is there any anomaly in this video?"},
        {"role": "assistant", "content": "Yes, a person runs to the right."}]

pytestmark = pytest.mark.usefixtures("one_torch_thread")


FRAMES = np.random.default_rng(0).integers(0, 256, (4, 112, 112, 3), dtype=np.uint8)


def test_save_load_identical_logits_and_missing_parts(tmp_path):
    torch.manual_seed(0)
    bb = build_tiny(seed=0, max_pixels=112 * 112)
    model = TVAD.build(bb, build_ahd(bb, AHDConfig(hidden=32), LAYERS, seed=0),
                       {"backbone": {"layers": LAYERS, "identity": bb.identity}}, RAEConfig(channels=8), seed=0,
                       meta={"fps": 8.0})
    frames = FRAMES
    clip = model.encode_clip(frames, 8.0)
    clip.heat = torch.rand_like(clip.heat)  # a non-trivial heatmap (the random AHD's is near-constant)
    with torch.no_grad():
        model.injector.token_rows.add_(0.01)  # rows differ from the mean init: they must travel
    d = save_model(model, tmp_path / "ck")
    m2 = load(d, device="cpu")
    assert m2.token_ids == model.token_ids and m2.use_rae and m2.num_prompts == model.num_prompts
    c2 = m2.encode_clip(frames, 8.0)
    assert torch.allclose(c2.video_embeds, model.encode_clip(frames, 8.0).video_embeds)
    c2.heat = clip.heat
    with torch.no_grad():
        a = model.forward(MSGS, clip).logits
        b = m2.forward(MSGS, c2).logits
    assert torch.equal(a, b)
    assert tvad.load(tmp_path / "ck").num_prompts == model.num_prompts  # the package-level lazy loader
    det = m2.detect(frames)
    assert det.heatmaps.shape == (4, 112, 112)
    (d / "rae.safetensors").unlink()
    with pytest.raises(FileNotFoundError, match="RAE weights"):
        load(d)


def test_load_run_dir_without_stage2_chats_and_detects(tmp_path):
    """`tvad.load(run_dir)` before stage 2: the stage-1 AHD on the untrained backbone, no prompts."""
    frames = FRAMES
    build_tiny(seed=0, max_pixels=112 * 112).save_pretrained(tmp_path / "bb")
    bb = from_pretrained(tmp_path / "bb", max_pixels=112 * 112)
    ahd = build_ahd(bb, AHDConfig(hidden=32), LAYERS, seed=0)
    save_ahd(ahd, tmp_path / "run" / "stage1" / "best",
             {"backbone": {"path": str(tmp_path / "bb"), "identity": bb.identity, "layers": LAYERS,
                           "max_pixels": 112 * 112, "dtype": "float32"}})
    m = load(tmp_path / "run", device="cpu")
    assert isinstance(m, TVAD) and not m.use_rae and m.num_prompts == 0
    a, h = m.chat(frames, "Is there any anomaly in this video?", max_new_tokens=2)
    assert isinstance(a, str) and len(h) == 3
    assert m.detect(frames).heatmaps.shape == (4, 112, 112)


def test_find_model_in_run_dirs(tmp_path):
    assert find_model(tmp_path) is None
    for sub in ("stage2/final", "stage2/rae/phase_a/final", "stage2/rae/phase_b/final"):  # later phases win
        (tmp_path / sub).mkdir(parents=True)
        (tmp_path / sub / "tvad.json").write_text("{}")
        assert find_model(tmp_path) == tmp_path / sub
    assert find_model(tmp_path / "stage2" / "final") == tmp_path / "stage2" / "final"  # a checkpoint dir itself


def test_read_checkpoint_refuses_other_folders(tmp_path):
    with pytest.raises(FileNotFoundError, match="not a T-VAD checkpoint"):
        read_checkpoint(tmp_path)
    (tmp_path / "tvad.json").write_text(json.dumps({"format": "something-else"}))
    with pytest.raises(ValueError, match="unknown checkpoint format"):
        read_checkpoint(tmp_path)
    (tmp_path / "tvad.json").write_text(json.dumps({"format": CKPT_FORMAT}))
    with pytest.raises(FileNotFoundError, match="backbone"):
        load(tmp_path)
