"""Delta checkpoints (tvad.model.delta via save_model / read_checkpoint): only what stage 2 changed is
written, the base backbone referenced by path and sha256; loading rebuilds the same state dict and
logits; a missing or changed base is a clear CheckpointError; `storage="full"` still writes whole merges."""

import json
import os
import shutil

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np
import pytest
import torch

from tvad.config import AHDConfig, RAEConfig, preset
from tvad.model import TVAD, build_ahd, load, save_model
from tvad.model.ahd import CheckpointError
from tvad.model.backbone import from_pretrained
from tvad.model.delta import DELTA_FILE, base_hash
from tvad.model.tiny import build_tiny

LAYERS = [0, 3]
MSGS = [{"role": "system", "content": "You watch a fixed camera."},
        {"role": "user", "content": "Is there any anomaly in this video?"},
        {"role": "assistant", "content": "Yes, a person runs to the right."}]
FRAMES = np.random.default_rng(0).integers(0, 256, (4, 112, 112, 3), dtype=np.uint8)

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _base(tmp_path, full_table: bool = False):
    bb = build_tiny(seed=0, max_pixels=112 * 112)
    if full_table:  # no spare rows: the prompt tokens grow the table (and the delta stores the new rows)
        bb.model.resize_token_embeddings(len(bb.tokenizer))
    bb.save_pretrained(tmp_path / "base")
    return tmp_path / "base"


def _trained(base):
    """A model on the base as stage 2 leaves it: LoRA merged into q/v of two decoder layers, trained
    token rows."""
    torch.manual_seed(0)
    bb = from_pretrained(base, max_pixels=112 * 112)
    model = TVAD.build(bb, build_ahd(bb, AHDConfig(hidden=32), LAYERS, seed=0),
                       {"backbone": {"layers": LAYERS, "identity": bb.identity}}, RAEConfig(channels=8), seed=0,
                       meta={"fps": 8.0})
    with torch.no_grad():
        for layer in model.qwen.model.language_model.layers[-2:]:
            for lin in (layer.self_attn.q_proj, layer.self_attn.v_proj):
                a, b = torch.randn(lin.out_features, 4) * 0.05, torch.randn(4, lin.in_features) * 0.05
                lin.weight.add_(a @ b)  # what merge_and_unload leaves: W + B A
        model.injector.token_rows.add_(0.01)
    return model


def _state(model):
    model.merge_prompt_rows()
    return {k: v.detach().clone() for k, v in model.qwen.state_dict().items()}


def _bytes(folder):
    return sum(f.stat().st_size for f in folder.rglob("*") if f.is_file())


def _logits(model):
    clip = model.encode_clip(FRAMES, 8.0)
    clip.heat = torch.linspace(0, 1, clip.heat.numel()).reshape(clip.heat.shape)
    with torch.no_grad():
        return model.forward(MSGS, clip).logits


@pytest.mark.parametrize("full_table", [False, True])
def test_delta_round_trip_equals_the_full_model(tmp_path, full_table):
    base = _base(tmp_path, full_table)
    model = _trained(base)
    want = _state(model)
    d = save_model(model, tmp_path / "delta")
    f = save_model(model, tmp_path / "full", storage="full")
    assert (d / DELTA_FILE).is_file() and not list((d / "backbone").glob("*.safetensors"))
    assert list((f / "backbone").glob("*.safetensors")) and not (f / DELTA_FILE).exists()
    # only the changed tensors travel: 4 q/v weights + the table's rows, against the whole model
    assert _bytes(d) < _bytes(f) / 3, (_bytes(d), _bytes(f))
    for ck in (d, f):
        m2 = load(ck, device="cpu")
        got = {k: v for k, v in m2.qwen.state_dict().items()}
        assert got.keys() == want.keys()
        diff = [k for k in want if not torch.equal(got[k], want[k])]
        assert not diff, (ck.name, diff[:5])
        assert torch.equal(_logits(m2), _logits(model))
        assert m2.token_ids == model.token_ids


def test_a_second_phase_references_the_same_base(tmp_path):
    base = _base(tmp_path)
    a = save_model(_trained(base), tmp_path / "a")
    m = load(a, device="cpu")
    with torch.no_grad():
        m.qwen.model.language_model.layers[0].self_attn.q_proj.weight.mul_(1.01)  # phase B's merge
    want = _state(m)
    b = save_model(m, tmp_path / "b")
    info = json.loads((b / "tvad.json").read_text())["backbone_storage"]
    assert info["storage"] == "delta" and info["base"] == str(base.resolve())
    assert info["sha256"] == base_hash(base)
    shutil.rmtree(a)  # phase B does not need phase A's checkpoint
    got = load(b, device="cpu").qwen.state_dict()
    assert all(torch.equal(got[k], want[k]) for k in want)


def test_missing_or_changed_base_is_a_clear_error(tmp_path):
    base = _base(tmp_path)
    d = save_model(_trained(base), tmp_path / "ck")
    moved = tmp_path / "moved"
    base.rename(moved)
    with pytest.raises(CheckpointError, match=r"ck: its base backbone .*base is missing.*stage2.checkpoints: full"):
        load(d, device="cpu")
    moved.rename(base)
    bb = from_pretrained(base)
    with torch.no_grad():
        bb.model.model.language_model.layers[0].mlp.down_proj.weight.mul_(2.0)  # same shapes, other values
    bb.save_pretrained(base)
    with pytest.raises(CheckpointError, match=r"its base backbone .* has changed \(sha256 of model.safetensors"):
        load(d, device="cpu")
    (d / DELTA_FILE).write_bytes(b"garbage")
    with pytest.raises((CheckpointError, FileNotFoundError)):
        load(d, device="cpu")


def test_a_model_built_in_memory_is_stored_full_and_says_why(tmp_path):
    bb = build_tiny(seed=0, max_pixels=112 * 112)  # no folder on disk to reference
    model = TVAD.build(bb, None, {}, RAEConfig(channels=8), seed=0, meta={"fps": 8.0})
    d = save_model(model, tmp_path / "ck")
    info = json.loads((d / "tvad.json").read_text())["backbone_storage"]
    assert info["storage"] == "full" and "not read from a local folder" in info["why"]
    assert list((d / "backbone").glob("*.safetensors"))
    with pytest.raises(ValueError, match="storage must be one of"):
        save_model(model, tmp_path / "x", storage="merged")


def test_config_option_and_its_check():
    assert preset("cpu").stage2.checkpoints == "delta"
    from tvad.config import ConfigError
    assert preset("cpu").override({"stage2.checkpoints": "full"}).stage2.checkpoints == "full"
    with pytest.raises(ConfigError, match="stage2.checkpoints"):
        preset("cpu").override({"stage2.checkpoints": "merged"})


def test_a_trained_phase_saves_a_delta_that_reloads_to_the_same_model(tmp_path):
    """stage2.train_phase's real LoRA merge on a backbone read from disk: the phase's checkpoint is a
    delta holding the merged q/v tensors, and it reloads to the trained model's weights and logits."""
    import dataclasses

    from stage2_fixtures import ARRAYS, CFG, TRAIN, VAL
    from tvad.train import stage2
    from tvad.train.clips import ClipResolver, ClipStore

    base = _base(tmp_path)
    bb = from_pretrained(base, max_pixels=112 * 112)
    m = TVAD.build(bb, build_ahd(bb, AHDConfig(hidden=32), LAYERS, seed=0),
                   {"backbone": {"layers": LAYERS, "identity": bb.identity}}, RAEConfig(channels=8), seed=0,
                   meta={"fps": 8.0})
    store = ClipStore(m, ClipResolver(arrays=ARRAYS))
    cfg = dataclasses.replace(CFG, epochs=0.5)
    res = stage2.train_phase(m, "a", TRAIN, VAL, store, cfg, tmp_path / "a", progress=False, log=lambda s: None)
    assert res.steps > 0
    info = json.loads((res.final_dir / "tvad.json").read_text())["backbone_storage"]
    assert info["storage"] == "delta" and info["base"] == str(base.resolve())
    assert not list((res.final_dir / "backbone").glob("*.safetensors"))
    want = _state(m)
    m2 = load(res.final_dir, device="cpu")
    got = m2.qwen.state_dict()
    assert not [k for k in want if not torch.equal(got[k], want[k])]
    with torch.no_grad():
        a = m.forward(VAL[0]["messages"], store.get(VAL[0]["clip"])).logits
        b = m2.forward(VAL[0]["messages"], m2.encode_clip(ARRAYS["val0"], 8.0)).logits
    assert torch.equal(a, b)
    full = save_model(m, tmp_path / "full", storage="full")
    assert _bytes(res.final_dir) < _bytes(full) / 3


def test_changed_rows_read_the_base_in_chunks(tmp_path):
    from safetensors import safe_open
    from safetensors.torch import save_file

    from tvad.model.delta import _changed_rows

    base = torch.randn(1000, 16).to(torch.bfloat16)
    save_file({"w": base}, str(tmp_path / "b.safetensors"))
    t = base.clone()
    t[[3, 511, 512, 999]] += 1.0
    with safe_open(str(tmp_path / "b.safetensors"), framework="pt") as st:
        for chunk in (32, 64 * 7, 1 << 26):  # 1 row, 7 rows, everything per read
            assert _changed_rows(t, st.get_slice("w"), 1000, chunk_bytes=chunk).tolist() == [3, 511, 512, 999]
        assert _changed_rows(t, st.get_slice("w"), 512, chunk_bytes=64 * 7).tolist() == [3, 511]


def test_a_base_inside_the_checkout_is_recorded_relative_to_it(tmp_path):
    bb = from_pretrained("assets/tiny-qwen2.5-vl", max_pixels=112 * 112)  # the shipped tiny backbone
    model = TVAD.build(bb, None, {}, RAEConfig(channels=8), seed=0, meta={"fps": 8.0})
    want = _state(model)
    d = save_model(model, tmp_path / "ck")
    info = json.loads((d / "tvad.json").read_text())["backbone_storage"]
    assert info["storage"] == "delta" and info["base"] == "assets/tiny-qwen2.5-vl"
    got = load(d, device="cpu").qwen.state_dict()
    assert all(torch.equal(got[k], want[k]) for k in want)
